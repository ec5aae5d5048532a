//! What a starting trainer records in `session.json` over what its
//! creator wrote, and the ranks history that a resume on another number of
//! ranks leaves.

use super::SessionMeta;
use anyhow::Result;
use std::path::Path;

impl SessionMeta {
    /// The `ranks` key: the number of ranks, or its history (`2→1`) when a
    /// resume changed it.
    pub fn ranks(&self) -> String {
        let now = self.world_size.unwrap_or(1);
        self.earlier_world_sizes
            .iter()
            .chain([&now])
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("→")
    }
}

/// Records what only the running trainer knows (device, libtorch, losses,
/// primary metric, pid, ranks) in `session.json`, keeping what its creator
/// wrote: id, name, created, where the session comes from (group, parent,
/// fork step) and its provenance, and the ranks of earlier starts. Returns
/// a note when this start, resumed at step `resumed_at`, trains on another
/// number of ranks than the start before; a start from step 0 keeps no
/// history (no step of an earlier start survives it).
pub fn record_run_facts(
    dir: &Path,
    facts: &SessionMeta,
    resumed_at: u64,
) -> Result<Option<String>> {
    let old = SessionMeta::read(dir)?;
    let (before, now) = (old.world_size.unwrap_or(1), facts.world_size.unwrap_or(1));
    // (A session that never started has no libtorch recorded.)
    let changed = resumed_at > 0 && !old.libtorch.is_empty() && before != now;
    let mut earlier = match resumed_at {
        0 => Vec::new(),
        _ => old.earlier_world_sizes,
    };
    if changed {
        earlier.push(before);
    }
    let meta = SessionMeta {
        id: old.id,
        name: old.name,
        created: old.created,
        group: old.group,
        parent: old.parent,
        fork_step: old.fork_step,
        provenance: old.provenance,
        earlier_world_sizes: earlier,
        ..facts.clone()
    };
    meta.write(dir)?;
    Ok(changed.then(|| {
        format!(
            "this start trains on {now} rank{} where the steps before {resumed_at} ran on {before}: `ranks` reads {} \
             (ls, table, compare): a table that pools it with other runs notes it, and --group-by ranks keeps it apart",
            if now == 1 { "" } else { "s" },
            meta.ranks()
        )
    }))
}
