//! Whether a process is alive, and which one it is: a session's runner
//! is told from a process that got its pid after it died by its start time.

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/PID/stat`); None without /proc or the process.
pub fn process_started(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(22 - 3)?.parse().ok()
}

/// The fields of `/proc/PID/stat` from field 3 (the state) on. The command
/// name (field 2) may hold spaces and parentheses: fields are counted after
/// its closing one.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    Some(after_name.split_whitespace().map(str::to_string).collect())
}

/// True when a process with this pid exists (signal 0 probes without acting).
/// Of a session's runner, ask [`super::SessionMeta::runner_alive`].
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return false;
    }
    // A killed process that nobody reaped yet (a zombie) is dead too;
    // without /proc, the signal's answer stands.
    stat_fields(pid).is_none_or(|fields| fields.first().map(String::as_str) != Some("Z"))
}
