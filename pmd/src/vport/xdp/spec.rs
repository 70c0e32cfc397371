//! `xdp:IFACE[:QUEUES][,mode=auto|zc|copy]`: the interface, the queues (`3` or `0-3`; all of
//! them when left out) and the bind mode.
#![forbid(unsafe_code)]

use super::socket::XdpMode;

/// A parsed `xdp:` device spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpSpec {
    /// Interface name.
    pub iface: String,
    /// First and last queue (inclusive), or every queue of the interface.
    pub queues: Option<(u32, u32)>,
    /// Zero copy, copy, or whichever the driver offers.
    pub mode: XdpMode,
}

impl XdpSpec {
    /// Parses what follows `xdp:`; the error says what is wrong.
    pub fn parse(rest: &str) -> Result<XdpSpec, String> {
        let (head, opts) = rest.split_once(',').unwrap_or((rest, ""));
        let (iface, queues) = match head.split_once(':') {
            Some((i, q)) => (i, Some(q)),
            None => (head, None),
        };
        if iface.is_empty()
            || iface.len() >= 16
            || !iface
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
        {
            return Err(format!(
                "`{iface}` is not an interface name (1..=15 of A-Z a-z 0-9 _ - . @)"
            ));
        }
        let num = |s: &str| {
            s.parse::<u32>()
                .ok()
                .filter(|&n| n < 4096 && !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| format!("queue `{s}` is not a number below 4096"))
        };
        let queues = match queues {
            None => None,
            Some(q) => {
                let (a, b) = match q.split_once('-') {
                    Some((a, b)) => (num(a)?, num(b)?),
                    None => (num(q)?, num(q)?),
                };
                if a > b {
                    return Err(format!("queue range `{q}` is empty (write FIRST-LAST)"));
                }
                Some((a, b))
            }
        };
        let mut mode = XdpMode::Auto;
        for kv in opts.split(',').filter(|s| !s.is_empty()) {
            mode = match kv {
                "mode=auto" => XdpMode::Auto,
                "mode=zc" | "mode=zero-copy" => XdpMode::ZeroCopy,
                "mode=copy" => XdpMode::Copy,
                _ => return Err(format!("unknown option `{kv}` (mode=auto|zc|copy)")),
            };
        }
        Ok(XdpSpec {
            iface: iface.to_string(),
            queues,
            mode,
        })
    }
}

impl std::fmt::Display for XdpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "xdp:{}", self.iface)?;
        match self.queues {
            Some((a, b)) if a == b => write!(f, ":{a}")?,
            Some((a, b)) => write!(f, ":{a}-{b}")?,
            None => {}
        }
        match self.mode {
            XdpMode::Auto => Ok(()),
            XdpMode::ZeroCopy => write!(f, ",mode=zc"),
            XdpMode::Copy => write!(f, ",mode=copy"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_interface_queues_and_mode() {
        let s = XdpSpec::parse("eth0").unwrap();
        assert_eq!(
            (s.iface.as_str(), s.queues, s.mode),
            ("eth0", None, XdpMode::Auto)
        );
        let s = XdpSpec::parse("enp0s3:0-3,mode=copy").unwrap();
        assert_eq!(
            (s.iface.as_str(), s.queues, s.mode),
            ("enp0s3", Some((0, 3)), XdpMode::Copy)
        );
        assert_eq!(XdpSpec::parse("veth1:2,mode=zc").unwrap().queues, Some((2, 2)));
        for s in ["eth0", "eth0:1-3,mode=copy", "eth0:2,mode=zc"] {
            assert_eq!(XdpSpec::parse(s).unwrap().to_string(), format!("xdp:{s}"));
        }
        for bad in [
            "",
            ":0",
            "eth0:",
            "eth0:3-1",
            "eth0:x",
            "eth0:-1",
            "eth0,mode=fast",
            "a/b",
            "0123456789abcdef",
        ] {
            assert!(XdpSpec::parse(bad).is_err(), "{bad}");
        }
    }
}
