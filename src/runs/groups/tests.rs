//! Tests of grouping runs and of the notes on groups.

use super::*;

/// A finished run of the default settings with `seed`.
fn finished_seed(root: &std::path::Path, name: &str, seed: u64) -> Run {
    let mut config = crate::config::Config::default();
    config.workload.seed = seed;
    let dir = crate::session::create(root, name, &config).unwrap();
    let mut run = Run::load(&dir).unwrap();
    run.status = "finished".into();
    run
}

#[test]
fn numeric_settings_come_in_ascending_order_and_words_as_they_came() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (i, (lr, kind)) in [(0.3, "meltr"), (1.0, "sum"), (0.15, "meltr"), (0.2, "sum")]
        .into_iter()
        .enumerate()
    {
        let mut config = crate::config::Config::default();
        config.train.lr = lr;
        config.combiner.kind = kind.parse().unwrap();
        let dir = crate::session::create(root.path(), &format!("r{i}"), &config).unwrap();
        runs.push(Run::load(&dir).unwrap());
    }
    let labels = |by: GroupBy| -> Vec<String> {
        gather(&runs, &by)
            .unwrap()
            .into_iter()
            .map(|g| g.label)
            .collect()
    };
    assert_eq!(
        labels(GroupBy::Keys(vec!["train.lr".into()])),
        ["lr=0.15", "lr=0.2", "lr=0.3", "lr=1.0"]
    );
    assert_eq!(
        labels(GroupBy::Keys(vec!["combiner.kind".into()])),
        ["kind=meltr", "kind=sum"]
    );
    // Words first-seen order, then numbers within: kinds not interleaved.
    assert_eq!(
        labels(GroupBy::Keys(vec![
            "combiner.kind".into(),
            "train.lr".into()
        ])),
        [
            "kind=meltr, lr=0.15",
            "kind=meltr, lr=0.3",
            "kind=sum, lr=0.2",
            "kind=sum, lr=1.0"
        ]
    );
}

/// Walkthrough O's `sum` rows read `init=pytorch, iterations=0`, keys
/// `sum` does not read; they read `–`, unless two rows would then match.
#[test]
fn keys_a_fixed_combiner_does_not_read_show_a_dash() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    let settings = [
        ("meltr", 0, 0.1),
        ("meltr", 1, 0.1),
        ("sum", 0, 0.1),
        ("primary", 0, 0.1),
    ];
    for (i, (kind, iterations, gamma)) in settings.into_iter().enumerate() {
        let mut config = crate::config::Config::default();
        config.combiner.kind = kind.parse().unwrap();
        config.aid.iterations = iterations;
        config.meltr.gamma = gamma;
        let dir = crate::session::create(root.path(), &format!("r{i}"), &config).unwrap();
        runs.push(Run::load(&dir).unwrap());
    }
    let labels = |runs: &[Run]| -> Vec<String> {
        gather(runs, &GroupBy::Seeds)
            .unwrap()
            .into_iter()
            .map(|g| g.label)
            .collect()
    };
    assert_eq!(
        labels(&runs),
        [
            "iterations=0, kind=meltr",
            "iterations=1, kind=meltr",
            "kind=sum",
            "kind=primary"
        ]
    );
    // Two `sum` runs that differ only in γ keep their values apart.
    let mut config = crate::config::Config::default();
    config.combiner.kind = "sum".parse().unwrap();
    config.meltr.gamma = 0.3;
    let dir = crate::session::create(root.path(), "r4", &config).unwrap();
    runs.push(Run::load(&dir).unwrap());
    let both = labels(&runs);
    assert!(
        both.contains(&"iterations=0, kind=sum, gamma=0.1".to_string())
            && both.contains(&"iterations=0, kind=sum, gamma=0.3".to_string())
            && both.contains(&"kind=primary".to_string()),
        "{both:?}"
    );
}

#[test]
fn a_group_pooling_other_settings_says_which() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (i, (lr, kind, seed)) in [
        (0.1, "meltr", 0),
        (0.1, "meltr", 1),
        (0.1, "sum", 0),
        (0.3, "sum", 1),
    ]
    .into_iter()
    .enumerate()
    {
        let mut config = crate::config::Config::default();
        config.train.lr = lr;
        config.combiner.kind = kind.parse().unwrap();
        config.workload.seed = seed;
        let dir = crate::session::create(root.path(), &format!("r{i}"), &config).unwrap();
        let mut run = Run::load(&dir).unwrap();
        run.status = "finished".into();
        runs.push(run);
    }
    let groups = gather(&runs, &GroupBy::Keys(vec!["combiner.kind".into()])).unwrap();
    assert_eq!(
        groups[0].pooled_keys(),
        Vec::<String>::new(),
        "seeds alone are not noted"
    );
    assert_eq!(groups[1].pooled_keys(), ["train.lr"]);
    assert_eq!(
        caveats(&groups),
        ["note: kind=sum (n=2) pools runs that differ in train.lr; add it to --group-by to split it"]
    );
    let by_seed = gather(&runs, &GroupBy::Seeds).unwrap();
    assert!(caveats(&by_seed).is_empty());
}

/// A fork with no edits continued its parent bit for bit and was
/// counted as a fourth seed (walkthrough: n=4 where 3 ran).
#[test]
fn a_fork_is_not_another_seed_of_its_parent() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    let runs_named = [
        ("s0", 0, 0.1),
        ("s1", 1, 0.1),
        ("s2", 2, 0.1),
        ("s1-fork", 1, 0.1),
        ("s2-fork", 2, 0.1),
        ("orphan", 3, 0.1),
        ("g03", 0, 0.3),
        ("g03-fork", 0, 0.3),
    ];
    for (name, seed, gamma) in runs_named {
        let mut config = crate::config::Config::default();
        config.workload.seed = seed;
        config.meltr.gamma = gamma;
        let dir = crate::session::create(root.path(), name, &config).unwrap();
        let mut run = Run::load(&dir).unwrap();
        run.meta.group = Some("matrix".into());
        run.status = "finished".into();
        runs.push(run);
    }
    for (fork, parent) in [(3, 1), (4, 2), (7, 0)] {
        runs[fork].meta.parent = Some(runs[parent].meta.id.clone());
        runs[fork].meta.fork_step = Some(200);
    }
    // Trained under γ 0.1 until step 200: not a γ 0.3 run from scratch.
    runs[7].fork_changes = vec!["meltr.gamma".into()];
    // Its parent deleted (not among the runs), nothing changed: an
    // ordinary seed.
    runs[5].meta.parent = Some("20200101-000000-gone".into());
    runs[5].meta.fork_step = Some(100);
    let by_seed = gather(&runs, &GroupBy::Seeds).unwrap();
    let sizes: Vec<(String, usize, Option<String>)> = by_seed
        .iter()
        .map(|g| (g.label.clone(), g.runs.len(), g.fork_of.clone()))
        .collect();
    let fork = |s: &str| Some(s.to_string());
    assert_eq!(
        sizes,
        [
            ("gamma=0.1".to_string(), 4, None),
            (
                "gamma=0.1 (fork of s1@200, s2@200)".to_string(),
                2,
                fork("s1@200, s2@200")
            ),
            ("gamma=0.3".to_string(), 1, None),
            ("gamma=0.3 (fork of s0@200)".to_string(), 1, fork("s0@200")),
        ]
    );
    assert!(caveats(&by_seed).is_empty());
    let by_kind = gather(&runs, &GroupBy::Keys(vec!["combiner.kind".into()])).unwrap();
    assert_eq!(
        by_kind[0].runs.len(),
        8,
        "--group-by pools what it is told to"
    );
    let notes = caveats(&by_kind);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].contains("pools runs that differ in meltr.gamma"),
        "{}",
        notes[0]
    );
    assert!(
        notes[1].contains("counts forks with their parents (s1-fork, s2-fork, g03-fork)"),
        "{}",
        notes[1]
    );
}

/// A fork of a fork whose middle run is not among the runs still
/// continues the first: it is no seed of it.
#[test]
fn a_fork_of_a_fork_is_no_seed_of_the_first() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (name, seed) in [("a", 0), ("b", 1), ("grandchild", 0)] {
        runs.push(finished_seed(root.path(), name, seed));
    }
    runs[2].meta.parent = Some("20200101-000000-middle".into());
    runs[2].meta.fork_step = Some(300);
    runs[2].ancestors = vec![
        ("20200101-000000-middle".into(), 300),
        (runs[0].meta.id.clone(), 200),
    ];
    let groups = gather(&runs, &GroupBy::Seeds).unwrap();
    let sizes: Vec<usize> = groups.iter().map(|g| g.runs.len()).collect();
    assert_eq!(sizes, [2, 1]);
    let by_kind = gather(&runs, &GroupBy::Keys(vec!["combiner.kind".into()])).unwrap();
    let notes = caveats(&by_kind);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("counts forks with their parents (grandchild)")),
        "{notes:?}"
    );
}

/// A stopped run and one edited while it trained entered tables like
/// any other (walkthrough).
#[test]
fn unfinished_and_edited_runs_are_noted() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (name, seed) in [("s0", 0), ("s1", 1), ("s2", 2)] {
        runs.push(finished_seed(root.path(), name, seed));
    }
    runs[1].status = "stopped".into();
    (runs[1].step, runs[1].steps) = (150, 400);
    // Edited alike in every run (a run edited otherwise is a setting of
    // its own, OLD→NEW@STEP).
    for run in &mut runs {
        run.edited.insert(
            "aid.iterations".into(),
            ("0".into(), vec![(100, "1".into()), (300, "0".into())]),
        );
    }
    // A collapse restore (a walkthrough's table said nothing of one).
    runs[0].restores = vec![331];
    // And a collapse with nothing to put back (a walkthrough's table said
    // nothing of one either).
    runs[2].unrestored_collapses = vec![20];
    // Risen again by its end (walkthrough Q's note read as a collapse).
    runs[2].last_primary_weight = Some(0.635);
    // Fallen inside the last lines, whose mean still reads above 0.1
    // (walkthrough T's note said "back to 0.2146 at the end").
    runs[1].unrestored_collapses = vec![140];
    let primary = runs[1].meta.primary.clone();
    runs[1].final_weights.insert(primary, 0.2146);
    runs[1].last_primary_weight = Some(0.011);
    // A Neumann series cut short (walkthrough N's J = 1 rows were partly
    // J = 0, unsaid); a run whose series never was is not listed.
    runs[0].neumann_cut = Some((21, 100));
    runs[2].neumann_cut = Some((0, 100));
    // One run on two ranks (walkthrough L: pooled as a seed, unsaid).
    runs[1].meta.world_size = Some(2);
    // A notable share of skipped updates (walkthrough S: 18%, unsaid).
    runs[2].skipped_share = Some((18, 60));
    // Two of them put in a session group (walkthrough R3: pooled, unsaid).
    for run in &mut runs[1..] {
        run.meta.group = Some("more".into());
    }
    let groups = gather(&runs, &GroupBy::Seeds).unwrap();
    assert_eq!(
        caveats(&groups),
        [
            "note: s0, s1, s2 (n=3) pools runs trained on different numbers of ranks (s0: 1, s1: 2, s2: 1): M is not linear, so a MELTR run depends on it (a `sum` run does not, to rounding); --group-by ranks splits them",
            "note: s0, s1, s2 (n=3) pools runs of different session groups (more: 2, none: 1), as their settings agree: --group NAME tabulates one alone, --group-by group splits them by group alone",
            "note: s0, s1, s2 (n=3) has runs that did not finish (s1 stopped at 150/400): their last eval is not the end of training",
            "note: s0, s1, s2 (n=3) has runs whose settings changed while they trained (s0: aid.iterations at steps 100, 300; s1: aid.iterations at steps 100, 300; s2: aid.iterations at steps 100, 300): where a row or legend shows such a setting, it reads OLD→NEW@STEP",
            "note: s0, s1, s2 (n=3) has runs whose updates were skipped on many steps (s2 18% of 60 steps): a non-finite loss or gradient trained nothing there; the run's warnings name the steps and rows",
            "note: s0, s1, s2 (n=3) has runs with collapse restores (s0 before step 331): φ was put back and the meta-learning rate in force halved (γ raised at the first); the settings shown are the configured ones",
            "note: s0, s1, s2 (n=3) has runs whose primary weight fell below 0.1 (a tenth of its weight under `sum`) and was not put back (s1 at step 140; s2 at step 20, back to 0.635 at the end): the run ended before the collapse watch acted, it had no healthy meta step to restore yet (or only one whose restore had not lifted the weight before, or one its primary's loss had climbed far from since), or meltr.on_collapse = \"warn\" (the run's events say which); a run back above 0.1 at its end rose again on its own",
            "note: s0, s1, s2 (n=3) has runs whose Neumann series was cut short on some meta steps (s0 21 of 100, 21%): it diverged there, and those meta steps took v_0 alone (as at J = 0; the run's events say when): each run's divergence warning says whether a smaller aid.alpha would converge or none does (H curving down: aid.iterations = 0)",
        ]
    );
    let by_ranks = gather(&runs, &GroupBy::Keys(vec!["ranks".into()])).unwrap();
    assert_eq!(by_ranks.len(), 2, "--group-by ranks splits them");
    let by_group = gather(&runs, &GroupBy::Keys(vec!["group".into()])).unwrap();
    assert_eq!(by_group.len(), 2, "--group-by group splits them");
    for run in &mut runs {
        run.meta.group = None;
    }
    runs[1].meta.world_size = None;
    runs[2].unrestored_collapses.clear();
    runs[2].skipped_share = None;
    // A fork (its parent gone): the edits up to its fork step were its
    // parent's, and its own change at the fork is named.
    runs[2].meta.parent = Some("20200101-000000-gone".into());
    runs[2].meta.fork_step = Some(200);
    runs[2].fork_changes = vec!["aid.alpha".into()];
    runs[1].status = "finished".into();
    // Its restores up to the fork were its parent's too (walkthrough H's
    // note gave the fork all of them).
    runs[2].restores = vec![150, 201, 331];
    let groups = gather(&runs, &GroupBy::Seeds).unwrap();
    let notes = caveats(&groups);
    assert!(
        notes.iter().any(|n| n.contains(
            "(s2 before steps 150, 201 in its parent, before the fork; before step 331)"
        )),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains(
            "(s2: aid.iterations at step 100 in its parent, before the fork; aid.iterations at step 300; aid.alpha at its fork (step 200))"
        )),
        "{notes:?}"
    );
}

#[test]
fn labels_use_short_keys_unless_they_clash() {
    let v = |k: &str, x: &str| (k.to_string(), x.to_string());
    assert_eq!(
        label_of(&[v("combiner.kind", "meltr"), v("aid.iterations", "1")]),
        "kind=meltr, iterations=1"
    );
    assert_eq!(
        label_of(&[v("combiner.kind", "sum"), v("workload.kind", "synthetic")]),
        "combiner.kind=sum, workload.kind=synthetic"
    );
}

/// Two runs of one seed pooled as replicates were unsaid (a walkthrough's
/// `n=2, 25.00 ± 0.00` of one config run twice).
#[test]
fn runs_of_the_same_seed_in_a_group_are_noted() {
    let root = tempfile::tempdir().unwrap();
    let runs = vec![
        finished_seed(root.path(), "a", 0),
        finished_seed(root.path(), "b", 0),
        finished_seed(root.path(), "c", 1),
    ];
    let groups = gather(&runs, &GroupBy::Seeds).unwrap();
    let notes = caveats(&groups);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("has runs of the same seed (seed 0: a, b)")),
        "{notes:?}"
    );
    let distinct = vec![
        finished_seed(root.path(), "d", 0),
        finished_seed(root.path(), "e", 1),
    ];
    let notes = caveats(&gather(&distinct, &GroupBy::Seeds).unwrap());
    assert!(!notes.iter().any(|n| n.contains("same seed")), "{notes:?}");
}

/// Finished runs whose final evals lie at different steps are noted (a
/// walkthrough resumed one sweep member to 700 steps; its row read best
/// against 500-step ones).
#[test]
fn runs_of_different_budgets_are_noted() {
    let root = tempfile::tempdir().unwrap();
    let ended_at = |name: &str, seed: u64, step: u64| {
        let mut run = finished_seed(root.path(), name, seed);
        run.final_eval = Some((step, [("accuracy".to_string(), 0.9)].into()));
        run
    };
    let budget_note = |runs: &[Run]| {
        caveats(&gather(runs, &GroupBy::Seeds).unwrap())
            .into_iter()
            .find(|n| n.contains("different steps"))
    };
    let mixed = [
        ended_at("a", 0, 500),
        ended_at("b", 1, 500),
        ended_at("c", 2, 700),
    ];
    let note = budget_note(&mixed).expect("a note");
    assert!(note.contains("(500: 2 runs; 700: c)"), "{note}");
    let alike = [ended_at("d", 0, 500), ended_at("e", 1, 500)];
    assert_eq!(budget_note(&alike), None);
    // An unfinished run is noted as such, not as another budget.
    let mut stopped = ended_at("f", 2, 300);
    stopped.status = "stopped".into();
    assert_eq!(budget_note(&[ended_at("g", 0, 500), stopped]), None);
}

/// A run whose setting was edited live is labelled with the edit (a
/// walkthrough's sweep member, aid.alpha 0.1 → 0.5 at step 505, read
/// `alpha=0.5` as if trained so throughout); runs edited alike pool.
#[test]
fn a_live_edit_shows_in_the_label_as_old_new_at_step() {
    let root = tempfile::tempdir().unwrap();
    let mut runs: Vec<Run> = (0..4)
        .map(|seed| finished_seed(root.path(), &format!("s{seed}"), seed))
        .collect();
    for run in &mut runs[2..] {
        run.config
            .insert("aid.alpha".into(), toml::Value::Float(0.5));
        run.edited.insert(
            "aid.alpha".into(),
            ("0.1".into(), vec![(505, "0.5".into())]),
        );
    }
    let groups = gather(&runs, &GroupBy::Seeds).unwrap();
    let labels: Vec<(&str, usize)> = groups
        .iter()
        .map(|g| (g.label.as_str(), g.runs.len()))
        .collect();
    assert_eq!(labels, [("alpha=0.1", 2), ("alpha=0.1→0.5@505", 2)]);
    let by_key = gather(&runs, &GroupBy::Keys(vec!["aid.alpha".into()])).unwrap();
    assert_eq!(
        by_key[1].values,
        [("aid.alpha".into(), "0.1→0.5@505".into())]
    );
}

/// Labels leave out the keys a group leaves unset or does not read
/// (walkthrough B's legend was cut before the key that mattered), unless
/// two labels would then read alike.
#[test]
fn labels_leave_out_dashes_unless_two_would_read_alike() {
    let values = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let meltr = values(&[
        ("combiner.kind", "meltr"),
        ("combiner.weights.dup", "-"),
        ("meltr.gamma", "0.3"),
    ]);
    assert_eq!(label_of(&meltr), "kind=meltr, gamma=0.3");
    assert_eq!(label_of(&values(&[("a.b", "-"), ("c.d", "–")])), "b=-, d=–");
    let group = |pairs: &[(&str, &str)]| {
        let values = values(pairs);
        Group {
            label: label_of(&values),
            values,
            runs: Vec::new(),
            fork_of: None,
        }
    };
    let mut alike = vec![
        group(&[("x.a", "-"), ("x.b", "1")]),
        group(&[("x.a", "–"), ("x.b", "1")]),
    ];
    super::labels::whole_labels_where_short_ones_clash(&mut alike);
    let labels: Vec<&str> = alike.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(labels, ["a=-, b=1", "a=–, b=1"]);
}

/// A table across held-out tasks read each model's whole path (and two
/// more such columns) on every row: the folders all of them share are
/// left out; a cell `--label` renamed first stays as renamed.
#[test]
fn paths_that_share_folders_show_what_follows_them() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for task in ["mixed", "far-scale", "few/labels"] {
        let mut config = crate::config::Config::default();
        config.workload.model = Some(format!("/root/.cache/suite/{task}/model.pt"));
        let dir = crate::session::create(root.path(), task, &config).unwrap();
        runs.push(Run::load(&dir).unwrap());
    }
    let mut groups = gather(&runs, &GroupBy::Seeds).unwrap();
    shorten_shared_folders(&mut groups);
    let labels: Vec<&str> = groups.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "model=…/mixed/model.pt",
            "model=…/far-scale/model.pt",
            "model=…/few/labels/model.pt"
        ]
    );
    let mut renamed = gather(&runs, &GroupBy::Seeds).unwrap();
    renamed[1].values[0].1 = "Far scale".into();
    shorten_shared_folders(&mut renamed);
    let labels: Vec<&str> = renamed.iter().map(|g| g.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "model=…/mixed/model.pt",
            "model=Far scale",
            "model=…/few/labels/model.pt"
        ]
    );
    // Nothing shared but the root: left whole.
    let mut config = crate::config::Config::default();
    config.workload.model = Some("/elsewhere/model.pt".into());
    let dir = crate::session::create(root.path(), "elsewhere", &config).unwrap();
    runs.push(Run::load(&dir).unwrap());
    let mut groups = gather(&runs, &GroupBy::Seeds).unwrap();
    shorten_shared_folders(&mut groups);
    assert!(groups
        .iter()
        .any(|g| g.label == "model=/elsewhere/model.pt"));
    assert!(groups
        .iter()
        .any(|g| g.label == "model=/root/.cache/suite/mixed/model.pt"));
}
