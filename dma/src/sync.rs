//! Atomics and cells used by the ring and by the mempool's reference count and close protocol,
//! routed to `loom` under `cfg(loom)` so they can be model-checked (see `tests/loom_ring.rs` and
//! `tests/loom_mempool.rs`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

/// Busy-wait hint used while waiting for an earlier producer / consumer to publish.
#[inline(always)]
pub(crate) fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// One ring slot. Under loom it tracks accesses so that a missing happens-before edge
/// between a slot write and its read is reported as a data race.
#[cfg(loom)]
pub(crate) struct Slot<T>(loom::cell::UnsafeCell<core::mem::MaybeUninit<T>>);

#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct Slot<T>(core::cell::UnsafeCell<core::mem::MaybeUninit<T>>);

impl<T> Slot<T> {
    pub(crate) fn new() -> Self {
        #[cfg(loom)]
        return Slot(loom::cell::UnsafeCell::new(core::mem::MaybeUninit::uninit()));
        #[cfg(not(loom))]
        Slot(core::cell::UnsafeCell::new(core::mem::MaybeUninit::uninit()))
    }
}

/// Whether a piece of shared state is still alive. Without loom it is nothing (no size, no code).
/// Under loom it is a tracked cell and a tracked allocation: every use of the state reads the cell
/// ([`Liveness::check`]) and freeing the state writes it ([`Liveness::end`]), so loom reports a use
/// that is not ordered before the free as a causality violation, and the assertion catches a use
/// after it (the state's memory is then kept, see `PoolShared::free`, so that the check itself
/// reads valid memory); a state never freed is reported as leaked when the execution ends.
#[cfg(loom)]
pub(crate) struct Liveness {
    alive: loom::cell::UnsafeCell<bool>,
    _leak: loom::alloc::Track<()>,
}

#[cfg(not(loom))]
pub(crate) struct Liveness;

impl Liveness {
    pub(crate) fn new() -> Self {
        #[cfg(loom)]
        return Liveness {
            alive: loom::cell::UnsafeCell::new(true),
            _leak: loom::alloc::Track::new(()),
        };
        #[cfg(not(loom))]
        Liveness
    }

    /// Asserts (under loom) that the state is alive; a read access of the cell.
    #[inline(always)]
    pub(crate) fn check(&self) {
        #[cfg(loom)]
        // SAFETY: a read of a bool inside loom's tracked cell; loom checks its ordering.
        self.alive
            .with(|p| assert!(unsafe { *p }, "shared state used after it was freed"));
    }

    /// Marks the state freed (under loom); a write access of the cell.
    pub(crate) fn end(&self) {
        #[cfg(loom)]
        self.alive.with_mut(|p| {
            // SAFETY: loom checks that this write is ordered after every check.
            let alive = unsafe { &mut *p };
            assert!(*alive, "shared state freed twice");
            *alive = false;
        });
    }
}

/// Copies `n` values; small copies (the datapath's bulks of 1..64 pointers) are done inline,
/// since a call to libc's memcpy costs more than such a copy. Sizes 2..=7 use two fixed-size
/// copies that may overlap (the overlapping part gets the same bits twice); larger ones blocks of
/// eight, then four, two and one.
///
/// # Safety
/// As `core::ptr::copy_nonoverlapping(src, dst, n)`.
#[inline(always)]
pub(crate) unsafe fn copy_elems<T>(src: *const T, dst: *mut T, n: usize) {
    use core::ptr::copy_nonoverlapping as cp;
    // SAFETY: every access is within the n elements the caller vouches for (each two-copy case
    // covers [0, k) and [n - k, n) with k <= n).
    unsafe {
        if n == 1 {
            dst.write(src.read());
        } else if n < 8 {
            if n >= 4 {
                cp(src, dst, 4);
                cp(src.add(n - 4), dst.add(n - 4), 4);
            } else if n >= 2 {
                cp(src, dst, 2);
                cp(src.add(n - 2), dst.add(n - 2), 2);
            }
        } else if n * core::mem::size_of::<T>() > 1024 {
            cp(src, dst, n);
        } else {
            let mut i = 0;
            while i + 8 <= n {
                cp(src.add(i), dst.add(i), 8);
                loop_idiom_barrier();
                i += 8;
            }
            let r = n - i;
            if r & 4 != 0 {
                cp(src.add(i), dst.add(i), 4);
                i += 4;
            }
            if r & 2 != 0 {
                cp(src.add(i), dst.add(i), 2);
                i += 2;
            }
            if r & 1 != 0 {
                cp(src.add(i), dst.add(i), 1);
            }
        }
    }
}

/// Emits no instruction, but keeps LLVM from turning the copy loop above back into a memcpy
/// call (its loop-idiom pass skips loops with side effects).
#[inline(always)]
fn loop_idiom_barrier() {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    // SAFETY: an empty asm statement: no instruction, no memory, stack or flags effect.
    unsafe {
        core::arch::asm!("", options(nomem, nostack, preserves_flags))
    };
}

/// Moves `n` values from `src` into `slots[start..start + n]` (no wrap inside).
///
/// # Safety
/// `start + n <= slots.len()`, the slots are reserved for the caller (no one else reads or
/// writes them), they are uninitialised (or their values were moved out), and `src` holds `n`
/// initialised values whose ownership passes to the slots.
#[inline(always)]
pub(crate) unsafe fn write_slots<T>(slots: &[Slot<T>], start: usize, src: *const T, n: usize) {
    debug_assert!(start + n <= slots.len());
    #[cfg(not(loom))]
    // SAFETY: Slot<T> is repr(transparent) over UnsafeCell<MaybeUninit<T>>, which has the layout
    // of T, so the slots are a contiguous [T] region; the range is in bounds and reserved for
    // the caller (function contract), and src does not overlap the ring storage.
    unsafe {
        let dst = slots.as_ptr().add(start) as *mut T;
        copy_elems(src, dst, n);
    }
    #[cfg(loom)]
    for i in 0..n {
        // SAFETY: in bounds and reserved for the caller (function contract).
        slots[start + i]
            .0
            .with_mut(|p| unsafe { (*p).write(core::ptr::read(src.add(i))) });
    }
}

/// Moves `n` values out of `slots[start..start + n]` into `dst`.
///
/// # Safety
/// `start + n <= slots.len()`, the slots are reserved for the caller and initialised; their
/// values are moved out (the slots count as uninitialised afterwards); `dst` has room for `n`
/// values and does not overlap the ring storage.
#[inline(always)]
pub(crate) unsafe fn read_slots<T>(slots: &[Slot<T>], start: usize, dst: *mut T, n: usize) {
    debug_assert!(start + n <= slots.len());
    #[cfg(not(loom))]
    // SAFETY: see write_slots; the slots are initialised and reserved for the caller.
    unsafe {
        let src = slots.as_ptr().add(start) as *const T;
        copy_elems(src, dst, n);
    }
    #[cfg(loom)]
    for i in 0..n {
        // SAFETY: in bounds, reserved for the caller and initialised (function contract).
        slots[start + i]
            .0
            .with(|p| unsafe { dst.add(i).write((*p).assume_init_read()) });
    }
}
