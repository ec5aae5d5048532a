#!/usr/bin/env bash
# The README's "From runs to a paper" figure and table, from a real sweep:
# the synthetic workload (configs/synthetic.toml: one helpful and one
# harmful auxiliary loss), combiner meltr / sum / primary × seeds 0, 1, 2,
# 600 steps each, two runners at a time; then `compare` draws the banded
# validation curve and `table` writes mean ± std per setting.
#
#   scripts/paper_demo.sh [OUT_DIR]     (default docs/paper-demo)
#
# Writes OUT_DIR/validation.png, OUT_DIR/table.md and OUT_DIR/commit.txt;
# the sessions go to a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/paper-demo}
mkdir -p "$out"
cargo build --release
bin=$PWD/target/release/meltr-tui
sessions=$(mktemp -d)
trap 'rm -rf "$sessions"' EXIT
git rev-parse --short HEAD >"$out/commit.txt"
"$bin" sweep --sessions-dir "$sessions" -c configs/synthetic.toml --name demo \
    --set combiner.kind=meltr,sum,primary --seeds 0,1,2 --parallel 2 >/dev/null
"$bin" ls --sessions-dir "$sessions" --group demo
"$bin" compare --sessions-dir "$sessions" --group demo -o "$out/validation.png"
"$bin" table --sessions-dir "$sessions" --group demo | tee "$out/table.md"
