//! Tests of the meta step's messages.

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
        hypergradient_cause(&names, &[0.5, 0.25, f64::INFINITY], false),
        "non-finite loss: training aux inf"
    );
    assert_eq!(
        hypergradient_cause(&names, &[f64::NAN, 0.25, 2.0], true),
        "non-finite loss: validation primary NaN"
    );
    let finite = hypergradient_cause(&names, &[0.5, 0.25, 2.0], false);
    assert!(
        finite.starts_with(
            "from finite losses (validation primary 0.5, training primary 0.25, training aux 2)"
        ) && !finite.contains("factorized"),
        "{finite}"
    );
    // Exact mode's own second derivatives may be the NaN (walkthrough N4).
    let exact = hypergradient_cause(&names, &[0.5, 0.25, 2.0], true);
    assert!(
        exact.ends_with("aid.mode = \"factorized\" at aid.iterations = 0 takes none"),
        "{exact}"
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
        "the training and validation losses on the training batch of step 42"
    );
    assert!(drawn_batches(Some((42, Some(45)))).contains("step 42 (training losses) and step 45"));
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

/// A series stopped at v_2 of J = 2 takes v_0 alone, and names the term
/// that grew.
#[test]
fn a_stopped_series_counts_iterations_and_names_its_terms() {
    let aid = crate::config::AidConfig {
        iterations: 2,
        ..Default::default()
    };
    let stop = crate::meltr::hypergrad::NeumannStop {
        diverged_at: 2,
        growth: 20.0,
    };
    let said = neumann_stopped(&stop, &aid, "");
    assert!(
        said.contains("take v_0 alone, as aid.iterations = 0 does (‖v_2‖ = 2.000e1·‖v_0‖"),
        "{said}"
    );
    // The ceiling first: a pane of a few lines showed the rest.
    assert!(
        said.starts_with("the Neumann series diverges: aid.alpha (now 0.1) must be below 2/λ ≈ "),
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
    let Record::Event { level, message } = after_restore_event(&names, 99, 183, watched(-3.1e-4))
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

/// A copy of the primary is said when found, and when a later reading
/// rules it out (a review: two readings alike had said a copy for good).
#[test]
fn copies_of_the_primary_are_said_found_and_ruled_out() {
    let names = ["nce", "cap", "dup"].map(String::from);
    let dup = PrimaryCopy {
        index: 2,
        factor: 0.5,
    };
    let found = copy_events(&names, &[], &[dup]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("dup has been 0.5x nce's value at every meta step read")
            && found[0].contains("(nce + 0.5×dup)"),
        "{found:?}"
    );
    assert_eq!(copy_events(&names, &[dup], &[dup]), Vec::<String>::new());
    let gone = copy_events(&names, &[dup], &[]);
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(
        gone[0].starts_with("dup is no longer 0.5x nce's value at this meta step"),
        "{gone:?}"
    );
}

/// A route falling back after a live J edit is said alone, not with the
/// loss JVP's route said before (walkthrough G2: a 1000-character line).
#[test]
fn each_fallback_route_is_said_once() {
    let mut said = Vec::new();
    let jvp = "the loss JVP by forward mode (why)".to_string();
    let hvp = "Hessian-vector products by double backward (why)".to_string();
    assert_eq!(
        routes_not_said(&mut said, vec![jvp.clone()]),
        vec![format!("the meta step takes {jvp}")]
    );
    assert_eq!(
        routes_not_said(&mut said, vec![jvp.clone()]),
        Vec::<String>::new()
    );
    assert_eq!(
        routes_not_said(&mut said, vec![hvp.clone(), jvp.clone()]),
        vec![format!("the meta step takes {hvp}")]
    );
    // A route that changes and changes back is said each time.
    let other = "Hessian-vector products by finite differences (why)".to_string();
    assert_eq!(
        routes_not_said(&mut said, vec![other, jvp.clone()]).len(),
        1
    );
    assert_eq!(
        routes_not_said(&mut said, vec![hvp.clone(), jvp.clone()]),
        vec![format!("the meta step takes {hvp}")]
    );
    // Products left out for a while (J = 0) and back on the same route: not
    // said again.
    assert_eq!(
        routes_not_said(&mut said, vec![jvp.clone()]),
        Vec::<String>::new()
    );
    assert_eq!(
        routes_not_said(&mut said, vec![hvp, jvp]),
        Vec::<String>::new()
    );
}
