#!/usr/bin/env python3
"""An auxiliary-learning suite: evaluates loss combiners on small tasks that
nobody tuned MELTR for.

    aux_suite.py build --out DIR
    aux_suite.py run [--suite DIR] [--binary PATH] [--seeds 0 1 2]
                     [--methods meltr sum primary uncertainty replay]
                     [--sessions DIR] [--out docs/aux-suite.md]
                     [--tasks ...] [--steps N] [--jobs 2] [--smoke]
    aux_suite.py report RUN.json [--out RUN.md]
    aux_suite.py variants BASE.json NAME=VARIANT.json[+MORE.json] ... --out TABLE.md

`build` writes one folder per task: `model.pt` (TorchScript,
`forward(batch: Dict[str, Tensor]) -> Dict[str, Tensor]`: 0-dim losses and
one `metric/<name>`, higher is better), `train.safetensors` and
`val.safetensors` (sample dimension first), `task.toml` (a meltr-tui config:
MELTR and AID left at the built-in defaults) and `task.json` (each loss's
role). `run` builds the suite on demand in
${MELTR_CACHE:-${XDG_CACHE_HOME:-~/.cache}/meltr-tui}/aux-suite (rebuilt
when VERSION changes) unless --suite names one, trains every task x seed x
method on one thread per run, and writes a markdown report and a JSON file
beside it with every run's numbers (`report` renders the markdown again
from that JSON). `variants` judges MELTR variants (`run --methods meltr
--set KEY=VALUE`) against a full run's other methods, one table row each
(docs/aux-suite-variants/README.md). `--smoke` is the CI subset. Methods: meltr-tui's
combiners (primary, sum, uncertainty, mlp, meltr); fixed weights from the
roles: `oracle` (1 on every loss except the harmful ones, which get 0) and
`harmful-only` (1 on the primary and the harmful ones); `replay`
(scripts/meltr_replay.py: the public MELTR algorithm in PyTorch).

The models: a shared trunk (input 48 -> 96, ReLU -> 32, ReLU; 16 wide in
few-labels) and one linear head per loss. Plain ops only (linear, relu,
logsumexp + gather cross-entropy, squared error): forward-mode AD and
double backward work through them. No dropout and no randomness in forward
(except in `sequence`, a GRU with dropout: another architecture, and
randomness that the engine and the replay seed alike): labels, masks,
corruptions and second views are in the data, drawn from a fixed data seed;
the initial model comes from a fixed model seed. A run's
seed changes the batch order and the combiner's initialisation. The inner
optimizer is Adam, so a head that only its own loss reaches learns at the
same speed whatever that loss's weight: the weights act through the shared
trunk, where the losses compete.

The data come from a "latent world": each sample has hidden causes z (8
numbers) that every label depends on, and nuisance factors u (16 numbers)
that none does; the input is x = z·A + u·B + noise (48 numbers; u weighs
1.5 times z in x). From a few hundred labels the model cannot tell z's
directions from u's and overfits; an auxiliary that also depends on z shows
the trunk which directions matter (helpful), while one whose targets are
random per sample makes the trunk memorise samples (harmful). Each task's
roles were checked with fixed weights against primary-only training (see
docs/aux-suite.md): helpful auxiliaries raise the primary metric, harmful
ones lower it.

The tasks (primary loss first):

  mixed        classify z into 4 regions (argmax of z·W), 256 samples.
               helpful: the signs of z's 8 numbers (8 two-way
               cross-entropies, summed); harmful: 8 random bits per sample,
               the same loss form and scale as helpful, so only the labels
               tell them apart; helpful_x50: regressing z, times 50. All
               three kinds at once, and a loss 50x the others' scale that a
               combiner must read correctly rather than by magnitude.
  far-scale    mixed with the latent regression times 2000 instead of 50
               (over 1000x the primary's loss at the start, as a
               reconstruction or count loss in its raw units can be):
               MELTR reads loss values, so this probes its input's scale.
  label-noise  the same primary on 1024 samples, 40% of the training labels
               replaced by another class (validation labels clean); the
               clean signs of z as the related auxiliary. Primary-only
               training memorises the wrong labels.
  few-labels   1024 samples, 5% of them labelled (the primary is a masked
               mean; a batch holds ~3 labels). cross_view, self-supervised
               on every sample: predict a second view of the sample (same
               z, fresh nuisance and noise) from the first. Its best
               prediction is z·A, so it teaches the trunk to keep z and drop
               u; it is useful only through the shared representation.
  many-aux     K = 10, 256 samples: helpful signs, z_first, z_last (z's
               first and last four numbers); redundant signs_copy (the same
               targets, its own head); harmful random_a (8 random bits, as
               signs), random_b (a random 8-way label) and random_regress
               (16 random targets, summed squared error); badly scaled
               z_x50 (z regression x50) and signs_x0_02 (signs x0.02).
  regression   y = w·z + 0.5·(v·z)² (w, v fixed) by squared error, 256
               samples; metric
               r2 = 1 − MSE/Var(y) (Var(y) a constant of the task).
               helpful: regress z; harmful: random targets per sample.
  sequence     256 sequences of 12 tokens (32 kinds); classify how many
               small tokens (the 8 lowest) a sequence holds: 0, 1, 2, 3+.
               Token embeddings, a GRU, dropout 0.1 on its outputs.
               helpful: tags, whether each position's token is small (the
               concept the count needs, per step of the GRU); harmful: a
               random 4-way class per sequence.

Why it is a fair test: nothing here shares data, sizes or loss shapes with
the video-text workload MELTR's defaults were chosen on; every method gets
the same model, data, optimizer, learning rate and steps; `primary` and
`sum` bracket the trivial choices and `oracle` shows what knowing the roles
is worth without any learning.
"""

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch import Tensor  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import safetensors_lite  # noqa: E402  (scripts/safetensors_lite.py)

# Bump when the tasks, data or models change: cached suites are rebuilt.
VERSION = 3
D_IN = 48
D_LATENT = 8
D_NUISANCE = 16
NOISE_TARGETS = 16
HIDDEN = 96
FEATURE = 32
BATCH = 64
DATA_SEED = 20230601
MODEL_SEED = 7
# How the engine's early-climb warning reads (src/engine/trainer/meta.rs).
EARLY_CLIMB = "has been negative since step"


# --------------------------------------------------------------- models ---
# Losses from elementary ops: forward-mode AD through their backward works.


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Per-sample negative log-likelihood (logsumexp + gather)."""
    log_probs = logits - torch.logsumexp(logits, -1, keepdim=True)
    return -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)


def mse(prediction: Tensor, target: Tensor) -> Tensor:
    return (prediction - target).pow(2).mean()


def signs_loss(logits: Tensor, signs: Tensor) -> Tensor:
    """Multi-label loss: `logits` [n, 2·D] predict D binary labels per sample
    (the signs of z's numbers, or random bits); a 2-way cross-entropy per
    label, summed, mean over samples."""
    return cross_entropy(logits.view(logits.shape[0], -1, 2), signs).sum(1).mean()


def accuracy(logits: Tensor, target: Tensor) -> Tensor:
    return (logits.argmax(-1) == target).to(logits.dtype).mean() * 100.0


class Trunk(nn.Module):
    """The shared part: input -> hidden (ReLU) -> feature (ReLU)."""

    def __init__(self, feature: int = FEATURE):
        super().__init__()
        self.hidden = nn.Linear(D_IN, HIDDEN)
        self.feature = nn.Linear(HIDDEN, feature)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.feature(torch.relu(self.hidden(x))))


class MixedModel(nn.Module):
    def __init__(self, scale: float = 50.0):
        super().__init__()
        # The latent regression's factor and the loss's name (helpful_x50).
        self.scale = scale
        self.scaled_name = f"helpful_x{scale:g}"
        self.trunk = Trunk()
        self.primary = nn.Linear(FEATURE, 4)
        self.signs = nn.Linear(FEATURE, 2 * D_LATENT)
        self.harmful = nn.Linear(FEATURE, 2 * D_LATENT)
        self.latent = nn.Linear(FEATURE, D_LATENT)

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        h = self.trunk(batch["x"])
        logits = self.primary(h)
        with torch.no_grad():
            acc = accuracy(logits, batch["y"])
        out = {
            "primary": cross_entropy(logits, batch["y"]).mean(),
            "helpful": signs_loss(self.signs(h), batch["signs"]),
            "harmful": signs_loss(self.harmful(h), batch["random_signs"]),
            "metric/accuracy": acc,
        }
        out[self.scaled_name] = self.scale * mse(self.latent(h), batch["z"])
        return out


class LabelNoiseModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = Trunk()
        self.primary = nn.Linear(FEATURE, 4)
        self.signs = nn.Linear(FEATURE, 2 * D_LATENT)

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        h = self.trunk(batch["x"])
        logits = self.primary(h)
        with torch.no_grad():
            acc = accuracy(logits, batch["y"])
        return {
            "primary": cross_entropy(logits, batch["y"]).mean(),
            "related": signs_loss(self.signs(h), batch["signs"]),
            "metric/accuracy": acc,
        }


class FewLabelsModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = Trunk(feature=16)
        self.primary = nn.Linear(16, 4)
        self.decoder = nn.Linear(16, D_IN)

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        x = batch["x"]
        h = self.trunk(x)
        logits = self.primary(h)
        # Mean over the labelled samples only (0 when a batch has none).
        labelled = batch["labelled"].to(x.dtype)
        primary = (cross_entropy(logits, batch["y"]) * labelled).sum() / labelled.sum().clamp(min=1.0)
        with torch.no_grad():
            acc = accuracy(logits, batch["y"])
        return {
            "primary": primary,
            "cross_view": mse(self.decoder(h), batch["x2"]),
            "metric/accuracy": acc,
        }


class ManyAuxModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = Trunk()
        self.primary = nn.Linear(FEATURE, 4)
        self.signs = nn.Linear(FEATURE, 2 * D_LATENT)
        self.latent = nn.Linear(FEATURE, D_LATENT)
        self.signs_copy = nn.Linear(FEATURE, 2 * D_LATENT)
        self.random_a = nn.Linear(FEATURE, 2 * D_LATENT)
        self.random_b = nn.Linear(FEATURE, 8)
        self.random_target = nn.Linear(FEATURE, NOISE_TARGETS)
        self.scaled_latent = nn.Linear(FEATURE, D_LATENT)
        self.scaled_signs = nn.Linear(FEATURE, 2 * D_LATENT)

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        h = self.trunk(batch["x"])
        logits = self.primary(h)
        z = batch["z"]
        half = z.shape[1] // 2
        latent = self.latent(h)
        with torch.no_grad():
            acc = accuracy(logits, batch["y"])
        return {
            "primary": cross_entropy(logits, batch["y"]).mean(),
            "signs": signs_loss(self.signs(h), batch["signs"]),
            "z_first": mse(latent[:, :half], z[:, :half]),
            "z_last": mse(latent[:, half:], z[:, half:]),
            "signs_copy": signs_loss(self.signs_copy(h), batch["signs"]),
            "random_a": signs_loss(self.random_a(h), batch["random_signs"]),
            "random_b": cross_entropy(self.random_b(h), batch["random_class"]).mean(),
            "random_regress": (self.random_target(h) - batch["noise_target"]).pow(2).sum(1).mean(),
            "z_x50": 50.0 * mse(self.scaled_latent(h), z),
            "signs_x0_02": 0.02 * signs_loss(self.scaled_signs(h), batch["signs"]),
            "metric/accuracy": acc,
        }


class SequenceModel(nn.Module):
    """Another architecture, with randomness inside forward: token
    embeddings, a GRU, dropout 0.1 on its outputs, one linear head per loss.
    meltr-tui seeds each forward's dropout from (seed, step, which forward)
    and the replay draws the same masks."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(SEQ_VOCAB, 16)
        self.gru = nn.GRU(16, FEATURE, batch_first=True)
        self.drop = nn.Dropout(0.1)
        self.primary = nn.Linear(FEATURE, 4)
        self.tags = nn.Linear(FEATURE, 2)
        self.random = nn.Linear(FEATURE, 4)

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        steps, last = self.gru(self.embed(batch["tokens"]))
        steps, h = self.drop(steps), self.drop(last[0])
        logits = self.primary(h)
        with torch.no_grad():
            acc = accuracy(logits, batch["y"])
        return {
            "primary": cross_entropy(logits, batch["y"]).mean(),
            "tags": cross_entropy(self.tags(steps), batch["small"]).mean(),
            "random": cross_entropy(self.random(h), batch["random_class"]).mean(),
            "metric/accuracy": acc,
        }


class RegressionModel(nn.Module):
    def __init__(self, target_variance: float):
        super().__init__()
        self.trunk = Trunk()
        self.primary = nn.Linear(FEATURE, 1)
        self.latent = nn.Linear(FEATURE, D_LATENT)
        self.harmful = nn.Linear(FEATURE, NOISE_TARGETS)
        self.target_variance = target_variance

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        h = self.trunk(batch["x"])
        primary = mse(self.primary(h).squeeze(-1), batch["y"])
        with torch.no_grad():
            r2 = 1.0 - primary / self.target_variance
        return {
            "primary": primary,
            "latent": mse(self.latent(h), batch["z"]),
            "harmful": mse(self.harmful(h), batch["noise_target"]),
            "metric/r2": r2,
        }


# ----------------------------------------------------------------- data ---


class World:
    """The latent world: fixed mixing and label directions drawn from
    `seed`; samples drawn from the generator passed to `sample`.

    x = z·A + u·B + noise·ε: z (8 numbers) is what the labels depend on;
    u (16 numbers, 1.5 times z's scale in x by default) are nuisance
    factors no label depends on. From few labels a model cannot tell the
    two apart; an auxiliary that depends on z shows the trunk which input
    directions matter."""

    def __init__(self, seed: int, noise: float = 0.2, nuisance: float = 3.0):
        g = torch.Generator().manual_seed(seed)
        self.mixing = 2.0 * unit_rows(torch.randn(D_LATENT, D_IN, generator=g))
        self.nuisance = nuisance * unit_rows(torch.randn(D_NUISANCE, D_IN, generator=g))
        self.noise = noise
        self.w_primary = torch.randn(D_LATENT, 4, generator=g)
        self.w_regress = torch.randn(D_LATENT, generator=g) / math.sqrt(D_LATENT)
        self.v_regress = torch.randn(D_LATENT, generator=g) / math.sqrt(D_LATENT)

    def view(self, z: Tensor, g: torch.Generator) -> Tensor:
        """An input for latent causes z, with fresh nuisance and noise."""
        n = z.shape[0]
        u = torch.randn(n, D_NUISANCE, generator=g)
        return z @ self.mixing + u @ self.nuisance + self.noise * torch.randn(n, D_IN, generator=g)

    def sample(self, n: int, g: torch.Generator) -> Dict[str, Tensor]:
        """Every field any task uses; tasks keep the ones they need."""
        z = torch.randn(n, D_LATENT, generator=g)
        return {
            "x": self.view(z, g),
            "z": z,
            "y": (z @ self.w_primary).argmax(1),
            "signs": (z > 0).long(),
            # Per-sample random targets: nothing to learn but the sample.
            "random_signs": torch.randint(0, 2, (n, D_LATENT), generator=g),
            "random_class": torch.randint(0, 8, (n,), generator=g),
            "noise_target": torch.randn(n, NOISE_TARGETS, generator=g),
        }

    def regression_target(self, z: Tensor) -> Tensor:
        return z @ self.w_regress + 0.5 * (z @ self.v_regress).pow(2)


def unit_rows(m: Tensor) -> Tensor:
    return m / m.norm(dim=1, keepdim=True)


def corrupt(labels: Tensor, fraction: float, classes: int, g: torch.Generator) -> Tensor:
    """Replaces `fraction` of the labels by a different class, uniformly."""
    flip = torch.rand(labels.shape, generator=g) < fraction
    shift = torch.randint(1, classes, labels.shape, generator=g)
    return torch.where(flip, (labels + shift) % classes, labels)


def keep(split: Dict[str, Tensor], names: List[str]) -> Dict[str, Tensor]:
    return {name: split[name].contiguous() for name in names}


Splits = Tuple[Dict[str, Tensor], Dict[str, Tensor]]
VAL_SAMPLES = 1024  # a multiple of the batch size: every sample is evaluated


def mixed_data(g: torch.Generator) -> Splits:
    world = World(DATA_SEED + 1)
    names = ["x", "y", "signs", "z", "random_signs"]
    return keep(world.sample(256, g), names), keep(world.sample(VAL_SAMPLES, g), names)


def label_noise_data(g: torch.Generator) -> Splits:
    world = World(DATA_SEED + 2)
    train, val = world.sample(1024, g), world.sample(VAL_SAMPLES, g)
    train["y"] = corrupt(train["y"], 0.4, 4, g)
    return keep(train, ["x", "y", "signs"]), keep(val, ["x", "y", "signs"])


def few_labels_data(g: torch.Generator) -> Splits:
    world = World(DATA_SEED + 3)
    splits = []
    for n in (1024, VAL_SAMPLES):
        split = world.sample(n, g)
        split["x2"] = world.view(split["z"], g)
        splits.append(split)
    train, val = splits
    train["labelled"] = torch.rand(train["y"].shape, generator=g) < 0.05
    val["labelled"] = torch.ones(val["y"].shape, dtype=torch.bool)
    names = ["x", "x2", "y", "labelled"]
    return keep(train, names), keep(val, names)


def many_aux_data(g: torch.Generator) -> Splits:
    world = World(DATA_SEED + 4)
    names = ["x", "y", "signs", "z", "random_signs", "random_class", "noise_target"]
    return keep(world.sample(256, g), names), keep(world.sample(VAL_SAMPLES, g), names)


REGRESSION_WORLD = World(DATA_SEED + 5)


def regression_variance() -> float:
    """Var(y) over a large sample: the r2 metric's denominator, a constant
    so that r2 averaged over validation batches is 1 − mean MSE / Var(y)."""
    z = torch.randn(200_000, D_LATENT, generator=torch.Generator().manual_seed(1))
    return float(REGRESSION_WORLD.regression_target(z).var())


def regression_data(g: torch.Generator) -> Splits:
    splits = []
    for n in (256, VAL_SAMPLES):
        split = REGRESSION_WORLD.sample(n, g)
        split["y"] = REGRESSION_WORLD.regression_target(split["z"])
        splits.append(keep(split, ["x", "y", "z", "noise_target"]))
    return splits[0], splits[1]


SEQ_VOCAB = 32
SEQ_LENGTH = 12
SEQ_SMALL = 8  # tokens below this are "small"


def sequence_data(g: torch.Generator) -> Splits:
    """Token sequences; the primary label is how many small tokens a
    sequence holds (0, 1, 2, or 3 and more), `small` tags each position."""
    splits = []
    for n in (256, VAL_SAMPLES):
        tokens = torch.randint(0, SEQ_VOCAB, (n, SEQ_LENGTH), generator=g)
        small = (tokens < SEQ_SMALL).long()
        splits.append({
            "tokens": tokens,
            "small": small,
            "y": small.sum(1).clamp(max=3),
            "random_class": torch.randint(0, 4, (n,), generator=g),
        })
    return splits[0], splits[1]


# ---------------------------------------------------------------- tasks ---


class Task(NamedTuple):
    name: str
    summary: str
    model: Callable[[], nn.Module]
    # (train, val) from a generator seeded with the data seed.
    data: Callable[[torch.Generator], Splits]
    # Loss name -> role (primary | helpful | harmful | redundant | scaled),
    # primary first, in the config's order.
    roles: Dict[str, str]
    metric: str
    steps: int = 600
    lr: float = 1e-3


TASKS = [
    Task(
        "mixed",
        "256 samples; helpful latent signs, harmful random bits, latent regression x50",
        MixedModel,
        mixed_data,
        {"primary": "primary", "helpful": "helpful", "harmful": "harmful", "helpful_x50": "scaled"},
        "accuracy",
    ),
    Task(
        "far-scale",
        "mixed with the latent regression x2000: an auxiliary loss far larger than the primary",
        lambda: MixedModel(2000.0),
        mixed_data,
        {"primary": "primary", "helpful": "helpful", "harmful": "harmful", "helpful_x2000": "scaled"},
        "accuracy",
    ),
    Task(
        "label-noise",
        "1024 samples, 40% of the primary's training labels wrong; clean latent signs",
        LabelNoiseModel,
        label_noise_data,
        {"primary": "primary", "related": "helpful"},
        "accuracy",
    ),
    Task(
        "few-labels",
        "1024 samples, 5% labelled; self-supervised cross-view prediction on all",
        FewLabelsModel,
        few_labels_data,
        {"primary": "primary", "cross_view": "helpful"},
        "accuracy",
    ),
    Task(
        "many-aux",
        "256 samples, K=10: 3 helpful, 1 redundant, 3 harmful, 2 badly scaled",
        ManyAuxModel,
        many_aux_data,
        {
            "primary": "primary",
            "signs": "helpful",
            "z_first": "helpful",
            "z_last": "helpful",
            "signs_copy": "redundant",
            "random_a": "harmful",
            "random_b": "harmful",
            "random_regress": "harmful",
            "z_x50": "scaled",
            "signs_x0_02": "scaled",
        },
        "accuracy",
    ),
    Task(
        "regression",
        "256 samples, MSE primary (r2); helpful latent regression, harmful random targets",
        lambda: RegressionModel(regression_variance()),
        regression_data,
        {"primary": "primary", "latent": "helpful", "harmful": "harmful"},
        "r2",
    ),
    Task(
        "sequence",
        "256 token sequences, GRU with dropout 0.1; helpful per-token tags, harmful random classes",
        SequenceModel,
        sequence_data,
        {"primary": "primary", "tags": "helpful", "random": "harmful"},
        "accuracy",
    ),
]
TASK_BY_NAME = {task.name: task for task in TASKS}


# ---------------------------------------------------------------- build ---


def default_cache() -> str:
    """${MELTR_CACHE:-${XDG_CACHE_HOME:-~/.cache}/meltr-tui}/aux-suite."""
    base = os.environ.get("MELTR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "meltr-tui"
    )
    return os.path.join(base, "aux-suite")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum()
    return key if bare else json.dumps(key)


def write_toml(path: str, sections: Dict[str, Dict[str, object]], comment: str = "") -> None:
    """`sections`: {"workload": {...}, "combiner.weights": {...}, ...}."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    lines = [f"# {line}" for line in comment.splitlines()]
    for section, values in sections.items():
        lines += ["", f"[{section}]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in values.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines).lstrip("\n") + "\n")


def task_config(task: Task, folder: str = "", seed: int = 0, steps: Optional[int] = None) -> Dict[str, Dict[str, object]]:
    """The meltr-tui config of `task`: data paths inside `folder` (relative
    when it is empty), MELTR and AID left at their built-in defaults."""
    steps = steps or task.steps
    losses = list(task.roles)
    return {
        "workload": {
            "kind": "torchscript",
            "model": os.path.join(folder, "model.pt"),
            "train": os.path.join(folder, "train.safetensors"),
            "val": os.path.join(folder, "val.safetensors"),
            "primary": losses[0],
            "auxiliary": losses[1:],
            "batch_size": BATCH,
            "seed": seed,
        },
        "train": {
            "device": "cpu",
            "steps": steps,
            "lr": task.lr,
            "eval_every": steps,
            "checkpoint_every": steps,
            "log_every": 10,
        },
        "combiner": {"kind": "meltr"},
    }


def check_model(task: Task, module: torch.jit.ScriptModule, train: Dict[str, Tensor]) -> None:
    """The contract meltr-tui relies on, checked on one batch: exactly the
    task's losses (0-dim, differentiable) and its one metric; double
    backward through the primary works."""
    out = module({name: t[:BATCH] for name, t in train.items()})
    losses = sorted(k for k in out if not k.startswith("metric/"))
    metrics = sorted(k for k in out if k.startswith("metric/"))
    if losses != sorted(task.roles) or metrics != [f"metric/{task.metric}"]:
        raise AssertionError(f"{task.name}: forward returned {sorted(out)}")
    for name in losses:
        if out[name].dim() != 0 or not out[name].requires_grad:
            raise AssertionError(f"{task.name}: loss {name} is not a differentiable 0-dim tensor")
    params = list(module.parameters())
    grads = torch.autograd.grad(out["primary"], params, create_graph=True, allow_unused=True)
    squared_norm = sum(g.pow(2).sum() for g in grads if g is not None)
    torch.autograd.grad(squared_norm, params, allow_unused=True)


def build_task(task: Task, folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(MODEL_SEED)
    module = torch.jit.script(task.model())
    train, val = task.data(torch.Generator().manual_seed(DATA_SEED))
    check_model(task, module, train)
    module.save(os.path.join(folder, "model.pt"))
    safetensors_lite.write(os.path.join(folder, "train.safetensors"), train)
    safetensors_lite.write(os.path.join(folder, "val.safetensors"), val)
    comment = f"aux-suite task `{task.name}`: {task.summary}\nwritten by scripts/aux_suite.py (version {VERSION})"
    write_toml(os.path.join(folder, "task.toml"), task_config(task), comment)
    info = {"name": task.name, "summary": task.summary, "roles": task.roles, "metric": task.metric,
            "train_samples": len(next(iter(train.values()))), "val_samples": len(next(iter(val.values()))),
            "version": VERSION}
    with open(os.path.join(folder, "task.json"), "w") as f:
        json.dump(info, f, indent=1)


def build_suite(out: str) -> None:
    """Writes every task into a fresh folder next to `out`, then renames it
    over `out` (a reader never sees half a suite)."""
    out = os.path.abspath(out)
    if os.path.isdir(out) and os.listdir(out) and suite_version(out) is None:
        sys.exit(f"aux-suite: {out} is not empty and holds no suite (suite.json): not replacing it")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".aux-suite-", dir=parent)
    os.chmod(staging, 0o755)
    for task in TASKS:
        build_task(task, os.path.join(staging, task.name))
    with open(os.path.join(staging, "suite.json"), "w") as f:
        json.dump({"version": VERSION, "torch": torch.__version__, "tasks": [t.name for t in TASKS]}, f, indent=1)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.replace(staging, out)
    print(f"aux-suite: built {len(TASKS)} tasks (version {VERSION}) in {out}", file=sys.stderr)


def suite_version(folder: str) -> Optional[int]:
    try:
        with open(os.path.join(folder, "suite.json")) as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


def ensure_suite(folder: Optional[str]) -> str:
    """`folder` as given (it must hold a suite), or the cached suite, built
    when missing or written by another version of this script."""
    if folder:
        if suite_version(folder) is None:
            sys.exit(f"aux-suite: {folder} holds no suite (suite.json); build it with `build --out {folder}`")
        return os.path.abspath(folder)
    folder = default_cache()
    if suite_version(folder) != VERSION:
        build_suite(folder)
    return folder


# ------------------------------------------------------------------ run ---

ENGINE_METHODS = ["primary", "sum", "uncertainty", "mlp", "meltr"]
# Fixed-weight methods (combiner kind "weights"), from the roles: which
# losses get weight 1 (the rest 0). `oracle` knows which auxiliaries are
# harmful; `harmful-only` checks that they are.
FIXED = {
    "oracle": lambda role: role != "harmful",
    "harmful-only": lambda role: role in ("primary", "harmful"),
}
REPLAY = "replay"  # scripts/meltr_replay.py: the public algorithm in PyTorch
REPLAY_SCRIPT = os.path.join(HERE, "meltr_replay.py")
# Run configs, logs and replay outputs, beside the sessions (meltr-tui
# lists only folders with a session.json).
WORK = ".aux-suite"
WEIGHT_WINDOW = 10  # final effective weights: mean of the last 10 train lines
# The CI subset: ~1 minute on 2 idle cores (each task's full steps: with
# fewer, sum has not yet overtaken primary and the numbers mean little).
SMOKE = {"tasks": ["mixed", "few-labels"], "seeds": [0, 1, 2], "methods": ["meltr", "sum", "primary"], "steps": None}


class Job(NamedTuple):
    task: Task
    method: str
    seed: int


def run_sections(job: Job, suite: str, steps: Optional[int]) -> Dict[str, Dict[str, object]]:
    """The config of one run: absolute paths, the run's seed and method, one thread."""
    sections = task_config(job.task, os.path.join(suite, job.task.name), job.seed, steps)
    sections["train"]["threads"] = 1
    if job.method in FIXED:
        sections["combiner"] = {"kind": "weights"}
        chosen = FIXED[job.method]
        sections["combiner.weights"] = {name: 1.0 if chosen(role) else 0.0 for name, role in job.task.roles.items()}
    elif job.method != REPLAY:
        sections["combiner"] = {"kind": job.method}
    return sections


def read_jsonl(path: str) -> List[dict]:
    """The lines of a metrics log; a truncated last line is skipped."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
    return rows


def find_session(sessions: str, name: str) -> Optional[str]:
    for entry in sorted(os.listdir(sessions)):
        try:
            with open(os.path.join(sessions, entry, "session.json")) as f:
                if json.load(f).get("name") == name:
                    return os.path.join(sessions, entry)
        except (OSError, ValueError):
            continue
    return None


def mean_weights(rows: List[Dict[str, float]]) -> Dict[str, float]:
    return {name: statistics.fmean(r[name] for r in rows) for name in rows[0]} if rows else {}


def summarize_metrics(task: Task, rows: List[dict]) -> dict:
    """What the report needs from a session's metrics.jsonl."""
    train = [r for r in rows if r.get("kind") == "train" and r.get("weights")]
    evals = [r for r in rows if r.get("kind") == "eval" and task.metric in r.get("metrics", {})]
    events = [r for r in rows if r.get("kind") == "event" and r.get("level") in ("warn", "error")]
    primary = next(iter(task.roles))
    result = {
        "metric": evals[-1]["metrics"][task.metric] if evals else None,
        "weights": mean_weights([r["weights"] for r in train[-WEIGHT_WINDOW:]]),
        "primary_weight_start": train[0]["weights"][primary] if train else None,
        "primary_weight_min": min(r["weights"][primary] for r in train) if train else None,
        "collapse_events": [e["message"] for e in events if "collapse" in e.get("message", "").lower()],
        "warnings": [e["message"] for e in events],
    }
    if not evals:
        result["error"] = "no eval line with the metric"
    return result


def run_engine(job: Job, suite: str, binary: str, sessions: str, steps: Optional[int], tag: str,
               overrides: List[str]) -> dict:
    name = f"aux-{job.task.name}-{job.method}-s{job.seed}-{tag}"
    config = os.path.join(sessions, WORK, "configs", name + ".toml")
    write_toml(config, run_sections(job, suite, steps), f"aux-suite run {name}")
    log = os.path.join(sessions, WORK, "logs", name + ".log")
    command = [binary, "--sessions-dir", sessions, "run", "--headless", "-n", name, "-c", config]
    for override in overrides:
        command += ["--set", override]
    seconds, cpu, rc = timed(command, log)
    session = find_session(sessions, name)
    if session is None or not os.path.exists(os.path.join(session, "metrics.jsonl")):
        return {"status": "failed", "seconds": seconds, "cpu_seconds": cpu,
                "error": f"exit {rc}, no session: {tail(log)}", "log": log}
    result = summarize_metrics(job.task, read_jsonl(os.path.join(session, "metrics.jsonl")))
    result.update(seconds=seconds, cpu_seconds=cpu, session=session, log=log)
    failed = rc != 0 or "error" in result
    result["status"] = "failed" if failed else "ok"
    if failed:
        result["error"] = f"exit {rc}: {result.get('error') or tail(log)}"
    return result


def run_replay(job: Job, suite: str, python: str, sessions: str, steps: Optional[int], tag: str) -> dict:
    name = f"aux-{job.task.name}-replay-s{job.seed}-{tag}"
    config = os.path.join(sessions, WORK, "configs", name + ".toml")
    write_toml(config, run_sections(job, suite, steps), f"aux-suite replay {name}")
    out = os.path.join(sessions, WORK, "replay", name + ".json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    log = os.path.join(sessions, WORK, "logs", name + ".log")
    command = [python, REPLAY_SCRIPT, "run", config, "--seed", str(job.seed), "--out", out, "--threads", "1"]
    if steps:
        command += ["--steps", str(steps)]
    seconds, cpu, rc = timed(command, log)
    try:
        with open(out) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return {"status": "failed", "seconds": seconds, "cpu_seconds": cpu, "error": f"exit {rc}: {tail(log)}", "log": log}
    metric = summary.get("metrics", {}).get(job.task.metric)
    result = {
        "status": "ok" if rc == 0 and metric is not None else "failed",
        "metric": metric,
        "weights": summary.get("weights", {}),
        "primary_weight_start": summary.get("primary_weight_start"),
        "primary_weight_min": None,
        "collapse_events": [],
        "warnings": [],
        "seconds": seconds,
        "cpu_seconds": cpu,
        "log": log,
        "output": out,
    }
    if result["status"] != "ok":
        result["error"] = f"exit {rc}, metric {job.task.metric!r}: {metric}: {tail(log)}"
    return result


def timed(command: List[str], log: str) -> Tuple[float, float, int]:
    """Runs `command` on one thread, output to `log`: (wall seconds, CPU
    seconds of the process, exit code). CPU time is what to compare on a
    busy machine."""
    os.makedirs(os.path.dirname(log), exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    started = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, proc.returncode


def tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def run_all(jobs: List[Job], args: argparse.Namespace, suite: str) -> List[dict]:
    """Every job, `args.jobs` at a time; one progress line per finished run."""
    tag = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")

    def one(job: Job) -> dict:
        if job.method == REPLAY:
            result = run_replay(job, suite, args.python, args.sessions, args.steps, tag)
        else:
            result = run_engine(job, suite, args.binary, args.sessions, args.steps, tag, args.set or [])
        return {"task": job.task.name, "method": job.method, "seed": job.seed, **result}

    records = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(one, job) for job in jobs]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            r = future.result()
            records.append(r)
            value = f"FAILED: {r.get('error')}" if r["status"] != "ok" else f"metric={r.get('metric')}"
            print(f"[{done}/{len(jobs)}] {r['task']} {r['method']} seed {r['seed']}: {value}"
                  f" ({r['seconds']:.1f} s, CPU {r['cpu_seconds']:.1f} s)",
                  file=sys.stderr, flush=True)
    order = {(j.task.name, j.method, j.seed): i for i, j in enumerate(jobs)}
    return sorted(records, key=lambda r: order[(r["task"], r["method"], r["seed"])])


# --------------------------------------------------------------- report ---


def stats(values: List[Optional[float]]) -> dict:
    """Mean and sample standard deviation over the finite values."""
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return {"mean": None, "std": None, "n": 0, "min": None, "max": None}
    std = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return {"mean": statistics.fmean(xs), "std": std, "n": len(xs), "min": min(xs), "max": max(xs)}


def cell(records: List[dict], task: str, method: str) -> List[dict]:
    return [r for r in records if r["task"] == task and r["method"] == method and r["status"] == "ok"]


def aggregate(records: List[dict], tasks: List[Task], methods: List[str]) -> dict:
    """{task: {method: metric stats, seconds, mean final weights}}."""
    table = {}
    for task in tasks:
        table[task.name] = {}
        for method in methods:
            runs = cell(records, task.name, method)
            weights = {name: stats([r["weights"].get(name) for r in runs]) for name in task.roles}
            table[task.name][method] = {
                "metric": stats([r["metric"] for r in runs]),
                "seconds": stats([r["seconds"] for r in runs]),
                "cpu_seconds": stats([r["cpu_seconds"] for r in runs]),
                "weights": {name: s["mean"] for name, s in weights.items()},
            }
    return table


def harmful_ranks(task: Task, weights: Dict[str, Optional[float]]) -> Dict[str, str]:
    """Rank of each harmful auxiliary among the auxiliaries by final weight
    (1 = the largest weight)."""
    aux = [n for n in task.roles if task.roles[n] != "primary" and weights.get(n) is not None]
    order = sorted(aux, key=lambda n: -weights[n])
    return {n: f"{order.index(n) + 1}/{len(aux)}" for n in aux if task.roles[n] == "harmful"}


def collapse_check(run: dict) -> str:
    """ok when the primary's final weight stays above 0.1x its first logged
    weight (n/a when that start is not positive: PyTorch's default init
    starts MELTR near 0, either sign). Flagged too: a final primary weight
    below 0.1 (a tenth of its weight under `sum`), whatever the start."""
    start, final = run.get("primary_weight_start"), run["weights"].get("primary")
    if start is None or final is None:
        return "n/a"
    if start <= 0:
        verdict = f"n/a (start {start:.3g})"
    elif final > 0.1 * start:
        verdict = "ok"
    else:
        verdict = f"COLLAPSED ({start:.3g} -> {final:.3g})"
    if final < 0.1 and not verdict.startswith("COLLAPSED"):
        verdict += f", LOW final {final:.3g}"
    return verdict


def summarize(records: List[dict], tasks: List[Task], methods: List[str], table: dict) -> dict:
    summary = {}
    for task in tasks:
        row = table[task.name]
        means = {m: row[m]["metric"]["mean"] for m in methods if row[m]["metric"]["mean"] is not None}
        entry = {}
        if "sum" in means and "primary" in means:
            entry["sum_minus_primary"] = means["sum"] - means["primary"]
        meltr = means.get("meltr")
        if meltr is not None and "sum" in means:
            spread = max(means.values()) - min(means.values())
            entry["meltr_minus_sum"] = meltr - means["sum"]
            entry["meltr_minus_sum_normalized"] = (meltr - means["sum"]) / spread if spread > 0 else 0.0
            # Its standard error over seeds (Welch: the two means' errors
            # add), so a score near 0 can be told from a tie.
            m, s = row["meltr"]["metric"], row["sum"]["metric"]
            se = math.sqrt(m["std"] ** 2 / m["n"] + s["std"] ** 2 / s["n"])
            entry["meltr_minus_sum_normalized_se"] = se / spread if spread > 0 else 0.0
        if meltr is not None and "primary" in means:
            entry["meltr_minus_primary"] = meltr - means["primary"]
            entry["meltr_ge_primary"] = meltr >= means["primary"]
        if meltr is not None and REPLAY in means:
            replay = row[REPLAY]["metric"]
            entry["meltr_minus_replay"] = meltr - replay["mean"]
            spread = max(replay["std"], row["meltr"]["metric"]["std"])
            entry["within_replay_spread"] = abs(meltr - replay["mean"]) <= 2 * spread
        runs = cell(records, task.name, "meltr")
        if runs:
            entry["collapse"] = {str(r["seed"]): collapse_check(r) for r in runs}
            entry["collapse_events"] = sum(len(r["collapse_events"]) for r in runs)
            entry["harmful_ranks"] = harmful_ranks(task, row["meltr"]["weights"])
        replays = cell(records, task.name, REPLAY)
        if replays:
            entry["replay_collapse"] = {str(r["seed"]): collapse_check(r) for r in replays}
        summary[task.name] = entry
    normalized = [e["meltr_minus_sum_normalized"] for e in summary.values() if "meltr_minus_sum_normalized" in e]
    errors = [e["meltr_minus_sum_normalized_se"] for e in summary.values() if "meltr_minus_sum_normalized_se" in e]

    def count(key: str, test: Callable[[object], bool]) -> str:
        """"wins/comparable" over the tasks where both methods ran."""
        values = [e[key] for e in summary.values() if key in e]
        return f"{sum(1 for v in values if test(v))}/{len(values)}" if values else "n/a"

    summary["overall"] = {
        "meltr_minus_sum_normalized_mean": statistics.fmean(normalized) if normalized else None,
        # The standard error of that mean (the tasks' errors independent).
        "meltr_minus_sum_normalized_se": math.hypot(*errors) / len(errors) if errors else None,
        "meltr_beats_sum": count("meltr_minus_sum", lambda v: v > 0),
        "sum_beats_primary": count("sum_minus_primary", lambda v: v > 0),
        "meltr_ge_primary": count("meltr_ge_primary", bool),
        "within_replay_spread": count("within_replay_spread", bool),
        "tasks": len(tasks),
    }
    return summary


def number(value: Optional[float], digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def digits_for(task: Task) -> int:
    return 3 if task.metric == "r2" else 2


def modified(path: str) -> Optional[str]:
    try:
        stamp = os.path.getmtime(path)
    except OSError:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def git_commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", "-C", REPO, *a], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def markdown(header: dict, tasks: List[Task], methods: List[str], table: dict, summary: dict,
             records: List[dict]) -> str:
    out = ["# Auxiliary-learning suite", ""]
    out += [f"Written by `{header['command']}`", ""]
    out += [f"- commit {header['commit']}, {header['date']}; torch {header['torch']}; binary `{header['binary']}`"
            f" (built {header.get('binary_built', '?')})",
            f"- seeds {header['seeds']}; steps: {header['steps'] or 'per task (600)'}; one thread per run, "
            f"{header['jobs']} runs at a time; suite version {VERSION}",
            ("- MELTR and AID at meltr-tui's built-in defaults (no [meltr]/[aid] sections)"
             if not header.get("overrides") else
             "- meltr-tui's runs with " + ", ".join(f"`{o}`" for o in header["overrides"])
             + " (the replay at the public defaults)")
            + "; model init and data fixed per task, the seed changes batch order and the combiner's init",
            "- fixed weights: `oracle` 1 on every loss except the harmful ones (0);"
            " `harmful-only` 1 on the primary and the harmful ones (0 elsewhere)"]
    out += [f"- **{note}**" for note in header.get("notes", [])] + [""]
    out += ["## Main metric (mean ± std over seeds, higher is better)", ""]
    out += ["| task (metric) | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for task in tasks:
        d = digits_for(task)
        cells = []
        for m in methods:
            s = table[task.name][m]["metric"]
            cells.append("–" if s["mean"] is None else f"{s['mean']:.{d}f} ± {s['std']:.{d}f}")
        out.append(f"| {task.name} ({task.metric}) | " + " | ".join(cells) + " |")
    out += ["", "## Final effective weights (mean of the last 10 train lines, mean over seeds)", ""]
    weight_methods = [m for m in ("meltr", REPLAY, "mlp", "uncertainty") if m in methods]
    for task in tasks:
        out += [f"**{task.name}**", "", "| loss | role | " + " | ".join(weight_methods) + " |",
                "|---|---|" + "---|" * len(weight_methods)]
        for name, role in task.roles.items():
            ws = [table[task.name][m]["weights"].get(name) for m in weight_methods]
            out.append(f"| {name} | {role} | " + " | ".join(number(w, 3) for w in ws) + " |")
        out.append("")
    out += ["## Summary", ""]
    overall = summary["overall"]
    if overall["meltr_minus_sum_normalized_mean"] is not None:
        out.append(f"- MELTR − sum, averaged over tasks (each task's difference divided by its spread of method"
                   f" means): {overall['meltr_minus_sum_normalized_mean']:+.3f}"
                   f" ± {overall['meltr_minus_sum_normalized_se']:.3f} (standard error over seeds); MELTR beats sum on"
                   f" {overall['meltr_beats_sum']} tasks")
    out.append(f"- MELTR ≥ primary on {overall['meltr_ge_primary']} tasks")
    out.append(f"- MELTR's seed mean within 2 std (the larger of the two methods' seed std) of the replay's on"
               f" {overall['within_replay_spread']} tasks")
    out.append(f"- calibration: sum > primary on {overall['sum_beats_primary']} tasks (the auxiliaries matter)")
    out.append("- primary weight: ok when the final primary weight stays above 0.1x its first logged one"
               " (n/a when that start is not positive); LOW when it ends below 0.1 whatever the start")
    out += ["", "| task | sum − primary | MELTR − sum | MELTR − primary | MELTR − replay | MELTR primary weight (per seed)"
            " | replay primary weight (per seed) | collapse events | harmful ranks (1 = largest weight) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        e, d = summary[task.name], digits_for(task)
        replay = "–"
        if "meltr_minus_replay" in e:
            replay = f"{e['meltr_minus_replay']:+.{d}f} ({'within' if e['within_replay_spread'] else 'OUTSIDE'})"
        collapse = "; ".join(f"{s}: {c}" for s, c in e.get("collapse", {}).items()) or "–"
        replay_collapse = "; ".join(f"{s}: {c}" for s, c in e.get("replay_collapse", {}).items()) or "–"
        ranks = ", ".join(f"{n} {r}" for n, r in e.get("harmful_ranks", {}).items()) or "–"
        out.append(f"| {task.name} | {signed(e.get('sum_minus_primary'), d)} | {signed(e.get('meltr_minus_sum'), d)}"
                   f" | {signed(e.get('meltr_minus_primary'), d)} | {replay} | {collapse} | {replay_collapse}"
                   f" | {e.get('collapse_events', '–')} | {ranks} |")
    out += ["", "## Time per run (seconds, mean over seeds: wall / CPU of the process)", "",
            "| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for task in tasks:
        times = [table[task.name][m] for m in methods]
        out.append(f"| {task.name} | " + " | ".join(
            f"{number(t['seconds']['mean'], 1)} / {number(t['cpu_seconds']['mean'], 1)}" for t in times) + " |")
    out += ["", "## Tasks", ""]
    for task in tasks:
        roles = ", ".join(f"{n} ({r})" for n, r in task.roles.items())
        out.append(f"- **{task.name}**: {task.summary}. Losses: {roles}. Metric: {task.metric}.")
    failures = [r for r in records if r["status"] != "ok"]
    if failures:
        out += ["", "## Failed runs", ""]
        out += [f"- {r['task']} {r['method']} seed {r['seed']}: {r.get('error')}" for r in failures]
    warnings = engine_warnings(records)
    if warnings:
        out += ["", "## Engine warnings", ""] + warnings
    return "\n".join(out) + "\n"


def engine_warnings(records: List[dict]) -> List[str]:
    """The runs' warnings as report lines: the early-climb warning (one per
    run whose primary weight started negative) counted per task and method,
    the others listed once each (the first 40)."""
    climbs: Dict[Tuple[str, str], int] = {}
    runs: Dict[Tuple[str, str], int] = {}
    for r in records:
        key = (r["task"], r["method"])
        runs[key] = runs.get(key, 0) + 1
        if any(EARLY_CLIMB in w for w in r.get("warnings", [])):
            climbs[key] = climbs.get(key, 0) + 1
    seen = sorted({(r["task"], r["method"], w) for r in records for w in r.get("warnings", []) if EARLY_CLIMB not in w})
    lines = [
        f"- {t} {m}: the primary's weight started negative (the model climbed its own loss for a while) in {n} of {runs[(t, m)]} runs"
        for (t, m), n in sorted(climbs.items())
    ]
    return lines + [f"- {t} {m}: {w}" for t, m, w in seen[:40]]


def signed(value: Optional[float], digits: int) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


# ----------------------------------------------------------------- main ---


def write_report(out: str, header: dict, tasks: List[Task], methods: List[str], records: List[dict]) -> str:
    """Writes the markdown report `out` and the JSON beside it; returns the JSON's path."""
    table = aggregate(records, tasks, methods)
    summary = summarize(records, tasks, methods, table)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(markdown(header, tasks, methods, table, summary, records))
    data = {"header": header, "version": VERSION, "methods": methods,
            "tasks": {t.name: {"roles": t.roles, "metric": t.metric, "summary": t.summary} for t in tasks},
            "table": table, "summary": summary, "runs": records}
    json_path = os.path.splitext(out)[0] + ".json"
    with open(json_path, "w") as f:
        json.dump(data, f, indent=1)
    return json_path


def command_report(args: argparse.Namespace) -> int:
    """Renders the markdown again from a run's JSON (same runs, same header)."""
    with open(args.json) as f:
        data = json.load(f)
    tasks = [TASK_BY_NAME[name] for name in data["tasks"]]
    out = args.out or os.path.splitext(args.json)[0] + ".md"
    write_report(out, data["header"], tasks, data["methods"], data["runs"])
    print(f"aux-suite: wrote {out}", file=sys.stderr)
    return 0


def command_variants(args: argparse.Namespace) -> int:
    """Compares MELTR variants (`run --methods meltr --set ...` JSONs) with
    the default MELTR of a full run: each variant's MELTR runs stand in for
    the default's, the other methods stay, and the must-show summary is
    computed again, so every variant is judged on the same sum, primary and
    replay runs."""
    with open(args.base) as f:
        base = json.load(f)
    tasks = [TASK_BY_NAME[name] for name in base["tasks"]]
    methods = base["methods"]
    rows = [("default", base["header"].get("command", ""), base["runs"])]
    for spec in args.variant:
        name, _, paths = spec.partition("=")
        if not paths:
            raise SystemExit(f"aux-suite variants: `{spec}` is not NAME=JSON")
        # NAME=A.json+B.json: one variant run in parts over disjoint seeds.
        meltr, commands = [], []
        for path in paths.split("+"):
            with open(path) as f:
                variant = json.load(f)
            meltr += [r for r in variant["runs"] if r["method"] == "meltr"]
            commands.append(variant["header"].get("command", ""))
        path = paths
        keys = {(r["task"], r["seed"]) for r in meltr}
        base_keys = {(r["task"], r["seed"]) for r in base["runs"] if r["method"] == "meltr"}
        if keys != base_keys or len(keys) != len(meltr):
            raise SystemExit(f"aux-suite variants: {path} does not hold MELTR runs for the same tasks and seeds"
                             f" as {args.base}, once each (missing {sorted(base_keys - keys)[:4]},"
                             f" extra {sorted(keys - base_keys)[:4]}, {len(meltr) - len(keys)} repeated)")
        others = [r for r in base["runs"] if r["method"] != "meltr"]
        rows.append((name, " and ".join(dict.fromkeys(c for c in commands if c)), others + meltr))
    out = ["# MELTR variants on the auxiliary-learning suite", "",
           f"Written by `scripts/aux_suite.py {shlex.join(args.argv)}`; commit {git_commit()}, "
           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
           f"Each variant's MELTR runs stand in for the default's in `{args.base}` (its sum, primary and replay"
           " runs stay). MELTR − sum: each task's difference divided by its spread of method means, averaged"
           " over tasks (the issue's \"MELTR ≥ sum\" is ≥ 0), ± its standard error over seeds. Collapsed: runs"
           " whose primary weight ends below a tenth of its start.", "",
           "| variant | " + " | ".join(t.name for t in tasks) + " | MELTR − sum | beats sum | collapsed |",
           "|---|" + "---|" * (len(tasks) + 3)]
    for name, _, records in rows:
        table = aggregate(records, tasks, methods)
        summary = summarize(records, tasks, methods, table)
        cells = []
        for t in tasks:
            metric = table[t.name]["meltr"]["metric"]
            d = digits_for(t)
            cells.append(f"{number(metric['mean'], d)} ± {number(metric['std'], d)}")
        collapsed = sum(1 for t in tasks for v in summary[t.name].get("collapse", {}).values()
                        if v.startswith("COLLAPSED"))
        seeds = sum(len(summary[t.name].get("collapse", {})) for t in tasks)
        overall = summary["overall"]
        out.append(f"| {name} | " + " | ".join(cells)
                   + f" | {overall['meltr_minus_sum_normalized_mean']:+.3f}"
                   f" ± {overall['meltr_minus_sum_normalized_se']:.3f} | {overall['meltr_beats_sum']}"
                   f" | {collapsed}/{seeds} |")
    out += ["", "Commands:", ""] + [f"- {name}: `{command}`" for name, command, _ in rows if command]
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"aux-suite: wrote {args.out}", file=sys.stderr)
    return 0


def command_build(args: argparse.Namespace) -> int:
    build_suite(args.out)
    return 0


def command_chance(args: argparse.Namespace) -> int:
    """Per classification task, what a model that ignores its input scores:
    the classes of the validation labels `y` and the most frequent one's
    share (the accuracy of always answering it), and 100 / classes."""
    folder = ensure_suite(args.suite)
    print("| task | classes | most frequent class (% of validation labels) | uniform guess (%) |")
    print("|---|---|---|---|")
    for task in TASKS:
        if task.metric != "accuracy":
            continue
        y = safetensors_lite.read(os.path.join(folder, task.name, "val.safetensors"))["y"].flatten()
        y = y[y >= 0]  # masked positions, where a task has them
        counts = torch.bincount(y)  # every class up to the largest label, absent ones at 0
        print(f"| {task.name} | {len(counts)} | {100.0 * counts.max().item() / len(y):.1f} | {100.0 / len(counts):.1f} |")
    return 0


def command_run(args: argparse.Namespace, argv: List[str]) -> int:
    if args.smoke:
        args.tasks = args.tasks or SMOKE["tasks"]
        args.seeds = args.seeds or SMOKE["seeds"]
        args.methods = args.methods or SMOKE["methods"]
        args.steps = args.steps or SMOKE["steps"]
    args.seeds = args.seeds or [0, 1, 2]
    args.methods = args.methods or ["meltr", "sum", "primary", "uncertainty", REPLAY]
    unknown = [t for t in args.tasks or [] if t not in TASK_BY_NAME]
    if unknown:
        sys.exit(f"aux-suite: unknown task(s) {unknown}; tasks: {list(TASK_BY_NAME)}")
    tasks = [TASK_BY_NAME[t] for t in args.tasks] if args.tasks else TASKS
    methods = list(args.methods)
    notes = []
    if REPLAY in methods and not os.path.exists(REPLAY_SCRIPT):
        notes.append(f"`replay` SKIPPED: {REPLAY_SCRIPT} is missing")
        print(f"\n*** aux-suite: {notes[-1]} ***\n", file=sys.stderr)
        methods.remove(REPLAY)
    if any(m != REPLAY for m in methods) and not os.access(args.binary, os.X_OK):
        sys.exit(f"aux-suite: no meltr-tui binary at {args.binary} (build it: cargo build --release, or pass --binary)")
    args.binary = os.path.abspath(args.binary)
    args.sessions = os.path.abspath(args.sessions or os.path.join(default_cache(), "sessions"))
    os.makedirs(args.sessions, exist_ok=True)
    out = args.out or (os.path.join(args.sessions, "aux-suite-smoke.md") if args.smoke else os.path.join(REPO, "docs", "aux-suite.md"))
    suite = ensure_suite(args.suite)

    jobs = [Job(task, method, seed) for task in tasks for seed in args.seeds for method in methods]
    print(f"aux-suite: {len(jobs)} runs ({len(tasks)} tasks x {len(args.seeds)} seeds x {len(methods)} methods),"
          f" {args.jobs} at a time; sessions in {args.sessions}", file=sys.stderr)
    started = time.perf_counter()
    records = run_all(jobs, args, suite)
    header = {
        "command": shlex.join(["scripts/aux_suite.py", *argv]),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "binary": args.binary,
        "binary_built": modified(args.binary),
        "torch": torch.__version__,
        "seeds": args.seeds,
        "steps": args.steps,
        "overrides": args.set or [],
        "jobs": args.jobs,
        "suite": suite,
        "wall_seconds": time.perf_counter() - started,
        "notes": notes,
    }
    json_path = write_report(out, header, tasks, methods, records)
    failed = [r for r in records if r["status"] != "ok"]
    print(f"aux-suite: wrote {out} and {json_path} ({header['wall_seconds']:.0f} s; {len(failed)} failed runs)",
          file=sys.stderr)
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="write the tasks into a folder")
    build.add_argument("--out", required=True, help="the suite folder (replaced)")
    run = sub.add_parser("run", help="train every task x seed x method and write the report")
    run.add_argument("--suite", help=f"a built suite (default: built on demand in {default_cache()})")
    run.add_argument("--binary", default=os.path.join(REPO, "target", "release", "meltr-tui"),
                     help="meltr-tui (default: %(default)s)")
    run.add_argument("--python", default=sys.executable, help="python with torch, for `replay`")
    run.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2")
    run.add_argument("--methods", nargs="+", choices=ENGINE_METHODS + list(FIXED) + [REPLAY],
                     help="default: meltr sum primary uncertainty replay")
    run.add_argument("--tasks", nargs="+", help=f"default: all of {list(TASK_BY_NAME)}")
    run.add_argument("--steps", type=int, help="override every task's steps")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="a config override for meltr-tui's runs (repeatable; e.g. meltr.meta_lr=0.01); "
                     "the replay keeps the public defaults")
    run.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    run.add_argument("--sessions", help="sessions directory (default: <cache>/sessions)")
    run.add_argument("--out", help="markdown report; JSON beside it (default docs/aux-suite.md)")
    run.add_argument("--smoke", action="store_true",
                     help=f"CI subset: tasks {SMOKE['tasks']}, seeds {SMOKE['seeds']}, methods {SMOKE['methods']},"
                          f" each task's steps; ~1 min on 2 idle cores (explicit options win)")
    report = sub.add_parser("report", help="render the markdown again from a run's JSON")
    report.add_argument("json", help="the JSON a run wrote")
    report.add_argument("--out", help="markdown (default: the JSON's path with .md)")
    chance = sub.add_parser("chance", help="each classification task's accuracy without its input")
    chance.add_argument("--suite", help=f"a built suite (default: {default_cache()})")
    variants = sub.add_parser("variants", help="compare MELTR variants' runs with a full run's default MELTR")
    variants.add_argument("base", help="the JSON of a full run (every method, the default config)")
    variants.add_argument("variant", nargs="+", metavar="NAME=JSON[+JSON...]",
                          help="a run's JSON with MELTR runs of a variant (`run --methods meltr --set ...`); "
                               "A.json+B.json joins runs of one variant made over disjoint seeds")
    variants.add_argument("--out", required=True, help="markdown table")
    args = parser.parse_args(argv)
    args.argv = argv
    torch.set_num_threads(1)
    if args.command == "build":
        return command_build(args)
    if args.command == "report":
        return command_report(args)
    if args.command == "variants":
        return command_variants(args)
    if args.command == "chance":
        return command_chance(args)
    return command_run(args, argv)


if __name__ == "__main__":
    sys.exit(main())
