//! What the panes show, derived from metric lines alone (history read from
//! `metrics.jsonl` and live `Event::Line`s go through the same
//! [`Store::ingest`]): per-loss tracks, the latest records, and the event log.

use super::decimate::Track;
use super::fmt;
use crate::session::metrics::{Curve, Level, MetricLine, Named, Record};
use std::collections::BTreeMap;

/// Where an event-log entry came from; the events pane labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Config,
    Eval,
    Event,
    Status,
    /// Something this TUI did (wrote the config, exported figures).
    Tui,
}

impl EntryKind {
    pub fn label(self) -> &'static str {
        match self {
            EntryKind::Config => "config",
            EntryKind::Eval => "eval",
            EntryKind::Event => "event",
            EntryKind::Status => "status",
            EntryKind::Tui => "tui",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub step: u64,
    pub level: Level,
    pub kind: EntryKind,
    pub text: String,
}

/// The newest `train` line's values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainSnapshot {
    pub step: u64,
    pub losses: Named,
    pub weights: Named,
    /// The newest gradient shares, kept across the lines without any
    /// (shares come every `train.shares_every` steps).
    pub shares: Named,
    /// The step `shares` are from.
    pub shares_step: u64,
    pub total: f64,
    pub lr: f64,
}

/// The newest `meta` line's values.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaSnapshot {
    pub step: u64,
    pub hypergrad_norm: f64,
    pub meta_lr: f64,
    pub aid_iterations: u32,
    /// γ in force (absent in logs written before it was recorded).
    pub gamma: Option<f64>,
}

/// Everything derived from the metrics log.
#[derive(Debug, Clone)]
pub struct Store {
    /// Loss names, primary first; a loss first seen in a line is appended.
    pub losses: Vec<String>,
    pub primary_metric: String,
    pub higher_is_better: bool,
    /// Training losses, one channel per entry of `losses`.
    pub loss_track: Track,
    /// The combined loss (MELTR's output).
    pub total_track: Track,
    /// Effective weights, one channel per entry of `losses`.
    pub weight_track: Track,
    /// `eval.metrics[primary_metric]`.
    pub metric_track: Track,
    pub train: Option<TrainSnapshot>,
    pub meta: Option<MetaSnapshot>,
    pub eval: Option<(u64, Named)>,
    pub best_metric: Option<(u64, f64)>,
    /// The first step whose eval counts for the best: a fork's is the step
    /// after its fork step, as `ls` and `table` read it (walkthrough B's
    /// fork showed its parent's best in the header).
    pub best_from: u64,
    pub transform: Option<(u64, BTreeMap<String, Curve>)>,
    pub log: Vec<Entry>,
    /// The newest refused config edit, until a valid config follows.
    pub config_error: Option<String>,
    /// The step the refusal in `config_error` came at: a banner read after a
    /// resume looked like a new refusal (walkthrough K).
    pub config_error_step: u64,
    /// The step of each config key's newest applied edit.
    pub edited_at: BTreeMap<String, u64>,
    pub last_step: u64,
    pub last_time: f64,
    /// The losses' sizes are decades apart (and all positive): the loss
    /// pane draws them on a log axis, as an exported figure would, until
    /// `l` says otherwise. Read again as the log doubles.
    pub losses_far_apart: bool,
}

impl Store {
    pub fn new(losses: &[String], primary_metric: &str, higher_is_better: bool) -> Self {
        Self {
            losses: losses.to_vec(),
            primary_metric: primary_metric.to_string(),
            higher_is_better,
            loss_track: Track::new(losses.len()),
            total_track: Track::new(1),
            weight_track: Track::new(losses.len()),
            metric_track: Track::new(1),
            train: None,
            meta: None,
            eval: None,
            best_metric: None,
            best_from: 0,
            transform: None,
            log: Vec::new(),
            config_error: None,
            config_error_step: 0,
            edited_at: BTreeMap::new(),
            last_step: 0,
            last_time: 0.0,
            losses_far_apart: false,
        }
    }

    /// Reads [`Self::losses_far_apart`] from the train lines so far, at
    /// 8, 16, 32, … lines (a loss that starts far above the others decides
    /// early; later reads follow the run at a cost that stays small).
    fn check_loss_sizes(&mut self) {
        let lines = self.loss_track.len();
        if lines >= 8 && lines.is_power_of_two() {
            self.decide_loss_axis();
        }
    }

    /// Reads [`Self::losses_far_apart`] from every train line so far, as
    /// `export` reads a session's: once its history is read and when its
    /// run ends (walkthrough R's finished run was decided at its 32nd of 60
    /// lines, drawn on a log axis that its exported figure did not take).
    pub fn decide_loss_axis(&mut self) {
        let xs = self.loss_track.xs();
        let curves: crate::plot::data::Curves = self
            .losses
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let values = self.loss_track.channel(c).raw();
                (
                    name.clone(),
                    xs.iter().copied().zip(values.iter().copied()).collect(),
                )
            })
            .collect();
        self.losses_far_apart = crate::plot::loss_axis::worth_a_log_axis(&curves);
    }

    /// Index of a loss, adding a channel for a loss not seen before.
    fn loss_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.losses.iter().position(|l| l == name) {
            return i;
        }
        self.losses.push(name.to_string());
        self.loss_track.add_channel();
        self.weight_track.add_channel()
    }

    fn values_of(&mut self, named: &Named) -> Vec<f64> {
        for name in named.keys() {
            self.loss_index(name);
        }
        self.losses
            .iter()
            .map(|l| named.get(l).copied().unwrap_or(f64::NAN))
            .collect()
    }

    pub fn push_entry(&mut self, step: u64, level: Level, kind: EntryKind, text: String) {
        self.log.push(Entry {
            step,
            level,
            kind,
            text,
        });
    }

    /// Takes in one metrics line.
    pub fn ingest(&mut self, line: &MetricLine) {
        let step = line.step;
        self.last_step = self.last_step.max(step);
        self.last_time = self.last_time.max(line.time);
        let x = step as f64;
        match &line.record {
            Record::Train {
                losses,
                total,
                weights,
                lr,
                shares,
                ..
            } => {
                let l = self.values_of(losses);
                let w = self.values_of(weights);
                self.loss_track.push(x, &l);
                self.check_loss_sizes();
                self.weight_track.push(x, &w);
                self.total_track.push(x, &[*total]);
                let (shares, shares_step) = match &self.train {
                    Some(previous) if shares.is_empty() => {
                        (previous.shares.clone(), previous.shares_step)
                    }
                    _ => (shares.clone(), step),
                };
                self.train = Some(TrainSnapshot {
                    step,
                    losses: losses.clone(),
                    weights: weights.clone(),
                    shares,
                    shares_step,
                    total: *total,
                    lr: *lr,
                });
            }
            Record::Meta {
                hypergrad_norm,
                meta_lr,
                aid_iterations,
                gamma,
                ..
            } => {
                self.meta = Some(MetaSnapshot {
                    step,
                    hypergrad_norm: *hypergrad_norm,
                    meta_lr: *meta_lr,
                    aid_iterations: *aid_iterations,
                    gamma: *gamma,
                });
            }
            Record::Eval { metrics, losses } => {
                let value = metrics.get(&self.primary_metric).copied();
                if let Some(v) = value.filter(|v| v.is_finite()) {
                    self.metric_track.push(x, &[v]);
                    let better = step >= self.best_from
                        && match self.best_metric {
                            None => true,
                            Some((_, best)) => (v > best) == self.higher_is_better && v != best,
                        };
                    if better {
                        self.best_metric = Some((step, v));
                    }
                }
                let mut parts: Vec<String> = metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {}", fmt::num(*v)))
                    .collect();
                // A validation loss the model also returns as a metric of
                // the same name and value is said once (walkthrough H1 read
                // "nll 1.113 · rmse 0.7022 · val nll 1.113").
                let ordered = self
                    .losses
                    .iter()
                    .filter_map(|k| Some((k, losses.get(k)?)))
                    .filter(|(k, v)| metrics.get(*k) != Some(*v));
                parts.extend(ordered.map(|(k, v)| format!("val {k} {}", fmt::num(*v))));
                self.push_entry(step, Level::Info, EntryKind::Eval, parts.join(" · "));
                self.eval = Some((step, metrics.clone()));
            }
            Record::Transform { curves } => {
                self.transform = Some((step, curves.clone()));
            }
            Record::Config { changed, error } => {
                if let Some(error) = error {
                    self.config_error = Some(error.clone());
                    self.config_error_step = step;
                    self.push_entry(
                        step,
                        Level::Error,
                        EntryKind::Config,
                        format!("refused: {error}"),
                    );
                }
                for key in changed.keys() {
                    self.edited_at.insert(key.clone(), step);
                }
                if !changed.is_empty() {
                    let parts: Vec<String> = changed
                        .iter()
                        .map(|(k, (old, new))| format!("{k} {old} → {new}"))
                        .collect();
                    self.push_entry(step, Level::Info, EntryKind::Config, parts.join(", "));
                }
                if error.is_none() {
                    // A file read with nothing to change: a bad edit undone
                    // was otherwise silent here (a walkthrough).
                    if changed.is_empty() {
                        let text = if self.config_error.is_some() {
                            "config valid again; the config in force is unchanged"
                        } else {
                            "config read; no value changed"
                        };
                        self.push_entry(step, Level::Info, EntryKind::Config, text.into());
                    }
                    self.config_error = None;
                }
            }
            Record::Event { level, message } => {
                self.push_entry(step, *level, EntryKind::Event, message.clone());
            }
        }
    }

    /// The newest value of the primary metric, with its step.
    pub fn metric(&self) -> Option<(u64, f64)> {
        let (step, metrics) = self.eval.as_ref()?;
        Some((*step, *metrics.get(&self.primary_metric)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::fixtures;

    #[test]
    fn fixture_history_fills_the_store() {
        let meta = fixtures::meta(500);
        let mut s = Store::new(&meta.losses, &meta.primary_metric, true);
        for line in fixtures::lines(500) {
            s.ingest(&line);
        }
        assert_eq!(s.loss_track.len(), 499, "one step was skipped");
        assert_eq!(s.loss_track.channels(), 3);
        assert_eq!(s.metric_track.len(), 10);
        assert_eq!(s.last_step, 500);
        let (step, best) = s.best_metric.unwrap();
        assert_eq!(step, 500);
        assert!((best - s.metric().unwrap().1).abs() < 1e-12);
        // A fork's best is from its fork step on: here the one eval after.
        let mut fork = Store::new(&meta.losses, &meta.primary_metric, false);
        fork.best_from = 451;
        for line in fixtures::lines(500) {
            fork.ingest(&line);
        }
        assert_eq!(fork.best_metric.map(|b| b.0), Some(500));
        assert!(
            s.config_error.is_none(),
            "the refused edit at 60% was fixed at 70%"
        );
        assert!(s
            .log
            .iter()
            .any(|e| e.level == Level::Error && e.text.contains("aid.alpha")));
        assert!(s
            .log
            .iter()
            .any(|e| e.text.contains("aid.iterations 0 → 3")));
        assert!(s.log.iter().any(|e| e.text.contains("non-finite")));
        assert_eq!(s.transform.as_ref().unwrap().0, 500);
    }

    /// A bad edit undone left the error entry as the pane's last word on
    /// the config (a walkthrough).
    #[test]
    fn a_config_read_with_nothing_changed_is_said() {
        let mut s = Store::new(&["a".to_string()], "acc", true);
        let config = |step: u64, error: Option<&str>| MetricLine {
            step,
            time: 0.1,
            wall: None,
            record: Record::Config {
                changed: Default::default(),
                error: error.map(String::from),
            },
        };
        s.ingest(&config(10, Some("aid.alpha: expected 0 < alpha <= 1")));
        s.ingest(&config(12, None));
        let texts: Vec<&str> = s.log.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(
            texts[texts.len() - 2..],
            [
                "refused: aid.alpha: expected 0 < alpha <= 1",
                "config valid again; the config in force is unchanged"
            ]
        );
        assert!(s.config_error.is_none());
        s.ingest(&config(14, None));
        assert_eq!(s.log.last().unwrap().text, "config read; no value changed");
    }

    /// A validation loss returned as a metric of the same name and value
    /// is said once in the eval entry (walkthrough H1); one that differs
    /// keeps its `val` entry.
    #[test]
    fn an_eval_entry_says_a_loss_that_is_also_a_metric_once() {
        let names = ["nll".to_string(), "aux".to_string()];
        let mut s = Store::new(&names, "rmse", false);
        let eval = |nll_metric: f64| MetricLine {
            step: 10,
            time: 0.1,
            wall: None,
            record: Record::Eval {
                metrics: [("nll".to_string(), nll_metric), ("rmse".to_string(), 0.7)].into(),
                losses: [("nll".to_string(), 1.113), ("aux".to_string(), 0.5)].into(),
            },
        };
        s.ingest(&eval(1.113));
        assert_eq!(
            s.log.last().unwrap().text,
            "nll 1.113 · rmse 0.7000 · val aux 0.5000"
        );
        s.ingest(&eval(1.2));
        assert_eq!(
            s.log.last().unwrap().text,
            "nll 1.200 · rmse 0.7000 · val nll 1.113 · val aux 0.5000"
        );
    }

    #[test]
    fn shares_stay_until_newer_ones_arrive() {
        let mut s = Store::new(&["a".to_string()], "acc", true);
        let line = |step: u64, share: Option<f64>| MetricLine {
            step,
            time: 0.1,
            wall: None,
            record: Record::Train {
                losses: [("a".to_string(), 1.0)].into(),
                total: 1.0,
                weights: [("a".to_string(), 1.0)].into(),
                lr: 0.1,
                shares: share
                    .map(|v| [("a".to_string(), v)].into())
                    .unwrap_or_default(),
                gpu: None,
            },
        };
        s.ingest(&line(10, Some(1.0)));
        s.ingest(&line(20, None));
        let train = s.train.clone().unwrap();
        assert_eq!((train.step, train.shares_step), (20, 10));
        assert_eq!(train.shares.get("a"), Some(&1.0));
        s.ingest(&line(30, Some(0.5)));
        let train = s.train.clone().unwrap();
        assert_eq!((train.shares_step, train.shares.get("a")), (30, Some(&0.5)));
    }

    #[test]
    fn unknown_loss_gets_a_channel() {
        let mut s = Store::new(&["a".to_string()], "acc", true);
        let line = MetricLine {
            step: 1,
            time: 0.1,
            wall: None,
            record: Record::Train {
                losses: [("a".to_string(), 1.0), ("b".to_string(), 2.0)].into(),
                total: 3.0,
                weights: [("a".to_string(), 1.0), ("b".to_string(), 1.0)].into(),
                lr: 0.1,
                shares: Named::new(),
                gpu: None,
            },
        };
        s.ingest(&line);
        assert_eq!(s.losses, vec!["a", "b"]);
        assert_eq!(s.loss_track.channels(), 2);
        assert_eq!(s.loss_track.channel(1).raw(), &[2.0]);
    }
}
