//! A small deterministic generator (xorshift64) for the crate's fuzz-style tests: a hostile
//! device's writes, random mailbox words. Seeded by the test (proptest picks some seeds), so a
//! failing case replays.

/// xorshift64: not for anything but tests (it is neither uniform enough for statistics nor
/// unpredictable).
pub(crate) struct TestRng(u64);

impl TestRng {
    /// A generator from `seed` (a zero seed would stay zero, so it is made odd).
    pub(crate) fn new(seed: u64) -> Self {
        TestRng(seed | 1)
    }

    /// The next 64 bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
