//! What a run's end says about its best evaluation: a headless run's last
//! words and a detached runner's `output.log` alike.

use std::path::Path;

/// Said at the end when an earlier evaluation scored better than the last
/// (a walkthrough's RMSE rose from 0.79 at step 850 to 1.04 at the end,
/// unsaid): where the best was, and what takes it.
pub fn best_before_the_end(dir: &Path, torchscript: bool) -> Option<String> {
    let run = super::Run::load(dir).ok()?;
    let ((best_step, best), (final_step, last)) =
        (run.best_eval.as_ref()?, run.final_eval.as_ref()?);
    let metric = &run.meta.primary_metric;
    let (best, last) = (*best.get(metric)?, *last.get(metric)?);
    // Only a TorchScript workload has a module to export (a synthetic
    // run was pointed to `export --format model`, which refused it).
    let model = match torchscript {
        true => "export --format model --best takes the best kept checkpoint; ",
        false => "",
    };
    (best_step != final_step && best != last).then(|| {
        let (best, last) = crate::numfmt::told_apart(best, last);
        format!(
            "the best evaluation was not the last: {metric} {best} at step {best_step}, {last} at step {final_step} \
             ({model}table --best reports best evaluations)"
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::session::log::MetricsWriter;
    use crate::session::metrics::{MetricLine, Named, Record};

    /// An earlier evaluation that scored better than the last is said at
    /// the end with its step; a run whose last was its best says nothing.
    #[test]
    fn a_better_evaluation_before_the_end_is_said() {
        let root = tempfile::tempdir().unwrap();
        let config = crate::config::Config::default();
        let dir = crate::session::create(root.path(), "worse", &config).unwrap();
        let mut meta = crate::session::SessionMeta::read(&dir).unwrap();
        (meta.primary_metric, meta.higher_is_better) = ("R@1".into(), true);
        meta.write(&dir).unwrap();
        let metric = meta.primary_metric.clone();
        let eval = |step: u64, value: f64| MetricLine {
            step,
            time: 0.0,
            wall: None,
            record: Record::Eval {
                metrics: [(metric.clone(), value)].into(),
                losses: Named::new(),
            },
        };
        let mut log = MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
        log.append(&eval(50, 40.0)).unwrap();
        assert_eq!(super::best_before_the_end(&dir, false), None);
        // R@1, higher is better: 60 at step 100 beats the last, 45.
        log.append(&eval(100, 60.0)).unwrap();
        log.append(&eval(150, 45.0)).unwrap();
        let said = super::best_before_the_end(&dir, false).expect("said");
        assert!(
            said.starts_with(&format!(
                "the best evaluation was not the last: {metric} 60.0000 at step 100, 45.0000 at step 150"
            )),
            "{said}"
        );
        // Only a TorchScript run has a module to export at its best.
        assert!(!said.contains("export --format model"), "{said}");
        let said = super::best_before_the_end(&dir, true).expect("said");
        assert!(said.contains("export --format model --best"), "{said}");
        // As a fork of that run at step 100: the evaluations up to the
        // fork, its own included, are its parent's (made before any change
        // the fork brought): its best is its last, nothing to say.
        meta.fork_step = Some(100);
        meta.parent = Some("parent".into());
        meta.write(&dir).unwrap();
        assert_eq!(super::best_before_the_end(&dir, false), None);
        log.append(&eval(200, 40.0)).unwrap();
        let said = super::best_before_the_end(&dir, false).expect("said");
        assert!(
            said.contains("45.0000 at step 150, 40.0000 at step 200"),
            "{said}"
        );
        meta.fork_step = Some(150);
        meta.write(&dir).unwrap();
        let run = crate::runs::Run::load(&dir).unwrap();
        assert_eq!(run.best_eval.unwrap().0, 200, "step 150 is the parent's");
    }
}
