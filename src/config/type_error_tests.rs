//! A value of the wrong type, in a user's words: which key, what was
//! expected, what was given.

use super::*;

#[test]
fn wrong_type_names_key() {
    let err = Config::parse("[train]\nlr = \"fast\"\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("train.lr"), "{err}");
    assert_eq!(err.line, Some(2));
    // serde's words ("invalid type: string \"300\", expected u64") in a
    // user's (a walkthrough's quoted number).
    let quoted = Config::parse("[train]\nsteps = \"300\"\n").unwrap_err();
    assert!(
        quoted.to_string().ends_with(
            "key `train.steps`: expected a whole number ≥ 1, got the string \"300\" (numbers and true/false are written without quotes)"
        ),
        "{quoted}"
    );
    let negative = Config::parse("[train]\nsteps = -3\n").unwrap_err();
    assert!(
        negative
            .to_string()
            .contains("expected a whole number ≥ 1, got -3"),
        "{negative}"
    );
    // A count from 1 says so for 0 and for -3 alike (it said "≥ 0" for
    // -3 and "an integer >= 1" for 0, walkthroughs I and J); one from 0
    // says "≥ 0".
    for key in super::validate::COUNTS_FROM_ONE {
        let (table, name) = key.split_once('.').unwrap();
        for value in [0, -3] {
            let err = Config::parse(&format!("[{table}]\n{name} = {value}\n")).unwrap_err();
            let expected = format!("key `{key}`: expected a whole number ≥ 1, got {value}");
            assert!(err.to_string().ends_with(&expected), "{err}");
        }
    }
    let threads = Config::parse("[train]\nthreads = -1\n")
        .unwrap_err()
        .to_string();
    let most = super::validate::max_threads();
    assert!(
        threads.ends_with(&format!(
            "key `train.threads`: expected a whole number from 1 to {most} (4 per core this machine has), got -1"
        )),
        "{threads}"
    );
    let iterations = Config::parse("[aid]\niterations = -1\n").unwrap_err();
    assert!(
        iterations
            .to_string()
            .ends_with("key `aid.iterations`: expected a whole number ≥ 0, got -1"),
        "{iterations}"
    );
    assert!(
        !negative.to_string().contains("without quotes"),
        "{negative}"
    );
    // The user's own text is not rewritten; a value past the type's range
    // says the range.
    let text = Config::parse("[train]\nlr = \"a string x\"\n").unwrap_err();
    assert!(
        text.to_string()
            .contains("expected a number, got the string \"a string x\" (numbers"),
        "{text}"
    );
    let huge = Config::parse("[aid]\niterations = 5000000000\n").unwrap_err();
    assert!(
        huge.to_string()
            .contains("expected a whole number at most 4294967295, got 5000000000"),
        "{huge}"
    );
}
