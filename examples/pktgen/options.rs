//! Command-line options.

use std::time::Duration;

use crate::common::parse_num;
use crate::frame::{MAX_SIZE, MIN_SIZE};
use oxpmd::pmd::{MAX_BURST, MacAddr};

pub const USAGE: &str = "usage: pktgen --tx-port DEV [options]
  --tx-port DEV        port to send on: PCI address (0000:00:02.0) or virtual port (null0, ring:NAME,
                       fault:OPTIONS:DEV)
  --rx-port DEV        port to receive and check on (may be the TX port); without it, send only
  --size S             frame size with FCS: N (64..=9018), MIN-MAX (cycled), or imix (64/594/1518 7:4:1);
                       frames larger than a buffer (2048 bytes) leave as chained packets
  --mtu N              the ports' MTU (default: 1500, or what the largest --size needs)
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
  RFC 2544 (docs/rfc2544.md; needs --rx-port; excludes --size, --rate, --count, --duration, --gap):
  --rfc2544            for each size, search the highest rate losing at most --loss-tolerance, then
                       measure the latency at --latency-fraction of it
  --sizes LIST         frame sizes with FCS (default 64,128,256,512,1024,1280,1518; up to 9018)
  --trial SECS         length of a trial (default 2), followed by --drain
  --loss-tolerance PCT frames a passing trial may lose, percent (default 0)
  --resolution PCT     stop when the search interval is PCT percent of the maximum (default 1)
  --max-rate PPS       upper bound of the search (default and cap: the size's line rate)
  --latency-fraction F rate of the latency trial, a fraction of the throughput (default 0.9)
  --json FILE          write the results to FILE as one JSON document
  Environment: OXPMD_LOG=error|warn|info|debug|trace (default warn).";

/// Frame sizes to send (with FCS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sizes {
    Fixed(usize),
    Range(usize, usize),
    Imix,
}

impl Sizes {
    pub fn parse(s: &str) -> Result<Sizes, String> {
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

    /// The largest frame sent.
    pub fn largest(&self) -> usize {
        match *self {
            Sizes::Fixed(n) | Sizes::Range(_, n) => n,
            Sizes::Imix => 1518,
        }
    }

    /// Size of the `i`-th frame.
    pub fn nth(&self, i: u64) -> usize {
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

/// The RFC 2544 run (`--rfc2544`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rfc2544Options {
    /// Frame sizes with FCS, in the order given.
    pub sizes: Vec<usize>,
    pub trial_secs: f64,
    pub loss_tolerance_pct: f64,
    pub resolution_pct: f64,
    /// `--max-rate` (None: the line rate of each size).
    pub max_rate: Option<f64>,
    pub latency_fraction: f64,
    pub json: Option<std::path::PathBuf>,
}

/// The RFC 2544 frame sizes (RFC 2544 section 9.1, Ethernet).
pub const RFC2544_SIZES: [usize; 7] = [64, 128, 256, 512, 1024, 1280, 1518];

#[derive(Debug)]
pub struct Options {
    pub tx_port: String,
    pub rx_port: Option<String>,
    pub sizes: Sizes,
    pub rate: Option<u64>,
    pub count: Option<u64>,
    pub duration: Option<f64>,
    pub drain: f64,
    pub tx_stall: f64,
    pub streams: u16,
    pub dst_mac: Option<MacAddr>,
    pub promiscuous: bool,
    pub link_speed: Option<u64>,
    pub expect_all: bool,
    pub expect_injected: bool,
    pub burst: usize,
    pub ring_size: usize,
    pub cores: Vec<usize>,
    pub period: u64,
    pub expect_rx_dst: Option<MacAddr>,
    pub expect_rx_src: Option<MacAddr>,
    pub pcap: Option<std::path::PathBuf>,
    pub pcap_ports: Option<Vec<u16>>,
    pub pcap_slots: usize,
    pub stats_json: bool,
    /// `--gap N:SECS`: frames per round, idle time between rounds.
    pub gap: Option<(u64, Duration)>,
    /// `--mtu` (None: what the largest frame needs, at least 1500).
    pub mtu: Option<u16>,
    /// `--rfc2544` and its options.
    pub rfc2544: Option<Rfc2544Options>,
}

impl Options {
    /// The ports' MTU: `--mtu`, else the standard 1500 or what the largest frame needs.
    pub fn mtu(&self) -> u16 {
        self.mtu
            .unwrap_or_else(|| (self.largest_size().saturating_sub(18)).max(1500) as u16)
    }

    /// The largest frame sent (with FCS), by `--size` or, with `--rfc2544`, `--sizes`.
    pub fn largest_size(&self) -> usize {
        match &self.rfc2544 {
            Some(r) => r.sizes.iter().copied().max().unwrap_or(MIN_SIZE),
            None => self.sizes.largest(),
        }
    }
}

/// The options given on the command line that only `--rfc2544` takes, as given.
#[derive(Default)]
struct Rfc2544Args {
    on: bool,
    sizes: Option<String>,
    trial: Option<f64>,
    loss_tolerance: Option<f64>,
    resolution: Option<f64>,
    max_rate: Option<f64>,
    latency_fraction: Option<f64>,
    json: Option<std::path::PathBuf>,
}

/// The `--sizes` list: each 64..=9018, none twice.
fn parse_sizes(v: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for s in v.split(',') {
        let n = parse_num("--sizes", Some(s.trim()), MIN_SIZE..=MAX_SIZE)?;
        if out.contains(&n) {
            return Err(format!("--sizes: {n} is listed twice"));
        }
        out.push(n);
    }
    Ok(out)
}

impl Rfc2544Args {
    /// The options of an RFC 2544 run, or None without `--rfc2544`; refuses what conflicts.
    fn finish(self, o: &Options, given: &[&str]) -> Result<Option<Rfc2544Options>, String> {
        let own = [
            ("--sizes", self.sizes.is_some()),
            ("--trial", self.trial.is_some()),
            ("--loss-tolerance", self.loss_tolerance.is_some()),
            ("--resolution", self.resolution.is_some()),
            ("--max-rate", self.max_rate.is_some()),
            ("--latency-fraction", self.latency_fraction.is_some()),
            ("--json", self.json.is_some()),
        ];
        if !self.on {
            return match own.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(format!("{name} needs --rfc2544 (it sets up the RFC 2544 search)")),
                None => Ok(None),
            };
        }
        for other in [
            "--size",
            "--rate",
            "--count",
            "--duration",
            "--gap",
            "--expect-all",
            "--expect-injected",
            "--pcap",
            "--stats-json",
        ] {
            if given.contains(&other) {
                let fix = match other {
                    "--size" => "give the frame sizes with --sizes LIST",
                    "--rate" => "the search sets the rates; bound it with --max-rate PPS",
                    "--count" | "--duration" => "the length of a trial is --trial SECS",
                    "--stats-json" => "write the results with --json FILE",
                    _ => "drop it",
                };
                return Err(format!("--rfc2544 excludes {other}: {fix}"));
            }
        }
        if o.rx_port.is_none() {
            return Err("--rfc2544 needs --rx-port DEV (the port behind the device under test)".into());
        }
        let sizes = match &self.sizes {
            Some(v) => parse_sizes(v)?,
            None => RFC2544_SIZES.to_vec(),
        };
        if let Some(mtu) = o.mtu {
            if let Some(&big) = sizes.iter().find(|&&s| s > usize::from(mtu) + 18) {
                return Err(format!(
                    "--sizes: {big} needs an MTU of {}, --mtu is {mtu}: raise --mtu or drop that size",
                    big - 18
                ));
            }
        }
        let latency_fraction = self.latency_fraction.unwrap_or(0.9);
        if !(latency_fraction > 0.0 && latency_fraction <= 1.0) {
            return Err(format!(
                "--latency-fraction: {latency_fraction} is outside (0, 1]: give a fraction of the throughput, e.g. 0.9"
            ));
        }
        let resolution_pct = self.resolution.unwrap_or(1.0);
        if resolution_pct <= 0.0 {
            return Err(format!(
                "--resolution: {resolution_pct} must be above 0 percent, e.g. 1"
            ));
        }
        Ok(Some(Rfc2544Options {
            sizes,
            trial_secs: self.trial.unwrap_or(2.0),
            loss_tolerance_pct: self.loss_tolerance.unwrap_or(0.0),
            resolution_pct,
            max_rate: self.max_rate,
            latency_fraction,
            json: self.json,
        }))
    }
}

pub fn parse_args(args: &[String]) -> Result<Options, String> {
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
        mtu: None,
        rfc2544: None,
    };
    let mut rfc = Rfc2544Args::default();
    let mut given: Vec<&str> = Vec::new();
    let mut it = args.iter();
    let val = |it: &mut std::slice::Iter<'_, String>, opt: &str| -> Result<String, String> {
        it.next().cloned().ok_or_else(|| format!("{opt}: missing value"))
    };
    while let Some(a) = it.next() {
        given.push(a.as_str());
        match a.as_str() {
            "--tx-port" => o.tx_port = val(&mut it, a)?,
            "--rx-port" => o.rx_port = Some(val(&mut it, a)?),
            "--size" => o.sizes = Sizes::parse(&val(&mut it, a)?)?,
            "--mtu" => o.mtu = Some(parse_num(a, it.next(), 68u16..=9728)?),
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
            "--rfc2544" => rfc.on = true,
            "--sizes" => rfc.sizes = Some(val(&mut it, a)?),
            "--trial" => rfc.trial = Some(parse_num(a, it.next(), 0.01f64..=3600.0)?),
            "--loss-tolerance" => rfc.loss_tolerance = Some(parse_num(a, it.next(), 0.0f64..=99.0)?),
            "--resolution" => rfc.resolution = Some(parse_num(a, it.next(), 0.0f64..=100.0)?),
            "--max-rate" => rfc.max_rate = Some(parse_num(a, it.next(), 1.0f64..=1e9)?),
            "--latency-fraction" => rfc.latency_fraction = Some(parse_num(a, it.next(), 0.0f64..=1.0)?),
            "--json" => rfc.json = Some(val(&mut it, a)?.into()),
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
    o.rfc2544 = rfc.finish(&o, &given)?;
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn args(a: &[&str]) -> Result<Options, String> {
        let mut v: Vec<String> = ["--tx-port", "ring:a", "--rx-port", "ring:a"]
            .map(String::from)
            .to_vec();
        v.extend(a.iter().map(|s| s.to_string()));
        parse_args(&v)
    }

    #[test]
    fn rfc2544_defaults() {
        let r = args(&["--rfc2544"]).unwrap().rfc2544.unwrap();
        assert_eq!(r.sizes, RFC2544_SIZES);
        assert_eq!(
            (
                r.trial_secs,
                r.loss_tolerance_pct,
                r.resolution_pct,
                r.max_rate,
                r.latency_fraction
            ),
            (2.0, 0.0, 1.0, None, 0.9)
        );
        assert!(args(&[]).unwrap().rfc2544.is_none());
        let o = args(&[
            "--rfc2544",
            "--sizes",
            "64,9018",
            "--trial",
            "1",
            "--json",
            "/tmp/x",
        ])
        .unwrap();
        assert_eq!(o.mtu(), 9000, "the MTU follows the largest size");
        assert_eq!(o.rfc2544.unwrap().sizes, [64, 9018]);
    }

    #[test]
    fn rfc2544_conflicts_are_refused_naming_the_option_and_the_fix() {
        for (a, want) in [
            (
                &["--rfc2544", "--count", "10"][..],
                "--rfc2544 excludes --count: the length of a trial is --trial",
            ),
            (&["--rfc2544", "--duration", "1"], "excludes --duration"),
            (
                &["--rfc2544", "--rate", "1000"],
                "excludes --rate: the search sets the rates; bound it with --max-rate",
            ),
            (
                &["--rfc2544", "--size", "128"],
                "excludes --size: give the frame sizes with --sizes",
            ),
            (&["--rfc2544", "--stats-json"], "excludes --stats-json"),
            (
                &["--rfc2544", "--sizes", "63"],
                "--sizes: 63 out of range 64..=9018",
            ),
            (&["--rfc2544", "--sizes", "64,9019"], "--sizes: 9019 out of range"),
            (&["--rfc2544", "--sizes", "64,64"], "--sizes: 64 is listed twice"),
            (&["--rfc2544", "--sizes", "64,x"], "--sizes: `x` is not a number"),
            (
                &["--rfc2544", "--sizes", "9018", "--mtu", "1500"],
                "--sizes: 9018 needs an MTU of 9000, --mtu is 1500",
            ),
            (
                &["--rfc2544", "--latency-fraction", "0"],
                "--latency-fraction: 0 is outside (0, 1]",
            ),
            (
                &["--rfc2544", "--latency-fraction", "1.5"],
                "--latency-fraction: 1.5 out of range",
            ),
            (
                &["--rfc2544", "--resolution", "0"],
                "--resolution: 0 must be above 0",
            ),
            (
                &["--rfc2544", "--loss-tolerance", "100"],
                "--loss-tolerance: 100 out of range",
            ),
            (&["--sizes", "64"], "--sizes needs --rfc2544"),
            (&["--json", "/tmp/x"], "--json needs --rfc2544"),
        ] {
            let e = args(a).unwrap_err();
            assert!(e.contains(want), "{a:?}: `{e}` lacks `{want}`");
        }
        let e = parse_args(&["--tx-port", "ring:a", "--rfc2544"].map(String::from)).unwrap_err();
        assert!(e.contains("--rfc2544 needs --rx-port"), "{e}");
        assert_eq!(
            args(&["--rfc2544", "--latency-fraction", "1"])
                .unwrap()
                .rfc2544
                .unwrap()
                .latency_fraction,
            1.0
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(Sizes::parse("64").unwrap(), Sizes::Fixed(64));
        assert_eq!(Sizes::parse("64-66").unwrap().nth(4), 65);
        assert!(Sizes::parse("63").is_err() && Sizes::parse("9019").is_err() && Sizes::parse("9-8").is_err());
        assert_eq!(Sizes::parse("9018").unwrap(), Sizes::Fixed(9018));
        assert_eq!(Sizes::parse("imix").unwrap().nth(11), 1518);
    }
}
