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

/// Where the series `v_{j+1} = (1 − α·H) v_j` for a diagonal H from
/// `v_0` stops at the default bound (the first term longer than v_0),
/// taken apart from `hypergrad::neumann`: what its warning reads.
fn stop_of(eigenvalues: &[f64], start: &[f64], alpha: f64) -> NeumannStop {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let first = norm(start);
    let mut v = start.to_vec();
    for j in 1..=1000 {
        let hv: Vec<f64> = v.iter().zip(eigenvalues).map(|(x, l)| x * l).collect();
        let next: Vec<f64> = v.iter().zip(&hv).map(|(x, h)| x - alpha * h).collect();
        if norm(&next) > first {
            let squared = norm(&v).powi(2);
            return NeumannStop {
                diverged_at: j,
                growth: norm(&next) / first,
                curvature: v.iter().zip(&hv).map(|(x, h)| x * h).sum::<f64>() / squared,
                stretch: norm(&hv) / squared.sqrt(),
            };
        }
        v = next;
    }
    panic!("the series never grew past v_0");
}

/// ‖v_100‖ / ‖v_0‖ at α from v_0 = (1, …, 1).
fn growth_in_100(eigenvalues: &[f64], alpha: f64) -> f64 {
    let ones = vec![1.0; eigenvalues.len()];
    let last = eigenvalues
        .iter()
        .map(|l| (1.0 - alpha * l).powi(100))
        .map(|x| x * x)
        .sum::<f64>();
    (last / ones.len() as f64).sqrt()
}

/// The number after `to about` in the advice.
fn advised_alpha(advice: &str) -> f64 {
    let after = advice.split("to about ").nth(1).expect(advice);
    let number = after.split(',').next().unwrap();
    number.parse().expect(advice)
}

fn advice_at(alpha: f64, stop: &NeumannStop) -> String {
    let aid = crate::config::AidConfig {
        alpha,
        ..Default::default()
    };
    alpha_advice(&aid, stop)
}

/// The α kept is a ceiling: never below the true 2/λ_max (no α it
/// excludes converges), and 2/λ_max itself when v lies along the top
/// eigendirection; a tenth of it is advised.
#[test]
fn the_advised_alpha_is_a_tenth_of_a_ceiling_at_two_over_the_largest_eigenvalue() {
    let eigenvalues = [1189.0, 300.0, 20.0, 1.0, 0.01];
    let truth = 2.0 / 1189.0;
    let ones = [1.0; 5];
    for alpha in [0.1, 0.01, 0.005, 0.002] {
        let stop = stop_of(&eigenvalues, &ones, alpha);
        let kept = stop.alpha_kept().expect("positive curvature");
        assert!(kept >= truth * 0.9999, "{stop:?}: below 2/λ = {truth}");
        assert!(
            growth_in_100(&eigenvalues, kept * 1.01) > 1.0,
            "{stop:?}: above the ceiling, the series converged"
        );
        let advised = advised_alpha(&advice_at(alpha, &stop));
        assert!((advised / (kept / 10.0) - 1.0).abs() < 0.05, "{advised}");
        // Along the top direction alone: the ceiling is 2/λ.
        let top = stop_of(&eigenvalues[..1], &ones[..1], alpha);
        let kept = top.alpha_kept().unwrap();
        assert!((kept / truth - 1.0).abs() < 1e-9, "{top:?}");
    }
    let top = stop_of(&eigenvalues[..1], &ones[..1], 0.1);
    let advice = advice_at(0.1, &top);
    assert!(
        advice.starts_with(
            "set aid.alpha (now 0.1) to about 1.7e-4, a tenth of the 1.68e-3 above which v_1 = v_0 − α·H·v_0 is longer than v_0"
        ),
        "{advice}"
    );
}

/// A slow growth (walkthroughs R2 and R3: 1.003 to 1.014 a term at
/// α = 0.1) is told apart by the curvature: an α·λ just past 2 is advised
/// a tenth of the ceiling, not a ceiling just below α (read from the
/// growth alone, both cases said 2/λ ≈ 9.9e-2); a negative λ is advised
/// no α at all.
#[test]
fn a_slow_growth_is_told_apart_by_the_curvature_along_the_term() {
    // α·λ = 2.01 along one direction: a growth of 1.01 a term.
    let past_two = stop_of(&[20.1, 0.5], &[1.0, 0.1], 0.1);
    let advice = advice_at(0.1, &past_two);
    let advised = advised_alpha(&advice);
    assert!(advised <= 0.0101, "{advice}");
    assert!(
        growth_in_100(&[20.1, 0.5], advised) < 1.0,
        "{advice}: the advised α diverges"
    );
    // λ = −0.1: a growth of 1.01 a term at any α.
    let negative = stop_of(&[-0.1, 0.5], &[1.0, 0.1], 0.1);
    assert!((negative.growth - 1.0).abs() < 0.02, "{negative:?}");
    assert_eq!(negative.alpha_kept(), None);
    let advice = advice_at(0.1, &negative);
    assert!(
        advice.starts_with("no aid.alpha converges: H curves down along v_0 (⟨v, Hv⟩/‖v‖² = -9.")
            && advice.contains("where v_1 is longer than v_0 at any α")
            && advice.contains("set aid.iterations = 0")
            && advice.contains("raise aid.max_growth (now 1)"),
        "{advice}"
    );
    // Products that overflowed: the plain advice.
    let overflowed = NeumannStop {
        curvature: f64::NAN,
        ..negative
    };
    assert_eq!(
        advice_at(0.1, &overflowed),
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
    let stop = NeumannStop {
        diverged_at: 2,
        growth: 20.0,
        curvature: 30.0,
        stretch: 31.0,
    };
    let said = neumann_stopped(&stop, &aid, "");
    assert!(
        said.contains("take v_0 alone, as aid.iterations = 0 does (‖v_2‖ = 2.000e1·‖v_0‖"),
        "{said}"
    );
    // The ceiling first: a pane of a few lines showed the rest.
    assert!(
        said.starts_with("the Neumann series diverges: set aid.alpha (now 0.1) to about 6.2e-3, "),
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
    let stop = |curvature: f64| NeumannStop {
        diverged_at: 1,
        growth: 1.4,
        curvature,
        stretch: 9.0,
    };
    let (down, up) = (stop(-1.4), stop(20.0));
    for (iterations, cut) in [
        (0, None),
        (2, Some(&down)),
        (2, None),
        (2, Some(&down)),
        (0, Some(&up)),
    ] {
        tally.count(iterations, cut);
    }
    assert_eq!((tally.cut, tally.with_series), (2, 3));
    let summary = tally.summary(40).unwrap();
    assert!(summary.starts_with(
        "since step 40, where this start of the run took it up, the Neumann series was cut short on 2 of the 3 meta steps with aid.iterations > 0 ("
    ) && summary.ends_with("H curved down along the series at every one, where no aid.alpha converges: aid.iterations = 0"), "{summary}");
    tally.count(1, Some(&up));
    assert!(tally.summary(0).unwrap().ends_with("at 2 of them, where no aid.alpha converges: aid.iterations = 0, or a smaller aid.alpha for the rest"));
    let mut positive = super::NeumannTally::default();
    positive.count(1, Some(&up));
    assert!(positive
        .summary(0)
        .unwrap()
        .ends_with("): a smaller aid.alpha, or aid.iterations = 0"));
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
