//! `cargo xtask bench ...`: comparisons against DPDK.
use std::process::ExitCode;

pub fn main(_args: &[String]) -> ExitCode {
    eprintln!("xtask bench: not built yet");
    ExitCode::from(2)
}
