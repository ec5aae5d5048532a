//! Tests of the hints a config error gives: another section's key, the
//! nearest choice value.

use super::*;

/// Walkthrough G3's `meltr.iterations` and `combiner.kind = "metlr"` had
/// the lists alone; a review's `train.meta_lr` was pointed at `lr`.
#[test]
fn a_key_of_another_section_and_a_misspelt_choice_are_suggested() {
    for (key, value, said) in [
        (
            "meltr.iterations",
            "2",
            "no such key `iterations` (did you mean `aid.iterations`?)",
        ),
        ("train.meta_lr", "1e-3", "(did you mean `meltr.meta_lr`?)"),
        (
            "combiner.kind",
            "metlr",
            "got \"metlr\" (did you mean \"meltr\"?)",
        ),
    ] {
        let error = Config::default()
            .with_override(key, value)
            .unwrap_err()
            .to_string();
        assert!(error.contains(said), "{key}: {error}");
    }
    let in_a_file = Config::parse("[combiner]\nkind = \"metlr\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        in_a_file.contains("expected one of \"primary\"")
            && in_a_file.ends_with("got \"metlr\" (did you mean \"meltr\"?)"),
        "{in_a_file}"
    );
}
