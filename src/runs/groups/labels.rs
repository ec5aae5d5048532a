//! A group's label, as legends, notes and tables name it: its values
//! (dashes left out where that keeps labels apart), or its runs.

use super::{few, Group};
use crate::runs::{keys, Run};

/// In the rows of a fixed combiner (`sum`, `primary`, …) the `meltr.*` and
/// `aid.*` keys it does not read show `–` (walkthrough O's `sum` rows read
/// `init=pytorch, iterations=0` beside MELTR's), unless that would make two
/// rows read alike.
pub(super) fn unread_keys_as_dashes(groups: &mut [Group]) {
    let dashed = |g: &Group| -> Vec<(String, String)> {
        g.values
            .iter()
            .map(
                |(k, v)| match g.runs.iter().all(|r| keys::unread_by(r, k)) {
                    true => (k.clone(), "–".to_string()),
                    false => (k.clone(), v.clone()),
                },
            )
            .collect()
    };
    let shown: Vec<Vec<(String, String)>> = groups.iter().map(dashed).collect();
    for (at, g) in groups.iter_mut().enumerate() {
        let alike = shown
            .iter()
            .enumerate()
            .any(|(other, values)| other != at && *values == shown[at]);
        if shown[at] != g.values && !alike {
            g.values = shown[at].clone();
            g.label = label_of(&g.values);
        }
    }
}

/// Labels made from the groups' values again (after `table --label`
/// renamed some), as [`gather`] makes them.
pub fn relabel(groups: &mut [Group]) {
    for g in groups.iter_mut().filter(|g| !g.values.is_empty()) {
        g.label = label_of(&g.values);
    }
    finish_labels(groups);
}

/// The last touches to labels of the values: every key where two read
/// alike, and whose forks a group of forks holds.
pub(super) fn finish_labels(groups: &mut [Group]) {
    whole_labels_where_short_ones_clash(groups);
    for g in groups.iter_mut() {
        if let Some(fork) = &g.fork_of {
            g.label = format!("{} (fork of {fork})", g.label);
        }
    }
}

/// Two groups whose labels read alike once their dashes are left out
/// (one key unset in one, unread in the other) keep every key.
pub(super) fn whole_labels_where_short_ones_clash(groups: &mut [Group]) {
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    for (at, g) in groups.iter_mut().enumerate() {
        let clash = labels
            .iter()
            .enumerate()
            .any(|(other, l)| other != at && *l == labels[at]);
        if clash && !g.values.is_empty() {
            g.label = whole_label_of(&g.values);
        }
    }
}

/// `kind=meltr, iterations=1`: each key by its last segment unless two
/// label keys share it; keys a group leaves unset (`-`) or does not read
/// (`–`) left out, unless every one is (walkthrough B's legend read
/// `kind=meltr, const=-, dup=-, early=-, nexttok=-, rand…`, cut before
/// the key that told two curves apart).
pub fn label_of(values: &[(String, String)]) -> String {
    let set: Vec<(String, String)> = values
        .iter()
        .filter(|(_, v)| v != "-" && v != "–")
        .cloned()
        .collect();
    match set.is_empty() {
        true => whole_label_of(values),
        false => whole_label_of(&set),
    }
}

/// [`label_of`] with every key, dashes too.
fn whole_label_of(values: &[(String, String)]) -> String {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    values
        .iter()
        .map(|(k, v)| {
            let short = last(k);
            let clash = values.iter().filter(|(o, _)| last(o) == short).count() > 1;
            format!("{}={v}", if clash { k.as_str() } else { &short })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The group's name when all its runs share one, else their names.
pub(super) fn fallback_label(runs: &[&Run]) -> String {
    let group = runs.first().and_then(|r| r.meta.group.clone());
    match group {
        Some(g) if runs.iter().all(|r| r.meta.group.as_ref() == Some(&g)) => g,
        // Every run's name: the first's alone read as if it were all of
        // them (walkthrough L pooled `dp1` with another group's run).
        _ => few(&runs.iter().map(|r| r.meta.name.clone()).collect::<Vec<_>>()),
    }
}

/// Where the groups' values of a key that are paths share leading
/// folders, those values as `…/` and what follows them (a table
/// across the suite's tasks read
/// `/root/.cache/meltr-tui/aux-suite/mixed/model.pt` and two more such
/// columns on every row, and each note repeated all three). `table`
/// shortens after its `--label` renames, which name cells by whole value.
pub fn shorten_shared_folders(groups: &mut [Group]) {
    let Some(first) = groups.first() else {
        return;
    };
    let mut changed = false;
    for at in 0..first.values.len() {
        let values: Vec<&str> = groups
            .iter()
            .filter_map(|g| g.values.get(at).map(|(_, v)| v.as_str()))
            .collect();
        if values.len() != groups.len() {
            continue;
        }
        let Some(cut) = keys::shared_folders(&values) else {
            continue;
        };
        for g in groups.iter_mut() {
            let (_, v) = &mut g.values[at];
            *v = keys::past_shared_folders(v, cut);
        }
        changed = true;
    }
    if changed {
        relabel(groups);
    }
}
