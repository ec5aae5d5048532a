#!/usr/bin/env python3
"""Exports a wide MLP with four losses, the shape issue 16 timed meltr-tui against
a plain PyTorch loop on: about 3.2M parameters (input and width 1024, three hidden
layers), batch 64, so the optimizer and clipping weigh as much as in a real
fine-tuning run and every step is mostly large matrix products.

Writes, into --out (default: target/wide-mlp):
  model.pt            TorchScript: forward(batch: Dict[str, Tensor]) -> Dict[str, Tensor]
                      and the optional loss(batch, name: str) -> Tensor
  train.safetensors   features x (1024 floats), labels for the three heads, targets
  val.safetensors     the same for validation
  wide_mlp.toml       a meltr-tui config for it (MELTR, factorized AID, J = 0)

    ./.torch-python examples/torchscript/export_wide_mlp.py --out target/wide-mlp
    ./.torch-python scripts/side_by_side.py -c target/wide-mlp/wide_mlp.toml

Losses (all through the shared trunk):
  primary   10-way classification of a label driven by a linear read-out of x
  coarse    3-way classification of a coarser grouping of the same label (helpful)
  recon     squared error of a 16-number linear projection of x (helpful, other scale)
  noise     classification of random labels (harmful by construction)
Metric: metric/acc, validation accuracy of the primary head, in percent.
Elementary ops only (linear, relu, logsumexp cross-entropy): double backward and
forward-mode AD both work, so `exact` and `factorized` AID both apply.
"""

import argparse
import os
import sys
import warnings
from typing import Dict

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_two_stream import write_safetensors  # noqa: E402

WIDTH = 1024
CLASSES = 10
GROUPS = 3
RECON = 16
NOISE_CLASSES = 8


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    log_probs = logits - torch.logsumexp(logits, -1, keepdim=True)
    return -log_probs.gather(-1, target.unsqueeze(-1)).mean()


class WideMlp(nn.Module):
    def __init__(self, width: int = WIDTH, depth: int = 3):
        super().__init__()
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.primary_head = nn.Linear(width, CLASSES)
        self.coarse_head = nn.Linear(width, GROUPS)
        self.recon_head = nn.Linear(width, RECON)
        self.noise_head = nn.Linear(width, NOISE_CLASSES)

    @torch.jit.export
    def loss(self, batch: Dict[str, Tensor], name: str) -> Tensor:
        """One loss (the contract's optional method); the meta step's validation
        forward needs only the primary."""
        if name == "primary":
            return cross_entropy(self.primary_head(self.trunk(batch["x"])), batch["label"])
        return self.forward(batch)[name]

    def forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        h = self.trunk(batch["x"])
        logits = self.primary_head(h)
        primary = cross_entropy(logits, batch["label"])
        coarse = cross_entropy(self.coarse_head(h), batch["group"])
        recon = (self.recon_head(h) - batch["recon"]).pow(2).mean()
        noise = cross_entropy(self.noise_head(h), batch["noise"])
        with torch.no_grad():
            acc = (logits.argmax(-1) == batch["label"]).to(h).mean() * 100.0
        return {
            "primary": primary,
            "coarse": coarse,
            "recon": recon,
            "noise": noise,
            "metric/acc": acc,
        }


def make_split(samples: int, generator: torch.Generator, width: int = WIDTH) -> Dict[str, Tensor]:
    """Labels from fixed random read-outs of x (drawn from their own seeds, so
    both splits share them), with 10% of the labels flipped."""
    readout = torch.randn(width, CLASSES, generator=torch.Generator().manual_seed(11))
    projection = torch.randn(width, RECON, generator=torch.Generator().manual_seed(12))
    x = torch.randn(samples, width, generator=generator)
    label = (x @ readout).argmax(-1)
    flip = torch.rand(samples, generator=generator) < 0.1
    label = torch.where(flip, torch.randint(0, CLASSES, (samples,), generator=generator), label)
    return {
        "x": x.float(),
        "label": label.long(),
        "group": (label % GROUPS).long(),
        "recon": (x @ projection / width**0.5).float(),
        "noise": torch.randint(0, NOISE_CLASSES, (samples,), generator=generator).long(),
    }


CONFIG = """# MELTR fine-tuning of the wide MLP exported by export_wide_mlp.py (paths
# relative to this file). The shape issue 16 timed against a PyTorch loop.

[workload]
kind = "torchscript"
model = "model.pt"
train = "train.safetensors"
val = "val.safetensors"
primary = "primary"
auxiliary = ["coarse", "recon", "noise"]
batch_size = 64
seed = 0

[train]
device = "auto"
threads = 2
steps = 300
lr = 0.0005
grad_clip = 1.0
eval_every = 100
checkpoint_every = 300
log_every = 10

[combiner]
kind = "meltr"

[meltr]
meta_every = 3

[aid]
iterations = 0
mode = "factorized"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="target/wide-mlp", help="output folder (default: %(default)s)")
    parser.add_argument("--train", type=int, default=4096, help="training samples")
    parser.add_argument("--val", type=int, default=512, help="validation samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=WIDTH,
                        help="input and hidden width (default: %(default)s; e.g. 32 for a model whose step is"
                        " bound by per-op overhead, as small models are on a GPU)")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    model = torch.jit.script(WideMlp(args.width))
    model.save(os.path.join(args.out, "model.pt"))
    generator = torch.Generator().manual_seed(args.seed + 1)
    write_safetensors(os.path.join(args.out, "train.safetensors"), make_split(args.train, generator, args.width))
    write_safetensors(os.path.join(args.out, "val.safetensors"), make_split(args.val, generator, args.width))
    with open(os.path.join(args.out, "wide_mlp.toml"), "w") as f:
        f.write(CONFIG)
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote model.pt ({params} parameters), train/val.safetensors, wide_mlp.toml to {args.out}")


if __name__ == "__main__":
    main()
