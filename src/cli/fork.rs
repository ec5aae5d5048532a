//! `fork`: a new session that continues another one from one of its
//! checkpoints, with live keys changed by `--set` (the folder is made by
//! [`crate::fork::create`]), then trained like a resumed session.

use super::session_start::{drive, Origin};
use super::*;
use crate::config::Override;

pub(super) fn fork(
    root: &Path,
    query: &str,
    at: Option<u64>,
    name: Option<String>,
    group: Option<String>,
    overrides: &[Override],
    mode: Mode,
) -> Result<()> {
    let parent_dir = session::find(root, query)?;
    // The request's own errors (no checkpoint there, a bad `--set`) come
    // before "no terminal".
    let needs = crate::fork::Needs {
        socket: !matches!(mode, Mode::Headless { .. }),
        terminal: mode == Mode::Tui,
    };
    // `--group none`: in no group.
    let group = group.map(|g| super::arg_checks::in_group(Some(g)));
    let forked = crate::fork::create(root, &parent_dir, at, name, group, overrides, needs)?;
    // With what it changed: a detached fork's output.log never shows its
    // metrics log's config line (walkthrough H looked there for it).
    let with = match forked.changes.is_empty() {
        true => String::new(),
        false => format!(", with {}", forked.changes.join(", ")),
    };
    say!(
        "forked {} at step {} into session {}{with}",
        forked.parent,
        forked.step,
        forked.id
    );
    // A fork of a sweep member lands in the sweep's tables (walkthrough P
    // found it there unannounced).
    if let Some(group) = &forked.joined_group {
        say!(
            "it joins its parent's group {group}, so `table --group {group}` lists it (`--group none` keeps a fork out)"
        );
    }
    drive(&forked.dir, forked.config, &Origin::Forked, mode)
}
