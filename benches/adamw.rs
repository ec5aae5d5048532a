//! The AdamW update over the video-text model's parameters (85 tensors):
//! [`AdamW`], which updates every parameter in one buffer, against the
//! textbook per-parameter update, interleaved in one run
//! (`cargo bench --bench adamw [-- --device cuda]`).
//!
//! `cargo test --all-targets` runs this too (without `--bench`): a few
//! steps, as a smoke test.

use meltr_tui::config::Config;
use meltr_tui::engine::trainer::resolve_device;
use meltr_tui::nn::optim::{per_parameter_step, AdamW};
use meltr_tui::workload;
use std::time::Instant;
use tch::{Kind, Tensor};

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
    let ours = model.parameters();
    let theirs: Vec<Tensor> = ours.iter().map(|p| p.detach().copy()).collect();
    let grads: Vec<Tensor> = ours.iter().map(Tensor::randn_like).collect();
    let (lr, weight_decay) = (1e-4, 0.01);
    let mut opt = AdamW::new(&ours, lr, weight_decay);
    let mut moments: Vec<(Tensor, Tensor)> = theirs
        .iter()
        .map(|p| (p.zeros_like(), p.zeros_like()))
        .collect();
    let sync = |t: &Tensor| t.sum(Kind::Double).double_value(&[]);
    let (rounds, steps) = if full { (10, 50) } else { (2, 3) };
    let mut taken = 0.0;
    let (mut one_buffer, mut per_parameter) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..steps {
            opt.step(&ours, &grads);
        }
        sync(&ours[0]);
        one_buffer.push(start.elapsed().as_secs_f64() / steps as f64);
        let start = Instant::now();
        for _ in 0..steps {
            taken += 1.0;
            per_parameter_step(&theirs, &grads, &mut moments, taken, (lr, weight_decay));
        }
        sync(&theirs[0]);
        per_parameter.push(start.elapsed().as_secs_f64() / steps as f64);
    }
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs().max().double_value(&[]))
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "the two updates drifted apart: {worst:e}");
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(one_buffer), median(per_parameter));
    println!(
        "AdamW over {} tensors ({} values) on {device:?}, median of {rounds} interleaved rounds of {steps} steps",
        ours.len(),
        ours.iter().map(Tensor::numel).sum::<usize>()
    );
    println!("  one buffer      {:>8.3} ms/step", a * 1e3);
    println!("  per parameter   {:>8.3} ms/step", b * 1e3);
    println!("  ratio           {:>8.2}×", a / b);
}
