//! The PCI address `DDDD:BB:DD.F` of a function: built, parsed (a malformed one gets a message
//! naming the fix) and printed as sysfs names it.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A PCI address `DDDD:BB:DD.F` (domain, bus, device, function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// PCI domain (segment).
    pub domain: u16,
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..=31.
    pub device: u8,
    /// Function number, 0..=7.
    pub function: u8,
}

impl PciAddress {
    /// Builds an address, checking the device (< 32) and function (< 8) ranges.
    pub fn new(domain: u16, bus: u8, device: u8, function: u8) -> Result<Self> {
        if device > 31 || function > 7 {
            return Err(Error::BadPciAddress {
                input: format!("{domain:04x}:{bus:02x}:{device:02x}.{function}"),
                reason: "device must be below 0x20 and function below 8",
            });
        }
        Ok(Self {
            domain,
            bus,
            device,
            function,
        })
    }

    /// Parses `DDDD:BB:DD.F` or `BB:DD.F` (domain 0), hexadecimal, exactly that many digits.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |reason: &'static str| Error::BadPciAddress {
            input: s.to_owned(),
            reason,
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, rest) = match parts.as_slice() {
            [d, b, r] => (
                hex_field(d, 4).ok_or_else(|| bad("domain must be 4 hex digits"))?,
                *b,
                *r,
            ),
            [b, r] => (0, *b, *r),
            _ => return Err(bad("expected DDDD:BB:DD.F or BB:DD.F")),
        };
        let bus = hex_field(bus, 2).ok_or_else(|| bad("bus must be 2 hex digits"))?;
        let (dev, func) = rest
            .split_once('.')
            .ok_or_else(|| bad("missing '.' before the function"))?;
        let device = hex_field(dev, 2).ok_or_else(|| bad("device must be 2 hex digits"))?;
        if func.len() != 1 {
            return Err(bad("function must be one digit 0-7"));
        }
        let function = hex_field(func, 1).ok_or_else(|| bad("function must be one digit 0-7"))?;
        if device > 0x1f {
            return Err(bad("device must be below 0x20"));
        }
        if function > 7 {
            return Err(bad("function must be one digit 0-7"));
        }
        Ok(Self {
            domain: domain as u16,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

fn hex_field(s: &str, digits: usize) -> Option<u32> {
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl FromStr for PciAddress {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_short_addresses() {
        let a = PciAddress::parse("0000:00:02.0").unwrap();
        assert_eq!(
            a,
            PciAddress {
                domain: 0,
                bus: 0,
                device: 2,
                function: 0
            }
        );
        assert_eq!(a.to_string(), "0000:00:02.0");
        let b: PciAddress = "3a:1f.7".parse().unwrap();
        assert_eq!(
            b,
            PciAddress {
                domain: 0,
                bus: 0x3a,
                device: 0x1f,
                function: 7
            }
        );
        assert_eq!(
            PciAddress::parse("ABCD:EF:12.3").unwrap().to_string(),
            "abcd:ef:12.3"
        );
    }

    #[test]
    fn rejects_malformed_addresses_naming_the_fix() {
        for bad in [
            "",
            "0000:00:02",
            "0000:00:02.8",
            "0000:00:20.0",
            "00:02.0.1",
            "0:00:02.0",
            "0000:0:02.0",
            "0000:00:2.0",
            "0000:00:02.00",
            "x000:00:02.0",
            "0000:00:02.0 ",
            "+000:00:02.0",
            "00:00:00:02.0",
        ] {
            let e = PciAddress::parse(bad).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("ls /sys/bus/pci/devices"), "{bad:?}: {msg}");
            assert!(msg.contains(&format!("{bad:?}")), "{bad:?}: {msg}");
        }
        assert!(PciAddress::new(0, 0, 32, 0).is_err());
        assert!(PciAddress::new(0, 0, 31, 8).is_err());
        assert!(PciAddress::new(0, 0, 31, 7).is_ok());
    }
}
