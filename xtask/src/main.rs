//! Project tasks, run as `cargo xtask <task> ...`.
//!
//! - `l2fwd`: the README's main job: l2fwd in the test VM, driven by pktgen.
//! - `test [--no-vm]`: the whole test suite (the README's test command).
//! - `memcheck`: the packet-memory tests under valgrind (part of `test`).
//! - `soak [--minutes N]`: l2fwd, a VF through the userspace PF, restarts, in the test VM.
//! - `vm ...`: the test VM (setup, run, test, dpdk); see `docs/testvm.md`.
//! - `bench ...`: benchmark comparisons against DPDK in the same invocation.
#![forbid(unsafe_code)]

mod bench;
mod bench_l2fwd;
mod bench_l2fwd_vm;
mod bench_mmio_vm;
mod dut;
mod l2fwd;
mod memcheck;
mod mmio_count;
mod rfc2544;
mod skips;
mod soak;
mod test;
mod vm;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <test|vm|bench> ...\n  \
    cargo xtask l2fwd        l2fwd forwarding pktgen traffic in the test VM (the main job)\n  \
    cargo xtask test         every test: unit, loom model, memcheck and VM tests\n  \
    cargo xtask memcheck     the packet-memory tests under valgrind\n  \
    cargo xtask soak         a bounded soak in the test VM (--minutes N, default 10)\n  \
    cargo xtask vm help      the test VM (setup, run, test, dpdk)\n  \
    cargo xtask bench help   comparisons against DPDK (ring, mempool, ...)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match task {
        "vm" => vm::main(rest),
        "bench" => match rest.split_first() {
            Some((sub, args)) if sub == "l2fwd-null" => bench_l2fwd::null(args),
            Some((sub, args)) if sub == "l2fwd-vm" => bench_l2fwd_vm::vm(args),
            Some((sub, args)) if sub == "rfc2544-vm" => rfc2544::vm(args),
            Some((sub, args)) if sub == "rfc2544-chart" => rfc2544::chart(args),
            Some((sub, args)) if sub == "mmio-vm" => bench_mmio_vm::main(args),
            _ => bench::main(rest),
        },
        "test" => test::main(rest),
        "memcheck" => memcheck::main(rest),
        "soak" => soak::main(rest),
        // Run by `soak` inside the test VM.
        "soak-guest" => soak::guest_main(rest),
        "l2fwd" => l2fwd::main(rest),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("xtask: unknown task `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
