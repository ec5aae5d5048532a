#!/usr/bin/env python3
"""The PyTorch loop a plain PyTorch user would write for a meltr-tui config.

Trains the TorchScript model of a `workload.kind = "torchscript"` config on
its data, as meltr-tui's engine would, but in an ordinary Python loop over
the same libtorch, and times it. scripts/side_by_side.py runs it next to
`meltr-tui run --headless` to compare the two.

Usage (from the repository root; `.torch-python` is the PyTorch that
meltr-tui links, see scripts/setup.sh):

    ./.torch-python scripts/torch_loop.py -c CONFIG.toml [--steps N] [--out times.json]
        [--optimizer default|foreach|fused] [--jit default|plain] [--phases]
    ./.torch-python scripts/torch_loop.py --check-trace SESSION_DIR [SESSION_DIR ...]

What it runs, per step t = 1..N (each step timed with time.perf_counter,
after torch.set_num_threads(train.threads); on CUDA with a synchronize):
  batch   the engine's batch: rows of a per-epoch permutation drawn with the
          engine's SplitMix64 Fisher-Yates (src/workload/torchscript.rs,
          src/nn/rng.rs), so both loops see the same batches in the same
          order; batch t is index_select of those rows from every tensor.
          (Only a new epoch's permutation, host-side Python, is computed
          outside the timed step, as a DataLoader's sampler would be.)
  sum / primary / weights
          out = model(batch); loss = sum / primary / Σ w_k l_k;
          opt.zero_grad(set_to_none=True); loss.backward();
          clip_grad_norm_(θ, train.grad_clip); opt.step()
          opt = torch.optim.AdamW(θ, train.lr, betas (0.9, 0.999), eps 1e-8,
          weight_decay = train.weight_decay): decoupled decay, as the
          engine's inner optimizer (src/nn/optim.rs, WeightDecay::Decoupled).
  meltr   scripts/meltr_replay.py's public algorithm (its Meltr, Trainer,
          hypergradient: AID with the exact double backward, Adam with
          coupled L2 for φ, clip_grad_norm_): the inner step on M_φ(l), then
          on steps t % meltr.meta_every == 0 the meta step. Its batches are
          the engine's picks: SplitMix(seed, 0x4d455441 ^ t), B_t then B_v,
          from the 10 batches before t (meltr.pool, meltr.val_source and
          meltr.train_batch honoured). aid.mode does not apply: the public
          algorithm always differentiates twice through the model (the
          engine's `factorized` is a different way to the same number).
          aid.max_growth defaults to the engine's 10.
  then    after the last step, outside the step times: evaluation over the
          validation batches (meltr_replay.evaluate) and a checkpoint
          (torch.save of the model's, MELTR's and the optimizers' state into a
          temporary folder), as the engine's run does at its end.

Options: --optimizer foreach|fused passes foreach=True / fused=True to the
inner AdamW (default: PyTorch's default implementation); --jit plain turns
off the TorchScript graph executor's optimization (what the engine does,
for exact forward-mode derivatives; default: PyTorch's default executor).

--phases (sum, primary, weights) also times each step's forward, backward,
clip and optimizer separately (synchronized at each boundary on CUDA) and
prints their medians over steps 2..N, beside `meltr-tui bench`'s phases.

Output (stdout, and --out as JSON): step_times_s (every step), median_step_s,
median_inner_step_s (steps without a meta step), median_meta_step_s, mean_step_s,
loop_s (sum of step times), setup_s (from the script's start, before
`import torch`, to the first step), final_s (evaluation and checkpoint),
whole_s (script start to the end: the process minus interpreter start-up).

--check-trace SESSION_DIR...: for each meltr-tui session run with train.trace =
true (any combiner), rebuilds the session's config.toml run here and checks
that this loop draws the engine's batch rows and meta picks step for step,
that its losses at step 1 match the engine's, and (sum / primary / weights)
that θ after the traced steps matches the engine's (f32: relative 1e-4).
Exits 0 when all match, 1 with the first differences otherwise.

Exit status: 0 on success, 2 on bad inputs (message on stderr).
"""

import time

_STARTED = time.perf_counter()  # before `import torch`: setup_s counts it

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import tomllib  # noqa: E402
import warnings  # noqa: E402
from collections import deque  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Dict, List, Optional, Tuple  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meltr_replay as replay  # noqa: E402
import safetensors_lite  # noqa: E402

RECENT_BATCHES = 10  # the engine's meta-batch pool (RECENT_BATCHES)
COMBINERS = ("primary", "sum", "weights", "meltr")
ENGINE_MAX_GROWTH = 10.0  # aid.max_growth's default in src/config.rs


class LoopError(Exception):
    """A problem with the inputs, said in the message."""


# --------------------------------------------------------------------------
# The engine's host-side random choices (src/nn/rng.rs)

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


class SplitMix:
    """SplitMix64 exactly as src/nn/rng.rs: new(seed, stream) mixes the
    stream into the seed and discards one output."""

    def __init__(self, seed: int, stream: int):
        self.state = (seed ^ (stream * _GOLDEN)) & _MASK
        self.next_u64()

    def next_u64(self) -> int:
        self.state = (self.state + _GOLDEN) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Uniform in 0..n."""
        return self.next_u64() % max(n, 1)


class EngineBatches:
    """Training batch rows as TorchScript::train_rows: batch `step` (1-based,
    as the engine calls it) is slice `step % per_epoch` of epoch
    `step // per_epoch`'s permutation (Fisher-Yates with SplitMix(seed,
    0x7453 + epoch))."""

    def __init__(self, samples: int, batch_size: int, seed: int, device: torch.device):
        self.samples, self.seed, self.device = samples, seed, device
        self.batch_size = min(batch_size, samples)
        self.per_epoch = max(samples // self.batch_size, 1)
        self.epoch: Optional[int] = None
        self.order: Optional[Tensor] = None

    def prepare(self, step: int) -> None:
        """Draws the epoch's permutation if `step` starts a new one (host-side
        work a sampler does; kept outside the timed step)."""
        epoch = step // self.per_epoch
        if epoch == self.epoch:
            return
        rng = SplitMix(self.seed, (0x7453 + epoch) & _MASK)
        order = list(range(self.samples))
        for i in range(self.samples - 1, 0, -1):
            j = rng.below(i + 1)
            order[i], order[j] = order[j], order[i]
        self.epoch, self.order = epoch, torch.tensor(order, dtype=torch.int64, device=self.device)

    def rows(self, step: int) -> Tensor:
        self.prepare(step)
        position = step % self.per_epoch
        return self.order.narrow(0, position * self.batch_size, self.batch_size)


def meta_picks(seed: int, step: int, pool_steps: List[int], current: int, val_source: str,
               train_batch: str, with_current: bool) -> Tuple[int, Optional[int]]:
    """(train step, val step or None for the held-out split) of step's meta
    step, as Trainer::meta_step and meta_pool: B_t's pick is drawn first
    (even when meltr.train_batch = "current" takes this step's batch), then
    B_v's."""
    pool = list(pool_steps)
    if with_current or not pool:
        pool.append(current)
        pool = pool[-RECENT_BATCHES:]
    rng = SplitMix(seed, 0x4D455441 ^ step)
    n = len(pool)
    train = pool[rng.below(n)]
    if train_batch == "current":
        train = current
    val = pool[rng.below(n)] if val_source == "recent" else None
    if val_source == "train-batch":
        val = train
    return train, val


# --------------------------------------------------------------------------
# Configuration


@dataclass
class Run:
    settings: replay.Settings  # the public algorithm's settings (all sections)
    combiner: str
    weights: Dict[str, float]
    seed: int
    threads: int
    device: torch.device
    dtype: torch.dtype
    aid_mode: str
    val_source: str
    train_batch: str
    pool: str
    notes: List[str] = field(default_factory=list)


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise LoopError(f"train.device = {spec!r} but this PyTorch sees no CUDA device")
    return torch.device(spec)


def load_run(path: str, steps: Optional[int]) -> Run:
    """The config's settings, read through meltr_replay.load_settings (on a
    copy whose paths are absolute and whose combiner reads `meltr`, since the
    replay accepts MELTR runs only)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise LoopError(f"config not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise LoopError(f"{path}: not valid TOML ({e})") from None
    workload = raw.get("workload", {})
    if workload.get("kind") != "torchscript":
        raise LoopError(f"{path}: workload.kind is {workload.get('kind')!r}; this loop runs `torchscript` workloads")
    combiner = raw.get("combiner", {}).get("kind", "meltr")
    if combiner not in COMBINERS:
        raise LoopError(f"{path}: combiner.kind = {combiner!r}; this loop runs {', '.join(COMBINERS)}")
    here = os.path.dirname(os.path.abspath(path))
    copy = json.loads(json.dumps(raw))
    for key in ("model", "train", "val"):
        if key in copy["workload"]:
            copy["workload"][key] = os.path.join(here, copy["workload"][key])
    copy.setdefault("combiner", {})["kind"] = "meltr"
    with tempfile.TemporaryDirectory() as directory:
        absolute = os.path.join(directory, "config.toml")
        with open(absolute, "w") as f:
            f.write(replay.toml_dumps(copy))
        try:
            settings, _ = replay.load_settings(absolute)
        except replay.ReplayError as e:
            raise LoopError(str(e).replace(absolute, path)) from None
    train, meltr, aid = raw.get("train", {}), raw.get("meltr", {}), raw.get("aid", {})
    if steps is not None:
        settings.steps = steps
    if settings.steps < 1:
        raise LoopError(f"nothing to run: {settings.steps} steps")
    if settings.max_growth is None:
        settings.max_growth = ENGINE_MAX_GROWTH
    dtypes = {"f32": torch.float32, "f64": torch.float64}
    if settings.dtype not in dtypes:
        raise LoopError(f"{path}: train.dtype must be f32 or f64, not {settings.dtype!r}")
    run = Run(
        settings=settings,
        combiner=combiner,
        weights={k: float(v) for k, v in raw.get("combiner", {}).get("weights", {}).items()},
        seed=int(workload.get("seed", 0)),
        threads=int(train.get("threads", 1)),
        device=resolve_device(train.get("device", "auto")),
        dtype=dtypes[settings.dtype],
        aid_mode=aid.get("mode", "factorized"),
        val_source=meltr.get("val_source", "recent"),
        train_batch=meltr.get("train_batch", "recent"),
        pool=meltr.get("pool", "previous"),
    )
    if combiner == "meltr":
        if run.aid_mode == "exact":
            run.notes.append("aid.mode = 'exact': this loop differentiates twice through the model, as the "
                             "public code does and as the engine's `exact` does")
        else:
            run.notes.append(f"aid.mode = {run.aid_mode!r} is the engine's way to the same hypergradient; this "
                             "loop takes the public code's (twice through the model, the engine's `exact`)")
        if meltr.get("init", "pytorch") != "pytorch":
            run.notes.append(f"meltr.init = {meltr['init']!r} is not replicated: MELTR starts from PyTorch's "
                             "default initialisation")
    return run


# --------------------------------------------------------------------------
# The model and its data on the run's device


class DeviceWorkload(replay.Workload):
    """meltr_replay's Workload (TorchScript model, safetensors data, the loss
    vector [primary, *auxiliary]) moved to a device; batches by index_select
    without the replay's host-side range check."""

    def __init__(self, settings: replay.Settings, dtype: torch.dtype, device: torch.device):
        super().__init__(settings, dtype)
        self.model.to(device)
        self.train = {n: t.to(device) for n, t in self.train.items()}
        self.val = {n: t.to(device) for n, t in self.val.items()}
        self.named_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.theta = [p for _, p in self.named_params]
        self.model.train()

    def rows(self, rows: Tensor, split: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        split = self.train if split is None else split
        return {name: t.index_select(0, rows.to(t.device)) for name, t in split.items()}


def adamw(params: List[Tensor], lr: float, weight_decay: float, implementation: str) -> torch.optim.AdamW:
    extra = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[implementation]
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay, **extra)


class PlainLoop:
    """primary / sum / weights: the textbook loop."""

    def __init__(self, run: Run, workload: DeviceWorkload, implementation: str):
        s = run.settings
        self.run, self.workload, self.s = run, workload, s
        # --phases: seconds per phase and step (None: not timed).
        self.phases: Optional[Dict[str, List[float]]] = None
        if run.combiner == "primary":
            self.terms = [(s.primary, 1.0)]
        elif run.combiner == "sum":
            self.terms = [(n, 1.0) for n in s.loss_names]
        else:  # weights: a loss not listed weighs 0
            self.terms = [(n, run.weights[n]) for n in s.loss_names if run.weights.get(n, 0.0) != 0.0]
        self.optimizer = adamw(workload.theta, s.lr, s.weight_decay, implementation)

    def mark(self, phase: str) -> None:
        """--phases: the time since the previous mark goes to `phase`."""
        if self.phases is None:
            return
        if self.run.device.type == "cuda":
            torch.cuda.synchronize(self.run.device)
        now = time.perf_counter()
        self.phases.setdefault(phase, []).append(now - self._last_mark)
        self._last_mark = now

    def step(self, t: int, batch: Dict[str, Tensor], meta) -> Tensor:
        self._last_mark = time.perf_counter()
        out = self.workload.model(batch)
        loss = None
        for n, w in self.terms:
            term = out[n] if w == 1.0 else out[n] * w
            loss = term if loss is None else loss + term
        self.mark("forward")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.mark("backward")
        torch.nn.utils.clip_grad_norm_(self.workload.theta, self.s.grad_clip)
        self.mark("clip")
        if self.s.lr_schedule != "constant":
            for group in self.optimizer.param_groups:
                group["lr"] = self.s.lr_at(t)
        self.optimizer.step()
        self.mark("optimizer")
        if t != 1:  # the loss vector only for --check-trace's first step
            return None
        return torch.stack([out[n] for n in self.s.loss_names]).detach()

    def state(self) -> dict:
        return {"model": self.workload.model.state_dict(), "optimizer": self.optimizer.state_dict()}


class MeltrLoop:
    """combiner.kind = "meltr": meltr_replay's Trainer (the public algorithm)."""

    def __init__(self, run: Run, workload: DeviceWorkload, implementation: str):
        s = run.settings
        torch.manual_seed(run.seed)  # the engine seeds libtorch before MELTR's init
        meltr = replay.Meltr(len(s.loss_names), s.d_model, s.d_hidden, s.d_ff, s.heads).to(run.dtype).to(run.device)
        self.trainer = replay.Trainer(workload, meltr, s)
        if implementation != "default":
            self.trainer.inner = adamw(workload.theta, s.lr, s.weight_decay, implementation)
        self.workload = workload

    def step(self, t: int, batch: Dict[str, Tensor], meta) -> Tensor:
        try:
            losses, _ = self.trainer.step(t, batch, meta)
        except replay.ReplayError as e:
            raise LoopError(str(e)) from None
        return losses

    def state(self) -> dict:
        tr = self.trainer
        return {"model": self.workload.model.state_dict(), "optimizer": tr.inner.state_dict(),
                "meltr": tr.meltr.state_dict(), "meta_optimizer": tr.meta.state_dict()}


# --------------------------------------------------------------------------
# The timed run


@dataclass
class Record:
    step_times: List[float]
    meta_steps: List[int]
    rows: List[List[int]]  # per step, when recorded
    picks: Dict[int, Tuple[int, Optional[int]]]
    first_losses: Optional[Tensor]
    loop: object
    first_step_at: float  # perf_counter before step 1


def train(run: Run, implementation: str, record_rows: bool = False, phases: bool = False) -> Record:
    s = run.settings
    workload = DeviceWorkload(s, run.dtype, run.device)
    # As the engine's inspection: one forward on the first rows, in train mode.
    samples = replay.Workload.samples(workload.train)
    outputs = set(workload.model(workload.rows(torch.arange(min(s.batch_size, samples)))))
    missing = [n for n in s.loss_names if n not in outputs]
    if missing:
        raise LoopError(f"the model's outputs {sorted(outputs)} lack the configured losses {missing}")
    loop = (MeltrLoop if run.combiner == "meltr" else PlainLoop)(run, workload, implementation)
    if phases:
        if not isinstance(loop, PlainLoop):
            raise LoopError("--phases times the plain loop's phases: use combiner.kind sum, primary or weights")
        loop.phases = {}
    batches = EngineBatches(samples, s.batch_size, run.seed, run.device)
    val_batches = max(replay.Workload.samples(workload.val) // batches.batch_size, 1)
    val_len = min(batches.batch_size, replay.Workload.samples(workload.val))
    cuda = run.device.type == "cuda"
    recent: deque = deque(maxlen=RECENT_BATCHES)  # (step, batch) of the steps before this one
    times, meta_steps, rows_log, picks = [], [], [], {}
    first_losses = None
    if cuda:
        torch.cuda.synchronize(run.device)
    first_step_at = time.perf_counter()
    for t in range(1, s.steps + 1):
        batches.prepare(t)
        started = time.perf_counter()
        rows = batches.rows(t)
        batch = workload.rows(rows)
        meta = None
        if run.combiner == "meltr" and t % s.meta_every == 0:
            pool = {step: b for step, b in recent}
            train_step, val_step = meta_picks(run.seed, t, list(pool), t, run.val_source, run.train_batch,
                                              run.pool == "with-current")
            pool[t] = batch
            if val_step is None:  # meltr.val_source = "val": the engine's val_batch(t)
                start = (t % val_batches) * val_len
                b_val = {n: x.narrow(0, start, val_len) for n, x in workload.val.items()}
            else:
                b_val = pool[val_step]
            meta = (pool[train_step], b_val)
            picks[t] = (train_step, val_step)
            meta_steps.append(t)
        losses = loop.step(t, batch, meta)
        if cuda:
            torch.cuda.synchronize(run.device)
        times.append(time.perf_counter() - started)
        recent.append((t, batch))
        if t == 1:
            first_losses = losses.detach().cpu()
        if record_rows:
            rows_log.append(rows.cpu().tolist())
    return Record(times, meta_steps, rows_log, picks, first_losses, loop, first_step_at)


def finish(run: Run, record: Record) -> float:
    """Evaluation and a checkpoint, as the engine's end of run; seconds."""
    started = time.perf_counter()
    loop = record.loop
    replay.evaluate(loop.workload, run.settings.batch_size)
    with tempfile.TemporaryDirectory() as directory:
        torch.save(loop.state(), os.path.join(directory, "checkpoint.pt"))
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    return time.perf_counter() - started


def median(values: List[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def timed(config: str, steps: Optional[int], out: Optional[str], implementation: str, jit: str,
          phases: bool = False) -> dict:
    run = load_run(config, steps)
    torch.set_num_threads(run.threads)
    if jit == "plain":
        torch._C._set_graph_executor_optimize(False)
    record = train(run, implementation, phases=phases)
    loop_s = sum(record.step_times)
    final_s = finish(run, record)
    meta = set(record.meta_steps)
    inner = [x for t, x in enumerate(record.step_times, 1) if t not in meta]
    with_meta = [x for t, x in enumerate(record.step_times, 1) if t in meta]
    s = run.settings
    summary = {
        "config": os.path.abspath(config),
        "combiner": run.combiner,
        "aid_mode": run.aid_mode if run.combiner == "meltr" else None,
        "aid_iterations": s.iterations if run.combiner == "meltr" else None,
        "meta_every": s.meta_every if run.combiner == "meltr" else None,
        "steps": s.steps,
        "batch_size": s.batch_size,
        "threads": run.threads,
        "device": str(run.device),
        "dtype": s.dtype,
        "optimizer": f"torch.optim.AdamW ({implementation})",
        "jit": jit,
        "batches": "engine (SplitMix64 per-epoch permutation, same rows per step)",
        "torch": torch.__version__,
        "median_step_s": median(record.step_times),
        "median_inner_step_s": median(inner),
        "median_meta_step_s": median(with_meta),
        "mean_step_s": loop_s / len(record.step_times),
        "loop_s": loop_s,
        "setup_s": record.first_step_at - _STARTED,
        "final_s": final_s,
        "whole_s": time.perf_counter() - _STARTED,
        "notes": run.notes,
        "step_times_s": record.step_times,
    }
    phase_ms = {}
    if phases:
        # Medians over steps 2.. (the first includes the executor's warm-up).
        phase_ms = {name: median(times[1:] or times) * 1e3 for name, times in record.loop.phases.items()}
        summary["phase_median_ms"] = phase_ms
    if out:
        with open(out, "w") as f:
            json.dump(summary, f, indent=1)

    def ms(x: Optional[float]) -> str:
        return "-" if x is None else f"{x * 1e3:.2f} ms"

    print(f"torch_loop: {run.combiner}"
          + (f" (J = {s.iterations}, meta_every {s.meta_every})" if run.combiner == "meltr" else "")
          + f", {s.steps} steps, batch {s.batch_size}, {run.threads} thread(s), {run.device}")
    print(f"  median step {ms(summary['median_step_s'])}  inner {ms(summary['median_inner_step_s'])}  "
          f"meta {ms(summary['median_meta_step_s'])}  mean {ms(summary['mean_step_s'])}")
    print(f"  loop {loop_s:.3f} s  setup {summary['setup_s']:.3f} s  end (eval + checkpoint) {final_s:.3f} s  "
          f"whole {summary['whole_s']:.3f} s")
    if phase_ms:
        print("  phases (median ms, synchronized at each boundary): "
              + " · ".join(f"{name} {value:.2f}" for name, value in phase_ms.items()))
    for note in run.notes:
        print(f"  note: {note}")
    return summary


# --------------------------------------------------------------------------
# --check-trace: same batches, same picks, same losses, same θ as the engine


def check_trace(session: str) -> int:
    config = os.path.join(session, "config.toml")
    steps_path = os.path.join(session, "trace", "steps.jsonl")
    if not os.path.exists(steps_path):
        raise LoopError(f"{steps_path} not found (run meltr-tui with train.trace = true)")
    entries = replay.read_steps(steps_path)
    if not entries:
        raise LoopError(f"{steps_path} holds no steps")
    last = entries[-1]["step"]
    run = load_run(config, last)
    torch.set_num_threads(run.threads)
    record = train(run, "default", record_rows=True)
    problems = []
    for entry in entries:
        t = entry["step"]
        if entry["rows"] != record.rows[t - 1]:
            problems.append(f"step {t}: rows differ: engine {entry['rows']}, here {record.rows[t - 1]}")
        meta = entry.get("meta")
        engine_pick = None if meta is None else (meta["train_step"], meta["val_step"])
        if engine_pick != record.picks.get(t):
            problems.append(f"step {t}: meta picks differ: engine {engine_pick}, here {record.picks.get(t)}")
    state_1 = safetensors_lite.read(os.path.join(session, "trace", "state-1.safetensors"))
    engine_losses = state_1["losses"].double()
    ours = record.first_losses.double()
    loss_err = float((ours - engine_losses).norm() / engine_losses.norm().clamp_min(1e-300))
    tolerance = 1e-5 if run.dtype == torch.float32 else 1e-12
    if not loss_err <= tolerance:
        problems.append(f"step 1 losses differ: engine {engine_losses.tolist()}, here {ours.tolist()} "
                        f"(rel {loss_err:.1e})")
    print(f"check-trace {os.path.basename(os.path.normpath(session))} ({run.combiner}): {len(entries)} steps, {len(record.picks)} meta steps; rows and meta picks "
          f"{'differ' if any('rows' in p or 'picks' in p for p in problems) else 'match'}; "
          f"step-1 losses rel err {loss_err:.1e}")
    if run.combiner != "meltr":
        state = safetensors_lite.read(os.path.join(session, "trace", f"state-{last}.safetensors"))
        workload = record.loop.workload
        worst, unchecked, touched = 0.0, [], _touched(record)
        for name, p in workload.named_params:
            key = workload.theta_keys[name]
            if name not in touched:
                unchecked.append(name)  # no gradient reached it here: nothing to compare
                continue
            engine = state[key].double()
            err = float((p.detach().cpu().double() - engine).norm() / engine.norm().clamp_min(1e-300))
            worst = max(worst, err)
        theta_tol = 1e-4 if run.dtype == torch.float32 else 1e-10
        print(f"  theta after step {last}: max rel err {worst:.1e} (tolerance {theta_tol:.0e})"
              + (f"; not compared (no gradient here): {', '.join(unchecked)}" if unchecked else ""))
        if not worst <= theta_tol:
            problems.append(f"theta after step {last} differs from the engine's by {worst:.1e} (relative)")
    for p in problems[:10]:
        print(f"  MISMATCH {p}")
    return 1 if problems else 0


def _touched(record: Record) -> set:
    """Names of parameters the optimizer updated (those with optimizer state)."""
    loop = record.loop
    optimizer = loop.optimizer if isinstance(loop, PlainLoop) else loop.trainer.inner
    params = {id(p) for p in optimizer.state}
    return {n for n, p in loop.workload.named_params if id(p) in params}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="A plain PyTorch training loop for a meltr-tui torchscript config, timed per step "
                    "(see the docstring at the top of this file).")
    parser.add_argument("-c", "--config", help="a meltr-tui config with workload.kind = \"torchscript\"")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--out", help="write the timings as JSON here")
    parser.add_argument("--optimizer", choices=["default", "foreach", "fused"], default="default",
                        help="torch.optim.AdamW's implementation (default: PyTorch's default)")
    parser.add_argument("--jit", choices=["default", "plain"], default="default",
                        help="TorchScript executor: PyTorch's default, or plain (optimization off, as the engine)")
    parser.add_argument("--phases", action="store_true",
                        help="also time forward, backward, clip and optimizer of each step (sum, primary, weights)")
    parser.add_argument("--check-trace", metavar="SESSION_DIR", nargs="+",
                        help="check batches, meta picks, losses (and θ for sum/primary/weights) against a "
                             "meltr-tui session run with train.trace = true")
    args = parser.parse_args(argv)
    try:
        if args.check_trace:
            return max(check_trace(session) for session in args.check_trace)
        if not args.config:
            parser.error("-c CONFIG is required (or --check-trace SESSION_DIR)")
        timed(args.config, args.steps, args.out, args.optimizer, args.jit, args.phases)
    except LoopError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
