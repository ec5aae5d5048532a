//! The meta step's warnings in words: which batches it drew, what to set
//! `aid.alpha` to when the Neumann series diverges, how often a
//! recurring warning is said, the collapse watch's notes on the primary's
//! weight and its advice, and a copy of the primary found.

use super::Trainer;
use crate::config::LossScale;
use crate::engine::collapse::{
    Carried, Collapse, PrimaryCopy, Weights, PRIMARY_COLLAPSE_META_STEPS, PRIMARY_FLOOR,
    RAW_LOSS_VALUES, SETTLED_META_STEPS,
};
use crate::engine::early_climb::ClimbNote;
use crate::meltr::hypergrad::NeumannStop;
use crate::session::metrics::{Level, Record};

/// The warning for a Neumann series stopped for diverging (`count`: which
/// episode, see [`episode_said`]), with the `aid.alpha` to try.
pub(super) fn neumann_stopped(
    stop: &NeumannStop,
    aid: &crate::config::AidConfig,
    count: &str,
) -> String {
    // What to set first: a pane of four lines cut the ceiling off the end
    // (walkthrough K).
    format!(
        "the Neumann series diverges{count}: {}. While this lasts the meta steps take v_0 alone, as \
         aid.iterations = 0 does (‖v_{}‖ = {:.3e}·‖v_0‖ > aid.max_growth = {}; a partial sum of a \
         diverging series can point against H⁻¹v_0)",
        alpha_advice(aid, stop),
        stop.diverged_at,
        stop.growth,
        aid.max_growth,
    )
}

/// The end of a stopped series' episode: it sums every term again. When
/// the next episode's start will not be said, this says so: the log's last
/// word on the series was "converges" while it kept diverging (walkthrough
/// P: 19 of 159 meta steps summed every term, and the last event said all).
pub(super) fn neumann_converges(iterations: u32, next_said: bool) -> String {
    let unsaid = if next_said {
        ""
    } else {
        " (the next episode goes unsaid: the meta lines' aid_iterations give each step's iterations, and the run's end counts the steps cut short)"
    };
    // Set to 0 (walkthrough B: "no longer diverges: … (v_0 … v_0) are
    // summed again" read as a recovery).
    if iterations == 0 {
        return format!("the Neumann series is off (aid.iterations = 0: v_0 alone), which ends the episode of a diverging series{unsaid}");
    }
    let plural = if iterations == 1 { "" } else { "s" };
    format!("the Neumann series no longer diverges: all aid.iterations = {iterations} iteration{plural} (v_0 … v_{iterations}) are summed again{unsaid}")
}

/// Meta steps run with a Neumann series (J > 0) and those cut short.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct NeumannTally {
    pub(super) with_series: u64,
    pub(super) cut: u64,
    /// Cut where H curved down along the term that grew: no α helps.
    pub(super) curved_down: u64,
}

impl NeumannTally {
    pub(super) fn count(&mut self, iterations: u32, stop: Option<&NeumannStop>) {
        if iterations > 0 {
            self.with_series += 1;
            self.cut += u64::from(stop.is_some());
            self.curved_down += u64::from(stop.is_some_and(NeumannStop::curves_down));
        }
    }

    /// The run's end: how many meta steps summed fewer iterations than asked,
    /// when any did (`since`: the step this process took the run up at).
    pub(super) fn summary(&self, since: u64) -> Option<String> {
        // Not "in all … since step N" (walkthrough T): a resumed run's
        // count starts at its resume.
        let scope = match since {
            0 => "in all".to_string(),
            step => format!("since step {step}, where this start of the run took it up"),
        };
        // Where H curved down, "a smaller aid.alpha" cannot help (the
        // built-in workload at J = 1: 7 of its 18 cuts in 60 steps).
        let advice = match self.curved_down {
            0 => "a smaller aid.alpha, or aid.iterations = 0".to_string(),
            n if n == self.cut => "H curved down along the series at every one, where no aid.alpha converges: aid.iterations = 0".to_string(),
            n => format!("H curved down along the series at {n} of them, where no aid.alpha converges: aid.iterations = 0, or a smaller aid.alpha for the rest"),
        };
        (self.cut > 0).then(|| {
            format!(
                "{scope}, the Neumann series was cut short on {} of the {} meta steps with aid.iterations > 0 (it diverged, and they took v_0 alone: aid_iterations 0 on their meta lines): {advice}",
                self.cut, self.with_series
            )
        })
    }
}

/// What to set `aid.alpha` to, from the term that grew. Not from the
/// growth alone: read as one eigendirection, a growth of r per term put
/// 2/λ at 2α/(1 + r), just below α for a slow growth, and walkthroughs R2
/// and R3 (1.003 to 1.014 a term) would have lowered α a step at a time
/// for ever, where the curvature along the term told the two cases apart.
/// Positive: the term shrinks at α below [`NeumannStop::alpha_kept`], a
/// ceiling (at least 2/λ_max), and a tenth of it is offered (curvature
/// grows with training; a held-out CNN grew 118-fold at α = 0.1, and 0.005,
/// a guess, still diverged). At most 0: no α does.
pub(super) fn alpha_advice(aid: &crate::config::AidConfig, stop: &NeumannStop) -> String {
    let alpha = aid.alpha;
    let (grew, term) = (stop.diverged_at, stop.diverged_at.saturating_sub(1));
    if let Some(kept) = stop.alpha_kept() {
        return format!(
            "set aid.alpha (now {alpha}) to about {:.1e}, a tenth of the {kept:.2e} above which \
             v_{grew} = v_{term} − α·H·v_{term} is longer than v_{term} (curvature grows with \
             training); if it still diverges there, H curves down too: aid.iterations = 0 \
             (README, `aid.iterations`)",
            kept / 10.0
        );
    }
    if stop.curves_down() {
        return format!(
            "no aid.alpha converges: H curves down along v_{term} (⟨v, Hv⟩/‖v‖² = {:.2e}), where \
             v_{grew} is longer than v_{term} at any α: set aid.iterations = 0 (README, \
             `aid.iterations`), or raise aid.max_growth (now {}) to sum a slowly growing series \
             unchecked, as AuxiLearn's code does",
            stop.curvature, aid.max_growth
        );
    }
    format!("lower aid.alpha (now {alpha}) or aid.iterations")
}

/// Which batches a meta step drew, in words (a non-finite hypergradient
/// names them: a batch whose own update went through can still hold a
/// value that only the meta step's derivatives turn into NaN).
pub(super) fn drawn_batches(drew: Option<(u64, Option<u64>)>) -> String {
    let Some((train, val)) = drew else {
        return "no batch to draw: every batch in the meta step's pool had its update skipped"
            .to_string();
    };
    match val {
        Some(val) if val == train => {
            format!("the training and validation losses on the training batch of step {train}")
        }
        Some(val) => {
            format!("the training batches of step {train} (training losses) and step {val} (validation loss)")
        }
        None => format!("the training batch of step {train} and a held-out validation batch"),
    }
}

/// What a non-finite hypergradient came from, from the losses its meta
/// step was taken on: `values` holds the validation primary, then the
/// training losses in `names`' order.
/// `exact`: the meta step took the model's second derivatives (walkthrough
/// N4's Cox loss: logcumsumexp's double backward is NaN where a gradient is
/// 0, and every exact meta step was skipped, the factorized ones not).
pub(super) fn hypergradient_cause(names: &[String], values: &[f64], exact: bool) -> String {
    let Some((&val, train)) = values.split_first() else {
        return "its losses unread".to_string();
    };
    let primary = names.first().map_or("primary", String::as_str);
    // The same value (bit for bit) as the training primary, as under
    // `meltr.val_source = "train-batch"`, is said once.
    let val_is_training = train.first().is_some_and(|t| t.to_bits() == val.to_bits());
    let listed = |all: bool| -> Vec<String> {
        let val = ((all || !val.is_finite()) && !val_is_training)
            .then(|| format!("validation {primary} {}", crate::numfmt::readable(val)));
        let train = names
            .iter()
            .zip(train)
            .filter(|(_, v)| all || !v.is_finite())
            .map(|(name, v)| format!("training {name} {}", crate::numfmt::readable(*v)));
        val.into_iter().chain(train).collect()
    };
    let not_finite = listed(false);
    if not_finite.is_empty() {
        let hint = match exact {
            true => {
                "; aid.mode = \"exact\" differentiates the model twice, and an op's double backward can \
                 be NaN where its gradient is finite (logcumsumexp's where a gradient is 0): \
                 aid.mode = \"factorized\" at aid.iterations = 0 takes none"
            }
            false => "",
        };
        format!(
            "from finite losses ({}): a product through the model or MELTR's second \
             derivatives is NaN or inf{hint}",
            listed(true).join(", ")
        )
    } else {
        format!("non-finite loss: {}", not_finite.join(", "))
    }
}

/// Whether the `n`th episode of a recurring warning is said (the 1st, 2nd,
/// 4th, 8th, …), and the words that count it.
pub(super) fn episode_said(n: u32) -> Option<String> {
    match n {
        1 => Some(String::new()),
        n if n.is_power_of_two() => Some(format!(
            " (the {} time this run; said again at the {})",
            ordinal(n),
            ordinal(2 * n)
        )),
        _ => None,
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, …, `11th`, `12th`, `13th`, `21st`, …
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Where the primary's weight stands at the first meta step after a
/// restore (`from`: the healthy step whose φ came back). M weighs the
/// current losses, so φ of an earlier step need not give the weights it
/// gave then (a held-out run's restored weights stayed near 0 for 30
/// steps after its losses had moved), and the restore alone cannot say.
pub(super) fn after_restore_event(
    names: &[String],
    from: u64,
    step: u64,
    watched: Weights,
) -> Record {
    let reading = format!(
        "after the restore to step {from}'s φ, the primary's effective weight ({}) reads {} at step {step}'s meta step",
        names[0],
        crate::numfmt::readable(watched.primary)
    );
    if watched.primary >= PRIMARY_FLOOR {
        return Record::Event {
            level: Level::Info,
            message: reading,
        };
    }
    Record::Event {
        level: Level::Warn,
        message: format!(
            "{reading}, still below {PRIMARY_FLOOR}: M weighs this step's losses, which have moved since step \
             {from}, so that φ does not give the weights it gave then; the meta steps go on from it, and the \
             collapse watch with them, which does not put that φ back again"
        ),
    }
}

/// The words for a negative primary weight whose loss fell all the same.
pub(super) fn carried_event(names: &[String], carried: Carried, watched: Weights) -> Record {
    // A negative weight climbs its loss: it carries nothing (walkthrough G
    // read "helpful's weight is the largest, -0.058: a copy?").
    let carrier = match watched.largest_at {
        0 => String::new(),
        k if watched.largest > 0.0 => format!(
            " ({}'s weight is the largest in magnitude, {:+.3}: it may carry it, if it shares the primary's task, as a copy or a related target does)",
            names[k], watched.largest
        ),
        _ => " (one with a positive weight, which shares the primary's task, as a copy or a related target does)".to_string(),
    };
    Record::Event {
        level: Level::Info,
        message: format!(
            "the primary's effective weight ({}) has stayed below {PRIMARY_FLOOR} for {PRIMARY_COLLAPSE_META_STEPS} meta steps \
             and is negative now ({:+.3}), yet its training loss fell from {} to {} (averaged over meta steps): another loss \
             carries the primary's gradient{carrier}, so the model does not climb its task and the collapse watch leaves φ as it is",
            names[0],
            watched.primary,
            crate::numfmt::readable(carried.from),
            crate::numfmt::readable(carried.to),
        ),
    }
}

/// What a small positive primary weight means when the primary's training
/// loss fell over the count all the same (walkthrough N: an L1 copy of its
/// MSE primary carried it, and "hardly training its own task" was read
/// while that loss fell from 3.2 to 1.1).
pub(super) fn fell_under_a_small_weight(
    fell: Carried,
    watched: &Weights,
    names: &[String],
) -> String {
    let carrier = match watched.largest_at {
        k if k > 0 && watched.largest > 0.0 => format!(
            ": {}'s weight is the largest, {}, and may carry it if it shares the primary's task (a copy or a related target)",
            names[k],
            crate::numfmt::readable(watched.largest)
        ),
        _ => String::new(),
    };
    format!(
        "its training loss still fell from {} to {} over those meta steps (averaged over meta steps), \
         so another loss may carry its gradient{carrier}",
        crate::numfmt::readable(fell.from),
        crate::numfmt::readable(fell.to),
    )
}

/// The words for an early climb note (`default_start`: MELTR at the
/// public code's initialisation).
pub(super) fn early_climb_event(
    names: &[String],
    default_start: bool,
    note: ClimbNote,
    watched: Weights,
) -> Record {
    let primary = &names[0];
    match note {
        ClimbNote::Climbing { since, meta_steps } => {
            let others = if watched.largest < 0.0 && watched.largest_at != 0 {
                format!(
                    " (and {}'s, the largest in magnitude, {:+.2e}: it climbs that one too)",
                    names[watched.largest_at], watched.largest
                )
            } else {
                String::new()
            };
            // Why, and what to change.
            let why = if default_start {
                "MELTR starts with every weight near 0, either sign (the public code's initialisation), \
                 and its meta steps usually turn the primary's positive within tens of steps (on the auxiliary-learning suite it cleared 0.1 \
                 by meta step 33 at the latest); a later event says when. meltr.init = \"residual\" starts as `sum` instead (at the next start)"
            } else {
                "the meta steps may turn it positive again (a later event says when); if they do not, lower meltr.meta_lr or raise meltr.gamma"
            };
            Record::Event {
                level: Level::Warn,
                message: format!(
                    "the primary's effective weight ({primary}) has been negative since step {since} ({meta_steps} meta steps, now {:+.2e}){others}: \
                     the model climbs its own task's loss. {why}",
                    watched.primary
                ),
            }
        }
        ClimbNote::Ended { since } => Record::Event {
            level: Level::Info,
            message: format!(
                "the primary's effective weight ({primary}) has been positive for {SETTLED_META_STEPS} meta steps (now {:+.2e}): the model no longer climbs its own task's loss, as it did from step {since}",
                watched.primary
            ),
        },
    }
}

/// γ as configs write it: `0.3`, not `0.30000000000000004`.
pub(super) fn fmt_gamma(gamma: f64) -> String {
    crate::numfmt::trim_zeros(format!("{gamma:.6}"))
}

/// What a meta step's reading changed in the copies of the primary
/// (`known` before it, `now` after): an auxiliary found to be a fixed
/// multiple of the primary (the same gradient, scaled), and what the
/// watches make of it; one known before and ruled out by this reading.
pub(super) fn copy_events(
    names: &[String],
    known: &[PrimaryCopy],
    now: &[PrimaryCopy],
) -> Vec<String> {
    let readable = crate::numfmt::readable;
    let found = now.iter().filter(|c| !known.iter().any(|k| k.index == c.index)).map(|copy| {
        let (primary, name) = (&names[0], &names[copy.index]);
        format!(
            "{name} has been {}x {primary}'s value at every meta step read: a copy of the primary (the same \
             gradient, scaled). The collapse and gradient-share watches read {primary}'s weight and share with \
             its copy's ({}); the training lines, `table` and the TUI give each loss its own",
            readable(copy.factor),
            crate::engine::collapse::names_with_copies(names, std::slice::from_ref(copy))[0]
        )
    });
    let gone = known.iter().filter(|k| !now.iter().any(|c| c.index == k.index)).map(|copy| {
        format!(
            "{} is no longer {}x {}'s value at this meta step: no copy of the primary after all; the watches \
             read its weight and share as its own from now on",
            names[copy.index],
            readable(copy.factor),
            names[0]
        )
    });
    found.chain(gone).collect()
}

impl Trainer {
    /// What a user can change after a collapse of this kind.
    pub(super) fn collapse_advice(&self, kind: Collapse) -> String {
        let residual =
            "start MELTR as a correction to `sum` (meltr.init = \"residual\", at the next start)";
        match kind {
            // Seen with an auxiliary loss thousands of times the primary's
            // value, where a larger γ made it worse.
            Collapse::PrimaryNeverRose if self.config.meltr.loss_scale == LossScale::Raw => format!(
                "{RAW_LOSS_VALUES}: compare the losses' scales (the first train lines) and set \
                 meltr.loss_scale = \"capped\" (the default) or scale such a loss down in the model, or {residual}"
            ),
            Collapse::PrimaryNeverRose if self.config.meltr.loss_scale == LossScale::Capped => format!(
                "Compare the losses' scales (the first train lines): MELTR reads an auxiliary loss up to \
                 meltr.max_loss_ratio = {} times the primary's; in a new session lower it or set \
                 meltr.loss_scale = \"primary\" (every loss at the primary's size), or {residual}",
                self.config.meltr.max_loss_ratio
            ),
            Collapse::PrimaryNeverRose => format!(
                "MELTR reads every loss at the primary's size (meltr.loss_scale = \"primary\"), so the \
                 losses' scales are not the cause: raise meltr.gamma ({}), lower meltr.meta_lr, or {residual}",
                self.gamma_now()
            ),
            Collapse::Primary | Collapse::Every => format!(
                "Raise meltr.gamma ({}), lower meltr.meta_lr, or {residual}",
                self.gamma_now()
            ),
        }
    }

    /// `now 0.1`, or `0.1; 0.3 in force since a restore raised it`.
    fn gamma_now(&self) -> String {
        let configured = self.config.meltr.gamma;
        let gamma = self.gamma_after_queue();
        match gamma == configured {
            true => format!("now {}", fmt_gamma(configured)),
            false => format!(
                "{}; {} in force since a collapse restore raised it",
                fmt_gamma(configured),
                fmt_gamma(gamma)
            ),
        }
    }
}

/// The meta step's fallback routes (one for the Hessian-vector products,
/// one for the loss JVP) not among those said last for their kind, as
/// events; `said` keeps each kind's last. A kind this step did not take
/// (no products at `aid.iterations = 0`) keeps its route: walkthrough N2's
/// products' route was said again each time a live edit raised J from 0.
pub(super) fn routes_not_said(said: &mut Vec<String>, routes: Vec<String>) -> Vec<String> {
    let kind = |why: &str| why.split(" by ").next().unwrap_or(why).to_string();
    let mut messages = Vec::new();
    for why in routes {
        if said.contains(&why) {
            continue;
        }
        messages.push(format!("the meta step takes {why}"));
        said.retain(|before| kind(before) != kind(&why));
        said.push(why);
    }
    messages
}

#[cfg(test)]
mod tests;
