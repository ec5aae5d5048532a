//! The words of the inner step's warnings: an auxiliary climbing under a
//! negative weight, and one owning the combined gradient.

use super::*;

/// What an auxiliary loss climbing under a negative effective weight (its
/// mean over the climb) means, beside the primary's.
pub(super) fn auxiliary_climb_event(
    name: &str,
    climb: crate::engine::auxiliary_rise::AuxiliaryClimb,
) -> String {
    let crate::engine::auxiliary_rise::AuxiliaryClimb {
        rise,
        weight,
        primary_weight,
    } = climb;
    let readable = crate::numfmt::readable;
    let climbed = format!(
        "auxiliary loss {name} has climbed to {} (smoothed), {}, under an effective weight of {} on average since then",
        readable(rise.now),
        rise.past_lowest(),
        readable(weight),
    );
    let leave_out =
        "to train without it instead, leave it out of workload.auxiliary (or give it weight 0, \
                     combiner.kind = \"weights\") at the next start";
    // A weight this small beside the primary's pulls the loss up little:
    // walkthrough L1's VAE KL climbed under −0.024 beside 0.71, as it
    // climbs under `primary` alone while the encoder learns.
    if weight.abs() < WEAK_MAXIMISING * primary_weight.abs() {
        return format!(
            "{climbed}, small beside the primary's {}: the combiner asks the model to maximise it only weakly, \
             so the climb may be the model's own (a loss that climbs under `primary` too, as a VAE's KL does \
             while its encoder learns); compare with a `primary` or `sum` run. If it is the combiner's, {leave_out}",
            readable(primary_weight),
        );
    }
    format!(
        "{climbed}: the combiner has the model maximise it. MELTR may mean it (a loss it judges harmful), but the \
         shared layers then learn against that loss; {leave_out}"
    )
}

/// A negative weight under this fraction of the primary's in magnitude
/// asks for a climb only weakly.
const WEAK_MAXIMISING: f64 = 0.1;

/// An auxiliary whose loss is still this fraction of its first or more
/// has not fallen.
const FLAT_LOSS: f64 = 0.8;

/// The primary's and a loss's effective weights and training losses at a
/// logged step, in that order, and the primary's and the loss's first
/// logged losses.
pub(super) struct Standing {
    pub(super) weights: (f64, f64),
    pub(super) losses: (f64, f64),
    pub(super) primary_first: Option<f64>,
    /// The owner's first logged loss.
    pub(super) owner_first: Option<f64>,
}

/// An owner's weight past this (and twice the primary's) is MELTR's doing,
/// beyond `sum`'s weight of 1 by more than the noise of the readings.
const WEIGHED_ABOVE_SUM: f64 = 1.5;

/// What an auxiliary owning the combined gradient means (see
/// `gradient_owner`), from where the weights and losses stand; `kind`:
/// the combiner's, and whether MELTR reads the losses rescaled.
pub(super) fn gradient_owner_event(
    owner: &crate::engine::gradient_owner::Owner,
    primary: &str,
    (kind, rescaled): (CombinerKind, bool),
    now: Option<Standing>,
) -> String {
    // Not "leave it out" outright: walkthrough P's reconstruction of noisy
    // pixels stayed near its noise floor with 99% of the gradient, and
    // `sum` beat `primary` by 4.9 points with it.
    const FLAT_REMEDY: &str =
        "Compare with a run that leaves it out of workload.auxiliary before dropping it; if the loss helps, \
         give it a small fixed weight (combiner.kind = \"weights\")";
    const REMEDY: &str =
        "A loss on a far larger scale than the others does this; scale it down in the model, \
                          or give it a small fixed weight (combiner.kind = \"weights\")";
    let readable = crate::numfmt::readable;
    // MELTR's own weights can give an auxiliary the gradient, at any scale
    // (walkthrough O: weight 1.95 against the primary's 0.32, its loss
    // 0.19 against 0.003; the scale advice pointed the wrong way).
    // Only above `sum`'s weight of 1 is it MELTR's doing: walkthrough Q's
    // x100 loss had 99% of the gradient at 0.94 (98.7% under `sum`), and
    // the warning blamed the weight; and only at twice the primary's:
    // walkthrough C's x26 loss had 97.5% at 1.01 against 0.91 (96–97.7%
    // under `sum`); and only clearly above 1: walkthrough R's x30
    // reconstruction held 90% at 1.02 against 0.33 (95.5% under `sum`).
    let weighed_up = now.as_ref().filter(|s| {
        s.weights.1.abs() >= 2.0 * s.weights.0.abs() && s.weights.1.abs() > WEIGHED_ABOVE_SUM
    });
    // A primary fit on its training rows (its loss a twentieth of its
    // first or less) has little gradient left: any weighted auxiliary then
    // has most of it.
    let fit = now
        .as_ref()
        .and_then(|s| Some((s.losses.0, s.primary_first?)))
        .filter(|(now, first)| now.abs() <= 0.05 * first.abs())
        .map_or(String::new(), |(now, first)| {
            format!(
                " The primary's training loss has fallen from {} to {}: fit on its training rows, it has \
                 little gradient left (with few labelled rows the model may have learnt them by heart; \
                 compare its validation metric with an earlier evaluation's).",
                readable(first),
                readable(now)
            )
        });
    // A loss the model cannot lower keeps its whole gradient while the
    // others shrink (walkthrough N: random regression targets at 1.0 held
    // 98% of the gradient, and "its scale does" pointed at the wrong fix).
    let flat = now
        .as_ref()
        .filter(|s| s.weights.1 > 0.0)
        .and_then(|s| Some((s.losses.1, s.owner_first?)))
        .filter(|&(now, first)| first > 0.0 && now >= FLAT_LOSS * first);
    let remedy = match flat {
        Some(_) => FLAT_REMEDY,
        None => REMEDY,
    };
    let fit = match flat {
        Some((now, first)) => format!(
            "{fit} Its own loss has not fallen ({} at first, {} now): a loss the model cannot lower keeps \
             its whole gradient while the others' shrink, whatever its scale. A harmful auxiliary (random \
             targets, a task it cannot learn) looks like this, but so does a helpful one near its floor \
             (noise in its targets, a reconstruction of noisy inputs).",
            readable(first),
            readable(now)
        ),
        None => fit,
    };
    let its = match flat {
        Some(_) => "its gradient",
        None => "its scale",
    };
    let why = match kind {
        CombinerKind::Meltr if weighed_up.is_some() => {
            let s = weighed_up.expect("matched");
            // Below zero, the weight pushes the model to raise that loss.
            let how = match s.weights.1 < 0.0 {
                true => "below zero, it pushes the model to raise that loss, away from its own task",
                false => "the model trains away from its own task",
            };
            format!(
                "MELTR weighs it at {} against the primary's {}: its weight does it, and {how}.{fit} Compare \
                 with a `sum` run; lower meltr.meta_lr, or raise meltr.gamma (which holds MELTR's output near \
                 the sum of the losses)",
                readable(s.weights.1),
                readable(s.weights.0),
            )
        }
        // A negative weight: the model climbs that loss (walkthrough E's
        // read "do not set it apart (-0.05532 against the primary's
        // 0.108)", the sign unsaid).
        CombinerKind::Meltr if now.as_ref().is_some_and(|s| s.weights.1 < 0.0) => {
            let s = now.as_ref().expect("matched");
            // Twice the primary's in size, below `sum`'s 1 only because
            // every weight shrank (walkthrough P3's collapse: −0.027
            // against 0.009 on a loss 15x the primary's, and the scale was
            // blamed): the weights set it apart.
            match s.weights.1.abs() >= 2.0 * s.weights.0.abs() {
                true => format!(
                    "MELTR weighs it below zero and {}x the primary's weight in size ({} against {}): its weight \
                     does it, pushing the model to raise that loss, away from its own task.{fit} Compare with a \
                     `sum` run; lower meltr.meta_lr, or raise meltr.gamma (which holds MELTR's output near the sum \
                     of the losses)",
                    readable(s.weights.1.abs() / s.weights.0.abs()),
                    readable(s.weights.1),
                    readable(s.weights.0)
                ),
                false => format!(
                    "MELTR weighs it below zero ({} against the primary's {}): the model is pushed to raise that \
                     loss, and its scale makes that push most of the gradient.{fit} {remedy}",
                    readable(s.weights.1),
                    readable(s.weights.0)
                ),
            }
        }
        // Said only where MELTR did rescale (walkthrough C's x26 loss was
        // read raw, under meltr.max_loss_ratio).
        CombinerKind::Meltr if rescaled => format!(
            "MELTR reads this loss scaled down (meltr.loss_scale), but each loss's gradient is its own: \
             its effective weight would have to fall far below the others'.{fit} {remedy}"
        ),
        CombinerKind::Meltr => match now.as_ref() {
            // Its weight at or below `sum`'s 1, the primary's far lower:
            // MELTR's low primary weight adds to what the scale does.
            Some(s) if s.weights.1.abs() >= 2.0 * s.weights.0.abs() => format!(
                "{} does it, and MELTR's weights add to it: the primary's {} against its {}.{fit} {remedy}",
                match flat {
                    Some(_) => "Its gradient",
                    None => "Its scale",
                },
                readable(s.weights.0),
                readable(s.weights.1)
            ),
            Some(s) => format!(
                "MELTR's weights do not set it apart ({} against the primary's {}): {its} does.{fit} {remedy}",
                readable(s.weights.1),
                readable(s.weights.0)
            ),
            None => format!("Its scale does it.{fit} {remedy}"),
        },
        CombinerKind::Weights => {
            "Its weight in combiner.weights may be what does it: lower it, or scale the loss down in the model"
                .to_string()
        }
        CombinerKind::Sum => remedy.to_string(),
        _ => format!("The combiner has not offset its scale. {remedy}"),
    };
    format!(
        "auxiliary loss {} has had {} of the combined gradient on {} logged share lines in a row since step {} \
         (the primary, {primary}: {}{}): the combined gradient is almost only its (the optimizer rescales each \
         coordinate, so the steps may still lower the others' losses). {why}",
        owner.loss,
        crate::numfmt::percent(owner.share),
        crate::engine::gradient_owner::LINES,
        owner.since,
        // -0.0004 read "-0.0%" (walkthrough V).
        crate::numfmt::percent(if owner.primary_share.abs() < 0.0005 {
            0.0
        } else {
            owner.primary_share
        }),
        // Shares sum to 1: one above it has others pulling against it; a
        // negative share is a loss the combined gradient raises
        // (walkthrough F's 1019.6% against the primary's -899.9%); Adam's
        // per-coordinate steps need not (walkthrough O's primary fell
        // under a -0.5% share).
        match (owner.share > 1.0, owner.primary_share < -0.0005) {
            (_, true) => "; the others pull against it, and a negative share means the combined gradient points up the primary's loss",
            (true, false) => "; the others pull against it",
            _ => "",
        },
    )
}

#[cfg(test)]
mod tests {
    use crate::engine::auxiliary_rise::AuxiliaryClimb;
    use crate::engine::loss_rise::Rise;

    fn climb(weight: f64, primary_weight: f64) -> AuxiliaryClimb {
        let rise = Rise {
            now: 2.2,
            lowest: 0.23,
            lowest_step: 10,
            first: 0.3,
            first_step: 1,
        };
        AuxiliaryClimb {
            rise,
            weight,
            primary_weight,
        }
    }

    /// Walkthrough L1: a VAE's KL climbing under −0.024 beside the
    /// primary's 0.71 was blamed on the combiner outright.
    #[test]
    fn a_climb_under_a_weak_negative_weight_is_not_blamed_on_the_combiner_outright() {
        let weak = super::auxiliary_climb_event("kl_only", climb(-0.024, 0.71));
        assert!(
            weak.contains("under an effective weight of -0.024 on average since then, small beside the primary's 0.71")
                && weak.contains("the climb may be the model's own")
                && !weak.contains("the combiner has the model maximise it"),
            "{weak}"
        );
        let strong = super::auxiliary_climb_event("kl_only", climb(-1.66, 0.71));
        assert!(
            strong.contains(
                "under an effective weight of -1.66 on average since then: the combiner has the model maximise it"
            ),
            "{strong}"
        );
    }
}
