/* bench_util: what the benchmark programs share.
 *
 * - a log-linear latency histogram (HDR-like: 64 sub-buckets per power of
 *   two, so any recorded value is reported within 1.6 %), in nanoseconds;
 * - a deterministic generator of StockMoved events over S stores x P
 *   products, so the Kafka limit, the projector replay, the PostgreSQL
 *   limit and the rebuild benchmark all handle the very same events;
 * - clocks and the resident set size of a process.
 *
 * Nothing here is thread-safe; each program uses it from one thread. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/event.h"

/* ---- clocks ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
/* Wall clock (CLOCK_REALTIME) in Unix microseconds. */
int64_t bench_wall_us(void);

/* VmRSS of pid (0 = this process) in KiB, or -1 when unreadable. */
long bench_rss_kib(int pid);

/* ---- histogram ---- */

#define BENCH_HIST_SUB 64
#define BENCH_HIST_BUCKETS (BENCH_HIST_SUB * 64)

typedef struct bench_hist {
  uint64_t count[BENCH_HIST_BUCKETS];
  uint64_t n;
  uint64_t min, max;
  long double sum;
} bench_hist_t;

void bench_hist_reset(bench_hist_t *h);
void bench_hist_record(bench_hist_t *h, uint64_t value);
/* The value at quantile q (0..1): the middle of the bucket holding it,
 * clamped to [min, max]; 0 when empty. */
uint64_t bench_hist_quantile(const bench_hist_t *h, double q);
double bench_hist_mean(const bench_hist_t *h);
/* Adds every count of src to dst. */
void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src);

/* ---- synthetic ids and events ---- */

/* Deterministic UUID strings (v7 layout) for store i, product i, event i and
 * command i; salt separates runs (ids of two salts never collide). out holds
 * SF_ID_LEN bytes. */
void bench_store_id(uint32_t salt, uint64_t i, char out[SF_ID_LEN]);
void bench_product_id(uint32_t salt, uint64_t i, char out[SF_ID_LEN]);
void bench_event_id(uint32_t salt, uint64_t i, char out[SF_ID_LEN]);
void bench_command_id(uint32_t salt, uint64_t i, char out[SF_ID_LEN]);

/* Generator of the stock stream: event k touches pair k mod (S*P) (store =
 * pair mod S, product = pair div S), so every pair advances one version per
 * round. Version 1 of a pair is a receipt of 1,000,000 units; later ones
 * are 70 % sales of 1 unit, 20 % receipts of 2 units and 10 % counts (to
 * the current level, delta 0). on_hand is tracked per pair so the events
 * carry correct after-values. Events must be generated in order k = 0, 1,
 * 2, ...; the caller owns the struct (bench_gen_free releases it). */
typedef struct bench_gen {
  uint32_t salt;
  uint64_t stores, products, next;
  int64_t *on_hand; /* per pair */
  int64_t t0_us;
} bench_gen_t;

/* Returns 0 or SF_ENOMEM. */
int bench_gen_init(bench_gen_t *g, uint32_t salt, uint64_t stores,
                   uint64_t products);
void bench_gen_free(bench_gen_t *g);
/* Fills e (sf_event_init'd by the call) with event number g->next, then
 * advances. Pointer fields of e stay NULL (no reason or reference). */
void bench_gen_next(bench_gen_t *g, sf_event_t *e);

/* Store and product catalog events for the generator's ids (StoreOpened for
 * i < stores, then ProductCreated). name_buf/sku_buf are caller storage of
 * at least 64 bytes that e borrows. */
void bench_gen_catalog(const bench_gen_t *g, uint64_t i, sf_event_t *e,
                       char *name_buf, char *sku_buf);

/* ---- small helpers ---- */

/* Parses a positive integer with an optional k/M suffix (1k = 1000).
 * Returns 0 or -1. */
int bench_parse_count(const char *text, uint64_t *out);

#endif
