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
