//! The meta step's warnings in words: which batches it drew, what to set
//! `aid.alpha` to when the Neumann series diverges, how often a
//! recurring warning is said, and the collapse watch's notes on the
//! primary's weight.

use crate::engine::collapse::{
    Carried, Weights, PRIMARY_COLLAPSE_META_STEPS, PRIMARY_FLOOR, SETTLED_META_STEPS,
};
use crate::engine::early_climb::ClimbNote;
use crate::session::metrics::{Level, Record};

/// The warning for a Neumann series stopped for diverging (`count`: which
/// episode, see [`episode_said`]), with the `aid.alpha` to try.
pub(super) fn neumann_stopped(
    stop: &crate::meltr::hypergrad::NeumannStop,
    aid: &crate::config::AidConfig,
    count: &str,
) -> String {
    let summed = match stop.terms.saturating_sub(1) {
        0 => "v_0 alone (as aid.iterations = 0)".to_string(),
        // J iterations sum J + 1 terms, v_0 … v_J (a walkthrough read
        // "1 of aid.iterations = 2 terms" as two terms in all).
        iterations => format!(
            "v_0 … v_{iterations} ({iterations} of aid.iterations = {} iterations)",
            aid.iterations
        ),
    };
    // What to set first: a pane of four lines cut the ceiling off the end
    // (walkthrough K).
    format!(
        "the Neumann series diverges{count}: {}. While this lasts the meta steps sum {summed} \
         (‖v_{}‖ = {:.3e}·‖v_0‖ > aid.max_growth = {})",
        alpha_advice(aid.alpha, stop.terms, stop.growth),
        stop.terms,
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
}

impl NeumannTally {
    pub(super) fn count(&mut self, iterations: u32, cut: bool) {
        if iterations > 0 {
            self.with_series += 1;
            self.cut += u64::from(cut);
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
        (self.cut > 0).then(|| {
            format!(
                "{scope}, the Neumann series was cut short on {} of the {} meta steps with aid.iterations > 0 (it diverged, and they summed fewer iterations than aid.iterations; the meta lines' aid_iterations say how many): a smaller aid.alpha, or aid.iterations = 0",
                self.cut, self.with_series
            )
        })
    }
}

/// What to set `aid.alpha` to after the series grew `growth`-fold in
/// `terms` terms. Each term multiplies an eigendirection of H by 1 − α·λ,
/// so a growth of r per term means |1 − α·λ| ≈ r for some λ: λ ≈ (1 + r)/α
/// if positive, and α below 2/λ converges along it (a held-out CNN grew
/// 118-fold at α = 0.1; 0.005, a guess, still diverged, where 2/λ read
/// this way was 0.0017); λ ≈ −(r − 1)/α if negative, and then no α does.
/// v_0 has other components too, so a positive λ read this way is a lower
/// bound and 2/λ a ceiling: α above it diverges for sure, α below it may
/// still.
pub(super) fn alpha_advice(alpha: f64, terms: u32, growth: f64) -> String {
    let per_term = growth.powf(1.0 / f64::from(terms.max(1)));
    if !(per_term > 1.0 && per_term.is_finite()) {
        return format!("lower aid.alpha (now {alpha}) or aid.iterations");
    }
    let largest = (1.0 + per_term) / alpha;
    format!(
        "aid.alpha (now {alpha}) must be below 2/λ ≈ {:.2e} (a tenth of that, {:.1e}, lasts \
         longer as curvature grows with training): a growth of {per_term:.3} per term puts an \
         eigenvalue λ of H at about {largest:.3e} if positive; if negative (about −{:.3e}), no α \
         converges: use aid.iterations = 0 (README, `aid.iterations`)",
        2.0 / largest,
        0.2 / largest,
        (per_term - 1.0) / alpha
    )
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
        Some(val) if val == train => format!("both losses on the training batch of step {train}"),
        Some(val) => {
            format!("the training batches of step {train} (training losses) and step {val} (validation loss)")
        }
        None => format!("the training batch of step {train} and a held-out validation batch"),
    }
}

/// What a non-finite hypergradient came from, from the losses its meta
/// step was taken on: `values` holds the validation primary, then the
/// training losses in `names`' order.
pub(super) fn hypergradient_cause(names: &[String], values: &[f64]) -> String {
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
        format!(
            "from finite losses ({}): a product through the model or MELTR's second \
             derivatives is NaN or inf",
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
            " ({}'s weight is the largest in magnitude, {:+.3}: a copy or a close relative of the primary?)",
            names[k], watched.largest
        ),
        _ => " (one with a positive weight: a copy or a close relative of the primary?)".to_string(),
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
            ": {}'s weight is the largest, {}, a copy or a close relative of the primary?",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_primary_weight_whose_loss_fell_names_the_likely_carrier() {
        let names = ["forecast", "noise", "l1"].map(String::from);
        let fell = Carried { from: 3.2, to: 1.1 };
        let said = fell_under_a_small_weight(fell, &Weights::of(&[0.001, 0.2, 2.8]), &names);
        assert!(said.contains("fell from 3.2 to 1.1"), "{said}");
        assert!(said.contains("l1's weight is the largest, 2.8"), "{said}");
        // The primary the largest (every weight small): no carrier named.
        let said = fell_under_a_small_weight(fell, &Weights::of(&[0.05, 0.01, -0.02]), &names);
        assert!(!said.contains("largest"), "{said}");
    }

    #[test]
    fn a_non_finite_hypergradient_names_its_non_finite_losses_or_lists_all() {
        let names = ["primary", "aux"].map(String::from);
        assert_eq!(
            hypergradient_cause(&names, &[0.5, 0.25, f64::INFINITY]),
            "non-finite loss: training aux inf"
        );
        assert_eq!(
            hypergradient_cause(&names, &[f64::NAN, 0.25, 2.0]),
            "non-finite loss: validation primary NaN"
        );
        let finite = hypergradient_cause(&names, &[0.5, 0.25, 2.0]);
        assert!(
            finite.starts_with(
                "from finite losses (validation primary 0.5, training primary 0.25, training aux 2)"
            ),
            "{finite}"
        );
    }

    /// ‖v_terms‖ / ‖v_0‖ of the series v_{j+1} = (1 − α·H) v_j for a
    /// diagonal H, from v_0 = (1, …, 1).
    fn growth(eigenvalues: &[f64], alpha: f64, terms: u32) -> f64 {
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let mut v = vec![1.0; eigenvalues.len()];
        let start = norm(&v);
        for _ in 0..terms {
            for (x, l) in v.iter_mut().zip(eigenvalues) {
                *x *= 1.0 - alpha * l;
            }
        }
        norm(&v) / start
    }

    /// The number after `2/λ ≈` in the advice.
    fn advised_bound(advice: &str) -> f64 {
        let after = advice.split("2/λ ≈ ").nth(1).expect(advice);
        after
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .expect(advice)
    }

    /// The ceiling read from a real series' growth: never below the true
    /// 2/λ_max (no α it excludes converges), and 2/λ_max itself when v_0
    /// lies along the top eigendirection.
    #[test]
    fn the_advised_alpha_is_a_ceiling_at_two_over_the_largest_eigenvalue() {
        let eigenvalues = [1189.0, 300.0, 20.0, 1.0, 0.01];
        let truth = 2.0 / 1189.0;
        for (alpha, terms) in [(0.1, 1), (0.1, 3), (0.005, 2), (0.01, 4)] {
            let g = growth(&eigenvalues, alpha, terms);
            assert!(g > 10.0, "the example must diverge: {g}");
            let advice = alpha_advice(alpha, terms, g);
            let ceiling = advised_bound(&advice);
            assert!(ceiling >= truth * 0.9999, "{advice}: below 2/λ = {truth}");
            assert!(
                growth(&eigenvalues, ceiling * 1.01, 100) > 1.0,
                "{advice}: above the ceiling, the series converged"
            );
            // Along the top direction alone: the ceiling is 2/λ.
            let top = alpha_advice(alpha, terms, growth(&eigenvalues[..1], alpha, terms));
            let ceiling = advised_bound(&top);
            assert!(
                (ceiling / truth - 1.0).abs() < 0.01,
                "{top}: not 2/λ = {truth}"
            );
        }
        // A tenth of the ceiling is offered, the bound moving up with λ.
        let advice = alpha_advice(0.1, 1, growth(&eigenvalues[..1], 0.1, 1));
        assert!(
            advice.contains("a tenth of that, 1.7e-4, lasts longer"),
            "{advice}"
        );
        // Negative curvature grows the series at any α: its size is said.
        let negative = alpha_advice(0.1, 1, growth(&[-500.0], 0.1, 1));
        assert!(
            negative.contains("if negative (about −5.000e2), no α converges"),
            "{negative}"
        );
        // No growth per term to read: the plain advice.
        assert_eq!(
            alpha_advice(0.1, 2, 0.5),
            "lower aid.alpha (now 0.1) or aid.iterations"
        );
    }

    #[test]
    fn a_skipped_meta_step_names_the_batches_it_drew() {
        assert_eq!(
            drawn_batches(Some((42, Some(42)))),
            "both losses on the training batch of step 42"
        );
        assert!(
            drawn_batches(Some((42, Some(45)))).contains("step 42 (training losses) and step 45")
        );
        assert!(drawn_batches(Some((42, None))).contains("held-out"));
        assert!(drawn_batches(None).contains("every batch in the meta step's pool"));
    }

    #[test]
    fn a_recurring_warning_is_said_at_powers_of_two() {
        let said: Vec<u32> = (1..=40)
            .filter(|&n| super::episode_said(n).is_some())
            .collect();
        assert_eq!(said, [1, 2, 4, 8, 16, 32]);
        assert_eq!(super::episode_said(1).unwrap(), "");
        assert!(super::episode_said(2).unwrap().contains("the 2nd time"));
        assert!(super::episode_said(4)
            .unwrap()
            .contains("4th time this run; said again at the 8th"));
        let ordinals: Vec<String> = [1, 3, 11, 12, 22, 113].map(super::ordinal).into();
        assert_eq!(ordinals, ["1st", "3rd", "11th", "12th", "22nd", "113th"]);
    }

    /// J iterations are J + 1 terms: a series stopped at v_2 of J = 2
    /// summed v_0 and v_1, one iteration of two (a walkthrough read "1 of
    /// aid.iterations = 2 terms" as two terms in all).
    #[test]
    fn a_stopped_series_counts_iterations_and_names_its_terms() {
        let aid = crate::config::AidConfig {
            iterations: 2,
            ..Default::default()
        };
        let stop = crate::meltr::hypergrad::NeumannStop {
            terms: 2,
            growth: 20.0,
        };
        let said = neumann_stopped(&stop, &aid, "");
        assert!(
            said.contains("sum v_0 … v_1 (1 of aid.iterations = 2 iterations) (‖v_2‖"),
            "{said}"
        );
        // The ceiling first: a pane of a few lines showed the rest.
        assert!(
            said.starts_with(
                "the Neumann series diverges: aid.alpha (now 0.1) must be below 2/λ ≈ "
            ),
            "{said}"
        );
    }

    /// The run's last word on a series that kept diverging unsaid is not
    /// "converges" (walkthrough P).
    #[test]
    fn an_unsaid_next_episode_and_the_cut_meta_steps_are_said() {
        assert!(!super::neumann_converges(3, true).contains("unsaid"));
        assert!(super::neumann_converges(3, false).contains("the next episode goes unsaid"));
        assert!(super::neumann_converges(0, true).starts_with("the Neumann series is off"));
        assert!(super::neumann_converges(0, false).contains("the next episode goes unsaid"));
        let mut tally = super::NeumannTally::default();
        for (iterations, cut) in [(0, false), (2, true), (2, false), (2, true), (0, true)] {
            tally.count(iterations, cut);
        }
        assert_eq!((tally.cut, tally.with_series), (2, 3));
        assert!(tally.summary(40).unwrap().starts_with(
            "since step 40, where this start of the run took it up, the Neumann series was cut short on 2 of the 3 meta steps with aid.iterations > 0 ("
        ));
        assert_eq!(super::NeumannTally::default().summary(0), None);
    }

    #[test]
    fn a_carrier_is_named_only_by_a_positive_weight() {
        let names = ["cls".to_string(), "helpful".to_string()];
        let carried = Carried { from: 2.0, to: 1.0 };
        let message = |largest: f64| match carried_event(
            &names,
            carried,
            Weights {
                largest,
                largest_at: 1,
                primary: -0.01,
                primary_loss: 1.0,
            },
        ) {
            Record::Event { message, .. } => message,
            _ => panic!("not an event"),
        };
        assert!(message(0.7).contains("(helpful's weight is the largest in magnitude, +0.700"));
        let negative = message(-0.058);
        assert!(
            !negative.contains("helpful") && negative.contains("one with a positive weight"),
            "{negative}"
        );
    }

    #[test]
    fn after_a_restore_a_weight_still_near_zero_is_a_warning_in_readable_digits() {
        let names = ["cls".to_string(), "tags".to_string()];
        let watched = |primary: f64| Weights {
            largest: 0.5,
            largest_at: 1,
            primary,
            primary_loss: f64::NAN,
        };
        let Record::Event { level, message } =
            after_restore_event(&names, 99, 183, watched(-3.1e-4))
        else {
            panic!("not an event")
        };
        assert_eq!(level, Level::Warn);
        assert!(
            message.contains("(cls) reads -3.1e-4 at step 183"),
            "{message}"
        );
        assert!(
            message.contains("still below 0.1")
                && message.contains("since step 99")
                && message.contains("does not put that φ back again"),
            "{message}"
        );
        let Record::Event { level, message } = after_restore_event(&names, 99, 183, watched(0.84))
        else {
            panic!("not an event")
        };
        assert_eq!(level, Level::Info);
        assert!(
            message.ends_with("reads 0.84 at step 183's meta step"),
            "{message}"
        );
    }
}

/// An auxiliary found to be a fixed multiple of the primary (the same
/// gradient, scaled): what the watches make of it.
pub(super) fn copy_found_event(
    names: &[String],
    copy: &crate::engine::collapse::PrimaryCopy,
) -> String {
    let (primary, name) = (&names[0], &names[copy.index]);
    format!(
        "{name} has been {}x {primary}'s value at every meta step read: a copy of the primary (the same \
         gradient, scaled). The collapse and gradient-share watches read {primary}'s weight and share with \
         its copy's ({}); the training lines, `table` and the TUI give each loss its own",
        crate::numfmt::readable(copy.factor),
        crate::engine::collapse::names_with_copies(names, std::slice::from_ref(copy))[0]
    )
}
