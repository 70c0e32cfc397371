//! pktgen: a traffic generator and checker on oxpmd ports.
//!
//! ```text
//! cargo run --release --example pktgen -- --tx-port DEV [--rx-port DEV] [--size 64 | 64-1518 | imix]
//!     [--rate PPS] [--count N | --duration SECS] [--drain SECS] [--streams N] [--dst-mac MAC|broadcast]
//!     [-P] [--link-speed MBPS] [--expect-all] [--burst N] [--ring-size N] [--cores LIST] [-T SECS]
//!     [--gap N:SECS]
//! ```
//! Frames are Ethernet + IPv4 + UDP (correct checksums) carrying an 18-byte test header at offset 42:
//! magic `0x0C5A` (u16), stream id (u16), sequence number (u32, per stream), TX timestamp (u64, ns
//! since pktgen started) and a 16-bit checksum of those fields and of the payload, whose bytes follow
//! a pattern derived from the sequence number. Sizes count the FCS (a 64-byte frame carries 60 bytes).
//!
//! The receive side (`--rx-port`, which may be the TX port itself) checks every frame: received,
//! lost (sent but seen neither intact nor corrupted), duplicates, reordered (seen after a later one of
//! its stream), corrupted (any bit after the Ethernet header wrong: markers, IPv4 header checksum and
//! length, UDP checksum, test checksum, pattern; or a hardware checksum error flag), and latency
//! min/avg/max. Over `fault:` ports (docs/port-api.md) it also prints what they injected, and
//! `--expect-injected` checks that each category found equals what was injected. The
//! summary prints Mpps, Gbit/s (frame bytes with FCS) and percent of line rate (the link speed, or
//! `--link-speed`), then a `pktgen-result:` line of key=value pairs for scripts. With `--expect-all`
//! the exit status is non-zero unless every frame arrived exactly once and intact.
//!
//! MACs: src = the TX port's MAC; dst = `--dst-mac`, else the RX port's MAC when it is another port,
//! else broadcast. A forwarder in between rewrites dst (l2fwd writes 02:00:00:00:00:<port>): give the
//! RX port `-P` (promiscuous) then.
//!
//! `--pcap FILE` captures, on the ports of `--pcap-ports` (default all), the frames pktgen sends
//! (port 0, as built and handed to the TX queue) and receives (the RX port, as received): the
//! workers copy them into preallocated records of `oxpmd::pmd::capture` and a writer thread writes
//! the file; when the writer is behind, frames are not captured and counted (`pcap_dropped`).
//! `--stats-json` prints one JSON object per `-T` period (default 1 s) and a final one on stdout,
//! and sends every text line to stderr. Set-up steps print their durations on stderr. See
//! docs/capture.md.

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    BoxError, STOP, finish_capture, install_signal_handlers, parse_num, ports_json, say, start_capture, step,
};
use oxpmd::dma::{Mempool, MempoolConfig, OffloadFlags, Packet, RegionOptions};
use oxpmd::pmd::capture::{Capture, CaptureTap, json_escape, now_ns as wall_ns};
use oxpmd::pmd::vport::fault::{self, FaultCounts};
use oxpmd::pmd::vport::virtual_pool;
use oxpmd::pmd::{
    Burst, DeviceSpec, MAX_BURST, MacAddr, OpenOptions, Port, PortConfig, PortStats, RxQueue, TxQueue,
};

const USAGE: &str = "usage: pktgen --tx-port DEV [options]
  --tx-port DEV        port to send on: PCI address (0000:00:02.0) or virtual port (null0, ring:NAME,
                       fault:OPTIONS:DEV)
  --rx-port DEV        port to receive and check on (may be the TX port); without it, send only
  --size S             frame size with FCS: N (64..=1518), MIN-MAX (cycled), or imix (64/594/1518 7:4:1)
  --rate PPS           frames per second (default: as fast as possible)
  --count N            send exactly N frames, then wait --drain seconds for stragglers
  --duration SECS      send for SECS seconds (default without --count: until Ctrl-C)
  --drain SECS         wait for stragglers after sending (default 1)
  --gap N:SECS         after every N frames sent, send nothing for SECS seconds (rounds of N
                       frames separated by idle gaps, e.g. for a forwarder that sleeps when idle)
  --tx-stall SECS      stop and fail when TX takes no frame for SECS (default 10; 0: never)
  --streams N          sequence-numbered streams, one UDP source port each (default 1)
  --dst-mac MAC        destination MAC, or `broadcast` (default: the RX port's MAC, else broadcast)
  -P                   promiscuous mode on the RX port (needed behind a forwarder rewriting MACs)
  --link-speed MBPS    line rate for the percentage (default: the TX port's link speed)
  --expect-all         exit non-zero on any loss, duplicate or corruption
  --expect-injected    exit non-zero unless the losses, duplicates, reorderings and corruptions
                       found equal what the fault: ports among --tx-port/--rx-port injected
  --burst N            TX burst (default 32)
  --ring-size N        descriptors per queue (default 1024)
  --cores LIST         pin the TX and RX threads (e.g. 0 or 0,1)
  --expect-rx-dst MAC  count received frames with another destination MAC as corrupted
  --expect-rx-src MAC  same for the source MAC (e.g. behind l2fwd: its TX port's MAC)
  -T SECS              print rates every SECS seconds (default 0: only the summary; 1 with --stats-json)
  --pcap FILE          write the frames sent and received on the chosen ports to FILE (pcap, ns stamps)
  --pcap-ports LIST    ports to capture, by id: 0 = TX port, 1 = RX port (default: all)
  --pcap-slots N       capture records in flight, a power of two (default 4096); beyond, frames are
                       not captured and counted as capture drops
  --stats-json         stdout: one JSON object per stats period and a final one; text goes to stderr
  Environment: OXPMD_LOG=error|warn|info|debug|trace (default warn).";

const MAGIC: u16 = 0x0C5A;
/// Offset of the test header: after Ethernet (14), IPv4 (20) and UDP (8).
const HDR_OFF: usize = 42;
/// Test header length.
const HDR_LEN: usize = 18;
/// Smallest frame (with FCS).
const MIN_SIZE: usize = 64;
/// Largest standard frame (with FCS).
const MAX_SIZE: usize = 1518;
/// UDP destination port of the test frames.
const UDP_DST: u16 = 9;
/// Longest sequence gap tracked exactly for duplicates and reordering.
const WINDOW: u64 = 1 << 16;

/// Frame sizes to send (with FCS).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sizes {
    Fixed(usize),
    Range(usize, usize),
    Imix,
}

impl Sizes {
    fn parse(s: &str) -> Result<Sizes, String> {
        let num = |v: &str| -> Result<usize, String> {
            let n: usize = v
                .trim()
                .parse()
                .map_err(|_| format!("--size: `{v}` is not a number"))?;
            if !(MIN_SIZE..=MAX_SIZE).contains(&n) {
                return Err(format!("--size: {n} out of range {MIN_SIZE}..={MAX_SIZE}"));
            }
            Ok(n)
        };
        if s == "imix" {
            return Ok(Sizes::Imix);
        }
        match s.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("--size: empty range {a}-{b}"));
                }
                Ok(Sizes::Range(a, b))
            }
            None => Ok(Sizes::Fixed(num(s)?)),
        }
    }

    /// Size of the `i`-th frame.
    fn nth(&self, i: u64) -> usize {
        match *self {
            Sizes::Fixed(n) => n,
            Sizes::Range(a, b) => a + (i % (b - a + 1) as u64) as usize,
            // Simple IMIX: 7 x 64, 4 x 594, 1 x 1518 per 12 frames.
            Sizes::Imix => match i % 12 {
                0..=6 => 64,
                7..=10 => 594,
                _ => 1518,
            },
        }
    }
}

#[derive(Debug)]
struct Options {
    tx_port: String,
    rx_port: Option<String>,
    sizes: Sizes,
    rate: Option<u64>,
    count: Option<u64>,
    duration: Option<f64>,
    drain: f64,
    tx_stall: f64,
    streams: u16,
    dst_mac: Option<MacAddr>,
    promiscuous: bool,
    link_speed: Option<u64>,
    expect_all: bool,
    expect_injected: bool,
    burst: usize,
    ring_size: usize,
    cores: Vec<usize>,
    period: u64,
    expect_rx_dst: Option<MacAddr>,
    expect_rx_src: Option<MacAddr>,
    pcap: Option<std::path::PathBuf>,
    pcap_ports: Option<Vec<u16>>,
    pcap_slots: usize,
    stats_json: bool,
    /// `--gap N:SECS`: frames per round, idle time between rounds.
    gap: Option<(u64, Duration)>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        tx_port: String::new(),
        rx_port: None,
        sizes: Sizes::Fixed(MIN_SIZE),
        rate: None,
        count: None,
        duration: None,
        drain: 1.0,
        tx_stall: 10.0,
        streams: 1,
        dst_mac: None,
        promiscuous: false,
        link_speed: None,
        expect_all: false,
        expect_injected: false,
        burst: 32,
        ring_size: 1024,
        cores: Vec::new(),
        period: 0,
        expect_rx_dst: None,
        expect_rx_src: None,
        pcap: None,
        pcap_ports: None,
        pcap_slots: 4096,
        stats_json: false,
        gap: None,
    };
    let mut it = args.iter();
    let val = |it: &mut std::slice::Iter<'_, String>, opt: &str| -> Result<String, String> {
        it.next().cloned().ok_or_else(|| format!("{opt}: missing value"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--tx-port" => o.tx_port = val(&mut it, a)?,
            "--rx-port" => o.rx_port = Some(val(&mut it, a)?),
            "--size" => o.sizes = Sizes::parse(&val(&mut it, a)?)?,
            "--rate" => o.rate = Some(parse_num(a, it.next(), 1u64..=1_000_000_000)?),
            "--count" => o.count = Some(parse_num(a, it.next(), 1u64..=1 << 40)?),
            "--duration" => o.duration = Some(parse_num(a, it.next(), 0.001f64..=31_536_000.0)?),
            "--drain" => o.drain = parse_num(a, it.next(), 0.0f64..=3600.0)?,
            "--tx-stall" => o.tx_stall = parse_num(a, it.next(), 0.0f64..=3600.0)?,
            "--streams" => o.streams = parse_num(a, it.next(), 1u16..=1024)?,
            "--dst-mac" => {
                let v = val(&mut it, a)?;
                o.dst_mac = Some(if v == "broadcast" {
                    MacAddr([0xFF; 6])
                } else {
                    v.parse().map_err(|e| format!("--dst-mac: {e}"))?
                });
            }
            "-P" => o.promiscuous = true,
            "--link-speed" => o.link_speed = Some(parse_num(a, it.next(), 1u64..=1_000_000)?),
            "--expect-all" => o.expect_all = true,
            "--expect-injected" => o.expect_injected = true,
            "--burst" => o.burst = parse_num(a, it.next(), 1usize..=MAX_BURST)?,
            "--ring-size" => o.ring_size = parse_num(a, it.next(), 64usize..=4096)?,
            "--cores" => {
                let v = val(&mut it, a)?;
                for c in v.split(',') {
                    o.cores.push(parse_num("--cores", Some(c.trim()), 0usize..=4095)?);
                }
            }
            "--expect-rx-dst" => {
                o.expect_rx_dst = Some(val(&mut it, a)?.parse().map_err(|e| format!("{a}: {e}"))?)
            }
            "--expect-rx-src" => {
                o.expect_rx_src = Some(val(&mut it, a)?.parse().map_err(|e| format!("{a}: {e}"))?)
            }
            "-T" => o.period = parse_num(a, it.next(), 0u64..=86_400)?,
            "--pcap" => o.pcap = Some(val(&mut it, a)?.into()),
            "--pcap-ports" => {
                let v = val(&mut it, a)?;
                let mut l = Vec::new();
                for c in v.split(',') {
                    l.push(parse_num(a, Some(c.trim()), 0u16..=1)?);
                }
                o.pcap_ports = Some(l);
            }
            "--pcap-slots" => {
                o.pcap_slots = parse_num(a, it.next(), 2usize..=65536)?;
                if !o.pcap_slots.is_power_of_two() {
                    return Err(format!("{a}: {} is not a power of two", o.pcap_slots));
                }
            }
            "--stats-json" => o.stats_json = true,
            "--gap" => {
                let v = val(&mut it, a)?;
                let (n, secs) = v.split_once(':').ok_or("--gap: expected N:SECS")?;
                let n = parse_num(a, Some(n), 1u64..=1 << 40)?;
                let secs = parse_num(a, Some(secs), 0.0f64..=3600.0)?;
                o.gap = Some((n, Duration::from_secs_f64(secs)));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.tx_port.is_empty() {
        return Err("no TX port given (--tx-port DEV)".into());
    }
    if o.expect_all && o.rx_port.is_none() {
        return Err("--expect-all needs --rx-port".into());
    }
    if o.expect_injected && o.rx_port.is_none() {
        return Err("--expect-injected needs --rx-port".into());
    }
    if o.count.is_some() && o.duration.is_some() {
        return Err("give --count or --duration, not both".into());
    }
    if o.pcap.is_none() && o.pcap_ports.is_some() {
        return Err("--pcap-ports needs --pcap FILE".into());
    }
    if o.stats_json && o.period == 0 {
        o.period = 1;
    }
    Ok(o)
}

fn main() -> ExitCode {
    common::init_logger(log::LevelFilter::Warn);
    common::cli_main("pktgen", USAGE, parse_args, run, 3)
}

fn checksum16(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// Fills `f` (the frame without FCS) with the test frame of `stream`/`seq`.
fn build_frame(f: &mut [u8], dst: MacAddr, src: MacAddr, stream: u16, seq: u32, ts: u64) {
    let len = f.len();
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    {
        let ip = &mut f[14..34];
        ip.copy_from_slice(&[
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 19, 0, 1,
        ]);
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[4..6].copy_from_slice(&(seq as u16).to_be_bytes());
        let c = checksum16(ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let udp_len = ip_len - 20;
    f[34..36].copy_from_slice(&(1024 + stream).to_be_bytes());
    f[36..38].copy_from_slice(&UDP_DST.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    f[40..42].copy_from_slice(&[0, 0]);
    f[HDR_OFF..HDR_OFF + 2].copy_from_slice(&MAGIC.to_be_bytes());
    f[HDR_OFF + 2..HDR_OFF + 4].copy_from_slice(&stream.to_be_bytes());
    f[HDR_OFF + 4..HDR_OFF + 8].copy_from_slice(&seq.to_be_bytes());
    f[HDR_OFF + 8..HDR_OFF + 16].copy_from_slice(&ts.to_be_bytes());
    for (i, b) in f[HDR_OFF + HDR_LEN..].iter_mut().enumerate() {
        *b = pattern(seq, i);
    }
    let c = test_checksum(f);
    f[HDR_OFF + 16..HDR_OFF + 18].copy_from_slice(&c.to_be_bytes());
    // UDP checksum over the pseudo header and the datagram.
    let mut pseudo = 17u32 + u32::from(udp_len);
    for w in f[26..34].chunks_exact(2) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    let c = match checksum16(&f[34..], pseudo) {
        0 => 0xFFFF,
        c => c,
    };
    f[40..42].copy_from_slice(&c.to_be_bytes());
}

#[inline(always)]
fn pattern(seq: u32, i: usize) -> u8 {
    (seq as usize).wrapping_mul(31).wrapping_add(i) as u8
}

/// Checksum of the test header fields (stream, seq, timestamp) and the payload.
fn test_checksum(f: &[u8]) -> u16 {
    let mut sum = 0u32;
    for w in f[HDR_OFF + 2..HDR_OFF + 16].chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    checksum16(&f[HDR_OFF + HDR_LEN..], sum)
}

/// A parsed, verified test frame.
#[derive(Debug, PartialEq, Eq)]
struct TestFrame {
    stream: u16,
    seq: u32,
    ts: u64,
}

/// Source and destination IPv4 addresses of the test frames (198.18.0.1 -> 198.19.0.1).
const TEST_IPS: [u8; 8] = [198, 18, 0, 1, 198, 19, 0, 1];

/// Parses and verifies a received frame; `None` if it is not a test frame, `Some(Err)` if it is one
/// but corrupted.
///
/// A test frame is recognised by five markers after its Ethernet header (IPv4 version and header
/// length, protocol UDP, the test addresses, UDP port 9, the magic); one flipped bit breaks at most
/// one of them, so a frame with four of the five is a test frame, and every byte after the Ethernet
/// header is then verified: the markers, the IPv4 header checksum and length, the UDP checksum (our
/// frames always carry one), the test header checksum and the payload pattern. Any single flipped
/// bit there makes the frame corrupted, never foreign, so a corruption is never also counted as a
/// loss (see `lost` in the report).
fn parse_frame(d: &[u8]) -> Option<Result<TestFrame, &'static str>> {
    if d.len() < HDR_OFF + HDR_LEN || d[12..14] != [0x08, 0x00] {
        return None;
    }
    let markers = [
        d[14] == 0x45,
        d[23] == 17,
        d[26..34] == TEST_IPS,
        d[36..38] == UDP_DST.to_be_bytes(),
        d[HDR_OFF..HDR_OFF + 2] == MAGIC.to_be_bytes(),
    ];
    match markers.iter().filter(|&&m| m).count() {
        5 => {}
        4 => return Some(Err("header")),
        _ => return None,
    }
    if checksum16(&d[14..34], 0) != 0 {
        return Some(Err("IPv4 header checksum"));
    }
    let ip_len = usize::from(u16::from_be_bytes([d[16], d[17]]));
    if ip_len + 14 != d.len() {
        return Some(Err("length"));
    }
    let udp_len = u16::from_be_bytes([d[38], d[39]]);
    let mut pseudo = 17u32 + u32::from(udp_len);
    for w in d[26..34].chunks_exact(2) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if d[40..42] == [0, 0] || checksum16(&d[34..], pseudo) != 0 {
        return Some(Err("UDP checksum"));
    }
    let seq = u32::from_be_bytes([d[HDR_OFF + 4], d[HDR_OFF + 5], d[HDR_OFF + 6], d[HDR_OFF + 7]]);
    let want = u16::from_be_bytes([d[HDR_OFF + 16], d[HDR_OFF + 17]]);
    if test_checksum(d) != want {
        return Some(Err("checksum"));
    }
    if d[HDR_OFF + HDR_LEN..]
        .iter()
        .enumerate()
        .any(|(i, &b)| b != pattern(seq, i))
    {
        return Some(Err("pattern"));
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&d[HDR_OFF + 8..HDR_OFF + 16]);
    Some(Ok(TestFrame {
        stream: u16::from_be_bytes([d[HDR_OFF + 2], d[HDR_OFF + 3]]),
        seq,
        ts: u64::from_be_bytes(ts),
    }))
}

/// Per-stream receive state: the highest sequence seen and a bitmap of the `WINDOW` below it.
#[derive(Default)]
struct StreamRx {
    max: Option<u64>,
    seen: Vec<u64>,
}

/// Receive-side results.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct RxResult {
    received: u64,
    unique: u64,
    duplicates: u64,
    reordered: u64,
    corrupted: u64,
    foreign: u64,
    bytes: u64,
    lat_min_ns: u64,
    lat_max_ns: u64,
    lat_sum_ns: u64,
    first_ns: u64,
    last_ns: u64,
}

#[derive(Default)]
struct Checker {
    streams: Vec<StreamRx>,
    r: RxResult,
    dst: Option<MacAddr>,
    src: Option<MacAddr>,
}

impl Checker {
    fn new(streams: u16, dst: Option<MacAddr>, src: Option<MacAddr>) -> Self {
        Checker {
            dst,
            src,
            streams: (0..streams)
                .map(|_| StreamRx {
                    max: None,
                    seen: vec![0; (WINDOW / 64) as usize],
                })
                .collect(),
            r: RxResult {
                lat_min_ns: u64::MAX,
                ..RxResult::default()
            },
        }
    }

    /// Up to `limit` (stream, seq) pairs sent but not seen, given `sent` frames spread
    /// round-robin over the streams (only within the tracked window of each stream).
    fn missing(&self, sent: u64, limit: usize) -> Vec<(u16, u64)> {
        let n = self.streams.len() as u64;
        let mut out = Vec::new();
        for (s, st) in self.streams.iter().enumerate() {
            let count = sent / n + u64::from((s as u64) < sent % n);
            let lo = st.max.map_or(0, |m| m.saturating_sub(WINDOW - 1));
            for seq in lo..count {
                let seen = st.max.is_some_and(|m| seq <= m)
                    && st.seen[(seq % WINDOW / 64) as usize] & (1u64 << (seq % 64)) != 0;
                if !seen {
                    out.push((s as u16, seq));
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    }

    fn check(&mut self, pkt: &Packet, now_ns: u64) {
        let flags = pkt.flags();
        let hw_bad =
            flags.contains(OffloadFlags::RX_IP_CKSUM_BAD) || flags.contains(OffloadFlags::RX_L4_CKSUM_BAD);
        let f = match parse_frame(pkt.data()) {
            None => {
                self.r.foreign += 1;
                return;
            }
            Some(Err(_)) => {
                self.r.received += 1;
                self.r.corrupted += 1;
                return;
            }
            Some(Ok(f)) => f,
        };
        self.r.received += 1;
        self.r.bytes += pkt.len() as u64 + 4;
        if self.r.first_ns == 0 {
            self.r.first_ns = now_ns;
        }
        self.r.last_ns = now_ns;
        let d = pkt.data();
        let mac_bad = self.dst.is_some_and(|m| d[0..6] != m.0) || self.src.is_some_and(|m| d[6..12] != m.0);
        if hw_bad || mac_bad {
            self.r.corrupted += 1;
            return;
        }
        let Some(st) = self.streams.get_mut(usize::from(f.stream)) else {
            self.r.corrupted += 1;
            return;
        };
        let lat = now_ns.saturating_sub(f.ts);
        self.r.lat_min_ns = self.r.lat_min_ns.min(lat);
        self.r.lat_max_ns = self.r.lat_max_ns.max(lat);
        self.r.lat_sum_ns += lat;
        let seq = u64::from(f.seq);
        let bit = |s: u64| ((s % WINDOW / 64) as usize, 1u64 << (s % 64));
        match st.max {
            Some(max) if seq <= max => {
                if max - seq >= WINDOW {
                    // Too old to tell: count as reordered.
                    self.r.reordered += 1;
                    self.r.unique += 1;
                    return;
                }
                let (w, b) = bit(seq);
                if st.seen[w] & b != 0 {
                    self.r.duplicates += 1;
                } else {
                    st.seen[w] |= b;
                    self.r.reordered += 1;
                    self.r.unique += 1;
                }
            }
            _ => {
                // Clear the bits of the sequence numbers skipped over (they are now in the window).
                let from = st.max.map_or(0, |m| m + 1);
                if seq - from >= WINDOW {
                    st.seen.iter_mut().for_each(|w| *w = 0);
                } else {
                    for s in from..seq {
                        let (w, b) = bit(s);
                        st.seen[w] &= !b;
                    }
                }
                let (w, b) = bit(seq);
                st.seen[w] |= b;
                st.max = Some(seq);
                self.r.unique += 1;
            }
        }
    }
}

fn pin(cores: &[usize], i: usize, what: &str) {
    if cores.is_empty() {
        return;
    }
    let c = cores[i % cores.len()];
    if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
        log::warn!("{what}: could not pin to core {c}");
    }
}

/// Live counters shared by the threads and the printer.
#[derive(Default)]
struct Live {
    sent: AtomicU64,
    sent_bytes: AtomicU64,
    received: AtomicU64,
    tx_done: AtomicBool,
}

struct TxResult {
    sent: u64,
    bytes: u64,
    start_ns: u64,
    end_ns: u64,
    /// TX took no frame for `--tx-stall` seconds and pktgen stopped.
    stalled: bool,
}

#[allow(clippy::too_many_arguments)]
fn tx_loop(
    mut q: TxQueue,
    pool: Mempool,
    opts: &Options,
    dst: MacAddr,
    src: MacAddr,
    t0: Instant,
    live: &Live,
    mut tap: Option<CaptureTap>,
) -> TxResult {
    pin(&opts.cores, 0, "pktgen tx");
    let mut burst = Burst::with_capacity(opts.burst).unwrap_or_default();
    let mut seqs = vec![0u32; usize::from(opts.streams)];
    let mut i = 0u64;
    let mut bytes = 0u64;
    let start = t0.elapsed();
    let start_ns = start.as_nanos() as u64;
    let deadline = opts.duration.map(|d| start + Duration::from_secs_f64(d));
    let mut last_publish = 0u64;
    // Since when TX has taken nothing although frames were waiting (pool empty or ring full).
    let mut no_progress_since: Option<Duration> = None;
    let stall_limit = (opts.tx_stall > 0.0).then(|| Duration::from_secs_f64(opts.tx_stall));
    let mut stalled = false;
    // The frame count at which the last `--gap` pause was taken.
    let mut gap_done = 0u64;
    loop {
        if STOP.load(Ordering::Relaxed) {
            break;
        }
        if opts.count.is_some_and(|c| i >= c) {
            break;
        }
        let now = t0.elapsed();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        // How many frames the rate allows now.
        let mut want = opts.burst as u64;
        if let Some(rate) = opts.rate {
            let allowed = ((now - start).as_secs_f64() * rate as f64) as u64 + 1;
            want = want.min(allowed.saturating_sub(i));
            if want == 0 {
                std::hint::spin_loop();
                continue;
            }
        }
        if let Some(c) = opts.count {
            want = want.min(c - i);
        }
        if let Some((every, idle)) = opts.gap {
            if i > 0 && i % every == 0 && gap_done != i {
                // A round ended: let the peer go idle. Sleeping in short steps keeps Ctrl-C prompt.
                gap_done = i;
                let until = Instant::now() + idle;
                while !STOP.load(Ordering::Relaxed) && Instant::now() < until {
                    std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
                }
                continue;
            }
            // A burst never crosses the end of a round.
            want = want.min(every - i % every);
        }
        let now_ns = now.as_nanos() as u64;
        // One clock read per burst for the capture timestamps (vDSO, no system call).
        let cap_ts = if tap.is_some() { wall_ns() } else { 0 };
        while burst.len() < want as usize {
            let Some(mut p) = pool.alloc() else { break };
            let size = opts.sizes.nth(i + burst.len() as u64) - 4;
            let stream = ((i + burst.len() as u64) % u64::from(opts.streams)) as usize;
            let Some(room) = p.append(size) else { break };
            build_frame(room, dst, src, stream as u16, seqs[stream], now_ns);
            if let Some(t) = tap.as_mut() {
                t.capture(room, cap_ts);
            }
            seqs[stream] = seqs[stream].wrapping_add(1);
            if burst.push(p).is_err() {
                break;
            }
        }
        if burst.is_empty() {
            // Pool empty: the TX ring holds every buffer; let it complete.
            q.reclaim();
            if tx_stalled(&mut no_progress_since, stall_limit, now, i) {
                stalled = true;
                break;
            }
            std::hint::spin_loop();
            continue;
        }
        let lens: u64 = burst.iter().take(burst.len()).map(|p| p.len() as u64 + 4).sum();
        let before = burst.len();
        let n = q.tx_burst(&mut burst) as u64;
        if n > 0 {
            // Bytes of the packets taken (the front of the burst).
            let left: u64 = burst.iter().map(|p| p.len() as u64 + 4).sum();
            bytes += lens - left;
            i += n;
            no_progress_since = None;
        } else if tx_stalled(&mut no_progress_since, stall_limit, now, i) {
            stalled = true;
            break;
        }
        if (n as usize) < before {
            q.reclaim();
        }
        if i - last_publish >= 256 || n == 0 {
            live.sent.store(i, Ordering::Relaxed);
            live.sent_bytes.store(bytes, Ordering::Relaxed);
            last_publish = i;
            if let Some(t) = tap.as_ref() {
                t.publish();
            }
        }
    }
    // Frames built but not taken are not sent: drop them (the sequence numbers are gaps the
    // receiver never expects, since `sent` counts only what the ring took).
    let unsent = burst.len();
    burst.clear();
    if unsent > 0 {
        log::debug!("pktgen tx: {unsent} built frames not sent at stop");
    }
    live.sent.store(i, Ordering::Relaxed);
    live.sent_bytes.store(bytes, Ordering::Relaxed);
    live.tx_done.store(true, Ordering::Release);
    let end_ns = t0.elapsed().as_nanos() as u64;
    drop(tap);
    drop(q);
    oxpmd::dma::flush_thread_caches();
    TxResult {
        sent: i,
        bytes,
        start_ns,
        end_ns,
        stalled,
    }
}

/// One TX attempt that took nothing at `now`: true once that has lasted `limit` (logged).
fn tx_stalled(since: &mut Option<Duration>, limit: Option<Duration>, now: Duration, sent: u64) -> bool {
    let Some(limit) = limit else { return false };
    let since = *since.get_or_insert(now);
    if now.saturating_sub(since) < limit {
        return false;
    }
    say!(
        "pktgen: TX made no progress for {:.1} s after {sent} frames (ring full or no buffer back): stopping",
        limit.as_secs_f64()
    );
    true
}

fn rx_loop(
    mut qs: Vec<RxQueue>,
    opts: &Options,
    t0: Instant,
    live: &Live,
    mut tap: Option<CaptureTap>,
) -> RxResult {
    pin(&opts.cores, 1, "pktgen rx");
    let mut checker = Checker::new(opts.streams, opts.expect_rx_dst, opts.expect_rx_src);
    let mut burst = Burst::new();
    let mut tx_done_at: Option<Instant> = None;
    loop {
        let mut got = 0;
        for q in qs.iter_mut() {
            let n = q.rx_burst(&mut burst);
            if n > 0 {
                got += n;
                let now_ns = t0.elapsed().as_nanos() as u64;
                if let Some(t) = tap.as_mut() {
                    let ts = wall_ns();
                    for p in burst.iter() {
                        t.capture(p.data(), ts);
                    }
                    t.publish();
                }
                for p in burst.drain() {
                    checker.check(&p, now_ns);
                }
            }
        }
        if got > 0 {
            live.received.store(checker.r.received, Ordering::Relaxed);
        }
        if live.tx_done.load(Ordering::Acquire) {
            let at = *tx_done_at.get_or_insert_with(Instant::now);
            let all = checker.r.unique >= live.sent.load(Ordering::Relaxed);
            // Stop after the drain time, or at once when everything arrived and a short grace
            // period for duplicates has passed.
            let waited = at.elapsed().as_secs_f64();
            if waited >= opts.drain || (all && waited >= opts.drain.min(0.1)) {
                break;
            }
        }
        if got == 0 {
            std::hint::spin_loop();
        }
    }
    drop(tap);
    drop(qs);
    oxpmd::dma::flush_thread_caches();
    let missing = checker.missing(live.sent.load(Ordering::Relaxed), 10);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(s, q)| format!("{s}:{q}")).collect();
        say!("pktgen: first missing frames (stream:seq): {}", list.join(" "));
    }
    checker.r
}

/// The device a spec finally opens (through any `fault:` wrappers).
fn innermost(spec: &DeviceSpec) -> &DeviceSpec {
    match spec {
        DeviceSpec::Fault { inner, .. } => innermost(inner),
        other => other,
    }
}

fn run(opts: &Options) -> Result<bool, BoxError> {
    install_signal_handlers()?;
    common::JSON_MODE.store(opts.stats_json, Ordering::Relaxed);
    // The same device for TX and RX: one port. Two ring ports of one name are the pair's two ends.
    let tx_spec = DeviceSpec::parse(&opts.tx_port)?;
    let same = opts
        .rx_port
        .as_deref()
        .map(DeviceSpec::parse)
        .transpose()?
        .as_ref()
        == Some(&tx_spec)
        && !matches!(innermost(&tx_spec), DeviceSpec::Ring { .. });
    let mut ports: Vec<Port> = Vec::new();
    let t = Instant::now();
    ports.push(Port::open_spec(
        &tx_spec,
        &OpenOptions {
            port_id: 0,
            ..OpenOptions::default()
        },
    )?);
    if let (Some(rx), false) = (&opts.rx_port, same) {
        ports.push(Port::open_spec(
            &DeviceSpec::parse(rx)?,
            &OpenOptions {
                port_id: 1,
                ..OpenOptions::default()
            },
        )?);
    }
    step("pktgen", &format!("open {} port(s)", ports.len()), t);
    let t = Instant::now();
    let pool_size = (ports.len() * 2 * opts.ring_size + 4 * MAX_BURST + 2048).max(8192);
    let pool: Mempool = match ports.iter().find_map(|p| p.dma_map()) {
        Some(map) => Mempool::new(
            &MempoolConfig {
                cache_size: 256,
                region: RegionOptions::default(),
                ..MempoolConfig::new("pktgen", pool_size)
            },
            map,
        )?,
        None => virtual_pool("pktgen", pool_size, 256)?,
    };
    step(
        "pktgen",
        &format!("mempool of {pool_size} buffers (hugepage allocation, DMA mapping)"),
        t,
    );
    let t = Instant::now();
    let cfg = PortConfig::new(pool.clone()).ring_sizes(opts.ring_size, opts.ring_size);
    for p in ports.iter_mut() {
        p.configure(&cfg)?;
    }
    let rx_idx = if opts.rx_port.is_some() {
        Some(ports.len() - 1)
    } else {
        None
    };
    if let (Some(i), true) = (rx_idx, opts.promiscuous) {
        ports[i].set_promiscuous(true)?;
    }
    for p in ports.iter_mut() {
        p.start()?;
    }
    step("pktgen", "configure and start the ports", t);
    let mut speed = 0u64;
    for (i, p) in ports.iter_mut().enumerate() {
        let t = Instant::now();
        match p.wait_link_up(Duration::from_secs(30)) {
            Ok(l) => {
                say!(
                    "port {} ({}): MAC {} link {l} (waited {:.3} s)",
                    p.id(),
                    p.name(),
                    p.mac_addr(),
                    t.elapsed().as_secs_f64()
                );
                step("pktgen", &format!("link wait, port {} ({})", p.id(), p.name()), t);
                if i == 0 {
                    speed = u64::from(l.speed_mbps);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let speed_mbps = opts.link_speed.unwrap_or(if speed == 0 { 10_000 } else { speed });
    let mut link_events = common::take_link_events(&mut ports);
    let src = ports[0].mac_addr();
    let dst = opts.dst_mac.unwrap_or_else(|| match (rx_idx, same) {
        (Some(i), false) => ports[i].mac_addr(),
        _ => MacAddr([0xFF; 6]),
    });
    let (rx0, mut txqs) = ports[0].take_queues()?;
    let rxqs: Option<Vec<RxQueue>> = match (rx_idx, same) {
        (Some(_), true) => Some(rx0),
        (Some(i), false) => {
            drop(rx0);
            let (r, t) = ports[i].take_queues()?;
            drop(t);
            Some(r)
        }
        (None, _) => {
            drop(rx0);
            None
        }
    };
    let txq = txqs.remove(0);
    drop(txqs);
    // Capture: TX frames of port 0, RX frames of the RX port, each if chosen.
    let rx_port_id = rx_idx.map(|i| ports[i].id());
    let chosen = |id: u16| opts.pcap_ports.as_ref().is_none_or(|l| l.contains(&id));
    let capture = start_capture("pktgen", opts.pcap.as_deref(), opts.pcap_slots, 2048)?;
    let tx_tap = capture.as_ref().filter(|_| chosen(0)).map(Capture::tap);
    let rx_tap = capture
        .as_ref()
        .filter(|_| rx_port_id.is_some_and(chosen))
        .map(Capture::tap);
    say!(
        "pktgen: {} -> {}: sizes {:?}, rate {}, {} stream(s), dst {dst}, src {src}, line rate {speed_mbps} Mbit/s",
        opts.tx_port,
        opts.rx_port.as_deref().unwrap_or("(no receiver)"),
        opts.sizes,
        opts.rate.map_or("max".to_string(), |r| format!("{r} pps")),
        opts.streams
    );
    let t0 = Instant::now();
    let live = Live::default();
    let (txr, rxr) = std::thread::scope(|s| -> Result<(TxResult, Option<RxResult>), BoxError> {
        let tx_pool = pool.clone();
        let live_ref = &live;
        let tx = std::thread::Builder::new()
            .name("pktgen-tx".into())
            .spawn_scoped(s, move || {
                tx_loop(txq, tx_pool, opts, dst, src, t0, live_ref, tx_tap)
            })?;
        let rx = match rxqs {
            Some(q) => Some(
                std::thread::Builder::new()
                    .name("pktgen-rx".into())
                    .spawn_scoped(s, move || rx_loop(q, opts, t0, live_ref, rx_tap))?,
            ),
            None => None,
        };
        let mut last = (Instant::now(), 0u64, 0u64);
        let mut prev: Vec<Option<PortStats>> = ports.iter().map(|_| None).collect();
        while !tx.is_finished() || rx.as_ref().is_some_and(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            common::print_link_events(&mut link_events);
            if opts.period > 0 && last.0.elapsed().as_secs() >= opts.period {
                let (sent, recv) = (
                    live.sent.load(Ordering::Relaxed),
                    live.received.load(Ordering::Relaxed),
                );
                let dt = last.0.elapsed().as_secs_f64();
                if opts.stats_json {
                    let (cap, drop) = capture.as_ref().map_or((0, 0), Capture::counts);
                    println!(
                        "{{\"type\":\"stats\",\"time_s\":{:.3},\"interval_s\":{dt:.3},\"sent\":{sent},\
                         \"received\":{recv},\"pcap_captured\":{cap},\"pcap_dropped\":{drop},\"ports\":{}}}",
                        t0.elapsed().as_secs_f64(),
                        ports_json(&mut ports, &mut prev, dt)
                    );
                }
                say!(
                    "  {:>8.1} s: sent {sent} ({:.3} Mpps), received {recv} ({:.3} Mpps)",
                    t0.elapsed().as_secs_f64(),
                    (sent - last.1) as f64 / dt / 1e6,
                    (recv - last.2) as f64 / dt / 1e6
                );
                last = (Instant::now(), sent, recv);
            }
        }
        let txr = tx.join().map_err(|_| "the TX thread panicked")?;
        let rxr = match rx {
            Some(h) => Some(h.join().map_err(|_| "the RX thread panicked")?),
            None => None,
        };
        Ok((txr, rxr))
    })?;
    let cap_report = finish_capture("pktgen: ", capture, opts.pcap.as_deref())?;
    let final_ports = if opts.stats_json {
        let mut none: Vec<Option<PortStats>> = ports.iter().map(|_| None).collect();
        Some(ports_json(
            &mut ports,
            &mut none,
            (t0.elapsed().as_secs_f64()).max(1e-9),
        ))
    } else {
        None
    };
    let mut injected = FaultCounts::default();
    for p in ports.iter_mut() {
        p.stop()?;
        if let Some(c) = fault::injected(p.name()) {
            for (dir, d) in [("rx", &c.rx), ("tx", &c.tx)] {
                say!(
                    "port {} ({}): {dir} faults injected: seen {} dropped {} corrupted {} duplicated {} \
                     reordered {} rate_dropped {} dup_no_buffer {}",
                    p.id(),
                    p.name(),
                    d.seen,
                    d.dropped,
                    d.corrupted,
                    d.duplicated,
                    d.reordered,
                    d.rate_dropped,
                    d.dup_no_buffer
                );
                injected.seen += d.seen;
                injected.dropped += d.dropped;
                injected.corrupted += d.corrupted;
                injected.duplicated += d.duplicated;
                injected.reordered += d.reordered;
                injected.rate_dropped += d.rate_dropped;
                injected.dup_no_buffer += d.dup_no_buffer;
            }
        }
        match p.stats() {
            Ok(st) => say!(
                "port {} ({}): ipackets {} opackets {} imissed {} ierrors {} oerrors {} rx_nombuf {} \
                 rx_multiseg_dropped {}",
                p.id(),
                p.name(),
                st.ipackets,
                st.opackets,
                st.imissed,
                st.ierrors,
                st.oerrors,
                st.rx_nombuf,
                st.rx_multiseg_dropped
            ),
            Err(e) => say!("port {} ({}): statistics: {e}", p.id(), p.name()),
        }
    }
    drop(ports);
    drop(cfg);
    oxpmd::dma::flush_thread_caches();
    let (ok, mut kv) = report(opts, &txr, rxr.as_ref(), speed_mbps, &pool, &injected);
    if let Some(r) = cap_report {
        kv.push_str(&format!(
            " pcap_captured={} pcap_dropped={} pcap_written={}",
            r.captured, r.dropped, r.written
        ));
    }
    say!("pktgen-result: {kv}");
    if let Some(ports_json) = final_ports {
        let fields: Vec<String> = kv
            .split_whitespace()
            .filter_map(|f| f.split_once('='))
            .map(|(k, v)| match v.parse::<f64>() {
                Ok(n) if n.is_finite() => format!("{}:{v}", json_escape(k)),
                _ => format!("{}:{}", json_escape(k), json_escape(v)),
            })
            .collect();
        println!(
            "{{\"type\":\"final\",\"time_s\":{:.3},\"ok\":{ok},\"result\":{{{}}},\"ports\":{ports_json}}}",
            t0.elapsed().as_secs_f64(),
            fields.join(",")
        );
    }
    Ok(ok)
}

/// Rates of `frames` frames of `bytes` bytes (with FCS) over `ns`: (Mpps, Gbit/s, % of line rate).
fn rates(frames: u64, bytes: u64, ns: u64, speed_mbps: u64) -> (f64, f64, f64) {
    let secs = (ns as f64 / 1e9).max(1e-9);
    let mpps = frames as f64 / secs / 1e6;
    let gbps = bytes as f64 * 8.0 / secs / 1e9;
    // On the wire each frame also takes 20 bytes: preamble and start delimiter (8), gap (12).
    let wire = (bytes + 20 * frames) as f64 * 8.0 / secs / 1e6;
    (mpps, gbps, wire / speed_mbps as f64 * 100.0)
}

/// Prints the summary; returns whether the run passed and the `pktgen-result` key=value pairs.
fn report(
    opts: &Options,
    tx: &TxResult,
    rx: Option<&RxResult>,
    speed_mbps: u64,
    pool: &Mempool,
    injected: &FaultCounts,
) -> (bool, String) {
    let (mpps, gbps, pct) = rates(tx.sent, tx.bytes, tx.end_ns - tx.start_ns, speed_mbps);
    say!(
        "pktgen: sent {} frames ({} bytes) in {:.3} s: {mpps:.4} Mpps, {gbps:.4} Gbit/s, {pct:.2}% of {speed_mbps} Mbit/s line rate",
        tx.sent,
        tx.bytes,
        (tx.end_ns - tx.start_ns) as f64 / 1e9
    );
    let mut ok = true;
    let mut kv = format!(
        "sent={} tx_mpps={mpps:.6} tx_gbps={gbps:.6} tx_line_pct={pct:.3} tx_stalled={}",
        tx.sent, tx.stalled
    );
    if tx.stalled {
        say!(
            "pktgen: FAILED: TX stalled (no frame taken for {} s; --tx-stall)",
            opts.tx_stall
        );
        ok = false;
    }
    if let Some(r) = rx {
        // Lost: sent, and neither received intact nor received corrupted (a corrupted frame
        // stands for the one sent frame it was; its sequence number cannot be trusted).
        let lost = tx.sent.saturating_sub(r.unique + r.corrupted);
        let span = r.last_ns.saturating_sub(r.first_ns);
        // The receive rate over the span from the first to the last frame received.
        let (rmpps, rgbps, rpct) = rates(r.received.saturating_sub(1), r.bytes, span, speed_mbps);
        let valid = r.received - r.corrupted;
        let (lmin, lavg, lmax) = if valid > 0 && r.lat_min_ns != u64::MAX {
            (
                r.lat_min_ns as f64 / 1e3,
                r.lat_sum_ns as f64 / valid as f64 / 1e3,
                r.lat_max_ns as f64 / 1e3,
            )
        } else {
            (0.0, 0.0, 0.0)
        };
        say!(
            "pktgen: received {} frames ({} unique): {rmpps:.4} Mpps, {rgbps:.4} Gbit/s, {rpct:.2}% of line rate",
            r.received,
            r.unique
        );
        say!(
            "pktgen: lost {lost}, duplicates {}, reordered {}, corrupted {}, other frames {}; latency min {lmin:.1} us, avg {lavg:.1} us, max {lmax:.1} us",
            r.duplicates,
            r.reordered,
            r.corrupted,
            r.foreign
        );
        kv.push_str(&format!(
            " received={} unique={} lost={lost} dup={} reordered={} corrupt={} other={} rx_mpps={rmpps:.6} rx_gbps={rgbps:.6} rx_line_pct={rpct:.3} lat_min_us={lmin:.1} lat_avg_us={lavg:.1} lat_max_us={lmax:.1}",
            r.received, r.unique, r.duplicates, r.reordered, r.corrupted, r.foreign
        ));
        if opts.expect_all && (lost > 0 || r.duplicates > 0 || r.corrupted > 0) {
            say!("pktgen: --expect-all: FAILED (loss, duplicates or corruption)");
            ok = false;
        }
        let i = injected;
        if opts.expect_injected {
            let pairs = [
                ("lost", lost, "dropped + rate_dropped", i.dropped + i.rate_dropped),
                ("duplicates", r.duplicates, "duplicated", i.duplicated),
                ("reordered", r.reordered, "reordered", i.reordered),
                ("corrupted", r.corrupted, "corrupted", i.corrupted),
            ];
            let wrong: Vec<String> = pairs
                .iter()
                .filter(|(_, found, _, inj)| found != inj)
                .map(|(what, found, name, inj)| format!("{what} {found} != injected {name} {inj}"))
                .collect();
            if wrong.is_empty() {
                say!(
                    "pktgen: --expect-injected: found exactly what was injected (lost {lost}, duplicates {}, \
                     reordered {}, corrupted {})",
                    r.duplicates,
                    r.reordered,
                    r.corrupted
                );
            } else {
                say!("pktgen: --expect-injected: FAILED: {}", wrong.join(", "));
                ok = false;
            }
        }
    }
    let i = injected;
    kv.push_str(&format!(
        " fault_seen={} fault_dropped={} fault_rate_dropped={} fault_corrupted={} fault_duplicated={} \
         fault_reordered={} fault_dup_no_buffer={}",
        i.seen, i.dropped, i.rate_dropped, i.corrupted, i.duplicated, i.reordered, i.dup_no_buffer
    ));
    let (free, cap) = (pool.available(), pool.capacity());
    kv.push_str(&format!(" pool_free={free} pool_capacity={cap}"));
    if free != cap {
        say!(
            "pktgen: buffer check: {free}/{cap} buffers back: LEAK of {}",
            cap - free
        );
        ok = false;
    }
    (ok, kv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_corruption_is_seen() {
        let mut f = vec![0u8; 60];
        build_frame(
            &mut f,
            MacAddr([2, 0, 0, 0, 0, 1]),
            MacAddr([2, 0, 0, 0, 0, 2]),
            3,
            77,
            12345,
        );
        assert_eq!(
            parse_frame(&f),
            Some(Ok(TestFrame {
                stream: 3,
                seq: 77,
                ts: 12345
            }))
        );
        let mut g = f.clone();
        g[59] ^= 1;
        assert!(matches!(parse_frame(&g), Some(Err(_))));
        assert_eq!(checksum16(&f[14..34], 0), 0, "IPv4 header checksum verifies");
    }

    #[test]
    fn every_flipped_bit_after_the_ethernet_header_is_a_corruption() {
        for size in [60, 61, 1514] {
            let mut f = vec![0u8; size];
            build_frame(
                &mut f,
                MacAddr([2, 0, 0, 0, 0, 1]),
                MacAddr([2, 0, 0, 0, 0, 2]),
                0,
                0x0102_0304,
                99,
            );
            assert!(matches!(parse_frame(&f), Some(Ok(_))));
            for byte in 14..size {
                for bit in 0..8 {
                    let mut g = f.clone();
                    g[byte] ^= 1 << bit;
                    assert!(
                        matches!(parse_frame(&g), Some(Err(_))),
                        "size {size}: bit {bit} of byte {byte} flipped: {:?}",
                        parse_frame(&g)
                    );
                }
            }
        }
    }

    #[test]
    fn tx_stall_defaults_to_10_s_and_stops_only_after_that_long_without_progress() {
        let o = parse_args(&["--tx-port".to_string(), "null0".to_string()]).unwrap();
        assert_eq!(o.tx_stall, 10.0);
        let o = parse_args(&["--tx-port", "null0", "--tx-stall", "0"].map(String::from)).unwrap();
        assert_eq!(o.tx_stall, 0.0);
        let limit = Some(Duration::from_secs(10));
        let mut since = None;
        assert!(!tx_stalled(&mut since, limit, Duration::from_secs(5), 7));
        assert!(!tx_stalled(&mut since, limit, Duration::from_millis(14_999), 7));
        assert!(tx_stalled(&mut since, limit, Duration::from_secs(15), 7));
        // 0 turns it off.
        assert!(!tx_stalled(&mut None, None, Duration::from_secs(1000), 7));
    }

    #[test]
    fn gap_parses_frames_and_seconds() {
        let o = parse_args(&["--tx-port", "null0", "--gap", "250:1.5"].map(String::from)).unwrap();
        assert_eq!(o.gap, Some((250, Duration::from_millis(1500))));
        for bad in ["250", "0:1", "10:x", "10:-1"] {
            assert!(
                parse_args(&["--tx-port", "null0", "--gap", bad].map(String::from)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(Sizes::parse("64").unwrap(), Sizes::Fixed(64));
        assert_eq!(Sizes::parse("64-66").unwrap().nth(4), 65);
        assert!(Sizes::parse("63").is_err() && Sizes::parse("1519").is_err() && Sizes::parse("9-8").is_err());
        assert_eq!(Sizes::parse("imix").unwrap().nth(11), 1518);
    }
}
