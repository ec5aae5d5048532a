#!/usr/bin/env bash
# Reruns the numbers of BENCHMARKS.md's "Against a PyTorch loop" section
# (issue 16), all in one go, on an otherwise idle machine:
#   - the optimizer update three ways (`cargo bench --bench adamw`),
#   - `meltr-tui bench` on the built-in model and the TorchScript example
#     (inner-step phases, logged steps, meta steps, throughput),
#   - the PyTorch loop's own phases (scripts/torch_loop.py --phases) on the
#     example and on the wide MLP,
#   - scripts/side_by_side.py (the engine against the PyTorch loop,
#     alternating, medians over pairs) on both.
#
#   scripts/speed_report.sh [OUT_DIR] [PAIRS]      (default target/speed, 5)
#
# Every output lands in OUT_DIR (one file per measurement, with the commit
# in commit.txt); nothing is written into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/speed}
pairs=${2:-5}
mkdir -p "$out"
bash scripts/setup.sh
cargo build --release
git rev-parse --short HEAD >"$out/commit.txt"
git status --short >>"$out/commit.txt"
uptime >"$out/load.txt"

./.torch-python examples/torchscript/export_two_stream.py --attention matmul --out target/bench-model
cp examples/torchscript/two_stream.toml target/bench-model/
./.torch-python examples/torchscript/export_wide_mlp.py --out target/wide-mlp
for dir in target/bench-model target/wide-mlp; do
    config=$(ls "$dir"/*.toml | grep -v sum.toml | head -1)
    sed 's/^kind = "meltr"/kind = "sum"/' "$config" >"$dir/sum.toml"
done

cargo bench --bench adamw 2>/dev/null | tee "$out/adamw.txt"
./target/release/meltr-tui bench --torchscript target/bench-model --out "$out/bench.txt" >/dev/null
cat "$out/bench.txt"
for dir in target/bench-model target/wide-mlp; do
    name=$(basename "$dir")
    ./.torch-python scripts/torch_loop.py -c "$dir/sum.toml" --steps 60 --phases | tee "$out/torch-phases-$name.txt"
done
./.torch-python scripts/side_by_side.py -c target/bench-model/two_stream.toml --pairs "$pairs" --steps 60 \
    --settings sum,meltr-factorized --logged --out "$out/side-by-side-example.json" | tee "$out/side-by-side-example.txt"
./.torch-python scripts/side_by_side.py -c target/wide-mlp/wide_mlp.toml --pairs "$pairs" --steps 60 \
    --settings sum,meltr-factorized --logged --out "$out/side-by-side-wide-mlp.json" | tee "$out/side-by-side-wide-mlp.txt"
uptime >>"$out/load.txt"
