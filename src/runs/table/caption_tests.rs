//! The caption's words on forks beside parents and one-value share means.

use super::tests::accuracy_run;
use super::*;

/// Shares logged every 50 steps of a 300-step run: each run's `share/`
/// "mean" is its last value alone, and the caption says so (a held-out
/// walkthrough read 0.27 ± 0.39 as a mean over ten lines a run).
#[test]
fn a_share_mean_of_one_logged_value_is_said() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (seed, share) in [(0, 0.1), (1, 0.7)] {
        let mut config = crate::config::Config::default();
        config.workload.seed = seed;
        let log: String = (1..=30u64)
            .map(|i| {
                let step = 10 * i;
                let shares = match step % 50 {
                    0 => format!(r#","shares":{{"harmful":{share}}}"#),
                    _ => String::new(),
                };
                format!(
                    r#"{{"step":{step},"time":1.0,"kind":"train","losses":{{"primary":1.0,"harmful":1.0}},"total":2.0,"weights":{{"primary":1.5,"harmful":0.5}}{shares},"lr":0.001}}"#
                ) + "\n"
            })
            .collect();
        runs.push(accuracy_run(root.path(), "m", &config, &log));
    }
    assert_eq!(runs[0].final_share_lines, 1);
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let options = TableOptions {
        metrics: vec!["share/harmful".into(), "weight/harmful".into()],
        digits: Some(2),
        ..Default::default()
    };
    let text = render(&groups, &options).unwrap();
    assert!(
        text.contains("which for shares is one logged value in some runs"),
        "{text}"
    );
}

/// `--best` sets a fork's best beside its parent's best after the fork
/// step, the same stretch (walkthrough D's fork read 13.3 below a best its
/// parent made long before the fork).
#[test]
fn a_forks_best_is_set_against_its_parents_best_after_the_fork() {
    let root = tempfile::tempdir().unwrap();
    let eval = |step: u64, accuracy: f64| {
        format!(
            r#"{{"step":{step},"time":1.0,"kind":"eval","metrics":{{"accuracy":{accuracy}}},"losses":{{}}}}"#
        ) + "\n"
    };
    let config = crate::config::Config::default();
    let parent_log = [eval(100, 80.0), eval(200, 50.0), eval(300, 55.0)].concat();
    let parent = accuracy_run(root.path(), "p", &config, &parent_log);
    let mut fork = accuracy_run(root.path(), "p-fork", &config, &eval(250, 60.0));
    fork.meta.parent = Some(parent.meta.id.clone());
    fork.meta.fork_step = Some(200);
    let mut parent = parent;
    parent.meta.higher_is_better = true;
    let runs = vec![parent, fork];
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let options = TableOptions {
        best: true,
        digits: Some(2),
        ..Default::default()
    };
    let text = render(&groups, &options).unwrap();
    assert!(
        text.contains("p-fork 60.00, its parent p 55.00 after step 200 (+5.00)"),
        "{text}"
    );
    // Up to a table's --at-step, the parent's best is read up to it too
    // (its 55.00 at step 300 is past 250).
    let up_to = TableOptions {
        at_step: Some(250),
        ..options.clone()
    };
    let text = render(&groups, &up_to).unwrap();
    assert!(
        text.contains("p-fork: its parent p has no evaluation after the fork step 200"),
        "{text}"
    );
    // A parent with no evaluation after the fork step: said, no number.
    let mut runs = runs;
    runs[1].meta.fork_step = Some(300);
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let text = render(&groups, &options).unwrap();
    assert!(
        text.contains("p-fork: its parent p has no evaluation after the fork step 300"),
        "{text}"
    );
}
