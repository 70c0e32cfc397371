//! Criterion benches of `oxpmd_dma::Ring` on one thread (regression tracking; the DPDK
//! comparison is `benches/ring_perf.rs`): one bulk enqueue + one bulk dequeue of 8 / 32
//! pointer-sized elements, SP/SC (split single handles) and MP/MC (shared `&Ring`), with a
//! crossbeam `ArrayQueue` (one CAS per element) as a reference row.
//!
//! `cargo bench --bench ring`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use oxpmd_dma::{Ring, SyncMode};

const RING_SIZE: usize = 4096;

fn ring_bulk(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring_bulk_enq_deq");
    for n in [8usize, 32] {
        g.throughput(Throughput::Elements(n as u64));
        let src: Vec<usize> = (1..=n).collect();
        let mut dst = vec![0usize; n];

        let (mut p, mut cons) = Ring::<usize>::new(RING_SIZE)
            .unwrap()
            .split(SyncMode::Single, SyncMode::Single);
        g.bench_with_input(BenchmarkId::new("sp_sc", n), &n, |b, _| {
            b.iter(|| {
                assert!(p.enqueue_bulk(black_box(&src)));
                assert!(cons.dequeue_bulk(black_box(&mut dst)));
            })
        });

        let ring = Ring::<usize>::new(RING_SIZE).unwrap();
        g.bench_with_input(BenchmarkId::new("mp_mc", n), &n, |b, _| {
            b.iter(|| {
                assert!(ring.enqueue_bulk(black_box(&src)));
                assert!(ring.dequeue_bulk(black_box(&mut dst)));
            })
        });

        let q = ArrayQueue::<usize>::new(RING_SIZE);
        g.bench_with_input(BenchmarkId::new("crossbeam_array_queue", n), &n, |b, _| {
            b.iter(|| {
                for &v in black_box(&src) {
                    q.push(v).unwrap();
                }
                for d in black_box(&mut dst).iter_mut() {
                    *d = q.pop().unwrap();
                }
            })
        });
    }
    g.finish();
}

fn ring_burst_moves(c: &mut Criterion) {
    // Moving non-Copy values (what a ring of Packets does): Vec in, Vec out, no allocation.
    let mut g = c.benchmark_group("ring_burst_vec_move");
    let n = 32usize;
    g.throughput(Throughput::Elements(n as u64));
    let ring = Ring::<Box<u64>>::new(RING_SIZE).unwrap();
    let mut items: Vec<Box<u64>> = (0..n as u64).map(Box::new).collect();
    let mut out: Vec<Box<u64>> = Vec::with_capacity(n);
    g.bench_function("mp_mc_32", |b| {
        b.iter(|| {
            assert_eq!(ring.enqueue_burst_from_vec(black_box(&mut items)), n);
            assert_eq!(ring.dequeue_burst_into_vec(black_box(&mut out), n), n);
            core::mem::swap(&mut items, &mut out);
        })
    });
    g.finish();
}

criterion_group!(benches, ring_bulk, ring_burst_moves);
criterion_main!(benches);
