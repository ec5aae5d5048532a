//! The PyTorch loop that `scripts/side_by_side.py` times against the
//! engine must train the same way, or the ratio means nothing: its
//! self-test runs engine sessions with `train.trace` and checks the loop's
//! batch rows and meta-batch picks (equal), first losses and θ after 20
//! f32 steps (relative 1e-4; measured 8e-8) against them, then runs a one-pair benchmark.

mod common;

#[test]
fn the_pytorch_loop_trains_like_the_engine_and_the_benchmark_runs() {
    common::run_python(&[
        "scripts/side_by_side.py".as_ref(),
        "--self-test".as_ref(),
        "--binary".as_ref(),
        env!("CARGO_BIN_EXE_meltr-tui").as_ref(),
    ]);
}
