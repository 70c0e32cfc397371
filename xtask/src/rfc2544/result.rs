//! The result of one RFC 2544 sweep, as `pktgen --rfc2544 --json FILE` writes it:
//! `{"rfc2544": {"tx_port", "rx_port", "link_mbps", "trial_secs", ..., "sizes": [...]}}`.

use serde_json::Value;

/// One sweep: every frame size measured against one DUT.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sweep {
    pub tx_port: String,
    pub rx_port: String,
    /// The link speed the line rates are computed for, Mbit/s.
    pub link_mbps: f64,
    pub trial_secs: f64,
    pub loss_tolerance_pct: f64,
    pub resolution_pct: f64,
    /// The latency trial's rate, as a fraction of the throughput.
    pub latency_fraction: f64,
    /// In the order pktgen measured them.
    pub sizes: Vec<SizeResult>,
}

/// The throughput and latency at one frame size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SizeResult {
    /// Bytes with FCS.
    pub frame_size: u32,
    pub line_rate_pps: f64,
    /// The search's upper bound.
    pub max_rate_pps: f64,
    pub throughput_pps: f64,
    pub throughput_mbps: f64,
    pub pct_of_line_rate: f64,
    pub loss_pct_at_throughput: f64,
    /// How many trials the search ran.
    pub trials: usize,
    /// `None`: no latency trial was run or it gave no sample.
    pub latency: Option<Latency>,
}

/// The latency trial at one frame size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Latency {
    pub rate_pps: f64,
    pub samples: u64,
    pub min_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    /// Buckets in increasing `upper_us`.
    pub histogram: Vec<Bucket>,
}

/// A histogram bucket: `count` samples at or below `upper_us` and above the previous bucket's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    /// `None`: the open last bucket (above every bound; pktgen writes it as null).
    pub upper_us: Option<f64>,
    pub count: u64,
}

fn num(v: &Value, key: &str, at: &str) -> Result<f64, String> {
    v.get(key)
        .and_then(Value::as_f64)
        .filter(|x| x.is_finite())
        .ok_or_else(|| format!("{at}: `{key}` is missing or not a number"))
}

fn count(v: &Value, key: &str, at: &str) -> Result<u64, String> {
    v.get(key)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{at}: `{key}` is missing or not a whole number"))
}

fn text(v: &Value, key: &str, at: &str) -> Result<String, String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{at}: `{key}` is missing or not a string"))
}

impl Sweep {
    /// Parses pktgen's JSON text; errors name the field and where it is.
    pub(crate) fn parse(json: &str) -> Result<Sweep, String> {
        let doc: Value = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let r = doc
            .get("rfc2544")
            .ok_or("no top-level `rfc2544` object (not the output of pktgen --rfc2544 --json)")?;
        let at = "rfc2544";
        let sizes = r
            .get("sizes")
            .and_then(Value::as_array)
            .ok_or("rfc2544: `sizes` is missing or not an array")?
            .iter()
            .enumerate()
            .map(|(i, s)| SizeResult::parse(s, &format!("rfc2544.sizes[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sweep {
            tx_port: text(r, "tx_port", at)?,
            rx_port: text(r, "rx_port", at)?,
            link_mbps: num(r, "link_mbps", at)?,
            trial_secs: num(r, "trial_secs", at)?,
            loss_tolerance_pct: num(r, "loss_tolerance_pct", at)?,
            resolution_pct: num(r, "resolution_pct", at)?,
            latency_fraction: num(r, "latency_fraction", at)?,
            sizes,
        })
    }

    /// Reads and parses `path`.
    pub(crate) fn read(path: &std::path::Path) -> Result<Sweep, String> {
        let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Sweep::parse(&s).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The result at `frame_size`, if it was measured.
    pub(crate) fn size(&self, frame_size: u32) -> Option<&SizeResult> {
        self.sizes.iter().find(|s| s.frame_size == frame_size)
    }
}

impl SizeResult {
    /// Whether the DUT passed at the search's upper bound: the bound, not the DUT, limited the
    /// throughput (pktgen rounds rates to 0.1 frames/s).
    pub(crate) fn at_bound(&self) -> bool {
        self.throughput_pps > 0.0 && self.throughput_pps >= self.max_rate_pps - 0.1
    }

    fn parse(v: &Value, at: &str) -> Result<SizeResult, String> {
        let frame_size = u32::try_from(count(v, "frame_size", at)?)
            .map_err(|_| format!("{at}: `frame_size` is too large"))?;
        let latency = match v.get("latency") {
            None | Some(Value::Null) => None,
            Some(l) => Some(Latency::parse(l, &format!("{at}.latency"))?),
        };
        Ok(SizeResult {
            frame_size,
            line_rate_pps: num(v, "line_rate_pps", at)?,
            max_rate_pps: num(v, "max_rate_pps", at)?,
            throughput_pps: num(v, "throughput_pps", at)?,
            throughput_mbps: num(v, "throughput_mbps", at)?,
            pct_of_line_rate: num(v, "pct_of_line_rate", at)?,
            loss_pct_at_throughput: num(v, "loss_pct_at_throughput", at)?,
            trials: v.get("trials").and_then(Value::as_array).map_or(0, Vec::len),
            latency,
        })
    }
}

impl Latency {
    fn parse(v: &Value, at: &str) -> Result<Latency, String> {
        let histogram = v
            .get("histogram")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{at}: `histogram` is missing or not an array"))?
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let at = format!("{at}.histogram[{i}]");
                let upper_us = match b.get("upper_us") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(num(b, "upper_us", &at)?),
                };
                Ok(Bucket {
                    upper_us,
                    count: count(b, "count", &at)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let bounds: Vec<f64> = histogram.iter().filter_map(|b| b.upper_us).collect();
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("{at}: histogram bounds do not increase"));
        }
        Ok(Latency {
            rate_pps: num(v, "rate_pps", at)?,
            samples: count(v, "samples", at)?,
            min_us: num(v, "min_us", at)?,
            p50_us: num(v, "p50_us", at)?,
            p99_us: num(v, "p99_us", at)?,
            max_us: num(v, "max_us", at)?,
            histogram,
        })
    }

    /// The empirical CDF from the histogram: (latency in us, fraction of samples at or below it),
    /// starting at (`min_us`, 0) and stepping at each bucket's upper bound that holds samples; the
    /// last of them ends at `max_us`, since pktgen counts values beyond its range in its last
    /// bucket (and writes an open one as null). Empty when the histogram holds no sample.
    pub(crate) fn cdf(&self) -> Vec<(f64, f64)> {
        let filled: Vec<&Bucket> = self.histogram.iter().filter(|b| b.count > 0).collect();
        let total: u64 = filled.iter().map(|b| b.count).sum();
        if total == 0 {
            return Vec::new();
        }
        let mut points = vec![(self.min_us, 0.0)];
        let mut seen = 0u64;
        for (i, b) in filled.iter().enumerate() {
            seen += b.count;
            let x = match b.upper_us {
                Some(u) if i + 1 < filled.len() => u.min(self.max_us),
                _ => self.max_us,
            };
            points.push((x.max(self.min_us), seen as f64 / total as f64));
        }
        points
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Hand-made sweeps of pktgen's JSON shape, for the tests of this module and the charts.

    /// A sweep over `sizes`, throughput `pps_of(size)`; latency at `lat_size` only (or none).
    pub(crate) fn sweep_json(sizes: &[u32], pps_of: impl Fn(u32) -> f64, lat_size: Option<u32>) -> String {
        let entries: Vec<String> = sizes
            .iter()
            .map(|&s| {
                let line = 1e9 / ((f64::from(s) + 20.0) * 8.0);
                let pps = pps_of(s);
                let latency = if Some(s) == lat_size {
                    format!(
                        r#"{{"rate_pps": {r}, "samples": 100, "min_us": 12.0, "p50_us": 40.1, "p90_us": 55.0,
                        "p99_us": 90.2, "p99_9_us": 130.0, "max_us": 400.0, "histogram": [
                        {{"upper_us": 10.0, "count": 0}}, {{"upper_us": 20.0, "count": 5}},
                        {{"upper_us": 50.0, "count": 80}}, {{"upper_us": 100.0, "count": 14}},
                        {{"upper_us": 1000.0, "count": 1}}, {{"upper_us": null, "count": 0}}]}}"#,
                        r = pps * 0.9
                    )
                } else {
                    "null".to_string()
                };
                format!(
                    r#"{{"frame_size": {s}, "line_rate_pps": {line}, "max_rate_pps": {line},
                    "throughput_pps": {pps}, "throughput_mbps": {mbps}, "pct_of_line_rate": {pct},
                    "loss_pct_at_throughput": 0.0,
                    "trials": [{{"rate_pps": {line}, "sent": 123, "received": 100, "lost": 23,
                                "loss_pct": 18.7, "pass": false, "why": "loss 18.7% > 0%"}}],
                    "latency": {latency}}}"#,
                    mbps = pps * f64::from(s) * 8.0 / 1e6,
                    pct = 100.0 * pps / line,
                )
            })
            .collect();
        format!(
            r#"{{"rfc2544": {{"tx_port": "0000:00:02.0", "rx_port": "0000:00:06.0", "link_mbps": 1000,
            "trial_secs": 2.0, "loss_tolerance_pct": 0.0, "resolution_pct": 1.0, "latency_fraction": 0.9,
            "sizes": [{}]}}}}"#,
            entries.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::sweep_json;
    use super::*;

    #[test]
    fn a_sweep_parses() {
        let s = Sweep::parse(&sweep_json(&[64, 1518], |s| 30_000.0 - f64::from(s), Some(64))).unwrap();
        assert_eq!(
            (s.link_mbps, s.trial_secs, s.latency_fraction),
            (1000.0, 2.0, 0.9)
        );
        assert_eq!(s.sizes.len(), 2);
        let a = s.size(64).unwrap();
        assert_eq!((a.throughput_pps, a.trials), (29_936.0, 1));
        assert!((a.line_rate_pps - 1_488_095.2).abs() < 0.1);
        let l = a.latency.as_ref().unwrap();
        assert_eq!((l.samples, l.p99_us, l.histogram.len()), (100, 90.2, 6));
        assert_eq!(l.histogram[5].upper_us, None);
        assert!(s.size(1518).unwrap().latency.is_none());
        assert!(s.size(128).is_none());
        assert!(!a.at_bound());
        let capped = sweep_json(&[64], |_| 1_488_095.2, None);
        assert!(Sweep::parse(&capped).unwrap().sizes[0].at_bound());
    }

    #[test]
    fn the_cdf_steps_at_bucket_bounds() {
        let s = Sweep::parse(&sweep_json(&[64], |_| 1000.0, Some(64))).unwrap();
        let cdf = s.sizes[0].latency.as_ref().unwrap().cdf();
        assert_eq!(
            cdf,
            vec![
                (12.0, 0.0),
                (20.0, 0.05),
                (50.0, 0.85),
                (100.0, 0.99),
                (400.0, 1.0)
            ]
        );
        let empty = Latency {
            rate_pps: 1.0,
            samples: 0,
            min_us: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            max_us: 0.0,
            histogram: vec![Bucket {
                upper_us: Some(1.0),
                count: 0,
            }],
        };
        assert!(empty.cdf().is_empty());
        let open = Latency {
            histogram: vec![Bucket {
                upper_us: None,
                count: 3,
            }],
            max_us: 9.0,
            ..empty.clone()
        };
        assert_eq!(open.cdf(), vec![(0.0, 0.0), (9.0, 1.0)]);
        // The maximum beyond the last bound: it is in the last bucket, where the CDF reaches 1.
        let bucket = |u: f64| Bucket {
            upper_us: Some(u),
            count: 1,
        };
        let beyond = Latency {
            histogram: vec![bucket(5.0), bucket(10.0)],
            min_us: 4.0,
            max_us: 50.0,
            ..empty
        };
        assert_eq!(beyond.cdf(), vec![(4.0, 0.0), (5.0, 0.5), (50.0, 1.0)]);
    }

    #[test]
    fn errors_name_the_field() {
        assert!(Sweep::parse("{").unwrap_err().contains("not JSON"));
        assert!(Sweep::parse("{}").unwrap_err().contains("rfc2544"));
        let bad = sweep_json(&[64], |_| 1.0, None).replace("\"throughput_pps\"", "\"tp\"");
        let e = Sweep::parse(&bad).unwrap_err();
        assert!(e.contains("rfc2544.sizes[0]: `throughput_pps`"), "{e}");
        let bad = sweep_json(&[64], |_| 1.0, Some(64)).replace("\"upper_us\": 50.0", "\"upper_us\": 5.0");
        assert!(Sweep::parse(&bad).unwrap_err().contains("do not increase"));
    }
}
