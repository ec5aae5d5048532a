//! Issue 17, items 3–5, end to end through the binary: the runs table
//! (`ls` with differing keys, filters, sorting, JSON and CSV), grouped
//! tables and figures (`table`, `compare`), and logs other tools read
//! (`wall` in metrics lines, provenance in session.json, `export --format
//! csv` and `--format tensorboard`, read back by pandas-free parsing and by
//! the `tensorboard` package). The expected numbers are always taken from
//! the sessions' own `metrics.jsonl`, read here independently as JSON.

mod common;

use common::{bin, repo, run_with_limit, text, torch_python};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const GROUP: &str = "ablation";
const STEPS: u64 = 60;

/// A sessions folder with five finished synthetic runs: `combiner.kind`
/// meltr and sum × seeds 0 and 1 in group `ablation`, and meltr seed 2
/// outside it. Made once for all tests of this file.
struct Sweep {
    root: PathBuf,
    /// Unix seconds just before the first run and just after the last.
    started: f64,
    ended: f64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn config_text(kind: &str, seed: u64) -> String {
    let base = std::fs::read_to_string(repo("configs/synthetic.toml")).unwrap();
    let text = base
        .replace("kind = \"meltr\"", &format!("kind = \"{kind}\""))
        .replace("seed = 0", &format!("seed = {seed}"))
        .replace("eval_every = 50", "eval_every = 20")
        .replace("device = \"auto\"", "device = \"cpu\"");
    assert!(
        text.contains(&format!("kind = \"{kind}\"")) && text.contains(&format!("seed = {seed}"))
    );
    text
}

fn sweep() -> &'static Sweep {
    static SWEEP: OnceLock<Sweep> = OnceLock::new();
    SWEEP.get_or_init(|| {
        let root = tempfile::tempdir().unwrap().keep();
        let configs = root.join("configs");
        std::fs::create_dir_all(&configs).unwrap();
        let started = now();
        let runs = [
            ("meltr", 0, Some(GROUP)),
            ("meltr", 1, Some(GROUP)),
            ("sum", 0, Some(GROUP)),
            ("sum", 1, Some(GROUP)),
            ("meltr", 2, None),
        ];
        for (kind, seed, group) in runs {
            let config = configs.join(format!("{kind}-{seed}.toml"));
            std::fs::write(&config, config_text(kind, seed)).unwrap();
            let mut cmd = bin();
            cmd.args(["run", "--headless", "--steps", &STEPS.to_string(), "-c"])
                .arg(&config)
                .args(["-n", &format!("{kind}-s{seed}")])
                .arg("--sessions-dir")
                .arg(root.join("sessions"));
            if let Some(group) = group {
                cmd.args(["--group", group]);
            }
            let out = run_with_limit(&mut cmd, Duration::from_secs(120));
            assert!(out.status.success(), "{}", text(&out));
        }
        Sweep {
            root: root.join("sessions"),
            started,
            ended: now(),
        }
    })
}

fn meltr(args: &[&str]) -> Output {
    let out = run_with_limit(
        bin().arg("--sessions-dir").arg(&sweep().root).args(args),
        Duration::from_secs(60),
    );
    out
}

fn ok(args: &[&str]) -> String {
    let out = meltr(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Every session folder of the sweep, by session name.
fn dirs() -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(&sweep().root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("session.json").exists())
        .map(|p| (session_json(&p)["name"].as_str().unwrap().to_string(), p))
        .collect()
}

fn session_json(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("session.json")).unwrap()).unwrap()
}

/// The lines of a session's metrics.jsonl, parsed as plain JSON.
fn lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The eval lines' metrics of a session: (step, name -> value).
fn evals(dir: &Path) -> Vec<(u64, BTreeMap<String, f64>)> {
    lines(dir)
        .into_iter()
        .filter(|l| l["kind"] == "eval")
        .map(|l| {
            let metrics = l["metrics"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                .collect();
            (l["step"].as_u64().unwrap(), metrics)
        })
        .collect()
}

/// Equal up to the last bit or two: serde_json (without its
/// `float_roundtrip` feature) may read a number one ulp off.
fn same(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 4.0 * f64::EPSILON * b.abs()
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// One CSV line's fields (RFC 4180 quoting: `"a, b"`, `""` for a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// A copy of the sweep's sessions with `meltr-s0` stopped short of its
/// end: its groups then carry a "did not finish" note.
fn copy_with_meltr_s0_stopped(dirs: &BTreeMap<String, PathBuf>) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for (name, dir) in dirs {
        let to = copy.path().join(dir.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        for file in ["session.json", "metrics.jsonl", "config.toml"] {
            std::fs::copy(dir.join(file), to.join(file)).unwrap();
        }
        if name == "meltr-s0" {
            let mut meta = meltr_tui::session::SessionMeta::read(&to).unwrap();
            meta.status = meltr_tui::session::Status::Stopped;
            meta.write(&to).unwrap();
        }
    }
    copy
}

/// [`copy_with_meltr_s0_stopped`] with one more session, `broken`: sum-s0
/// failed before its first eval (its log cut there).
fn copy_with_a_failed_session(dirs: &BTreeMap<String, PathBuf>) -> tempfile::TempDir {
    let copy = copy_with_meltr_s0_stopped(dirs);
    let from = copy.path().join(dirs["sum-s0"].file_name().unwrap());
    let to = copy.path().join("20260101-000000-broken");
    std::fs::create_dir_all(&to).unwrap();
    for file in ["session.json", "config.toml"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
    let log = std::fs::read_to_string(from.join("metrics.jsonl")).unwrap();
    let before_eval: String = log
        .lines()
        .take_while(|l| !l.contains("\"kind\":\"eval\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(to.join("metrics.jsonl"), before_eval).unwrap();
    let mut meta = meltr_tui::session::SessionMeta::read(&to).unwrap();
    meta.id = "20260101-000000-broken".into();
    meta.name = "broken".into();
    meta.group = Some(GROUP.into());
    meta.status = meltr_tui::session::Status::Failed;
    meta.write(&to).unwrap();
    copy
}

/// A session that failed before its first eval made `table` and `compare`
/// with no session named refuse every other (walkthrough A): it is left
/// out, said on stderr; named, or picked by status, it is still refused.
#[test]
fn table_and_compare_leave_out_a_session_that_failed_before_its_first_eval() {
    let copy = copy_with_a_failed_session(&dirs());
    let figure = copy.path().join("all.svg");
    let figure = figure.to_str().unwrap();
    let run = |args: &[&str]| {
        run_with_limit(
            bin().arg("--sessions-dir").arg(copy.path()).args(args),
            Duration::from_secs(60),
        )
    };
    for args in [
        &["table"][..],
        &["table", "--best"],
        &["compare", "-o", figure],
    ] {
        let out = run(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "left out a session with no eval line: 20260101-000000-broken (failed at step"
            ),
            "{args:?}: {stderr}"
        );
    }
    // A training series is drawn of it too (often the run that diverged).
    let out = run(&["compare", "--metric", "loss/primary", "-o", figure]);
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("left out"),
        "{}",
        text(&out)
    );
    for args in [
        &["table", "broken", "meltr-s1"][..],
        &["table", "--where", "status=failed,finished"],
        &["compare", "broken", "meltr-s1", "-o", figure],
    ] {
        let out = run(args);
        assert!(
            !out.status.success() && text(&out).contains("has no eval line"),
            "{args:?}: {}",
            text(&out)
        );
    }
}

/// In a CSV table, a key a fixed combiner does not read, and a run that is
/// no fork, are empty fields, not dashes (a walkthrough's numeric
/// `meltr.meta_lr` column read `–` in its `sum` rows).
#[test]
fn a_csv_table_leaves_keys_a_row_does_not_have_empty() {
    let dirs = dirs();
    let copy = copy_with_meltr_s0_stopped(&dirs);
    let config = copy
        .path()
        .join(dirs["meltr-s1"].file_name().unwrap())
        .join("config.toml");
    let body = std::fs::read_to_string(&config).unwrap();
    assert!(body.contains("meta_lr = 0.001\n"), "{body}");
    std::fs::write(
        &config,
        body.replace("meta_lr = 0.001\n", "meta_lr = 0.01\n"),
    )
    .unwrap();
    let out = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(copy.path())
            .args(["table", "--group", GROUP, "--format", "csv"]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", text(&out));
    let (header, rows) = parse_csv(&String::from_utf8_lossy(&out.stdout));
    let column = header
        .iter()
        .position(|h| h == "meltr.meta_lr")
        .expect("a meta_lr column");
    let kind = header
        .iter()
        .position(|h| h == "combiner.kind")
        .expect("a kind column");
    let sum = rows.iter().find(|r| r[kind] == "sum").expect("a sum row");
    assert_eq!(sum[column], "", "{header:?} {rows:?}");
    let meltr: Vec<&str> = rows
        .iter()
        .filter(|r| r[kind] == "meltr")
        .map(|r| r[column].as_str())
        .collect();
    assert!(
        meltr.contains(&"0.01") && meltr.contains(&"0.001"),
        "{rows:?}"
    );
    let markdown = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(copy.path())
            .args(["table", "--group", GROUP]),
        Duration::from_secs(60),
    );
    assert!(
        text(&markdown).contains("| sum | – |") || text(&markdown).contains("| – | sum |"),
        "{}",
        text(&markdown)
    );
}

/// A group's mean cut at its shortest run, and values a log axis cannot
/// draw, were left out of `compare`'s figure unsaid (walkthroughs): both
/// are said.
#[test]
fn compare_says_where_a_group_is_cut_short_and_what_a_log_axis_leaves_out() {
    let dirs = dirs();
    let copy = copy_with_meltr_s0_stopped(&dirs);
    let copied = |name: &str| copy.path().join(dirs[name].file_name().unwrap());
    // meltr-s0 ends after its first eval.
    let log = copied("meltr-s0").join("metrics.jsonl");
    let text_of = std::fs::read_to_string(&log).unwrap();
    let first_eval = text_of.find("\"kind\":\"eval\"").unwrap();
    let cut = first_eval + text_of[first_eval..].find('\n').unwrap() + 1;
    std::fs::write(&log, &text_of[..cut]).unwrap();
    // The sum runs' first eval of their primary metric is 0: their
    // group's mean is 0 there.
    for name in ["sum-s0", "sum-s1"] {
        let log = copied(name).join("metrics.jsonl");
        let mut zeroed = false;
        let lines: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                if v["kind"] == "eval" && !zeroed {
                    let metrics = v["metrics"].as_object_mut().unwrap();
                    let first = metrics.keys().next().unwrap().clone();
                    metrics.insert(first, 0.0.into());
                    zeroed = true;
                }
                v.to_string()
            })
            .collect();
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    }
    let primary = evals(&dirs["sum-s1"])[0].1.keys().next().unwrap().clone();
    let figure = copy.path().join("cut.svg");
    let figure = figure.to_str().unwrap();
    let compare = |args: &[&str]| {
        let out = run_with_limit(
            bin()
                .arg("--sessions-dir")
                .arg(copy.path())
                .args(["compare", "--metric", &primary, "-o", figure])
                .args(args),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let said = compare(&["--group", GROUP, "--log-scale"]);
    let eval_steps: Vec<u64> = evals(&dirs["meltr-s0"]).iter().map(|e| e.0).collect();
    assert!(
        said.contains(&format!(
            "note: kind=meltr's mean stops at step {}, the last step all its 2 runs logged; meltr-s0 ends first (step {}), its longest run at step {}",
            eval_steps[0],
            eval_steps[0],
            eval_steps.last().unwrap()
        )),
        "{said}"
    );
    assert!(!said.contains("kind=sum's mean stops"), "{said}");
    assert!(
        said.contains(&format!(
            "note: the log axis leaves out kind=sum's mean at 1 of its {n} steps and kind=sum's band's lower edge at 1 of its {n} steps",
            n = eval_steps.len()
        )) && !said.contains("kind=meltr's mean at"),
        "{said}"
    );
    // Drawn one by one, a run's own values are what is left out.
    let (sum_s1, meltr_s1) = (copied("sum-s1"), copied("meltr-s1"));
    let said = compare(&[
        "--log-scale",
        sum_s1.to_str().unwrap(),
        meltr_s1.to_str().unwrap(),
    ]);
    assert!(
        said.contains(&format!(
            "note: the log axis leaves out 1 of sum-s1's {} `{primary}` values",
            eval_steps.len()
        )) && !said.contains("meltr-s1's"),
        "{said}"
    );
    // On a linear axis, nothing is left out.
    let said = compare(&["--group", GROUP]);
    assert!(!said.contains("log axis"), "{said}");
}

fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut rows = text.lines().map(csv_fields);
    let header = rows.next().unwrap();
    let rows: Vec<Vec<String>> = rows.collect();
    for row in &rows {
        assert_eq!(row.len(), header.len(), "{row:?}");
    }
    (header, rows)
}

#[test]
fn ls_shows_the_keys_that_differ_as_columns() {
    let listing = ok(&["ls"]);
    let header = listing.lines().next().unwrap();
    for column in [
        "ID",
        "STATUS",
        "PRIMARY METRIC",
        "GROUP",
        "combiner.kind",
        "workload.seed",
    ] {
        assert!(header.contains(column), "{column} missing:\n{listing}");
    }
    // Keys equal in every session are no column.
    assert!(
        !header.contains("train.lr") && !header.contains("aid.iterations"),
        "{listing}"
    );
    assert_eq!(listing.lines().count(), 6, "{listing}");
    let row = listing.lines().find(|l| l.contains("sum-s1")).unwrap();
    assert!(
        row.contains(GROUP) && row.contains(" sum ") && row.contains("finished"),
        "{row}"
    );
    assert!(row.contains(&format!(" {STEPS}/{STEPS} ")), "{row}");
    // The metric's direction, as the TUI's header and `table` show it.
    assert!(row.contains(" primary_mse↓ "), "{row}");
    // Within one setting only the seed differs.
    let meltr = ok(&["ls", "--where", "combiner.kind=meltr", "--group", GROUP]);
    let header = meltr.lines().next().unwrap();
    assert!(
        header.contains("workload.seed") && !header.contains("combiner.kind"),
        "{meltr}"
    );
    assert_eq!(meltr.lines().count(), 3, "{meltr}");
    // One row left has nothing to differ from: it keeps the columns that
    // tell the directory's runs apart.
    let one = ok(&[
        "ls",
        "--where",
        "combiner.kind=meltr",
        "--where",
        "workload.seed=1",
        "--group",
        GROUP,
    ]);
    let header = one.lines().next().unwrap();
    assert!(
        header.contains("workload.seed") && header.contains("combiner.kind"),
        "{one}"
    );
    assert_eq!(one.lines().count(), 2, "{one}");
}

#[test]
fn ls_filters_sorts_and_prints_json_and_csv() {
    let json: Value = serde_json::from_str(&ok(&[
        "ls",
        "--json",
        "--group",
        GROUP,
        "--where",
        "combiner.kind=sum",
    ]))
    .unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json:#}");
    for row in rows {
        assert_eq!(row["group"], GROUP);
        assert_eq!(row["config"]["combiner.kind"], "sum");
        assert_eq!(row["status"], "finished");
        // The metric shown is the last eval's, as the log says.
        let dir = PathBuf::from(row["dir"].as_str().unwrap());
        let last = evals(&dir).last().unwrap().1["primary_mse"];
        assert_eq!(row["metric"].as_f64().unwrap(), last);
        let best = evals(&dir)
            .iter()
            .map(|e| e.1["primary_mse"])
            .fold(f64::INFINITY, f64::min);
        assert_eq!(
            row["best_metric"].as_f64().unwrap(),
            best,
            "lower is better"
        );
    }
    // A key given twice, or with a list, holds for either value; other
    // keys must hold as well (walkthrough N's pair selected nothing).
    let count = |args: &[&str]| -> usize {
        let mut all = vec!["ls", "--json"];
        all.extend_from_slice(args);
        let rows: Value = serde_json::from_str(&ok(&all)).unwrap();
        rows.as_array().unwrap().len()
    };
    let (kind_meltr, kind_sum) = ("combiner.kind=meltr", "combiner.kind=sum");
    assert_eq!(count(&["--where", kind_meltr, "--where", kind_sum]), 5);
    assert_eq!(count(&["--where", "combiner.kind=meltr,sum"]), 5);
    let both_in_group = ["--group", GROUP, "--where", kind_meltr, "--where", kind_sum];
    assert_eq!(count(&both_in_group), 4);
    let seed_one = [
        "--where",
        "combiner.kind=meltr,sum",
        "--where",
        "workload.seed=1",
    ];
    assert_eq!(count(&seed_one), 2);
    // Groups are any of those given, each checked.
    assert_eq!(count(&["--group", GROUP, "--group", GROUP]), 4);
    let out = meltr(&["ls", "--group", GROUP, "--group", "nope"]);
    assert!(text(&out).contains("no group `nope`"), "{}", text(&out));
    // A value in a list that no session has is still named.
    let out = meltr(&["ls", "--where", "combiner.kind=meltr,smu"]);
    assert!(
        text(&out).contains("no session has combiner.kind=smu"),
        "{}",
        text(&out)
    );
    // Numbers match by value; status is a key too.
    let seeds: Value = serde_json::from_str(&ok(&[
        "ls",
        "--json",
        "--where",
        "workload.seed=1.0",
        "--where",
        "status=finished",
    ]))
    .unwrap();
    assert_eq!(seeds.as_array().unwrap().len(), 2, "{seeds:#}");

    // Sorted by the primary metric, best (lowest MSE) first.
    let sorted: Value = serde_json::from_str(&ok(&["ls", "--json", "--sort", "metric"])).unwrap();
    let metrics: Vec<f64> = sorted
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_f64().unwrap())
        .collect();
    assert_eq!(metrics.len(), 5);
    assert!(metrics.windows(2).all(|w| w[0] <= w[1]), "{metrics:?}");
    let by_id: Value = serde_json::from_str(&ok(&["ls", "--json"])).unwrap();
    let unsorted: Vec<f64> = by_id
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"].as_f64().unwrap())
        .collect();
    // The same rows, sorted (whether id order happened to be sorted
    // already depends on the runs' rounding, so it is not asserted).
    let mut by_metric = unsorted.clone();
    by_metric.sort_by(f64::total_cmp);
    assert_eq!(
        by_metric, metrics,
        "ls --sort metric reorders the same rows"
    );
    // Sorted by the best value, the listing shows it (and its step).
    let best_rows = ok(&["ls", "--sort", "best"]);
    let header = best_rows.lines().next().unwrap();
    let at = |column: &str| header.find(column).unwrap_or(usize::MAX);
    assert!(
        at("PRIMARY METRIC") < at("BEST") && at("BEST") < at("DEVICE"),
        "{best_rows}"
    );
    let row = &by_id.as_array().unwrap()[0];
    let best = format!(
        "{} @",
        meltr_tui::numfmt::readable(row["best_metric"].as_f64().unwrap())
    );
    let line = best_rows
        .lines()
        .find(|l| l.starts_with(row["id"].as_str().unwrap()))
        .unwrap();
    assert!(line.contains(&best), "{best} in {line}");
    assert!(!ok(&["ls"]).lines().next().unwrap().contains("BEST"));

    // CSV: every config key a column, one row a session.
    let (header, rows) = parse_csv(&ok(&["ls", "--csv"]));
    assert_eq!(rows.len(), 5);
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("{name}: {header:?}"))
    };
    for key in [
        "id",
        "group",
        "metric",
        "combiner.kind",
        "train.lr",
        "workload.seed",
    ] {
        col(key);
    }
    let kinds: Vec<&str> = rows
        .iter()
        .map(|r| r[col("combiner.kind")].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "sum").count(),
        2,
        "{kinds:?}"
    );
    assert!(rows
        .iter()
        .all(|r| r[col("workload.auxiliary")] == r#"["helpful","harmful"]"#));
}

#[test]
fn ls_names_an_unknown_key_instead_of_listing_nothing() {
    let out = meltr(&["ls", "--where", "combiner.knd=meltr"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let message = text(&out);
    assert!(
        message.contains("no session has the key `combiner.knd`: did you mean combiner.kind?"),
        "{message}"
    );
    let out = meltr(&["ls", "--where", "meltr.gama=0.3"]);
    assert!(
        text(&out).contains("did you mean meltr.gamma?"),
        "{}",
        text(&out)
    );
    let out = meltr(&["ls", "--where", "combiner.kind"]);
    assert!(text(&out).contains("KEY=VALUE"), "{}", text(&out));
    // So does a value no session has (a walkthrough's `metlr` listed
    // nothing, exit 0), in ls as in table.
    for command in ["ls", "table"] {
        let out = meltr(&[command, "--where", "combiner.kind=metlr"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains("no session has combiner.kind=metlr; its values here: meltr, sum"),
            "{command}: {}",
            text(&out)
        );
    }
    // For scripts polling for a session, `ls --json` selects none instead.
    assert_eq!(
        ok(&["ls", "--json", "--where", "combiner.kind=metlr"]).trim(),
        "[]"
    );
    // An unknown group names the groups there, in ls as in table/compare.
    for command in ["ls", "table"] {
        let out = meltr(&[command, "--group", "nope"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let message = text(&out);
        assert!(
            message.contains(&format!("no group `nope`; the groups here: {GROUP}")),
            "{command}: {message}"
        );
    }
}

/// The table's numbers, mean and sample std over seeds per setting, equal
/// those computed here from each session's metrics.jsonl.
#[test]
fn table_reports_mean_and_std_per_group_from_the_sessions_own_numbers() {
    let dirs = dirs();
    // Evals every 20 steps: --at-step 40 reads the runs' second of three.
    for (best, at_step) in [
        (false, None),
        (true, None),
        (false, Some(40)),
        (true, Some(40)),
    ] {
        let mut args = vec!["table", "--group", GROUP, "--format", "csv"];
        if best {
            args.push("--best");
        }
        let at = at_step.map(|s: u64| s.to_string());
        if let Some(at) = &at {
            args.extend(["--at-step", at]);
        }
        let (header, rows) = parse_csv(&ok(&args));
        assert_eq!(header[..2], ["combiner.kind", "n"], "{header:?}");
        assert_eq!(rows.len(), 2);
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        for row in &rows {
            let kind = &row[0];
            assert_eq!(row[1], "2");
            let values: Vec<f64> = [0, 1]
                .iter()
                .map(|seed| {
                    let mut evals = evals(&dirs[&format!("{kind}-s{seed}")]);
                    evals.retain(|(step, _)| at_step.is_none_or(|at| *step <= at));
                    assert_eq!(evals.len(), if at_step.is_some() { 2 } else { 3 });
                    let metric = |e: &(u64, BTreeMap<String, f64>)| e.1["primary_mse"];
                    if best {
                        evals.iter().map(metric).fold(f64::INFINITY, f64::min)
                    } else {
                        metric(evals.last().unwrap())
                    }
                })
                .collect();
            let (mean, std) = mean_std(&values);
            let got = |c: &str| row[col(c)].parse::<f64>().unwrap();
            // An f32 run's numbers are written at f32's precision (2^-24
            // relative; walkthrough L's CSV read 0.0020000000949949026).
            let f32_close = |a: f64, b: f64| (a - b).abs() <= 1.2e-7 * b.abs().max(mean.abs());
            assert!(
                f32_close(got("primary_mse_mean"), mean),
                "{row:?} {values:?}"
            );
            assert!(f32_close(got("primary_mse_std"), std), "{row:?} {values:?}");
            // The logged f32s themselves, read back as f32s.
            let f32_same = |a: f64, b: f64| a as f32 == b as f32 && same(f64::from(b as f32), b);
            assert!(f32_same(got("primary_mse_min"), values[0].min(values[1])));
            assert!(f32_same(got("primary_mse_max"), values[0].max(values[1])));
        }
    }
    // One run a row: no std to explain (walkthrough G).
    let single = ok(&["table", "--group", GROUP, "--where", "workload.seed=0"]);
    assert!(
        single.contains("; one run a row; bold: a column's best value.")
            && !single.contains("sample std"),
        "{single}"
    );
    let md = ok(&["table", "--group", GROUP]);
    assert!(
        md.contains("; mean ± sample std over the n runs of each group; bold: "),
        "{md}"
    );
    // A step between evals reads each run's last eval before it, and says
    // so; a step no run reached is refused, naming the runs.
    let md = ok(&["table", "--group", GROUP, "--at-step", "50"]);
    assert!(
        md.contains("each run's last eval up to step 50")
            // Every run (evals every 20): not "some" (walkthrough G).
            && md.contains("--at-step 50: no eval at that step in any run, so each one's last eval before it is read: ")
            && md.contains(" at step 40"),
        "{md}"
    );
    // A run stopped short of its end is read at the step on purpose: no
    // "did not finish" note then (a copy, one run's status set to stopped).
    let copy = copy_with_meltr_s0_stopped(&dirs);
    let table_of_copy = |extra: &[&str]| {
        let out = run_with_limit(
            bin()
                .arg("--sessions-dir")
                .arg(copy.path())
                .args(["table", "--group", GROUP])
                .args(extra),
            Duration::from_secs(60),
        );
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(table_of_copy(&[]).contains("has runs that did not finish"));
    assert!(!table_of_copy(&["--at-step", "40"]).contains("did not finish"));
    // Before the first eval (at 20): said as such, not "at step 10"
    // (walkthrough Q).
    let out = meltr(&["table", "--group", GROUP, "--at-step", "10"]);
    assert!(
        !out.status.success()
            && text(&out).contains("--at-step 10: no eval at or before it in ")
            && text(&out).contains("(its first at step 20)"),
        "{}",
        text(&out)
    );
    let out = meltr(&["table", "--group", GROUP, "--at-step", "61"]);
    assert!(
        !out.status.success()
            && text(&out).contains("--at-step 61: sessions have not reached it: ")
            && text(&out).contains("(at step 60)"),
        "{}",
        text(&out)
    );
    // --group-by regroups: by seed, each group holds meltr and sum.
    let (header, rows) = parse_csv(&ok(&[
        "table",
        "--group",
        GROUP,
        "--group-by",
        "workload.seed",
        "--format",
        "csv",
    ]));
    assert_eq!(header[..2], ["workload.seed", "n"], "{header:?}");
    let seed0: Vec<f64> = ["meltr-s0", "sum-s0"]
        .iter()
        .map(|name| evals(&dirs[*name]).last().unwrap().1["primary_mse"])
        .collect();
    assert_eq!(
        (rows.len(), rows[0][0].as_str(), rows[0][1].as_str()),
        (2, "0", "2")
    );
    // f32 runs' numbers at f32's precision (every group: walkthrough A's
    // CSV had some at f64's, where the log's digits parsed a ulp off).
    let mean: f32 = rows[0][2].parse().unwrap();
    assert_eq!(mean, mean_std(&seed0).0 as f32, "{rows:?}");
    assert!(rows.iter().all(|row| row[2].len() <= 12), "{rows:?}");
    // A paper's names for a column's values (walkthrough N's LaTeX rows
    // read `meltr`); a rename that names no cell lists the cells.
    let by_kind_labelled = |labels: &[&str]| {
        let mut args = vec!["table", "--group", GROUP, "--group-by", "combiner.kind"];
        for label in labels {
            args.extend(["--label", label]);
        }
        args.extend(["--format", "csv"]);
        meltr(&args)
    };
    let by_kind = |label: &str| by_kind_labelled(&[label]);
    let out = by_kind("kind=meltr=MELTR");
    assert!(out.status.success(), "{}", text(&out));
    let renamed = String::from_utf8(out.stdout).unwrap();
    let (_, rows) = parse_csv(&renamed);
    let kinds: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(kinds, ["MELTR", "sum"], "{renamed}");
    let out = by_kind("kind=metlr=MELTR");
    assert!(
        !out.status.success()
            && text(&out).contains("the cells: combiner.kind=meltr, combiner.kind=sum"),
        "{}",
        text(&out)
    );
    // A header's TEXT may hold `=` (it was read as a cell that is not
    // there), and a metric is named as the metrics log names it too.
    let out = by_kind_labelled(&["eval/primary_mse=MSE (k=1)", "kind=meltr=γ=0.1"]);
    assert!(out.status.success(), "{}", text(&out));
    let (header, rows) = parse_csv(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(header[2], "MSE (k=1)_mean", "{header:?}");
    assert_eq!(rows[0][0], "γ=0.1", "{rows:?}");
    // Filtered to one combiner, no column shows it: a note does (the rows
    // read the group's name alone).
    let meltr_only = ok(&["table", "--group", GROUP, "--where", "combiner.kind=meltr"]);
    assert!(
        meltr_only.contains("- note: only sessions where combiner.kind=meltr"),
        "{meltr_only}"
    );
    // The full table's `--label`s work on it too: a cell of the column the
    // filter hid is no header rename (it failed, walkthrough I).
    let labelled = ok(&[
        "table",
        "--group",
        GROUP,
        "--where",
        "combiner.kind=meltr",
        "--label",
        "kind=meltr=MELTR",
        "--label",
        "kind=sum=Sum",
        "--label",
        "kind=Method",
    ]);
    assert!(
        labelled.contains(
            "--label `kind=Method`: --where keeps one value of kind, so no column shows it"
        ),
        "{labelled}"
    );
    assert!(
        labelled.contains("--label `kind=meltr=MELTR`: every session here has combiner.kind=meltr, so no column shows it")
            && labelled.contains("--label `kind=sum=Sum`: no session here has combiner.kind=sum; nothing was renamed"),
        "{labelled}"
    );
    let both = ok(&[
        "table",
        "--group",
        GROUP,
        "--where",
        "combiner.kind=meltr,sum",
    ]);
    assert!(!both.contains("only sessions where"), "{both}");
    // A key given twice holds for either value, said as one list.
    let twice = ok(&[
        "table",
        "--group",
        GROUP,
        "--group-by",
        "combiner.kind",
        "--where",
        "workload.seed=0",
        "--where",
        "workload.seed=1",
        "--where",
        "status=finished",
    ]);
    assert!(
        twice.contains("only sessions where workload.seed=0,1 and status=finished"),
        "{twice}"
    );
    // A group pooling other settings says so in the table's file too (it
    // went to the terminal only; walkthrough).
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("by-seed.md");
    ok(&[
        "table",
        "--group",
        GROUP,
        "--group-by",
        "workload.seed",
        "-o",
        file.to_str().unwrap(),
    ]);
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("note: seed=0 (n=2) pools runs that differ in combiner.kind"),
        "{written}"
    );
    // Markdown and LaTeX show the same groups with n and mean ± std.
    let md = ok(&["table", "--group", GROUP]);
    assert!(
        md.starts_with("| combiner.kind | n | primary_mse ↓ |"),
        "{md}"
    );
    assert!(
        md.contains("| meltr | 2 | ") && md.contains("| sum | 2 | ") && md.contains(" ± "),
        "{md}"
    );
    assert!(md.contains("**"), "the best mean is bold: {md}");
    let latex = ok(&["table", "--group", GROUP, "--format", "latex"]);
    for part in [
        "\\toprule",
        "\\midrule",
        "\\bottomrule",
        "$n$",
        "primary\\_mse $\\downarrow$",
        "\\pm",
    ] {
        assert!(latex.contains(part), "{part}:\n{latex}");
    }
}

#[test]
fn compare_draws_one_banded_curve_per_setting() {
    let out = tempfile::tempdir().unwrap();
    let svg = out.path().join("ablation.svg");
    let said = ok(&["compare", "--group", GROUP, "-o", svg.to_str().unwrap()]);
    assert!(
        said.contains("kind=meltr (n=2)") && said.contains("kind=sum (n=2)"),
        "{said}"
    );
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(
        drawn.matches("fill-opacity=\"0.2\"").count(),
        2,
        "one band per setting"
    );
    assert!(
        drawn.contains("kind=meltr (n=2)") && drawn.contains("mean, min–max of 2 runs"),
        "legend and note: two runs' std band is their min–max"
    );
    // Said where it is made too (walkthrough J: `--band std` drew the
    // default's figure, only the axis saying why).
    assert!(
        said.contains("a group of 2 runs is drawn with its min–max band"),
        "{said}"
    );
    // Beside a group of three (meltr with its ungrouped seed 2), a pair's
    // band is still its min–max, and the axis says so (walkthrough D).
    let mixed = out.path().join("mixed.svg");
    let said = ok(&[
        "compare",
        "--group-by",
        "combiner.kind",
        "-o",
        mixed.to_str().unwrap(),
    ]);
    assert!(said.contains("(n=3)") && said.contains("(n=2)"), "{said}");
    let drawn = std::fs::read_to_string(&mixed).unwrap();
    assert!(
        drawn.contains("mean ± std over runs (min–max of 2)"),
        "{said}"
    );
    // The group's comparison with more options, into `file`: what it said.
    let group_figure = |options: &[&str], file: &Path| -> String {
        let mut args = vec!["compare", "--group", GROUP];
        args.extend_from_slice(options);
        args.extend_from_slice(&["-o", file.to_str().unwrap()]);
        ok(&args)
    };
    // One group left by --where is named by it, not by its sweep's name
    // (walkthrough N).
    let said = group_figure(
        &["--where", "combiner.kind=sum"],
        &out.path().join("one.svg"),
    );
    assert!(said.contains(": kind=sum (n=2)"), "{said}");
    let minmax = out.path().join("minmax.png");
    group_figure(&["--band", "minmax"], &minmax);
    assert!(std::fs::metadata(&minmax).unwrap().len() > 10_000);
    let log = out.path().join("log.svg");
    group_figure(&["--log-scale"], &log);
    assert_ne!(
        std::fs::read_to_string(&log).unwrap(),
        drawn,
        "--log-scale changes the y axis"
    );
    // A paper's names for the groups.
    let renamed = out.path().join("renamed.svg");
    let said = group_figure(&["--label", "kind=meltr=MELTR"], &renamed);
    // Said as drawn, notes included (walkthrough Q's still read
    // `kind=meltr`): a copy with a run stopped short has one.
    assert!(said.contains(": MELTR (n=2); kind=sum (n=2)"), "{said}");
    let copy = copy_with_meltr_s0_stopped(&dirs());
    let noted = text(&run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(copy.path())
            .args([
                "compare",
                "--group",
                GROUP,
                "--label",
                "kind=meltr=MELTR",
                "-o",
            ])
            .arg(out.path().join("noted.svg")),
        Duration::from_secs(60),
    ));
    assert!(
        noted.contains("note: MELTR (n=2) has runs that did not finish")
            && !noted.contains("kind=meltr"),
        "{noted}"
    );
    let text = std::fs::read_to_string(&renamed).unwrap();
    assert!(
        text.contains("MELTR (n=2)")
            && !text.contains("kind=meltr")
            && text.contains("kind=sum (n=2)"),
        "{text}"
    );
    // Singles stay as before: no band, session names in the legend, each
    // followed by the setting that tells it apart (walkthrough G's fork
    // figure read `tui2` and `tui2 → tui2-fork`, the γ it changed nowhere).
    let single = out.path().join("single.svg");
    let dirs = dirs();
    ok(&[
        "compare",
        dirs["meltr-s0"].to_str().unwrap(),
        dirs["sum-s0"].to_str().unwrap(),
        "-o",
        single.to_str().unwrap(),
    ]);
    let drawn = std::fs::read_to_string(&single).unwrap();
    assert!(
        !drawn.contains("fill-opacity=\"0.2\"")
            && drawn.contains("meltr-s0 (kind=meltr)")
            && drawn.contains("sum-s0 (kind=sum)"),
        "{drawn}"
    );
    // `--label NAME=TEXT` puts TEXT after a session's name in place of its
    // settings (walkthrough J: refused, while the one setting a fork
    // changed was cut from a long list).
    let said = ok(&[
        "compare",
        dirs["meltr-s0"].to_str().unwrap(),
        dirs["sum-s0"].to_str().unwrap(),
        "--label",
        "meltr-s0=MELTR, learned weights",
        "-o",
        single.to_str().unwrap(),
    ]);
    let drawn = std::fs::read_to_string(&single).unwrap();
    assert!(
        drawn.contains("meltr-s0 (MELTR, learned weights)")
            && drawn.contains("sum-s0 (kind=sum)")
            && !drawn.contains("kind=meltr"),
        "{said}\n{drawn}"
    );
    // `sum` keeps its colour (the palette's second) in a figure without
    // MELTR, and MELTR its blue wherever it comes in the list.
    let (meltr_blue, sum_red) = ("#0072B2", "#D55E00");
    let alone = out.path().join("sum-alone.svg");
    let sum_s0 = dirs["sum-s0"].to_str().unwrap();
    ok(&["compare", sum_s0, "-o", alone.to_str().unwrap()]);
    let drawn = std::fs::read_to_string(&alone).unwrap();
    assert!(
        drawn.contains(sum_red) && !drawn.contains(meltr_blue),
        "{drawn}"
    );
    let swapped = out.path().join("sum-first.svg");
    let meltr_s0 = dirs["meltr-s0"].to_str().unwrap();
    ok(&["compare", sum_s0, meltr_s0, "-o", swapped.to_str().unwrap()]);
    let drawn = std::fs::read_to_string(&swapped).unwrap();
    let legend_colour = |name: &str| {
        let at = drawn.find(name).unwrap();
        // The legend's line sample is the last path before its text.
        let sample = &drawn[drawn[..at].rfind("<path").unwrap()..];
        let colour = sample.find("stroke=\"#").unwrap() + "stroke=\"".len();
        sample[colour..colour + 7].to_string()
    };
    assert_eq!(legend_colour("sum-s0 (kind=sum)"), sum_red, "{drawn}");
    assert_eq!(
        legend_colour("meltr-s0 (kind=meltr)"),
        meltr_blue,
        "{drawn}"
    );
}

#[test]
fn metrics_lines_carry_wall_time_and_session_json_its_provenance() {
    let sweep = sweep();
    for dir in dirs().values() {
        let walls: Vec<f64> = lines(dir)
            .iter()
            .map(|l| l["wall"].as_f64().unwrap())
            .collect();
        assert!(walls.windows(2).all(|w| w[0] <= w[1]), "{walls:?}");
        assert!(
            walls[0] >= sweep.started && *walls.last().unwrap() <= sweep.ended,
            "{walls:?}"
        );
        let meta = session_json(dir);
        assert_eq!(meta["meltr_tui_version"], env!("CARGO_PKG_VERSION"));
        assert!(!meta["host"].as_str().unwrap().is_empty());
        let command: Vec<&str> = meta["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            command.contains(&"run") && command.contains(&"--headless"),
            "{command:?}"
        );
    }
    // The runs ran in this repository's folder: its HEAD is recorded (and
    // nothing, were the checkout not a git repository).
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo("."))
        .output()
        .unwrap();
    let meta = session_json(&dirs()["meltr-s0"]);
    if !head.status.success() {
        assert!(meta.get("git_commit").is_none(), "{meta:#}");
        return;
    }
    let head = String::from_utf8(head.stdout).unwrap();
    assert_eq!(meta["git_commit"].as_str(), Some(head.trim()), "{meta:#}");
    assert!(meta["git_dirty"].is_boolean());
}

#[test]
fn export_csv_is_one_tidy_table_of_the_log() {
    let dir = dirs()["meltr-s0"].clone();
    // Several sessions at once (walkthrough N exported them one by one):
    // data by id in one folder, figures in a folder per session.
    let both = tempfile::tempdir().unwrap();
    let other = dirs()["sum-s0"].clone();
    let (a, b) = (dir.to_str().unwrap(), other.to_str().unwrap());
    ok(&[
        "export",
        a,
        b,
        "--format",
        "csv,svg",
        "--out",
        both.path().to_str().unwrap(),
    ]);
    for d in [&dir, &other] {
        let id = d.file_name().unwrap().to_str().unwrap();
        assert!(both.path().join(format!("{id}.csv")).is_file(), "{id}.csv");
        assert!(
            both.path().join(id).join("losses.svg").is_file(),
            "{id}/losses.svg"
        );
    }
    let out = tempfile::tempdir().unwrap();
    let said = ok(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "csv",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let id = dir.file_name().unwrap().to_str().unwrap();
    let path = out.path().join(format!("{id}.csv"));
    assert!(said.contains(path.to_str().unwrap()), "{said}");
    let (header, rows) = parse_csv(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(
        header,
        ["session", "step", "wall", "time", "series", "value"]
    );
    // Each row names its session: runs' files concatenate into one table.
    assert!(rows.iter().all(|r| r[0] == id), "{:?}", &rows[..2]);
    let got: BTreeMap<(u64, String), (f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                (r[1].parse().unwrap(), r[4].clone()),
                (r[2].parse().unwrap(), r[5].parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(got.len(), rows.len(), "one value per (step, series)");
    // Every number of the log's train, meta and eval lines is a row.
    let mut expected = 0;
    for line in lines(&dir) {
        let step = line["step"].as_u64().unwrap();
        let wall = line["wall"].as_f64().unwrap();
        let mut check = |series: String, v: &Value| {
            let (w, value) = got[&(step, series.clone())];
            // An f32 run's f32 values are written at f32's precision.
            let logged = v.as_f64().unwrap();
            let as_f32 = f64::from(logged as f32) == logged && value as f32 == logged as f32;
            assert!(
                same(value, logged) || as_f32,
                "{series} at {step}: {value} vs {v}"
            );
            assert!((w - wall).abs() < 1e-5, "{series}: wall {w} vs {wall}");
            expected += 1;
        };
        match line["kind"].as_str().unwrap() {
            "train" => {
                for (name, v) in line["losses"].as_object().unwrap() {
                    check(format!("loss/{name}"), v);
                }
                for (name, v) in line["weights"].as_object().unwrap() {
                    check(format!("weight/{name}"), v);
                }
                check("loss/total".into(), &line["total"]);
                check("lr".into(), &line["lr"]);
            }
            "meta" => check("meta/hypergrad_norm".into(), &line["hypergrad_norm"]),
            "eval" => {
                for (name, v) in line["metrics"].as_object().unwrap() {
                    check(format!("eval/{name}"), v);
                }
            }
            _ => {}
        }
    }
    assert!(expected > 50, "{expected}");
}

#[test]
fn export_tensorboard_is_read_back_by_tensorboard_itself() {
    let dir = dirs()["meltr-s1"].clone();
    let out = tempfile::tempdir().unwrap();
    ok(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "tensorboard",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    // A second export replaces the first rather than doubling every point.
    ok(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "tensorboard",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let id = dir.file_name().unwrap().to_str().unwrap();
    let run = out.path().join(id);
    let files: Vec<_> = std::fs::read_dir(&run).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let read = std::process::Command::new(torch_python())
        .arg(repo("tests/fixtures/read_tensorboard.py"))
        .arg(&run)
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", text(&read));
    let tb: Value = serde_json::from_slice(&read.stdout).unwrap();
    let scalars = tb["scalars"].as_object().unwrap();
    // Expected: every series of the log, from metrics.jsonl.
    let mut expected: BTreeMap<String, Vec<(u64, f64, f64)>> = BTreeMap::new();
    for line in lines(&dir) {
        let step = line["step"].as_u64().unwrap();
        let wall = line["wall"].as_f64().unwrap();
        let mut add = |tag: String, v: &Value| {
            expected
                .entry(tag)
                .or_default()
                .push((step, wall, v.as_f64().unwrap()));
        };
        match line["kind"].as_str().unwrap() {
            "train" => {
                for (field, prefix) in [
                    ("losses", "loss"),
                    ("weights", "weight"),
                    ("shares", "share"),
                ] {
                    for (name, v) in line[field].as_object().into_iter().flatten() {
                        add(format!("{prefix}/{name}"), v);
                    }
                }
                add("loss/total".into(), &line["total"]);
                add("lr".into(), &line["lr"]);
            }
            "meta" => {
                for field in [
                    "hypergrad_norm",
                    "reg",
                    "meta_lr",
                    "aid_iterations",
                    "gamma",
                ] {
                    add(format!("meta/{field}"), &line[field]);
                }
            }
            "eval" => {
                for (name, v) in line["metrics"].as_object().unwrap() {
                    add(format!("eval/{name}"), v);
                }
                for (name, v) in line["losses"].as_object().unwrap() {
                    add(format!("eval_loss/{name}"), v);
                }
            }
            _ => {}
        }
    }
    let tags: Vec<&String> = scalars.keys().collect();
    let wanted: Vec<&String> = expected.keys().collect();
    assert_eq!(tags, wanted);
    assert!(
        expected.contains_key("weight/helpful") && expected.contains_key("meta/hypergrad_norm")
    );
    for (tag, points) in &expected {
        let got = scalars[tag].as_array().unwrap();
        assert_eq!(got.len(), points.len(), "{tag}");
        for (g, (step, wall, value)) in got.iter().zip(points) {
            assert_eq!(g[0].as_u64().unwrap(), *step, "{tag}");
            assert!((g[1].as_f64().unwrap() - wall).abs() < 1e-6, "{tag}: wall");
            // Scalars are float32 in event files.
            let got = g[2].as_f64().unwrap();
            assert_eq!(
                got as f32, *value as f32,
                "{tag} at {step}: {got} vs {value}"
            );
        }
    }
    // The config as hyperparameters, the eval metrics as their metrics.
    let hp = &tb["hparams"];
    assert_eq!(hp["combiner.kind"], "meltr");
    assert_eq!(hp["workload.seed"], 1.0);
    assert_eq!(hp["aid.iterations"], 0.0);
    assert_eq!(hp["group"], GROUP);
    assert!(tb["hparam_infos"].as_array().unwrap().len() > 20);
    assert_eq!(tb["metric_tags"], serde_json::json!(["eval/primary_mse"]));
    assert_eq!(tb["end_status"], 1, "STATUS_SUCCESS for a finished run");
}

/// `ls --json | head -c 1` panicked on the closed pipe, exit 101
/// (walkthrough D): a listing whose reader went away ends quietly.
#[test]
fn a_listing_whose_reader_went_away_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    for args in [&["ls", "--json"][..], &["table", "--group", GROUP]] {
        let mut child = bin()
            .arg("--sessions-dir")
            .arg(&sweep().root)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && out.status.code() != Some(101),
            "{args:?}: {:?} {stderr}",
            out.status
        );
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

/// Walkthrough D: a metric named twice made two equal columns; a `|` in a
/// label split its Markdown row; `-o` into a missing folder printed the
/// table, then failed (`compare -o` and `export --out` make theirs).
#[test]
fn table_names_a_metric_once_escapes_bars_and_makes_its_folder() {
    let csv = ok(&[
        "table",
        "--group",
        GROUP,
        "--format",
        "csv",
        "--metric",
        "primary_mse",
        "--metric",
        "eval/primary_mse",
    ]);
    let header = csv.lines().next().unwrap();
    assert_eq!(header.matches("primary_mse_mean").count(), 1, "{header}");
    let md = ok(&[
        "table",
        "--group",
        GROUP,
        "--label",
        "combiner.kind=meltr=a|b",
    ]);
    assert!(md.contains("| a\\|b |"), "{md}");
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("new/folder/t.md");
    // The file alone: nothing on stdout (a walkthrough's `-o table.tex`
    // printed the table too).
    let printed = ok(&["table", "--group", GROUP, "-o", file.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&file).unwrap().contains("| 2 |"));
    assert!(!printed.contains("| 2 |"), "{printed}");
}
