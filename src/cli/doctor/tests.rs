//! `check`'s hints on the first batch's losses and gradient shares.

#[test]
fn an_auxiliary_with_next_to_no_gradient_is_said() {
    let shares = |values: &[(&str, f64)]| -> Vec<(String, f64)> {
        values.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    };
    let losses = shares(&[("tag", 0.7), ("next", 3.9), ("const", 2.0)]);
    let some = shares(&[("tag", 0.4), ("next", 0.6), ("const", -8.4e-8)]);
    let flat_norm = shares(&[("tag", 0.9), ("next", 1.1), ("const", 1e-7)]);
    let hint = super::flat_hint(&losses, &some, &flat_norm).unwrap();
    assert!(
        hint.starts_with("const (")
            && hint.contains(") has next to none of the first batch's gradient"),
        "{hint}"
    );
    // Without the norms, the share alone decides.
    assert!(super::flat_hint(&losses, &some, &[]).is_some());
    // A gradient at right angles to the rest is no constant (walkthrough
    // I's random labels, at 72% of the primary's norm).
    let orthogonal = shares(&[("tag", 0.9), ("next", 1.1), ("const", 0.65)]);
    assert_eq!(super::flat_hint(&losses, &some, &orthogonal), None);
    let primary_flat = shares(&[("tag", 1e-5), ("next", 1.0)]);
    assert_eq!(super::flat_hint(&losses, &primary_flat, &[]), None);
    // A masked loss at 0 on the first batch is no constant.
    let masked = shares(&[("tag", 0.7), ("next", 3.9), ("const", 0.0)]);
    assert_eq!(super::flat_hint(&masked, &some, &[]), None);
    // A loss of a small scale has a gradient as small: per unit of its
    // value as large as the primary's, it is no constant (walkthrough X's
    // `1e-3 · L1`, 1/3500 of the primary).
    let small = shares(&[("tag", 0.7), ("next", 3.9), ("l1", 2e-4)]);
    let small_share = shares(&[("tag", 0.4), ("next", 0.6), ("l1", 2e-9)]);
    let small_norm = shares(&[("tag", 0.9), ("next", 1.1), ("l1", 4e-5)]);
    assert_eq!(super::flat_hint(&small, &small_share, &small_norm), None);
    // ... but one whose gradient is far smaller still, for its value, is.
    let tiny_norm = shares(&[("tag", 0.9), ("next", 1.1), ("l1", 1e-11)]);
    assert!(super::flat_hint(&small, &small_share, &tiny_norm).is_some());
}

#[test]
fn an_auxiliary_with_most_of_the_first_gradient_is_said() {
    let shares = |values: &[(&str, f64)]| -> Vec<(String, f64)> {
        values.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    };
    let scaled = shares(&[
        ("mse", 0.04),
        ("help", 0.05),
        ("scaled2", 0.88),
        ("rand", 0.03),
    ]);
    let hint = super::gradient_hint(&scaled).unwrap();
    assert_eq!(
        hint,
        "scaled2 has 88.0% of the first batch's gradient under equal weights (the primary, mse: 4.0%): under `sum` \
         the model would train mostly on scaled2, whatever its value looks like, and MELTR's weights have to offset \
         it. That is the untrained model's share: an untrained head's first errors can hold it for a few steps \
         only, so `table --metric share/scaled2` after a short run says whether it lasts; if it does and its \
         scale is arbitrary, divide it in the model's forward"
    );
    assert!(super::share_words(&scaled).starts_with("mse 4.0%, help 5.0%, scaled2 88.0%"));
    // The primary's share as the gradient line prints it (walkthrough R
    // read `cls 0.2%` there and `cls: 0%` here).
    let tiny = super::gradient_hint(&shares(&[("cls", 0.002), ("recon", 0.979)])).unwrap();
    assert!(tiny.contains("(the primary, cls: 0.2%)"), "{tiny}");
    // Most of it but under half, or the primary's own: nothing said.
    assert!(super::gradient_hint(&shares(&[("p", 0.55), ("a", 0.45)])).is_none());
    assert!(super::gradient_hint(&shares(&[("p", 0.9), ("a", 0.1)])).is_none());
    assert!(super::gradient_hint(&shares(&[("p", 1.0)])).is_none());
    // Seven auxiliaries of about 13% each leave the primary 6%: said;
    // 20% of five losses is an equal share: not said.
    let many: Vec<(&str, f64)> = std::iter::once(("cls", 0.06))
        .chain(["a", "b", "c", "d", "e", "f", "g"].map(|n| (n, 0.94 / 7.0)))
        .collect();
    let small = super::gradient_hint(&shares(&many)).unwrap();
    assert!(
        small.starts_with("the primary, cls, has 6.0% of the first batch's gradient")
            && small.contains("(8 losses)"),
        "{small}"
    );
    let even = [("p", 0.2), ("a", 0.2), ("b", 0.2), ("c", 0.2), ("d", 0.2)];
    assert!(super::gradient_hint(&shares(&even)).is_none());
}

#[test]
fn a_loss_far_from_the_primarys_scale_is_said_with_its_ratio() {
    let losses = [
        ("cls".to_string(), 1.6),
        ("freq".to_string(), 0.9),
        ("freq100".to_string(), 90.0),
        ("tiny".to_string(), 0.01),
    ];
    let words = super::first_batch_words(&losses);
    assert!(words.contains("freq100 90 (56.25x the primary)"), "{words}");
    // A negative loss keeps its sign in the ratio (walkthrough M1's
    // router entropy read `0.729x`).
    let negative = [("ce".to_string(), 2.0), ("negent".to_string(), -40.0)];
    assert!(
        super::first_batch_words(&negative).contains("negent -40 (-20x the primary)"),
        "{}",
        super::first_batch_words(&negative)
    );
    // A primary below 0 (a log-likelihood) sets no scale: no ratios, one
    // hint that says so (walkthrough H1 was told to divide a loss by 15).
    let nll = [("nll".to_string(), -2.472), ("noise".to_string(), 9.186)];
    assert_eq!(super::first_batch_words(&nll), "nll -2.472, noise 9.186");
    let hints = super::scale_hints(&nll);
    assert!(
        hints.len() == 1
            && hints[0].starts_with("the primary's first value (-2.472) is not above 0"),
        "{hints:?}"
    );
    let hints = super::scale_hints(&losses);
    // The two, and what they are judged on (walkthrough H4).
    assert_eq!(hints.len(), 3, "{hints:?}");
    assert!(
        hints[2].starts_with("these ratios are the first batch's at the initial parameters"),
        "{hints:?}"
    );
    assert!(
        hints[0].starts_with("freq100 starts 10x") && hints[0].contains("by ~56 for freq100"),
        "{hints:?}"
    );
    assert!(
        hints[1].starts_with("tiny starts at a tenth or less")
            && hints[1].contains("multiply it in the model's forward (by ~160 for tiny)"),
        "{hints:?}"
    );
    assert!(super::scale_hints(&losses[..2]).is_empty());
    // Each far loss gets its factor (walkthrough V: the 1324x one had none).
    let two = [
        ("main".to_string(), 1.0),
        ("logit_reg".to_string(), 14.0),
        ("margin_x40".to_string(), 1324.0),
    ];
    let hints = super::scale_hints(&two);
    assert!(
        hints[0].ends_with("(by ~14 for logit_reg, ~1324 for margin_x40)"),
        "{hints:?}"
    );
    // A loss defined as 10x the primary, as floating point has it.
    let primary = 4.768f64;
    let tenfold = [
        ("nce".to_string(), primary),
        ("nce_x10".to_string(), primary * 10.0 * (1.0 - 1e-9)),
    ];
    assert!(super::first_batch_words(&tenfold).contains("(10x the primary)"));
    assert_eq!(super::scale_hints(&tenfold).len(), 2);
    assert!(words.contains("tiny 0.01 ("), "{words}");
    assert!(
        words.contains("freq 0.9,") && !words.contains("freq 0.9 ("),
        "{words}"
    );
}

/// Walkthrough J: a detached entropy as the primary passed `check` as "ok".
#[test]
fn a_primary_without_a_gradient_is_warned_about() {
    let named = |values: &[(&str, f64)]| -> Vec<(String, f64)> {
        values.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    };
    let losses = named(&[("entropy", 0.69), ("bce", 0.7)]);
    let shares = named(&[("entropy", 0.0), ("bce", 1.0)]);
    let flat = named(&[("entropy", 0.0), ("bce", 1.0)]);
    let warning = super::flat_primary_warning(&losses, &shares, &flat).unwrap();
    assert!(
        warning.starts_with(
            "the primary, entropy, has next to none of the first batch's gradient (0.0%)"
        ),
        "{warning}"
    );
    // A primary at right angles to the auxiliaries pulls by its own norm.
    let own = named(&[("entropy", 0.4), ("bce", 1.0)]);
    assert_eq!(super::flat_primary_warning(&losses, &shares, &own), None);
    // A real primary beside an auxiliary with 10⁵ times its gradient (the
    // review): small, not none.
    let dwarfed = named(&[("entropy", 1e-5), ("bce", 1.0)]);
    assert_eq!(
        super::flat_primary_warning(&losses, &dwarfed, &dwarfed),
        None
    );
    // Without its own norm, the share alone does not decide for the primary.
    assert_eq!(super::flat_primary_warning(&losses, &shares, &[]), None);
    // A masked primary at 0 on the first batch, or a primary alone: no.
    let masked = named(&[("entropy", 0.0), ("bce", 0.7)]);
    assert_eq!(super::flat_primary_warning(&masked, &shares, &flat), None);
    let alone = named(&[("entropy", 0.0)]);
    assert_eq!(
        super::flat_primary_warning(&losses[..1], &alone, &flat),
        None
    );
}

/// Walkthrough L: a loss exactly 0 on most batches went unsaid.
#[test]
fn a_loss_exactly_zero_on_scanned_batches_is_said() {
    let zero = vec![
        ("rare".to_string(), vec![1, 2, 4]),
        ("never".to_string(), vec![1, 2, 3, 4]),
    ];
    let notes = super::nan_words::zero_notes(&zero, 4);
    assert!(
        notes[0].starts_with("rare is exactly 0 on 3 of the 4 batches scanned"),
        "{notes:?}"
    );
    assert!(
        notes[1].starts_with("never is exactly 0 on all 4 batches scanned"),
        "{notes:?}"
    );
    let first = super::nan_words::zero_notes(&zero[..1], 1);
    assert!(
        first[0].contains("`--batches N` counts how often"),
        "{first:?}"
    );
    assert!(super::nan_words::zero_notes(&[], 4).is_empty());
}

/// A loss 0 on every batch scanned at the initial parameters may be one
/// against the model's own starting state (walkthrough O2's distillation to
/// its frozen base read as a loss that never trains): the note says so.
#[test]
fn a_loss_zero_on_every_batch_scanned_may_be_one_against_the_start() {
    let zero = [("distill".to_string(), vec![1, 2, 3])];
    let notes = super::nan_words::zero_notes(&zero, 3);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with(
            "distill is exactly 0 on all 3 batches scanned, at the initial parameters"
        ) && notes[0].contains("a loss against the model's own starting state"),
        "{notes:?}"
    );
    let notes = super::nan_words::zero_notes(&[("aux".to_string(), vec![2])], 3);
    assert!(
        notes[0].starts_with("aux is exactly 0 on 1 of the 3 batches scanned"),
        "{notes:?}"
    );
}
