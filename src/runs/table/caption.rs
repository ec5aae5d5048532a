//! The table caption's words that depend on the columns and runs: how
//! spread and bold read, and when a `share/` mean is one logged value.

use super::super::groups::Group;

/// The caption's words on spread and bold; `ranked`: some column has a
/// better direction (weights and shares have none, and nothing is bold:
/// a walkthrough's weight table explained a bold it did not have).
pub(super) fn spread_words(
    one_run_a_row: bool,
    ranked: bool,
    any_bold: bool,
    plus_minus: &str,
) -> String {
    let bold = match (ranked, one_run_a_row) {
        (false, _) => "",
        (true, false) => {
            "; bold: a column's best mean and any within one standard error of its difference from it"
        }
        (true, true) => "; bold: a column's best value",
    };
    // A table with nothing bold said "bold: …" all the same (walkthrough N).
    let none = match ranked && !any_bold {
        true => match one_run_a_row {
            false => ", none here: in each ranked column every mean is within it",
            true => ", none here: each ranked column's values tie",
        },
        false => "",
    };
    let bold = format!("{bold}{none}");
    match one_run_a_row {
        false => format!("; mean {plus_minus} sample std over the n runs of each group{bold}"),
        true => format!("; one run a row{bold}"),
    }
}

/// Whether some run's `share/` mean is one logged value: shares are
/// logged every `train.shares_every` steps, far more rarely than weights
/// and losses.
pub(super) fn few_share_lines(groups: &[Group]) -> String {
    let lines = groups
        .iter()
        .flat_map(|g| &g.runs)
        .map(|r| r.final_share_lines)
        .filter(|&n| n > 0);
    match lines.min() {
        Some(1) => ", which for shares is one logged value in some runs (they are logged every \
                    train.shares_every steps)"
            .to_string(),
        _ => String::new(),
    }
}
