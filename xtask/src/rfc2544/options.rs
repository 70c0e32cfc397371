//! The options of `bench rfc2544-vm` and `bench rfc2544-chart`.

use std::path::PathBuf;

use crate::dut::Dut;

pub(crate) const VM_USAGE: &str = "\
usage: cargo xtask bench rfc2544-vm [--sizes LIST] [--trial SECS] [--loss-tolerance PCT]
           [--resolution PCT] [--latency-fraction F] [--max-rate PPS] [--duts LIST]
           [--cdf-size BYTES] [--no-build] [--out DIR]

  RFC 2544 throughput and latency (pktgen --rfc2544) through our examples/l2fwd and through
  dpdk-testpmd io forwarding, one after the other in one boot of the test VM (quad topology), fed
  by the same pktgen; writes DIR/ours.json, DIR/dpdk.json and the charts DIR/throughput.svg and
  DIR/latency-cdf.svg, and prints a table per frame size and, last, `ratio: X` (the lowest
  throughput ratio ours / DPDK over the sizes). Under TCG compare the ratio only.

  --sizes LIST          frame sizes with FCS, 64..=1518 (default 64,128,256,512,1024,1280,1518)
  --trial SECS          length of a trial (default 2)
  --loss-tolerance PCT  loss a passing trial may have (default 0.5: under TCG a stalled vCPU
                        drops frames at any rate, and at 0 the search finds noise)
  --max-rate PPS        the search's upper bound (default 100000, above what the emulated
                        ports carry; from the line rate the first trials would all fail)
  --resolution PCT  --latency-fraction F
                        passed to pktgen when given (its defaults: 1, 0.9)
  --duts LIST           ours, dpdk, comma-separated, in that order of running (default ours,dpdk)
  --cdf-size BYTES      the frame size of the latency CDF chart (default 64, else the smallest)
  --no-build            use the release examples already built
  --out DIR             where the JSON results and the charts go (default target/bench/rfc2544)";

pub(crate) const CHART_USAGE: &str = "\
usage: cargo xtask bench rfc2544-chart [--ours A.json] [--dpdk B.json] [--out DIR] [--cdf-size BYTES]

  redraws DIR/throughput.svg and DIR/latency-cdf.svg and prints the table from saved results of
  pktgen --rfc2544 --json (at least one of --ours, --dpdk); the date in the titles is the date of
  the first file's last change. --out defaults to target/bench/rfc2544.";

/// The RFC 2544 frame sizes for Ethernet (its section 9.1).
pub(crate) const DEFAULT_SIZES: [u32; 7] = [64, 128, 256, 512, 1024, 1280, 1518];

/// The default loss tolerance, percent: the test VM's vCPUs stall now and then (the host is
/// shared), and the frames a stalled receiver's ring cannot hold are lost at any rate.
pub(crate) const DEFAULT_LOSS_TOLERANCE: f64 = 0.5;

/// The default upper bound of the search, frames/s: the emulated ports carry tens of thousands.
pub(crate) const DEFAULT_MAX_RATE: f64 = 100_000.0;

/// The largest frame both DUTs take as they are started (MTU 1500).
const MAX_SIZE: u32 = 1518;

/// `bench rfc2544-vm`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VmOpts {
    pub sizes: Vec<u32>,
    pub trial: f64,
    pub loss_tolerance: Option<f64>,
    pub resolution: Option<f64>,
    pub latency_fraction: Option<f64>,
    pub max_rate: Option<f64>,
    pub duts: Vec<Dut>,
    pub cdf_size: Option<u32>,
    pub build: bool,
    /// `None`: the default under the target directory.
    pub out: Option<PathBuf>,
}

/// `bench rfc2544-chart`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChartOpts {
    pub ours: Option<PathBuf>,
    pub dpdk: Option<PathBuf>,
    pub cdf_size: Option<u32>,
    pub out: Option<PathBuf>,
}

/// The value after option `name`.
fn value<'a>(it: &mut std::slice::Iter<'a, String>, name: &str) -> Result<&'a str, String> {
    it.next()
        .map(String::as_str)
        .ok_or_else(|| format!("{name}: missing value"))
}

/// A number in `lo..=hi`.
fn number(it: &mut std::slice::Iter<'_, String>, name: &str, lo: f64, hi: f64) -> Result<f64, String> {
    let v = value(it, name)?;
    let n: f64 = v.parse().map_err(|_| format!("{name}: `{v}` is not a number"))?;
    if !(lo..=hi).contains(&n) {
        return Err(format!("{name}: {n} out of range {lo}..={hi}"));
    }
    Ok(n)
}

fn frame_size(s: &str, name: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{name}: `{s}` is not a frame size"))?;
    if n < 64 {
        return Err(format!("{name}: {n} is below the Ethernet minimum of 64 bytes"));
    }
    Ok(n)
}

/// Parses `bench rfc2544-vm`'s arguments; `Err("")` asks for the usage.
pub(crate) fn parse_vm(args: &[String]) -> Result<VmOpts, String> {
    let mut o = VmOpts {
        sizes: DEFAULT_SIZES.to_vec(),
        trial: 2.0,
        loss_tolerance: Some(DEFAULT_LOSS_TOLERANCE),
        resolution: None,
        latency_fraction: None,
        max_rate: Some(DEFAULT_MAX_RATE),
        duts: Dut::ALL.to_vec(),
        cdf_size: None,
        build: true,
        out: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--sizes" => {
                o.sizes = value(&mut it, a)?
                    .split(',')
                    .map(|s| frame_size(s, "--sizes"))
                    .collect::<Result<_, _>>()?;
                if let Some(big) = o.sizes.iter().find(|&&s| s > MAX_SIZE) {
                    return Err(format!(
                        "--sizes: {big} bytes is a jumbo frame, and the DUTs are started with MTU 1500 \
                         (l2fwd's --mtu and testpmd's --max-pkt-len are not set by this bench): sizes \
                         up to {MAX_SIZE}"
                    ));
                }
                let mut sorted = o.sizes.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != o.sizes.len() {
                    return Err("--sizes: a size is listed twice".into());
                }
            }
            "--trial" => o.trial = number(&mut it, a, 0.1, 3600.0)?,
            "--loss-tolerance" => o.loss_tolerance = Some(number(&mut it, a, 0.0, 99.0)?),
            "--resolution" => o.resolution = Some(number(&mut it, a, 0.01, 100.0)?),
            "--latency-fraction" => o.latency_fraction = Some(number(&mut it, a, 0.01, 1.0)?),
            "--max-rate" => o.max_rate = Some(number(&mut it, a, 1.0, 1e9)?),
            "--duts" => {
                o.duts = value(&mut it, a)?
                    .split(',')
                    .map(|d| Dut::by_name(d.trim()).map_err(|e| format!("--duts: {e}")))
                    .collect::<Result<_, _>>()?;
                if o.duts.iter().filter(|&&d| d == Dut::Ours).count() > 1
                    || o.duts.iter().filter(|&&d| d == Dut::Dpdk).count() > 1
                {
                    return Err("--duts: a DUT is listed twice".into());
                }
            }
            "--cdf-size" => o.cdf_size = Some(frame_size(value(&mut it, a)?, a)?),
            "--no-build" => o.build = false,
            "--out" => o.out = Some(value(&mut it, a)?.into()),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if let Some(c) = o.cdf_size.filter(|c| !o.sizes.contains(c)) {
        return Err(format!("--cdf-size: {c} is not among --sizes"));
    }
    Ok(o)
}

/// Parses `bench rfc2544-chart`'s arguments; `Err("")` asks for the usage.
pub(crate) fn parse_chart(args: &[String]) -> Result<ChartOpts, String> {
    let mut o = ChartOpts {
        ours: None,
        dpdk: None,
        cdf_size: None,
        out: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ours" => o.ours = Some(value(&mut it, a)?.into()),
            "--dpdk" => o.dpdk = Some(value(&mut it, a)?.into()),
            "--out" => o.out = Some(value(&mut it, a)?.into()),
            "--cdf-size" => o.cdf_size = Some(frame_size(value(&mut it, a)?, a)?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.ours.is_none() && o.dpdk.is_none() {
        return Err("give at least one result: --ours FILE and/or --dpdk FILE".into());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn vm_defaults_and_checks() {
        let o = parse_vm(&[]).unwrap();
        assert_eq!((o.sizes.len(), o.trial, o.build), (7, 2.0, true));
        assert_eq!(o.duts, vec![Dut::Ours, Dut::Dpdk]);
        assert_eq!(
            (o.loss_tolerance, o.max_rate, o.resolution),
            (Some(0.5), Some(100_000.0), None)
        );
        assert_eq!(o.out, None);
        let o = parse_vm(&args(&[
            "--sizes",
            "64,1518",
            "--trial",
            "1.5",
            "--loss-tolerance",
            "0.1",
            "--duts",
            "dpdk",
            "--cdf-size",
            "1518",
            "--no-build",
            "--out",
            "/tmp/x",
        ]))
        .unwrap();
        assert_eq!(o.sizes, vec![64, 1518]);
        assert_eq!(
            (o.trial, o.loss_tolerance, o.cdf_size),
            (1.5, Some(0.1), Some(1518))
        );
        assert_eq!((o.duts, o.build), (vec![Dut::Dpdk], false));
        assert_eq!(o.out, Some(PathBuf::from("/tmp/x")));
        for bad in [
            &["--sizes", "63"][..],
            &["--sizes", "64,9018"],
            &["--sizes", "64,64"],
            &["--trial", "0"],
            &["--duts", "ours,ours"],
            &["--duts", "vpp"],
            &["--cdf-size", "128", "--sizes", "64"],
            &["--latency-fraction"],
            &["--bogus"],
        ] {
            assert!(parse_vm(&args(bad)).is_err(), "{bad:?}");
        }
        assert!(
            parse_vm(&args(&["--sizes", "64,9018"]))
                .unwrap_err()
                .contains("jumbo")
        );
        assert_eq!(parse_vm(&args(&["-h"])), Err(String::new()));
    }

    #[test]
    fn chart_needs_a_result() {
        let o = parse_chart(&args(&["--ours", "a.json", "--out", "d"])).unwrap();
        assert_eq!((o.ours, o.dpdk), (Some(PathBuf::from("a.json")), None));
        assert!(parse_chart(&args(&["--out", "d"])).is_err());
        assert!(parse_chart(&args(&["--dpdk"])).is_err());
    }
}
