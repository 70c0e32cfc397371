//! Bounded lock-free ring of `T` with bulk (all or nothing) and burst (as many as fit)
//! operations, single- or multi-producer / consumer, in the manner of DPDK's `rte_ring`.
//!
//! # Algorithm
//! Producer and consumer each own a `head` (reservation) and a `tail` (publication) index,
//! on separate cache lines. Indices run freely (wrapping `usize`); the slot of index `i` is
//! `i & mask`. An enqueue of `n`:
//! 1. reserves `[head, head + n)` after checking the free room against the consumer tail
//!    (one CAS per bulk in multi-producer mode, a plain store in single-producer mode);
//! 2. moves the elements in with at most two `copy_nonoverlapping` (wrap-around);
//! 3. waits (multi-producer only) until earlier producers have published (`tail == head`),
//!    then publishes with a release store of the tail.
//!
//! Dequeue is symmetrical. Orderings: a tail is stored with `Release` after the slot accesses
//! and loaded with `Acquire` by the other side before its slot accesses. Head loads and head
//! CASes are `Acquire` / `AcqRel` so that a thread that sees another's head also sees the
//! opposite tail that thread saw (otherwise a stale tail could make the free-room computation
//! wrap); on x86 these cost nothing extra. `tests/loom_ring.rs` model-checks the MP/MC paths.
//!
//! # Soundness of single-producer / single-consumer mode
//! The single-producer path is only correct when no other producer runs at the same time, so
//! it is reachable only through a [`Producer`] handle created by [`Ring::split`] with
//! [`SyncMode::Single`]: such a handle cannot be cloned and its methods take `&mut self`.
//! The methods on [`Ring`] itself (shared by `&self`) are always multi-producer /
//! multi-consumer, and a split ring is no longer reachable as a `Ring`.
//!
//! A handle also caches the opposite side's tail (a value it loaded with `Acquire`, hence a
//! lower bound of the current one) and reloads it only when the cached value shows too little
//! room / too few elements, so across cores the shared line is read far less often. In multi
//! mode the other handles of its side move the head on meanwhile, so a cached tail more than a
//! lap behind the head (its room or count computed past the capacity) is reloaded as well.

use core::mem::MaybeUninit;
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicUsize, Ordering, Slot, read_slots, spin_wait, write_slots};

/// Largest ring size accepted (2^31 slots).
pub const RING_MAX_SIZE: usize = 1 << 31;

/// Errors creating a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The requested size was zero.
    #[error("ring create: size must not be zero (use a power of two such as 1024)")]
    ZeroSize,
    /// The requested size is not a power of two.
    #[error("ring create: size {size} is not a power of two (use {suggestion})")]
    NotPowerOfTwo {
        /// Requested size.
        size: usize,
        /// Next power of two.
        suggestion: usize,
    },
    /// The requested size is larger than [`RING_MAX_SIZE`].
    #[error("ring create: size {size} exceeds the maximum of {max} slots")]
    TooLarge {
        /// Requested size.
        size: usize,
        /// Largest size accepted.
        max: usize,
    },
    /// The slot array could not be allocated.
    #[error("ring create: cannot allocate {size} slots of {elem_size} bytes")]
    OutOfMemory {
        /// Requested size.
        size: usize,
        /// Size of one element.
        elem_size: usize,
    },
}

/// Whether one or several threads may run an operation on one side of the ring at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// One thread at a time (the handle cannot be cloned): no CAS, no waiting.
    Single,
    /// Any number of threads (the handle can be cloned): one CAS per bulk reservation.
    Multi,
}

/// How many elements an operation moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueBehavior {
    /// Bulk: exactly `n` or none.
    Fixed,
    /// Burst: as many as fit / are available, up to `n`.
    Variable,
}

/// The protocol one operation uses: the CAS path, or the single-thread path, in which the
/// (unique) handle caches the opposite side's tail so that it reads that shared cache line only
/// when the cached value shows too little room / too few elements. A multi-mode handle caches
/// the opposite tail the same way (`MultiCached`); the methods of a shared [`Ring`] have no
/// place to keep it and load it on every attempt (`Multi`).
enum Side<'a> {
    Multi,
    MultiCached(&'a mut usize),
    Single(&'a mut usize),
}

impl Side<'_> {
    /// Whether other threads may run the same side at once (CAS and ordered publication).
    #[inline(always)]
    fn is_multi(&self) -> bool {
        !matches!(self, Side::Single(_))
    }
}

struct HeadTail {
    head: AtomicUsize,
    tail: AtomicUsize,
}

impl HeadTail {
    fn new() -> Self {
        HeadTail {
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        }
    }
}

/// Bounded MP/MC ring of `T`; see the [module documentation](self).
///
/// Elements are moved in and out (no `Clone`); elements left in the ring are dropped with it.
pub struct Ring<T> {
    /// Read-only after creation.
    meta: CachePadded<Meta<T>>,
    prod: CachePadded<HeadTail>,
    cons: CachePadded<HeadTail>,
}

struct Meta<T> {
    mask: usize,
    /// `size` slots from `base` on, plus up to one cache-line pair of unused ones (see `new`).
    storage: Box<[Slot<T>]>,
    base: usize,
}

impl<T> Meta<T> {
    /// The ring's `size` slots.
    #[inline(always)]
    fn slots(&self) -> &[Slot<T>] {
        &self.storage[self.base..]
    }
}

/// Alignment of the first slot: the cache-line pair the ring's indices are padded to. DPDK's
/// rte_ring starts its slots on a cache line too; from a plain allocation (16-byte aligned) a bulk
/// of eight pointers would straddle two lines, and each line a bulk shares with the next one is
/// one more line the two cores pass back and forth.
const SLOT_ALIGN: usize = core::mem::align_of::<CachePadded<u8>>();

// SAFETY: the ring moves owned `T` values between threads (needs `T: Send`); slot accesses are
// serialised by the head/tail protocol, so sharing `&Ring<T>` never gives two threads access to
// the same slot at once, and no `&T` is ever handed out.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; every `&self` method uses the multi-producer / multi-consumer protocol.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> core::fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

impl<T> Ring<T> {
    /// Creates a ring of `size` slots (a power of two, `1..=RING_MAX_SIZE`); all `size` slots are
    /// usable.
    pub fn new(size: usize) -> Result<Self, RingError> {
        if size == 0 {
            return Err(RingError::ZeroSize);
        }
        if size > RING_MAX_SIZE {
            return Err(RingError::TooLarge {
                size,
                max: RING_MAX_SIZE,
            });
        }
        if !size.is_power_of_two() {
            return Err(RingError::NotPowerOfTwo {
                size,
                suggestion: size.next_power_of_two(),
            });
        }
        // Room to start the slots on a SLOT_ALIGN boundary: possible when the element size
        // divides it (pointers, the 16-byte elements); other sizes start where the allocation does.
        let elem = core::mem::size_of::<T>();
        let extra = if elem != 0 && SLOT_ALIGN % elem == 0 {
            SLOT_ALIGN / elem
        } else {
            0
        };
        let oom = || RingError::OutOfMemory {
            size,
            elem_size: elem,
        };
        let total = size.checked_add(extra).ok_or_else(oom)?;
        let mut v: Vec<Slot<T>> = Vec::new();
        v.try_reserve_exact(total).map_err(|_| oom())?;
        v.extend((0..total).map(|_| Slot::new()));
        let storage = v.into_boxed_slice();
        let base = if extra == 0 {
            0
        } else {
            // The allocation is aligned to T's alignment only; skip to the next boundary when
            // it is a whole number of elements away (else keep 0: still correct, merely unaligned).
            let gap = (SLOT_ALIGN - storage.as_ptr() as usize % SLOT_ALIGN) % SLOT_ALIGN;
            if gap % elem == 0 { gap / elem } else { 0 }
        };
        Ok(Ring {
            meta: CachePadded::new(Meta {
                mask: size - 1,
                storage,
                base,
            }),
            prod: CachePadded::new(HeadTail::new()),
            cons: CachePadded::new(HeadTail::new()),
        })
    }

    /// Number of slots.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.meta.mask + 1
    }

    /// Number of elements published and not yet taken (a snapshot under concurrency).
    #[inline]
    pub fn len(&self) -> usize {
        // Acquire on the consumer tail: the consumer that stored it had seen a producer tail at
        // least as large, so the producer tail read next is >= this one (no negative count).
        let cons = self.cons.tail.load(Ordering::Acquire);
        let prod = self.prod.tail.load(Ordering::Acquire);
        prod.wrapping_sub(cons).min(self.capacity())
    }

    /// Free slots (a snapshot under concurrency).
    #[inline]
    pub fn free_count(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Whether the ring holds no element (snapshot).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every slot is taken (snapshot).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    /// Turns the ring into a producer and a consumer handle with the given modes
    /// ([`SyncMode::Single`] selects the CAS-free path; such a handle cannot be cloned).
    ///
    /// The ring may have been used through its `&self` methods before: the single-mode caches
    /// start from its current tails (no operation is in flight, since `split` owns the ring).
    pub fn split(self, producer: SyncMode, consumer: SyncMode) -> (Producer<T>, Consumer<T>) {
        // The cached tails must be lower bounds of the real ones and within `capacity` of the
        // own head (see `Side`): seeding them with 0 made a used ring's free room / entry count
        // wrap, so the single paths overflowed the slot array or read empty slots.
        let cons_tail = self.cons.tail.load(Ordering::Acquire);
        let prod_tail = self.prod.tail.load(Ordering::Acquire);
        let ring = Arc::new(self);
        (
            Producer::new(ring.clone(), producer, cons_tail),
            Consumer::new(ring, consumer, prod_tail),
        )
    }

    #[inline(always)]
    fn amount(behavior: QueueBehavior, want: usize, have: usize) -> usize {
        match behavior {
            QueueBehavior::Fixed => {
                if want > have {
                    0
                } else {
                    want
                }
            }
            QueueBehavior::Variable => want.min(have),
        }
    }

    /// Reserves up to `n` slots for enqueue; returns (old head, count).
    #[inline(always)]
    fn move_prod_head(&self, n: usize, behavior: QueueBehavior, side: Side<'_>) -> (usize, usize) {
        let cap = self.capacity();
        // Free slots: the consumer tail is at most `cap` behind the producer head.
        let free = move |old: usize, cons_tail: usize| cap.wrapping_add(cons_tail).wrapping_sub(old);
        Self::move_head(&self.prod, &self.cons, cap, n, behavior, side, free)
    }

    /// Reserves up to `n` elements for dequeue; returns (old head, count).
    #[inline(always)]
    fn move_cons_head(&self, n: usize, behavior: QueueBehavior, side: Side<'_>) -> (usize, usize) {
        // Published elements: the producer tail is ahead of the consumer head.
        let entries = |old: usize, prod_tail: usize| prod_tail.wrapping_sub(old);
        Self::move_head(
            &self.cons,
            &self.prod,
            self.capacity(),
            n,
            behavior,
            side,
            entries,
        )
    }

    /// Moves `own`'s head on by up to `n` (of what `count(head, other tail)` says is there);
    /// returns (old head, count). The producer's and the consumer's reservation are this one
    /// protocol, with the other side's tail as the bound.
    #[inline(always)]
    fn move_head(
        own: &HeadTail,
        other: &HeadTail,
        cap: usize,
        n: usize,
        behavior: QueueBehavior,
        side: Side<'_>,
        count: impl Fn(usize, usize) -> usize,
    ) -> (usize, usize) {
        if let Side::Single(other_tail) = side {
            // Only this thread writes own.head. `other_tail` is a value of the other side's
            // tail loaded (Acquire) earlier: a lower bound of the current one, so the count is
            // never overestimated, and what it covers was released before that load.
            let old = own.head.load(Ordering::Relaxed);
            let have = counted_with(other_tail, &other.tail, n, cap, |t| count(old, t));
            debug_assert!(have <= cap, "a single handle's cached tail is out of range");
            let n = Self::amount(behavior, n, have);
            if n != 0 {
                own.head.store(old.wrapping_add(n), Ordering::Relaxed);
            }
            return (old, n);
        }
        let mut cached = match side {
            Side::MultiCached(c) => Some(c),
            _ => None,
        };
        let mut old = own.head.load(Ordering::Acquire);
        loop {
            // A cached tail is a value this handle loaded with Acquire: a lower bound whose
            // released slots this thread has seen. Other handles of this side move the head on
            // without this one, so the cached value may be more than a lap behind `old`: the
            // count then wraps past `cap` and the tail is loaded afresh, as when it shows too
            // little. A stale `old` (fresh tail beyond it) fails the CAS below.
            let have = match cached.as_deref_mut() {
                Some(c) => counted_with(c, &other.tail, n, cap, |t| count(old, t)),
                None => count(old, other.tail.load(Ordering::Acquire)),
            };
            let n = Self::amount(behavior, n, have);
            if n == 0 {
                return (old, 0);
            }
            match own.head.compare_exchange_weak(
                old,
                old.wrapping_add(n),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return (old, n),
                Err(cur) => old = cur,
            }
        }
    }

    #[inline(always)]
    fn publish(ht: &HeadTail, old: usize, new: usize, multi: bool) {
        if multi {
            // Earlier reservations must publish first. Acquire: their slot accesses then happen
            // before our release store, which the other side acquires.
            while ht.tail.load(Ordering::Acquire) != old {
                spin_wait();
            }
        }
        ht.tail.store(new, Ordering::Release);
    }

    /// Core enqueue: moves up to `n` values from `src`; returns how many were moved.
    ///
    /// # Safety
    /// `src` points to `n` initialised values. The first `k` (returned) are moved into the ring:
    /// the caller must treat them as moved out (not drop or use them again). With
    /// `Side::Single`, no other enqueue may ever run on this ring (a unique producer handle).
    #[inline(always)]
    unsafe fn enqueue_impl(&self, src: *const T, n: usize, behavior: QueueBehavior, side: Side<'_>) -> usize {
        let multi = side.is_multi();
        let (old, n) = self.move_prod_head(n, behavior, side);
        if n == 0 {
            return 0;
        }
        let size = self.capacity();
        let idx = old & self.meta.mask;
        let first = n.min(size - idx);
        // SAFETY: slots [old, old+n) are reserved for us by the head move and are free (the
        // consumer tail this thread acquired, in this call or, cached, in an earlier one, is at
        // least old + n - size); the two chunks are in bounds; `src` holds n values (caller
        // contract).
        unsafe {
            write_slots(self.meta.slots(), idx, src, first);
            if first < n {
                write_slots(self.meta.slots(), 0, src.add(first), n - first);
            }
        }
        Self::publish(&self.prod, old, old.wrapping_add(n), multi);
        n
    }

    /// Core dequeue: moves up to `n` values into `dst`; returns how many were moved.
    ///
    /// # Safety
    /// `dst` has room for `n` values (their old contents are overwritten without drop). With
    /// `Side::Single`, no other dequeue may ever run on this ring (a unique consumer handle).
    #[inline(always)]
    unsafe fn dequeue_impl(&self, dst: *mut T, n: usize, behavior: QueueBehavior, side: Side<'_>) -> usize {
        let multi = side.is_multi();
        let (old, n) = self.move_cons_head(n, behavior, side);
        if n == 0 {
            return 0;
        }
        let size = self.capacity();
        let idx = old & self.meta.mask;
        let first = n.min(size - idx);
        // SAFETY: slots [old, old+n) are reserved for us and published (the producer tail this
        // thread acquired, in this call or, cached, in an earlier one, is >= old + n); in bounds;
        // `dst` has room for n values (caller contract).
        unsafe {
            read_slots(self.meta.slots(), idx, dst, first);
            if first < n {
                read_slots(self.meta.slots(), 0, dst.add(first), n - first);
            }
        }
        Self::publish(&self.cons, old, old.wrapping_add(n), multi);
        n
    }

    /// Multi-producer enqueue of up to `n` values read from `src`; returns how many were moved.
    ///
    /// # Safety
    /// `src` points to `n` initialised values; the first `k` (the return value) now belong to
    /// the ring and must not be used or dropped by the caller.
    #[inline]
    pub unsafe fn enqueue_raw(&self, src: *const T, n: usize, behavior: QueueBehavior) -> usize {
        // SAFETY: forwarded caller contract; multi-producer path.
        unsafe { self.enqueue_impl(src, n, behavior, Side::Multi) }
    }

    /// Multi-consumer dequeue of up to `n` values written to `dst`; returns how many.
    ///
    /// # Safety
    /// `dst` has room for `n` values; the first `k` (the return value) are initialised by the
    /// call and owned by the caller; previous contents are overwritten without being dropped.
    #[inline]
    pub unsafe fn dequeue_raw(&self, dst: *mut T, n: usize, behavior: QueueBehavior) -> usize {
        // SAFETY: forwarded caller contract; multi-consumer path.
        unsafe { self.dequeue_impl(dst, n, behavior, Side::Multi) }
    }

    /// Enqueues one value, or gives it back when the ring is full.
    #[inline]
    pub fn enqueue(&self, value: T) -> Result<(), T> {
        let v = MaybeUninit::new(value);
        // SAFETY: one initialised value; if it was moved in we forget our copy (MaybeUninit never
        // drops), otherwise we take it back.
        if unsafe { self.enqueue_impl(v.as_ptr(), 1, QueueBehavior::Fixed, Side::Multi) } == 1 {
            Ok(())
        } else {
            // SAFETY: not moved into the ring, still initialised and ours.
            Err(unsafe { v.assume_init() })
        }
    }

    /// Dequeues one value.
    #[inline]
    pub fn dequeue(&self) -> Option<T> {
        let mut v = MaybeUninit::<T>::uninit();
        // SAFETY: room for one value; initialised when the call returns 1.
        if unsafe { self.dequeue_impl(v.as_mut_ptr(), 1, QueueBehavior::Fixed, Side::Multi) } == 1 {
            // SAFETY: initialised by the dequeue.
            Some(unsafe { v.assume_init() })
        } else {
            None
        }
    }

    /// Moves all of `items` in (bulk, all or nothing): returns `true` and leaves `items` empty,
    /// or `false` and leaves it untouched. Never allocates.
    #[inline]
    pub fn enqueue_bulk_from_vec(&self, items: &mut Vec<T>) -> bool {
        // SAFETY: see vec_enqueue.
        (unsafe {
            vec_enqueue(items, QueueBehavior::Fixed, |p, n, b| {
                self.enqueue_impl(p, n, b, Side::Multi)
            }) != 0
        }) || items.is_empty()
    }

    /// Moves as many of `items` in as fit (burst), from the front; the rest stay in `items` in
    /// order. Returns the number moved. Never allocates.
    #[inline]
    pub fn enqueue_burst_from_vec(&self, items: &mut Vec<T>) -> usize {
        // SAFETY: see vec_enqueue.
        unsafe {
            vec_enqueue(items, QueueBehavior::Variable, |p, n, b| {
                self.enqueue_impl(p, n, b, Side::Multi)
            })
        }
    }

    /// Appends exactly `n` dequeued values to `out` or none (bulk). `n` is limited by `out`'s
    /// spare capacity: this never allocates (reserve beforehand). Returns whether it succeeded.
    #[inline]
    pub fn dequeue_bulk_into_vec(&self, out: &mut Vec<T>, n: usize) -> bool {
        if n > out.capacity() - out.len() {
            return false;
        }
        // SAFETY: see vec_dequeue.
        unsafe {
            vec_dequeue(out, n, QueueBehavior::Fixed, |p, n, b| {
                self.dequeue_impl(p, n, b, Side::Multi)
            }) == n
        }
    }

    /// Appends up to `max` dequeued values to `out` (burst), limited by `out`'s spare capacity
    /// (never allocates). Returns the number appended.
    #[inline]
    pub fn dequeue_burst_into_vec(&self, out: &mut Vec<T>, max: usize) -> usize {
        // SAFETY: see vec_dequeue.
        unsafe {
            vec_dequeue(out, max, QueueBehavior::Variable, |p, n, b| {
                self.dequeue_impl(p, n, b, Side::Multi)
            })
        }
    }
}

impl<T: Copy> Ring<T> {
    /// Multi-producer bulk enqueue of copies of `items`: all or nothing.
    #[inline]
    pub fn enqueue_bulk(&self, items: &[T]) -> bool {
        // SAFETY: `T: Copy`, so the ring may own copies while `items` keeps its values.
        (unsafe { self.enqueue_impl(items.as_ptr(), items.len(), QueueBehavior::Fixed, Side::Multi) != 0 })
            || items.is_empty()
    }

    /// Multi-producer burst enqueue: copies as many leading `items` as fit; returns the count.
    #[inline]
    pub fn enqueue_burst(&self, items: &[T]) -> usize {
        // SAFETY: as in enqueue_bulk.
        unsafe { self.enqueue_impl(items.as_ptr(), items.len(), QueueBehavior::Variable, Side::Multi) }
    }

    /// Multi-consumer bulk dequeue filling all of `out`, or nothing (returns `false`).
    #[inline]
    pub fn dequeue_bulk(&self, out: &mut [T]) -> bool {
        // SAFETY: `out` has room for out.len() values; `T: Copy` so overwriting needs no drop.
        (unsafe { self.dequeue_impl(out.as_mut_ptr(), out.len(), QueueBehavior::Fixed, Side::Multi) != 0 })
            || out.is_empty()
    }

    /// Multi-consumer burst dequeue into the front of `out`; returns the count.
    #[inline]
    pub fn dequeue_burst(&self, out: &mut [T]) -> usize {
        // SAFETY: as in dequeue_bulk.
        unsafe { self.dequeue_impl(out.as_mut_ptr(), out.len(), QueueBehavior::Variable, Side::Multi) }
    }
}

/// The count (free slots or elements) a handle's cached opposite tail gives, `count(tail)`: when
/// it shows fewer than `n`, or more than `cap` (other handles of the same side moved the head a
/// lap past a stale value), the tail is loaded afresh (Acquire) into the cache first. The one
/// rule of every cached handle, single or multi.
#[inline(always)]
fn counted_with(
    cached: &mut usize,
    tail: &AtomicUsize,
    n: usize,
    cap: usize,
    count: impl Fn(usize) -> usize,
) -> usize {
    let k = count(*cached);
    if k >= n && k <= cap {
        return k;
    }
    *cached = tail.load(Ordering::Acquire);
    count(*cached)
}

/// Enqueues from the front of a Vec, then shifts the remainder down.
///
/// # Safety
/// `f(ptr, n, behavior)` must behave like `Ring::enqueue_impl` (moves the first k values).
#[inline(always)]
unsafe fn vec_enqueue<T>(
    items: &mut Vec<T>,
    behavior: QueueBehavior,
    f: impl FnOnce(*const T, usize, QueueBehavior) -> usize,
) -> usize {
    let len = items.len();
    let k = f(items.as_ptr(), len, behavior);
    if k != 0 {
        // SAFETY: the first k values were moved into the ring; move the remaining len-k values
        // to the front (overlapping copy) and shrink, so no value is dropped twice.
        unsafe {
            let p = items.as_mut_ptr();
            core::ptr::copy(p.add(k), p, len - k);
            items.set_len(len - k);
        }
    }
    k
}

/// Dequeues into the spare capacity of a Vec.
///
/// # Safety
/// `f(ptr, n, behavior)` must behave like `Ring::dequeue_impl`.
#[inline(always)]
unsafe fn vec_dequeue<T>(
    out: &mut Vec<T>,
    max: usize,
    behavior: QueueBehavior,
    f: impl FnOnce(*mut T, usize, QueueBehavior) -> usize,
) -> usize {
    let len = out.len();
    let n = max.min(out.capacity() - len);
    // SAFETY: the spare capacity has room for n values.
    let k = f(unsafe { out.as_mut_ptr().add(len) }, n, behavior);
    // SAFETY: k values were initialised after len.
    unsafe { out.set_len(len + k) };
    k
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        if !core::mem::needs_drop::<T>() {
            return;
        }
        let mut cons = self.cons.tail.load(Ordering::Relaxed);
        let prod = self.prod.tail.load(Ordering::Relaxed);
        while cons != prod {
            let mut v = MaybeUninit::<T>::uninit();
            // SAFETY: exclusive access; slots between the tails are initialised and owned by
            // the ring; each is moved out once and dropped.
            unsafe {
                read_slots(self.meta.slots(), cons & self.meta.mask, v.as_mut_ptr(), 1);
                v.assume_init_drop();
            }
            cons = cons.wrapping_add(1);
        }
    }
}

mod handle;
#[cfg(all(test, not(loom)))]
mod tests;

pub use handle::{Consumer, Producer};
