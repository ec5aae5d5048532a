#!/usr/bin/env python3
"""Regenerates the README's results from real sessions: the distractor table
and the figures in screenshots/figure-*.png.

    scripts/readme_results.py [--binary target/release/meltr-tui] [--seeds 0 1 2]
                              [--sessions DIR] [--jobs 2]

Runs `configs/distractor.toml` (video-text, 400 steps, CPU) for every seed with
`combiner.kind` = meltr, sum and primary (nothing else changed), then:
- writes docs/results.md (the table, with the command, commit and date) and
  docs/results.json (every run's numbers);
- exports the seed-0 MELTR session's figures (losses, R@1, effective weights,
  final weights, transforms) as screenshots/figure-<name>.png and draws
  screenshots/figure-compare.png (R@1 of meltr, sum and primary, seed 0).

Standard library only: it reads the sessions' metrics.jsonl itself.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = os.path.join(REPO, "configs", "distractor.toml")
METHODS = ["meltr", "sum", "primary"]
AUXILIARY = ["align", "mlm", "mfm", "caption"]
LATE_LINES = 10


def preset_with(kind: str, seed: int) -> str:
    """The preset's text with combiner.kind, workload.seed and train.device set."""
    text = open(PRESET).read()
    text = re.sub(r'(?m)^seed = .*$', f"seed = {seed}", text, count=1)
    text = re.sub(r'(?m)^kind = "meltr"$', f'kind = "{kind}"', text, count=1)
    text = re.sub(r'(?m)^device = .*$', 'device = "cpu"', text, count=1)
    return text


def run_one(binary: str, sessions: str, configs: str, kind: str, seed: int) -> dict:
    name = f"distractor-{kind}-s{seed}"
    path = os.path.join(configs, f"{name}.toml")
    with open(path, "w") as f:
        f.write(preset_with(kind, seed))
    log = os.path.join(configs, f"{name}.log")
    with open(log, "w") as out:
        rc = subprocess.run([binary, "--sessions-dir", sessions, "run", "--headless", "-n", name, "-c", path],
                            stdout=out, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"readme-results: {name} failed (rc {rc}); see {log}")
    return summarize(find_session(sessions, name), kind, seed)


def find_session(sessions: str, name: str) -> str:
    for entry in sorted(os.listdir(sessions)):
        meta = os.path.join(sessions, entry, "session.json")
        if os.path.exists(meta) and json.load(open(meta)).get("name") == name:
            return os.path.join(sessions, entry)
    sys.exit(f"readme-results: no session named {name} in {sessions}")


def summarize(session: str, kind: str, seed: int) -> dict:
    lines = [json.loads(l) for l in open(os.path.join(session, "metrics.jsonl")) if l.strip()]
    evals = [l for l in lines if l["kind"] == "eval"]
    trains = [l for l in lines if l["kind"] == "train"][-LATE_LINES:]
    names = trains[-1]["weights"].keys()
    late = {n: statistics.fmean(t["weights"][n] for t in trains) for n in names}
    # Session time: the last line's `time`, seconds since the run started.
    return {"kind": kind, "seed": seed, "session": session, "r1": evals[-1]["metrics"]["R@1"], "weights": late,
            "seconds": lines[-1]["time"]}


def commit() -> str:
    def git(*a):
        return subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def table(runs: list, seeds: list) -> str:
    by = {(r["kind"], r["seed"]): r for r in runs}
    rows = ["| seed | MELTR R@1 | sum R@1 | primary R@1 | MELTR's weight on `distractor` | lowest other auxiliary | retrieval |",
            "|---|---|---|---|---|---|---|"]
    for s in seeds:
        m = by[("meltr", s)]
        others = {n: m["weights"][n] for n in AUXILIARY}
        low = min(others, key=others.get)
        rows.append(f"| {s} | {m['r1']:.1f} | {by[('sum', s)]['r1']:.1f} | {by[('primary', s)]['r1']:.1f} |"
                    f" {m['weights']['distractor']:.3f} | {others[low]:.3f} ({low}) | {m['weights']['retrieval']:.3f} |")
    seconds = sorted(r["seconds"] for r in runs)
    mean = lambda k: statistics.fmean(by[(k, s)]["r1"] for s in seeds)
    sd = lambda k: statistics.stdev(by[(k, s)]["r1"] for s in seeds) if len(seeds) > 1 else 0.0
    rows.append(f"| mean ± std | {mean('meltr'):.1f} ± {sd('meltr'):.1f} | {mean('sum'):.1f} ± {sd('sum'):.1f} |"
                f" {mean('primary'):.1f} ± {sd('primary'):.1f} | | | |")
    return "\n".join(rows) + f"\n\nSession time of a run (its log's last `time`): {seconds[0]:.1f}–{seconds[-1]:.1f} s."


def figures(binary: str, sessions: str, runs: list) -> None:
    shots = os.path.join(REPO, "screenshots")
    seed0 = {r["kind"]: r["session"] for r in runs if r["seed"] == min(x["seed"] for x in runs)}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([binary, "--sessions-dir", sessions, "export", seed0["meltr"], "--format", "png",
                        "--out", tmp], check=True, stdout=subprocess.DEVNULL)
        for png in os.listdir(tmp):
            shutil.copy(os.path.join(tmp, png), os.path.join(shots, f"figure-{png}"))
    subprocess.run([binary, "--sessions-dir", sessions, "compare", *[seed0[k] for k in METHODS],
                    "-o", os.path.join(shots, "figure-compare.png"), "--metric", "R@1"],
                   check=True, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(REPO, "target", "release", "meltr-tui"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sessions", default=None, help="sessions directory (default: a temporary one)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-figures", action="store_true")
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    sessions = os.path.abspath(args.sessions or tempfile.mkdtemp(prefix="readme-results-"))
    os.makedirs(sessions, exist_ok=True)
    configs = os.path.join(sessions, "configs")
    os.makedirs(configs, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    # The first run alone: it pretrains (and caches) the foundation model
    # when this machine has none yet, which parallel runs would race on.
    jobs = [(k, s) for s in args.seeds for k in METHODS]
    runs = [run_one(binary, sessions, configs, *jobs[0])]
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, binary, sessions, configs, k, s) for k, s in jobs[1:]]
        runs += [f.result() for f in futures]
    command = shlex.join(["scripts/readme_results.py", *sys.argv[1:]])
    # Read once: writing docs/results.md makes the tree dirty.
    at = commit()
    header = (f"Written by `{command}` at commit {at}, {started:%Y-%m-%d %H:%M} UTC "
              f"(`configs/distractor.toml`, 400 steps on the CPU; `sum` and `primary` are the same file with "
              f"`combiner.kind` changed; weights are MELTR's effective weights, means over the last {LATE_LINES} "
              f"train lines; {args.jobs} runs at a time).")
    docs = os.path.join(REPO, "docs")
    os.makedirs(docs, exist_ok=True)
    with open(os.path.join(docs, "results.md"), "w") as f:
        f.write("# The distractor preset\n\n" + header + "\n\n" + table(runs, args.seeds) + "\n")
    with open(os.path.join(docs, "results.json"), "w") as f:
        json.dump({"command": command, "commit": at, "runs": runs}, f, indent=1)
    if not args.no_figures:
        figures(binary, sessions, runs)
    print(header + "\n\n" + table(runs, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
