//! Tests of reading a run from its session folder.

use super::*;

/// A session `child` under `root` made a fork of `p-id` at step 300.
fn fork_of_p_id_at_300(root: &std::path::Path) -> std::path::PathBuf {
    let dir = session::create(root, "child", &crate::config::Config::default()).unwrap();
    let mut meta = SessionMeta::read(&dir).unwrap();
    meta.parent = Some("p-id".into());
    meta.fork_step = Some(300);
    meta.write(&dir).unwrap();
    dir
}

/// A fork's log starts with its parent's lines (its history): a config
/// line of the parent's at the fork step was read as the fork's own
/// change, and a fork of a fork knew only its parent.
#[test]
fn a_forks_log_tells_its_own_changes_from_its_history() {
    use crate::session::log::MetricsWriter;
    use crate::session::metrics::{Level, MetricLine};
    let root = tempfile::tempdir().unwrap();
    let dir = fork_of_p_id_at_300(root.path());
    let line = |step: u64, record: Record| MetricLine {
        step,
        time: 0.0,
        wall: None,
        record,
    };
    let config = |key: &str| Record::Config {
        changed: [(
            key.to_string(),
            (serde_json::json!(0), serde_json::json!(1)),
        )]
        .into(),
        error: None,
    };
    let event = |message: &str| Record::Event {
        level: Level::Info,
        message: message.into(),
    };
    let mut w = MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
    for l in [
        line(200, event("forked from session g-id at step 200")),
        line(250, config("aid.iterations")),
        line(300, config("train.lr")),
        line(
            300,
            event("forked from session p-id at step 300 with aid.iterations=1, meltr.gamma=0.3, train.steps=900"),
        ),
        line(300, config("meltr.gamma")),
        // Set by the fork too, and edited in its history (walkthrough W:
        // the fork's row read the history's `0→1@250` alone).
        line(
            300,
            Record::Config {
                changed: [(
                    "aid.iterations".to_string(),
                    (serde_json::json!(1), serde_json::json!(2)),
                )]
                .into(),
                error: None,
            },
        ),
        line(350, config("aid.alpha")),
        // A collapse restore is listed too (a walkthrough's table said
        // nothing of one).
        line(
            399,
            event(&format!(
                "MELTR collapse: …; {} at step 324 before step 400, its optimizer's moments cleared",
                metrics::RESTORE_EVENT
            )),
        ),
        line(
            420,
            event(&format!(
                "{}the primary's weight fell …; no healthy meta step to restore from yet. …",
                metrics::COLLAPSE_EVENT
            )),
        ),
        // A slide the watch had not acted on at the end (walkthrough L:
        // a table said nothing of a run that ended collapsed).
        line(
            450,
            event(&format!(
                "{} (primary) below 0.1 for its last 19 meta steps …",
                metrics::ENDS_COLLAPSED_EVENT
            )),
        ),
    ] {
        w.append(&l).unwrap();
    }
    let run = Run::load(&dir).unwrap();
    assert_eq!(
        run.fork_changes,
        ["aid.iterations", "meltr.gamma", "train.steps"]
    );
    assert_eq!(
        run.setting("aid.iterations").as_deref(),
        Some("0→1@250→2@300")
    );
    assert_eq!(run.restores, [400]);
    assert_eq!(run.unrestored_collapses, [420, 450]);
    // Rows and legends show an edited key with its history.
    assert_eq!(run.setting("aid.alpha").as_deref(), Some("0→1@350"));
    assert_eq!(
        run.setting("meltr.gamma"),
        run.value("meltr.gamma"),
        "the fork's own change is its setting, not an edit"
    );
    let edits = run.edits();
    let edits: Vec<(u64, String)> = edits.iter().map(|(s, k)| (*s, k.join(" "))).collect();
    let expected = [
        (250, "aid.iterations"),
        (300, "aid.iterations train.lr"),
        (350, "aid.alpha"),
    ]
    .map(|(s, k)| (s, k.to_string()));
    assert_eq!(edits, expected);
    assert_eq!(
        run.ancestors,
        [("p-id".to_string(), 300), ("g-id".to_string(), 200)]
    );
}

/// Sessions reporting different metrics (an accuracy ↑, an error ↓)
/// were sorted as one list, comparing the two; now each metric's
/// sessions are sorted best first, and `ls` names the metrics.
#[test]
fn sorting_by_metric_compares_only_sessions_of_one_metric() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let run = |name: &str, metric: &str, higher: bool, value: f64| {
        let dir = session::create(root.path(), name, &config).unwrap();
        let mut meta = SessionMeta::read(&dir).unwrap();
        meta.primary_metric = metric.to_string();
        meta.higher_is_better = higher;
        let mut run = Run::from_meta(&dir, meta);
        run.final_eval = Some((10, [(metric.to_string(), value)].into_iter().collect()));
        run
    };
    let mut runs = vec![
        run("acc-low", "tag_acc", true, 0.5),
        run("cer-high", "cer", false, 9.0),
        run("acc-high", "tag_acc", true, 0.9),
        run("cer-low", "cer", false, 3.0),
        run("never-ran", "", true, f64::NAN),
    ];
    assert_eq!(mixed_metrics(&runs).as_deref(), Some("cer ↓, tag_acc ↑"));
    sort(&mut runs, SortBy::Metric);
    let names: Vec<&str> = runs.iter().map(|r| r.meta.name.as_str()).collect();
    assert_eq!(
        names,
        ["cer-low", "cer-high", "acc-high", "acc-low", "never-ran"]
    );
    assert_eq!(mixed_metrics(&runs[..2]), None);
}

/// The meta steps whose Neumann series was cut short, counted against
/// `aid.iterations` (walkthrough N: J = 1 runs were partly J = 0, unsaid).
#[test]
fn meta_steps_with_a_cut_series_are_counted() {
    let root = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config::default();
    config.aid.iterations = 2;
    let dir = session::create(root.path(), "j2", &config).unwrap();
    let cut = [(3, 2), (6, 0), (9, 1), (12, 2)].map(|(step, terms)| meta_line(step, terms));
    write_log(&dir, cut);
    assert_eq!(Run::load(&dir).unwrap().neumann_cut, Some((2, 4)));
    // A fork that set J = 2 at step 6 counts its own meta steps only: the
    // parent's before the fork ran at the parent's J.
    let origin = session::Origin {
        parent: Some("parent".into()),
        fork_step: Some(6),
        ..Default::default()
    };
    let fork = session::create_from(root.path(), "fork", &config, origin).unwrap();
    let forked = |changes: &str| Record::Event {
        level: crate::session::metrics::Level::Info,
        message: format!("forked from session parent at step 6{changes}"),
    };
    // The fork's log: its parent's meta steps (J = 0), its fork line, its own.
    let fork_log = |changes: &str| {
        let _ = std::fs::remove_file(fork.join("metrics.jsonl"));
        let lines = [meta_line(3, 0), meta_line(6, 0), (6, forked(changes))];
        write_log(
            &fork,
            lines.into_iter().chain([meta_line(9, 2), meta_line(12, 1)]),
        );
    };
    fork_log(" with aid.iterations=2");
    assert_eq!(Run::load(&fork).unwrap().neumann_cut, Some((1, 2)));
    // A fork that kept J carries the cut steps it was forked with.
    fork_log(" with aid.alpha=0.01");
    assert_eq!(Run::load(&fork).unwrap().neumann_cut, Some((3, 4)));
}

/// Appends `lines` (step, record) to the session's log in `dir`.
fn write_log(dir: &std::path::Path, lines: impl IntoIterator<Item = (u64, Record)>) {
    use crate::session::metrics::MetricLine;
    let path = dir.join("metrics.jsonl");
    let mut w = crate::session::log::MetricsWriter::open(&path).unwrap();
    for (step, record) in lines {
        let line = MetricLine {
            step,
            time: 0.0,
            wall: None,
            record,
        };
        w.append(&line).unwrap();
    }
}

/// A config line at `step` editing `key` from `old` to `new`.
fn config_edit(
    step: u64,
    key: &str,
    old: serde_json::Value,
    new: serde_json::Value,
) -> (u64, Record) {
    let changed = [(key.to_string(), (old, new))].into();
    (
        step,
        Record::Config {
            changed,
            error: None,
        },
    )
}

fn meta_line(step: u64, terms: u32) -> (u64, Record) {
    let meta = Record::Meta {
        hypergrad_norm: 1.0,
        reg: 0.0,
        meta_lr: 1e-3,
        aid_iterations: terms,
        gamma: Some(0.1),
    };
    (step, meta)
}

/// The primary's last logged weight, not the mean of the last lines
/// (walkthrough T: 1.03 at step 360, 0.01 from 370 on, a mean of 0.21
/// over 360–400 said "back to 0.2146 at the end"); non-finite lines are
/// passed over.
#[test]
fn the_last_primary_weight_is_the_last_finite_logged_one() {
    use crate::session::log::MetricsWriter;
    use crate::session::metrics::MetricLine;
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let dir = session::create(root.path(), "fallen", &config).unwrap();
    let primary = config.workload.primary.clone();
    let mut w = MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
    for (step, weight) in [
        (350, 1.0),
        (360, 1.03),
        (370, 0.034),
        (380, 0.011),
        (390, f64::NAN),
    ] {
        w.append(&MetricLine {
            step,
            time: 0.0,
            wall: None,
            record: Record::Train {
                losses: [(primary.clone(), 1.0)].into(),
                total: 1.0,
                weights: [(primary.clone(), weight)].into(),
                lr: 1e-3,
                shares: Default::default(),
                gpu: None,
            },
        })
        .unwrap();
    }
    let run = Run::load(&dir).unwrap();
    assert_eq!(run.last_primary_weight, Some(0.011));
    assert!(run.final_weights[&primary] > 0.1, "{:?}", run.final_weights);
}

/// `ls --json` and `--csv` had no `parent` or `fork_step`: a fork read as
/// another seed of its parent (walkthrough D).
#[test]
fn json_and_csv_listings_name_a_forks_parent_and_step() {
    let root = tempfile::tempdir().unwrap();
    let dir = fork_of_p_id_at_300(root.path());
    let runs = vec![Run::load(&dir).unwrap()];
    let json: serde_json::Value = serde_json::from_str(&render::json(&runs)).unwrap();
    assert_eq!(json[0]["parent"], "p-id");
    assert_eq!(json[0]["fork_step"], 300);
    let csv = render::csv(&runs);
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert_eq!((row[at("parent")], row[at("fork_step")]), ("p-id", "300"));
    // A list is JSON in its field (it read `[align, mlm, …]`: a walkthrough).
    let auxiliary = csv
        .lines()
        .nth(1)
        .unwrap()
        .split("\"[")
        .nth(1)
        .map(|rest| format!("[{}]", rest.split("]\"").next().unwrap()));
    let auxiliary = auxiliary
        .expect("the auxiliary list, quoted")
        .replace("\"\"", "\"");
    let names: Vec<String> = serde_json::from_str(&auxiliary).unwrap();
    assert_eq!(names, crate::config::Config::default().workload.auxiliary);
}

/// A fork's best is after its fork step: the evaluation at the fork step
/// was made before any change the fork brought (walkthrough G's `table
/// --best` credited a fork's new meta_lr with it).
#[test]
fn a_forks_best_comes_after_its_fork_step() {
    use crate::session::log::MetricsWriter;
    use crate::session::metrics::MetricLine;
    let root = tempfile::tempdir().unwrap();
    let dir = fork_of_p_id_at_300(root.path());
    let mut meta = SessionMeta::read(&dir).unwrap();
    meta.primary_metric = "mse".into();
    meta.write(&dir).unwrap();
    let eval = |step: u64, mse: f64| MetricLine {
        step,
        time: 0.0,
        wall: None,
        record: Record::Eval {
            metrics: [("mse".to_string(), mse)].into(),
            losses: Default::default(),
        },
    };
    let mut w = MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
    for l in [
        eval(200, 0.5),
        eval(300, 1.0),
        eval(400, 1.5),
        eval(500, 1.2),
    ] {
        w.append(&l).unwrap();
    }
    drop(w);
    let run = Run::load(&dir).unwrap();
    assert_eq!(
        run.best_eval.as_ref().unwrap().0,
        500,
        "{:?}",
        run.best_eval
    );
}

/// Edits at one step apply together: a value between them never trained
/// (walkthrough J: `meta_lr=0.001→0.5@200→0.002@200`, the 0.5 undone
/// while paused, in a table row and a legend as if it had run). An edit
/// undone at its step is no edit.
#[test]
fn edits_at_one_step_show_their_net_change() {
    let root = tempfile::tempdir().unwrap();
    let dir = session::create(root.path(), "paused", &crate::config::Config::default()).unwrap();
    let edit =
        |step: u64, key: &str, old: f64, new: f64| config_edit(step, key, old.into(), new.into());
    write_log(
        &dir,
        [
            edit(100, "meltr.meta_lr", 0.001, 0.003),
            edit(200, "meltr.meta_lr", 0.003, 0.5),
            edit(200, "meltr.meta_lr", 0.5, 0.002),
            edit(200, "aid.alpha", 0.1, 0.7),
            edit(200, "aid.alpha", 0.7, 0.1),
        ],
    );
    let run = Run::load(&dir).unwrap();
    assert_eq!(
        run.setting("meltr.meta_lr").as_deref(),
        Some("0.001→0.003@100→0.002@200")
    );
    assert!(!run.edited.contains_key("aid.alpha"), "{:?}", run.edited);
    assert_eq!(
        run.edits(),
        [
            (100, vec!["meltr.meta_lr".to_string()]),
            (200, vec!["meltr.meta_lr".to_string()])
        ]
    );
}

/// An edit applied at step 0, made while the runner set up, is the run's
/// start setting: no `*` in `ls`, no `0.1→0.2@0` in a table, pooled with
/// runs set so from the start (walkthrough F). At a later step it is an
/// edit as before.
#[test]
fn an_edit_before_the_first_step_is_the_runs_start_setting() {
    let root = tempfile::tempdir().unwrap();
    let dir = session::create(root.path(), "early", &crate::config::Config::default()).unwrap();
    let edit =
        |step: u64, key: &str, old: f64, new: f64| config_edit(step, key, old.into(), new.into());
    write_log(
        &dir,
        [
            edit(0, "meltr.gamma", 0.1, 0.2),
            edit(50, "aid.alpha", 0.1, 0.05),
        ],
    );
    let run = Run::load(&dir).unwrap();
    assert!(!run.edited.contains_key("meltr.gamma"), "{:?}", run.edited);
    assert_eq!(run.setting("aid.alpha").as_deref(), Some("0.1→0.05@50"));
}

/// A run as it stood at a step (`table --at-step`) has the config of that
/// step: an edit made at it (a resume's `--set` at the run's last step)
/// or after it came after its numbers (walkthrough S's run resumed at step
/// 600 with `train.steps=700` was no longer pooled with its sweep at 600).
#[test]
fn a_run_at_a_step_has_the_config_of_that_step() {
    let root = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config::default();
    config.train.steps = 700;
    config.meltr.meta_lr = 0.003;
    let dir = session::create(root.path(), "extended", &config).unwrap();
    write_log(
        &dir,
        [
            config_edit(100, "meltr.meta_lr", 0.001.into(), 0.003.into()),
            config_edit(600, "train.steps", 600.into(), 700.into()),
        ],
    );
    let whole = Run::load(&dir).unwrap();
    assert_eq!(whole.setting("train.steps").as_deref(), Some("600→700@600"));
    let then = whole.at_step(600);
    assert_eq!(then.setting("train.steps").as_deref(), Some("600"));
    assert_eq!(then.steps, 600);
    assert_eq!(
        then.setting("meltr.meta_lr").as_deref(),
        Some("0.001→0.003@100")
    );
    let before = whole.at_step(50);
    assert_eq!(before.setting("meltr.meta_lr").as_deref(), Some("0.001"));
    // With no eval at the step, its last before it is read: an edit
    // between them came after its numbers too (a review).
    write_log(
        &dir,
        [(
            80,
            Record::Eval {
                metrics: [("accuracy".to_string(), 0.5)].into(),
                losses: Default::default(),
            },
        )],
    );
    let at_90 = Run::load(&dir).unwrap().at_step(90);
    assert_eq!(at_90.setting("meltr.meta_lr").as_deref(), Some("0.001"));
}

/// A fork's change at its fork step is its setting at a later step, though
/// the eval read there is its parent's of the fork step (a review: it was
/// taken for an edit after that eval and undone).
#[test]
fn a_fork_at_a_step_keeps_its_own_change() {
    use crate::session::metrics::Level;
    let root = tempfile::tempdir().unwrap();
    let dir = fork_of_p_id_at_300(root.path());
    let eval = Record::Eval {
        metrics: [("accuracy".to_string(), 0.5)].into(),
        losses: Default::default(),
    };
    write_log(
        &dir,
        [
            (300, eval),
            (
                300,
                Record::Event {
                    level: Level::Info,
                    message: "forked from session p-id at step 300 with meltr.gamma=0.3".into(),
                },
            ),
            config_edit(300, "meltr.gamma", 0.1.into(), 0.3.into()),
        ],
    );
    let mut config = crate::config::Config::default();
    config.meltr.gamma = 0.3;
    std::fs::write(dir.join("config.toml"), config.to_toml_string()).unwrap();
    let then = Run::load(&dir).unwrap().at_step(350);
    assert_eq!(then.setting("meltr.gamma").as_deref(), Some("0.3"));
}

/// `ls` shows `–` for a `meltr.*` key in a fixed combiner's row
/// (walkthrough L: `meltr.on_collapse = restore` beside `primary` runs).
#[test]
fn ls_dashes_meltr_keys_in_the_rows_of_fixed_combiners() {
    let root = tempfile::tempdir().unwrap();
    let run = |name: &str, kind: &str, on_collapse: &str| {
        let mut config = crate::config::Config::default();
        config.combiner.kind = kind.parse().unwrap();
        config.meltr.on_collapse = on_collapse.parse().unwrap();
        let dir = session::create(root.path(), name, &config).unwrap();
        Run::load(&dir).unwrap()
    };
    let runs = vec![
        run("m-warn", "meltr", "warn"),
        run("m-restore", "meltr", "restore"),
        run("fixed", "primary", "restore"),
    ];
    let differing = keys::differing(&runs);
    assert!(differing.contains(&"meltr.on_collapse".to_string()));
    let text = super::render::text(&runs, &differing, false);
    let row = |name: &str| text.lines().find(|l| l.contains(name)).unwrap().to_string();
    assert!(row("m-restore").contains("restore"), "{text}");
    assert!(
        !row("fixed").contains("restore") && row("fixed").contains('–'),
        "{text}"
    );
}

/// `ls` read `aid.iterations 1` for a run that trained 294 of its 600
/// steps at 0, and no column said which sessions trained on several ranks
/// (walkthroughs X and Y): an edited value is starred, with a note, and
/// the device says the ranks.
#[test]
fn ls_stars_a_value_changed_while_the_run_trained_and_shows_ranks() {
    let root = tempfile::tempdir().unwrap();
    let config = |alpha: f64| {
        let mut config = crate::config::Config::default();
        config.aid.alpha = alpha;
        config
    };
    let edited = session::create(root.path(), "edited", &config(0.01)).unwrap();
    write_log(
        &edited,
        [config_edit(267, "aid.alpha", 0.1.into(), 0.01.into())],
    );
    let mut meta = session::SessionMeta::read(&edited).unwrap();
    meta.world_size = Some(1);
    meta.earlier_world_sizes = vec![2];
    meta.device = "cpu".into();
    meta.write(&edited).unwrap();
    let plain = session::create(root.path(), "plain", &config(0.3)).unwrap();
    let runs = vec![Run::load(&edited).unwrap(), Run::load(&plain).unwrap()];
    let text = super::render::text(&runs, &["aid.alpha".to_string()], false);
    let row = |name: &str| {
        let id = &runs.iter().find(|r| r.meta.name == name).unwrap().meta.id;
        text.lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap()
            .to_string()
    };
    assert!(row("edited").trim_end().ends_with("0.01*"), "{text}");
    assert!(row("edited").contains("cpu ×2→1"), "{text}");
    assert!(row("plain").trim_end().ends_with("0.3"), "{text}");
    assert!(
        text.contains("* changed while the run trained") && !text.contains("@267"),
        "{text}"
    );
    let json = super::render::json(&runs);
    assert!(json.contains("\"ranks\": \"2→1\""), "{json}");
    // Without an edit among the shown keys, no note.
    let unedited = super::render::text(&runs[1..], &["aid.alpha".to_string()], false);
    assert!(!unedited.contains('*'), "{unedited}");
}

/// Walkthrough A's run went aid.iterations 0→1→3→2→0 and ended where
/// the other sessions are: the key differs in no value, yet its column
/// stays for the run's star.
#[test]
fn a_key_changed_while_training_stays_a_column_when_its_end_value_is_shared() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let edited = session::create(root.path(), "edited", &config).unwrap();
    write_log(
        &edited,
        [config_edit(
            387,
            "aid.iterations",
            1.into(),
            config.aid.iterations.into(),
        )],
    );
    let plain = session::create(root.path(), "plain", &config).unwrap();
    let runs = vec![Run::load(&edited).unwrap(), Run::load(&plain).unwrap()];
    let differing = keys::differing(&runs);
    assert!(
        !differing.contains(&"aid.iterations".to_string()),
        "{differing:?}"
    );
    let columns = keys::with_edited(differing, &runs);
    assert!(
        columns.contains(&"aid.iterations".to_string()),
        "{columns:?}"
    );
    let text = super::render::text(&runs, &columns, false);
    assert!(
        text.contains(&format!("{}*", config.aid.iterations)),
        "{text}"
    );
}
