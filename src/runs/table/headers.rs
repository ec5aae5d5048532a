//! `table --label KEY=TEXT`: column headers renamed, a key's or a
//! metric's.

use super::TableOptions;
use anyhow::{bail, Result};

/// Whether a `table --label` renames a header (`KEY=TEXT`, one `=`)
/// rather than a cell (`KEY=VALUE=TEXT`).
pub fn is_header_rename(label: &str) -> bool {
    label.matches('=').count() == 1
}

/// `table --label KEY=TEXT` (one `=`): KEY's column, or a metric's,
/// headed TEXT (a paper's `Method` for `kind`).
pub fn header_renames(labels: &[String]) -> Vec<(String, String)> {
    labels
        .iter()
        .filter(|l| is_header_rename(l))
        .filter_map(|l| l.split_once('='))
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .collect()
}

/// The headers as the table shows them, `opts.headers` applied: the label
/// columns' (`key_names` first, then any added) and the metrics'. A rename
/// that names no column is an error that lists them.
pub(super) fn renamed_headers(
    key_names: &[String],
    mut label_header: Vec<String>,
    names: &[String],
    opts: &TableOptions,
) -> Result<(Vec<String>, Vec<String>)> {
    let names_key = |key: &str, asked: &str| key == asked || key.rsplit('.').next() == Some(asked);
    let mut shown_names = names.to_vec();
    for (from, to) in &opts.headers {
        let keys = key_names.iter().zip(label_header.iter_mut());
        let mut hit = false;
        for (_, header) in keys.filter(|(key, _)| names_key(key, from)) {
            (*header, hit) = (to.clone(), true);
        }
        for (_, shown) in names
            .iter()
            .zip(shown_names.iter_mut())
            .filter(|(n, _)| *n == from)
        {
            (*shown, hit) = (to.clone(), true);
        }
        if !hit {
            let columns: Vec<&str> = key_names.iter().chain(names).map(String::as_str).collect();
            bail!(
                "--label `{from}={to}`: expected KEY=TEXT naming a column (or KEY=VALUE=TEXT naming a cell); the columns: {}",
                columns.join(", ")
            );
        }
    }
    Ok((label_header, shown_names))
}
