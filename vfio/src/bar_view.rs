//! Typed register access to a mapped BAR: a device's register offsets as a type whose every value
//! lies inside the device's register range ([`RegisterMap`]), and a view of a BAR checked once,
//! when it is made, to map that whole range ([`BarView`]). Its reads and writes need no further
//! check and cannot fail.
//!
//! No reference into device memory is ever created: every access is a `read_volatile` /
//! `write_volatile` on a pointer into the checked range.

use std::marker::PhantomData;

use crate::bar::{Bar, Register};

/// The 32-bit registers of one kind of device, as byte offsets in one of its BARs.
///
/// # Safety
/// For every value `r` of the type, `r.offset()` is a multiple of 4 and
/// `r.offset() + 4 <= Self::EXTENT`: a [`BarView`] reads and writes at that offset without a
/// further check. (Implementations keep their offset private and make every value through a
/// constructor that asserts it, so that a wrong one is a compile error in a constant and a panic
/// elsewhere, never an access outside the BAR.)
pub unsafe trait RegisterMap: Copy {
    /// The device the registers are of, for errors (e.g. "82576 PF").
    const DEVICE: &'static str;
    /// One past the last byte of the highest register a value can name.
    const EXTENT: usize;
    /// The register's byte offset in the BAR.
    fn offset(self) -> usize;
}

/// A BAR too small for the registers of a [`RegisterMap`] (or mapped only in parts there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "BAR{bar} maps {mapped:#x} bytes from its start ({size:#x} in all), but the registers of the \
     {device} reach {needed:#x}: the device is not one, or the kernel maps this BAR only in parts"
)]
pub struct BarTooSmall {
    /// The BAR index.
    pub bar: u32,
    /// The BAR's size.
    pub size: u64,
    /// The bytes mapped in one piece from the BAR's start.
    pub mapped: usize,
    /// [`RegisterMap::EXTENT`].
    pub needed: usize,
    /// [`RegisterMap::DEVICE`].
    pub device: &'static str,
}

/// A mapped BAR seen through the registers of `R`, checked once to map all of them: reads and
/// writes are plain volatile accesses. Cloning shares the mapping; it stays mapped while any
/// clone, [`Bar`] or [`Register`] of it lives.
pub struct BarView<R: RegisterMap> {
    /// The start of the BAR's first mapped area (offset 0), which holds `[0, R::EXTENT)`.
    base: *mut u8,
    bar: Bar,
    _regs: PhantomData<fn(R)>,
}

// SAFETY: the pointer targets MMIO inside a mapping the held Bar keeps alive; the accesses are
// volatile 32-bit loads and stores, which the device serializes, and no reference into the
// mapping is handed out (as for `Bar` and `Register`).
unsafe impl<R: RegisterMap> Send for BarView<R> {}
// SAFETY: see Send.
unsafe impl<R: RegisterMap> Sync for BarView<R> {}

impl<R: RegisterMap> Clone for BarView<R> {
    fn clone(&self) -> Self {
        BarView {
            base: self.base,
            bar: self.bar.clone(),
            _regs: PhantomData,
        }
    }
}

impl<R: RegisterMap> std::fmt::Debug for BarView<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarView")
            .field("device", &R::DEVICE)
            .field("extent", &R::EXTENT)
            .field("bar", &self.bar)
            .finish()
    }
}

impl<R: RegisterMap> BarView<R> {
    /// A view of `bar`, refused unless one mapped area at its start holds every register of `R`.
    pub fn new(bar: &Bar) -> Result<Self, BarTooSmall> {
        let (base, mapped) = bar.mapped_from_start();
        if mapped < R::EXTENT {
            return Err(BarTooSmall {
                bar: bar.index(),
                size: bar.size(),
                mapped,
                needed: R::EXTENT,
                device: R::DEVICE,
            });
        }
        Ok(BarView {
            base,
            bar: bar.clone(),
            _regs: PhantomData,
        })
    }

    /// The pointer to register `r`.
    #[inline(always)]
    fn ptr(&self, r: R) -> *mut u32 {
        // SAFETY: r.offset() + 4 <= R::EXTENT (RegisterMap's contract) and [0, R::EXTENT) lies in
        // the mapped area that starts at `base` (checked by `new`): the pointer stays inside it.
        unsafe { self.base.add(r.offset()) }.cast()
    }

    /// Volatile 32-bit read of `r`.
    #[inline(always)]
    pub fn read(&self, r: R) -> u32 {
        // SAFETY: `ptr` is inside a live MMIO mapping (see `ptr`) and 4-aligned (the mapping is
        // page-aligned, the offset a multiple of 4 by RegisterMap's contract).
        unsafe { self.ptr(r).read_volatile() }
    }

    /// Volatile 32-bit write of `v` to `r`.
    #[inline(always)]
    pub fn write(&self, r: R, v: u32) {
        // SAFETY: as in `read`.
        unsafe { self.ptr(r).write_volatile(v) }
    }

    /// Reads `r`, clears `clear`, sets `set`, writes it back; returns the value written.
    pub fn modify(&self, r: R, set: u32, clear: u32) -> u32 {
        let v = (self.read(r) & !clear) | set;
        self.write(r, v);
        v
    }

    /// A handle to register `r` that keeps the mapping alive on its own (e.g. a tail register
    /// for the datapath).
    pub fn register(&self, r: R) -> Register {
        // SAFETY: the pointer is inside the mapping `self.bar` keeps alive and 4-aligned (see
        // `read`); the Register holds a clone of the Bar.
        unsafe { Register::from_raw(self.ptr(r), self.bar.clone()) }
    }

    /// The BAR seen.
    pub fn bar(&self) -> &Bar {
        &self.bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Registers of a made-up device: two, the second ending at 0x1000.
    #[derive(Debug, Clone, Copy)]
    struct TestReg(usize);

    const FIRST: TestReg = TestReg(0x0);
    const LAST: TestReg = TestReg(0xFFC);

    // SAFETY: the only values are FIRST and LAST, both 4-aligned and ending at or below EXTENT.
    unsafe impl RegisterMap for TestReg {
        const DEVICE: &'static str = "test device";
        const EXTENT: usize = 0x1000;
        fn offset(self) -> usize {
            self.0
        }
    }

    #[test]
    fn a_view_reads_and_writes_every_register_without_a_check() {
        let bar = Bar::anonymous(0, 0x1000);
        let v = BarView::<TestReg>::new(&bar).unwrap();
        v.write(FIRST, 0xdead_beef);
        v.write(LAST, 7);
        assert_eq!(v.modify(LAST, 0x10, 0x7), 0x10);
        assert_eq!((v.read(FIRST), v.read(LAST)), (0xdead_beef, 0x10));
        // The same memory as the bounds-checked accessors see.
        assert_eq!(bar.read32(0xFFC).unwrap(), 0x10);
        let r = v.register(LAST);
        drop((v, bar));
        // The register keeps the mapping alive.
        r.write(3);
        assert_eq!(r.read(), 3);
    }

    #[test]
    fn a_bar_smaller_than_the_registers_is_refused_when_the_view_is_made() {
        let bar = Bar::anonymous(2, 0x800);
        let e = BarView::<TestReg>::new(&bar).unwrap_err();
        assert_eq!(
            e,
            BarTooSmall {
                bar: 2,
                size: 0x800,
                mapped: 0x800,
                needed: 0x1000,
                device: "test device",
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("BAR2") && msg.contains("0x800") && msg.contains("registers of the test device"),
            "{msg}"
        );
    }
}
