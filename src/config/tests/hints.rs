//! Tests of the hints a config error gives: another section's key, the
//! nearest choice value.

use super::*;

/// Walkthrough G3's `meltr.iterations` and `combiner.kind = "metlr"` had
/// the lists alone.
#[test]
fn a_key_of_another_section_and_a_misspelt_choice_are_suggested() {
    let elsewhere = Config::default()
        .with_override("meltr.iterations", "2")
        .unwrap_err()
        .to_string();
    assert!(
        elsewhere.contains("no such key `iterations` (did you mean `aid.iterations`?)"),
        "{elsewhere}"
    );
    let meta_lr = Config::default()
        .with_override("train.meta_lr", "1e-3")
        .unwrap_err()
        .to_string();
    assert!(
        meta_lr.contains("(did you mean `meltr.meta_lr`?)"),
        "{meta_lr}"
    );
    let choice = Config::default()
        .with_override("combiner.kind", "metlr")
        .unwrap_err()
        .to_string();
    assert!(
        choice.ends_with("got \"metlr\" (did you mean \"meltr\"?)"),
        "{choice}"
    );
    let in_a_file = Config::parse("[combiner]\nkind = \"metlr\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        in_a_file.contains("expected one of \"primary\"")
            && in_a_file.ends_with("got \"metlr\" (did you mean \"meltr\"?)"),
        "{in_a_file}"
    );
}
