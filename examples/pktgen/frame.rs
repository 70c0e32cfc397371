//! The test frames: building them and verifying what comes back.

use oxpmd::pmd::MacAddr;
use oxpmd::pmd::checksum::{Checksum, checksum};

pub const MAGIC: u16 = 0x0C5A;
/// Offset of the test header: after Ethernet (14), IPv4 (20) and UDP (8).
pub const HDR_OFF: usize = 42;
/// Test header length.
pub const HDR_LEN: usize = 18;
/// Smallest frame (with FCS).
pub const MIN_SIZE: usize = 64;
/// Largest frame (with FCS): a jumbo frame of MTU 9000. Frames larger than one buffer are
/// sent and received as chained packets.
pub const MAX_SIZE: usize = 9018;
/// UDP destination port of the test frames.
pub const UDP_DST: u16 = 9;

/// The UDP checksum of the datagram at `f[34..]` over its pseudo header (the test frames' IPv4
/// addresses at `f[26..34]`); a frame that carries a correct one gives 0.
fn udp_checksum(f: &[u8], udp_len: u16) -> u16 {
    let mut c = Checksum::new();
    c.add(&f[26..34]);
    c.add(&[0, 17]);
    c.add(&udp_len.to_be_bytes());
    c.add(&f[34..]);
    c.finish()
}

/// Fills `f` (the frame without FCS) with the test frame of `stream`/`seq`.
pub fn build_frame(f: &mut [u8], dst: MacAddr, src: MacAddr, stream: u16, seq: u32, ts: u64) {
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
        let c = checksum(ip);
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
    let c = match udp_checksum(f, udp_len) {
        0 => 0xFFFF,
        c => c,
    };
    f[40..42].copy_from_slice(&c.to_be_bytes());
}

#[inline(always)]
pub fn pattern(seq: u32, i: usize) -> u8 {
    (seq as usize).wrapping_mul(31).wrapping_add(i) as u8
}

/// Checksum of the test header fields (stream, seq, timestamp) and the payload.
pub fn test_checksum(f: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add(&f[HDR_OFF + 2..HDR_OFF + 16]);
    c.add(&f[HDR_OFF + HDR_LEN..]);
    c.finish()
}

/// A parsed, verified test frame.
#[derive(Debug, PartialEq, Eq)]
pub struct TestFrame {
    pub stream: u16,
    pub seq: u32,
    pub ts: u64,
}

/// Source and destination IPv4 addresses of the test frames (198.18.0.1 -> 198.19.0.1).
pub const TEST_IPS: [u8; 8] = [198, 18, 0, 1, 198, 19, 0, 1];

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
pub fn parse_frame(d: &[u8]) -> Option<Result<TestFrame, &'static str>> {
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
    if checksum(&d[14..34]) != 0 {
        return Some(Err("IPv4 header checksum"));
    }
    let ip_len = usize::from(u16::from_be_bytes([d[16], d[17]]));
    if ip_len + 14 != d.len() {
        return Some(Err("length"));
    }
    let udp_len = u16::from_be_bytes([d[38], d[39]]);
    if d[40..42] == [0, 0] || udp_checksum(d, udp_len) != 0 {
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
        assert_eq!(checksum(&f[14..34]), 0, "IPv4 header checksum verifies");
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
}
