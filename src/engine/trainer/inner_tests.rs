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
        }),
    );
    assert!(
        weighed.contains("MELTR weighs it at 1.95 against the primary's 0.32")
            && weighed.contains("The primary's training loss, 0.003, is far below")
            && !weighed.contains("scale it down"),
        "{weighed}"
    );
    let scaled = gradient_owner_event(
        &owner(),
        "cls",
        CombinerKind::Meltr,
        Some(Standing {
            weights: (1.5, 0.4),
            losses: (1.2, 1.1),
        }),
    );
    assert!(
        scaled.contains("scale it down") && !scaled.contains("MELTR weighs it"),
        "{scaled}"
    );
    assert!(!scaled.contains("training loss"), "{scaled}");
}
