//! `table --label KEY=TEXT`: column headers renamed, a key's or a
//! metric's.

use super::TableOptions;
use crate::session::metrics::EVAL_PREFIX;
use anyhow::{bail, Result};

/// The headers as the table shows them, `opts.headers` applied: the label
/// columns' (`key_names` first, then any added) and the metrics'. A rename
/// that names no column is an error that lists them.
pub(super) fn renamed_headers(
    key_names: &[String],
    mut label_header: Vec<String>,
    names: &[String],
    opts: &TableOptions,
) -> Result<(Vec<String>, Vec<String>)> {
    let names_key = crate::runs::keys::names_key;
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
            // As the metrics log names it too: `eval/R@1`.
            .filter(|(n, _)| *n == from || from.strip_prefix(EVAL_PREFIX) == Some(n.as_str()))
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
