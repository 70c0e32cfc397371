//! The register-offset type of an 82576 function's BAR0 ([`bar0_registers!`]), one per kind of
//! function (the PF's `IgbReg`, a VF's `VfReg`): an offset that cannot name a byte past the
//! registers the driver uses, so that a BAR checked once to map that much needs no other check.

/// Defines `$name`, the registers of `$device`'s BAR0 below `$extent`: a newtype over the byte
/// offset whose only constructor, `new`, asserts that the offset is 4-aligned and ends at or
/// below `$extent` (in a constant: a compile error), and its [`RegisterMap`] implementation.
///
/// [`RegisterMap`]: oxpmd_vfio::RegisterMap
macro_rules! bar0_registers {
    ($(#[$doc:meta])* $name:ident, $device:literal, $extent:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(usize);

        impl $name {
            /// One past the last byte of the highest register a value can name.
            pub const EXTENT: usize = $extent;

            /// The register at byte offset `off`.
            ///
            /// # Panics
            /// When `off` is not 4-aligned or not below [`EXTENT`](Self::EXTENT) (in a
            /// constant: a compile error).
            pub(crate) const fn new(off: usize) -> $name {
                assert!(
                    off % 4 == 0 && off + 4 <= Self::EXTENT,
                    concat!("not a register of the ", $device, "'s BAR0")
                );
                $name(off)
            }

            /// The byte offset.
            pub const fn off(self) -> usize {
                self.0
            }
        }

        // SAFETY: the offset is private and every value is made by `new`, which asserts that it is
        // 4-aligned and that `off + 4 <= EXTENT`.
        #[allow(unsafe_code)]
        unsafe impl oxpmd_vfio::RegisterMap for $name {
            const DEVICE: &'static str = $device;
            const EXTENT: usize = $name::EXTENT;
            fn offset(self) -> usize {
                self.0
            }
        }
    };
}

pub(crate) use bar0_registers;
