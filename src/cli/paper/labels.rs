//! `--label`: a paper's words for what `table` and `compare` show, a
//! column's header, a cell's value or a group's legend text.

use super::*;

/// `table --label KEY=VALUE=TEXT`: VALUE reads TEXT in KEY's column (a
/// paper's `MELTR` for `meltr`; walkthrough N's LaTeX rows read the
/// config's words). KEY is the column's short or whole key; a rename that
/// names a key column but no cell of it is an error that lists the
/// columns' values. The others, `KEY=TEXT`, head a column with TEXT: they
/// are returned, split at the first `=`, so a metric's TEXT may hold `=`
/// (`--label 'R@1=R@1 (k=1)'`); a key column's may not (a second `=` after
/// its name reads as a mistyped cell).
/// `filtered`: the keys `--where` conditions name (a hidden column's key
/// must be one of them).
pub(super) fn rename_values(
    groups: &mut [groups::Group],
    renames: &[String],
    filtered: &[String],
) -> Result<Renamed> {
    let named = runs::keys::names_key;
    let mut any_changed = false;
    let mut renamed = Renamed::default();
    for rename in renames {
        // KEY=VALUE=TEXT, where VALUE may hold `=` itself: the split whose
        // left side names a cell.
        let hit = |from: &str| {
            from.split_once('=').is_some_and(|(k, v)| {
                groups.iter().any(|g| {
                    g.values
                        .iter()
                        .any(|(key, value)| named(key, k) && runs::keys::matches(value, v))
                })
            })
        };
        let cell = rename
            .match_indices('=')
            .map(|(i, _)| (&rename[..i], &rename[i + 1..]))
            .find(|(from, _)| hit(from));
        let Some((from, to)) = cell else {
            let Some((key, text)) = rename.split_once('=') else {
                bail!("--label `{rename}`: expected KEY=TEXT naming a column, or KEY=VALUE=TEXT naming a cell (e.g. --label kind=Method, --label 'kind=meltr=MELTR')");
            };
            // Two `=` after a key column's name read as a cell that is not
            // there (a mistyped value), not as a header holding `=`.
            let key_column = groups
                .iter()
                .any(|g| g.values.iter().any(|(k, _)| named(k, key)));
            if !key_column && text.contains('=') {
                if let Some(note) = hidden_by_filter(groups, rename, filtered) {
                    renamed.notes.push(note);
                    continue;
                }
            }
            // A column `--where` left out (it keeps one value of the key):
            // nothing to head, said in a note (it was refused as naming no
            // column).
            // (Not a metric's header of that name: that is renamed.)
            let a_metric = groups.iter().flat_map(|g| g.runs.iter()).any(|r| {
                r.final_eval
                    .as_ref()
                    .is_some_and(|(_, metrics)| metrics.contains_key(key))
            });
            // (`--where` takes whole keys only.)
            let where_key = filtered.iter().any(|w| named(w, key));
            if !key_column && !text.contains('=') && where_key && !a_metric {
                renamed.notes.push(format!(
                    "note: --label `{rename}`: --where keeps one value of {key}, so no column shows it and nothing was renamed"
                ));
                continue;
            }
            if key_column && text.contains('=') {
                let mut cells: Vec<String> = groups
                    .iter()
                    .flat_map(|g| g.values.iter().map(|(k, v)| format!("{k}={v}")))
                    .collect();
                cells.sort();
                cells.dedup();
                bail!(
                    "--label `{rename}`: expected KEY=VALUE=TEXT naming a cell of a key's column, e.g. --label 'kind=meltr=MELTR' (or KEY=TEXT naming a column, without `=` in a key column's TEXT: --label kind=Method); the cells: {}",
                    cells.join(", ")
                );
            }
            renamed.texts.push(text.to_string());
            renamed.headers.push((key.to_string(), text.to_string()));
            continue;
        };
        let (key, value) = from.split_once('=').expect("a hit has KEY=VALUE");
        renamed.texts.push(to.to_string());
        for g in groups.iter_mut() {
            let mut changed = false;
            for (_, v) in g
                .values
                .iter_mut()
                // By value: `0.00003` names the cell written `3e-5`.
                .filter(|(k, v)| named(k, key) && runs::keys::matches(v, value))
            {
                (*v, changed) = (to.to_string(), true);
            }
            any_changed |= changed;
        }
    }
    if any_changed {
        groups::relabel(groups);
    }
    Ok(renamed)
}

/// What [`rename_values`] leaves to the table: the header renames, every
/// text `--label` wrote, and notes on renames with nothing to rename.
#[derive(Default)]
pub(super) struct Renamed {
    pub headers: Vec<(String, String)>,
    pub texts: Vec<String>,
    pub notes: Vec<String>,
}

/// A `KEY=VALUE=TEXT` of a config key no column shows (a `--where` kept
/// one value): nothing to rename, said in a note, whether every session
/// holds VALUE or none does. The full table's `--label`s failed on it as
/// header renames (walkthrough I).
/// Only keys a `--where` names: a metric header whose name is a config
/// key's last part (`lr`) is renamed, not noted.
fn hidden_by_filter(groups: &[groups::Group], rename: &str, filtered: &[String]) -> Option<String> {
    let mut splits = rename
        .match_indices('=')
        .map(|(i, _)| (&rename[..i], &rename[i + 1..]));
    splits.find_map(|(from, _)| {
        let (key, value) = from.split_once('=')?;
        let runs: Vec<&Run> = groups.iter().flat_map(|g| g.runs.iter().copied()).collect();
        let first = runs.first()?;
        // The config keys KEY names, as the first run has them.
        let keys: Vec<&String> = first
            .config
            .keys()
            .filter(|k| runs::keys::names_key(k, key))
            .filter(|k| filtered.iter().any(|w| runs::keys::names_key(k, w)))
            .collect();
        let held_by = |k: &String, r: &&Run| {
            r.value(k.as_str())
                .is_some_and(|v| runs::keys::matches(&v, value))
        };
        let whole = keys.first()?;
        Some(match keys.iter().find(|k| runs.iter().all(|r| held_by(k, r))) {
            Some(every) => format!(
                "note: --label `{rename}`: every session here has {every}={value}, so no column shows it and nothing was renamed"
            ),
            None if keys.iter().any(|k| runs.iter().any(|r| held_by(k, r))) => return None,
            None => format!("note: --label `{rename}`: no session here has {whole}={value}; nothing was renamed"),
        })
    })
}

/// A group's names with whole keys, besides its label: every key that tells
/// the groups apart, and its label's keys alone (walkthrough K's sweep
/// group labelled `kind=sum` was not named by `combiner.kind=sum`, which
/// the table took: its values held a key its label leaves out).
pub(super) fn whole_key_names(group: &groups::Group) -> Vec<String> {
    let pairs: Vec<String> = group
        .values
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let label: Vec<String> = group
        .label
        .split(", ")
        .map(|pair| {
            let whole = pair.split_once('=').and_then(|(short, value)| {
                group
                    .values
                    .iter()
                    .find(|(k, v)| runs::keys::names_key(k, short) && v.as_str() == value)
            });
            whole.map_or(pair.to_string(), |(k, v)| format!("{k}={v}"))
        })
        .collect();
    vec![pairs.join(", "), label.join(", ")]
}

/// The legend text of each group: its label, or the `--label` text given
/// for it, named by its label or by another name of it (`fulls`: its label
/// with whole keys, `combiner.kind=sum`, as the table's header names the
/// key). A rename that matches no group is an error that lists the labels.
pub(super) fn legend_labels(
    labels: &[String],
    fulls: &[Vec<String>],
    renames: &[String],
    what: &str,
) -> Result<Vec<String>> {
    let mut out = labels.to_vec();
    // A group named by nothing (no key tells it apart) has no whole-key name.
    let named = |i: usize, name: &str| {
        labels[i] == name
            || fulls
                .get(i)
                .is_some_and(|f| f.iter().any(|f| !f.is_empty() && f == name))
    };
    for rename in renames {
        // LABEL holds `=` itself: the split whose left side is a label,
        // else the last `=`.
        let splits = rename
            .match_indices('=')
            .map(|(i, _)| (&rename[..i], &rename[i + 1..]));
        let Some((from, to)) = splits
            .clone()
            .find(|(from, _)| (0..labels.len()).any(|i| named(i, from)))
            .or_else(|| splits.clone().next_back())
        else {
            anyhow::bail!(
                "--label `{rename}`: expected LABEL=TEXT, e.g. --label 'kind=meltr=MELTR'"
            );
        };
        let hits: Vec<usize> = (0..labels.len()).filter(|&i| named(i, from)).collect();
        if hits.is_empty() {
            anyhow::bail!(
                "--label `{rename}`: no {what} `{from}`; the labels: {}",
                labels.join("; ")
            );
        }
        for i in hits {
            // A figure has no TeX: the table's `$\gamma$` reads `γ` here.
            out[i] = crate::runs::table::plain_math(to);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{legend_labels, whole_key_names};

    #[test]
    fn a_group_is_named_by_its_label_with_whole_keys() {
        let group = crate::runs::groups::Group {
            label: "kind=sum".into(),
            values: vec![
                ("aid.iterations".into(), "–".into()),
                ("combiner.kind".into(), "sum".into()),
            ],
            runs: Vec::new(),
            fork_of: None,
        };
        assert_eq!(
            whole_key_names(&group),
            ["aid.iterations=–, combiner.kind=sum", "combiner.kind=sum"]
        );
    }

    #[test]
    fn a_label_renames_its_group_and_an_unknown_one_lists_the_labels() {
        let labels = ["kind=meltr".to_string(), "kind=sum".to_string()];
        let fulls = [
            vec!["combiner.kind=meltr".to_string()],
            vec!["combiner.kind=sum".to_string()],
        ];
        let renamed = legend_labels(
            &labels,
            &fulls,
            &["kind=meltr=MELTR".into()],
            "group is labelled",
        )
        .unwrap();
        assert_eq!(renamed, ["MELTR", "kind=sum"]);
        // The whole key, as the table's header has it.
        let renamed = legend_labels(
            &labels,
            &fulls,
            &["combiner.kind=sum=Sum".into()],
            "group is labelled",
        )
        .unwrap();
        assert_eq!(renamed, ["kind=meltr", "Sum"]);
        let unknown = legend_labels(
            &labels,
            &fulls,
            &["kind=mltr=MELTR".into()],
            "group is labelled",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            unknown,
            "--label `kind=mltr=MELTR`: no group is labelled `kind=mltr`; the labels: kind=meltr; kind=sum"
        );
        assert!(legend_labels(&labels, &fulls, &["MELTR".into()], "group is labelled").is_err());
        // A group with no whole-key name is not named by an empty LABEL.
        assert!(legend_labels(
            &labels,
            &[vec![String::new()], vec![String::new()]],
            &["=X".into()],
            "group is labelled"
        )
        .is_err());
        // A text with `=` of its own.
        let renamed = legend_labels(
            &labels,
            &fulls,
            &["kind=sum=J=0".into()],
            "group is labelled",
        )
        .unwrap();
        assert_eq!(renamed, ["kind=meltr", "J=0"]);
        // The table's LaTeX math reads as symbols in a figure (walkthrough I's
        // legend showed `$\gamma=0.1$`).
        let renamed = legend_labels(
            &labels,
            &fulls,
            &[r"kind=meltr=MELTR ($\gamma=0.1$)".into()],
            "group is labelled",
        )
        .unwrap();
        assert_eq!(renamed, ["MELTR (γ=0.1)", "kind=sum"]);
    }
}
