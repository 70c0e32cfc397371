//! The split handles of a ring: [`Producer`] and [`Consumer`], each in single or multi mode.

use core::marker::PhantomData;
use core::mem::MaybeUninit;
use std::sync::Arc;

use super::{QueueBehavior, Ring, Side, SyncMode, vec_dequeue, vec_enqueue};

/// Producer side of a split ring. A [`SyncMode::Single`] producer cannot be cloned; a
/// [`SyncMode::Multi`] one can ([`Producer::try_clone`]), one clone per thread.
///
/// A handle is aligned (and so padded) to the cache-line pair the prefetcher moves together, as
/// the ring's indices are: a single-mode handle writes its cached index whenever it refreshes it,
/// and a handle of the other side placed next to it (two handles in one struct or stack frame)
/// would otherwise have its line taken away on each refresh and fetch it back on its next call.
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), repr(align(64)))]
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    multi: bool,
    /// The consumer tail last read (see `Side`).
    cached: usize,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

/// Consumer side of a split ring; see [`Producer`] (also for its alignment).
#[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), repr(align(128)))]
#[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), repr(align(64)))]
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    multi: bool,
    /// The producer tail last read (see `Side`).
    cached: usize,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: a handle only moves owned T between threads (T: Send); it is not Sync (Cell marker)
// and single-mode handles are not clonable, so at most one thread runs the single path.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as for Producer.
unsafe impl<T: Send> Send for Consumer<T> {}

macro_rules! handle_common {
    ($ty:ident) => {
        impl<T> $ty<T> {
            /// A handle on `ring` in `mode`; `cached` is the opposite tail as loaded by
            /// [`Ring::split`] (a lower bound of it, see `Side`).
            pub(super) fn new(ring: Arc<Ring<T>>, mode: SyncMode, cached: usize) -> Self {
                $ty {
                    ring,
                    multi: mode == SyncMode::Multi,
                    cached,
                    _not_sync: PhantomData,
                }
            }
            /// Another handle for the same side, only in [`SyncMode::Multi`] mode.
            pub fn try_clone(&self) -> Option<Self> {
                self.multi.then(|| $ty {
                    ring: self.ring.clone(),
                    multi: true,
                    // A tail this handle loaded with Acquire: a lower bound for the clone too
                    // (whatever hands the clone to its thread orders it after that load).
                    cached: self.cached,
                    _not_sync: PhantomData,
                })
            }
            /// The ring and the protocol this handle uses.
            #[inline(always)]
            fn parts(&mut self) -> (&Ring<T>, Side<'_>) {
                // A cached tail is known to be stale only while it lags the head by less than the
                // index width (a value a lap or more behind is reloaded because its room or count
                // computes past the capacity). A handle idle for 2^32 operations of the others
                // could come back within range on a 32-bit target, so there the tail is read on
                // every attempt, as the shared ring's methods do.
                let side = if self.multi {
                    if cfg!(target_pointer_width = "64") {
                        Side::MultiCached(&mut self.cached)
                    } else {
                        Side::Multi
                    }
                } else {
                    Side::Single(&mut self.cached)
                };
                (&self.ring, side)
            }
            /// The mode of this side.
            pub fn mode(&self) -> SyncMode {
                if self.multi {
                    SyncMode::Multi
                } else {
                    SyncMode::Single
                }
            }
            /// Number of slots.
            #[inline]
            pub fn capacity(&self) -> usize {
                self.ring.capacity()
            }
            /// Elements in the ring (snapshot).
            #[inline]
            pub fn len(&self) -> usize {
                self.ring.len()
            }
            /// Whether the ring is empty (snapshot).
            #[inline]
            pub fn is_empty(&self) -> bool {
                self.ring.is_empty()
            }
        }
        impl<T> core::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("mode", &self.mode())
                    .field("ring", &self.ring)
                    .finish()
            }
        }
    };
}
handle_common!(Producer);
handle_common!(Consumer);

impl<T> Producer<T> {
    /// Enqueues up to `n` values from `src` in this handle's mode; returns how many were moved.
    ///
    /// # Safety
    /// As [`Ring::enqueue_raw`].
    #[inline(always)]
    pub unsafe fn enqueue_raw(&mut self, src: *const T, n: usize, behavior: QueueBehavior) -> usize {
        // SAFETY: caller contract; single mode is exclusive because this handle is unique
        // (not clonable, &mut self) and the ring is reachable only through the handles.
        let (ring, side) = self.parts();
        // SAFETY: as above.
        unsafe { ring.enqueue_impl(src, n, behavior, side) }
    }

    /// Enqueues one value, or gives it back when the ring is full.
    #[inline]
    pub fn enqueue(&mut self, value: T) -> Result<(), T> {
        let v = MaybeUninit::new(value);
        // SAFETY: one initialised value, forgotten if moved in.
        if unsafe { self.enqueue_raw(v.as_ptr(), 1, QueueBehavior::Fixed) } == 1 {
            Ok(())
        } else {
            // SAFETY: not moved, still ours.
            Err(unsafe { v.assume_init() })
        }
    }

    /// Moves all of `items` in or none; see [`Ring::enqueue_bulk_from_vec`].
    #[inline]
    pub fn enqueue_bulk_from_vec(&mut self, items: &mut Vec<T>) -> bool {
        let (ring, side) = self.parts();
        // SAFETY: see vec_enqueue; exclusivity as in enqueue_raw.
        (unsafe {
            vec_enqueue(items, QueueBehavior::Fixed, |p, n, b| {
                ring.enqueue_impl(p, n, b, side)
            }) != 0
        }) || items.is_empty()
    }

    /// Moves as many of `items` in as fit; see [`Ring::enqueue_burst_from_vec`].
    #[inline]
    pub fn enqueue_burst_from_vec(&mut self, items: &mut Vec<T>) -> usize {
        let (ring, side) = self.parts();
        // SAFETY: see vec_enqueue; exclusivity as in enqueue_raw.
        unsafe {
            vec_enqueue(items, QueueBehavior::Variable, |p, n, b| {
                ring.enqueue_impl(p, n, b, side)
            })
        }
    }
}

impl<T: Copy> Producer<T> {
    /// Bulk enqueue of copies of `items`: all or nothing.
    #[inline]
    pub fn enqueue_bulk(&mut self, items: &[T]) -> bool {
        // SAFETY: T: Copy; exclusivity as in enqueue_raw.
        (unsafe { self.enqueue_raw(items.as_ptr(), items.len(), QueueBehavior::Fixed) != 0 })
            || items.is_empty()
    }

    /// Burst enqueue of as many leading `items` as fit; returns the count.
    #[inline]
    pub fn enqueue_burst(&mut self, items: &[T]) -> usize {
        // SAFETY: T: Copy; exclusivity as in enqueue_raw.
        unsafe { self.enqueue_raw(items.as_ptr(), items.len(), QueueBehavior::Variable) }
    }
}

impl<T> Consumer<T> {
    /// Dequeues up to `n` values into `dst` in this handle's mode; returns how many.
    ///
    /// # Safety
    /// As [`Ring::dequeue_raw`].
    #[inline(always)]
    pub unsafe fn dequeue_raw(&mut self, dst: *mut T, n: usize, behavior: QueueBehavior) -> usize {
        // SAFETY: caller contract; exclusivity of single mode as in Producer::enqueue_raw.
        let (ring, side) = self.parts();
        // SAFETY: as above.
        unsafe { ring.dequeue_impl(dst, n, behavior, side) }
    }

    /// Dequeues one value.
    #[inline]
    pub fn dequeue(&mut self) -> Option<T> {
        let mut v = MaybeUninit::<T>::uninit();
        // SAFETY: room for one value, initialised when 1 is returned.
        if unsafe { self.dequeue_raw(v.as_mut_ptr(), 1, QueueBehavior::Fixed) } == 1 {
            // SAFETY: initialised by the dequeue.
            Some(unsafe { v.assume_init() })
        } else {
            None
        }
    }

    /// Appends exactly `n` values to `out` or none; see [`Ring::dequeue_bulk_into_vec`].
    #[inline]
    pub fn dequeue_bulk_into_vec(&mut self, out: &mut Vec<T>, n: usize) -> bool {
        if n > out.capacity() - out.len() {
            return false;
        }
        let (ring, side) = self.parts();
        // SAFETY: see vec_dequeue; exclusivity as in dequeue_raw.
        unsafe {
            vec_dequeue(out, n, QueueBehavior::Fixed, |p, n, b| {
                ring.dequeue_impl(p, n, b, side)
            }) == n
        }
    }

    /// Appends up to `max` values to `out`; see [`Ring::dequeue_burst_into_vec`].
    #[inline]
    pub fn dequeue_burst_into_vec(&mut self, out: &mut Vec<T>, max: usize) -> usize {
        let (ring, side) = self.parts();
        // SAFETY: see vec_dequeue; exclusivity as in dequeue_raw.
        unsafe {
            vec_dequeue(out, max, QueueBehavior::Variable, |p, n, b| {
                ring.dequeue_impl(p, n, b, side)
            })
        }
    }
}

impl<T: Copy> Consumer<T> {
    /// Bulk dequeue filling all of `out`, or nothing.
    #[inline]
    pub fn dequeue_bulk(&mut self, out: &mut [T]) -> bool {
        // SAFETY: room for out.len() values; T: Copy.
        (unsafe { self.dequeue_raw(out.as_mut_ptr(), out.len(), QueueBehavior::Fixed) != 0 })
            || out.is_empty()
    }

    /// Burst dequeue into the front of `out`; returns the count.
    #[inline]
    pub fn dequeue_burst(&mut self, out: &mut [T]) -> usize {
        // SAFETY: room for out.len() values; T: Copy.
        unsafe { self.dequeue_raw(out.as_mut_ptr(), out.len(), QueueBehavior::Variable) }
    }
}
