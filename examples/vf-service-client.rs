//! vf-service-client: a VF port opened from the PF service's hand-over, as an unprivileged
//! process would run it: no VF token, no `/dev/vfio` access, only RLIMIT_MEMLOCK for the DMA
//! memory. It opens `vf-service:SOCKET:VF`, then sends and/or receives frames of one
//! EtherType and prints what it saw.
//!
//! ```text
//! prlimit --memlock=unlimited setpriv --reuid 1000 --regid 1000 --clear-groups \
//!     vf-service-client --port vf-service:/run/oxpmd/sriov-0000:00:02.0.sock:0 \
//!     --send 100 --dst 52:54:00:00:01:01 --receive 100 --timeout 20
//! ```

#[allow(dead_code, unused_imports, unused_macros)]
#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use oxpmd::dma::{Mempool, MempoolConfig};
use oxpmd::pmd::{Burst, MacAddr, Port, PortConfig};

/// The EtherType of the frames sent and counted (an IEEE local experimental one).
const ETHERTYPE: u16 = 0x88B6;

const USAGE: &str = "usage: vf-service-client --port vf-service:SOCKET:VF [--send N --dst MAC] [--receive N]
  [--timeout SECS] (frames of EtherType 0x88B6; prints `vf-service-client: received N`)";

struct Options {
    port: String,
    send: u32,
    dst: Option<MacAddr>,
    receive: u32,
    timeout: Duration,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        port: String::new(),
        send: 0,
        dst: None,
        receive: 0,
        timeout: Duration::from_secs(20),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next();
        match a.as_str() {
            "--port" => o.port = v.ok_or("--port: missing value")?.clone(),
            "--send" => o.send = common::parse_num("--send", v, 0..=100_000)?,
            "--receive" => o.receive = common::parse_num("--receive", v, 0..=100_000)?,
            "--timeout" => o.timeout = Duration::from_secs(common::parse_num("--timeout", v, 1..=3600)?),
            "--dst" => {
                o.dst = Some(
                    v.ok_or("--dst: missing value")?
                        .parse()
                        .map_err(|e| format!("--dst: {e}"))?,
                )
            }
            _ => return Err(format!("unknown argument `{a}`")),
        }
    }
    if !o.port.starts_with("vf-service:") {
        return Err("--port vf-service:SOCKET:VF is required".into());
    }
    if o.send > 0 && o.dst.is_none() {
        return Err("--send needs --dst".into());
    }
    Ok(o)
}

fn run(o: &Options) -> Result<bool, common::BoxError> {
    let mut port = Port::open(&o.port, 0)?;
    let map = port.dma_map().ok_or("the port has no DMA map")?;
    let pool = Mempool::new(
        &MempoolConfig {
            cache_size: 32,
            ..MempoolConfig::new("vf-client", 1024)
        },
        map,
    )?;
    port.configure(&PortConfig::new(pool.clone()).ring_sizes(256, 256))?;
    port.start()?;
    let mac = port.mac_addr();
    println!(
        "vf-service-client: opened {} ({}), MAC {mac}",
        o.port,
        port.name()
    );
    port.wait_link_up(o.timeout)?;
    let (mut rx, mut tx) = port.take_queues()?;
    let (mut rxq, mut txq) = (rx.remove(0), tx.remove(0));
    let mut burst = Burst::new();
    if let Some(dst) = o.dst {
        for seq in 0..o.send {
            let mut f = vec![0u8; 96];
            f[0..6].copy_from_slice(&dst.0);
            f[6..12].copy_from_slice(&mac.0);
            f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
            f[14..18].copy_from_slice(&seq.to_be_bytes());
            let mut p = pool.alloc().ok_or("pool empty")?;
            p.extend_from_slice(&f)?;
            burst.push(p).map_err(|_| "burst full")?;
            let t = Instant::now();
            while !burst.is_empty() && t.elapsed() < o.timeout {
                txq.tx_burst(&mut burst);
                txq.reclaim();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        println!("vf-service-client: sent {}", o.send);
    }
    let mut got = 0u32;
    let t = Instant::now();
    while got < o.receive && t.elapsed() < o.timeout {
        if rxq.rx_burst(&mut burst) == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        for p in burst.drain() {
            let d = p.data();
            if d.len() >= 14 && d[12..14] == ETHERTYPE.to_be_bytes() {
                got += 1;
            }
        }
    }
    println!("vf-service-client: received {got}");
    Ok(got >= o.receive)
}

fn main() -> ExitCode {
    common::init_logger(log::LevelFilter::Info);
    common::cli_main("vf-service-client", USAGE, parse_args, run, 1)
}
