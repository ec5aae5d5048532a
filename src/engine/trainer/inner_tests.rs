//! The warnings the inner step's logged lines give.

use super::*;

fn owner() -> crate::engine::gradient_owner::Owner {
    crate::engine::gradient_owner::Owner {
        loss: "shuffled".into(),
        share: 0.951,
        primary_share: 0.02,
        since: 2800,
    }
}

/// The warning under MELTR for `(primary, owner)` weights and losses and
/// the primary's first logged loss, the owner read rescaled.
fn meltr_event(weights: (f64, f64), losses: (f64, f64), primary_first: f64) -> String {
    meltr_event_read(true, weights, losses, primary_first)
}

/// [`meltr_event`], the owner read rescaled or raw.
fn meltr_event_read(
    rescaled: bool,
    weights: (f64, f64),
    losses: (f64, f64),
    primary_first: f64,
) -> String {
    let now = Standing {
        weights,
        losses,
        primary_first: Some(primary_first),
        owner_first: None,
    };
    gradient_owner_event(&owner(), "cls", (CombinerKind::Meltr, rescaled), Some(now))
}

/// Walkthrough O: MELTR's weight gave an auxiliary the gradient, and
/// the warning said to scale the loss down.
#[test]
fn a_gradient_owner_weighed_up_by_meltr_is_told_apart_from_one_too_large() {
    let weighed = meltr_event((0.32, 1.95), (0.003, 0.19), 1.41);
    assert!(
        weighed.contains("MELTR weighs it at 1.95 against the primary's 0.32")
            && weighed.contains("The primary's training loss has fallen from 1.41 to 0.003")
            && !weighed.contains("scale it down"),
        "{weighed}"
    );
    let scaled = meltr_event((1.5, 0.4), (0.9, 30.0), 1.2);
    assert!(
        scaled.contains("scale it down") && !scaled.contains("MELTR weighs it"),
        "{scaled}"
    );
    // At or below `sum`'s weight of 1, the scale does it, however low the
    // primary's weight (walkthrough Q: 0.94 against 0.21, 98.7% under sum).
    let below_sum = meltr_event((0.21, 0.94), (1.6, 90.0), 1.6);
    assert!(
        below_sum.contains("scale it down") && !below_sum.contains("MELTR weighs it"),
        "{below_sum}"
    );
    // 30 times the primary is its scale, not a primary fit away.
    assert!(!scaled.contains("training loss"), "{scaled}");
    let fit_and_scaled = meltr_event((1.5, 0.4), (0.01, 0.5), 1.2);
    assert!(
        fit_and_scaled.contains("has fallen from 1.2 to 0.01"),
        "{fit_and_scaled}"
    );
    // Near the primary's weight, above 1, its scale does it (walkthrough
    // C: 1.01 against 0.91, 96–97.7% under sum); read raw, no rescaling is
    // said.
    let near = meltr_event((0.905, 1.013), (1.2, 30.0), 1.6);
    assert!(
        near.contains("scale it down") && !near.contains("MELTR weighs it"),
        "{near}"
    );
    let raw = meltr_event_read(false, (0.905, 1.013), (1.2, 30.0), 1.6);
    assert!(
        raw.contains("MELTR's weights do not set it apart (1.013 against the primary's 0.905): its scale does")
            && !raw.contains("common scale"),
        "{raw}"
    );
    // Just above 1 it is the scale as well (walkthrough R: a x30 loss at
    // 1.02 against 0.33 held 90%, 95.5% under sum).
    let just_above = meltr_event_read(false, (0.3284, 1.02), (1.2, 20.0), 1.6);
    assert!(
        just_above.contains(
            "Its scale does it, and MELTR's weights add to it: the primary's 0.3284 against its 1.02"
        ) && !just_above.contains("MELTR weighs it"),
        "{just_above}"
    );
    // Far apart below 1, MELTR's low primary weight is said with the scale.
    let apart = meltr_event_read(false, (0.02, 0.95), (1.2, 30.0), 1.6);
    assert!(
        apart.contains(
            "Its scale does it, and MELTR's weights add to it: the primary's 0.02 against its 0.95"
        ) && !apart.contains("do not set it apart"),
        "{apart}"
    );
}

/// Walkthrough N: random regression targets (loss 1.0 from start to end)
/// held 98% of the gradient beside a reconstruction loss of 0.03, and the
/// warning said "its scale does". A loss that has not fallen is said so.
#[test]
fn a_gradient_owner_whose_loss_never_fell_is_said_to_be_one() {
    let event_weighed = |owner_first: f64, weight: f64| {
        let now = Standing {
            weights: (1.777, weight),
            losses: (0.03, 1.01),
            primary_first: Some(0.12),
            owner_first: Some(owner_first),
        };
        gradient_owner_event(&owner(), "recon", (CombinerKind::Meltr, false), Some(now))
    };
    let event = |owner_first: f64| event_weighed(owner_first, 0.9638);
    let flat = event(1.05);
    assert!(
        flat.contains("its gradient does")
            && flat.contains("Its own loss has not fallen (1.05 at first, 1.01 now)")
            && flat.contains(
                "Compare with a run that leaves it out of workload.auxiliary before dropping it"
            )
            && flat.contains("a helpful one near its floor")
            && !flat.contains("scale it down"),
        "{flat}"
    );
    // Under a negative weight the model is pushed to raise it: not said
    // to be a loss it cannot lower.
    let pushed = event_weighed(1.05, -0.3);
    assert!(!pushed.contains("has not fallen"), "{pushed}");
    let fell = event(4.0);
    assert!(
        fell.contains("its scale does") && !fell.contains("has not fallen"),
        "{fell}"
    );
}

/// A primary share of -0.0004 read "-0.0%" (walkthrough V).
#[test]
fn a_primary_share_near_zero_reads_without_a_sign() {
    let owner = crate::engine::gradient_owner::Owner {
        primary_share: -0.0004,
        ..owner()
    };
    let said = gradient_owner_event(&owner, "main", (CombinerKind::Sum, false), None);
    assert!(said.contains("(the primary, main: 0.0%)"), "{said}");
}

/// A negative weight is said as such (walkthrough E: "do not set it apart
/// (-0.05532 against the primary's 0.108)"), rescaled or raw; a negative
/// primary share is a loss the step raises (walkthrough F).
#[test]
fn a_gradient_owner_under_a_negative_weight_says_the_model_climbs_it() {
    for rescaled in [true, false] {
        let said = meltr_event_read(rescaled, (0.108, -0.05532), (1.2, 30.0), 1.6);
        assert!(
            said.contains("MELTR weighs it below zero (-0.05532 against the primary's 0.108): the model is pushed to raise that loss")
                && !said.contains("do not set it apart")
                && !said.contains("common scale"),
            "{said}"
        );
    }
    // Every weight shrunk in a collapse, the owner's twice the primary's
    // in size (walkthrough P3: −0.027 against 0.009, and the scale was
    // blamed): the weights do it.
    let shrunk = meltr_event((0.009, -0.027), (1.2, 30.0), 1.6);
    assert!(
        shrunk.contains("MELTR weighs it below zero and 3x the primary's weight in size (-0.027 against 0.009): its weight does it")
            && !shrunk.contains("A loss on a far larger scale"),
        "{shrunk}"
    );
    // Weighed up and negative: its weight does it, and its sign is said.
    let large = meltr_event((0.5, -3.0), (1.2, 3.0), 1.6);
    assert!(
        large.contains("MELTR weighs it at -3 against the primary's 0.5: its weight does it, and below zero, it pushes the model to raise that loss"),
        "{large}"
    );
    let against = crate::engine::gradient_owner::Owner {
        share: 10.196,
        primary_share: -8.999,
        ..owner()
    };
    let said = gradient_owner_event(&against, "main", (CombinerKind::Sum, false), None);
    assert!(
        said.contains("(the primary, main: -899.9%; the others pull against it, and a negative share means the combined gradient points up the primary's loss)"),
        "{said}"
    );
    let above_one = crate::engine::gradient_owner::Owner {
        share: 1.2,
        primary_share: 0.0,
        ..owner()
    };
    let said = gradient_owner_event(&above_one, "main", (CombinerKind::Sum, false), None);
    assert!(
        said.contains("main: 0.0%; the others pull against it)"),
        "{said}"
    );
}
