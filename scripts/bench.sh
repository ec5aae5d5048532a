#!/usr/bin/env bash
# Reruns the numbers in BENCHMARKS.md: exports the TorchScript example with
# matmul attention (so `exact` AID is possible) and runs `meltr-tui bench`
# on the built-in video-text model and on it. Extra arguments go to bench
# (e.g. --device cuda, --steps 50).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release
model=target/bench-model
./.torch-python examples/torchscript/export_two_stream.py --attention matmul --out "$model"
./target/release/meltr-tui bench --torchscript "$model" "$@"
