#!/usr/bin/env bash
# The checks that need a CUDA GPU, for a GPU machine without a Rust toolchain.
#
#   scripts/gpu-check.sh prepare   # here: build, export, strip into carry/ (git-ignored)
#   scripts/gpu-check.sh run       # there, from the checkout with carry/ copied along
#
# `run` writes everything under $OUT (default: carry/out): the CUDA-only
# tests (allocator peak memory; the fused AdamW kernel and foreach clipping
# against their op-by-op references; an NCCL process group of one rank),
# `meltr-tui bench --device cuda` on the
# built-in model and the TorchScript example, and `doctor`.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
    bash scripts/setup.sh
    cargo build --release
    # The library's unit-test executable (holds the #[ignore]d CUDA tests).
    lib_tests=$(cargo test --release --lib --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*meltr_tui-[^"]*"' | tail -1 | cut -d'"' -f4)
    [[ -x "$lib_tests" ]] || { echo "could not find the lib test executable" >&2; exit 1; }
    rm -rf carry && mkdir -p carry
    cp target/release/meltr-tui carry/meltr-tui
    cp "$lib_tests" carry/lib-tests
    strip carry/meltr-tui carry/lib-tests
    ./.torch-python examples/torchscript/export_two_stream.py --attention matmul --out carry/bench-model
    du -sh carry
    ;;
run)
    out=${OUT:-carry/out}
    mkdir -p "$out"
    torch_lib=${TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
    carry/meltr-tui doctor >"$out/doctor.txt" 2>&1 || true
    status=0
    carry/lib-tests --ignored device_memory >"$out/cuda-tests.txt" 2>&1 || status=1
    carry/lib-tests --ignored on_cuda >>"$out/cuda-tests.txt" 2>&1 || status=1  # fused AdamW, clipping, NCCL
    carry/meltr-tui bench --device cuda --torchscript carry/bench-model \
        --out "$out/bench-cuda.txt" \
        >/dev/null 2>"$out/bench-cuda.log" || status=1
    tail -n 40 "$out"/*.txt
    exit $status
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
