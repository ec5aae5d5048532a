#!/usr/bin/env python3
"""meltr-tui against a plain PyTorch loop on the same TorchScript model.

For each combiner setting it writes a temporary config derived from CONFIG,
then runs, alternating, `meltr-tui run --headless` and
scripts/torch_loop.py (the same model, data, batches, optimizer semantics
and MELTR algorithm in an ordinary PyTorch loop) on it, --pairs times, and
prints per-step and whole-run times and their ratios (ours / theirs).

Usage (from the repository root, after `cargo build --release`):

    ./.torch-python scripts/side_by_side.py -c CONFIG.toml [--pairs 5] [--steps 300]
        [--settings sum,meltr-factorized,meltr-exact] [--logged] [--threads N]
        [--device cpu] [--out results.json] [--binary PATH]
        [--optimizer default|foreach|fused] [--jit default|plain]
    ./.torch-python scripts/side_by_side.py --self-test [--binary PATH]

e.g. on the TorchScript example (matmul attention, so `exact` works):

    ./.torch-python examples/torchscript/export_two_stream.py --attention matmul --out target/bench-model
    cp examples/torchscript/two_stream.toml target/bench-model/
    ./.torch-python scripts/side_by_side.py -c target/bench-model/two_stream.toml --pairs 5 --steps 300

CONFIG is any meltr-tui config with workload.kind = "torchscript" (paths
relative to it). Per setting the temporary config takes CONFIG and sets:
train.steps = eval_every = checkpoint_every = log_every = --steps (so
evaluation, checkpoint and logging happen once, at the end), train.trace =
false, combiner.kind, and for MELTR settings aid.mode, aid.iterations =
--aid-iterations (0) and meltr.meta_every = --meta-every (3); --threads and
--device override train.threads / train.device when given. Settings:
  sum, primary                      fixed combiners
  meltr-factorized, meltr-exact     MELTR with that aid.mode (the PyTorch
                                    loop runs the public algorithm, which
                                    differentiates twice, for both)

Measured per run:
  whole     wall time of the whole process (perf_counter around the child),
            start-up, loading, training, the final evaluation and checkpoint.
  step      the in-loop time per step, both sides including their first
            (warm-up) steps:
              meltr-tui: the `time` of the step-N train line in
                metrics.jsonl (seconds since the trainer's clock started,
                just before step 1) / N. Train lines are written every
                log_every steps and meta lines are written when flushed, so
                a run with log_every = N cannot give per-step times: this is
                a mean, which includes the one logged step (N).
              PyTorch: the sum of its per-step perf_counter times / N; its
                per-step median (and the median of steps without a meta
                step) is shown too.
  --logged  adds, per setting and pair, a meltr-tui run with log_every = 1:
            the differences between consecutive train lines' `time` give
            per-step times (a meta step's cost lands in the next step's
            difference, as the engine writes a step's line before its meta
            step); their median over steps without a meta step is compared
            with PyTorch's median over the same steps. These steps include
            the engine's logging (effective weights, gradient shares, a host
            copy); `logged/unlogged` is the logged run's mean step over the
            unlogged run's.
Every number in the table is the median over the pairs; each ratio is the
median of the per-pair ratios (ours / theirs: below 1 means meltr-tui is
faster). Runs alternate ours/theirs, the order flipping each pair. Timings
are only as good as the machine is quiet: note what else was running.

--out writes everything (per-run values, medians, the configs used) as JSON.

--self-test (seconds, for CI): on meltr_replay's tiny TorchScript model,
checks with train.trace = true that torch_loop.py draws the engine's batch
rows and meta picks step for step and starts from the engine's losses, that
θ after 20 `sum` steps (weight decay, cosine schedule, crossing an epoch)
matches the engine's, then runs this benchmark with --pairs 1 --steps 5
--logged and checks its JSON. Exit status 0 when all passed.

Exit status: 0 when every run succeeded, 1 when some failed (each failure's
output is printed), 2 on bad arguments.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from typing import Dict, List, Optional

sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_BINARY = os.path.join(REPO, "target", "release", "meltr-tui")
TORCH_LOOP = os.path.join(HERE, "torch_loop.py")
SETTINGS = {
    "sum": {"combiner": "sum"},
    "primary": {"combiner": "primary"},
    "meltr-factorized": {"combiner": "meltr", "mode": "factorized"},
    "meltr-exact": {"combiner": "meltr", "mode": "exact"},
}
DEFAULT_SETTINGS = "sum,meltr-factorized,meltr-exact"


class BenchError(Exception):
    pass


def toml_dumps(table: dict) -> str:
    sys.path.insert(0, HERE)
    import meltr_replay  # torch comes with it; imported only here

    return meltr_replay.toml_dumps(table)


# --------------------------------------------------------------------------
# Configs


def setting_config(raw: dict, base_dir: str, name: str, steps: int, log_every: int, args) -> dict:
    setting = SETTINGS[name]
    cfg = json.loads(json.dumps(raw))
    workload = cfg.setdefault("workload", {})
    if workload.get("kind") != "torchscript":
        raise BenchError(f"workload.kind is {workload.get('kind')!r}; this benchmark needs a `torchscript` workload")
    for key in ("model", "train", "val"):
        if key in workload:
            workload[key] = os.path.join(base_dir, workload[key])
    train = cfg.setdefault("train", {})
    train.update(steps=steps, eval_every=steps, checkpoint_every=steps, log_every=log_every, trace=False)
    if args.threads is not None:
        train["threads"] = args.threads
    if args.device is not None:
        train["device"] = args.device
    cfg.setdefault("combiner", {})["kind"] = setting["combiner"]
    if setting["combiner"] == "meltr":
        cfg.setdefault("meltr", {})["meta_every"] = args.meta_every
        cfg.setdefault("aid", {}).update(iterations=args.aid_iterations, mode=setting["mode"])
    return cfg


# --------------------------------------------------------------------------
# Runs


def run_child(command: List[str], limit: float) -> dict:
    started = time.perf_counter()
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=limit, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        return {"ok": False, "whole_s": time.perf_counter() - started,
                "error": f"timed out after {limit:.0f} s: {' '.join(command)}",
                "output": ((e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""))[-3000:]}
    whole = time.perf_counter() - started
    result = {"ok": out.returncode == 0, "whole_s": whole, "rc": out.returncode}
    if out.returncode != 0:
        result["error"] = f"exit status {out.returncode}: {' '.join(command)}"
        result["output"] = (out.stdout + out.stderr)[-3000:]
    return result


def read_metrics(path: str) -> List[dict]:
    lines = []
    with open(path) as f:
        for line in f:
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a truncated last line
    return lines


def run_ours(args, config: str, steps: int, meta_every: Optional[int], train_batch: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as sessions:
        command = [args.binary, "run", "--headless", "-c", config, "--steps", str(steps), "--sessions-dir", sessions]
        result = run_child(command, args.timeout)
        if not result["ok"]:
            return result
        found = [os.path.join(sessions, d) for d in os.listdir(sessions)]
        if len(found) != 1:
            return {**result, "ok": False, "error": f"expected one session in {sessions}, found {len(found)}"}
        lines = read_metrics(os.path.join(found[0], "metrics.jsonl"))
    train = sorted((l["step"], l["time"]) for l in lines if l.get("kind") == "train")
    events = [f"step {l['step']}: {l.get('level')}: {l.get('message')}" for l in lines
              if l.get("kind") == "event" and l.get("level") in ("warn", "error")]
    if not train or train[-1][0] != steps:
        return {**result, "ok": False, "error": f"no train line at step {steps} in metrics.jsonl"}
    result.update(loop_s=train[-1][1], mean_step_s=train[-1][1] / steps, warnings=events)
    if len(train) == steps:  # log_every = 1: per-step differences
        times = [t for _, t in train]
        deltas = [times[0]] + [b - a for a, b in zip(times, times[1:])]
        # A meta step runs after its step's train line (before it with
        # meltr.train_batch = "current"): its cost is in the next difference.
        shift = 0 if train_batch == "current" else 1
        with_meta = set()
        if meta_every:
            with_meta = {s + shift for s in range(meta_every, steps + 1, meta_every)}
        inner = [d for s, d in enumerate(deltas, 1) if s not in with_meta]
        result.update(median_step_s=statistics.median(deltas),
                      median_inner_step_s=statistics.median(inner) if inner else None,
                      step_times_s=deltas)
    return result


def run_theirs(args, config: str, steps: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as directory:
        out = os.path.join(directory, "times.json")
        command = [args.python, TORCH_LOOP, "-c", config, "--steps", str(steps), "--out", out,
                   "--optimizer", args.optimizer, "--jit", args.jit]
        result = run_child(command, args.timeout)
        if not result["ok"]:
            return result
        with open(out) as f:
            times = json.load(f)
    for key in ("loop_s", "mean_step_s", "median_step_s", "median_inner_step_s", "median_meta_step_s",
                "setup_s", "final_s", "notes"):
        result[key] = times[key]
    result["inner_whole_s"] = times["whole_s"]  # from the script's first line
    result["first_steps_s"] = times["step_times_s"][:5]  # the warm-up (TorchScript's profiling runs)
    return result


def med(values: List[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else None


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def summarize(runs: List[dict], logged: bool) -> dict:
    """Medians over the pairs where both sides succeeded."""
    good = [r for r in runs if r["ours"]["ok"] and r["theirs"]["ok"] and (not logged or r["ours_logged"]["ok"])]
    if not good:
        return {"pairs": 0}
    o = lambda key: med([r["ours"].get(key) for r in good])  # noqa: E731
    t = lambda key: med([r["theirs"].get(key) for r in good])  # noqa: E731
    paired = lambda f: med([f(r) for r in good])  # noqa: E731
    s = {
        "pairs": len(good),
        "ours_mean_step_s": o("mean_step_s"),
        "ours_whole_s": o("whole_s"),
        "theirs_mean_step_s": t("mean_step_s"),
        "theirs_median_step_s": t("median_step_s"),
        "theirs_median_inner_step_s": t("median_inner_step_s"),
        "theirs_whole_s": t("whole_s"),
        "ratio_step_mean_mean": paired(lambda r: ratio(r["ours"]["mean_step_s"], r["theirs"]["mean_step_s"])),
        "ratio_step_mean_median": paired(lambda r: ratio(r["ours"]["mean_step_s"], r["theirs"]["median_step_s"])),
        "ratio_whole": paired(lambda r: ratio(r["ours"]["whole_s"], r["theirs"]["whole_s"])),
    }
    if logged:
        s.update(
            ours_logged_median_inner_step_s=med([r["ours_logged"].get("median_inner_step_s") for r in good]),
            ours_logged_mean_step_s=med([r["ours_logged"].get("mean_step_s") for r in good]),
            ratio_logged_median_inner=paired(lambda r: ratio(r["ours_logged"].get("median_inner_step_s"),
                                                             r["theirs"]["median_inner_step_s"])),
            logged_over_unlogged=paired(lambda r: ratio(r["ours_logged"]["mean_step_s"], r["ours"]["mean_step_s"])),
        )
    return s


def ms(x: Optional[float]) -> str:
    return "-" if x is None else f"{x * 1e3:.1f}"


def sec(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}"


def times(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.2f}x"


def table(summaries: Dict[str, dict], logged: bool) -> str:
    # (Our mean over the loop's median mixed meta steps into one side only
    # and read as "slower" where mean/mean was 0.6x: walkthrough S. It stays
    # in the JSON.)
    rows = [("setting", "ours ms/step", "torch ms/step", "torch median", "ratio", "ours run s",
             "torch run s", "run ratio"),
            ("", "(mean)", "(mean)", "ms/step", "mean/mean", "", "", "")]
    for name, s in summaries.items():
        rows.append((name, ms(s.get("ours_mean_step_s")), ms(s.get("theirs_mean_step_s")),
                     ms(s.get("theirs_median_step_s")), times(s.get("ratio_step_mean_mean")),
                     sec(s.get("ours_whole_s")), sec(s.get("theirs_whole_s")), times(s.get("ratio_whole"))))
    text = render(rows)
    if logged:
        rows = [("setting", "ours median ms", "torch median ms", "ratio", "logged/unlogged"),
                ("", "(log_every 1)", "(no-meta steps)", "", "(ours, mean step)")]
        for name, s in summaries.items():
            rows.append((name, ms(s.get("ours_logged_median_inner_step_s")), ms(s.get("theirs_median_inner_step_s")),
                         times(s.get("ratio_logged_median_inner")), times(s.get("logged_over_unlogged"))))
        text += "\n\nper-step medians over steps without a meta step (meltr-tui from a log_every = 1 run):\n"
        text += render(rows)
    return text


def render(rows: List[tuple]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows)


def bench(args) -> int:
    if not os.path.exists(args.binary):
        raise BenchError(f"{args.binary} not found: build it with `cargo build --release` (or pass --binary)")
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or not names:
        raise BenchError(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    try:
        with open(args.config, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise BenchError(f"{args.config}: {e}") from None
    base_dir = os.path.dirname(os.path.abspath(args.config))
    train_batch = raw.get("meltr", {}).get("train_batch", "recent")
    work = tempfile.mkdtemp(prefix="side-by-side-configs-")
    try:
        configs: Dict[str, Dict[str, str]] = {}
        texts: Dict[str, str] = {}
        for name in names:
            configs[name] = {}
            for variant, log_every in (("unlogged", args.steps), ("logged", 1)):
                if variant == "logged" and not args.logged:
                    continue
                text = toml_dumps(setting_config(raw, base_dir, name, args.steps, log_every, args))
                path = os.path.join(work, f"{name}-{variant}.toml")
                with open(path, "w") as f:
                    f.write(text)
                configs[name][variant] = path
                texts[f"{name}-{variant}"] = text
        runs: Dict[str, List[dict]] = {n: [] for n in names}
        failures = 0
        print(f"side-by-side: {args.config}, {args.steps} steps, {args.pairs} pair(s), settings {', '.join(names)}"
              f"{', plus log_every = 1 runs' if args.logged else ''}; load average {os.getloadavg()[0]:.2f}",
              flush=True)
        for pair in range(args.pairs):
            for name in names:
                meta_every = args.meta_every if SETTINGS[name]["combiner"] == "meltr" else None
                entry = {}
                order = ["ours", "theirs"] if pair % 2 == 0 else ["theirs", "ours"]
                for side in order:
                    if side == "ours":
                        entry["ours"] = run_ours(args, configs[name]["unlogged"], args.steps, meta_every, train_batch)
                    else:
                        entry["theirs"] = run_theirs(args, configs[name]["unlogged"], args.steps)
                if args.logged:
                    entry["ours_logged"] = run_ours(args, configs[name]["logged"], args.steps, meta_every, train_batch)
                runs[name].append(entry)
                for side, r in entry.items():
                    if not r["ok"]:
                        failures += 1
                        print(f"  FAILED {name} {side}: {r.get('error')}\n{r.get('output', '')}", file=sys.stderr)
                    for w in r.get("warnings", []):
                        print(f"  note: {name} {side}: {w}")
                o, t = entry["ours"], entry["theirs"]
                line = (f"[pair {pair + 1}/{args.pairs}] {name}: meltr-tui {sec(o.get('whole_s'))} s "
                        f"({ms(o.get('mean_step_s'))} ms/step)  PyTorch {sec(t.get('whole_s'))} s "
                        f"({ms(t.get('mean_step_s'))} ms/step, median {ms(t.get('median_step_s'))})")
                if args.logged:
                    line += f"  logged: median {ms(entry['ours_logged'].get('median_inner_step_s'))} ms"
                print(line, flush=True)
        summaries = {n: summarize(runs[n], args.logged) for n in names}
        print()
        print(table(summaries, args.logged))
        notes = sorted({note for n in names for r in runs[n] for note in r["theirs"].get("notes", []) or []})
        print(f"\nmedians over pairs; ratios: ours / theirs (< 1: meltr-tui faster). load average at the end "
              f"{os.getloadavg()[0]:.2f}")
        for note in notes:
            print(f"note (PyTorch loop): {note}")
        if args.out:
            report = {
                "config": os.path.abspath(args.config),
                "steps": args.steps,
                "pairs": args.pairs,
                "settings": names,
                "aid_iterations": args.aid_iterations,
                "meta_every": args.meta_every,
                "binary": os.path.abspath(args.binary),
                "optimizer": args.optimizer,
                "jit": args.jit,
                "logged": args.logged,
                "summary": summaries,
                "runs": runs,
                "configs": texts,
                "table": table(summaries, args.logged),
                "notes": notes,
            }
            with open(args.out, "w") as f:
                json.dump(report, f, indent=1)
            print(f"wrote {args.out}")
        return 1 if failures else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
# Self-test


def self_test(args) -> int:
    started = time.perf_counter()
    if not os.path.exists(args.binary):
        raise BenchError(f"{args.binary} not found: build it with `cargo build --release` (or pass --binary)")
    sys.path.insert(0, HERE)
    import meltr_replay  # noqa: E402

    with tempfile.TemporaryDirectory(prefix="side-by-side-test-") as directory:
        config = meltr_replay.write_tiny_workload(directory, {"train": {"device": "cpu", "threads": 1}})
        # Without its BatchNorm: the bias before it has a zero gradient up to
        # rounding, and Adam turns that noise into a full-size step, so θ
        # could not be compared.
        import torch  # noqa: E402

        torch.manual_seed(0)
        torch.jit.script(meltr_replay.TinyModel(batch_norm=False)).save(os.path.join(directory, "model.pt"))
        with open(config, "rb") as f:
            raw = tomllib.load(f)
        # 1. Same batches, meta picks, first losses (and θ for `sum`) as the engine.
        variants = {
            "sum": ({"combiner": {"kind": "sum"}, "train": {"weight_decay": 0.01, "lr_schedule": "cosine"}}, 20),
            "meltr": ({"combiner": {"kind": "meltr"}, "meltr": {"meta_every": 2}}, 8),
            "meltr-val": ({"combiner": {"kind": "meltr"}, "meltr": {"meta_every": 3, "val_source": "val"}}, 6),
        }
        sessions = []
        for name, (changes, steps) in variants.items():
            cfg = json.loads(json.dumps(raw))
            for section, values in changes.items():
                cfg.setdefault(section, {}).update(values)
            cfg["train"].update(steps=steps, eval_every=steps, checkpoint_every=steps, log_every=steps, trace=True)
            path = os.path.join(directory, f"trace-{name}.toml")
            with open(path, "w") as f:
                f.write(meltr_replay.toml_dumps(cfg))
            root = os.path.join(directory, f"sessions-{name}")
            out = run_child([args.binary, "run", "--headless", "-c", path, "--sessions-dir", root, "-n", name], 300)
            if not out["ok"]:
                raise BenchError(f"trace run {name} failed: {out['error']}\n{out.get('output', '')}")
            sessions.append(os.path.join(root, os.listdir(root)[0]))
        check = subprocess.run([args.python, TORCH_LOOP, "--check-trace", *sessions], capture_output=True,
                               text=True, cwd=REPO)
        print(check.stdout.strip())
        if check.returncode != 0:
            raise BenchError(f"torch_loop.py --check-trace failed:\n{check.stdout}{check.stderr}")
        # 2. The benchmark itself, smallest size.
        report_path = os.path.join(directory, "report.json")
        smoke = argparse.Namespace(**{**vars(args), "config": config, "pairs": 1, "steps": 5, "logged": True,
                                      "settings": DEFAULT_SETTINGS, "out": report_path, "threads": None,
                                      "device": None})
        if bench(smoke) != 0:
            raise BenchError("the smoke benchmark had failed runs")
        with open(report_path) as f:
            report = json.load(f)
        for name in DEFAULT_SETTINGS.split(","):
            s = report["summary"][name]
            for key in ("ours_mean_step_s", "theirs_median_step_s", "ratio_step_mean_mean", "ratio_whole",
                        "ours_logged_median_inner_step_s", "logged_over_unlogged"):
                value = s.get(key)
                if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                    raise BenchError(f"report: summary[{name!r}][{key!r}] = {value!r}")
    print(f"self-test passed in {time.perf_counter() - started:.1f}s")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="meltr-tui vs a plain PyTorch loop (scripts/torch_loop.py) on one TorchScript config, "
                    "alternating; see the docstring at the top of this file.")
    parser.add_argument("-c", "--config", help="a meltr-tui config with workload.kind = \"torchscript\"")
    parser.add_argument("--pairs", type=int, default=5, help="alternating meltr-tui/PyTorch pairs per setting (5)")
    parser.add_argument("--steps", type=int, default=300, help="steps per run (300)")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS,
                        help=f"comma-separated, of {', '.join(SETTINGS)} (default {DEFAULT_SETTINGS})")
    parser.add_argument("--aid-iterations", type=int, default=0, help="aid.iterations for MELTR settings (0)")
    parser.add_argument("--meta-every", type=int, default=3, help="meltr.meta_every for MELTR settings (3)")
    parser.add_argument("--threads", type=int, help="override train.threads")
    parser.add_argument("--device", help="override train.device (cpu, cuda, cuda:N)")
    parser.add_argument("--logged", action="store_true",
                        help="also run meltr-tui with log_every = 1 for per-step medians and the logging cost")
    parser.add_argument("--optimizer", choices=["default", "foreach", "fused"], default="default",
                        help="the PyTorch loop's AdamW implementation (PyTorch's default)")
    parser.add_argument("--jit", choices=["default", "plain"], default="default",
                        help="the PyTorch loop's TorchScript executor (PyTorch's default)")
    parser.add_argument("--binary", default=DEFAULT_BINARY, help="meltr-tui (default: target/release/meltr-tui)")
    parser.add_argument("--python", default=os.path.join(REPO, ".torch-python"),
                        help="the Python with torch for torch_loop.py (default: ./.torch-python)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per child process (3600)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--self-test", action="store_true", help="quick checks (seconds) for CI")
    args = parser.parse_args(argv)
    try:
        if args.self_test:
            return self_test(args)
        if not args.config:
            parser.error("-c CONFIG is required (or --self-test)")
        if args.pairs < 1 or args.steps < 1:
            parser.error("--pairs and --steps must be at least 1")
        return bench(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
