//! `check`'s hints on auxiliaries whose gradient shares no parameter with
//! the primary's.

/// Auxiliaries whose gradient reaches none of the primary's parameters on
/// the first batch (walkthrough L3's loss on a head of its own went unsaid,
/// and its learned weight read as a judgement of it), in two groups: those
/// on a head of their own, which cannot change the primary, and those whose
/// parameters feed the primary's forward behind a stop-gradient (walkthrough
/// O3's VQ codebook loss was said to be of the first kind). What MELTR's
/// meta step makes of them is said only where MELTR weighs the losses.
pub(super) fn hints(apart: &[crate::engine::trainer::Apart], meltr: bool) -> Vec<String> {
    let group = |feeds: bool| -> Vec<String> {
        apart
            .iter()
            .filter(|a| a.feeds_primary == feeds)
            .map(|a| a.name.clone())
            .collect()
    };
    [false, true]
        .into_iter()
        .filter_map(|feeds| apart_hint(&group(feeds), feeds, meltr))
        .collect()
}

/// [`hints`]' words for one group.
fn apart_hint(apart: &[String], feeds_primary: bool, meltr: bool) -> Option<String> {
    let (first, rest) = apart.split_first()?;
    let (names, it, its, is, a_loss, trains) = match rest.is_empty() {
        true => (
            format!("{first}'s gradient"),
            "it",
            "its",
            "is",
            "such a loss",
            "trains",
        ),
        false => (
            format!("the gradients of {}", apart.join(", ")),
            "they",
            "their",
            "are",
            "such losses",
            "train",
        ),
    };
    let meta_step = match meltr {
        true => format!(
            "; MELTR's meta step sees no effect of {it} on the primary's validation loss (the γ term still \
             pulls the weights towards the plain sum's)"
        ),
        false => String::new(),
    };
    let apart = format!(
        "{names} on the first batch {is} nonzero on none of the parameters the primary's is"
    );
    Some(match feeds_primary {
        false => format!(
            "{apart} (a head of {its} own): through the model {it} can neither help nor hurt the primary, and \
             {its} weight trains only {its} own parameters{meta_step}. To only log {a_loss}, return {it} as a \
             `metric/` output"
        ),
        true => format!(
            "{apart}, yet the parameters {it} {trains} move the primary's value: they feed the primary's \
             forward behind a stop-gradient (`.detach()`, a straight-through estimator such as a VQ \
             codebook's), so the primary's gradient does not reach them{meta_step}. Through what {it} {trains}, \
             {it} can still help or hurt the primary"
        ),
    })
}
