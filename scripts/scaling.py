#!/usr/bin/env python3
"""Throughput of data-parallel training against the number of ranks.

Strong scaling: the global batch (`workload.batch_size`) stays fixed and is
split across the ranks, so with N ranks each rank computes 1/N of every
batch. For each N in --ranks this runs

    BINARY run --headless -c CONFIG --nproc N --steps STEPS \
        --set workload.batch_size=B --set train.threads=T --set train.device=D ...

into a temporary sessions folder, reads the per-step times of rank 0's
`metrics.jsonl` (its `train` lines' `time`, seconds since start, logged
every step), drops the first --warmup steps (start-up, allocator, first
meta step) and prints a Markdown table: ranks, steps/s, samples/s,
speed-up over the smallest rank count measured, and efficiency
(speed-up / (ranks / smallest ranks)).

Python 3 standard library only: it runs where the prebuilt binary is, with
no cargo and no torch install. The ranks are CPU processes (Gloo) unless
--device says otherwise; each uses --threads-per-rank intra-op threads, so
a fair measurement needs ranks x threads <= the cores it has.

Example (from the repository root):

    python3 scripts/scaling.py --ranks 1,2,4,8 --steps 40 --threads-per-rank 1 \
        --out scaling.json
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Data-parallel throughput against the number of ranks "
        "(strong scaling: fixed global batch split across the ranks).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--binary", default="target/release/meltr-tui",
                   help="the meltr-tui binary to measure")
    p.add_argument("-c", "--config", default="configs/default.toml",
                   help="the run's config (the built-in video-text model: "
                   "a step takes ~0.1 s per 32 samples on one CPU thread, "
                   "so communication is not everything)")
    p.add_argument("--ranks", default="1,2,4,8",
                   help="comma-separated rank counts to measure")
    p.add_argument("--steps", type=int, default=40,
                   help="training steps per run (warm-up included)")
    p.add_argument("--warmup", type=int, default=5,
                   help="first steps left out of the timing")
    p.add_argument("--threads-per-rank", type=int, default=1,
                   help="train.threads of every rank")
    p.add_argument("--global-batch", type=int, default=64,
                   help="workload.batch_size, the whole batch of one step, "
                   "split across the ranks (must divide by every rank count)")
    p.add_argument("--device", default="cpu",
                   help="train.device (cpu: Gloo ranks; cuda: NCCL, one GPU a rank)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="more config overrides passed to every run (repeatable)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds one run may take before it is killed")
    p.add_argument("--keep", action="store_true",
                   help="keep the sessions folder (its path is printed)")
    p.add_argument("--out", help="write the measurements to this JSON file")
    args = p.parse_args(argv)
    try:
        args.ranks = [int(r) for r in args.ranks.split(",") if r.strip()]
    except ValueError:
        p.error(f"--ranks: expected comma-separated integers, got {args.ranks!r}")
    if not args.ranks or min(args.ranks) < 1:
        p.error("--ranks: every rank count must be >= 1")
    if args.steps <= args.warmup + 1:
        p.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup}) + 1")
    for n in args.ranks:
        if args.global_batch % n:
            p.error(f"--global-batch {args.global_batch} does not divide by {n} ranks")
    if not os.path.exists(args.binary):
        p.error(f"--binary {args.binary}: no such file (build it with "
                "`cargo build --release`, or point --binary at it)")
    if not os.path.exists(args.config):
        p.error(f"-c {args.config}: no such file")
    return args


def command(args, ranks, sessions_dir, steps):
    cmd = [
        args.binary, "--sessions-dir", sessions_dir,
        "run", "--headless", "-c", args.config,
        "-n", f"scaling-{ranks}",
        "--nproc", str(ranks),
        "--steps", str(steps),
        "--set", f"workload.batch_size={args.global_batch}",
        "--set", f"train.threads={args.threads_per_rank}",
        "--set", f"train.device={args.device}",
        "--set", "train.log_every=1",
        # No evaluation or checkpoint inside the timed steps.
        "--set", f"train.eval_every={steps + 1}",
        "--set", f"train.checkpoint_every={steps + 1}",
    ]
    for s in args.set:
        cmd += ["--set", s]
    return cmd


def run_once(args, ranks, sessions_dir, steps):
    """Runs one session; returns its folder."""
    before = set(os.listdir(sessions_dir))
    cmd = command(args, ranks, sessions_dir, steps)
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"{ranks} rank(s): no end after {args.timeout:.0f} s: {' '.join(cmd)}")
    if done.returncode != 0:
        sys.exit(f"{ranks} rank(s) failed (exit {done.returncode}): {' '.join(cmd)}\n"
                 f"{done.stderr.strip() or done.stdout.strip()[-2000:]}")
    new = sorted(set(os.listdir(sessions_dir)) - before)
    if len(new) != 1:
        sys.exit(f"{ranks} rank(s): expected one new session in {sessions_dir}, found {new}")
    return os.path.join(sessions_dir, new[0]), cmd


def step_times(session):
    """{step: time} of the train lines of a session's metrics.jsonl."""
    path = os.path.join(session, "metrics.jsonl")
    times = {}
    with open(path) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a truncated last line
            if rec.get("kind") == "train":
                times[int(rec["step"])] = float(rec["time"])
    return times


def measure(times, warmup, steps):
    """Steps per second over steps warmup+1..steps (one train line a step)."""
    missing = [s for s in range(warmup + 1, steps + 1) if s not in times]
    if missing:
        raise ValueError(f"no train line for steps {missing[:5]}... (log_every must be 1)")
    seconds = times[steps] - times[warmup + 1]
    counted = steps - (warmup + 1)
    per_step = [times[s + 1] - times[s] for s in range(warmup + 1, steps)]
    per_step.sort()
    return {
        "timed_steps": counted,
        "seconds": seconds,
        "steps_per_s": counted / seconds,
        "median_step_s": per_step[len(per_step) // 2],
    }


def table(rows):
    lines = [
        "| ranks | batch per rank | steps/s | samples/s | speed-up | efficiency |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['ranks']} | {r['batch_per_rank']} | {r['steps_per_s']:.2f} | "
            f"{r['samples_per_s']:.1f} | {r['speedup']:.2f}x | {100 * r['efficiency']:.0f}% |"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cores = os.cpu_count() or 1
    if args.device == "cpu" and max(args.ranks) * args.threads_per_rank > cores:
        print(f"warning: {max(args.ranks)} ranks x {args.threads_per_rank} threads "
              f"> {cores} cores: the larger runs share cores", file=sys.stderr)
    sessions_dir = tempfile.mkdtemp(prefix="meltr-scaling-")
    rows = []
    try:
        # One short run first: caches what a first run builds (the video-text
        # foundation checkpoint) so that no measured run pays for it.
        print("warm-up run (1 rank, 2 steps)...", file=sys.stderr)
        run_once(args, 1, sessions_dir, 2)
        for n in args.ranks:
            print(f"{n} rank(s), {args.steps} steps...", file=sys.stderr)
            started = time.monotonic()
            session, cmd = run_once(args, n, sessions_dir, args.steps)
            wall = time.monotonic() - started
            m = measure(step_times(session), args.warmup, args.steps)
            rows.append({
                "ranks": n,
                "batch_per_rank": args.global_batch // n,
                "steps_per_s": m["steps_per_s"],
                "samples_per_s": m["steps_per_s"] * args.global_batch,
                "median_step_s": m["median_step_s"],
                "timed_steps": m["timed_steps"],
                "timed_seconds": m["seconds"],
                "run_wall_s": wall,
                "session": session,
                "command": cmd,
            })
    finally:
        if not args.keep:
            shutil.rmtree(sessions_dir, ignore_errors=True)
    base = min(rows, key=lambda r: r["ranks"])
    for r in rows:
        r["speedup"] = r["steps_per_s"] / base["steps_per_s"]
        r["efficiency"] = r["speedup"] / (r["ranks"] / base["ranks"])
    print(f"Strong scaling: global batch {args.global_batch} split across the ranks; "
          f"{args.config}, device {args.device}, {args.threads_per_rank} thread(s) a rank, "
          f"steps {args.warmup + 1}..{args.steps} timed, {cores} cores, {platform.node()}.")
    print()
    print(table(rows))
    if args.keep:
        print(f"\nsessions kept in {sessions_dir}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({
                "config": args.config,
                "binary": os.path.abspath(args.binary),
                "device": args.device,
                "global_batch": args.global_batch,
                "threads_per_rank": args.threads_per_rank,
                "steps": args.steps,
                "warmup": args.warmup,
                "cores": cores,
                "host": platform.node(),
                "extra_sets": args.set,
                "runs": rows,
            }, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
