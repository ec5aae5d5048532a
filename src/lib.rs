#![cfg_attr(not(test), warn(clippy::unwrap_used))]
//! meltr-tui: fine-tuning with MELTR (Meta Loss Transformer) from a terminal.
#[macro_use]
pub mod say;
pub mod bench;
pub mod config;
pub mod device_memory;
pub mod dist;
pub mod engine;
pub mod export;
pub mod ffi;
pub mod fork;
pub mod gpu;
pub mod meltr;
pub mod nn;
pub mod numfmt;
pub mod plot;
pub mod process;
pub mod remote;
pub mod runner;
pub mod runs;
pub mod session;
pub mod smoothing;
pub mod sweep;
pub mod tui;
pub mod workload;

/// The libtorch version this binary was built against (from the torch
/// package's `version.py`, read at build time).
pub fn libtorch_version() -> &'static str {
    option_env!("MELTR_LIBTORCH_VERSION").unwrap_or("unknown")
}
pub mod cli;
