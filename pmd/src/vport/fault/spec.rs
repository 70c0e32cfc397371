//! The options of a `fault:` port (`drop=0.1%,corrupt=0.01%,dup=..,reorder=..,rate=PPS,seed=N,dir=..`)
//! and their parser: every bad option is an error naming the option, what was wrong and the form
//! expected; nothing panics on any input.
#![forbid(unsafe_code)]

use std::fmt;

/// The denominator of a [`Probability`]: a probability is counted in parts per hundred million
/// (so `0.000001%` is the finest step).
pub const PROBABILITY_SCALE: u32 = 100_000_000;
/// Longest option list accepted (bytes).
pub const FAULT_OPTIONS_MAX: usize = 256;

/// A per-packet probability, in parts per [`PROBABILITY_SCALE`]; written and parsed as a
/// percentage with up to six decimals (`0.01%`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probability(u32);

impl Probability {
    /// Parts per [`PROBABILITY_SCALE`].
    pub fn parts(self) -> u32 {
        self.0
    }

    /// From parts per [`PROBABILITY_SCALE`]; `None` above 100%.
    pub fn from_parts(parts: u32) -> Option<Probability> {
        (parts <= PROBABILITY_SCALE).then_some(Probability(parts))
    }

    /// Parses `N%`, `N.D%` (at most six decimals, at most 100%).
    fn parse(v: &str) -> Result<Probability, String> {
        let num = v
            .strip_suffix('%')
            .ok_or_else(|| format!("`{v}` is not a percentage (write it with %, e.g. 0.1%)"))?;
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || int.len() > 3 {
            return Err(format!("`{v}` is not a percentage between 0% and 100%"));
        }
        if frac.len() > 6 {
            return Err(format!(
                "`{v}`: at most six decimals (0.000001% is the finest step)"
            ));
        }
        let int: u32 = int
            .parse()
            .map_err(|_| format!("`{v}` is not a percentage between 0% and 100%"))?;
        let frac_parts: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}")
                .parse()
                .map_err(|_| format!("`{v}` is not a percentage"))?
        };
        Probability::from_parts(int * 1_000_000 + frac_parts)
            .ok_or_else(|| format!("`{v}` is more than 100%"))
    }
}

impl fmt::Display for Probability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / 1_000_000, self.0 % 1_000_000);
        if frac == 0 {
            write!(f, "{int}%")
        } else {
            let frac = format!("{frac:06}");
            write!(f, "{int}.{}%", frac.trim_end_matches('0'))
        }
    }
}

/// Which direction of the wrapped port the faults apply to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaultDirection {
    /// Packets the application receives.
    Rx,
    /// Packets the application sends.
    Tx,
    /// Both (each direction draws its own faults).
    #[default]
    Both,
}

impl FaultDirection {
    /// Whether received packets are faulted.
    pub fn rx(self) -> bool {
        matches!(self, FaultDirection::Rx | FaultDirection::Both)
    }

    /// Whether sent packets are faulted.
    pub fn tx(self) -> bool {
        matches!(self, FaultDirection::Tx | FaultDirection::Both)
    }

    fn name(self) -> &'static str {
        match self {
            FaultDirection::Rx => "rx",
            FaultDirection::Tx => "tx",
            FaultDirection::Both => "both",
        }
    }
}

/// What a `fault:` port injects. Each packet gets at most one fault, drawn from one seeded
/// pseudo-random number per packet: dropped with probability `drop`, else corrupted with
/// `corrupt`, else duplicated with `dup`, else reordered with `reorder` (the four together at most
/// 100%). `rate` (packets per second and queue) drops what exceeds it; `seed` makes the faults
/// reproducible: the same seed and the same packets give the same faults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSpec {
    /// Probability that a packet is dropped.
    pub drop: Probability,
    /// Probability that one bit of a packet is flipped (after its Ethernet header).
    pub corrupt: Probability,
    /// Probability that a packet is delivered twice.
    pub dup: Probability,
    /// Probability that a packet is held back and delivered after the next intact one.
    pub reorder: Probability,
    /// Most packets per second per queue; `None`: no limit.
    pub rate: Option<u64>,
    /// Seed of the per-queue pseudo-random streams.
    pub seed: u64,
    /// Directions faulted.
    pub dir: FaultDirection,
}

/// Why a `fault:` option list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// An option name that does not exist.
    #[error("unknown option `{0}` (known: drop, corrupt, dup, reorder, rate, seed, dir)")]
    UnknownOption(String),
    /// An option given twice.
    #[error("option `{0}` given twice")]
    Repeated(&'static str),
    /// An option without `=VALUE`.
    #[error("option `{0}` has no value (write NAME=VALUE)")]
    NoValue(String),
    /// An option whose value does not parse.
    #[error("{option}: {reason}")]
    BadValue {
        /// The option.
        option: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The four probabilities add up to more than 100%.
    #[error("drop + corrupt + dup + reorder is {0}, more than 100% (each packet gets at most one fault)")]
    Over100(String),
    /// The option list is too long.
    #[error("the option list is longer than {FAULT_OPTIONS_MAX} bytes")]
    TooLong,
}

impl FaultSpec {
    /// Parses a comma-separated option list (the part between `fault:` and the inner device);
    /// an empty list injects nothing (the port only counts).
    pub fn parse(options: &str) -> Result<FaultSpec, FaultSpecError> {
        if options.len() > FAULT_OPTIONS_MAX {
            return Err(FaultSpecError::TooLong);
        }
        let mut spec = FaultSpec::default();
        let mut given: Vec<&'static str> = Vec::new();
        for kv in options.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = kv
                .split_once('=')
                .ok_or_else(|| FaultSpecError::NoValue(kv.to_string()))?;
            let option: &'static str = match key.trim() {
                "drop" => "drop",
                "corrupt" => "corrupt",
                "dup" => "dup",
                "reorder" => "reorder",
                "rate" => "rate",
                "seed" => "seed",
                "dir" => "dir",
                other => return Err(FaultSpecError::UnknownOption(other.to_string())),
            };
            if given.contains(&option) {
                return Err(FaultSpecError::Repeated(option));
            }
            given.push(option);
            let value = value.trim();
            let bad = |reason: String| FaultSpecError::BadValue { option, reason };
            match option {
                "drop" => spec.drop = Probability::parse(value).map_err(bad)?,
                "corrupt" => spec.corrupt = Probability::parse(value).map_err(bad)?,
                "dup" => spec.dup = Probability::parse(value).map_err(bad)?,
                "reorder" => spec.reorder = Probability::parse(value).map_err(bad)?,
                "rate" => {
                    let r: u64 = value
                        .parse()
                        .map_err(|_| bad(format!("`{value}` is not a whole number of packets per second")))?;
                    if !(1..=1_000_000_000_000).contains(&r) {
                        return Err(bad(format!(
                            "{r} is outside 1..=1000000000000 packets per second"
                        )));
                    }
                    spec.rate = Some(r);
                }
                "seed" => {
                    let parsed = match value.strip_prefix("0x") {
                        Some(hex) => u64::from_str_radix(hex, 16),
                        None => value.parse(),
                    };
                    spec.seed = parsed
                        .map_err(|_| bad(format!("`{value}` is not a 64-bit number (decimal or 0x hex)")))?;
                }
                _ => {
                    spec.dir = match value {
                        "rx" => FaultDirection::Rx,
                        "tx" => FaultDirection::Tx,
                        "both" => FaultDirection::Both,
                        other => return Err(bad(format!("`{other}`: expected rx, tx or both"))),
                    }
                }
            }
        }
        let sum = u64::from(spec.drop.0)
            + u64::from(spec.corrupt.0)
            + u64::from(spec.dup.0)
            + u64::from(spec.reorder.0);
        if sum > u64::from(PROBABILITY_SCALE) {
            let shown = u32::try_from(sum)
                .map(|s| Probability(s).to_string())
                .unwrap_or_else(|_| "over 100%".into());
            return Err(FaultSpecError::Over100(shown));
        }
        Ok(spec)
    }

    /// Whether anything is injected at all.
    pub fn injects(&self) -> bool {
        self.drop.0 + self.corrupt.0 + self.dup.0 + self.reorder.0 > 0 || self.rate.is_some()
    }
}

impl fmt::Display for FaultSpec {
    /// The canonical option list: the probabilities that are not zero, `rate`, `seed` and `dir`
    /// when not `both`; [`FaultSpec::parse`] reads it back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        for (name, p) in [
            ("drop", self.drop),
            ("corrupt", self.corrupt),
            ("dup", self.dup),
            ("reorder", self.reorder),
        ] {
            if p.0 > 0 {
                parts.push(format!("{name}={p}"));
            }
        }
        if let Some(r) = self.rate {
            parts.push(format!("rate={r}"));
        }
        parts.push(format!("seed={}", self.seed));
        if self.dir != FaultDirection::Both {
            parts.push(format!("dir={}", self.dir.name()));
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form_and_prints_it_back() {
        let s =
            FaultSpec::parse("drop=0.1%,corrupt=0.01%,dup=1%,reorder=2.5%,rate=1000,seed=7,dir=tx").unwrap();
        assert_eq!(s.drop.parts(), 100_000);
        assert_eq!(s.corrupt.parts(), 10_000);
        assert_eq!(s.dup.parts(), 1_000_000);
        assert_eq!(s.reorder.parts(), 2_500_000);
        assert_eq!((s.rate, s.seed, s.dir), (Some(1000), 7, FaultDirection::Tx));
        let text = s.to_string();
        assert_eq!(
            text,
            "drop=0.1%,corrupt=0.01%,dup=1%,reorder=2.5%,rate=1000,seed=7,dir=tx"
        );
        assert_eq!(FaultSpec::parse(&text).unwrap(), s);
        assert_eq!(FaultSpec::parse("seed=0x10").unwrap().seed, 16);
        assert_eq!(
            FaultSpec::parse("drop=100%").unwrap().drop.parts(),
            PROBABILITY_SCALE
        );
        assert_eq!(FaultSpec::parse("drop=0.000001%").unwrap().drop.parts(), 1);
        let empty = FaultSpec::parse("").unwrap();
        assert!(!empty.injects());
        assert_eq!(empty.to_string(), "seed=0");
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        for (bad, says) in [
            ("drop=0.1", "not a percentage"),
            ("drop=-1%", "between 0% and 100%"),
            ("drop=101%", "more than 100%"),
            ("drop=1e3%", "between 0% and 100%"),
            ("drop=0.0000001%", "six decimals"),
            ("drop=60%,dup=50%", "110%, more than 100%"),
            ("drop=1%,drop=2%", "`drop` given twice"),
            ("lose=1%", "unknown option `lose`"),
            ("drop", "no value"),
            ("rate=0", "outside"),
            ("rate=fast", "whole number"),
            ("seed=x", "64-bit number"),
            ("dir=up", "expected rx, tx or both"),
        ] {
            let e = FaultSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        assert_eq!(
            FaultSpec::parse(&"drop=1%,".repeat(40)).unwrap_err(),
            FaultSpecError::TooLong
        );
    }
}
