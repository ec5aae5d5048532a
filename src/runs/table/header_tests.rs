//! `table --label`'s header renames, and its math in LaTeX.

use super::tests::{accuracy_run, markdown};
use super::*;

/// `--label KEY=TEXT` heads a key's column or a metric's with TEXT in
/// every format (a paper's `Method` for `kind`); one that names no column
/// says which there are.
#[test]
fn a_header_label_renames_a_key_column_and_a_metric_column() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (i, gamma) in [0.1, 0.3].into_iter().enumerate() {
        let mut config = crate::config::Config::default();
        config.meltr.gamma = gamma;
        let mut run = accuracy_run(root.path(), &format!("r{i}"), &config, "");
        run.final_eval = Some((10, [("accuracy".to_string(), 80.0 + i as f64)].into()));
        runs.push(run);
    }
    let groups = super::super::groups::gather(
        &runs,
        &super::super::groups::GroupBy::Keys(vec!["meltr.gamma".into()]),
    )
    .unwrap();
    let renamed = |format, headers: &[(&str, &str)]| {
        let options = TableOptions {
            format,
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Default::default()
        };
        render(&groups, &options)
    };
    let both = [("gamma", "γ"), ("accuracy", "Acc. (%)")];
    let md = renamed(TableFormat::Md, &both).unwrap();
    let header = md.lines().next().unwrap();
    assert_eq!(header, "| γ | n | Acc. (%) ↑ |", "{md}");
    let latex = renamed(TableFormat::Latex, &[("meltr.gamma", "γ")]).unwrap();
    assert!(
        latex.contains("\n$\\gamma$ & $n$ & accuracy $\\uparrow$ \\\\\n"),
        "{latex}"
    );
    // A `--label`'s `$…$` is math; the same text from anywhere else (a
    // config's value, a path) is escaped whole.
    let math = |label_texts: Vec<String>| {
        let options = TableOptions {
            format: TableFormat::Latex,
            headers: vec![("gamma".into(), r"$\gamma_0$".into())],
            label_texts,
            ..Default::default()
        };
        render(&groups, &options).unwrap()
    };
    let kept = math(vec![r"$\gamma_0$".into()]);
    assert!(kept.contains("\n$\\gamma_0$ & $n$"), "{kept}");
    let escaped = math(Vec::new());
    assert!(
        escaped.contains(r"\$\textbackslash{}gamma\_0\$ & $n$"),
        "{escaped}"
    );
    let csv = renamed(TableFormat::Csv, &both).unwrap();
    assert!(csv.starts_with("γ,n,Acc. (%)_mean,"), "{csv}");
    let error = renamed(TableFormat::Md, &[("kind", "Method")])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--label `kind=Method`")
            && error.contains("the columns: meltr.gamma, accuracy"),
        "{error}"
    );
}

/// Rows no key tells apart are named by their runs, under `session` or
/// `runs`, not `group` (walkthroughs L and N read it as `--group`'s).
#[test]
fn rows_named_by_their_runs_are_not_headed_group() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let runs: Vec<Run> = (0..2)
        .map(|seed| {
            let mut config = config.clone();
            config.workload.seed = seed;
            let mut run = accuracy_run(root.path(), &format!("s{seed}"), &config, "");
            run.final_eval = Some((10, [("accuracy".to_string(), 80.0 + seed as f64)].into()));
            run
        })
        .collect();
    fn gather(runs: &[Run]) -> Vec<Group<'_>> {
        super::super::groups::gather(runs, &super::super::groups::GroupBy::Keys(Vec::new()))
            .unwrap()
    }
    let seeds = markdown(&gather(&runs));
    assert!(seeds.starts_with("| runs | n |"), "{seeds}");
    // The session's name, not the group it ran in (Q and R read `main`).
    let mut grouped = runs;
    grouped[0].meta.group = Some("main".into());
    let one = markdown(&gather(&grouped[..1]));
    assert!(
        one.starts_with("| session | n |") && one.contains("| s0 | 1 |"),
        "{one}"
    );
}
