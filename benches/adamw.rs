//! The AdamW update, three ways, interleaved in one run: ATen's fused
//! kernel (what [`AdamW`] uses), [`AdamW`]'s elementwise ops over buckets,
//! and the textbook per-parameter update. Over the video-text model's
//! parameters (85 tensors), and over a wide MLP's (width 1024, depth 4:
//! 3.2M values, the shape issue 16 measured):
//! `cargo bench --bench adamw [-- --device cuda]`.
//!
//! `cargo test --all-targets` runs this too (without `--bench`): a few
//! steps, as a smoke test.

use meltr_tui::config::Config;
use meltr_tui::engine::trainer::resolve_device;
use meltr_tui::nn::optim::{per_parameter_step, AdamW, Kernel};
use meltr_tui::workload;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let device = args
        .iter()
        .position(|a| a == "--device")
        .and_then(|i| args.get(i + 1))
        .map_or("cpu", String::as_str);
    let device = resolve_device(device).expect("a usable device");
    let mut config =
        Config::parse(include_str!("../configs/default.toml")).expect("the default config parses");
    config.workload.init_from = None;
    let model = workload::build(&config, device, Kind::Float, None).expect("the workload builds");
    let (rounds, steps) = if full { (10, 50) } else { (2, 3) };
    println!("AdamW on {device:?}, median of {rounds} interleaved rounds of {steps} steps");
    compare("video-text model", &model.parameters(), rounds, steps);
    compare("wide MLP", &wide_mlp(device), rounds, steps);
}

/// The parameters of a 4-layer MLP of width 1024 (input 1024, 4 heads).
fn wide_mlp(device: Device) -> Vec<Tensor> {
    let mut shapes: Vec<Vec<i64>> = Vec::new();
    for _ in 0..3 {
        shapes.extend([vec![1024, 1024], vec![1024]]);
    }
    shapes.extend([vec![4, 1024], vec![4]]);
    shapes
        .iter()
        .map(|s| Tensor::randn(s.as_slice(), (Kind::Float, device)) * 0.02)
        .collect()
}

/// Times the three updates over copies of `params` and checks they agree.
fn compare(label: &str, params: &[Tensor], rounds: usize, steps: usize) {
    let copies = || -> Vec<Tensor> { params.iter().map(|p| p.detach().copy()).collect() };
    let (fused_params, bucket_params, textbook_params) = (copies(), copies(), copies());
    let grads: Vec<Tensor> = params.iter().map(Tensor::randn_like).collect();
    let (lr, weight_decay) = (1e-4, 0.01);
    let mut fused = AdamW::new(&fused_params, lr, weight_decay);
    let mut buckets = AdamW::new(&bucket_params, lr, weight_decay).with_kernel(Kernel::Buckets);
    let mut moments: Vec<(Tensor, Tensor)> = textbook_params
        .iter()
        .map(|p| (p.zeros_like(), p.zeros_like()))
        .collect();
    let sync = |t: &Tensor| t.sum(Kind::Double).double_value(&[]);
    let mut taken = 0.0;
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut time = |slot: usize, run: &mut dyn FnMut(), probe: &Tensor| {
        let start = Instant::now();
        for _ in 0..steps {
            run();
        }
        sync(probe);
        times[slot].push(start.elapsed().as_secs_f64() / steps as f64);
    };
    for _ in 0..rounds {
        time(
            0,
            &mut || fused.step(&fused_params, &grads),
            &fused_params[0],
        );
        time(
            1,
            &mut || buckets.step(&bucket_params, &grads),
            &bucket_params[0],
        );
        time(
            2,
            &mut || {
                taken += 1.0;
                per_parameter_step(
                    &textbook_params,
                    &grads,
                    &mut moments,
                    taken,
                    (lr, weight_decay),
                );
            },
            &textbook_params[0],
        );
    }
    assert_eq!(fused.fused_failure, None, "the fused kernel failed");
    for (name, other) in [
        ("buckets", &bucket_params),
        ("per parameter", &textbook_params),
    ] {
        let worst = fused_params
            .iter()
            .zip(other)
            .map(|(a, b)| (a - b).abs().max().double_value(&[]))
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "fused and {name} drifted apart: {worst:e}");
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [fused_ms, buckets_ms, textbook_ms] = times.map(|t| median(&t) * 1e3);
    println!(
        "## {label}: {} tensors, {} values",
        params.len(),
        params.iter().map(Tensor::numel).sum::<usize>()
    );
    println!("  fused kernel    {fused_ms:>8.3} ms/step");
    println!(
        "  buckets         {buckets_ms:>8.3} ms/step   fused / buckets {:>5.2}×",
        fused_ms / buckets_ms
    );
    println!(
        "  per parameter   {textbook_ms:>8.3} ms/step   fused / per parameter {:>5.2}×",
        fused_ms / textbook_ms
    );
}
