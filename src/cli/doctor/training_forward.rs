//! `check`'s notes on what a training forward does besides its losses,
//! which MELTR's meta steps, running training-mode forwards of their own,
//! do again: move the model's buffers (a step counter, running
//! statistics), so such a buffer moves more often than once a step
//! (walkthrough Q3's VAE read its KL warm-up from a counter that advanced
//! 1 + 2/meta_every times a step); and draw random numbers (dropout),
//! drawn anew there (walkthrough R2 wished it said).

use crate::config::{Config, TrainBatch, ValSource};

/// The forwards each meta step runs of its own, in words: none under
/// `sum` or `primary`, or where it reuses the inner step's.
fn meta_forwards(config: &Config) -> Vec<&'static str> {
    if config.combiner.kind != crate::config::CombinerKind::Meltr {
        return Vec::new();
    }
    let meltr = &config.meltr;
    [
        (meltr.train_batch != TrainBatch::Current).then_some("its training batch's"),
        (meltr.val_source != ValSource::TrainingBatch).then_some("its validation batch's"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The note, under MELTR, for a loss the training forward's random draws
/// move (`draws`: its name and its first-batch values under the inner
/// step's draws and the meta step's); none where no meta step runs a
/// forward of its own.
pub(super) fn random_draws_note(
    draws: Option<&(String, f64, f64)>,
    config: &Config,
) -> Option<String> {
    let (loss, inner, meta) = draws?;
    let forwards = meta_forwards(config);
    if forwards.is_empty() {
        return None;
    }
    let (inner, meta) = crate::numfmt::told_apart(*inner, *meta);
    let batches: Vec<&str> = forwards.iter().map(|f| f.trim_end_matches("'s")).collect();
    Some(format!(
        "the model's training forward draws random numbers (dropout, noise: {loss} on the first batch reads {inner} \
         under the inner step's draws and {meta} under a meta step's); MELTR's meta steps forward {} with draws \
         of their own, as the public algorithm's do, so the hypergradient is taken on other masks than the \
         model's update was (seeded by the run's seed and step: a resume or the PyTorch replay draws alike)",
        batches.join(" and ")
    ))
}

/// The note, under MELTR, for `moved` (the buffers the first training
/// batch's forward moved, by name); none where no meta step runs a
/// forward of its own.
pub(super) fn moved_buffers_note(moved: &[String], config: &Config) -> Option<String> {
    let forwards = meta_forwards(config);
    if moved.is_empty() || forwards.is_empty() {
        return None;
    }
    let meltr = &config.meltr;
    let steps = config.train.steps;
    let meta_steps = (1..=steps).filter(|&s| meltr.meta_step_at(s)).count() as u64;
    let moves = steps + forwards.len() as u64 * meta_steps;
    let (buffers, them, they_move) = match moved {
        [one] => (format!("buffer `{one}`"), "it", "it moves"),
        many => (
            format!("buffers `{}`", many.join("`, `")),
            "them",
            "they move",
        ),
    };
    let count = match forwards.len() {
        1 => "a training-mode forward",
        _ => "two training-mode forwards",
    };
    Some(format!(
        "a training forward moves the model's {buffers} (a step counter, running statistics); each of \
         MELTR's {meta_steps} meta steps runs {count} of its own ({}), which move {them} too, as the public \
         algorithm's do: over {steps} steps {they_move} {moves} times, not {steps}, so a schedule the model \
         reads from such a buffer (a warm-up) runs ahead of the step count",
        forwards.join(" and ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: &str, settings: &[&str]) -> Config {
        let mut set = vec![format!("combiner.kind={kind}"), "train.steps=30".into()];
        set.extend(settings.iter().map(|s| s.to_string()));
        let overrides: Vec<crate::config::Override> =
            set.iter().map(|s| s.parse().unwrap()).collect();
        Config::default().with_overrides(&overrides).unwrap()
    }

    /// The counts a step-counter model read at the end of 30 steps at
    /// meta_every 3 (`tests/torchscript.rs` runs it): 50 at the defaults,
    /// 40 with one of the meta step's forwards reused, 30 under `sum`.
    #[test]
    fn the_note_counts_the_meta_steps_forwards() {
        let moved = vec!["step".to_string()];
        let note = moved_buffers_note(&moved, &config("meltr", &[])).expect("noted");
        assert!(
            note.contains("buffer `step`")
                && note.contains("each of MELTR's 10 meta steps runs two training-mode forwards")
                && note.contains("over 30 steps it moves 50 times, not 30"),
            "{note}"
        );
        let two = ["step".to_string(), "bn.running_mean".to_string()];
        let note = moved_buffers_note(&two, &config("meltr", &[])).unwrap();
        assert!(
            note.contains("buffers `step`, `bn.running_mean`")
                && note.contains("they move 50 times"),
            "{note}"
        );
        let current = config("meltr", &["meltr.train_batch=current"]);
        let note = moved_buffers_note(&moved, &current).unwrap();
        assert!(
            note.contains("runs a training-mode forward of its own (its validation batch's)"),
            "{note}"
        );
        let both = ["meltr.train_batch=current", "meltr.val_source=train-batch"];
        assert_eq!(moved_buffers_note(&moved, &config("meltr", &both)), None);
        assert_eq!(moved_buffers_note(&moved, &config("sum", &[])), None);
        assert_eq!(moved_buffers_note(&[], &config("meltr", &[])), None);
    }

    /// A loss the draws move is said where a meta step forwards a batch of
    /// its own, with the two values apart and the batches it forwards.
    #[test]
    fn random_draws_are_said_where_the_meta_steps_forward_again() {
        let draws = ("primary".to_string(), 0.51234, 0.49871);
        let note = random_draws_note(Some(&draws), &config("meltr", &[])).expect("noted");
        assert!(
            note.contains("primary on the first batch reads 0.5123 under the inner step's draws and 0.4987 under a meta step's")
                && note.contains("forward its training batch and its validation batch with draws of their own"),
            "{note}"
        );
        let current = config("meltr", &["meltr.train_batch=current"]);
        let note = random_draws_note(Some(&draws), &current).unwrap();
        assert!(
            note.contains("forward its validation batch with draws"),
            "{note}"
        );
        let both = ["meltr.train_batch=current", "meltr.val_source=train-batch"];
        assert_eq!(
            random_draws_note(Some(&draws), &config("meltr", &both)),
            None
        );
        assert_eq!(random_draws_note(Some(&draws), &config("sum", &[])), None);
        assert_eq!(random_draws_note(None, &config("meltr", &[])), None);
    }
}
