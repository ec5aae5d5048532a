#!/usr/bin/env python3
"""An independent PyTorch implementation of the public MELTR algorithm.

MELTR (Ko et al., "MELTR: Meta Loss Transformer for Learning to Fine-tune
Video Foundation Models", CVPR 2023) learns to combine a model's losses
l = [primary, *auxiliary] into one training loss M_phi(l). The ground truth
for the semantics below is the public code, github.com/mlvlab/MELTR:
univl/modules/meltr.py (classes MELTR, MELTRgrad, MELTROptimizer) and
univl/main.py (train_epoch). This file is written from that description, in
plain PyTorch, to check meltr-tui's Rust engine step by step.

The network M_phi (meltr.py, class MELTR): each loss l_k becomes a token
loss_fc2(relu(loss_fc1(l_k))) + task_embedding[k]; one post-norm
nn.TransformerEncoderLayer (ReLU, eval mode: no dropout) mixes the K tokens;
their mean goes through fc1 (d_model -> 1, no bias). The meta step
differentiates twice through M_phi, and PyTorch's fused attention kernels have
no double backward, so the layer's math is written out here (encoder_layer);
the parameters stay in the stock modules, whose default initialisation is
therefore PyTorch's. `--self-test` checks the hand-written layer against the
stock one.

Every step t = 1..T (main.py, train_epoch):
  inner   l = model(batch_t); L = M_phi(l); theta <- AdamW(theta, clip(grad_theta L))
          (global-norm clip as torch.nn.utils.clip_grad_norm_; cosine or
          constant learning rate).
  meta    when t % meta_every == 0, after the inner update. The pool is the
          training batches of the (at most 10) steps before t. A validation
          batch B_v and, independently, a training batch B_t are drawn from it
          (random.choices, B_v first, as train_epoch does).
            L_pri = l_primary(theta; B_v) + gamma * |sum_k l_k(theta; B_t) - M_phi(l(theta; B_t))|
            v_0   = grad_theta L_pri
          Neumann series for H^-1 (AuxiLearn's convention, Navon et al. 2021,
          github.com/AvivNavon/AuxiLearn; the public MELTR code has J = 0):
            v_{j+1} = v_j - alpha * H v_j,  p = sum_{j=0..J} v_j,
            H = Hessian_theta M_phi(l(theta; B_t))   (double backward)
          Hypergradient (MELTRgrad.grad; MELTROptimizer.step sets phi.grad = -v4):
            h = -d/dphi [ grad_theta M_phi(l(theta; B_t)) . p ]
          phi's gradient is overwritten by h: the gamma term reaches phi only
          through v_0. With meltr.gamma_direct = true the direct term
          gamma * d|sum l - M|/dphi is added (the total derivative; not the
          public code). Then clip h to meltr.meta_grad_clip (clip_grad_norm_)
          and step torch.optim.Adam(phi, meta_lr, weight_decay) -- coupled L2,
          as the public code -- or AdamW with meltr.meta_optimizer = "adamw".

Where this follows meltr-tui's spec rather than the public code's defaults:
the meta step runs at t % meta_every == 0 with t 1-based (train_epoch tests
its 0-based global_step, i.e. steps 1, 4, 7, ...); the inner optimizer is
torch.optim.AdamW with clipping on every step (train_epoch: BertAdam with
warm-up, clipping only when distributed); gamma defaults to 0.1 (main.py's
--reg defaults to 0, which drops the term). MELTR is in eval mode, as main.py
puts it. Engine options honoured when the config sets them:
meltr.train_batch = "current" (the meta step runs before the inner update,
at the same theta, on this step's batch), meltr.val_source = "train-batch"
(the validation primary is the meta step's training forward's own),
aid.max_growth (at the first Neumann
term with ||v_j|| > max_growth * ||v_0|| the series is dropped for v_0 alone;
absent: no stop, as AuxiLearn), meltr.gamma_direct, meltr.meta_optimizer,
meltr.init = "residual" (MELTR's output is sum(losses) plus the network's,
its head starting at zero), and in `trace` meltr.loss_scale (MELTR reads
the losses times the factors the engine measured, trace/loss-scale.safetensors,
and the gamma term's sum is taken at that scale).

Modes:
  trace SESSION_DIR [--report FILE]
      Replays a trace written by the engine (train.trace = true, train.dtype
      = "f64") step for step in f64 with the engine's batches and meta picks,
      and compares losses, theta, phi, the hypergradient, the regulariser and
      the model's buffers (when the trace has them) after every step: per group, ||ours - engine|| / max(||engine||, 1e-300)
      over all its tensors. Writes a JSON report (default
      SESSION_DIR/trace/parity.json): steps, meta_steps, max_rel and
      worst_step per group (both null for a group never compared: no
      buffers, no meta step), notes (meta picks outside the public pool, meta
      steps off the meta_every schedule, Neumann stops), per_step errors. A
      NaN or infinite error is written as 1e300. Exits 0 when it ran, 2 on
      bad inputs (missing file or key, shape mismatch: named in the message).
  run CONFIG --seed S [--steps N] --out FILE.json
      A standalone run of the public algorithm on a `torchscript` workload
      config (f32; MELTR in PyTorch's default initialisation after
      torch.manual_seed(S); per-epoch permutations of the training rows and
      meta picks seeded by S: a sample of the algorithm, not the engine's
      run of workload.seed = S, whose draws differ), evaluated every
      train.eval_every steps and at the end (the summary's `evals`).
      `--write-trace DIR` also writes the engine's
      trace format (f64 unless --dtype says otherwise), which `trace` replays.
  --self-test
      Numerical checks of this implementation (see self_test).

Uses torch and the standard library only.
"""

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
import tomllib
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# torch works without numpy; its warning about it would only confuse.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ next to the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_lite  # noqa: E402

POOL_SIZE = 10  # main.py: `if len(batchs) > 10: batchs.pop(0)`
# Effective weights: the mean over the last 10 steps. Not the engine's
# `table --metric weight/x` window (its logged lines in the last 10% of
# steps, 10 at most: steps 370-400 of a 400-step run at log_every 10); for
# a like-for-like comparison, read its metrics.jsonl's last 10 steps at
# train.log_every = 1 (walkthrough C compared the two unawares).
WEIGHT_WINDOW = 10
METRIC_PREFIX = "metric/"


class ReplayError(Exception):
    """A problem with the inputs (missing file or key, shape mismatch)."""


# --------------------------------------------------------------------------
# Configuration


@dataclass
class Settings:
    config_path: str
    model: str
    train: str
    val: str
    primary: str
    auxiliary: List[str]
    batch_size: int
    eval_batch_size: int  # rows per evaluation batch, as the engine's workload.eval_batch_size
    dtype: str
    steps: int
    log_every: int
    eval_every: int
    lr: float
    lr_schedule: str
    weight_decay: float
    grad_clip: float
    d_model: int
    d_hidden: int
    d_ff: int
    heads: int
    meta_lr: float
    meta_weight_decay: float
    meta_every: int
    first_meta: str
    meta_grad_clip: float
    gamma: float
    gamma_direct: bool
    meta_optimizer: str
    val_source: str
    train_batch: str
    init: str
    loss_scale: str
    iterations: int
    alpha: float
    max_growth: Optional[float]
    seed: int = 0  # workload.seed: the forwards' dropout seeds (forward_seed)

    @property
    def loss_names(self) -> List[str]:
        return [self.primary, *self.auxiliary]

    def lr_at(self, step: int) -> float:
        """The inner learning rate at `step` (1-based)."""
        if self.lr_schedule == "cosine":
            progress = min((step - 1) / max(self.steps, 1), 1.0)
            return self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr


def load_settings(path: str) -> Tuple[Settings, dict]:
    """The run's settings (defaults for absent keys) and the raw config."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ReplayError(f"config not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ReplayError(f"{path}: not valid TOML ({e})") from None
    here = os.path.dirname(os.path.abspath(path))
    workload, train = raw.get("workload", {}), raw.get("train", {})
    meltr, aid = raw.get("meltr", {}), raw.get("aid", {})

    def need(key: str):
        if key not in workload:
            raise ReplayError(f"{path}: [workload] has no `{key}`")
        return workload[key]

    def file(key: str) -> str:
        return os.path.join(here, need(key))  # absolute paths stay as they are

    settings = Settings(
        config_path=path,
        model=file("model"),
        train=file("train"),
        val=file("val"),
        primary=need("primary"),
        auxiliary=list(workload.get("auxiliary", [])),
        batch_size=int(workload.get("batch_size", 32)),
        eval_batch_size=int(workload.get("eval_batch_size", workload.get("batch_size", 32))),
        dtype=train.get("dtype", "f32"),
        steps=int(train.get("steps", 600)),
        log_every=int(train.get("log_every", 10)),
        eval_every=int(train.get("eval_every", 50)),
        lr=float(train.get("lr", 1e-3)),
        lr_schedule=train.get("lr_schedule", "constant"),
        weight_decay=float(train.get("weight_decay", 0.0)),
        grad_clip=float(train.get("grad_clip", 1.0)),
        d_model=int(meltr.get("d_model", 256)),
        d_hidden=int(meltr.get("d_hidden", 128)),
        d_ff=int(meltr.get("d_ff", 512)),
        heads=int(meltr.get("heads", 8)),
        meta_lr=float(meltr.get("meta_lr", 1e-3)),
        meta_weight_decay=float(meltr.get("meta_weight_decay", 3e-5)),
        meta_every=int(meltr.get("meta_every", 3)),
        first_meta=meltr.get("first_meta", "at-meta-every"),
        meta_grad_clip=float(meltr.get("meta_grad_clip", 50.0)),
        gamma=float(meltr.get("gamma", 0.1)),
        gamma_direct=bool(meltr.get("gamma_direct", False)),
        meta_optimizer=meltr.get("meta_optimizer", "adam"),
        val_source=meltr.get("val_source", "recent"),
        train_batch=meltr.get("train_batch", "recent"),
        init=meltr.get("init", "pytorch"),  # the engine's default
        loss_scale=meltr.get("loss_scale", "raw"),
        iterations=int(aid.get("iterations", 0)),
        alpha=float(aid.get("alpha", 0.1)),
        max_growth=float(aid["max_growth"]) if "max_growth" in aid else None,
        seed=int(workload.get("seed", 0)),
    )
    combiner = raw.get("combiner", {}).get("kind", "meltr")
    if combiner != "meltr":
        raise ReplayError(f"{path}: combiner.kind is {combiner!r}; this replays MELTR runs only")
    kind = workload.get("kind", "torchscript")
    if kind != "torchscript":
        raise ReplayError(f"{path}: workload.kind is {kind!r}; only `torchscript` workloads can be replayed")
    if settings.meta_optimizer not in ("adam", "adamw"):
        raise ReplayError(f"{path}: meltr.meta_optimizer must be `adam` or `adamw`, not {settings.meta_optimizer!r}")
    if settings.grad_clip <= 0 or settings.meta_grad_clip <= 0:
        raise ReplayError(f"{path}: train.grad_clip and meltr.meta_grad_clip must be positive")
    if settings.d_model % settings.heads:
        raise ReplayError(f"{path}: meltr.heads ({settings.heads}) must divide meltr.d_model ({settings.d_model})")
    return settings, raw


def toml_dumps(table: dict, prefix: str = "") -> str:
    """A TOML document for nested tables of strings, numbers, booleans and lists."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v) if math.isfinite(v) else str(v)
        if isinstance(v, str):
            return json.dumps(v)  # JSON strings are TOML basic strings
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    def key(k: str) -> str:
        bare = k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k)
        return k if bare else json.dumps(k)

    lines = [f"{key(k)} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    text = "\n".join(lines) + ("\n" if lines else "")
    for k, v in table.items():
        if isinstance(v, dict):
            name = f"{prefix}{key(k)}"
            text += f"\n[{name}]\n" + toml_dumps(v, name + ".")
    return text


# --------------------------------------------------------------------------
# The MELTR network


def layer_norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    """nn.LayerNorm written out (biased variance, eps inside the root)."""
    centered = x - x.mean(-1, keepdim=True)
    variance = centered.pow(2).mean(-1, keepdim=True)
    return centered / torch.sqrt(variance + norm.eps) * norm.weight + norm.bias


def encoder_layer(layer: nn.TransformerEncoderLayer, x: Tensor) -> Tensor:
    """The stock post-norm ReLU layer's eval-mode math from elementary,
    twice-differentiable ops, on the stock layer's parameters. x: [B, N, d]."""
    attn = layer.self_attn
    b, n, d = x.shape
    h = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3, 0)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3, 0)

    def heads(t: Tensor) -> Tensor:  # [B, N, d] -> [B, h, N, d/h]
        return t.view(b, n, h, d // h).transpose(1, 2)

    q, k, v = heads(F.linear(x, w_q, b_q)), heads(F.linear(x, w_k, b_k)), heads(F.linear(x, w_v, b_v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    mixed = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, n, d)
    x = layer_norm(x + F.linear(mixed, attn.out_proj.weight, attn.out_proj.bias), layer.norm1)
    ff = F.linear(torch.relu(F.linear(x, layer.linear1.weight, layer.linear1.bias)), layer.linear2.weight, layer.linear2.bias)
    return layer_norm(x + ff, layer.norm2)


class Meltr(nn.Module):
    """M_phi: K losses -> one scalar. Modules built in the public code's order
    (so torch.manual_seed gives the same default initialisation)."""

    def __init__(self, k: int, d_model: int, d_hidden: int, d_ff: int, heads: int, residual: bool = False):
        super().__init__()
        # The engine's `meltr.init = "residual"` (not the public code): the
        # output is sum(losses) plus the network's, the head starting at 0.
        self.residual = residual
        # The engine's `meltr.loss_scale` (not the public code): [K] factors
        # MELTR reads the losses at, from the trace; None: the raw losses.
        self.scale: Optional[Tensor] = None
        self.task_embedding = nn.Embedding(k, d_model)
        self.loss_fc1 = nn.Linear(1, d_hidden)
        self.loss_fc2 = nn.Linear(d_hidden, d_model)
        self.encoder = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=d_ff, batch_first=True)
        self.fc1 = nn.Linear(d_model, 1, bias=False)
        self.eval()  # the encoder's dropout off
        assert not self.encoder.norm_first and self.encoder.activation_relu_or_gelu == 1

    def tokens(self, losses: Tensor) -> Tensor:
        """[K] losses -> [K, d_model] tokens."""
        scale = self.loss_fc2(torch.relu(self.loss_fc1(losses.unsqueeze(1))))
        return scale + self.task_embedding.weight

    def scaled(self, losses: Tensor) -> Tensor:
        return losses if self.scale is None else losses * self.scale

    def reference_sum(self, losses: Tensor) -> Tensor:
        """sum(losses) at the scale MELTR reads them: the gamma term's."""
        return self.scaled(losses).sum()

    def forward(self, losses: Tensor) -> Tensor:
        mixed = encoder_layer(self.encoder, self.tokens(self.scaled(losses)).unsqueeze(0))
        out = self.fc1(mixed.mean(1)).reshape(())
        return out + self.reference_sum(losses) if self.residual else out

    def forward_stock(self, losses: Tensor) -> Tensor:
        """The same through the stock layer (for the self-test only)."""
        mixed = self.encoder(self.tokens(losses).unsqueeze(0))
        return self.fc1(mixed.mean(1)).reshape(())


# Engine name -> (MELTR parameter, row block of in_proj or None).
_PHI_NAMES = {
    "loss_in.weight": ("loss_fc1.weight", None),
    "loss_in.bias": ("loss_fc1.bias", None),
    "loss_out.weight": ("loss_fc2.weight", None),
    "loss_out.bias": ("loss_fc2.bias", None),
    "loss_type": ("task_embedding.weight", None),
    "query.weight": ("encoder.self_attn.in_proj_weight", 0),
    "key.weight": ("encoder.self_attn.in_proj_weight", 1),
    "value.weight": ("encoder.self_attn.in_proj_weight", 2),
    "query.bias": ("encoder.self_attn.in_proj_bias", 0),
    "key.bias": ("encoder.self_attn.in_proj_bias", 1),
    "value.bias": ("encoder.self_attn.in_proj_bias", 2),
    "attn_out.weight": ("encoder.self_attn.out_proj.weight", None),
    "attn_out.bias": ("encoder.self_attn.out_proj.bias", None),
    "ff_in.weight": ("encoder.linear1.weight", None),
    "ff_in.bias": ("encoder.linear1.bias", None),
    "ff_out.weight": ("encoder.linear2.weight", None),
    "ff_out.bias": ("encoder.linear2.bias", None),
    "norm1.weight": ("encoder.norm1.weight", None),
    "norm1.bias": ("encoder.norm1.bias", None),
    "norm2.weight": ("encoder.norm2.weight", None),
    "norm2.bias": ("encoder.norm2.bias", None),
    "head.weight": ("fc1.weight", None),
}


def to_engine_names(named: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """MELTR parameters (or gradients), by MELTR name -> by engine name."""
    out = {}
    for engine, (ours, block) in _PHI_NAMES.items():
        t = named[ours]
        out[engine] = t if block is None else t.chunk(3, 0)[block]
    return out


def load_phi(meltr: Meltr, tensors: Dict[str, Tensor], source: str) -> None:
    """Copies `phi.<engine name>` tensors into MELTR."""
    params = dict(meltr.named_parameters())
    targets = to_engine_names({n: p.data for n, p in params.items()})
    with torch.no_grad():
        for engine, target in targets.items():
            key = "phi." + engine
            if key not in tensors:
                raise ReplayError(f"{source}: no `{key}`")
            value = tensors[key]
            if tuple(value.shape) != tuple(target.shape):
                raise ReplayError(f"{source}: `{key}` has shape {list(value.shape)}, MELTR's is {list(target.shape)}")
            target.copy_(value)
    extra = sorted(k for k in tensors if k.startswith("phi.") and k[4:] not in targets)
    if extra:
        raise ReplayError(f"{source}: unknown MELTR parameters {extra}")


# --------------------------------------------------------------------------
# The workload: a TorchScript model and its safetensors data


def engine_theta_keys(names: List[str]) -> Dict[str, str]:
    """Each model parameter's `theta.<name>` in the engine's trace, as tch's
    VarStore names it, the parameters taken in the model's order (frozen
    ones too): dots as underscores, and a name already taken gets
    `__<number of parameters before it>` (a held-out model's `g.w_x` and
    `g_w.x` both read `g_w_x`: the engine wrote `g_w_x__1`)."""
    keys: Dict[str, str] = {}
    taken = set()
    for name in names:
        base = name.replace(".", "_")
        key = base if base not in taken else f"{base}__{len(taken)}"
        taken.add(key)
        keys[name] = "theta." + key
    return keys


def math_attention() -> None:
    """Routes scaled_dot_product_attention (stock nn.MultiheadAttention and
    nn.TransformerEncoderLayer call it in training) to PyTorch's math path:
    the fused kernels (flash, memory-efficient, cuDNN) have no second
    derivative, which the public algorithm takes through the model; the math
    path computes the same function from elementary ops, which have one. The
    flags are process-wide."""
    torch.backends.cuda.enable_flash_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_math_sdp(True)


class Workload:
    """The model (forward(batch) -> {name: 0-dim tensor}) and its data."""

    def __init__(self, settings: Settings, dtype: torch.dtype):
        if not os.path.exists(settings.model):
            raise ReplayError(f"model not found: {settings.model}")
        # The plain interpreter, as the engine runs TorchScript: the optimizing
        # executor rewrites the graph after its profiling runs, and its fused
        # dropout draws other masks from the same seed.
        torch._C._set_graph_executor_optimize(False)
        math_attention()
        self.model = torch.jit.load(settings.model, map_location="cpu")
        self.model.to(dtype)
        self.dtype = dtype
        self.names = settings.loss_names
        self.train = self._data(settings.train)
        self.val = self._data(settings.val)
        # theta: the trainable parameters (the others stay as model.pt has them).
        self.named_params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.theta = [p for _, p in self.named_params]
        self.theta_keys = engine_theta_keys([n for n, _ in self.model.named_parameters()])

    def _data(self, path: str) -> Dict[str, Tensor]:
        if not os.path.exists(path):
            raise ReplayError(f"data not found: {path}")
        tensors = safetensors_lite.read(path)
        if not tensors:
            raise ReplayError(f"{path}: no tensors")
        sizes = {name: t.shape[0] if t.dim() else None for name, t in tensors.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise ReplayError(f"{path}: tensors must share their first (sample) dimension: {sizes}")
        return {n: t.to(self.dtype) if t.is_floating_point() else t for n, t in tensors.items()}

    @staticmethod
    def samples(split: Dict[str, Tensor]) -> int:
        return next(iter(split.values())).shape[0]

    def rows(self, rows: Tensor, split: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        split = self.train if split is None else split
        n = self.samples(split)
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= n):
            raise ReplayError(f"batch rows out of range [0, {n}): {rows.tolist()}")
        return {name: t.index_select(0, rows) for name, t in split.items()}

    def outputs(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return self.model(batch)

    def losses(self, batch: Dict[str, Tensor]) -> Tensor:
        """The loss vector [primary, *auxiliary]."""
        return torch.stack(self.loss_list(batch))

    def loss_list(self, batch: Dict[str, Tensor]) -> List[Tensor]:
        """The configured losses, primary first, checked as the engine checks them."""
        out = self.outputs(batch)
        for n, t in out.items():
            if t.dim() != 0:
                # The engine's words (`to_scalar`), for the first such output.
                fix = ("drop its dimensions, e.g. with .squeeze() or .reshape(())" if t.numel() == 1
                       else "reduce it, e.g. with .mean()")
                raise ReplayError(f"forward's `{n}` has shape {list(t.shape)}; every value must be "
                                  f"a 0-dim tensor ({fix})")
        missing = [n for n in self.names if n not in out]
        if missing:
            raise ReplayError(f"the model's outputs {sorted(out)} lack the configured losses {missing}")
        return [out[n] for n in self.names]

    def primary(self, batch: Dict[str, Tensor]) -> Tensor:
        """The primary loss alone, as the engine's meta step takes it: through
        the module's exported `loss(batch, name)` when it has one (the same
        value as forward's; with dropout, the same masks only if it draws as
        forward does up to that loss), else forward's."""
        if hasattr(self.model, "loss"):
            return self.model.loss(batch, self.names[0])
        return self.losses(batch)[0]

    def load_theta(self, tensors: Dict[str, Tensor], source: str) -> None:
        with torch.no_grad():
            for name, p in self.named_params:
                key = self.theta_keys[name]
                if key not in tensors:
                    raise ReplayError(f"{source}: no `{key}` (model parameter `{name}`)")
                if tuple(tensors[key].shape) != tuple(p.shape):
                    raise ReplayError(f"{source}: `{key}` has shape {list(tensors[key].shape)}, the model's is {list(p.shape)}")
                p.copy_(tensors[key])
        known = set(self.theta_keys.values())
        extra = sorted(k for k in tensors if k.startswith("theta.") and k not in known)
        if extra:
            raise ReplayError(f"{source}: parameters the model does not have: {extra}")


# --------------------------------------------------------------------------
# The algorithm


# Which forward of a step a seed is for (the engine's `nn::rng::Forward`).
INNER_FORWARD, META_TRAIN_FORWARD, META_VAL_FORWARD = 0, 1, 2
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def forward_seed(seed: int, step: int, forward: int) -> int:
    """The seed the engine gives libtorch's generator before a forward
    (`nn::rng::forward_seed`: SplitMix64 of the run's seed on a stream of the
    step and the forward), so dropout draws the same masks here."""
    state = (seed ^ ((0x464F525700000000 ^ (((step << 2) | forward) & _MASK64)) * _GOLDEN)) & _MASK64
    for _ in range(2):  # SplitMix::new draws once; the seed is the next draw
        state = (state + _GOLDEN) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
    return z >> 1


def seeded(seed: Optional[int], forward: Callable[[], Tensor]) -> Tensor:
    """`forward()` after torch.manual_seed(seed) (as it comes when None)."""
    if seed is not None:
        torch.manual_seed(seed)
    return forward()


def dense(g: Optional[Tensor]) -> Optional[Tensor]:
    """A sparse gradient (`nn.Embedding(sparse=True)`) made dense, as the
    engine takes it: clipping's norm and the Neumann series' products have
    no sparse kernels (walkthrough H3's replay stopped in a traceback)."""
    return g.to_dense() if g is not None and g.is_sparse else g


def grads(output: Tensor, inputs: Sequence[Tensor], **kwargs) -> List[Tensor]:
    """autograd.grad with zeros for inputs the output does not reach."""
    got = torch.autograd.grad(output, inputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(x) if g is None else dense(g) for x, g in zip(inputs, got)]


def global_norm(tensors: List[Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def neumann(hvp: Callable[[List[Tensor]], List[Tensor]], v0: List[Tensor], iterations: int, alpha: float,
            max_growth: Optional[float] = None) -> Tuple[List[Tensor], Optional[int]]:
    """p = sum_{j=0..J} v_j, v_{j+1} = v_j - alpha * H v_j (AuxiLearn's
    convention): a truncated series for H^-1 v_0 / alpha.

    max_growth (aid.max_growth, the engine's option; None: AuxiLearn, no
    stop): at the first v_j with ||v_j|| > max_growth * ||v_0|| the series is
    dropped and p is v_0 alone (a partial sum of a series diverging with
    alternating signs can point against H^-1 v_0). Returns p and, if it
    stopped, that j."""
    v, p = v0, [x.clone() for x in v0]
    first = global_norm(v0) if max_growth is not None and iterations else 0.0
    for j in range(1, iterations + 1):
        hv = hvp(v)
        following = [a - alpha * b for a, b in zip(v, hv)]
        if first > 0.0 and not global_norm(following) / first <= max_growth:
            return [x.clone() for x in v0], j
        v = following
        p = [a + b for a, b in zip(p, v)]
    return p, None


class GradientGraph:
    """g = grad_theta of a scalar, with its graph, for second derivatives:
    d/dx [g . v] for x = theta (Hessian-vector products) or phi (the mixed term)."""

    def __init__(self, scalar: Tensor, theta: List[Tensor]):
        self.theta = theta
        g = [dense(gi) for gi in torch.autograd.grad(scalar, theta, create_graph=True, allow_unused=True)]
        # Only gradients that depend on theta or phi carry second derivatives.
        self.live = [i for i, gi in enumerate(g) if gi is not None and gi.requires_grad]
        self.g = [g[i] for i in self.live]

    def vjp(self, v: List[Tensor], inputs: List[Tensor], retain_graph: bool = True) -> List[Tensor]:
        """d/d inputs [g . v]."""
        if not self.live:
            return [torch.zeros_like(x) for x in inputs]
        return grads(self.g, inputs, grad_outputs=[v[i] for i in self.live], retain_graph=retain_graph)

    def hvp(self, v: List[Tensor]) -> List[Tensor]:
        return self.vjp(v, self.theta)


@dataclass
class MetaResult:
    hyper: List[Tensor]  # d(meta objective)/dphi as applied (before clipping), per MELTR parameter
    reg: Tensor  # |sum l - M(l)| on B_t
    neumann_stop: Optional[int] = None  # the term that diverged, if the series was dropped (aid.max_growth)
    per_loss: bool = False  # the mixed term came loss by loss (a model without second derivatives)


@dataclass
class MetaInputs:
    """One meta step's graph, as META_OBSERVER sees it (before phi's gradient)."""
    meltr: nn.Module
    theta: List[Tensor]
    train_losses: Tensor  # l(theta; B_t), with its graph
    combined: Tensor  # M_phi(l)
    reg: Tensor  # |sum l - M(l)|
    val_primary: Tensor  # l_primary(theta; B_v), with its graph
    gamma: float
    v0: List[Tensor]  # grad_theta(val_primary + gamma * reg)


# A diagnostic hook (scripts/meta_signal.py): called inside every meta step
# with its MetaInputs; may return a callable that gets phi's hypergradient.
META_OBSERVER: Optional[Callable[[MetaInputs], Optional[Callable[[List[Tensor]], None]]]] = None


def hypergradient(
    losses_fn: Callable[[Dict[str, Tensor]], Tensor],
    meltr: Meltr,
    theta: List[Tensor],
    b_train: Dict[str, Tensor],
    b_val: Dict[str, Tensor],
    gamma: float,
    iterations: int,
    alpha: float,
    gamma_direct: bool,
    max_growth: Optional[float] = None,
    primary_fn: Optional[Callable[[Dict[str, Tensor]], Tensor]] = None,
    seeds: Tuple[Optional[int], Optional[int]] = (None, None),
    train_forward: Optional[Tensor] = None,
    val_on_train: bool = False,
    force_per_loss: bool = False,
) -> MetaResult:
    """MELTRgrad.grad with AuxiLearn's Neumann series, at the current theta.
    `primary_fn`: the validation batch's primary loss (default: losses_fn's
    first); `seeds`: the generator's seeds before the training and the
    validation forward (the engine's, for models with dropout);
    `train_forward`: the training batch's loss vector with its graph, when
    an earlier forward of it is reused (meltr.train_batch = "current");
    `val_on_train`: the validation primary is the training forward's own
    (meltr.val_source = "train-batch", the engine's option). At J = 0 a
    model without second derivatives gets the mixed term loss by loss
    (mixed_term_per_loss; `force_per_loss` takes that path anyway)."""
    phi = list(meltr.parameters())
    primary_fn = primary_fn or (lambda batch: losses_fn(batch)[0])
    val_primary = None if val_on_train else seeded(seeds[1], lambda: primary_fn(b_val))
    if train_forward is None:
        train_losses = seeded(seeds[0], lambda: losses_fn(b_train))
    else:
        train_losses = train_forward
    if val_primary is None:
        val_primary = train_losses[0]
    combined = meltr(train_losses)
    reg = (meltr.reference_sum(train_losses) - combined).abs()
    v0 = grads(val_primary + gamma * reg, theta, retain_graph=True)
    direct = grads(reg, phi, retain_graph=True) if gamma_direct else None
    observed = None
    if META_OBSERVER is not None:
        observed = META_OBSERVER(MetaInputs(meltr, theta, train_losses, combined, reg, val_primary, gamma, v0))

    per_loss, stop = force_per_loss, None
    if not per_loss:
        try:
            g = GradientGraph(combined, theta)
            p, stop = neumann(g.hvp, v0, iterations, alpha, max_growth)
            # The graph is kept in case the loss-by-loss path needs it.
            hyper = [-m for m in g.vjp(p, phi, retain_graph=True)]
        except RuntimeError as e:
            # torch says so at the first backward through the op's backward.
            if iterations > 0 or not lacks_second_derivative(e):
                raise
            per_loss = True
    if per_loss:
        hyper = mixed_term_per_loss(meltr, train_losses, theta, v0)
    if direct is not None:
        hyper = [h + gamma * d for h, d in zip(hyper, direct)]
    if observed is not None:
        observed(hyper)
    return MetaResult([h.detach() for h in hyper], reg.detach(), stop, per_loss)


PER_LOSS_NOTE = ("the model has no second derivatives (an op without a double backward, as F.ctc_loss); at "
                 "aid.iterations = 0 the meta step takes the mixed term loss by loss, one first-order backward "
                 "pass per loss: the same quantity, which the double backward cannot give here")


def lacks_second_derivative(error: RuntimeError) -> bool:
    """torch's words for an op whose backward has no derivative of its own
    (F.ctc_loss: "the derivative for '_ctc_loss_backward' is not implemented")."""
    return "derivative for" in str(error) and "not implemented" in str(error)


def mixed_term_per_loss(meltr: Meltr, train_losses: Tensor, theta: List[Tensor], v: List[Tensor]) -> List[Tensor]:
    """-d/dphi [grad_theta M_phi(l(theta)) . v] at J = 0 without a second
    derivative through the model: grad_theta M = sum_k w_k(phi, l) grad_theta l_k
    with w = dM/dl, and grad_theta l_k does not depend on phi, so the term is
    -sum_k (dw_k/dphi) (grad_theta l_k . v), with each grad_theta l_k . v from
    one first-order backward pass per loss (the engine's fallback for such
    models takes the same products, by one backward pass per loss too)."""
    phi = list(meltr.parameters())
    products = []
    for k in range(train_losses.shape[0]):
        g_k = [dense(x) for x in torch.autograd.grad(train_losses[k], theta, retain_graph=True, allow_unused=True)]
        products.append(sum((gi * vi).sum() for gi, vi in zip(g_k, v) if gi is not None))
    at = train_losses.detach().clone().requires_grad_(True)
    weights = torch.autograd.grad(meltr(at), at, create_graph=True)[0]
    objective = (weights * torch.stack(products).to(weights.dtype)).sum()
    return [-m for m in grads(objective, phi)]



def effective_weights(meltr: Meltr, losses: Tensor) -> Tensor:
    """w_k = dM/dl_k at `losses` (the model's gradient is sum_k w_k grad l_k)."""
    with torch.enable_grad():
        at = losses.detach().clone().requires_grad_(True)
        return torch.autograd.grad(meltr(at), at)[0]


class Trainer:
    """theta, phi and their optimizers; one inner step and one meta step."""

    def __init__(self, workload: Workload, meltr: Meltr, settings: Settings):
        self.workload, self.meltr, self.s = workload, meltr, settings
        self.theta = workload.theta
        self.phi = list(meltr.parameters())
        self.inner = torch.optim.AdamW(
            self.theta, lr=settings.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=settings.weight_decay
        )
        meta_class = torch.optim.Adam if settings.meta_optimizer == "adam" else torch.optim.AdamW
        self.meta = meta_class(self.phi, lr=settings.meta_lr, weight_decay=settings.meta_weight_decay)

    def inner_gradient(self, step: int, batch: Dict[str, Tensor]) -> Tensor:
        """Forward, grad_theta M(l) clipped into theta's .grad. Returns l with
        its graph (kept for a meta step that reuses this forward)."""
        seed = forward_seed(self.s.seed, step, INNER_FORWARD)
        losses = seeded(seed, lambda: self.workload.losses(batch))
        total = self.meltr(losses)
        # A parameter this batch's losses do not reach keeps `.grad = None`,
        # as `backward` leaves it: AdamW then skips it, and counts its steps
        # without this one.
        reached = (torch.autograd.grad(total, self.theta, retain_graph=True, allow_unused=True)
                   if total.requires_grad else [None] * len(self.theta))
        for p, g in zip(self.theta, reached):
            p.grad = dense(g)
        torch.nn.utils.clip_grad_norm_(self.theta, self.s.grad_clip)
        return losses

    def inner_update(self, step: int) -> None:
        for group in self.inner.param_groups:
            group["lr"] = self.s.lr_at(step)
        self.inner.step()
        self.inner.zero_grad(set_to_none=True)

    def meta_step(self, step: int, b_train: Dict[str, Tensor], b_val: Dict[str, Tensor],
                  inner_forward: Optional[Tensor] = None) -> MetaResult:
        s = self.s
        # With train_batch = "current" the engine reuses the inner step's
        # forward of this batch (`inner_forward`), masks included, and
        # BatchNorm statistics as it left them.
        train_forward = INNER_FORWARD if s.train_batch == "current" else META_TRAIN_FORWARD
        seeds = (forward_seed(s.seed, step, train_forward), forward_seed(s.seed, step, META_VAL_FORWARD))
        try:
            result = hypergradient(
                self.workload.losses, self.meltr, self.theta, b_train, b_val,
                s.gamma, s.iterations, s.alpha, s.gamma_direct, s.max_growth,
                primary_fn=self.workload.primary, seeds=seeds, train_forward=inner_forward,
                val_on_train=s.val_source == "train-batch",
            )
        except RuntimeError as e:
            if lacks_second_derivative(e):
                raise ReplayError(
                    f"the model has no second derivatives ({str(e).splitlines()[0]}); with aid.iterations = "
                    f"{s.iterations} the Neumann series needs Hessian-vector products through it (at "
                    "aid.iterations = 0 the replay takes the mixed term loss by loss instead; fused attention "
                    "already runs on the math path here; or export the op that lacks one from elementary ops)"
                ) from None
            raise
        if not all(bool(torch.isfinite(h).all()) for h in result.hyper):
            # The public code would step φ to NaN and train on (walkthrough
            # N4's replay ended at c-index 0 with exit status 0).
            raise ReplayError(
                f"the hypergradient is not finite at the meta step of step {step} (a second derivative of "
                "the model that is NaN, e.g. logcumsumexp's double backward where a gradient is 0); the public "
                "algorithm would step φ to NaN here. The engine skips such a meta update and says so; "
                "aid.mode = \"factorized\" takes first derivatives of the losses only")
        for p, h in zip(self.phi, result.hyper):
            p.grad = h.clone()
        torch.nn.utils.clip_grad_norm_(self.phi, s.meta_grad_clip)
        self.meta.step()
        self.meta.zero_grad(set_to_none=True)
        return result

    def step(self, step: int, batch, meta: Optional[Tuple[dict, dict]],
             weights: Optional[List[Tensor]] = None) -> Tuple[Tensor, Optional[MetaResult]]:
        """One training step; `meta` = (B_t, B_v) on meta steps. The meta step
        follows the inner update (the public code), or precedes it at the
        same theta with meltr.train_batch = "current" (the engine's option).
        `weights`: if given, gets this step's effective weights appended (at
        its losses, before any update)."""
        forward = self.inner_gradient(step, batch)
        losses = forward.detach()
        if weights is not None:
            weights.append(effective_weights(self.meltr, losses))
        result = None
        if meta is not None and self.s.train_batch == "current":
            result = self.meta_step(step, *meta, inner_forward=forward)
        self.inner_update(step)
        if meta is not None and self.s.train_batch != "current":
            result = self.meta_step(step, *meta)
        return losses, result

    def hyper_by_engine_name(self, result: MetaResult) -> Dict[str, Tensor]:
        names = [n for n, _ in self.meltr.named_parameters()]
        return to_engine_names(dict(zip(names, result.hyper)))

    def phi_by_engine_name(self) -> Dict[str, Tensor]:
        return to_engine_names({n: p.detach() for n, p in self.meltr.named_parameters()})

    def theta_by_trace_name(self) -> Dict[str, Tensor]:
        """theta by the trace's names (the TorchScript names with '.' -> '_')."""
        keys = self.workload.theta_keys
        return {keys[n][len("theta."):]: p.detach() for n, p in self.workload.named_params}


def build(settings: Settings, dtype: torch.dtype, seed: Optional[int]) -> Trainer:
    """The workload and a MELTR (default init after torch.manual_seed(seed))."""
    workload = Workload(settings, dtype)
    if seed is not None:
        torch.manual_seed(seed)
    s = settings
    residual = s.init == "residual"
    meltr = Meltr(len(s.loss_names), s.d_model, s.d_hidden, s.d_ff, s.heads, residual).to(dtype)
    if residual:
        with torch.no_grad():
            meltr.fc1.weight.zero_()
    return Trainer(workload, meltr, settings)


# --------------------------------------------------------------------------
# Mode 1: trace replay


def read_steps(path: str) -> List[dict]:
    if not os.path.exists(path):
        raise ReplayError(f"not found: {path}")
    steps = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entry["step"], entry["rows"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ReplayError(f"{path}:{number}: not a step line ({e})") from None
            steps.append(entry)
    if not steps:
        raise ReplayError(f"{path}: no steps")
    return steps


def rel_error(ours: List[Tensor], theirs: List[Tensor]) -> float:
    """||ours - theirs|| / max(||theirs||, 1e-300) over the concatenation.

    Entries equal on both sides count as a match, infinite or NaN ones too
    (a causal mask's -inf buffer read 1e300, walkthrough H2), and the scale
    is the norm of the finite entries; an infinity or NaN on one side only
    is an error that is not finite.
    """
    a = torch.cat([t.detach().reshape(-1).double() for t in ours])
    b = torch.cat([t.detach().reshape(-1).double() for t in theirs])
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    difference = torch.where(same, torch.zeros_like(a), a - b)
    return float(difference.norm() / max(float(b[torch.isfinite(b)].norm()), 1e-300))


def check_dense_gradients() -> None:
    """A sparse embedding's gradient comes dense, and clips."""
    embedding = nn.Embedding(5, 3, sparse=True)
    rows = torch.tensor([1, 1, 3])
    (got,) = grads(embedding(rows).sum(), [embedding.weight])
    expected = torch.zeros(5, 3)
    expected[1], expected[3] = 2.0, 1.0
    assert not got.is_sparse and torch.equal(got, expected), got
    embedding.weight.grad = dense(torch.autograd.grad(embedding(rows).sum(), embedding.weight)[0])
    torch.nn.utils.clip_grad_norm_([embedding.weight], 1.0)


def check_rel_error() -> None:
    """Equal infinities match; an infinity against a number does not."""
    inf = float("inf")
    mask = torch.tensor([0.0, -inf, -inf, 2.0])
    assert rel_error([mask], [mask.clone()]) == 0.0
    assert rel_error([torch.tensor([float("nan"), 1.0])], [torch.tensor([float("nan"), 1.0])]) == 0.0
    assert abs(rel_error([torch.tensor([0.0, -inf, 2.2])], [torch.tensor([0.0, -inf, 2.0])]) - 0.1) < 1e-6
    assert not math.isfinite(rel_error([torch.tensor([0.0, -inf])], [torch.tensor([0.0, 1.0])]))


def compare_group(ours: Dict[str, Tensor], engine: Dict[str, Tensor], prefix: str, source: str) -> float:
    """Relative error of the group `prefix.*` (every name on both sides)."""
    theirs = {k[len(prefix) + 1:]: v for k, v in engine.items() if k.startswith(prefix + ".")}
    if set(theirs) != set(ours):
        missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        raise ReplayError(f"{source}: `{prefix}.*` differs from the replay's: missing {missing}, unknown {extra}")
    for name in ours:
        if tuple(ours[name].shape) != tuple(theirs[name].shape):
            raise ReplayError(
                f"{source}: `{prefix}.{name}` has shape {list(theirs[name].shape)}, the replay's is {list(ours[name].shape)}"
            )
    names = sorted(ours)
    return rel_error([ours[n] for n in names], [theirs[n] for n in names])


def need(tensors: Dict[str, Tensor], key: str, source: str, shape: Optional[Tuple[int, ...]] = None) -> Tensor:
    if key not in tensors:
        raise ReplayError(f"{source}: no `{key}`")
    if shape is not None and tuple(tensors[key].shape) != shape:
        raise ReplayError(f"{source}: `{key}` has shape {list(tensors[key].shape)}, expected {list(shape)}")
    return tensors[key]


NONFINITE = 1e300  # how the report writes a NaN or infinite error (JSON has neither)


def error_words(error: float) -> str:
    """An error as the console shows it: a NaN or infinite one (a value
    not finite on one side; walkthrough N4 read 1.00e+300 as a huge
    engine error) in words."""
    return "non-finite" if error >= NONFINITE else f"{error:.2e}"
PARITY_GROUPS = ("losses", "theta", "phi", "hyper", "reg", "buffers")
# The bound, and tests/parity.rs's: f64 runs show about 1e-12.
PARITY_TOLERANCE = 1e-6


def meta_batches(trainer: Trainer, entry: dict, rows_of: Dict[int, Tensor], notes: List[str]):
    """(B_t, B_v) for a step line with a meta step, else None; notes on picks
    outside the public code's pool (the 10 steps before this one)."""
    picks, t = entry.get("meta"), int(entry["step"])
    if picks is None:
        return None
    try:
        train_step, val_step = int(picks["train_step"]), int(picks["val_step"])
        b_train, b_val = trainer.workload.rows(rows_of[train_step]), trainer.workload.rows(rows_of[val_step])
    except (KeyError, TypeError, ValueError) as e:
        raise ReplayError(f"steps.jsonl, step {t}: bad meta picks {picks!r} ({e!r})") from None
    pool = range(max(t - POOL_SIZE, 1), t) or range(t, t + 1)  # empty at step 1: this step's batch
    allowed = {"train": range(t, t + 1) if trainer.s.train_batch == "current" else pool, "val": pool}
    if trainer.s.val_source == "train-batch":
        allowed["val"] = range(train_step, train_step + 1)
    for role, s in (("train", train_step), ("val", val_step)):
        if s not in allowed[role]:
            span = allowed[role]
            notes.append(f"step {t}: the meta step's {role} batch is step {s}'s, outside the public "
                         f"algorithm's steps {span.start}..{span.stop - 1}")
    return b_train, b_val


def compare_state(trainer: Trainer, source: str, losses: Tensor, result: Optional[MetaResult]) -> Dict[str, float]:
    """Relative errors against the engine's state after one step."""
    if not os.path.exists(source):
        raise ReplayError(f"not found: {source}")
    state = safetensors_lite.read(source)
    k = len(trainer.s.loss_names)
    errors = {
        "losses": rel_error([losses], [need(state, "losses", source, (k,))]),
        "theta": compare_group(trainer.theta_by_trace_name(), state, "theta", source),
        "phi": compare_group(trainer.phi_by_engine_name(), state, "phi", source),
    }
    if any(key.startswith("buffer.") for key in state):
        ours = {n: b for n, b in trainer.workload.model.named_buffers()}
        errors["buffers"] = compare_group(ours, state, "buffer", source)
    if result is not None:
        errors["hyper"] = compare_group(trainer.hyper_by_engine_name(result), state, "hyper", source)
        errors["reg"] = rel_error([result.reg], [need(state, "reg", source, ())])
    elif any(key.startswith("hyper.") for key in state):
        raise ReplayError(f"{source}: has `hyper.*` but steps.jsonl has no meta step here")
    return {g: v if math.isfinite(v) else NONFINITE for g, v in errors.items()}


def start_replay(session: str) -> Tuple[Trainer, str]:
    """The f64 trainer with the trace's initial theta and phi."""
    trace = os.path.join(session, "trace")
    settings, _ = load_settings(os.path.join(session, "config.toml"))
    if not os.path.isdir(trace):
        # Said before the precision warning, which would not apply (walkthrough O1).
        raise ReplayError(f"{session} has no trace: it ran without train.trace = true. A traced run writes one, "
                          "e.g. `meltr-tui run --headless -c CONFIG --set train.trace=true --set train.dtype=f64 "
                          "--set train.steps=30` (f64 for the 1e-6 parity bound)")
    if settings.dtype != "f64":
        print(f"warning: the engine ran in {settings.dtype}; the replay runs in f64, expect errors at that precision "
              "(the parity checks trace in f64: train.dtype = \"f64\"; f64 may take other kernels than f32, e.g. "
              "nn.LSTM takes oneDNN's RNN layer in f32 only, so the run's events say which route its meta step took)")
    if settings.val_source == "val":
        raise ReplayError(f"meltr.val_source = {settings.val_source!r}: the trace does not say which held-out rows were used")
    trainer = build(settings, torch.float64, seed=None)
    init_path = os.path.join(trace, "init.safetensors")
    if not os.path.exists(init_path):
        raise ReplayError(f"not found: {init_path}")
    init = safetensors_lite.read(init_path)
    trainer.workload.load_theta(init, init_path)
    load_phi(trainer.meltr, init, init_path)
    if settings.loss_scale != "raw":
        scale_path = os.path.join(trace, "loss-scale.safetensors")
        if not os.path.exists(scale_path):
            raise ReplayError(f"meltr.loss_scale = {settings.loss_scale!r} but the trace has no {scale_path}")
        scale = need(safetensors_lite.read(scale_path), "loss_scale", scale_path, (len(settings.loss_names),))
        trainer.meltr.scale = scale.to(torch.float64)
    trainer.workload.model.train()
    return trainer, trace


def parity_bounds(dtype: str, jvp: str, tolerance: Optional[float]) -> Optional[Dict[str, float]]:
    """Each compared group's bound for the verdict, or None where no verdict
    is meaningful: an f32 run against the f64 replay differs at f32's
    precision, compounded over the steps, so a bound there is the user's to
    give (--tolerance)."""
    if tolerance is None:
        if dtype != "f64":
            return None
        tolerance = PARITY_TOLERANCE
    bounds = {g: tolerance for g in PARITY_GROUPS}
    if jvp == "one-sided":
        # The one-sided difference's own error (1e-8 to 1e-6 relative in
        # f64) is the method's, not a parity gap.
        bounds["hyper"] = max(tolerance, 1e-5)
    return bounds


def verdict(worst: Dict[str, float], worst_step: Dict[str, Optional[int]],
            bounds: Optional[Dict[str, float]]) -> Tuple[Optional[bool], str]:
    """(passed, the line that says so); passed is None with no bounds."""
    if bounds is None:
        return None, ("parity: no verdict (the engine ran in f32; trace with train.dtype = \"f64\", "
                      "or give --tolerance)")
    outside = [f"{g} {error_words(worst[g])} > {bounds[g]:.0e} (worst at step {worst_step[g]})"
               for g in PARITY_GROUPS if worst_step[g] is not None and not worst[g] <= bounds[g]]
    if outside:
        return False, "parity: FAILED: " + "; ".join(outside)
    compared = [g for g in PARITY_GROUPS if worst_step[g] is not None]
    return True, f"parity: passed: {', '.join(compared)} within {min(bounds.values()):.0e} relative"


def replay(session: str, report_path: Optional[str], tolerance: Optional[float] = None) -> dict:
    """Mode 1: replays SESSION_DIR/trace step by step and compares."""
    trainer, trace = start_replay(session)
    steps = read_steps(os.path.join(trace, "steps.jsonl"))
    rows_of: Dict[int, Tensor] = {}
    worst = {g: 0.0 for g in PARITY_GROUPS}
    worst_step: Dict[str, Optional[int]] = {g: None for g in PARITY_GROUPS}
    per_step, notes, meta_steps = [], [], 0
    if trainer.s.dtype != "f64":
        # In the report too: read alone, an f32 run's errors (1e-4 or so)
        # look like a failed parity check (walkthrough I).
        notes.append(f"the engine ran in {trainer.s.dtype} (train.dtype); the replay runs in f64, so the errors "
                     "are at that precision: trace in f64 for a parity check")
    jvp = load_settings(os.path.join(session, "config.toml"))[1].get("aid", {}).get("jvp", "auto")
    if jvp in ("differences", "one-sided"):
        # The replay differentiates exactly: the difference's own error
        # shows in `hyper` (walkthrough V2 read 3.8e-7 against a 1e-6
        # bound and could not tell a near-miss from the expected).
        notes.append(f"the engine took its products by finite differences (aid.jvp = {jvp!r}); the replay's are "
                     "exact, so `hyper` differs by the difference's own error, about "
                     + ("1e-10" if jvp == "differences" else "1e-8 to 1e-6") + " relative in f64")
    for entry in steps:
        t = int(entry["step"])
        rows_of[t] = torch.tensor(entry["rows"], dtype=torch.int64)
        meta = meta_batches(trainer, entry, rows_of, notes)
        if (meta is not None) != meta_step_at(t, trainer.s):
            notes.append(f"step {t}: {'a' if meta else 'no'} meta step, with meltr.meta_every = {trainer.s.meta_every}")
        meta_steps += meta is not None
        losses, result = trainer.step(t, trainer.workload.rows(rows_of[t]), meta)
        if result is not None and result.per_loss and PER_LOSS_NOTE not in notes:
            notes.append(PER_LOSS_NOTE)
        if result is not None and result.neumann_stop is not None:
            notes.append(f"step {t}: the Neumann series diverged at v_{result.neumann_stop} and took v_0 alone "
                         f"(aid.max_growth = {trainer.s.max_growth})")
        errors = compare_state(trainer, os.path.join(trace, f"state-{t}.safetensors"), losses, result)
        for group, value in errors.items():
            if value > worst[group] or worst_step[group] is None:
                worst[group], worst_step[group] = value, t
        per_step.append({"step": t, "meta": result is not None, **errors})
        print(f"step {t:5d}{' meta' if result is not None else '     '}  "
              + "  ".join(f"{g} {error_words(v)}" for g, v in errors.items()), flush=True)

    passed, verdict_line = verdict(worst, worst_step, parity_bounds(trainer.s.dtype, jvp, tolerance))
    report = {
        "steps": len(steps),
        "meta_steps": meta_steps,
        "passed": passed,
        "verdict": verdict_line,
        # A group never compared (a model without buffers, a run with no
        # meta step) is null, not an error of 0.
        "max_rel": {g: (v if worst_step[g] is not None else None) for g, v in worst.items()},
        "worst_step": worst_step,
        "notes": notes,
        "per_step": per_step,
    }
    report_path = report_path or os.path.join(trace, "parity.json")
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    for note in notes[:20]:
        print("note: " + note)
    if len(notes) > 20:
        print(f"note: ... {len(notes) - 20} more in the report")
    print("max relative error: " + "  ".join(
        f"{g} {error_words(v)}" if worst_step[g] is not None else f"{g} n/a" for g, v in worst.items()))
    print(f"report: {report_path}")
    print(verdict_line)
    return report


# --------------------------------------------------------------------------
# Mode 2: a standalone run


class BatchOrder:
    """Per-epoch random permutations of the training rows (seeded), cut into
    consecutive batches; an incomplete last batch is dropped (drop_last)."""

    def __init__(self, samples: int, batch_size: int, seed: int):
        if samples < batch_size:
            raise ReplayError(f"{samples} training samples cannot fill a batch of {batch_size}")
        self.samples, self.batch_size = samples, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.queue: List[Tensor] = []

    def next(self) -> Tensor:
        if not self.queue:
            order = torch.randperm(self.samples, generator=self.generator)
            per_epoch = self.samples // self.batch_size
            self.queue = [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(per_epoch)]
        return self.queue.pop(0)


class TraceWriter:
    """Writes the engine's trace format (for testing the replay)."""

    def __init__(self, directory: str, settings: Settings, raw: dict, trainer: Trainer):
        self.dir = os.path.join(directory, "trace")
        os.makedirs(self.dir, exist_ok=True)
        config = json.loads(json.dumps(raw))  # a deep copy
        workload = config.setdefault("workload", {})
        for key in ("model", "train", "val"):
            workload[key] = os.path.abspath(getattr(settings, key))
        config.setdefault("train", {}).update(dtype=settings.dtype, steps=settings.steps)
        with open(os.path.join(directory, "config.toml"), "w") as f:
            f.write(toml_dumps(config))
        init = {"theta." + n: t for n, t in trainer.theta_by_trace_name().items()}
        init.update({"phi." + n: t for n, t in trainer.phi_by_engine_name().items()})
        safetensors_lite.write(os.path.join(self.dir, "init.safetensors"), init)
        self.lines = open(os.path.join(self.dir, "steps.jsonl"), "w")

    def step(self, trainer: Trainer, t: int, rows: Tensor, picks: Optional[Tuple[int, int]], losses: Tensor,
             result: Optional[MetaResult]) -> None:
        meta = None if picks is None else {"train_step": picks[0], "val_step": picks[1]}
        self.lines.write(json.dumps({"step": t, "rows": rows.tolist(), "meta": meta}) + "\n")
        self.lines.flush()
        state = {"theta." + n: x for n, x in trainer.theta_by_trace_name().items()}
        state["losses"] = losses
        state.update({"phi." + n: p for n, p in trainer.phi_by_engine_name().items()})
        state.update({"buffer." + n: b for n, b in trainer.workload.model.named_buffers()})
        if result is not None:
            state.update({"hyper." + n: h for n, h in trainer.hyper_by_engine_name(result).items()})
            state["reg"] = result.reg
        safetensors_lite.write(os.path.join(self.dir, f"state-{t}.safetensors"), state)

    def close(self) -> None:
        self.lines.close()


def evaluate(workload: Workload, batch_size: int) -> Tuple[Dict[str, float], Dict[str, float]]:
    """Means of every output over the validation split in eval() mode
    without gradients, as the engine takes them: consecutive batches of
    batch_size, then the rows left over, each output weighted by its
    batch's rows (every row counts once; an output a batch leaves out is
    averaged over the rows that had it): (metrics without their prefix,
    losses)."""
    workload.model.eval()
    n = Workload.samples(workload.val)
    length = min(batch_size, n)
    sums: Dict[str, float] = {}
    counts: Dict[str, int] = {}

    def take_means() -> None:
        sums.clear()
        counts.clear()
        for start in range(0, n, length):
            rows = torch.arange(start, min(start + length, n))
            for name, value in workload.outputs(workload.rows(rows, workload.val)).items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(rows)
                counts[name] = counts.get(name, 0) + len(rows)

    try:
        with torch.no_grad():
            take_means()
    except RuntimeError as e:
        # A forward that differentiates inside itself (torch.autograd.grad:
        # a PINN's residual, a gradient penalty) needs autograd, as the
        # engine gives it.
        if "does not require grad" not in str(e):
            raise
        with torch.enable_grad():
            take_means()
    workload.model.train()
    means = {k: v / counts[k] for k, v in sums.items()}
    metrics = {k[len(METRIC_PREFIX):]: v for k, v in means.items() if k.startswith(METRIC_PREFIX)}
    losses = {k: v for k, v in means.items() if not k.startswith(METRIC_PREFIX)}
    return metrics, losses


def meta_step_at(t: int, settings) -> bool:
    """Whether step t (1-based) has a meta step: t % meta_every == 0, or with
    meltr.first_meta = "at-step-1" (the public code's schedule: its 0-based
    global_step % meta_every == 0) (t - 1) % meta_every == 0."""
    if settings.first_meta == "at-step-1":
        return (t - 1) % settings.meta_every == 0
    return t % settings.meta_every == 0


def draw_meta_batches(picker: random.Random, pool: List[Tuple[int, Tensor]], t: int, rows: Tensor,
                      settings: Settings) -> Tuple[Tuple[int, Tensor], Tuple[int, Tensor]]:
    """((train step, rows), (val step, rows)) for step t's meta step: B_v, then
    B_t, each random.choices from the batches of the steps before t (the
    public code). With none yet (meta_every = 1, step 1) the public code's
    variables still hold this step's batch. meltr.train_batch = "current"
    (the engine's option) takes this step's batch as B_t."""
    candidates = pool or [(t, rows)]
    val = picker.choices(candidates)[0]
    train = picker.choices(candidates)[0]
    if settings.train_batch == "current":
        train = (t, rows)
    if settings.val_source == "train-batch":
        val = train
    return train, val


# The engine's default `meltr.max_loss_ratio`.
ENGINE_MAX_LOSS_RATIO = 50.0


def engine_cap_note(losses: List[float], names: List[str], cap: float) -> Optional[str]:
    """Where the engine's default `meltr.loss_scale = "capped"` would read a
    loss of this first batch (primary first) otherwise than this run, which
    reads them raw as the public code does: a user comparing the engine's
    default run with this one compares two algorithms (walkthrough U's x20
    reconstruction loss, 130x the primary, was capped by one and not the
    other, unsaid)."""
    primary = abs(losses[0])
    capped = [(name, cap * primary / abs(v)) for name, v in zip(names[1:], losses[1:])
              if primary > 0 and abs(v) > cap * primary]
    if not capped:
        return None
    each = ", ".join(f"`{name}` at x{factor:.4g}" for name, factor in capped)
    return (f"the engine's default meltr.loss_scale = \"capped\" reads {each} on a first batch like this one "
            f"(over {cap:g} times the primary's); this run reads the losses raw, as the public code does: "
            "an engine run with meltr.loss_scale = \"raw\" is this algorithm")


def run(config: str, seed: int, steps: Optional[int], out: str, threads: int, dtype_name: Optional[str],
        trace_dir: Optional[str]) -> dict:
    """Mode 2: the public algorithm on a torchscript-workload config."""
    torch.set_num_threads(threads)
    settings, raw = load_settings(config)
    if steps is not None:
        settings.steps = steps
    # Its own draws from the seed (PyTorch's init, per-epoch permutations):
    # not the engine's run of the same workload.seed, only one of the same
    # distribution. `trace` is the step-for-step comparison.
    settings.seed = seed
    if settings.steps < 1:
        raise ReplayError(f"nothing to run: {settings.steps} steps")
    dtype_name = dtype_name or ("f64" if trace_dir else "f32")
    settings.dtype = dtype_name
    dtype = {"f32": torch.float32, "f64": torch.float64}[dtype_name]
    if settings.init not in ("pytorch", "residual"):
        print(f"note: meltr.init = {settings.init!r} is the engine's option; this run uses PyTorch's default init")
    if settings.val_source == "val":
        raise ReplayError(f"meltr.val_source = {settings.val_source!r} is not the public algorithm; use `recent`")
    # `capped` is the engine's default, which a session's or a sweep's
    # config writes out: read raw, as the public code, with the note below
    # where capping would matter (walkthrough Z4's sweep config was refused).
    if settings.loss_scale not in ("raw", "capped"):
        raise ReplayError(f"meltr.loss_scale = {settings.loss_scale!r}: a standalone run reads the raw losses, "
                          "as the public code; `trace` replays the engine's factors")
    engine_capped = settings.loss_scale == "capped" or "loss_scale" not in raw.get("meltr", {})
    started = time.perf_counter()
    trainer = build(settings, dtype, seed)
    workload = trainer.workload
    workload.model.train()
    order = BatchOrder(Workload.samples(workload.train), settings.batch_size, seed)
    picker = random.Random(seed)
    writer = TraceWriter(trace_dir, settings, raw, trainer) if trace_dir else None
    if not trace_dir:
        # Walkthrough N paired this run's seed 0 with the engine's and read
        # their first batches' notes as a disagreement.
        print(f"note: batches and meta-step picks are this replay's own draws from seed {seed}, not an engine "
              "run's order: compare the spread over seeds with the engine's; `trace` replays an engine run's "
              "batches step for step")

    pool: List[Tuple[int, Tensor]] = []  # (step, rows) of the steps before this one
    weights: List[Tensor] = []
    primary_weight_start = None
    # Every train.eval_every steps and at the end, as the engine evaluates
    # (walkthroughs I and K: the final metrics alone had no best or step to
    # set beside `table --best` or `--at-step`). Training forwards are
    # seeded per step, so these evaluations change none of them.
    evals: List[dict] = []
    said_per_loss = False
    for t in range(1, settings.steps + 1):
        rows = order.next()
        picks = meta = None
        if meta_step_at(t, settings):
            (train_step, train_rows), (val_step, val_rows) = draw_meta_batches(picker, pool, t, rows, settings)
            picks = (train_step, val_step)
            meta = (workload.rows(train_rows), workload.rows(val_rows))
        losses, result = trainer.step(t, workload.rows(rows), meta, weights)
        if result is not None and result.per_loss and not said_per_loss:
            print("note: " + PER_LOSS_NOTE)
            said_per_loss = True
        if t == 1 and engine_capped:
            cap = float(raw.get("meltr", {}).get("max_loss_ratio", ENGINE_MAX_LOSS_RATIO))
            note = engine_cap_note([float(v) for v in losses], settings.loss_names, cap)
            if note:
                print("note: " + note)
        # As the engine's first train line: the weights at step log_every.
        if primary_weight_start is None and t >= settings.log_every:
            primary_weight_start = float(weights[-1][0])
        weights = weights[-WEIGHT_WINDOW:]
        if writer:
            writer.step(trainer, t, rows, picks, losses, result)
        pool.append((t, rows))
        pool = pool[-POOL_SIZE:]
        if t % settings.eval_every == 0 or t == settings.steps:
            metrics, val_losses = evaluate(workload, settings.eval_batch_size)
            evals.append({"step": t, "metrics": metrics, "losses": val_losses})
            # Progress on stderr (walkthrough G2 waited minutes on a silent
            # run that had finished in 37 s); stdout keeps the summary.
            shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            print(f"step {t}/{settings.steps} ({time.perf_counter() - started:.0f} s): {shown}",
                  file=sys.stderr, flush=True)
    if writer:
        writer.close()
    mean_weights = torch.stack(weights).double().mean(0)
    # The engine's table and final-weights figure take the median (one
    # step's weights can spike); torch's median of an even count is the
    # lower middle one, so the two middles are averaged here as there.
    ordered = torch.stack(weights).double().sort(0).values
    middle = len(weights) // 2
    median_weights = ordered[middle] if len(weights) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    summary = {
        "metrics": metrics,
        "losses": val_losses,  # on the validation split, as `metrics`
        "evals": evals,  # each evaluation's step, metrics and validation losses
        "weights": {n: float(w) for n, w in zip(settings.loss_names, mean_weights)},
        "median_weights": {n: float(w) for n, w in zip(settings.loss_names, median_weights)},
        "primary_weight_start": primary_weight_start,
        "steps": settings.steps,
        "seconds": time.perf_counter() - started,
    }
    with open(out, "w") as f:
        json.dump(summary, f, indent=1)
    # The summary's gist; the whole of it is in `out`.
    print("validation metrics: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
          + f" (and at {len(evals)} evaluation{'s' if len(evals) != 1 else ''}, every train.eval_every = {settings.eval_every} steps, in `evals`)")
    print(f"weights over the last {len(weights)} steps (meltr-tui's table takes the median of its logged lines "
          "in the last 10% of steps): mean "
          + "  ".join(f"{n} {w:.3g}" for n, w in summary["weights"].items())
          + "; median " + "  ".join(f"{n} {w:.3g}" for n, w in summary["median_weights"].items()))
    print(f"wrote {out} ({settings.steps} steps in {summary['seconds']:.1f} s)")
    return summary


# --------------------------------------------------------------------------
# Self-test


class TinyModel(nn.Module):
    """A small classifier for the self-test: the primary loss, two
    auxiliaries (a reconstruction and a noise label), a metric, a parameter
    no loss uses, and optionally a BatchNorm (buffers, train/eval modes)."""

    def __init__(self, features: int = 6, hidden: int = 8, classes: int = 3, batch_norm: bool = False):
        super().__init__()
        self.body = nn.Linear(features, hidden)
        self.norm = nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
        self.head = nn.Linear(hidden, classes)
        self.decoder = nn.Linear(hidden, features)
        self.noise_head = nn.Linear(hidden, classes)
        self.unused = nn.Parameter(torch.ones(2))

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        x = batch["x"]
        hidden = torch.tanh(self.norm(self.body(x)))
        logits = self.head(hidden)
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == batch["y"]).to(x).mean() * 100.0
        return {
            "cls": F.cross_entropy(logits, batch["y"]),
            "recon": (self.decoder(hidden) - x).pow(2).mean(),
            "noise": F.cross_entropy(self.noise_head(hidden), batch["noise"]),
            "metric/acc": accuracy,
        }


TINY_LOSSES = ["cls", "recon", "noise"]


def tiny_data(samples: int, seed: int, features: int = 6, classes: int = 3) -> Dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, features, generator=torch.Generator().manual_seed(99)) * 1.5
    y = torch.randint(0, classes, (samples,), generator=g)
    x = centers[y] + torch.randn(samples, features, generator=g)
    noise = torch.randint(0, classes, (samples,), generator=g)
    return {"x": x, "y": y, "noise": noise}


def write_tiny_workload(directory: str, config: dict, seed: int = 0) -> str:
    """model.pt, train/val.safetensors and config.toml for TinyModel; returns the config path."""
    torch.manual_seed(seed)
    torch.jit.script(TinyModel(batch_norm=True)).save(os.path.join(directory, "model.pt"))
    safetensors_lite.write(os.path.join(directory, "train.safetensors"), tiny_data(256, seed + 1))
    safetensors_lite.write(os.path.join(directory, "val.safetensors"), tiny_data(128, seed + 2))
    base = {
        "workload": {"kind": "torchscript", "model": "model.pt", "train": "train.safetensors",
                     "val": "val.safetensors", "primary": "cls", "auxiliary": ["recon", "noise"],
                     "batch_size": 16, "seed": seed},
        "train": {"steps": 100, "lr": 0.01},
        "meltr": {"d_model": 16, "d_hidden": 8, "d_ff": 32, "heads": 4},
    }
    for section, values in config.items():
        base.setdefault(section, {}).update(values)
    path = os.path.join(directory, "config.toml")
    with open(path, "w") as f:
        f.write(toml_dumps(base))
    return path


def check_encoder_layer() -> float:
    """The hand-written layer equals the stock nn.TransformerEncoderLayer (eval, no grad, f64)."""
    worst = 0.0
    for d, heads, ff, shape in ((16, 4, 32, (2, 5)), (32, 8, 64, (1, 3)), (8, 1, 16, (3, 7))):
        torch.manual_seed(d)
        meltr = Meltr(shape[1], d, 4, ff, heads).double()
        with torch.no_grad():
            for p in meltr.parameters():  # away from the default LayerNorm identity
                p.add_(0.1 * torch.randn_like(p))
            x = torch.randn(*shape, d, dtype=torch.float64)
            worst = max(worst, float((encoder_layer(meltr.encoder, x) - meltr.encoder(x)).abs().max()))
            losses = torch.rand(shape[1], dtype=torch.float64) * 3
            worst = max(worst, float((meltr(losses) - meltr.forward_stock(losses)).abs()))
    assert worst < 1e-12, f"hand-written encoder layer differs from the stock one by {worst:.3e}"
    return worst


class FlatView:
    """A dict of tensors as one flat vector (for torch.func references)."""

    def __init__(self, named: Dict[str, Tensor]):
        self.shapes = [(n, t.shape, t.numel()) for n, t in named.items()]
        self.flat = torch.cat([t.detach().reshape(-1) for t in named.values()])

    def unflatten(self, flat: Tensor) -> Dict[str, Tensor]:
        out, offset = {}, 0
        for name, shape, numel in self.shapes:
            out[name] = flat[offset:offset + numel].view(shape)
            offset += numel
        return out


def tiny_problem(seed: int):
    """A TinyModel, a small MELTR (f64) and two batches."""
    torch.manual_seed(seed)
    model = TinyModel().double()
    meltr = Meltr(3, 8, 4, 16, 2).double()
    data = {n: t.double() if t.is_floating_point() else t for n, t in tiny_data(32, seed).items()}
    b_train = {n: t[:16] for n, t in data.items()}
    b_val = {n: t[16:] for n, t in data.items()}
    return model, meltr, b_train, b_val


def reference_hypergradient(model, meltr, b_train, b_val, gamma, iterations, alpha, gamma_direct, names=TINY_LOSSES):
    """The same quantity from explicit matrices built by torch.func (another
    autodiff path): H and the mixed Jacobian d(grad_theta M)/dphi as matrices."""
    from torch.func import functional_call, grad, hessian, jacrev

    th = FlatView({n: p for n, p in model.named_parameters() if p.requires_grad})
    ph = FlatView(dict(meltr.named_parameters()))

    def losses(theta: Tensor, batch) -> Tensor:
        out = functional_call(model, th.unflatten(theta), (batch,))
        return torch.stack([out[n] for n in names])

    def combined(theta: Tensor, phi: Tensor) -> Tensor:
        return functional_call(meltr, ph.unflatten(phi), (losses(theta, b_train),))

    def reg(theta: Tensor, phi: Tensor) -> Tensor:
        return (losses(theta, b_train).sum() - combined(theta, phi)).abs()

    def l_pri(theta: Tensor) -> Tensor:
        return losses(theta, b_val)[0] + gamma * reg(theta, ph.flat)

    v = grad(l_pri)(th.flat)
    h_matrix = hessian(combined, argnums=0)(th.flat, ph.flat)
    p = v.clone()
    for _ in range(iterations):
        v = v - alpha * (h_matrix @ v)
        p = p + v
    mixed = jacrev(grad(combined, argnums=0), argnums=1)(th.flat, ph.flat)  # [n_theta, n_phi]
    hyper = -(mixed.T @ p)
    if gamma_direct:
        hyper = hyper + gamma * grad(reg, argnums=1)(th.flat, ph.flat)
    return hyper, reg(th.flat, ph.flat), h_matrix, p


def check_hypergradient() -> float:
    """hypergradient() against reference_hypergradient() in f64."""
    worst = 0.0
    for seed, gamma, iterations, direct in ((0, 0.1, 0, False), (1, 0.0, 0, False), (2, 0.3, 0, True), (3, 0.1, 4, False)):
        model, meltr, b_train, b_val = tiny_problem(seed)
        theta = list(model.parameters())

        def losses_fn(batch):
            out = model(batch)
            return torch.stack([out[n] for n in TINY_LOSSES])

        ours = hypergradient(losses_fn, meltr, theta, b_train, b_val, gamma, iterations, 0.1, direct)
        hyper, reg, _, _ = reference_hypergradient(model, meltr, b_train, b_val, gamma, iterations, 0.1, direct)
        error = max(rel_error(ours.hyper, [hyper]), rel_error([ours.reg], [reg]))
        assert float(hyper.norm()) > 1e-8, "degenerate test: zero hypergradient"
        assert error < 1e-10, f"hypergradient (seed {seed}, J={iterations}, direct={direct}) off by {error:.3e}"
        worst = max(worst, error)
        if iterations == 0:
            by_loss = hypergradient(losses_fn, meltr, theta, b_train, b_val, gamma, 0, 0.1, direct,
                                    force_per_loss=True)
            error = rel_error(by_loss.hyper, [hyper])
            assert by_loss.per_loss and error < 1e-10, f"loss-by-loss mixed term (seed {seed}) off by {error:.3e}"
            worst = max(worst, error)
    return worst


class CtcModel(nn.Module):
    """A frame classifier with F.ctc_loss as its primary (no double backward)
    and a frame reconstruction as its auxiliary."""

    def __init__(self, features: int = 4, classes: int = 5):
        super().__init__()
        self.frames = nn.Linear(features, classes)
        self.decoder = nn.Linear(classes, features)

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        x = batch["x"]  # [B, T, F]
        logits = self.frames(x)
        log_probs = logits.log_softmax(-1).transpose(0, 1)  # [T, B, C]
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        targets = batch["y"]
        target_lengths = torch.full((x.shape[0],), targets.shape[1], dtype=torch.long)
        return {
            "ctc": F.ctc_loss(log_probs, targets, lengths, target_lengths),
            "recon": (self.decoder(logits.tanh()) - x).pow(2).mean(),
        }


def check_per_loss_without_second_derivatives() -> float:
    """A CTC model: J = 0 falls back to the loss-by-loss mixed term, which
    central differences of v . grad_theta M over phi confirm (first-order
    backward passes only, f64); J = 2 raises torch's own error."""
    torch.manual_seed(0)
    model = CtcModel().double()
    meltr = Meltr(2, 8, 4, 16, 2).double()
    g = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(12, 8, 4, generator=g, dtype=torch.float64),
            "y": torch.randint(1, 5, (12, 3), generator=g)}
    b_train = {n: t[:6] for n, t in data.items()}
    b_val = {n: t[6:] for n, t in data.items()}
    theta = list(model.parameters())

    def losses_fn(batch):
        out = model(batch)
        return torch.stack([out["ctc"], out["recon"]])

    result = hypergradient(losses_fn, meltr, theta, b_train, b_val, 0.1, 0, 0.1, False)
    assert result.per_loss, "a CTC model's mixed term should come loss by loss"
    # v0 = grad_theta(l_primary(B_v) + gamma * |sum l - M(l)|(B_t)), as hypergradient builds it
    train = losses_fn(b_train)
    v = grads(losses_fn(b_val)[0] + 0.1 * (meltr.reference_sum(train) - meltr(train)).abs(), theta)
    phi = list(meltr.parameters())
    direction = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in phi]

    def pairing() -> float:
        gradient = grads(meltr(losses_fn(b_train)), theta)
        return float(sum((a * b).sum() for a, b in zip(gradient, v)))

    eps = 1e-5
    with torch.no_grad():
        for p, d in zip(phi, direction):
            p.add_(eps * d)
    upper = pairing()
    with torch.no_grad():
        for p, d in zip(phi, direction):
            p.sub_(2 * eps * d)
    lower = pairing()
    with torch.no_grad():
        for p, d in zip(phi, direction):
            p.add_(eps * d)
    expected = -(upper - lower) / (2 * eps)
    ours = float(sum((h * d).sum() for h, d in zip(result.hyper, direction)))
    error = abs(ours - expected) / abs(expected)
    assert abs(expected) > 1e-8 and error < 1e-6, f"loss-by-loss mixed term {ours} vs differences {expected}"
    try:
        hypergradient(losses_fn, meltr, theta, b_train, b_val, 0.1, 2, 0.1, False)
    except RuntimeError as e:
        assert lacks_second_derivative(e), e
    else:
        raise AssertionError("J = 2 on a CTC model should need its missing second derivative")
    return error


class QuadraticLosses(nn.Module):
    """Losses l_k = c_k * (theta - center)^T A_k (theta - center) / 2 + e_k
    (center from the batch), for the Neumann check: at center = theta* and
    theta = theta* + eps, the Hessian of M(l(theta)) is
    sum_k w_k c_k A_k + O(eps^2), positive definite when c_k = sign(w_k)."""

    names = ["a", "b", "c"]

    def __init__(self, n: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        roots = torch.randn(3, n, n, generator=g, dtype=torch.float64)
        self.register_buffer("curvature", roots @ roots.transpose(1, 2) / n + 0.5 * torch.eye(n, dtype=torch.float64))
        self.register_buffer("offset", torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64))
        self.register_buffer("sign", torch.ones(3, dtype=torch.float64))
        self.theta = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        d = self.theta - batch["center"]
        quadratic = 0.5 * torch.einsum("i,kij,j->k", d, self.curvature, d)
        losses = self.sign * quadratic + self.offset
        return {name: losses[k] for k, name in enumerate(self.names)}


def check_neumann_solve() -> Tuple[float, int, float]:
    """With (I - alpha H) contracting, the Neumann p (double-backward HVPs,
    as the meta step computes them) tends to H^-1 v_0 / alpha: compared with
    a direct solve on the explicit Hessian (torch.func)."""
    n = 5
    torch.manual_seed(5)
    model = QuadraticLosses(n, seed=5)
    meltr = Meltr(3, 8, 4, 16, 2).double()
    center = torch.randn(n, dtype=torch.float64)
    with torch.no_grad():
        model.sign.copy_(effective_weights(meltr, model.offset).sign())
        model.theta.copy_(center + 0.01 * torch.randn(n, dtype=torch.float64))
    b_train = {"center": center}
    b_val = {"center": center + torch.randn(n, dtype=torch.float64)}
    _, _, h_matrix, _ = reference_hypergradient(model, meltr, b_train, b_val, 0.0, 0, 0.1, False, model.names)
    eigen = torch.linalg.eigvalsh(h_matrix)
    assert eigen[0] > 0, f"test problem: the Hessian is not positive definite ({eigen.tolist()})"
    alpha = float(2.0 / (eigen[0] + eigen[-1]))
    rate = float((eigen[-1] - eigen[0]) / (eigen[-1] + eigen[0]))
    iterations = int(math.ceil(math.log(1e-15) / math.log(rate)))

    theta = list(model.parameters())
    v0 = grads(model(b_val)["a"], theta)
    graph = GradientGraph(meltr(torch.stack(list(model(b_train).values()))), theta)
    p, _ = neumann(graph.hvp, v0, iterations, alpha)
    flat_v0 = torch.cat([x.reshape(-1) for x in v0])
    direct = torch.linalg.solve(h_matrix, flat_v0) / alpha
    error = rel_error(p, [direct])
    assert error < 1e-10, f"Neumann series vs direct solve: {error:.3e} after {iterations} iterations"

    # A diverging series (alpha * lambda_max = 3) stops at aid.max_growth,
    # at the first term past it, and takes v_0 alone.
    alpha = float(3.0 / eigen[-1])
    p, stop = neumann(graph.hvp, v0, 50, alpha, max_growth=10.0)
    v = torch.cat([x.reshape(-1) for x in v0])
    grown = 0
    while float(v.norm()) <= 10.0 * float(flat_v0.norm()):
        v, grown = v - alpha * (h_matrix @ v), grown + 1
    assert stop == grown and rel_error(p, v0) == 0.0, (stop, grown, rel_error(p, v0))
    return error, iterations, rate


def check_round_trip() -> Dict[str, float]:
    """run --write-trace on a TorchScript TinyModel, then replay the trace."""
    import contextlib
    import io

    worst: Dict[str, float] = {}
    variants = (
        {"meltr": {"meta_every": 3}},
        {"train": {"lr_schedule": "cosine", "weight_decay": 0.01}, "aid": {"iterations": 2, "alpha": 0.05},
         "meltr": {"meta_every": 2, "gamma_direct": True, "meta_optimizer": "adamw"}},
        {"meltr": {"meta_every": 1, "train_batch": "current", "gamma": 0.0}},
    )
    for variant in variants:
        with tempfile.TemporaryDirectory() as directory:
            config = write_tiny_workload(directory, variant)
            session = os.path.join(directory, "session")
            with contextlib.redirect_stdout(io.StringIO()):
                run(config, 3, 14, os.path.join(directory, "run.json"), torch.get_num_threads(), None, session)
                report = replay(session, None)
            assert report["meta_steps"] > 0 and report["passed"] is True, report["verdict"]
            for group, value in report["max_rel"].items():
                if value is not None:
                    worst[group] = max(worst.get(group, 0.0), value)
            _check_replay_sees_changes(session)
    assert all(v < 1e-13 for v in worst.values()), f"trace round trip: {worst}"
    # An f32 trace says so in its report, not on stderr alone; a run
    # evaluates every train.eval_every steps and at its end.
    with tempfile.TemporaryDirectory() as directory:
        config = write_tiny_workload(directory, {**variants[0], "train": {"eval_every": 4}})
        session = os.path.join(directory, "session")
        with contextlib.redirect_stdout(io.StringIO()):
            summary = run(config, 3, 6, os.path.join(directory, "run.json"), torch.get_num_threads(), "f32", session)
            report = replay(session, None)
        assert any("ran in f32" in note for note in report["notes"]), report["notes"]
        assert report["passed"] is None and "no verdict" in report["verdict"], report["verdict"]
        assert [e["step"] for e in summary["evals"]] == [4, 6], summary["evals"]
        assert summary["evals"][-1]["metrics"] == summary["metrics"], summary
    return worst


def _check_replay_sees_changes(session: str) -> None:
    """A perturbed engine state shows up in the report, at its step."""
    import contextlib
    import io

    path = os.path.join(session, "trace", "state-5.safetensors")
    state = safetensors_lite.read(path)
    for key in state:
        if key.startswith("theta."):
            state[key] = state[key] * (1 + 1e-9)
    safetensors_lite.write(path, state)
    with contextlib.redirect_stdout(io.StringIO()):
        report = replay(session, os.path.join(session, "perturbed.json"))
    assert report["worst_step"]["theta"] == 5 and 0.5e-9 < report["max_rel"]["theta"] < 2e-9, report["max_rel"]
    assert report["passed"] is True, report["verdict"]
    with contextlib.redirect_stdout(io.StringIO()):
        strict = replay(session, os.path.join(session, "perturbed.json"), tolerance=1e-10)
    assert strict["passed"] is False and "theta" in strict["verdict"] and "step 5" in strict["verdict"], strict


def self_test() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(f"torch {torch.__version__}")
    print(f"encoder layer: hand-written vs stock, f64, max |diff| = {check_encoder_layer():.2e}")
    print(f"hypergradient vs torch.func explicit matrices (J=0, gamma 0/0.1, gamma_direct; J=4), "
          f"max rel = {check_hypergradient():.2e}")
    print(f"a CTC model (no double backward) at J=0: the mixed term loss by loss vs central differences, "
          f"rel = {check_per_loss_without_second_derivatives():.1e}")
    error, iterations, rate = check_neumann_solve()
    print(f"Neumann p vs direct solve (contraction {rate:.3f}, J={iterations}), rel = {error:.2e}; "
          "a diverging series stops at aid.max_growth")
    # The engine's `forward_seeds_are_pinned` test holds the same values.
    pins = [forward_seed(0, 1, INNER_FORWARD), forward_seed(7, 30, META_TRAIN_FORWARD),
            forward_seed(_MASK64, 12345, META_VAL_FORWARD)]
    assert pins == [5022792191686593838, 1818162376358596220, 3646454355600130421], pins
    print("forward seeds: the engine's pinned values")
    check_rel_error()
    print("relative errors: equal infinities (a causal mask's -inf) match")
    check_dense_gradients()
    print("a sparse embedding's gradient: dense, as the engine takes it")
    worst = check_round_trip()
    print("trace round trip (run --write-trace, then trace), max rel: "
          + "  ".join(f"{g} {v:.1e}" for g, v in worst.items()))
    print(f"self-test passed in {time.perf_counter() - started:.1f}s")


# --------------------------------------------------------------------------
# Command line


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="An independent PyTorch implementation of the public MELTR algorithm "
                    "(trace replay against meltr-tui, standalone runs, self-test)."
    )
    parser.add_argument("--self-test", action="store_true", help="run the numerical self-checks")
    sub = parser.add_subparsers(dest="mode")
    trace = sub.add_parser("trace", help="replay an engine trace (train.trace = true) and compare, step by step")
    trace.add_argument("session", help="the session directory (holds config.toml and trace/)")
    trace.add_argument("--report", help="the JSON report (default: SESSION_DIR/trace/parity.json)")
    trace.add_argument("--threads", type=int, default=1, help="torch's intra-op threads (default 1)")
    trace.add_argument("--tolerance", type=float,
                       help=f"the largest relative error that passes (default {PARITY_TOLERANCE:g} for an f64 "
                            "trace; an f32 trace gets a verdict only with this); exit status 1 when outside")
    standalone = sub.add_parser("run", help="a standalone run of the public algorithm")
    standalone.add_argument("config", help="a torchscript-workload config (paths relative to it)")
    standalone.add_argument(
        "--seed", type=int, required=True,
        help="seeds this run's own draws (MELTR's init, batch order, meta picks): an independent sample, "
             "not the engine's run of the same workload.seed; for a step-for-step comparison, replay an "
             "engine trace with `trace`")
    standalone.add_argument("--steps", type=int, help="default: train.steps")
    standalone.add_argument("--out", required=True, help="the summary JSON")
    standalone.add_argument("--threads", type=int, default=1, help="torch's intra-op threads (default 1)")
    standalone.add_argument("--dtype", choices=["f32", "f64"], help="default f32 (f64 with --write-trace)")
    standalone.add_argument("--write-trace", metavar="DIR", help="also write the engine's trace format into DIR")
    args = parser.parse_args(argv)
    try:
        if args.self_test:
            self_test()
        elif args.mode == "trace":
            torch.set_num_threads(args.threads)
            if replay(args.session, args.report, args.tolerance)["passed"] is False:
                return 1
        elif args.mode == "run":
            run(args.config, args.seed, args.steps, args.out, args.threads, args.dtype, args.write_trace)
        else:
            parser.print_help()
            return 2
    except ReplayError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
