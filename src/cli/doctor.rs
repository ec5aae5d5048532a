//! `meltr-tui doctor`: what this build links and what this machine offers
//! (libtorch, CUDA, cuDNN, threads, terminal).

mod nan_words;

use crate::workload::torchscript::NOT_FINITE_ON_CLEAN_ROWS;
use anyhow::Result;
use nan_words::{
    evaluation_words, non_finite_gradient_words, non_finite_words, zero_notes, NanCause,
};

/// Prints the report, written at once: `doctor | head -3` closed the pipe
/// while CUDA was queried and a line-by-line print panicked (walkthrough S).
pub(super) fn doctor() -> Result<()> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let cuda = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    let term = std::env::var("TERM").unwrap_or_else(|_| "(unset)".into());
    let _ = writeln!(out, "meltr-tui {}", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(out, "libtorch   {}", crate::libtorch_version());
    let _ = writeln!(
        out,
        "  from     {}",
        option_env!("MELTR_LIBTORCH_LIB").unwrap_or("(unknown)")
    );
    let _ = writeln!(
        out,
        "CUDA       {}",
        if cuda {
            format!("available, {count} device(s)")
        } else {
            "not available".into()
        }
    );
    for i in 0..count {
        let _ = writeln!(out, "  cuda:{i}");
    }
    let cudnn = if tch::Cuda::cudnn_is_available() {
        "available"
    } else {
        "not available"
    };
    let _ = writeln!(out, "cuDNN      {cudnn}");
    let _ = writeln!(out, "threads    {}", tch::get_num_threads());
    let _ = writeln!(
        out,
        "terminal   TERM={term}  NO_COLOR={}",
        std::env::var("NO_COLOR").map(|_| "set").unwrap_or("unset")
    );
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// `meltr-tui check`: builds the run `config_path` (with `overrides`) asks
/// for, as `run` would before its first step, and says what it would
/// train.
pub(super) fn check(
    config_path: &std::path::Path,
    overrides: &[crate::config::Override],
    batches: u64,
) -> Result<()> {
    let config = super::config_file::configured(config_path, None, overrides)?;
    let crate::engine::Checked {
        meta,
        said,
        first_losses,
        first_shares,
        first_gradient_ratios,
        non_finite_gradients,
        apart_from_primary,
        copies,
        non_finite,
        zero,
        copy_readings,
        evaluation,
        moved_buffers,
        batches_per_epoch,
        forward_draws,
    } = super::config_file::in_file(
        crate::engine::check_scanning(&config, batches),
        config_path,
        overrides,
    )?;
    let (primary, auxiliary) = meta.losses.split_first().expect("a primary loss");
    // The data's own NaN, the model not masking them (warned below); NaN
    // it masks are no cause (walkthrough Q was told both "the model masks
    // them" and "does not mask them").
    // Nor are NaN the model makes on clean rows too (walkthrough S's model
    // multiplied its primary by NaN, and its masked labels were blamed).
    let train_said = |m: &str| m.starts_with("workload.train: ") && m.contains(" non-finite value");
    let cause = if said
        .iter()
        .any(|(_, m)| train_said(m) && m.contains(NOT_FINITE_ON_CLEAN_ROWS))
    {
        NanCause::ModelOnCleanRows
    } else if said
        .iter()
        // "the model masks them (…)": the check found it so; ", unless the
        // model masks them" is no finding.
        .any(|(_, m)| train_said(m) && !m.contains("the model masks them ("))
    {
        NanCause::Data
    } else {
        NanCause::Model
    };
    let goal = if meta.higher_is_better {
        "higher"
    } else {
        "lower"
    };
    let evaluation = evaluation.unwrap_or_default();
    let primary_metric_fails = evaluation.metrics.contains(&meta.primary_metric);
    // A loss not finite itself is said as such; these are finite losses
    // whose gradient is not.
    // And only where every loss is finite: a non-finite one's NaN reaches
    // the others' gradients through shared layers, as 0 × NaN (walkthrough
    // K1: BatchNorm spread one NaN input row over the batch, and a masked
    // loss, a constant 0 on that batch, was named).
    let losses_finite = first_losses.iter().all(|(_, v)| v.is_finite());
    let non_finite_gradients: Vec<String> = match losses_finite {
        true => non_finite_gradients,
        false => Vec::new(),
    };
    let fails = !non_finite.is_empty() || primary_metric_fails || !non_finite_gradients.is_empty();
    say!(
        "{}: {}a run would train the {} workload on {}{}",
        super::config_file::from_file(config_path, overrides),
        if fails { "" } else { "ok, " },
        meta.workload,
        meta.device,
        // A failing check opened like a passing one (walkthrough P); a
        // passing one with warnings, like a clean one (walkthrough J1's
        // unmasked NaN rows, whose updates a run would skip).
        match (
            fails,
            said.iter()
                .any(|(level, _)| *level != crate::session::metrics::Level::Info)
        ) {
            (true, _) => ", but not every value is finite (below)",
            (false, true) => ", with warnings (below)",
            (false, false) => "",
        }
    );
    say!("  primary loss   {primary}");
    say!("  auxiliary      {}", auxiliary.join(", "));
    say!(
        "  metric         {} ({goal} is better)",
        meta.primary_metric
    );
    say!(
        "  combiner       {} · {} steps",
        config.combiner.kind.as_str(),
        config.train.steps
    );
    say!("  first batch    {}", first_batch_words(&first_losses));
    if !non_finite_gradients.is_empty() {
        say!(
            "  gradient       not finite on the first batch: {}'s (below)",
            non_finite_gradients.join("'s, ")
        );
    } else if !auxiliary.is_empty() {
        match &first_shares {
            Ok(_) if !losses_finite => say!(
                "  gradient       shares not taken: not every loss is finite on the first batch"
            ),
            // A share of a non-finite gradient is no share (walkthrough K:
            // `primary NaN%` beside a finite primary loss).
            Ok(shares) if shares.iter().any(|(_, s)| !s.is_finite()) => say!(
                "  gradient       shares not taken: the first batch's combined gradient is not finite"
            ),
            Ok(shares) => say!("  gradient       {}", share_words(shares)),
            Err(why) => say!("  gradient       shares not taken: {why}"),
        }
    }
    let shares = first_shares.as_deref().unwrap_or_default();
    // A meta-trained run's start says a copied loss itself (below, among
    // its first events): once is enough.
    let copies = copies
        .into_iter()
        .filter(|hint| !said.iter().any(|(_, message)| message == hint))
        .chain(crate::engine::trainer::scaled_copy_hints(
            &meta.losses,
            &copy_readings,
        ));
    // Under `primary` the auxiliaries train nothing: hints on how they
    // share the gradient do not apply (walkthrough Z3 was told to scale
    // two of them), one line says so instead.
    let primary_only = config.combiner.kind == crate::config::CombinerKind::Primary;
    let auxiliary_hints: Vec<String> = match primary_only {
        true if !auxiliary.is_empty() => vec![format!(
            "under combiner.kind = \"primary\" the auxiliaries ({}) train nothing: their values are logged, \
             and parameters only they reach get no gradient; the shares above are what `sum` would train on",
            auxiliary.join(", ")
        )],
        true => Vec::new(),
        false => scale_hints(&first_losses)
            .into_iter()
            .chain(copies)
            .chain(gradient_hint(shares))
            .chain(apart::hints(
                &apart_from_primary,
                config.combiner.kind == crate::config::CombinerKind::Meltr,
            ))
            .chain(flat_hint(&first_losses, shares, &first_gradient_ratios))
            .collect(),
    };
    for hint in auxiliary_hints {
        say!("hint: {hint}");
    }
    if let Some(warning) = flat_primary_warning(&first_losses, shares, &first_gradient_ratios) {
        say!("warning: {warning}");
    }
    // What a run's start would say: its first events.
    for (level, message) in said {
        let tag = match level {
            crate::session::metrics::Level::Info => "note",
            _ => "warning",
        };
        say!("{tag}: {message}");
    }
    // Of how many (walkthrough R2: one batch of a large epoch read as the
    // data checked).
    let of = batches_per_epoch.map_or(String::new(), |n| format!(" of the {n} an epoch"));
    if batches > 1 {
        say!(
            "  batches        {batches} training batches scanned{of}: {}",
            if non_finite.is_empty() {
                "every loss finite on each"
            } else {
                "not every loss finite (below)"
            }
        );
    }
    if batches > 1 {
        say!("  validation     {}", evaluation_words(&evaluation));
    } else if !fails {
        // A model that fails on one batch in six passed on the first
        // (walkthrough S).
        say!(
            "  scanned        the first training batch{of} and the first validation batch only: `--batches N` runs N and evaluates the validation split once"
        );
    }
    for note in zero_notes(&zero, batches)
        .into_iter()
        .chain(training_forward::moved_buffers_note(
            &moved_buffers,
            &config,
        ))
        .chain(training_forward::random_draws_note(
            forward_draws.as_ref(),
            &config,
        ))
    {
        say!("note: {note}");
    }
    if !non_finite.is_empty() {
        anyhow::bail!("{}", non_finite_words(&non_finite, batches, cause));
    }
    if !non_finite_gradients.is_empty() {
        anyhow::bail!("{}", non_finite_gradient_words(&non_finite_gradients));
    }
    if primary_metric_fails {
        anyhow::bail!(
            "the primary metric `{}` is not finite on the validation split: no evaluation can rank \
             the run's checkpoints (`--best`), and the runs' tables read NaN",
            meta.primary_metric
        );
    }
    Ok(())
}

/// Whether the primary's first value gives no size to read the others
/// beside (a negative log-likelihood's −2.5 read a loss of 9.2 as
/// "-15.41x the primary", walkthrough H1): the trainer's own test.
fn primary_gives_no_scale(losses: &[(String, f64)]) -> bool {
    let values: Vec<f64> = losses.iter().map(|(_, v)| *v).collect();
    crate::engine::trainer::primary_gives_no_scale(&values)
}

/// The first batch's losses, each auxiliary far from the primary's scale
/// (10x or more either way) with its ratio: what `meltr.loss_scale` and
/// `sum` will meet (a walkthrough's 859x auxiliary was first said at step
/// 10 of the run).
fn first_batch_words(losses: &[(String, f64)]) -> String {
    let primary = match primary_gives_no_scale(losses) {
        true => f64::NAN,
        false => losses.first().map_or(f64::NAN, |(_, v)| v.abs()),
    };
    let words: Vec<String> = losses
        .iter()
        .enumerate()
        .map(|(i, (name, value))| {
            let ratio = value.abs() / primary;
            let far = i > 0 && (far_above(ratio) || far_below(ratio));
            match far {
                // Signed, as the values are (walkthrough M1).
                true => format!(
                    "{name} {} ({}x the primary)",
                    crate::numfmt::readable(*value),
                    crate::numfmt::readable(value / losses[0].1)
                ),
                false => format!("{name} {}", crate::numfmt::readable(*value)),
            }
        })
        .collect();
    words.join(", ")
}

/// Each loss's share of the first batch's gradient under equal weights,
/// primary first, as percentages.
fn share_words(shares: &[(String, f64)]) -> String {
    let each: Vec<String> = shares
        .iter()
        .map(|(name, share)| format!("{name} {}", crate::numfmt::percent(*share)))
        .collect();
    format!(
        "{} (shares of the first batch's gradient, equal weights as under `sum`)",
        each.join(", ")
    )
}

/// An auxiliary with at least this share of the first batch's gradient
/// under equal weights is said: `sum` would train mostly on it.
const LARGEST_FAIR_SHARE: f64 = 0.5;

/// The primary with less than this share of the first batch's gradient
/// under equal weights (and less than half of an equal share) is said.
const SMALL_PRIMARY_SHARE: f64 = 0.1;

/// What an auxiliary holding most of the first batch's gradient means, or
/// a primary left a small part of it by all of them (`shares`: primary
/// first).
fn gradient_hint(shares: &[(String, f64)]) -> Option<String> {
    let (primary, share) = shares.first()?;
    let (name, most) = shares
        .iter()
        .skip(1)
        .filter(|(_, s)| s.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    // No one auxiliary holds most of it, yet all of them together leave the
    // primary a small part (seven auxiliaries of 13% each were not said).
    let small_primary = share.is_finite()
        && *share < SMALL_PRIMARY_SHARE.min(0.5 / shares.len() as f64)
        && *most < LARGEST_FAIR_SHARE;
    if small_primary {
        return Some(format!(
            "the primary, {primary}, has {} of the first batch's gradient under equal weights, less than half of an \
             equal share ({} losses): under `sum` the auxiliaries together train the model more than its own task, \
             and MELTR's weights have to offset them; `table --metric share/{primary}` shows its share after a run",
            crate::numfmt::percent(*share),
            shares.len()
        ));
    }
    (*most >= LARGEST_FAIR_SHARE).then(|| {
        format!(
            "{name} has {} of the first batch's gradient under equal weights (the primary, {primary}: {}): \
             under `sum` the model would train mostly on {name}, whatever its value looks like, and MELTR's \
             weights have to offset it. That is the untrained model's share: an untrained head's first errors \
             can hold it for a few steps only, so `table --metric \
             share/{name}` after a short run says whether it lasts; if it does and its scale is arbitrary, \
             divide it in the model's forward",
            // (An untrained head's: walkthrough Z1's `length` held 74% of the
            // first batch's gradient and 3% by step 50.)
            // As the gradient line above prints them (it read `cls 0.2%`
            // above `cls: 0%`, walkthrough R).
            crate::numfmt::percent(*most),
            crate::numfmt::percent(*share)
        )
    })
}

/// Below this share of the first gradient a loss moves the model next to
/// nothing.
const FLAT_SHARE: f64 = 1e-4;

/// Below this share (and own norm against the combined gradient's) the
/// primary has no gradient to speak of.
const FLAT_PRIMARY: f64 = 1e-9;

/// Auxiliaries with next to none of the first batch's gradient: their value
/// hardly depends on the model's parameters (walkthrough B's `const`, 2 +
/// 1e-6·head, showed `-0.0000084%` and no word).
/// A loss that is 0 on the first batch (a masked loss with nothing to
/// mask there) has no gradient there either, and is no such case.
/// A small share alone may be a loss at right angles to the rest (its own
/// gradient, `ratios`: its norm over the combined one's, says which; a
/// random-label loss, its gradient's norm 72% of the primary's, read as
/// a constant, walkthrough I), and a small loss has a small gradient: one
/// whose gradient for its value is within the share's own bar
/// ([`FLAT_SHARE`], 10⁻⁴) of the primary's gradient for its value is a loss
/// of a small scale, which the scale hint says (walkthrough X's `1e-3 · L1`
/// penalty, about a sixth of the primary's per unit, was called a constant
/// beside that hint); a detached `2 + 1e-6·head` is far below it.
fn flat_hint(
    losses: &[(String, f64)],
    shares: &[(String, f64)],
    ratios: &[(String, f64)],
) -> Option<String> {
    let zero = |name: &str| losses.iter().any(|(n, v)| n == name && *v == 0.0);
    let pulls = |name: &str| ratios.iter().any(|(n, r)| n == name && *r >= FLAT_SHARE);
    // A loss's gradient norm per unit of its value.
    let per_unit = |name: &str| -> Option<f64> {
        let value = losses.iter().find(|(n, _)| n == name)?.1.abs();
        let ratio = ratios.iter().find(|(n, _)| n == name)?.1;
        (value > 0.0 && ratio.is_finite()).then(|| ratio / value)
    };
    let primary_per_unit = losses.first().and_then(|(name, _)| per_unit(name));
    let small_scale = |name: &str| match (per_unit(name), primary_per_unit) {
        (Some(own), Some(primary)) => primary > 0.0 && own >= FLAT_SHARE * primary,
        _ => false,
    };
    let flat: Vec<String> = shares
        .iter()
        .skip(1)
        .filter(|(name, s)| {
            s.is_finite()
                && s.abs() < FLAT_SHARE
                && !zero(name)
                && !pulls(name)
                && !small_scale(name)
        })
        .map(|(name, s)| format!("{name} ({})", crate::numfmt::percent(*s)))
        .collect();
    (!flat.is_empty()).then(|| {
        format!(
            "{} {} next to none of the first batch's gradient under equal weights: {} value hardly depends on \
             the model's parameters (a constant, or a detached term), so no weight makes {} help or hurt",
            flat.join(", "),
            if flat.len() == 1 { "has" } else { "have" },
            if flat.len() == 1 { "its" } else { "their" },
            if flat.len() == 1 { "it" } else { "them" },
        )
    })
}

/// A primary with no gradient on the first batch, by its share and its own
/// gradient's norm alike (walkthrough J's entropy of detached logits, plus
/// `0·logits.sum()`, passed `check` as "ok", and the run's collapse warning
/// then blamed a climb of a loss that cannot move): training follows the
/// auxiliaries alone, and MELTR's meta objective gives it nothing. Far
/// stricter than an auxiliary's [`FLAT_SHARE`]: a real primary beside an
/// auxiliary with 10⁴ times its gradient has a share that small too.
fn flat_primary_warning(
    losses: &[(String, f64)],
    shares: &[(String, f64)],
    ratios: &[(String, f64)],
) -> Option<String> {
    let (primary, share) = shares.first()?;
    let zero = losses.first().is_some_and(|(_, v)| *v == 0.0);
    let own = ratios.iter().find(|(n, _)| n == primary).map(|(_, r)| *r);
    let flat = share.is_finite()
        && share.abs() < FLAT_PRIMARY
        && own.is_some_and(|r| r.is_finite() && r < FLAT_PRIMARY)
        && !zero
        && shares.len() > 1;
    flat.then(|| {
        format!(
            "the primary, {primary}, has next to none of the first batch's gradient ({}): its value hardly \
             depends on the model's parameters (a constant, or a detached term). The model would train on \
             the auxiliaries alone, and MELTR's meta objective (the primary's validation loss) would give it \
             nothing to learn from: make workload.primary the loss of the model's own task",
            crate::numfmt::percent(*share)
        )
    })
}

/// 10x the primary or more. A loss defined as 10x the primary came out at
/// 9.9999…x in floating point and was not said (walkthrough N): the ratio
/// is compared as printed, to three significant digits.
fn far_above(ratio: f64) -> bool {
    ratio.is_finite() && ratio >= 9.995
}

/// A tenth of the primary or less, as [`far_above`].
fn far_below(ratio: f64) -> bool {
    ratio.is_finite() && ratio > 0.0 && ratio <= 0.100_05
}

/// What to do about auxiliaries 10x or more off the primary's value, one
/// hint for those above and one for those below: `check` said the ratio and
/// no more. Walkthrough K: an 18x reconstruction loss then carried 97% of
/// the gradient under `sum` and MELTR alike, and `primary` beat both by 5
/// points and more. Walkthrough M: a 0.057x loss carried 0.0% of it under
/// MELTR.
fn scale_hints(losses: &[(String, f64)]) -> Vec<String> {
    let Some(primary) = losses.first().map(|(_, v)| v.abs()) else {
        return Vec::new();
    };
    // Exactly 0: a masked primary with nothing to mask on this batch (a
    // semi-supervised one over few labelled rows, walkthrough P2), read as
    // a log-likelihood.
    if losses[0].1 == 0.0 {
        return vec![
            "the primary is exactly 0 on the first batch (a masked loss with nothing to mask there?): a \
             loss's size beside it says nothing of its scale here (the `gradient` line above shows how hard \
             each pulls)"
                .to_string(),
        ];
    }
    if primary_gives_no_scale(losses) {
        return vec![format!(
            "the primary's first value ({}) is not above 0 (a log-likelihood?): a loss's size beside it \
             says nothing of its scale (the `gradient` line above shows how hard each pulls)",
            crate::numfmt::readable(losses[0].1)
        )];
    }
    let ratios = || {
        losses
            .iter()
            .skip(1)
            .map(|(name, value)| (name.as_str(), value.abs() / primary))
    };
    let large: Vec<(&str, f64)> = ratios().filter(|(_, r)| far_above(*r)).collect();
    let small: Vec<(&str, f64)> = ratios().filter(|(_, r)| far_below(*r)).collect();
    let names = |far: &[(&str, f64)]| far.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let verb = |far: &[(&str, f64)]| if far.len() == 1 { "starts" } else { "start" };
    // Each loss's factor (walkthrough V got one for the first of two, and
    // none for the 1324x loss that took 99.5% of the gradient).
    let factors = |far: &[(&str, f64)], factor: fn(f64) -> f64| {
        far.iter()
            .map(|(name, ratio)| {
                format!(
                    "~{} for {name}",
                    crate::numfmt::readable(factor(*ratio).round())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut hints = Vec::new();
    if let Some(&(name, _)) = large.first() {
        hints.push(format!(
            "{} {} 10x or more the primary's value; `sum` and `uncertainty` start with equal weights and \
             MELTR's γ term pulls it towards the plain sum, so such a loss can carry most of the gradient (`table --metric share/{name}` \
             shows its share after a run). If its scale is arbitrary, divide it in the model's forward \
             (by {})",
            names(&large),
            verb(&large),
            factors(&large, |ratio| ratio)
        ));
    }
    if let Some(&(name, _)) = small.first() {
        hints.push(format!(
            "{} {} at a tenth or less of the primary's value; with equal weights (`sum`, and MELTR's start) \
             such a loss moves the model little and can end with almost none of the gradient (`table --metric share/{name}` \
             shows its share after a run). If its scale is arbitrary, multiply it in the model's forward \
             (by {})",
            names(&small),
            verb(&small),
            factors(&small, |ratio| 1.0 / ratio)
        ));
    }
    // The first batch's values at the initial parameters (walkthrough H4's
    // CTC primary fell from 28 to about 3 in 20 steps, and `check` had
    // advised multiplying the others by 11–12).
    if !hints.is_empty() {
        hints.push(
            "these ratios are the first batch's at the initial parameters: a loss that falls fast in \
             its first steps (a CTC loss fell from 28 to about 3 in 20) shifts them; a short run's logged \
             losses show them in training"
                .to_string(),
        );
    }
    hints
}

mod apart;
#[cfg(test)]
mod tests;
mod training_forward;
