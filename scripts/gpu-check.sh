#!/usr/bin/env bash
# The checks that need a CUDA GPU, for a GPU machine without a Rust toolchain.
#
#   scripts/gpu-check.sh prepare   # here: build, export, strip into carry/ (git-ignored)
#   scripts/gpu-check.sh run       # there, from the checkout with carry/ copied along
#
# `run` packs everything into $OUT/gpu-results.tar.gz (default: carry/out):
# the CUDA-only tests (allocator peak memory; the fused AdamW kernel and
# foreach clipping against their op-by-op references; an NCCL process group
# of one rank, gradient buckets over NCCL; NVML series in the metrics
# log), the main job and a
# one-rank data-parallel run on the GPU, `meltr-tui bench --device cuda`,
# scripts/side_by_side.py on CUDA (the TorchScript example and the wide
# MLP against the PyTorch loop) and, when present, CPU-rank scaling.
# Each step has its own time limit; summary.txt says which passed.
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
    du -sh carry
    ;;
run)
    # Everything lands in $res; it is packed into $OUT/gpu-results.tar.gz
    # after every step (the device tool returns at most 8 files), so a step
    # that runs out of time still leaves the ones before it.
    out=${OUT:-carry/out}
    res=carry/results
    rm -rf "$res" && mkdir -p "$out" "$res"
    torch_lib=${TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}
    python=${TORCH_PYTHON:-/opt/torch/.venv/bin/python}
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PYTHONUNBUFFERED=1
    bin=carry/meltr-tui
    status=0
    failed=()
    # step NAME SECONDS COMMAND...: runs COMMAND with a time limit, output in $res/NAME.txt
    # GPU_CHECK_ONLY="NAME ..." runs only those steps (a rerun of failures).
    # The whole run stays inside GPU_CHECK_SECONDS (default 500): each step's
    # limit is cut to what is left, and a step with under 20 s left is skipped.
    deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-500}))
    step() {
        local name=$1 limit=$2
        shift 2
        local t0=$SECONDS left=$((deadline - SECONDS))
        if [[ -n ${GPU_CHECK_ONLY:-} && " $GPU_CHECK_ONLY " != *" $name "* ]]; then
            return
        fi
        if ((left < 20)); then
            echo "SKIP  $name (out of time)" | tee -a "$res/summary.txt"
            status=1
            failed+=("$name")
            return
        fi
        ((limit <= left)) || limit=$left
        if timeout --kill-after=5 "$limit" "$@" >"$res/$name.txt" 2>&1; then
            echo "ok    $name ($((SECONDS - t0)) s)" | tee -a "$res/summary.txt"
        else
            echo "FAIL  $name rc=$? ($((SECONDS - t0)) s)" | tee -a "$res/summary.txt"
            status=1
            failed+=("$name")
        fi
        tar -czf "$out/gpu-results.tar.gz" -C carry results
    }
    git rev-parse --short HEAD >"$res/commit.txt" 2>/dev/null || true
    step nvidia-smi 20 nvidia-smi
    step doctor 60 "$bin" doctor
    # CUDA-only unit tests: allocator peak memory, the fused AdamW kernel and
    # foreach clipping against their references, an NCCL group of one rank,
    # NVML series in the metrics log.
    step cuda-tests 150 carry/lib-tests --ignored --test-threads=1 --nocapture on_cuda
    step device-memory-tests 60 carry/lib-tests --ignored --test-threads=1 device_memory
    # The main job (configs/default.toml, device auto) headless on the GPU.
    step default-run 180 "$bin" run --headless -c configs/default.toml --sessions-dir "$res/sessions" -n default-cuda
    # One data-parallel rank through the trainer (NCCL, world size 1), joined
    # as torchrun would start it (`--nproc 1` makes no group).
    step rank-nccl 90 env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29531 \
        "$bin" run --headless -c configs/synthetic.toml --steps 60 \
        --set train.device=cuda --sessions-dir "$res/sessions" -n rank-nccl-cuda
    # The TorchScript models, exported here by this machine's torch.
    step export-example 60 $python examples/torchscript/export_two_stream.py --attention matmul --out carry/bench-model
    [[ ! -d carry/bench-model ]] || cp examples/torchscript/two_stream.toml carry/bench-model/
    step export-wide-mlp 60 $python examples/torchscript/export_wide_mlp.py --out carry/wide-mlp
    step side-by-side-example 200 $python scripts/side_by_side.py -c carry/bench-model/two_stream.toml \
        --binary "$bin" --python "$python" --device cuda --pairs 5 --steps 100 --settings sum,meltr-factorized --logged \
        --out "$res/side-by-side-example.json"
    step bench-cuda 200 "$bin" bench --device cuda --rounds 3 --torchscript carry/bench-model --out "$res/bench-cuda-table.txt"
    step side-by-side-wide-mlp 120 $python scripts/side_by_side.py -c carry/wide-mlp/wide_mlp.toml \
        --binary "$bin" --python "$python" --device cuda --pairs 5 --steps 100 --settings sum \
        --out "$res/side-by-side-wide-mlp.json"
    if [[ -f scripts/scaling.py ]]; then  # CPU ranks (Gloo) on this machine's cores
        step scaling-cpu 150 $python scripts/scaling.py --binary "$bin" --ranks 1,2,4,8 --out "$res/scaling-cpu.json"
        step scaling-cpu-wide-mlp 150 $python scripts/scaling.py --binary "$bin" -c carry/wide-mlp/wide_mlp.toml \
            --ranks 1,2,4,8 --global-batch 256 --steps 30 --out "$res/scaling-cpu-wide-mlp.json"
    fi
    # Session logs only (no checkpoints) travel back.
    find "$res/sessions" -name '*.safetensors' -delete 2>/dev/null || true
    tar -czf "$out/gpu-results.tar.gz" -C carry results
    cat "$res/summary.txt"
    tail -n 30 "$res/cuda-tests.txt" "$res/bench-cuda-table.txt" 2>/dev/null || true
    [[ ${#failed[@]} -eq 0 ]] || echo "failed: ${failed[*]}"
    exit $status
    ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
