//! Live config: changes applied at a step boundary (restart-only keys
//! refused with the reason), and the record of the config in force.

use super::*;
use crate::config::changed_values;

impl Trainer {
    /// Applies a validated config at a step boundary. Live keys take effect
    /// now; restart-only keys keep their running values and the refusal is
    /// logged with the reason.
    pub(super) fn apply_config(&mut self, requested: Config) -> Result<()> {
        self.write_pending_in_order()?;
        // Commands come from the socket too: the same rules as a file.
        if let Err(e) = requested.validate() {
            self.emit(Record::Config {
                changed: Default::default(),
                error: Some(format!("refused: {e}; the config in force stays")),
            });
            return Ok(());
        }
        let old = self.config.clone();
        // `config.toml:12: ` where the session's file sets a refused key.
        // (Read only for a refused key: edits are rare, refusals rarer.)
        let file = self.dir.config();
        let located = |key: &str| {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let asks = Config::parse_over(&old, &text).is_ok_and(|f| {
                old.diff(&f).iter().any(|c| c.key == key) && requested.diff(&f).is_empty()
            });
            match crate::config::locate_key(&text, key) {
                Some(line) if asks => format!("{}:{line}: ", file.display()),
                _ => String::new(),
            }
        };
        // In full, and as said again while the file still asks for it.
        let (refused, refused_short): (Vec<String>, Vec<String>) = old
            .diff(&requested)
            .into_iter()
            .filter_map(|c| {
                c.refusal().map(|refusal| {
                    (
                        format!("{}{refusal}", located(&c.key)),
                        format!("`{}` = {}", c.key, c.new),
                    )
                })
            })
            .unzip();
        let effective = requested.keeping_restart_only_of(&old);
        let changes = old.diff(&effective);
        let restored_notes = self.restored_values_edited(&old, &effective);
        if !changes.is_empty() {
            tch::set_num_threads(effective.train.threads as i32);
            self.inner.lr = effective.train.lr_at(self.step.max(1));
            self.inner.weight_decay = effective.train.weight_decay;
            if let Some(meta) = self.meta.as_mut() {
                // Only an edit of the key itself: a collapse restore may
                // have lowered the rate in force.
                if effective.meltr.meta_lr != old.meltr.meta_lr {
                    meta.lr = effective.meltr.meta_lr;
                    // The edit stands over a restore not yet applied too.
                    if let Some(queued) = self.queued_restore.as_mut() {
                        queued.meta_lr = None;
                    }
                }
                meta.weight_decay = effective.meltr.meta_weight_decay;
                meta.decay = meta_decay(&effective);
            }
            // Likewise γ, which a collapse restore may have raised.
            if effective.meltr.gamma != old.meltr.gamma {
                self.gamma = effective.meltr.gamma;
                if let Some(queued) = self.queued_restore.as_mut() {
                    queued.gamma = None;
                }
            }
            self.combiner.apply_config(&effective);
            self.edited_since_checkpoint = true;
            self.meta_blocked = None;
            self.config = effective;
            self.record_config_in_force();
            self.emit(Record::Config {
                changed: changed_values(&changes),
                error: None,
            });
            self.send(Event::ConfigInForce {
                config: Box::new(self.config.clone()),
            });
            for message in restored_notes {
                self.emit(Record::Event {
                    level: Level::Info,
                    message,
                });
            }
            self.say_edit_risks(&old);
        }
        if changes.is_empty() && refused.is_empty() {
            // A valid file equal to the config in force (e.g. a bad edit
            // undone): say so, which clears any earlier config error.
            self.emit(Record::Config {
                changed: Default::default(),
                error: None,
            });
            self.send(Event::ConfigInForce {
                config: Box::new(self.config.clone()),
            });
        }
        if !refused.is_empty() {
            // Said while the file asks for it (the TUI shows the newest
            // config record's error), shortly once said in full.
            let mut error = if refused == self.refused_edits {
                format!(
                    "still refused (restart-only, see above): {}",
                    refused_short.join(", ")
                )
            } else {
                refused.join("; ")
            };
            // The TUI's banner shows this line alone: an edit applied with
            // it read as refused too (walkthrough R's `]` for J, under a
            // `batch_size` edit still in the file).
            if !changes.is_empty() {
                let applied: Vec<String> = changes
                    .iter()
                    .map(|c| format!("`{}` {} → {}", c.key, c.old, c.new))
                    .collect();
                error.push_str(&format!("; applied: {}", applied.join(", ")));
            }
            self.emit(Record::Config {
                changed: Default::default(),
                error: Some(error),
            });
        }
        self.refused_edits = refused;
        Ok(())
    }

    /// A config file that does not parse or validate: said, after the meta
    /// steps' lines before it where that is safe (`write_pending_in_order`).
    pub(super) fn report_config_error(&mut self, error: String) -> Result<()> {
        self.write_pending_in_order()?;
        self.emit(Record::Config {
            changed: Default::default(),
            error: Some(error),
        });
        Ok(())
    }

    /// For an edit of `meltr.meta_lr` or `meltr.gamma` while a collapse
    /// restore has another value in force: what it replaces. The config
    /// line gives the config's old value (walkthrough X's `meltr.gamma
    /// [0.1, 0.3]` set the 0.3 a restore had already put in force, and read
    /// as a change).
    fn restored_values_edited(&self, old: &Config, new: &Config) -> Vec<String> {
        let meta_lr = self.meta.as_ref().map(|meta| meta.lr);
        [
            ("meltr.meta_lr", old.meltr.meta_lr, new.meltr.meta_lr, meta_lr),
            ("meltr.gamma", old.meltr.gamma, new.meltr.gamma, Some(self.gamma)),
        ]
        .into_iter()
        .filter_map(|(key, configured, edited, in_force)| {
            let in_force = in_force?;
            // Within rounding: a restore's γ is 3 × 0.1 = 0.30000000000000004,
            // an edit's 0.3.
            let same = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
            (!same(edited, configured) && !same(in_force, configured)).then(|| {
                let readable = crate::numfmt::readable;
                format!(
                    "{key} was {} in force, a collapse restore's, not the config's {}: the edit sets {}{}",
                    readable(in_force),
                    readable(configured),
                    readable(edited),
                    if same(edited, in_force) { ", as it was" } else { "" }
                )
            })
        })
        .collect()
    }

    /// Publishes the config in force: to the file watcher (a partial live
    /// file is read relative to it) and to `config.in-force.toml` (what a
    /// resume restores restart-only keys from). A failed write is reported;
    /// the previous record stays intact.
    pub(super) fn record_config_in_force(&mut self) {
        *self.in_force.lock().unwrap_or_else(|e| e.into_inner()) = self.config.clone();
        let path = self.dir.config_in_force();
        if let Err(e) = session::atomic_write(&path, self.config.to_toml_string().as_bytes()) {
            self.emit(Record::Event {
                level: Level::Warn,
                message: format!("cannot record the config in force: {e:#}"),
            });
        }
    }

    /// The config in force, kept current as changes apply.
    pub fn config_in_force(&self) -> Arc<Mutex<Config>> {
        Arc::clone(&self.in_force)
    }

    /// On resume: logs the keys whose values differ from the config the
    /// run had at the step it resumes from (`ran_with`), as a config line,
    /// so that the log says which steps ran with which values.
    pub(super) fn record_resumed_changes(&mut self, ran_with: &Config) {
        let changes = ran_with.diff(&self.config);
        if changes.is_empty() {
            return;
        }
        self.emit(Record::Config {
            changed: changed_values(&changes),
            error: None,
        });
        // As a live edit's (walkthrough G6's `resume --set
        // aid.iterations=1` had no word on α).
        self.say_edit_risks(ran_with);
    }

    /// What an edit from `old` to the config in force risks: a Neumann
    /// series started at an untuned α, a meta-learning rate far above the
    /// public code's.
    fn say_edit_risks(&mut self, old: &Config) {
        if let Some(message) = untuned_series(old, &self.config) {
            self.emit(Record::Event {
                level: Level::Info,
                message,
            });
        }
        if old.meltr.meta_lr != self.config.meltr.meta_lr {
            if let Some(message) = far_meta_lr(self.config.meltr.meta_lr) {
                self.emit(Record::Event {
                    level: Level::Warn,
                    message,
                });
            }
        }
    }
}

/// A meta-learning rate this many times the public code's 1e-3 is said
/// when an edit sets it ...
const FAR_META_LR: f64 = 100.0;

/// A live edit that starts the Neumann series (J from 0) at an α nobody
/// tuned for it: said at the edit, before its first meta step (walkthrough
/// B's `]` at α = 0.1, with meta_every 3→1, was followed by collapse
/// restores and a diverging series, each said only as it came).
fn untuned_series(old: &Config, new: &Config) -> Option<String> {
    let (from, to, alpha) = (old.aid.iterations, new.aid.iterations, new.aid.alpha);
    (from == 0 && to > 0 && alpha == crate::config::AidConfig::default().alpha).then(|| {
        format!(
            "aid.iterations {from}→{to} starts the Neumann series at aid.alpha = {}, which the public code (J = 0) \
             never tuned: the series converges only for α below 2/λ of the training loss's largest Hessian \
             eigenvalue. If it diverges, a meta step stops it and says the ceiling for aid.alpha \
             (on the built-in workload J = 1 diverged within three meta steps)",
            crate::numfmt::readable(alpha)
        )
    })
}

/// ... as this warning. Adam moves each of φ's parameters by about the rate
/// a meta step whatever the gradient, so walkthrough W's `meltr.meta_lr =
/// 5`, typed in the TUI, had MELTR's weights at ±2e10 within 20 steps and
/// the first warning 90 steps later.
fn far_meta_lr(meta_lr: f64) -> Option<String> {
    let public = crate::config::MeltrConfig::default().meta_lr;
    let times = meta_lr / public;
    (times >= FAR_META_LR).then(|| {
        format!(
            "meltr.meta_lr = {} is {}x the public code's {}: Adam moves each of MELTR's parameters by about that much \
             a meta step, so its weights can grow by orders of magnitude within a few meta steps (the collapse watch \
             acts only after 25); if the value was a slip, edit it back",
            crate::numfmt::readable(meta_lr),
            crate::numfmt::readable(times.round()),
            crate::numfmt::readable(public)
        )
    })
}

#[cfg(test)]
mod tests {
    /// Walkthrough W's 5 is said; the suite's variants (up to 3e-3) are not.
    #[test]
    fn a_meta_learning_rate_far_above_the_public_codes_is_said() {
        let said = super::far_meta_lr(5.0).expect("5 is 5000x 1e-3");
        assert!(
            said.starts_with("meltr.meta_lr = 5 is 5000x the public code's 0.001"),
            "{said}"
        );
        assert_eq!(super::far_meta_lr(3e-3), None);
        assert_eq!(super::far_meta_lr(0.05), None);
    }

    /// Walkthrough B's `]` (J 0→1 at the default α) is said; a J raised
    /// further, or at an α the user set, is not.
    #[test]
    fn starting_the_series_at_the_default_alpha_is_said() {
        let config = |iterations: u32, alpha: f64| {
            let mut c = crate::config::Config::default();
            (c.aid.iterations, c.aid.alpha) = (iterations, alpha);
            c
        };
        let alpha = crate::config::AidConfig::default().alpha;
        let said = super::untuned_series(&config(0, alpha), &config(1, alpha)).unwrap();
        assert!(
            said.starts_with("aid.iterations 0→1 starts the Neumann series at aid.alpha = 0.1,"),
            "{said}"
        );
        assert_eq!(
            super::untuned_series(&config(1, alpha), &config(3, alpha)),
            None
        );
        assert_eq!(
            super::untuned_series(&config(0, 0.01), &config(1, 0.01)),
            None
        );
    }
}
