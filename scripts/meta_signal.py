#!/usr/bin/env python3
"""What moves MELTR's effective weights: the public algorithm's meta step,
taken apart per loss on the auxiliary-learning suite.

    meta_signal.py [--suite DIR] [--tasks mixed many-aux sequence]
                   [--seeds 0 1 2] [--steps N] --out docs/aux-suite-signal.md
    meta_signal.py --config YOURS.toml [--roles NAME=ROLE ...] [--seeds 0 1]
                   [--steps N] --out signal.md

At J = 0 (the default) phi's hypergradient is

    h = -d/dphi sum_k w_k(phi) c_k,   c_k = grad l_k(B_t) . v0,
    v0 = grad L_val(B_v) + gamma * grad |sum l - M(l)|(B_t),

with w_k = dM/dl_k the effective weights, so a meta step raises w_k where
c_k > 0 (to first order). c_k splits into the validation part
a_k = grad l_k . grad L_val and the gamma part b_k = gamma * grad l_k .
grad reg. This script runs scripts/meltr_replay.py's standalone `run` on
each task x seed and, inside every meta step, computes a_k, b_k and the
cosine between grad l_k(B_t) and grad L_val(B_v), in f64. It checks that
-d/dphi sum_k w_k (a_k + b_k) is the hypergradient the replay applies
(relative error printed; a mismatch stops the run), then writes, per task,
the means over seeds of each third of the run's meta steps. With
--config it does the same for your own TorchScript config (the public
algorithm as the replay runs it: raw losses, PyTorch's init, J = 0), the
loss roles as --roles names them.

An auxiliary that helps only through what it teaches the shared layers
over many steps shows no validation alignment in one step; the cosine
column says whether the one-step signal can tell the task's helpful
auxiliaries from its harmful ones at all.
"""
import argparse
import datetime
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aux_suite  # noqa: E402
import meltr_replay as replay  # noqa: E402
import torch  # noqa: E402

PHASES = ("first third", "middle third", "last third")
# Roles an auxiliary can have (the suite's, and `auxiliary` when unsaid).
ROLES = ("helpful", "harmful", "redundant", "scaled", "auxiliary")
# The runs are f64 (an f32 run's rounding on far-scale's x2000 loss reached
# 5e-3): the decomposition and the applied hypergradient agree to rounding;
# a term left out is off by order 1.
CONSISTENCY_TOLERANCE = 1e-6


def dot(a: List[torch.Tensor], b: List[torch.Tensor]) -> float:
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))


class SignalLog:
    """META_OBSERVER: one record per meta step, each loss's w, a, b and cosine."""

    def __init__(self) -> None:
        self.steps: List[List[Dict[str, float]]] = []
        self.worst_error = 0.0

    def __call__(self, m: replay.MetaInputs):
        grad_val = replay.grads(m.val_primary, m.theta, retain_graph=True)
        grad_reg = replay.grads(m.reg, m.theta, retain_graph=True)
        val_norm = dot(grad_val, grad_val) ** 0.5
        weights = replay.effective_weights(m.meltr, m.train_losses.detach())
        # +1 where sum l > M(l): the gamma part then pulls weights below 1 up.
        above = float(torch.sign(m.meltr.reference_sum(m.train_losses) - m.combined)) > 0
        rows = []
        for k in range(m.train_losses.shape[0]):
            grad_k = replay.grads(m.train_losses[k], m.theta, retain_graph=True)
            a, b = dot(grad_k, grad_val), m.gamma * dot(grad_k, grad_reg)
            norm = dot(grad_k, grad_k) ** 0.5
            rows.append({"w": float(weights[k]), "a": a, "b": b, "abs_a": abs(a), "abs_b": abs(b),
                         "above": float(above), "cos": a / (norm * val_norm) if norm * val_norm > 0 else 0.0})
        self.steps.append(rows)
        # The published split itself, a_k + b_k, must make the hypergradient.
        split = torch.tensor([r["a"] + r["b"] for r in rows], dtype=m.train_losses.dtype)
        expected = self.hypergradient_from(m, split)

        def compare(applied: List[torch.Tensor]) -> None:
            diff = sum(float((x - y).double().pow(2).sum()) for x, y in zip(applied, expected)) ** 0.5
            scale = max(sum(float(x.double().pow(2).sum()) for x in applied) ** 0.5, 1e-30)
            error = diff / scale
            # (not <=: a NaN fails too)
            if not error <= CONSISTENCY_TOLERANCE:
                raise SystemExit(f"meta step {len(self.steps)}: -d/dphi sum_k w_k (a_k + b_k) is {error:.2e} "
                                 "(relative) from the applied hypergradient: the split misses a term")
            self.worst_error = max(self.worst_error, error)
        return compare

    @staticmethod
    def hypergradient_from(m: replay.MetaInputs, c: torch.Tensor) -> List[torch.Tensor]:
        """-d/dphi sum_k w_k(phi) c_k, with w = dM/dl at the training losses."""
        phi = list(m.meltr.parameters())
        with torch.enable_grad():
            at = m.train_losses.detach().clone().requires_grad_(True)
            w = torch.autograd.grad(m.meltr(at), at, create_graph=True)[0]
            return [-g for g in replay.grads((w * c).sum(), phi)]


def suite_config(task: aux_suite.Task, suite: str, seed: int, steps: Optional[int], work: str) -> str:
    """The replay's config of a suite task's run (as aux_suite.py writes it)."""
    config = os.path.join(work, f"{task.name}-s{seed}.toml")
    job = aux_suite.Job(task, aux_suite.REPLAY, seed)
    aux_suite.write_toml(config, aux_suite.run_sections(job, suite, steps), f"meta_signal {task.name} seed {seed}")
    return config


def own_task(config: str, roles: List[str]) -> aux_suite.Task:
    """A task for a user's own TorchScript config: its losses in its order,
    roles from NAME=ROLE pairs (primary first; unnamed auxiliaries are
    "auxiliary")."""
    settings, _ = replay.load_settings(config)
    given = {}
    for pair in roles:
        name, sep, role = pair.partition("=")
        if not sep or name not in settings.loss_names[1:]:
            raise SystemExit(f"--roles {pair!r}: expected NAME=ROLE with NAME one of "
                             f"{', '.join(settings.loss_names[1:])} (the primary is workload.primary, "
                             f"{settings.loss_names[0]})")
        if role not in ROLES:
            raise SystemExit(f"--roles {pair!r}: ROLE is one of {', '.join(ROLES)}")
        given[name] = role
    names = settings.loss_names
    task_roles = {n: "primary" if i == 0 else given.get(n, "auxiliary") for i, n in enumerate(names)}
    stem = os.path.splitext(os.path.basename(config))[0]
    return aux_suite.Task(stem, f"`{config}`", None, None, task_roles, "")


def run_one(task: aux_suite.Task, config: str, seed: int, steps: Optional[int], work: str) -> dict:
    settings, _ = replay.load_settings(config)
    if settings.iterations != 0 or settings.gamma_direct:
        raise SystemExit(f"{config}: the decomposition is J = 0 without gamma_direct "
                         f"(aid.iterations = {settings.iterations}, meltr.gamma_direct = {settings.gamma_direct})")
    log = SignalLog()
    replay.META_OBSERVER = log
    try:
        replay.run(config, seed, steps, os.path.join(work, f"{task.name}-s{seed}.json"), 1, "f64", None)
    except replay.ReplayError as e:
        raise SystemExit(f"{config}: {e}") from None
    finally:
        replay.META_OBSERVER = None
    if len(log.steps) < len(PHASES):
        raise SystemExit(f"{task.name} seed {seed}: {len(log.steps)} meta steps; the report's thirds need at least "
                         f"{len(PHASES)} (more steps, or a smaller meltr.meta_every)")
    print(f"{task.name} seed {seed}: {len(log.steps)} meta steps, decomposition within "
          f"{log.worst_error:.1e} of the applied hypergradient", file=sys.stderr)
    return {"steps": log.steps, "worst_error": log.worst_error}


def phase_means(steps: List[List[Dict[str, float]]], k: int, key: str) -> List[float]:
    n = len(steps)
    bounds = [(0, n // 3), (n // 3, 2 * n // 3), (2 * n // 3, n)]
    return [statistics.fmean(s[k][key] for s in steps[lo:hi]) for lo, hi in bounds]


def cells(task: aux_suite.Task, runs: List[dict]) -> Dict[str, List[Dict[str, float]]]:
    """Loss -> per phase: w, a, b and cos, the means over the phase's meta
    steps, then over seeds."""
    out = {}
    for k, name in enumerate(task.roles):
        per_seed = {key: [phase_means(r["steps"], k, key) for r in runs]
                    for key in ("w", "a", "b", "abs_a", "abs_b", "above", "cos")}
        out[name] = [{key: statistics.fmean(seed[p] for seed in per_seed[key]) for key in per_seed}
                     for p in range(len(PHASES))]
    return out


def report(task: aux_suite.Task, table: Dict[str, List[Dict[str, float]]]) -> List[str]:
    out = [f"### {task.name}", "", task.summary, "",
           "| loss | role | phase | w | val part a | γ part b | cos(∇l_k, ∇L_val) |", "|---|---|---|---|---|---|---|"]
    for name, phases in table.items():
        for phase, c in zip(PHASES, phases):
            out.append(f"| {name} | {task.roles[name]} | {phase} | {c['w']:.3f} | {c['a']:+.4f} | {c['b']:+.4f}"
                       f" | {c['cos']:+.3f} |")
    out.append("")
    return out


def summary_rows(task: aux_suite.Task, table: Dict[str, List[Dict[str, float]]]) -> List[str]:
    """Per phase: the mean cosine of the helpful and of the harmful
    auxiliaries; how much larger the γ part is than the validation part
    (mean |b| over mean |a|, per meta step, over the auxiliaries but the
    badly scaled ones, whose scale alone sets theirs); the share of meta
    steps with Σl > M(l)."""
    def mean_of(role: str, p: int, key: str) -> Optional[float]:
        values = [table[n][p][key] for n, r in task.roles.items() if r == role]
        return statistics.fmean(values) if values else None

    rows = []
    fmt = (lambda v: "–" if v is None else f"{v:+.3f}")
    for p, phase in enumerate(PHASES):
        aux = [n for n, r in task.roles.items() if r not in ("primary", "scaled")]
        ratio = "–"
        if aux:
            mean_a = statistics.fmean(table[n][p]["abs_a"] for n in aux)
            ratio = f"{statistics.fmean(table[n][p]['abs_b'] for n in aux) / max(mean_a, 1e-300):.1f}"
        helpful, harmful = mean_of("helpful", p, "cos"), mean_of("harmful", p, "cos")
        above = table[next(iter(task.roles))][p]["above"]
        rows.append(f"| {task.name} | {phase} | {fmt(helpful)} | {fmt(harmful)} | {ratio} | {above:.0%} |")
    return rows


def commit() -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True).stdout
        return rev + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("--suite", help="a built suite (default: aux_suite.py's cached build)")
    parser.add_argument("--config", help="your own TorchScript config instead of the suite's tasks")
    parser.add_argument("--roles", nargs="+", default=[], metavar="NAME=ROLE",
                        help="with --config: each auxiliary's role, for the summary: one of "
                             + ", ".join(ROLES))
    parser.add_argument("--tasks", nargs="+", choices=[t.name for t in aux_suite.TASKS],
                        help="default: mixed many-aux sequence")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="default: each task's own (600)")
    parser.add_argument("--out", required=True, help="the markdown report")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.roles and not args.config:
        parser.error("--roles names the losses of --config")
    if args.config and (args.tasks or args.suite):
        parser.error("--config runs your config instead of the suite's tasks: leave out --tasks and --suite")
    args.tasks = args.tasks or ["mixed", "many-aux", "sequence"]
    said = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    lines = ["# What moves MELTR's weights: the meta step per loss", "",
             f"Written by `scripts/meta_signal.py {said}`; commit {commit()}, "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}.", "",
             "The public algorithm (scripts/meltr_replay.py, at J = 0), run in f64 (its weights differ in the "
             "last digits from an f32 `meltr_replay.py run` of the same seed). A meta step raises "
             "w_k where a_k + b_k > 0: a_k = ∇l_k(B_t)·∇L_val(B_v), the validation part; b_k = γ ∇l_k(B_t)·∇|Σl − M(l)|,"
             " the γ part. Each cell: the mean over the phase's meta steps, then over seeds. See the script's "
             "docstring for the derivation; every meta step was checked against the applied hypergradient.", ""]
    worst = 0.0
    summary = ["## Summary", "",
               "The cosines' means over a task's helpful and over its harmful auxiliaries; |γ part| / |val part|: "
               "the auxiliaries' mean |b_k| over their mean |a_k| (per meta step, the badly scaled ones left out: "
               "their scale alone sets it); Σl > M(l): the share of meta steps where it holds, where the γ part's own term "
               "pulls a weight below 1 up.", "",
               "| task | phase | helpful cos | harmful cos | \\|γ part\\| / \\|val part\\| | Σl > M(l) |",
               "|---|---|---|---|---|---|"]
    details = ["## Per loss", ""]
    with tempfile.TemporaryDirectory() as work:
        if args.config:
            jobs = [(own_task(args.config, args.roles), lambda seed: args.config)]
        else:
            suite = aux_suite.ensure_suite(args.suite)
            jobs = [(task, lambda seed, task=task: suite_config(task, suite, seed, args.steps, work))
                    for task in (aux_suite.TASK_BY_NAME[name] for name in args.tasks)]
        for task, config_of in jobs:
            runs = [run_one(task, config_of(seed), seed, args.steps, work) for seed in args.seeds]
            worst = max([worst] + [r["worst_error"] for r in runs])
            table = cells(task, runs)
            summary += summary_rows(task, table)
            details += report(task, table)
    lines += [f"Largest relative difference between the decomposition and the applied hypergradient: "
              f"{worst:.1e}.", ""] + summary + [""] + details
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
