//! Criterion benches of `oxpmd_dma::Mempool` (regression tracking; the DPDK comparison is
//! `benches/mempool_perf.rs`): raw get/put bulk of 1 / 4 / 32 through an explicit
//! `MempoolCache` (cache 256; put with and without the pool check), packets the same through
//! the per-thread cache path used by `Mempool::alloc_bulk` and `Drop for Packet`, and single
//! packet alloc + drop.
//!
//! The pool uses 4 KiB pages when no hugepage is free (a warning is logged), so the bench runs
//! anywhere; buffers are never touched by a device here.
//!
//! `cargo bench --bench mempool`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use oxpmd_dma::{IdentityMap, Mempool, MempoolConfig, Packet, RawBuffer, RegionOptions};

fn pool() -> Mempool {
    let config = MempoolConfig {
        region: RegionOptions {
            allow_4k_fallback: true,
            ..Default::default()
        },
        ..MempoolConfig::new("bench", 8191)
    };
    Mempool::new(&config, Arc::new(IdentityMap)).expect("bench mempool")
}

fn cache_get_put(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group("mempool_cache_get_put_bulk");
    for n in [1usize, 4, 32] {
        g.throughput(Throughput::Elements(n as u64));
        let mut cache = pool.cache();
        let mut table = vec![RawBuffer::NULL; n];
        g.bench_with_input(BenchmarkId::new("raw", n), &n, |b, _| {
            b.iter(|| {
                cache.get_bulk(black_box(&mut table)).unwrap();
                // SAFETY: taken from this pool through this cache just above, given back once.
                unsafe { cache.put_bulk(black_box(&table)) }.unwrap();
            })
        });
        g.bench_with_input(BenchmarkId::new("raw_unchecked_put", n), &n, |b, _| {
            b.iter(|| {
                cache.get_bulk(black_box(&mut table)).unwrap();
                // SAFETY: taken from this pool through this cache just above, given back once.
                unsafe { cache.put_bulk_unchecked(black_box(&table)) };
            })
        });
        let mut slots: Vec<Option<Packet>> = (0..n).map(|_| None).collect();
        g.bench_with_input(BenchmarkId::new("packets_explicit_cache", n), &n, |b, _| {
            b.iter(|| {
                cache.alloc_bulk(black_box(&mut slots)).unwrap();
                assert_eq!(cache.free_bulk(black_box(&mut slots)), n);
            })
        });
        g.bench_with_input(BenchmarkId::new("packets_thread_cache", n), &n, |b, _| {
            b.iter(|| {
                pool.alloc_bulk(black_box(&mut slots)).unwrap();
                for s in slots.iter_mut() {
                    drop(s.take());
                }
            })
        });
    }
    g.finish();
}

fn packet_alloc_drop(c: &mut Criterion) {
    let pool = pool();
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function("alloc_drop_thread_cache", |b| {
        b.iter(|| drop(black_box(pool.alloc().unwrap())))
    });
    let mut cache = pool.cache();
    g.bench_function("alloc_free_explicit_cache", |b| {
        b.iter(|| {
            let p = black_box(cache.alloc().unwrap());
            cache.free(p).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, cache_get_put, packet_alloc_drop);
criterion_main!(benches);
