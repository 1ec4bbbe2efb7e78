/* bench_util: clocks, RSS, the log-linear histogram and the deterministic
 * event generator shared by the benchmark programs (see bench_util.h). */
#include "bench_util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sf/err.h"

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t bench_wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long bench_rss_kib(int pid) {
  char path[64];
  if (pid > 0)
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
  else
    snprintf(path, sizeof(path), "/proc/self/status");
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof(line), f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  return kib;
}

/* ---- histogram ----
 * Values below 2 * SUB have a bucket each; above, a value with its highest
 * bit at position m (m >= 7) falls in the power-of-two band shift = m - 6,
 * split into SUB equal sub-buckets: index = SUB * shift + (v >> shift). */

static size_t bucket_of(uint64_t v) {
  if (v < 2 * BENCH_HIST_SUB)
    return (size_t)v;
  int msb = 63 - __builtin_clzll(v);
  int shift = msb - 6;
  size_t idx = (size_t)BENCH_HIST_SUB * (size_t)shift + (size_t)(v >> shift);
  return idx < BENCH_HIST_BUCKETS ? idx : BENCH_HIST_BUCKETS - 1;
}

/* Lower bound and width of bucket idx. */
static void bucket_range(size_t idx, uint64_t *lo, uint64_t *width) {
  if (idx < 2 * BENCH_HIST_SUB) {
    *lo = idx;
    *width = 1;
    return;
  }
  unsigned shift = (unsigned)(idx / BENCH_HIST_SUB) - 1;
  uint64_t m = idx % BENCH_HIST_SUB + BENCH_HIST_SUB;
  *lo = m << shift;
  *width = (uint64_t)1 << shift;
}

void bench_hist_reset(bench_hist_t *h) {
  memset(h, 0, sizeof(*h));
  h->min = UINT64_MAX;
}

void bench_hist_record(bench_hist_t *h, uint64_t value) {
  h->count[bucket_of(value)]++;
  h->n++;
  h->sum += (long double)value;
  if (value < h->min)
    h->min = value;
  if (value > h->max)
    h->max = value;
}

uint64_t bench_hist_quantile(const bench_hist_t *h, double q) {
  if (h->n == 0)
    return 0;
  if (q <= 0)
    return h->min;
  if (q >= 1)
    return h->max;
  /* the smallest value v such that at least q of the samples are <= v */
  uint64_t rank = (uint64_t)((long double)q * (long double)h->n + 0.5L);
  if (rank < 1)
    rank = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++) {
    seen += h->count[i];
    if (seen >= rank) {
      uint64_t lo, w;
      bucket_range(i, &lo, &w);
      uint64_t v = lo + w / 2;
      if (v < h->min)
        v = h->min;
      if (v > h->max)
        v = h->max;
      return v;
    }
  }
  return h->max;
}

double bench_hist_mean(const bench_hist_t *h) {
  return h->n ? (double)(h->sum / (long double)h->n) : 0.0;
}

void bench_hist_merge(bench_hist_t *dst, const bench_hist_t *src) {
  for (size_t i = 0; i < BENCH_HIST_BUCKETS; i++)
    dst->count[i] += src->count[i];
  dst->n += src->n;
  dst->sum += src->sum;
  if (src->n) {
    if (src->min < dst->min)
      dst->min = src->min;
    if (src->max > dst->max)
      dst->max = src->max;
  }
}

/* ---- ids ----
 * Layout: 8 hex digits of a kind tag mixed with the salt, then a v7-shaped
 * remainder carrying the index in the last 48 bits. */

static void make_id(uint32_t tag, uint32_t salt, uint64_t i,
                    char out[SF_ID_LEN]) {
  uint32_t hi = 0x01900000u | ((tag & 0xfu) << 16) | (salt & 0xffffu);
  snprintf(out, SF_ID_LEN, "%08" PRIx32 "-%04x-7%03x-8%03x-%012" PRIx64, hi,
           (unsigned)((salt >> 16) & 0xffffu), (unsigned)((i >> 48) & 0xfffu),
           0u, i & UINT64_C(0xffffffffffff));
}

void bench_store_id(uint32_t salt, uint64_t i, char out[SF_ID_LEN]) {
  make_id(1, salt, i, out);
}
void bench_product_id(uint32_t salt, uint64_t i, char out[SF_ID_LEN]) {
  make_id(2, salt, i, out);
}
void bench_event_id(uint32_t salt, uint64_t i, char out[SF_ID_LEN]) {
  make_id(3, salt, i, out);
}
void bench_command_id(uint32_t salt, uint64_t i, char out[SF_ID_LEN]) {
  make_id(4, salt, i, out);
}

/* ---- the generator ---- */

int bench_gen_init(bench_gen_t *g, uint32_t salt, uint64_t stores,
                   uint64_t products) {
  memset(g, 0, sizeof(*g));
  g->salt = salt;
  g->stores = stores;
  g->products = products;
  g->on_hand = calloc((size_t)(stores * products), sizeof(int64_t));
  if (!g->on_hand)
    return SF_ENOMEM;
  g->t0_us = bench_wall_us();
  return 0;
}

void bench_gen_free(bench_gen_t *g) {
  free(g->on_hand);
  g->on_hand = NULL;
}

void bench_gen_next(bench_gen_t *g, sf_event_t *e) {
  uint64_t k = g->next++;
  uint64_t pairs = g->stores * g->products;
  uint64_t pair = k % pairs;
  int64_t version = (int64_t)(k / pairs) + 1;
  sf_event_init(e);
  bench_event_id(g->salt, k, e->event_id);
  bench_command_id(g->salt, k, e->command_id);
  bench_store_id(g->salt, pair % g->stores, e->store_id);
  bench_product_id(g->salt, pair / g->stores, e->product_id);
  e->type = SF_EV_STOCK_MOVED;
  e->occurred_at_us = g->t0_us + (int64_t)k;
  e->stream_version = version;
  int64_t *oh = &g->on_hand[pair];
  if (version == 1) {
    e->stock.movement = SF_MOVE_RECEIPT;
    e->stock.quantity = 1000000;
    e->stock.delta = 1000000;
  } else {
    unsigned r = (unsigned)(k % 10);
    if (r < 7) {
      e->stock.movement = SF_MOVE_SALE;
      e->stock.quantity = 1;
      e->stock.delta = *oh > 0 ? -1 : 0;
      if (*oh == 0) { /* never below zero: a receipt instead */
        e->stock.movement = SF_MOVE_RECEIPT;
        e->stock.delta = 1;
      }
    } else if (r < 9) {
      e->stock.movement = SF_MOVE_RECEIPT;
      e->stock.quantity = 2;
      e->stock.delta = 2;
    } else {
      e->stock.movement = SF_MOVE_COUNT;
      e->stock.quantity = *oh;
      e->stock.delta = 0;
    }
  }
  *oh += e->stock.delta;
  e->stock.on_hand = *oh;
  e->stock.reserved = 0;
}

void bench_gen_catalog(const bench_gen_t *g, uint64_t i, sf_event_t *e,
                       char *name_buf, char *sku_buf) {
  sf_event_init(e);
  bench_event_id(g->salt ^ 0x5a5au, i, e->event_id);
  bench_command_id(g->salt ^ 0x5a5au, i, e->command_id);
  e->occurred_at_us = g->t0_us;
  e->stream_version = 1;
  if (i < g->stores) {
    e->type = SF_EV_STORE_OPENED;
    bench_store_id(g->salt, i, e->store_id);
    snprintf(name_buf, 64, "bench store %" PRIu64, i);
    e->store.name = name_buf;
    e->store.location = "bench";
  } else {
    uint64_t p = i - g->stores;
    e->type = SF_EV_PRODUCT_CREATED;
    bench_product_id(g->salt, p, e->product_id);
    snprintf(name_buf, 64, "bench product %" PRIu64, p);
    snprintf(sku_buf, 64, "BENCH-%08x-%06" PRIu64, (unsigned)g->salt, p);
    e->product.name = name_buf;
    e->product.sku = sku_buf;
    e->product.price = "9.99";
  }
}

int bench_parse_count(const char *text, uint64_t *out) {
  if (!text || !*text)
    return -1;
  errno = 0;
  char *end = NULL;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno || end == text)
    return -1;
  uint64_t mul = 1;
  if (*end == 'k' || *end == 'K')
    mul = 1000, end++;
  else if (*end == 'M' || *end == 'm')
    mul = 1000000, end++;
  if (*end || v == 0)
    return -1;
  *out = (uint64_t)v * mul;
  return 0;
}
