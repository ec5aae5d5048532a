//! `--headless`: the trainer in this process, one progress line per log
//! interval, writes retried with backoff, exit codes.

use super::*;

use crate::runner::storage_retry::StorageRetry;

pub(super) fn run_headless(
    dir: &Path,
    config: Config,
    origin: &Origin,
    give_up_after: Duration,
) -> Result<()> {
    let meta = SessionMeta::read(dir)?;
    echo_into_output_log(dir);
    // Before the data loads: a signal then (seconds for a large file) killed
    // the process and left a "crashed" folder; now the run stops cleanly
    // once built.
    crate::process::stop_on_signals();
    crate::process::stop_on_hangup();
    let building = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch = std::sync::Arc::clone(&building);
    // A new session quit before it ran leaves no folder.
    let new_dir = matches!(origin, Origin::New).then(|| dir.to_path_buf());
    std::thread::spawn(move || answer_signals_while_building(&watch, new_dir));
    // The config watch comes up while the trainer is built: an edit made
    // then (the foundation model's first pretraining takes minutes) waits
    // for the first step instead of being lost.
    let torchscript = config.workload.kind == crate::config::WorkloadKind::TorchScript;
    let in_force = crate::runner::serve::InForce::starting(config.clone());
    let built = engine::begin(dir, config, origin.resumes()).and_then(|starting| {
        let watch =
            crate::runner::serve::watch_config(dir, starting.commands.clone(), in_force.clone())?;
        Ok((starting.wait()?, watch))
    });
    building.store(false, std::sync::atomic::Ordering::SeqCst);
    let (handle, _watch) = match built {
        Ok(built) => built,
        // Stopped while the foundation model pretrained: nothing trained, so
        // a new folder goes as for any unstarted run, but a stop is no
        // failure (it exited 1).
        Err(e)
            if e.chain()
                .any(|c| c.is::<crate::workload::video_text::PretrainingStopped>()) =>
        {
            say_err!("{:#}", discard_unstarted(dir, origin, e));
            let signal = crate::process::stop_signal();
            std::process::exit(signal.map_or(1, crate::process::exit_code));
        }
        Err(e) => return Err(discard_unstarted(dir, origin, e)),
    };
    in_force.built(&handle.config);
    // Named only once it exists for good: a failed build removes a new folder.
    // With where it trains, and on how many ranks (a `--nproc 2` run never
    // said so, a walkthrough).
    let facts = SessionMeta::read(dir).unwrap_or_else(|_| meta.clone());
    let ranks = facts
        .world_size
        .filter(|&n| n > 1)
        .map_or(String::new(), |n| format!(" × {n} ranks"));
    say!(
        "session {} in {} (on {}{ranks})",
        meta.id,
        dir.display(),
        facts.device
    );
    let mut stop_sent = false;
    let mut storage = StorageRetry::default();
    let mut gave_up: Option<String> = None;
    loop {
        if crate::process::stop_requested() && !stop_sent {
            say_err!("interrupted: stopping after this step (checkpoint first)");
            let _ = handle.commands.send(Command::Stop);
            stop_sent = true;
        }
        match handle.events.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => {
                if let Some(said) = storage.on_event(&event) {
                    let until =
                        format!("for up to {} s (--give-up-after)", give_up_after.as_secs());
                    say_err!("{}", said.words(&until));
                }
                if let Event::Line { line, .. } = event {
                    print_line(&line, &meta.losses, dir);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if gave_up.is_some() {
            continue;
        }
        if let Some((failing, reason)) = storage.failing() {
            if failing >= give_up_after {
                let reason = format!(
                    "gave up after {} s of failed writes: {reason}",
                    give_up_after.as_secs()
                );
                say_err!("{reason}");
                let _ = handle.commands.send(Command::Stop);
                gave_up = Some(reason);
            } else if storage.try_due() {
                let _ = handle.commands.send(Command::Resume);
            }
        }
    }
    let status = handle.join()?;
    if let Some(reason) = gave_up {
        // Best effort: the disk that failed may refuse this write too.
        let _ = session::update_status(dir, Status::Failed, Some(reason.clone()));
        say!("session {}: failed", meta.id);
        bail!("{reason}");
    }
    say!("session {}: {}", meta.id, status.as_str());
    if let Some(note) = crate::runs::best::best_before_the_end(dir, torchscript) {
        say!("{note}");
    }
    if let (Status::Stopped, Some(signal)) = (status, crate::process::stop_signal()) {
        // A run ended by a signal exits as the shell expects (a finished
        // run exits 0).
        std::process::exit(crate::process::exit_code(signal));
    }
    Ok(())
}

/// While the run is built (a large data file read, a pretraining, peers
/// awaited), a stop signal waits for it: said at the first, and a second
/// one quits at once, with the shell's code for it.
fn answer_signals_while_building(
    building: &std::sync::atomic::AtomicBool,
    new_dir: Option<std::path::PathBuf>,
) {
    let mut said = false;
    while building.load(std::sync::atomic::Ordering::SeqCst) {
        match (crate::process::stop_count(), crate::process::stop_signal()) {
            (n, Some(signal)) if n >= 2 => {
                if let Some(dir) = &new_dir {
                    crate::say::stop_echo();
                    let _ = std::fs::remove_dir_all(dir);
                }
                say_err!("quit while the run was being built");
                // `_exit`, not `exit`: exit's static destructors tear libtorch
                // down under the trainer thread still loading (it panicked).
                // SAFETY: ends the process; nothing after it runs.
                unsafe { libc::_exit(crate::process::exit_code(signal)) }
            }
            (1, Some(_)) if !said => {
                say_err!("interrupted while the run is being built: it stops once built (again to quit now)");
                said = true;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints a metrics line for the terminal; the losses in `order`, an
/// evaluation's primary metric (the session's in `dir`) first.
pub(super) fn print_line(line: &session::metrics::MetricLine, order: &[String], dir: &Path) {
    match &line.record {
        Record::Train {
            losses,
            total,
            weights,
            ..
        } => {
            say!(
                "step {:>6}  {}  combined {}  | w: {}",
                line.step,
                crate::numfmt::named_values(losses, order),
                crate::numfmt::log_value(*total),
                crate::numfmt::named_values(weights, order)
            )
        }
        Record::Eval { .. } => {
            // Read now: the trainer records the metric as it starts.
            let primary = SessionMeta::read(dir).map(|m| m.primary_metric).ok();
            say!(
                "{}",
                line.eval_words(primary.as_deref()).expect("an eval line")
            )
        }
        Record::Config { .. } | Record::Event { .. } => {
            for (problem, text) in line.notices() {
                match problem {
                    true => say_err!("{text}"),
                    false => say!("{text}"),
                }
            }
        }
        Record::Meta { .. } | Record::Transform { .. } => {}
    }
}

/// What the run says is copied into its session's `output.log` as well, as
/// a detached run's runner writes it (walkthroughs X and Y grepped every
/// session's `output.log` and missed the headless ones'), under a line that
/// says where the start printed it (a `tail -f` left on it reads as
/// current, walkthrough F).
fn echo_into_output_log(dir: &Path) {
    let output_log = SessionDir::new(dir).output_log();
    let opened = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&output_log)
        .and_then(|mut file| {
            let note = format!(
                "{}: a headless start (pid {}): its output, as printed on its own terminal\n",
                chrono::Local::now().to_rfc3339(),
                std::process::id()
            );
            std::io::Write::write_all(&mut file, note.as_bytes())?;
            Ok(file)
        });
    // Best effort: the run does not depend on it.
    if let Ok(file) = opened {
        crate::say::echo_into(file);
    }
}
