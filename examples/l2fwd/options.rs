//! l2fwd's command line: the usage text, the options and their parsing.

use std::time::Duration;

use oxpmd::dma::PageSize;
use oxpmd::pmd::MAX_BURST;

use crate::common::parse_num;

pub(crate) const USAGE: &str = "usage: l2fwd --port DEV [--port DEV ...] [options]
  --port DEV          a PCI address (0000:00:02.0) or a virtual port (null0, net_null0, ring:NAME)
  -p PORTMASK         hexadecimal mask of the ports to use (default: all)
  -q N                ports polled per core (default 1)
  -T SECS             stats period in seconds (default 10, 0 disables)
  --no-mac-updating   forward frames unchanged
  --mac-updating      rewrite MACs (the default)
  -P                  promiscuous mode on every port
  --cores LIST        cores for the workers, e.g. 1 or 0,2-3 (default: all, in order)
  --main-core N       pin the main thread (set-up, stats, link events) to core N, like DPDK's
                      main lcore (default: not pinned); it may be one of the workers' cores
  --duration SECS     stop after SECS seconds (default: run until Ctrl-C)
  --burst N           RX burst and TX buffer size, 1..=512 (default 32)
  --ring-size N       RX/TX descriptors per queue (default 1024)
  --pool-size N       mempool buffers (default: as DPDK l2fwd computes it, at least 8192)
  --mtu N             the ports' MTU (default 1500; igb takes up to 9190, virtio-net 9698): a
                      frame larger than one buffer (2048 bytes of data) arrives and leaves as a
                      chained packet
  --pages 2m|4k       the mempool's pages: 2 MiB hugepages (an error if none can be had) or 4 KiB
                      pages (like DPDK's --no-huge); default: hugepages, for virtual ports falling
                      back to 4 KiB pages with a warning
  --tx-first          each port first sends one burst of 64-byte frames (like testpmd's
                      --tx-first): starts traffic on ring pairs (--port ring:x --port ring:x)
  --pcap FILE         capture the frames received on the chosen ports to FILE (pcap, ns stamps)
  --pcap-ports LIST   port ids to capture, e.g. 0,1 (default: all enabled ports)
  --pcap-slots N      capture records in flight, a power of two (default 4096)
  --stats-json        stdout: one JSON object per stats period (-T) and a final one; text to stderr
  --rx-interrupt[=N]  sleep when idle: after N consecutive empty polls of all its RX queues
                      (default 300) a worker flushes its TX buffers and sleeps on the queues'
                      RX interrupts until a frame arrives (like DPDK's l3fwd-power); every port
                      needs a driver with RX interrupts (igb, virtio-net); not with --pcap
  --xstats            at the end, every extended statistic of each port (Port::xstats: DPDK's
                      names; igb: every statistics register), also in the final JSON object
  Environment: OXPMD_LOG=error|warn|info|debug|trace (default warn).";

#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) ports: Vec<String>,
    pub(crate) portmask: Option<u64>,
    pub(crate) per_core: usize,
    pub(crate) period: u64,
    pub(crate) mac_updating: bool,
    pub(crate) promiscuous: bool,
    pub(crate) cores: Option<Vec<usize>>,
    /// `--main-core`: the main thread's core.
    pub(crate) main_core: Option<usize>,
    pub(crate) duration: Option<u64>,
    pub(crate) burst: usize,
    pub(crate) ring_size: usize,
    pub(crate) pool_size: Option<usize>,
    /// `--mtu`.
    pub(crate) mtu: u16,
    /// `--pages`: the pool's page size (None: the default).
    pub(crate) pages: Option<PageSize>,
    pub(crate) tx_first: bool,
    pub(crate) pcap: Option<std::path::PathBuf>,
    pub(crate) pcap_ports: Option<Vec<u16>>,
    pub(crate) pcap_slots: usize,
    pub(crate) stats_json: bool,
    pub(crate) xstats: bool,
    /// `--rx-interrupt[=N]`: empty polls before a worker sleeps.
    pub(crate) rx_interrupt: Option<u32>,
}

/// Empty polls before a worker sleeps, as DPDK l3fwd-power's idle heuristic counts them.
pub(crate) const DEFAULT_IDLE_POLLS: u32 = 300;
/// Longest sleep of an idle worker: it sees the stop flag within this.
pub(crate) const MAX_SLEEP: Duration = Duration::from_millis(100);

pub(crate) fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut v = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a
            .trim()
            .parse()
            .map_err(|_| format!("--cores: bad core `{part}`"))?;
        let b: usize = b
            .trim()
            .parse()
            .map_err(|_| format!("--cores: bad core `{part}`"))?;
        if a > b || b >= 4096 {
            return Err(format!("--cores: bad range `{part}`"));
        }
        for c in a..=b {
            if !v.contains(&c) {
                v.push(c);
            }
        }
    }
    Ok(v)
}

pub(crate) fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        ports: Vec::new(),
        portmask: None,
        per_core: 1,
        period: 10,
        mac_updating: true,
        promiscuous: false,
        cores: None,
        main_core: None,
        duration: None,
        burst: 32,
        ring_size: 1024,
        pool_size: None,
        mtu: oxpmd::pmd::DEFAULT_MTU,
        pages: None,
        tx_first: false,
        pcap: None,
        pcap_ports: None,
        pcap_slots: 4096,
        stats_json: false,
        xstats: false,
        rx_interrupt: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => o.ports.push(it.next().ok_or("--port: missing device")?.clone()),
            "-p" => {
                let v = it.next().ok_or("-p: missing mask")?;
                let hex = v.trim_start_matches("0x").trim_start_matches("0X");
                let m = u64::from_str_radix(hex, 16).map_err(|_| format!("-p: `{v}` is not a hex mask"))?;
                if m == 0 {
                    return Err("-p: the mask enables no port".into());
                }
                o.portmask = Some(m);
            }
            "-q" => o.per_core = parse_num("-q", it.next(), 1..=64)?,
            "-T" => o.period = parse_num("-T", it.next(), 0..=86_400)?,
            "--no-mac-updating" => o.mac_updating = false,
            "--mac-updating" => o.mac_updating = true,
            "-P" => o.promiscuous = true,
            "--cores" => o.cores = Some(parse_cores(it.next().ok_or("--cores: missing list")?)?),
            "--main-core" => o.main_core = Some(parse_num("--main-core", it.next(), 0..=4095)?),
            "--duration" => o.duration = Some(parse_num("--duration", it.next(), 1..=31_536_000)?),
            "--burst" => o.burst = parse_num("--burst", it.next(), 1..=MAX_BURST)?,
            "--ring-size" => o.ring_size = parse_num("--ring-size", it.next(), 64..=4096)?,
            "--pool-size" => o.pool_size = Some(parse_num("--pool-size", it.next(), 1024..=1 << 24)?),
            "--mtu" => o.mtu = parse_num("--mtu", it.next(), 68..=9728)?,
            "--pages" => {
                o.pages = Some(match it.next().map(String::as_str) {
                    Some("2m") => PageSize::Huge2M,
                    Some("4k") => PageSize::Base4K,
                    other => return Err(format!("--pages: `{}`: expected 2m or 4k", other.unwrap_or(""))),
                })
            }
            "--tx-first" => o.tx_first = true,
            "--pcap" => o.pcap = Some(it.next().ok_or("--pcap: missing file")?.into()),
            "--pcap-ports" => {
                let v = it.next().ok_or("--pcap-ports: missing list")?;
                let mut l = Vec::new();
                for c in v.split(',') {
                    l.push(parse_num("--pcap-ports", Some(&c.trim().to_string()), 0..=63u16)?);
                }
                o.pcap_ports = Some(l);
            }
            "--pcap-slots" => {
                o.pcap_slots = parse_num("--pcap-slots", it.next(), 2..=65536)?;
                if !o.pcap_slots.is_power_of_two() {
                    return Err(format!("--pcap-slots: {} is not a power of two", o.pcap_slots));
                }
            }
            "--stats-json" => o.stats_json = true,
            "--xstats" => o.xstats = true,
            "--rx-interrupt" => o.rx_interrupt = Some(DEFAULT_IDLE_POLLS),
            s if s.starts_with("--rx-interrupt=") => {
                let n = &s["--rx-interrupt=".len()..];
                o.rx_interrupt = Some(parse_num("--rx-interrupt", Some(n), 1..=1_000_000_000)?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.ports.is_empty() {
        return Err("no port given (--port DEV)".into());
    }
    if o.ports.len() > 64 {
        return Err("at most 64 ports".into());
    }
    if o.pcap.is_none() && o.pcap_ports.is_some() {
        return Err("--pcap-ports needs --pcap FILE".into());
    }
    if o.pcap.is_some() && o.rx_interrupt.is_some() {
        return Err("--rx-interrupt does not apply to the capture loop of --pcap; give one of them".into());
    }
    if let Some(bad) = o
        .pcap_ports
        .iter()
        .flatten()
        .find(|&&p| usize::from(p) >= o.ports.len())
    {
        return Err(format!("--pcap-ports: no port {bad} ({} given)", o.ports.len()));
    }
    Ok(o)
}
