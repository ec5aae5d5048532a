#!/usr/bin/env python3
"""Times a TorchScript model's training forward + backward under one
TorchScript executor setting, to see whether any beats the engine's plain
interpreter on the CPU (issue 16):

    ./.torch-python scripts/cpu_fuser_probe.py plain|default|fuse DIR

DIR holds model.pt and train.safetensors (as the side-by-side benchmark's
exports do). `fuse` turns on TorchScript's CPU fusion (NNC), which needs
an LLVM backend that the pip wheel may lack; then it fails saying so.
Prints the median of 60 steady-state steps of batch 64 on 2 threads.
"""

import sys
import time

import torch
from safetensors.torch import load_file

SETTLE, TIMED, BATCH = 20, 60, 64


def main() -> None:
    mode, directory = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    if mode == "plain":
        torch._C._set_graph_executor_optimize(False)
    elif mode == "fuse":
        torch._C._jit_override_can_fuse_on_cpu(True)
        torch._C._jit_set_texpr_fuser_enabled(True)
    model = torch.jit.load(f"{directory}/model.pt")
    model.train()
    data = load_file(f"{directory}/train.safetensors")
    params = [p for p in model.parameters() if p.requires_grad]
    rows = next(iter(data.values())).shape[0]
    draws = torch.Generator().manual_seed(0)
    times = []
    for _ in range(SETTLE + TIMED):
        picked = torch.randint(0, rows, (BATCH,), generator=draws)
        batch = {key: value[picked] for key, value in data.items()}
        start = time.perf_counter()
        losses = [v for v in model(batch).values() if v.dim() == 0 and v.requires_grad]
        torch.autograd.grad(sum(losses), params)
        times.append(time.perf_counter() - start)
    steady = sorted(times[SETTLE:])
    print(f"{mode} {directory}: forward + backward median {1000 * steady[len(steady) // 2]:.2f} ms")


if __name__ == "__main__":
    main()
