//! `--set` overrides, sweeps and forks as a user meets them: a sweep whose
//! runner and driver are killed and which is resumed to the end, a SLURM
//! array script (printed, and run task by task by a stand-in `sbatch`),
//! forks that continue their parent bit for bit unless a key changed,
//! overrides checked like the file, and a detached sweep stopped as a whole.

mod common;

use common::{bin, repo, run_with_limit, text};
use meltr_tui::session::{self, SessionMeta, Status};
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// Small MELTR so a run takes a few seconds.
const SMALL: [&str; 6] = [
    "--set",
    "meltr.d_model=32",
    "--set",
    "meltr.heads=4",
    "--set",
    "meltr.d_ff=64",
];

fn meltr(root: &Path) -> std::process::Command {
    let mut command = bin();
    command.arg("--sessions-dir").arg(root);
    command
}

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    common::wait_until(what, WAIT, check)
}

/// Kills every live runner under a sessions folder when a test ends early.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        for (_, meta) in session::list(&self.0) {
            if !meta.status.is_terminal() && session::pid_alive(meta.pid) {
                unsafe { libc::kill(meta.pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

fn members(root: &Path, group: &str) -> Vec<(PathBuf, SessionMeta)> {
    session::list(root)
        .into_iter()
        .filter(|(_, m)| m.group.as_deref() == Some(group))
        .collect()
}

#[test]
fn a_sweep_killed_mid_way_resumes_to_four_finished_sessions_then_grows_by_a_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let _reaper = Reaper(root.clone());
    let log = std::fs::File::create(tmp.path().join("driver.log")).unwrap();
    let mut driver = meltr(&root)
        .args(["sweep", "-c"])
        .arg(repo("configs/synthetic.toml"))
        .args(["--set", "combiner.kind=meltr,sum", "--seeds", "0,1"])
        .args(["--parallel", "2", "--steps", "300", "--name", "abl"])
        .args(["--set", "train.checkpoint_every=50"])
        .args(SMALL)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // Two runners at once, each past its first checkpoint and not done. Each
    // is frozen (SIGSTOP) as soon as it is seen past a checkpoint, so that a
    // fast machine cannot finish it while the test waits for the other.
    let mut frozen: Vec<(PathBuf, SessionMeta)> = Vec::new();
    wait_for("two members past a checkpoint", || {
        for (dir, m) in members(&root, "abl") {
            let past_checkpoint = m.status == Status::Running
                && session::pid_alive(m.pid)
                && m.pid != driver.id()
                && !meltr_tui::engine::checkpoint::list(&dir.join("checkpoints")).is_empty();
            if past_checkpoint && frozen.iter().all(|(_, f)| f.id != m.id) {
                unsafe { libc::kill(m.pid as libc::pid_t, libc::SIGSTOP) };
                frozen.push((dir, m));
            }
        }
        (frozen.len() == 2).then_some(())
    });
    assert_eq!(members(&root, "abl").len(), 2, "--parallel 2 started more");
    // Members' config.toml keep the comments of the base file.
    let opening = std::fs::read_to_string(repo("configs/synthetic.toml")).unwrap();
    let opening = opening.lines().next().unwrap().to_string();
    for (dir, _) in members(&root, "abl") {
        let kept = std::fs::read_to_string(dir.join("config.toml")).unwrap();
        assert!(kept.starts_with(&opening), "{kept}");
    }
    // The driver dies (nothing else starts), then the runner that is less far.
    driver.kill().unwrap();
    driver.wait().unwrap();
    frozen.sort_by_key(|(dir, _)| common::logged_train_steps(dir).last().copied());
    let (victim_dir, victim) = frozen[0].clone();
    unsafe { libc::kill(victim.pid as libc::pid_t, libc::SIGKILL) };
    wait_for("the runner to die", || {
        (!session::pid_alive(victim.pid)).then_some(())
    });
    let (_, survivor) = &frozen[1];
    unsafe { libc::kill(survivor.pid as libc::pid_t, libc::SIGCONT) };
    let steps_at_kill = common::logged_train_steps(&victim_dir).last().copied();
    assert!(steps_at_kill.is_some_and(|s| s < 300), "{steps_at_kill:?}");

    let listing = text(&run_with_limit(
        meltr(&root).args(["sweep", "ls", "abl"]),
        WAIT,
    ));
    assert!(listing.contains("crashed"), "{listing}");
    assert_eq!(listing.matches("queued").count(), 2, "{listing}");

    let out = run_with_limit(meltr(&root).args(["sweep", "resume", "abl"]), WAIT);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("resumed") && said.contains(&victim.id),
        "{said}"
    );
    assert!(said.contains("all 4 sessions finished"), "{said}");
    assert!(
        said.contains("at most"),
        "a sweep with work to do says its pace: {said}"
    );
    // Resumed again with nothing left to do: no pace to say (walkthrough N).
    let said = text(&run_with_limit(
        meltr(&root).args(["sweep", "resume", "abl"]),
        WAIT,
    ));
    assert!(
        said.contains("all 4 sessions finished") && !said.contains("at most"),
        "{said}"
    );
    // Each finished member's metric as `ls` prints it (walkthrough R read
    // `accuracy 94.3000` there and `accuracy↑ 94.3` in `ls`).
    let listing = text(&run_with_limit(
        meltr(&root).args(["sweep", "ls", "abl"]),
        WAIT,
    ));
    let arrows = listing.matches("↑ ").count() + listing.matches("↓ ").count();
    assert_eq!(arrows, 4, "{listing}");

    let all = members(&root, "abl");
    assert_eq!(all.len(), 4, "one session per combination");
    // A finished member's resume refusal says what a resume would do to
    // its group's table (walkthrough S split its sweep's row, unwarned).
    let member = all[0].1.id.clone();
    let refused = run_with_limit(meltr(&root).args(["resume", &member, "--headless"]), WAIT);
    assert!(
        !refused.status.success()
            && text(&refused).contains("(it is in group `abl`: resumed, it trains on"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        session::list(&root).len(),
        4,
        "no session outside the group"
    );
    let mut settings = Vec::new();
    for (dir, meta) in &all {
        assert_eq!(
            meta.status,
            Status::Finished,
            "{}: {:?}",
            meta.id,
            meta.error
        );
        let expected: Vec<u64> = (1..=30).map(|i| i * 10).collect();
        assert_eq!(
            common::logged_train_steps(dir),
            expected,
            "{}: each train step once",
            meta.id
        );
        let config = meltr_tui::config::Config::load(&dir.join("config.toml")).unwrap();
        assert_eq!(config.train.steps, 300);
        settings.push((config.combiner.kind.to_string(), config.workload.seed));
    }
    settings.sort();
    assert_eq!(
        settings,
        [("meltr", 0), ("meltr", 1), ("sum", 0), ("sum", 1)].map(|(k, s)| (k.to_string(), s))
    );
    let victim_log = std::fs::read_to_string(victim_dir.join("metrics.jsonl")).unwrap();
    assert!(
        victim_log.contains("resumed from checkpoint"),
        "the killed member was resumed, not restarted"
    );

    // One more seed: each combination runs again at it, nothing else reruns.
    let out = run_with_limit(
        meltr(&root).args(["sweep", "resume", "abl", "--seeds", "2", "--parallel", "2"]),
        WAIT,
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("2 members added (seed 2 for each of 2 combinations); 6 in all")
            && said.contains("all 6 sessions finished"),
        "{said}"
    );
    let mut seeds: Vec<(String, u64)> = members(&root, "abl")
        .iter()
        .map(|(dir, _)| {
            let config = meltr_tui::config::Config::load(&dir.join("config.toml")).unwrap();
            assert_eq!(config.train.steps, 300, "the sweep's --steps holds");
            (config.combiner.kind.to_string(), config.workload.seed)
        })
        .collect();
    seeds.sort();
    assert_eq!(
        seeds,
        [0, 1, 2]
            .into_iter()
            .flat_map(|s| [("meltr", s), ("sum", s)])
            .map(|(k, s)| (k.to_string(), s))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let again = run_with_limit(
        meltr(&root).args(["sweep", "resume", "abl", "--seeds", "1"]),
        WAIT,
    );
    assert!(
        !again.status.success()
            && text(&again).contains("already runs seed 1 (its seeds: 0, 1, 2)"),
        "{}",
        text(&again)
    );
}

/// A member that fails is named, with why, when the sweep ends, and again
/// when `sweep resume` retries it and it fails again (a walkthrough's
/// resume read `0 resumed` and no more).
#[test]
fn a_sweep_names_the_members_that_failed_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let _reaper = Reaper(root.clone());
    // lr 1e30: every update after the first is skipped, and the run fails.
    let out = run_with_limit(
        meltr(&root)
            .args(["sweep", "-c"])
            .arg(repo("configs/synthetic.toml"))
            .args([
                "--set",
                "train.lr=0.001,1e30",
                "--set",
                "train.grad_clip=1e30",
            ])
            .args(["--steps", "60", "--name", "lrs"])
            .args(SMALL),
        WAIT,
    );
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    let failed = |said: &str| {
        said.contains("1 of 2 sessions finished, 0 still running, not finished: member 1 failed")
            && said.contains("  1 failed: ")
            && said.contains("were all skipped")
    };
    assert!(failed(&said), "{said}");
    let out = run_with_limit(meltr(&root).args(["sweep", "resume", "lrs"]), WAIT);
    let said = text(&out);
    assert!(!out.status.success() && said.contains("resumed"), "{said}");
    assert!(failed(&said), "{said}");
}

#[test]
fn slurm_dry_run_prints_one_array_task_per_combination_and_each_task_runs_one_session() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let sweep_args = |command: &mut std::process::Command| {
        command
            .args(["sweep", "--slurm", "-c"])
            .arg(repo("configs/synthetic.toml"))
            .args([
                "--set",
                "aid.iterations=0,1",
                "--seeds",
                "3,4",
                "--steps",
                "20",
            ])
            .args(["--name", "cluster", "--sbatch=--time=0:10:00"])
            .args(SMALL);
    };
    let mut dry = meltr(&root);
    sweep_args(&mut dry);
    let out = run_with_limit(dry.arg("--dry-run"), WAIT);
    assert!(out.status.success(), "{}", text(&out));
    let script = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(script.starts_with("#!/bin/bash\n"), "{script}");
    assert!(script.contains("\n#SBATCH --array=0-3\n"), "{script}");
    assert!(script.contains("\n#SBATCH --time=0:10:00\n"), "{script}");
    let runs: Vec<&str> = script
        .lines()
        .filter(|l| l.contains("meltr-tui"))
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(runs.len(), 1, "one command per task: {script}");
    assert!(
        runs[0].ends_with("sweep member 'cluster' \"$SLURM_ARRAY_TASK_ID\""),
        "{script}"
    );
    assert!(
        script.contains("#     3  aid.iterations=1 workload.seed=4"),
        "{script}"
    );
    assert!(
        !root.join("cluster.sweep").exists(),
        "a dry run writes nothing"
    );

    // A stand-in sbatch that runs every array task in turn.
    let fake = tmp.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    let sbatch = fake.join("sbatch");
    std::fs::write(
        &sbatch,
        "#!/bin/bash\nset -e\nspec=$(sed -n 's/^#SBATCH --array=\\([0-9]*\\)-\\([0-9]*\\).*/\\1 \\2/p' \"$1\")\n\
         for i in $(seq $spec); do SLURM_ARRAY_TASK_ID=$i bash \"$1\" > \"$(dirname \"$1\")/task-$i.out\" 2>&1; done\n\
         echo \"Submitted batch job 4242\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut real = meltr(&root);
    sweep_args(&mut real);
    let out = run_with_limit(real.env("PATH", path), WAIT);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Submitted batch job 4242"),
        "{}",
        text(&out)
    );
    let all = members(&root, "cluster");
    assert_eq!(all.len(), 4, "one session per task");
    let mut names: Vec<&str> = all.iter().map(|(_, m)| m.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["cluster-000", "cluster-001", "cluster-002", "cluster-003"]
    );
    assert!(all.iter().all(|(_, m)| m.status == Status::Finished));
    let plan = std::fs::read_to_string(root.join("cluster.sweep/plan.json")).unwrap();
    assert!(plan.contains("\"slurm_job\": \"4242\""), "{plan}");
    // A task that runs again (a requeue) starts no second session.
    let again = run_with_limit(meltr(&root).args(["sweep", "member", "cluster", "2"]), WAIT);
    assert!(text(&again).contains("is finished"), "{}", text(&again));
    assert_eq!(members(&root, "cluster").len(), 4);
    // A dry run of a name that is taken says so, as the real run would.
    let mut dry = meltr(&root);
    sweep_args(&mut dry);
    let out = run_with_limit(dry.arg("--dry-run"), WAIT);
    assert!(
        !out.status.success() && text(&out).contains("sweep `cluster` exists"),
        "{}",
        text(&out)
    );
}

/// A session's metrics lines after `step` that are not events or config
/// lines, as written, less their `time` field.
fn lines_after(dir: &Path, step: u64) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .filter(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["step"].as_u64().unwrap() > step
                && !matches!(v["kind"].as_str(), Some("event" | "config"))
        })
        .map(|l| without_field(&without_field(l, "time"), "wall"))
        .collect()
}

/// `line` without its `"name":number` field (the clocks differ between
/// runs, the rest must not), as written: no parsing and printing again.
fn without_field(line: &str, name: &str) -> String {
    let key = format!(",\"{name}\":");
    let Some(start) = line.find(&key) else {
        return line.to_string();
    };
    let rest = &line[start + 1..];
    let end = start + 1 + rest.find([',', '}']).unwrap();
    format!("{}{}", &line[..start], &line[end..])
}

fn prefix(dir: &Path, step: u64) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    text.lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
                <= step
        })
        .map(String::from)
        .collect()
}

#[test]
fn a_fork_with_a_no_op_change_continues_its_parent_bit_for_bit_and_a_real_change_diverges() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let out = run_with_limit(
        meltr(&root)
            .args(["run", "--headless", "-n", "parent", "--steps", "300", "-c"])
            .arg(repo("configs/synthetic.toml"))
            .args(["--set", "train.checkpoint_every=100"])
            .args(SMALL),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let parent = session::find(&root, "parent").unwrap();
    let parent_id = SessionMeta::read(&parent).unwrap().id;

    let fork = |name: &str, at: &str, set: &str| {
        let out = run_with_limit(
            meltr(&root).args([
                "fork",
                &parent_id,
                "--headless",
                "-n",
                name,
                "--at",
                at,
                "--set",
                set,
            ]),
            WAIT,
        );
        (out.status.success(), text(&out))
    };
    // synthetic.toml has meltr.meta_lr = 0.001: the same value.
    let (ok, said) = fork("same", "200", "meltr.meta_lr=0.001");
    assert!(ok, "{said}");
    assert!(!said.contains(", with "), "{said}");
    let (ok, said) = fork("faster", "200", "meltr.meta_lr=0.01");
    assert!(ok, "{said}");
    // What it changed, said at once and at its start (a detached fork's
    // output.log had no word of it: walkthrough H).
    assert!(
        said.contains("into session ")
            && said.contains(", with meltr.meta_lr: 0.001 -> 0.01\n")
            && said.contains("starts from its parent's checkpoint of step 200, with meltr.meta_lr: 0.001 -> 0.01 (copied to "),
        "{said}"
    );
    let same = session::find(&root, "same").unwrap();
    let faster = session::find(&root, "faster").unwrap();
    // Its start is no resume (it read as one, a walkthrough).
    let log = std::fs::read_to_string(same.join("metrics.jsonl")).unwrap();
    assert!(
        log.contains("starts from its parent's checkpoint of step 200")
            && !log.contains("resumed from checkpoint"),
        "{log}"
    );

    let continuation = lines_after(&parent, 200);
    assert_eq!(continuation.len(), lines_after(&same, 200).len());
    assert!(
        continuation
            .iter()
            .filter(|l| l.contains("\"kind\":\"train\""))
            .count()
            >= 10
    );
    assert_eq!(
        lines_after(&same, 200),
        continuation,
        "a no-op fork replays its parent"
    );
    let changed = lines_after(&faster, 200);
    let train = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("\"kind\":\"train\""))
            .cloned()
            .collect()
    };
    for (a, b) in train(&changed).iter().zip(train(&continuation).iter()) {
        assert_ne!(
            a, b,
            "meta_lr 0.01 must change every train line after the fork"
        );
    }
    // The history up to the fork is the parent's, as written.
    assert_eq!(
        prefix(&same, 200)[..prefix(&parent, 200).len()],
        prefix(&parent, 200)[..]
    );

    // Its change is a config line at the fork step, which its figures
    // mark OLD→NEW (walkthrough S's fork figure read "fork" alone); the
    // no-op fork has none.
    let changes_at_fork = |dir: &std::path::Path| -> Vec<String> {
        prefix(dir, 200)
            .into_iter()
            .filter(|l| l.contains("\"kind\":\"config\"") && l.contains("\"step\":200,"))
            .collect()
    };
    let logged = changes_at_fork(&faster);
    assert!(
        logged.len() == 1 && logged[0].contains("\"meltr.meta_lr\":[0.001,0.01]"),
        "{logged:?}"
    );
    assert!(changes_at_fork(&same).is_empty());

    let meta = SessionMeta::read(&faster).unwrap();
    assert_eq!(meta.parent.as_deref(), Some(parent_id.as_str()));
    assert_eq!(meta.fork_step, Some(200));
    assert_eq!(meta.status, Status::Finished);
    let config = meltr_tui::config::Config::load(&faster.join("config.toml")).unwrap();
    assert_eq!(config.meltr.meta_lr, 0.01);
    // The fork's config.toml keeps the comments its parent's had (those of
    // synthetic.toml), with the fork's value in place.
    let opening = std::fs::read_to_string(repo("configs/synthetic.toml")).unwrap();
    let opening = opening.lines().next().unwrap();
    assert!(opening.starts_with('#'), "{opening}");
    let kept = std::fs::read_to_string(faster.join("config.toml")).unwrap();
    assert!(kept.starts_with(opening), "{kept}");

    // A fork of the fork at its fork step starts from the fork's settings,
    // not the grandparent's (the copied checkpoint carried those): it
    // replays the fork.
    let out = run_with_limit(
        meltr(&root).args([
            "fork",
            "faster",
            "--at",
            "200",
            "--headless",
            "-n",
            "refork",
        ]),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let refork = session::find(&root, "refork").unwrap();
    let config = meltr_tui::config::Config::load(&refork.join("config.toml")).unwrap();
    assert_eq!(config.meltr.meta_lr, 0.01);
    assert_eq!(train(&lines_after(&refork, 200)), train(&changed));

    // A fork of a fork, from its newest checkpoint (its last step, so it
    // must be given more steps to train), and the lineage in ls.
    let out = run_with_limit(
        meltr(&root).args(["fork", "faster", "--headless", "-n", "idle"]),
        WAIT,
    );
    let said = text(&out);
    assert!(
        !out.status.success()
            && said
                .contains("the fork would not train: it starts at step 300 and train.steps is 300"),
        "{said}"
    );
    let out = run_with_limit(
        meltr(&root).args([
            "fork",
            "faster",
            "--headless",
            "-n",
            "grandchild",
            "--set",
            "train.steps=320",
        ]),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let grandchild = SessionMeta::read(&session::find(&root, "grandchild").unwrap()).unwrap();
    assert_eq!(grandchild.parent.as_deref(), Some(meta.id.as_str()));
    assert_eq!(grandchild.fork_step, Some(300));
    let ls = text(&run_with_limit(meltr(&root).arg("ls"), WAIT));
    assert!(ls.contains("FORKED FROM"), "{ls}");
    assert!(ls.contains(&format!("{parent_id}@200")), "{ls}");
    assert!(ls.contains(&format!("{}@300", meta.id)), "{ls}");

    // Refusals name what is wrong (170: no evaluation there, so no
    // checkpoint of a new best either).
    let (ok, said) = fork("x", "170", "meltr.meta_lr=0.01");
    assert!(
        !ok && said.contains("no checkpoint at step 170")
            && said.contains("100, ")
            && said.contains(", 300"),
        "{said}"
    );
    let (ok, said) = fork("x", "200", "combiner.kind=sum");
    assert!(
        !ok && said.contains("combiner.kind") && said.contains("cannot change on fork"),
        "{said}"
    );
    assert_eq!(
        session::list(&root).len(),
        5,
        "refused forks leave no folder"
    );

    // The parent resumed with another meta_lr: a fork at 200 still starts
    // from the config in force at 200 (the checkpoint's), not the newest.
    let out = run_with_limit(
        meltr(&root).args([
            "resume",
            &parent_id,
            "--headless",
            "--set",
            "meltr.meta_lr=0.01",
            "--set",
            "train.steps=320",
        ]),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = run_with_limit(
        meltr(&root).args([
            "fork",
            &parent_id,
            "--headless",
            "-n",
            "later",
            "--at",
            "200",
        ]),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        lines_after(&session::find(&root, "later").unwrap(), 200),
        continuation,
        "a fork after the parent's resume replays the parent as it ran from 200"
    );
}

#[test]
fn set_overrides_are_checked_like_the_file_and_recorded_in_the_session_config() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let run = |sets: &[&str]| {
        let mut command = meltr(&root);
        command
            .args(["run", "--headless", "-n", "o", "--steps", "20", "-c"])
            .arg(repo("configs/synthetic.toml"))
            .args(SMALL);
        for set in sets {
            command.args(["--set", set]);
        }
        let out = run_with_limit(&mut command, WAIT);
        (out.status.success(), text(&out))
    };
    for (set, expected) in [
        ("aid.bogus=1", "key `aid.bogus`: no such key"),
        (
            "aid.iterations=many",
            "key `aid.iterations`: expected an integer, got `many`",
        ),
        (
            "combiner.kind=meltrr",
            "key `combiner.kind`: expected one of",
        ),
        ("aid.alpha=2", "key `aid.alpha`: expected 0 < alpha <= 1"),
        ("iterations", "expected KEY=VALUE"),
    ] {
        let (ok, said) = run(&[set]);
        assert!(!ok && said.contains(expected), "--set {set}: {said}");
    }
    assert!(
        session::list(&root).is_empty(),
        "refused runs leave no folder"
    );

    let (ok, said) = run(&["aid.iterations=2", "combiner.kind=sum", "train.lr=0.01"]);
    assert!(ok, "{said}");
    let dir = session::find(&root, "o").unwrap();
    let config = meltr_tui::config::Config::load(&dir.join("config.toml")).unwrap();
    assert_eq!(
        (
            config.aid.iterations,
            config.combiner.kind.as_str(),
            config.train.lr
        ),
        (2, "sum", 0.01)
    );

    // Resume: live keys are written into config.toml, the rest kept.
    let config_path = dir.join("config.toml");
    let edited = format!(
        "# my notes\n{}",
        std::fs::read_to_string(&config_path).unwrap()
    );
    std::fs::write(&config_path, &edited).unwrap();
    let out = run_with_limit(
        meltr(&root).args(["resume", "o", "--headless", "--set", "combiner.kind=meltr"]),
        WAIT,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot change on resume"),
        "{}",
        text(&out)
    );
    let out = run_with_limit(
        meltr(&root).args(["resume", "o", "--headless", "--set", "train.steps=40"]),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let after = std::fs::read_to_string(&config_path).unwrap();
    assert_eq!(
        after,
        edited.replace("steps = 20", "steps = 40"),
        "only the value changed"
    );
    assert_eq!(common::logged_train_steps(&dir).last(), Some(&40));
}

#[test]
fn a_detached_sweep_is_stopped_as_a_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let _reaper = Reaper(root.clone());
    let out = run_with_limit(
        meltr(&root)
            .args(["sweep", "--detach", "-c"])
            .arg(repo("configs/synthetic.toml"))
            .args(["--set", "aid.iterations=0,1", "--seeds", "0,1"])
            .args(["--parallel", "2", "--steps", "100000", "--name", "long"])
            .args(SMALL),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("driven in the background"),
        "{}",
        text(&out)
    );
    let pid_file = root.join("long.sweep/driver.pid");
    let driver: u32 = wait_for("the driver's pid file", || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    });
    let runners: Vec<u32> = wait_for("two running members", || {
        let pids: Vec<u32> = members(&root, "long")
            .iter()
            .filter(|(_, m)| m.pid != driver && session::pid_alive(m.pid))
            .map(|(_, m)| m.pid)
            .collect();
        (pids.len() == 2).then_some(pids)
    });
    // A second background driver is refused here, not only in its log
    // (it said "driven in the background" and exited 0).
    let second = run_with_limit(
        meltr(&root).args(["sweep", "resume", "long", "--detach"]),
        WAIT,
    );
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        text(&second).contains(&format!("sweep `long` already has a driver (pid {driver})")),
        "{}",
        text(&second)
    );
    let out = run_with_limit(meltr(&root).args(["sweep", "stop", "long"]), WAIT);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("stopped the driver (pid {driver})")),
        "{said}"
    );
    assert!(
        !session::pid_alive(driver) && runners.iter().all(|p| !session::pid_alive(*p)),
        "{said}"
    );
    let all = members(&root, "long");
    assert_eq!(all.len(), 2, "nothing started after the stop");
    // The members record the user's command, not the background driver's
    // `sweep resume long` (walkthrough S).
    for (_, m) in &all {
        let command = m.provenance.command.clone().unwrap_or_default();
        assert!(
            command.iter().any(|a| a == "--detach") && !command.iter().any(|a| a == "resume"),
            "{command:?}"
        );
    }
    assert!(
        all.iter().all(|(_, m)| m.status == Status::Stopped),
        "{all:?}"
    );
    assert_eq!(said.matches(" stopped ").count(), 2, "{said}");
    assert_eq!(said.matches(" queued ").count(), 2, "{said}");
    // The driver's log says what `sweep stop` does next, not that its
    // runners go on ("2 still running" of a stopped sweep).
    let log = std::fs::read_to_string(root.join("long.sweep/driver.log")).unwrap();
    assert!(
        log.contains("driver stopped by `meltr-tui sweep stop`")
            && log.contains("2 being stopped by `meltr-tui sweep stop`")
            && !log.contains("still running")
            && !root.join("long.sweep/stopping").exists(),
        "{log}"
    );
}
