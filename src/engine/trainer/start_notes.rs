//! What a run says as it starts: the metric it is judged by and which
//! way, and settings that will not do what they seem to.

use super::*;
use crate::config::{AidMode, JvpMethod};

/// Said when a run starts: the metric it is judged by and which way (a
/// name's guess can be wrong: `ls`, `table` and "best" go by it), and a
/// MELTR with nothing to weigh.
pub(super) fn start_notes(
    config: &Config,
    workload_kind: &str,
    metric: &str,
    higher_is_better: bool,
) -> Vec<(Level, String)> {
    let goal = if higher_is_better { "higher" } else { "lower" };
    let why = match config.workload.metric_goal {
        Some(_) => " (workload.metric_goal)",
        // No metric of its own: the primary loss stands in, and nothing
        // was guessed (walkthrough L read "guessed from its name").
        None if metric == config.workload.primary => " (the primary loss)",
        None if workload_kind == "torchscript" => {
            " (guessed from its name; workload.metric_goal = \"max\" or \"min\" says otherwise)"
        }
        None => "",
    };
    // A goal set against what the name says (`error` with "max") is more
    // likely a slip than a choice: said (a walkthrough's went unsaid).
    let direction = crate::workload::score_direction(metric);
    let against_name =
        config.workload.metric_goal.is_some() && direction == Some(!higher_is_better);
    // A guess from a name that says nothing (a held-out model's `crps` was
    // taken as a score, and its best checkpoint was its worst).
    let unreadable = config.workload.metric_goal.is_none()
        && metric != config.workload.primary
        && workload_kind == "torchscript"
        && direction.is_none();
    let mut notes = vec![match against_name {
        false if unreadable => (
            Level::Warn,
            format!(
                "primary metric: {metric}: {}",
                crate::workload::NAME_READS_NEITHER_WAY
            ),
        ),
        false => (
            Level::Info,
            format!("primary metric: {metric}, {goal} is better{why}"),
        ),
        true => (
            Level::Warn,
            format!(
                "primary metric: {metric}, {goal} is better (workload.metric_goal), though its name reads \
                 the other way: `ls --sort`, the tables' bold and \"best\" go by workload.metric_goal"
            ),
        ),
    }];
    if config.combiner.kind == CombinerKind::Meltr && config.workload.auxiliary.is_empty() {
        notes.push((
            Level::Warn,
            format!(
                "combiner.kind = \"meltr\" with no auxiliary loss (workload.auxiliary is empty): \
                 MELTR can only rescale {}, a learned learning-rate factor; list auxiliary losses, \
                 or use combiner.kind = \"primary\"",
                config.workload.primary
            ),
        ));
    }
    if let Some(departures) = departures_from_the_public_algorithm(config) {
        notes.push((Level::Info, departures));
    }
    let kind = config.combiner.kind;
    if kind != CombinerKind::Weights && !config.combiner.weights.is_empty() {
        notes.push((
            Level::Info,
            format!(
                "combiner.weights is set but combiner.kind = \"{}\": the weights are unused \
                 (they weigh the losses only with combiner.kind = \"weights\")",
                kind.as_str()
            ),
        ));
    }
    notes
}

/// The options set away from a default that is the public MELTR code's
/// (walkthrough V2's run with three of them said none: they showed only in
/// `ls`'s columns), then the defaults that depart on purpose (`first_meta`,
/// `loss_scale`, `on_collapse`: walkthrough Z2 found them named nowhere a
/// run says), which the README explains with what the suite measured.
fn departures_from_the_public_algorithm(config: &Config) -> Option<String> {
    if !config.combiner.kind.meta_trained() {
        return None;
    }
    let (m, aid, public) = (&config.meltr, &config.aid, Config::default());
    let quoted = |key: &str, value: &dyn std::fmt::Display| format!("{key} = \"{value}\"");
    let mut set = Vec::new();
    if m.gamma_direct {
        set.push("meltr.gamma_direct = true".to_string());
    }
    if m.meta_optimizer != public.meltr.meta_optimizer {
        set.push(quoted("meltr.meta_optimizer", &m.meta_optimizer));
    }
    if m.init != public.meltr.init {
        set.push(quoted("meltr.init", &m.init));
    }
    if m.pool != public.meltr.pool {
        set.push(quoted("meltr.pool", &m.pool));
    }
    if m.train_batch != public.meltr.train_batch {
        set.push(quoted("meltr.train_batch", &m.train_batch));
    }
    if m.val_source != public.meltr.val_source {
        set.push(quoted("meltr.val_source", &m.val_source));
    }
    if aid.iterations > 0 {
        set.push(format!(
            "aid.iterations = {} (AuxiLearn's series)",
            aid.iterations
        ));
    }
    if matches!(aid.jvp, JvpMethod::Differences | JvpMethod::OneSided)
        && aid.mode == AidMode::Factorized
    {
        set.push(format!(
            "{} (finite differences)",
            quoted("aid.jvp", &aid.jvp)
        ));
    }
    let ours = crate::config::MeltrConfig::default();
    let public_first_meta = crate::config::FirstMeta::AtStepOne;
    let public_loss_scale = crate::config::LossScale::Raw;
    let public_on_collapse = crate::config::OnCollapse::Warn;
    let mut by_default = Vec::new();
    let mut departs = |value: String, is_public: bool, is_ours: bool| match (is_public, is_ours) {
        (true, _) => {}
        (false, true) => by_default.push(value),
        (false, false) => set.push(value),
    };
    departs(
        quoted("meltr.first_meta", &m.first_meta),
        m.first_meta == public_first_meta,
        m.first_meta == ours.first_meta,
    );
    departs(
        match m.loss_scale == crate::config::LossScale::Capped
            && m.max_loss_ratio != ours.max_loss_ratio
        {
            true => format!(
                "{} (meltr.max_loss_ratio = {})",
                quoted("meltr.loss_scale", &m.loss_scale),
                m.max_loss_ratio
            ),
            false => quoted("meltr.loss_scale", &m.loss_scale),
        },
        m.loss_scale == public_loss_scale,
        m.loss_scale == ours.loss_scale && m.max_loss_ratio == ours.max_loss_ratio,
    );
    departs(
        quoted("meltr.on_collapse", &m.on_collapse),
        m.on_collapse == public_on_collapse,
        m.on_collapse == ours.on_collapse,
    );
    let both = match (set.is_empty(), by_default.is_empty()) {
        (true, true) => return None,
        (false, true) => set.join(", "),
        (true, false) => format!("{} (this build's defaults)", by_default.join(", ")),
        (false, false) => format!(
            "{} (set here) and {} (this build's defaults)",
            set.join(", "),
            by_default.join(", ")
        ),
    };
    Some(format!(
        "MELTR departs from the public algorithm in {both} (README, \"The method\", says what each does and what it measured)"
    ))
}

/// How much of the model a run trains: `the model trains 10,329
/// parameters in 12 tensors` (a held-out walkthrough found the count
/// nowhere, to check a tied weight counted once against PyTorch's
/// `sum(p.numel() for p in model.parameters())`; frozen ones are left out,
/// as they are from that sum with `if p.requires_grad`).
pub(super) fn trained_parameters_note(theta: &[Tensor]) -> String {
    let values: u64 = theta.iter().map(|t| t.numel() as u64).sum();
    format!(
        "the model trains {} parameters in {} tensor{}",
        crate::numfmt::thousands(values),
        theta.len(),
        if theta.len() == 1 { "" } else { "s" }
    )
}
