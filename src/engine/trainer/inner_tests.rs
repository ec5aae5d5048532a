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

/// Walkthrough O: MELTR's weight gave an auxiliary the gradient, and
/// the warning said to scale the loss down.
#[test]
fn a_gradient_owner_weighed_up_by_meltr_is_told_apart_from_one_too_large() {
    let weighed = gradient_owner_event(
        &owner(),
        "cls",
        CombinerKind::Meltr,
        Some(Standing {
            weights: (0.32, 1.95),
            losses: (0.003, 0.19),
            primary_first: Some(1.41),
        }),
    );
    assert!(
        weighed.contains("MELTR weighs it at 1.95 against the primary's 0.32")
            && weighed.contains("The primary's training loss has fallen from 1.41 to 0.003")
            && !weighed.contains("scale it down"),
        "{weighed}"
    );
    let scaled = gradient_owner_event(
        &owner(),
        "cls",
        CombinerKind::Meltr,
        Some(Standing {
            weights: (1.5, 0.4),
            losses: (0.9, 30.0),
            primary_first: Some(1.2),
        }),
    );
    assert!(
        scaled.contains("scale it down") && !scaled.contains("MELTR weighs it"),
        "{scaled}"
    );
    // 30 times the primary is its scale, not a primary fit away.
    assert!(!scaled.contains("training loss"), "{scaled}");
    let fit_and_scaled = gradient_owner_event(
        &owner(),
        "cls",
        CombinerKind::Meltr,
        Some(Standing {
            weights: (1.5, 0.4),
            losses: (0.01, 0.5),
            primary_first: Some(1.2),
        }),
    );
    assert!(
        fit_and_scaled.contains("has fallen from 1.2 to 0.01"),
        "{fit_and_scaled}"
    );
}
