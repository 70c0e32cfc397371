//! The Internet checksum (RFC 1071) in software: the IPv4 header's, and an L4 checksum
//! completed over a packet's segments as a NEEDS_CSUM device would (virtio-net without
//! VIRTIO_NET_F_CSUM, an application's own checks).
#![forbid(unsafe_code)]

use oxpmd_dma::Packet;

/// A running one's complement sum of 16-bit big-endian words over byte runs of any lengths
/// (a run ending on an odd byte carries it into the next run).
#[derive(Debug, Clone, Copy, Default)]
pub struct Checksum {
    sum: u64,
    /// The first byte of a word whose second byte is in the next run.
    odd: Option<u8>,
}

impl Checksum {
    /// An empty sum.
    pub const fn new() -> Self {
        Checksum { sum: 0, odd: None }
    }

    /// Adds `data` to the sum.
    pub fn add(&mut self, mut data: &[u8]) {
        if let (Some(hi), Some((&lo, rest))) = (self.odd, data.split_first()) {
            self.sum += u64::from(u16::from_be_bytes([hi, lo]));
            self.odd = None;
            data = rest;
        }
        let mut words = data.chunks_exact(2);
        for w in &mut words {
            self.sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            self.odd = Some(*last);
        }
    }

    /// The folded 16-bit sum (not complemented); a trailing odd byte counts as its word's high
    /// byte.
    pub fn folded(&self) -> u16 {
        let mut s = self.sum + self.odd.map_or(0, |b| u64::from(b) << 8);
        while s >> 16 != 0 {
            s = (s & 0xFFFF) + (s >> 16);
        }
        s as u16
    }

    /// The checksum: the complement of the folded sum.
    pub fn finish(&self) -> u16 {
        !self.folded()
    }
}

/// The Internet checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add(data);
    c.finish()
}

/// Computes the IPv4 header checksum of `d[l3..l3 + ihl]` in place (nothing if out of range).
pub fn ipv4_header_checksum(d: &mut [u8], l3: usize, ihl: usize) {
    let Some(h) = d.get_mut(l3..l3 + ihl) else {
        return;
    };
    h[10] = 0;
    h[11] = 0;
    let c = checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The value stored for an L4 checksum whose field is at `off` inside the L4 header: a UDP
/// checksum that computes to 0 is sent as 0xFFFF (0 means "none").
fn l4_value(c: u16, off: usize) -> u16 {
    if c == 0 && off == 6 { 0xFFFF } else { c }
}

/// Completes a partial L4 checksum as a NEEDS_CSUM device does: the one's complement sum of
/// `d[start..]` (the checksum field holds the pseudo-header sum) is stored, complemented, at
/// `start + off`. A UDP checksum of 0 is sent as 0xFFFF. Nothing happens out of range.
pub fn complete_l4_checksum(d: &mut [u8], start: usize, off: usize) {
    if start + off + 2 > d.len() {
        return;
    }
    let c = l4_value(checksum(&d[start..]), off);
    d[start + off..start + off + 2].copy_from_slice(&c.to_be_bytes());
}

/// [`complete_l4_checksum`] over every segment of `pkt` (the checksum field may lie in any of
/// them). Nothing happens out of range.
pub fn complete_l4_checksum_packet(pkt: &mut Packet, start: usize, off: usize) {
    if start + off + 2 > pkt.len() {
        return;
    }
    let mut sum = Checksum::new();
    let mut skip = start;
    for seg in pkt.segments() {
        if skip >= seg.len() {
            skip -= seg.len();
            continue;
        }
        sum.add(&seg[skip..]);
        skip = 0;
    }
    let c = l4_value(sum.finish(), off);
    // In range: checked above.
    let _ = pkt.copy_in(start + off, &c.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_odd_lengths_sum_like_one_run() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 31 % 256) as u8).collect();
        let whole = checksum(&data);
        for cuts in [[1, 2], [3, 500], [999, 1000], [0, 0], [7, 7]] {
            let mut c = Checksum::new();
            c.add(&data[..cuts[0]]);
            c.add(&data[cuts[0]..cuts[1]]);
            c.add(&data[cuts[1]..]);
            assert_eq!(c.finish(), whole, "cut at {cuts:?}");
        }
    }

    #[test]
    fn rfc1071_example_and_a_verified_header() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let mut c = Checksum::new();
        c.add(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(c.folded(), 0xddf2);
        let mut h = [
            0x45, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 1, 0xAA, 0xAA, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ipv4_header_checksum(&mut h, 0, 20);
        assert_eq!(checksum(&h), 0, "a header with its checksum sums to zero");
    }
}
