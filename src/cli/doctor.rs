//! `meltr-tui doctor`: what this build links and what this machine offers
//! (libtorch, CUDA, cuDNN, threads, terminal).

use anyhow::Result;

/// Prints the report.
pub(super) fn doctor() -> Result<()> {
    println!("meltr-tui {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch   {}", crate::libtorch_version());
    println!(
        "  from     {}",
        option_env!("MELTR_LIBTORCH_LIB").unwrap_or("(unknown)")
    );
    let cuda = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    println!(
        "CUDA       {}",
        if cuda {
            format!("available, {count} device(s)")
        } else {
            "not available".into()
        }
    );
    for i in 0..count {
        println!("  cuda:{i}");
    }
    println!(
        "cuDNN      {}",
        if tch::Cuda::cudnn_is_available() {
            "available"
        } else {
            "not available"
        }
    );
    println!("threads    {}", tch::get_num_threads());
    let term = std::env::var("TERM").unwrap_or_else(|_| "(unset)".into());
    println!(
        "terminal   TERM={term}  NO_COLOR={}",
        std::env::var("NO_COLOR").map(|_| "set").unwrap_or("unset")
    );
    Ok(())
}

/// `meltr-tui check`: builds the run `config_path` (with `overrides`) asks
/// for, as `run` would before its first step, and says what it would
/// train.
pub(super) fn check(
    config_path: &std::path::Path,
    overrides: &[crate::config::Override],
) -> Result<()> {
    use anyhow::Context;
    let config = super::config_file::configured(config_path, None, overrides)?;
    let meta = crate::engine::check_builds(&config)
        .with_context(|| super::config_file::from_file(config_path, overrides))?;
    let (primary, auxiliary) = meta.losses.split_first().expect("a primary loss");
    let goal = if meta.higher_is_better {
        "higher"
    } else {
        "lower"
    };
    println!(
        "{}: ok, a run would train the {} workload on {}",
        super::config_file::from_file(config_path, overrides),
        meta.workload,
        meta.device
    );
    println!("  primary loss   {primary}");
    println!("  auxiliary      {}", auxiliary.join(", "));
    println!(
        "  metric         {} ({goal} is better)",
        meta.primary_metric
    );
    println!(
        "  combiner       {} · {} steps",
        config.combiner.kind.as_str(),
        config.train.steps
    );
    Ok(())
}
