//! vf-mailbox-storm: a hostile VF. It opens a VF (with the VF token, like any VF process) and
//! storms its mailbox with abusive messages until SIGINT / SIGTERM or `--duration`: unknown ids,
//! PF-only flags, wrong lengths, MAC spoofing, oversized frames, unicast promiscuous mode and
//! VLAN adds past any limit, far above the PF's per-VF message rate. The PF must refuse every
//! one, stay up, and keep serving the other VFs (`cargo xtask soak` runs it next to them).
//!
//! ```text
//! OXPMD_VF_TOKEN_FILE=/run/oxpmd/sriov-0000:00:0c.0.token \
//!     vf-mailbox-storm --vf 0000:00:1c.2 [--rate MSGS_PER_SEC] [--duration SECS]
//! ```
//! It prints `vf-mailbox-storm: sent=N acked=N nacked=N errors=N` at the end. A request that gets
//! no answer (the PF restarting, the mailbox lock held) counts as an error and the storm goes on.

#[allow(dead_code, unused_imports, unused_macros)]
#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{STOP, install_signal_handlers, parse_num};
use oxpmd::pmd::drivers::igbvf::IgbvfDriver;
use oxpmd::pmd::sriov::mailbox::{MSG_NACK, VfRequest};
use oxpmd::pmd::{MacAddr, OpenOptions};
use oxpmd::vfio::PciAddress;

const USAGE: &str = "usage: vf-mailbox-storm --vf ADDR [--rate MSGS_PER_SEC (default 500)] [--duration SECS]
  the VF token comes from OXPMD_VF_TOKEN or OXPMD_VF_TOKEN_FILE";

/// The abusive messages, sent in turn.
fn messages() -> Vec<Vec<u32>> {
    let mut m: Vec<Vec<u32>> = vec![
        vec![0x0000_0077],
        vec![0x8000_0002, 0, 0],
        vec![0x00FF_0003],
        vec![0x0100_0005, 9000],
        VfRequest::SetMac(MacAddr([2, 0xde, 0xad, 0, 0, 1])).encode()[..3].to_vec(),
        VfRequest::SetLpe { max_frame: 65535 }.encode()[..2].to_vec(),
        VfRequest::SetPromisc {
            unicast: true,
            multicast: false,
        }
        .encode()[..1]
            .to_vec(),
    ];
    for vid in (1..=4000u16).step_by(97) {
        m.push(VfRequest::SetVlan { vid, add: true }.encode()[..2].to_vec());
    }
    m
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut vf = None;
    let mut rate: u32 = 500;
    let mut duration = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let r = match a.as_str() {
            "--vf" => it
                .next()
                .map(|v| vf = Some(v.clone()))
                .ok_or("--vf: missing address".into()),
            "--rate" => parse_num("--rate", it.next(), 1..=100_000u32).map(|v| rate = v),
            "--duration" => parse_num("--duration", it.next(), 1..=31_536_000u64).map(|v| duration = Some(v)),
            _ => Err(format!("unknown argument `{a}`")),
        };
        if let Err(e) = r {
            eprintln!("vf-mailbox-storm: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    let Some(vf) = vf else {
        eprintln!("vf-mailbox-storm: no VF given (--vf ADDR)\n{USAGE}");
        return ExitCode::from(2);
    };
    let addr = match PciAddress::parse(&vf) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vf-mailbox-storm: --vf {vf}: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = install_signal_handlers() {
        eprintln!("vf-mailbox-storm: installing the signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let drv = match IgbvfDriver::open(addr, &OpenOptions::default()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vf-mailbox-storm: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("vf-mailbox-storm: VF {vf} open; storming at {rate} messages/s");
    let msgs = messages();
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now();
    let (mut sent, mut acked, mut nacked, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut next = start;
    while !STOP.load(Ordering::Relaxed) && duration.is_none_or(|d| start.elapsed() < Duration::from_secs(d)) {
        let w = &msgs[(sent % msgs.len() as u64) as usize];
        sent += 1;
        match drv.raw_request(w) {
            Ok(r) if r[0] & MSG_NACK != 0 => nacked += 1,
            Ok(_) => acked += 1,
            Err(_) => errors += 1,
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // Behind (a slow mailbox answer): no burst to catch up.
            next = now;
        }
    }
    println!("vf-mailbox-storm: sent={sent} acked={acked} nacked={nacked} errors={errors}");
    ExitCode::SUCCESS
}
