/*
 * oxpmd: the DPDK side of the `driver path` block of `cargo xtask bench mempool`.
 *
 * Written for oxpmd against DPDK 22.11's public API (Debian's dpdk-dev); built by xtask with
 *   gcc -O3 -o driver_path driver_path.c $(pkg-config --cflags --libs libdpdk)
 * and run as
 *   driver_path <EAL arguments> -- --window-us N --warmup-us N
 * Method (the same as benches/mempool_driver_path.rs): docs/benchmarks.md.
 *
 * One pktmbuf pool (4095 mbufs, cache 512, data room 128 + 2048, no private area, default ops).
 * Each lcore warms up for --warmup-us, then repeats, until --window-us has passed, rounds of 65536
 * mbufs (65536 / N iterations of rte_pktmbuf_alloc_bulk(N) + rte_pktmbuf_free_bulk(N); the clock,
 * CLOCK_MONOTONIC, is read between rounds). Rate = mbufs allocated and freed by all lcores / window.
 * Cases: N = 1, 4, 32 on the main lcore, then on the main and one worker lcore (same pool, each with
 * its lcore cache), then on the main lcore with rte_mempool_put_bulk instead of rte_pktmbuf_free_bulk
 * (no per-mbuf read of pool and refcount), to show what free_bulk pays per mbuf.
 *
 * Lines read by xtask: `oxpmd-bench mempool-driver <case> <value>`, with the same case ids as ours.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_pause.h>

#define ROUND 65536u
#define MAX_BURST 32u
#define POOL_SIZE 4095u
#define CACHE_SIZE 512u
#define DATA_ROOM 2048u

static struct rte_mempool *pool;
/* Parameters of the case being run; read once per lcore and case (not compile-time constants). */
static volatile unsigned int case_burst;
static volatile int case_raw_put;
static volatile int start_flag;
static uint64_t window_ns, warmup_ns;
static uint64_t moved[RTE_MAX_LCORE];

static void die(const char *what)
{
    fprintf(stderr, "driver_path: %s\n", what);
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Rounds until `length` ns have passed; returns the mbufs that went through alloc + free. */
static uint64_t rounds_for(uint64_t length, unsigned int n, int raw_put)
{
    struct rte_mbuf *m[MAX_BURST];
    unsigned int per_round = ROUND / n;
    uint64_t count = 0;
    uint64_t start = now_ns();
    while (now_ns() - start < length) {
        for (unsigned int i = 0; i < per_round; i++) {
            if (rte_pktmbuf_alloc_bulk(pool, m, n) != 0)
                die("rte_pktmbuf_alloc_bulk failed: pool exhausted");
            if (raw_put)
                rte_mempool_put_bulk(pool, (void **)m, n);
            else
                rte_pktmbuf_free_bulk(m, n);
        }
        count += (uint64_t)per_round * n;
    }
    return count;
}

static int per_lcore(void *arg)
{
    (void)arg;
    while (__atomic_load_n(&start_flag, __ATOMIC_ACQUIRE) == 0)
        rte_pause();
    unsigned int n = case_burst;
    int raw_put = case_raw_put;
    rounds_for(warmup_ns, n, raw_put);
    moved[rte_lcore_id()] = rounds_for(window_ns, n, raw_put);
    return 0;
}

/* Runs one case on `lcores` lcores (1 or 2); returns mbufs per second. */
static double run_case(unsigned int lcores, unsigned int n, int raw_put)
{
    case_burst = n;
    case_raw_put = raw_put;
    __atomic_store_n(&start_flag, 0, __ATOMIC_RELEASE);
    memset(moved, 0, sizeof(moved));
    unsigned int worker = rte_get_next_lcore(-1, 1, 0);
    if (lcores > 1) {
        if (worker >= RTE_MAX_LCORE)
            die("two cores asked for but EAL has no worker lcore (give -l with two CPUs)");
        if (rte_eal_remote_launch(per_lcore, NULL, worker) != 0)
            die("rte_eal_remote_launch failed");
    }
    __atomic_store_n(&start_flag, 1, __ATOMIC_RELEASE);
    per_lcore(NULL);
    if (lcores > 1)
        rte_eal_wait_lcore(worker);
    uint64_t total = 0;
    for (unsigned int i = 0; i < RTE_MAX_LCORE; i++)
        total += moved[i];
    if (rte_mempool_avail_count(pool) != POOL_SIZE)
        die("mbufs not back in the pool after a case");
    return (double)total / ((double)window_ns / 1e9);
}

static uint64_t micros(const char *name, const char *v, uint64_t min)
{
    char *end;
    errno = 0;
    unsigned long long us = v != NULL ? strtoull(v, &end, 10) : 0;
    if (v == NULL || errno != 0 || *end != '\0' || us < min || us > 10000000ull) {
        fprintf(stderr, "driver_path: %s needs %llu to 10000000 microseconds\n", name,
                (unsigned long long)min);
        exit(2);
    }
    return (uint64_t)us * 1000u;
}

int main(int argc, char **argv)
{
    int eal = rte_eal_init(argc, argv);
    if (eal < 0)
        die(rte_strerror(rte_errno));
    argc -= eal;
    argv += eal;
    window_ns = 100000000u;
    warmup_ns = 10000000u;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--window-us") == 0 && i + 1 < argc)
            window_ns = micros("--window-us", argv[++i], 1000);
        else if (strcmp(argv[i], "--warmup-us") == 0 && i + 1 < argc)
            warmup_ns = micros("--warmup-us", argv[++i], 0);
        else {
            fprintf(stderr, "driver_path: unknown argument `%s` (accepted after --: "
                            "--window-us N --warmup-us N)\n", argv[i]);
            return 2;
        }
    }
    pool = rte_pktmbuf_pool_create("oxpmd_driver_path", POOL_SIZE, CACHE_SIZE, 0,
                                   RTE_PKTMBUF_HEADROOM + DATA_ROOM, SOCKET_ID_ANY);
    if (pool == NULL)
        die(rte_strerror(rte_errno));

    /* The kind of memory the mbufs live in: the page size of the memseg list of one of them. */
    struct rte_mbuf *probe = rte_pktmbuf_alloc(pool);
    if (probe == NULL)
        die("rte_pktmbuf_alloc failed on a fresh pool");
    const struct rte_memseg_list *msl = rte_mem_virt2memseg_list(probe);
    if (msl == NULL)
        die("the mbuf's memory is in no memseg list");
    printf("# DPDK driver_path: %u mbufs, data room %u (headroom %u), cache %u, ops %s, "
           "%.1f ms per case after %.1f ms of warm-up, IOVA as %s, hugepages %s\n",
           pool->size, rte_pktmbuf_data_room_size(pool), RTE_PKTMBUF_HEADROOM, pool->cache_size,
           rte_mempool_get_ops(pool->ops_index)->name, (double)window_ns / 1e6,
           (double)warmup_ns / 1e6, rte_eal_iova_mode() == RTE_IOVA_VA ? "VA" : "PA",
           rte_eal_has_hugepages() ? "yes" : "no");
    printf("oxpmd-bench mempool-driver memory/page_bytes %llu    # page size of the mbufs' memory\n",
           (unsigned long long)msl->page_sz);
    rte_pktmbuf_free(probe);

    static const unsigned int bursts[] = {1, 4, 32};
    for (int raw_put = 0; raw_put <= 1; raw_put++) {
        for (unsigned int lcores = 1; lcores <= (raw_put ? 1u : 2u); lcores++) {
            for (unsigned int b = 0; b < sizeof(bursts) / sizeof(bursts[0]); b++) {
                double rate = run_case(lcores, bursts[b], raw_put);
                printf("oxpmd-bench mempool-driver %s/%ucore/n%u %.0f    # mbufs per second, "
                       "%u lcore(s), rte_pktmbuf_alloc_bulk + %s\n",
                       raw_put ? "nocheck" : "dp", lcores, bursts[b], rate, lcores,
                       raw_put ? "rte_mempool_put_bulk" : "rte_pktmbuf_free_bulk");
                fflush(stdout);
            }
        }
    }
    rte_mempool_free(pool);
    rte_eal_cleanup();
    return 0;
}
