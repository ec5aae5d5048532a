//! Which way a metric improves, read from its name: lower for losses,
//! errors, ranks and distances, higher for the usual scores, the other way
//! for a negated one (`neg_mse`); `workload.metric_goal` overrides it.

/// Whether a metric is better lower, from its name: losses, errors, ranks,
/// distances, perplexities (`val_loss`, `mse`, `rmse`, `MAE`, `nll`, `wer`,
/// `MedR`, `top1_error`). Any other name is taken as better higher;
/// `workload.metric_goal` says otherwise.
pub fn lower_is_better(name: &str) -> bool {
    // `neg_mse` (scikit-learn's scorers), `negative_log_loss`: a negated
    // error grows as the model improves.
    if let Some(negated) = negation_of(name) {
        return !lower_is_better(negated);
    }
    const PARTS: [&str; 2] = ["loss", "perplexity"];
    // Forecasting's errors too (a held-out regression's `mape`, `crps` and
    // `nrmse` had been taken as scores, and `export --best` wrote its worst
    // checkpoint); these may carry a count (`rmse4`, `mape_12`'s `mape`).
    // And count models' and distributions' fits (walkthrough K1's Poisson
    // `deviance` was taken as a score, its worst checkpoint kept as best).
    const ERRORS: [&str; 36] = [
        "mse",
        "mae",
        "rmse",
        "msle",
        "rmsle",
        "nmse",
        "nrmse",
        "nmae",
        "mape",
        "smape",
        "wmape",
        "mase",
        "rmsse",
        "crps",
        "medae",
        "mad",
        "nll",
        "bpc",
        "bpd",
        "bpb",
        "wer",
        "cer",
        "ter",
        "eer",
        "ece",
        "brier",
        "fid",
        "ppl",
        "ce",
        "xent",
        "deviance",
        "divergence",
        "kl",
        "kld",
        "pinball",
        "regret",
    ];
    // A language model's `cross_entropy` and `bits_per_char` (walkthrough
    // O: taken as scores, so `export --best` wrote the worst checkpoint).
    const JOINED: [&str; 2] = ["crossentropy", "bitsper"];
    // `MdR` and `MnR`: the MELTR paper's median and mean rank. Not with a
    // count: `rank1` (re-identification's rank-1 accuracy) and `dist2`
    // (distinct bigrams) are scores.
    const RANKS: [&str; 8] = [
        "medr", "mdr", "meanr", "mnr", "rank", "ranks", "distance", "dist",
    ];
    let lower = name.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    let error_word = |w: &&str| ERRORS.contains(&w.trim_end_matches(|c: char| c.is_ascii_digit()));
    // A reciprocal rank (MRR) grows as ranks improve, and so does an
    // error's improvement, reduction or skill score, and the share of a
    // deviance or variance explained.
    const GROWING: [&str; 6] = [
        "mrr",
        "improvement",
        "gain",
        "reduction",
        "skill",
        "explained",
    ];
    if lower.contains("reciprocal") || words.iter().any(|w| GROWING.contains(w)) {
        return false;
    }
    // Errors as words (`err`, `error_rate`, `top1error`), not any "err"
    // inside a word (`referring_acc`, `transferred`).
    let error = |w: &&str| w.starts_with("err") || w.ends_with("error") || w.ends_with("err");
    // An error's norm, relative (a PINN's `rel_l2`, walkthrough N1) or
    // alone; not `l2_norm` (of weights, say), which has no better side.
    const NORMS: [&str; 3] = ["l1", "l2", "linf"];
    let relative = words.iter().any(|w| *w == "rel" || *w == "relative");
    let norm_error = words.iter().any(|w| NORMS.contains(w)) && (relative || words.len() == 1);
    let joined: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    norm_error
        || PARTS.iter().any(|part| lower.contains(part))
        || JOINED.iter().any(|part| joined.contains(part))
        || words
            .iter()
            .any(|w| RANKS.contains(w) || error_word(w) || error(w))
}

/// Said of a metric whose name reads neither way ([`score_direction`] has
/// none) and no `workload.metric_goal`: higher is taken as better.
pub const NAME_READS_NEITHER_WAY: &str =
    "its name reads neither way, so higher is taken as better: set workload.metric_goal = \"min\" \
     if lower is (`ls --sort`, the tables' bold and `export --best` go by it)";

/// Whether a metric named `name` is a score, and which way is better:
/// `Some(false)` for [`lower_is_better`] names, `Some(true)` for the usual
/// scores (accuracy, F1, AUC, R², recall and R@k, precision, mAP, BLEU, …),
/// `None` for anything else (a model's diagnostic, such as a BatchNorm
/// statistic, has no better side).
pub fn score_direction(name: &str) -> Option<bool> {
    if let Some(negated) = negation_of(name) {
        return score_direction(negated).map(|higher| !higher);
    }
    if lower_is_better(name) {
        return Some(false);
    }
    // Survival's concordance (Harrell's `c_index`, walkthrough N4) too.
    const PARTS: [&str; 7] = [
        "acc",
        "recall",
        "precision",
        "score",
        "correlation",
        "bleu",
        "concordance",
    ];
    // And bounds and likelihoods a model maximises (walkthrough Q3's
    // `neg_elbo` read "lower is better" and "reads neither way" at once).
    const WORDS: [&str; 25] = [
        "f1",
        "auc",
        "auroc",
        "r2",
        "map",
        "ap",
        "mrr",
        "ndcg",
        "iou",
        "miou",
        "dice",
        "rouge",
        "meteor",
        "cider",
        "spice",
        "kappa",
        "spearman",
        "pearson",
        "corr",
        "psnr",
        "ssim",
        "hits",
        "elbo",
        "likelihood",
        "loglik",
    ];
    let lower = name.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    // R@1, r@5, hit@10, top1, top5_acc, and retrieval's r1, r5, r10
    // (walkthrough P's read neither way)
    let counted = |w: &str, prefix: &str| {
        w.strip_prefix(prefix)
            .is_some_and(|k| k.parse::<u32>().is_ok())
    };
    // Spelled out too: `r_at_1`, `R-at-10` (walkthrough R2's read neither
    // way in `check`, and `table` gave `r_at_5` no arrow).
    let spelled_at_k = words
        .windows(3)
        .any(|w| w[0] == "r" && w[1] == "at" && w[2].parse::<u32>().is_ok());
    let at_k = lower.starts_with("r@")
        || lower.starts_with("hit")
        || spelled_at_k
        || words.iter().any(|w| counted(w, "top") || counted(w, "r"));
    let joined: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    let known = at_k
        || joined.contains("cindex")
        || PARTS.iter().any(|part| lower.contains(part))
        || words.iter().any(|w| WORDS.contains(w));
    known.then_some(true)
}

/// The metric a negated name negates: `neg_mse`, `negative-log-loss`,
/// `minus_mae`, `-rmse` (any case).
fn negation_of(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    ["negative", "minus", "neg"]
        .iter()
        .find_map(|prefix| {
            let rest = lower.strip_prefix(prefix)?;
            rest.starts_with(['_', '-', ' ', '.'])
                .then(|| &name[prefix.len() + 1..])
        })
        .or_else(|| name.strip_prefix('-'))
        .filter(|rest| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_have_a_direction_and_diagnostics_none() {
        for higher in [
            "accuracy",
            "mlm_acc",
            "R@1",
            "r@5",
            "macro_f1",
            "auc",
            "r2",
            "mAP",
            "top1",
            "hits@10",
            "bleu4",
            "recall_at_5",
            "r_at_1",
            "R-at-10",
            "t2v_r_at_5",
            "r1",
            "r10",
            "t2v_r5",
            "c_index",
            "C-Index",
            "concordance",
        ] {
            assert_eq!(score_direction(higher), Some(true), "{higher}");
        }
        for lower in [
            "val_mse",
            "eval_loss/cls",
            "MdR",
            "error_rate",
            "neg_accuracy",
            "neg_elbo",
            "negative_log_likelihood",
        ] {
            assert_eq!(score_direction(lower), Some(false), "{lower}");
            assert!(lower_is_better(lower), "{lower}");
        }
        for higher in ["elbo", "val_log_likelihood", "loglik"] {
            assert_eq!(score_direction(higher), Some(true), "{higher}");
            assert!(!lower_is_better(higher), "{higher}");
        }
        // Negated errors (scikit-learn's scorers) are better higher.
        for higher in ["neg_mse", "negative_log_loss", "NEG-RMSE", "-mae"] {
            assert_eq!(score_direction(higher), Some(true), "{higher}");
        }
        for neither in [
            "bn1_running_mean0",
            "grad_norm",
            "lr",
            "temperature",
            "mean_len",
            "entropy",
        ] {
            assert_eq!(score_direction(neither), None, "{neither}");
        }
    }

    #[test]
    fn metric_directions_follow_their_names() {
        for lower in [
            "val_loss",
            "mse",
            "RMSE",
            "mae",
            "nll",
            "wer",
            "top1_error",
            "top1error",
            "err",
            "error_rate",
            "MedR",
            "mean_rank",
            "perplexity",
            "l2_dist",
            "neg_accuracy",
            "negotiated_loss",
            "mape",
            "sMAPE",
            "crps",
            "nrmse",
            "rmse4",
            "val_mase_12",
            "rmsle",
            "cross_entropy",
            "val-CrossEntropy",
            "xent",
            "ce",
            "bits_per_char",
            "bpb",
            "deviance",
            "mean_poisson_deviance",
            "kl_divergence",
            "KLD",
            "pinball",
            "rel_l2",
            "relative-L1",
            "l2",
        ] {
            assert!(lower_is_better(lower), "{lower}");
        }
        for higher in [
            "accuracy",
            "R@1",
            "r2",
            "f1",
            "answer_acc",
            "power",
            "precision",
            "MRR",
            "mean_reciprocal_rank",
            "ranking_acc",
            "referring_acc",
            "transferred_acc",
            "neg_mse",
            "neg_root_mean_squared_error",
            "negative-log-loss",
            "minus_mae",
            "-rmse",
            "rmse_improvement",
            "crps_skill",
            "error_reduction",
            "rank1",
            "cmc_rank5",
            "dist2",
            "deviance_explained",
            "l2_norm",
        ] {
            assert!(!lower_is_better(higher), "{higher}");
        }
    }
}
