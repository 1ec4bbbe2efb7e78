/* sf-state-mem: memory and fold speed of the command service's state, with
 * the service's own cmd_state.c linked in.
 *
 * 1. Memory: folds one StockMoved event into each of --pairs store x
 *    product pairs (stores x 1000 products) and prints this process's VmRSS
 *    before and after, and the bytes per pair. Those are the rows the
 *    command service holds in memory after a rebuild; the figure excludes
 *    the service's fixed overhead (librdkafka, HTTP), which the real-service
 *    measurement of bench/run.sh adds.
 * 2. Rebuild speed without Kafka: encodes --events events of the generator
 *    (20 stores x 1000 products, the benchmark's shape), then times decoding
 *    every one with sf_event_decode and folding it with cmd_state_apply, the
 *    two CPU steps of a rebuild, and extrapolates to 10 million events.
 *
 *   sf-state-mem [--pairs 1M] [--events 1M] [--json FILE] */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cmd_state.h"
#include "sf/err.h"

typedef struct blob {
  uint8_t *buf;
  size_t len;
} blob_t;

static int fold_pairs(cmd_state_t *st, uint64_t pairs, int64_t t0_us) {
  uint64_t products = 1000, stores = (pairs + products - 1) / products;
  uint64_t k = 0;
  for (uint64_t s = 0; s < stores && k < pairs; s++) {
    for (uint64_t p = 0; p < products && k < pairs; p++, k++) {
      sf_event_t e;
      sf_event_init(&e);
      bench_event_id(7, k, e.event_id);
      bench_command_id(7, k, e.command_id);
      bench_store_id(7, s, e.store_id);
      bench_product_id(7, p, e.product_id);
      e.type = SF_EV_STOCK_MOVED;
      e.occurred_at_us = t0_us;
      e.stream_version = 1;
      e.stock.movement = SF_MOVE_RECEIPT;
      e.stock.quantity = e.stock.delta = e.stock.on_hand = 100;
      cmd_apply_result_t res;
      int rc = cmd_state_apply(st, &e, &res);
      if (rc || res != CMD_APPLY_APPLIED) {
        fprintf(stderr, "sf-state-mem: apply pair %" PRIu64 ": %s\n", k,
                rc ? sf_err_name(rc) : "not applied");
        return -1;
      }
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  uint64_t pairs = 1000000, events = 1000000;
  const char *json_out = NULL;
  static const struct option longopts[] = {
      {"pairs", required_argument, NULL, 'p'},
      {"events", required_argument, NULL, 'n'},
      {"json", required_argument, NULL, 'j'},
      {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    int bad = 0;
    switch (ch) {
    case 'p': bad = bench_parse_count(optarg, &pairs); break;
    case 'n': bad = bench_parse_count(optarg, &events); break;
    case 'j': json_out = optarg; break;
    default: bad = 1;
    }
    if (bad) {
      fprintf(stderr, "usage: sf-state-mem [--pairs N] [--events N] "
                      "[--json FILE]\n");
      return 2;
    }
  }
  int status = 1;
  cmd_state_t *st = NULL, *st2 = NULL;
  sf_event_codec_t *codec = NULL;
  blob_t *blobs = NULL;
  bench_gen_t gen = {0};

  /* ---- 1. memory of pairs ---- */
  long rss0 = bench_rss_kib(0);
  if (cmd_state_new(&st))
    goto fail;
  uint64_t t0 = bench_now_ns();
  if (fold_pairs(st, pairs, bench_wall_us()))
    goto fail;
  double fold_s = (double)(bench_now_ns() - t0) / 1e9;
  long rss1 = bench_rss_kib(0);
  double per_pair = (double)(rss1 - rss0) * 1024.0 / (double)pairs;
  printf("state memory: %" PRIu64 " store x product pairs (%zu rows): VmRSS "
         "%.1f MB before, %.1f MB after, +%.1f MB (%.0f bytes/pair); folded "
         "in %.2f s\n",
         pairs, cmd_state_n_stock(st), rss0 / 1024.0, rss1 / 1024.0,
         (rss1 - rss0) / 1024.0, per_pair, fold_s);
  cmd_state_destroy(st);
  st = NULL;

  /* ---- 2. decode + fold speed ---- */
  if (sf_event_codec_new(&codec) || bench_gen_init(&gen, 9, 20, 1000))
    goto fail;
  blobs = calloc((size_t)events, sizeof(*blobs));
  if (!blobs)
    goto fail;
  for (uint64_t i = 0; i < events; i++) {
    sf_event_t e;
    bench_gen_next(&gen, &e);
    int rc = sf_event_encode(codec, &e, &blobs[i].buf, &blobs[i].len);
    if (rc) {
      fprintf(stderr, "sf-state-mem: encode: %s\n", sf_err_name(rc));
      goto fail;
    }
  }
  if (cmd_state_new(&st2))
    goto fail;
  uint64_t t1 = bench_now_ns();
  uint64_t dec_ns = 0;
  for (uint64_t i = 0; i < events; i++) {
    sf_event_t e;
    uint64_t a = bench_now_ns();
    int rc = sf_event_decode(codec, blobs[i].buf, blobs[i].len, &e);
    dec_ns += bench_now_ns() - a;
    cmd_apply_result_t res;
    if (!rc)
      rc = cmd_state_apply(st2, &e, &res);
    sf_event_clear(&e);
    if (rc) {
      fprintf(stderr, "sf-state-mem: event %" PRIu64 ": %s\n", i,
              sf_err_name(rc));
      goto fail;
    }
  }
  double total_s = (double)(bench_now_ns() - t1) / 1e9;
  double eps = (double)events / total_s;
  printf("rebuild CPU (no Kafka): decoded and folded %" PRIu64 " events in "
         "%.2f s (decode %.2f s): %.0f events/s; 10 million events would take "
         "%.1f s of this\n",
         events, total_s, (double)dec_ns / 1e9, eps, 1e7 / eps);
  if (json_out) {
    json_t *doc = json_pack(
        "{s:I,s:f,s:f,s:f,s:f,s:I,s:f,s:f}", "pairs", (json_int_t)pairs,
        "rss_before_mb", rss0 / 1024.0, "rss_after_mb", rss1 / 1024.0,
        "bytes_per_pair", per_pair, "fold_pairs_s", fold_s, "events",
        (json_int_t)events, "decode_fold_events_per_s", eps,
        "decode_s", (double)dec_ns / 1e9);
    if (!doc || json_dump_file(doc, json_out, JSON_INDENT(1)))
      fprintf(stderr, "sf-state-mem: cannot write %s\n", json_out);
    json_decref(doc);
  }
  status = 0;
fail:
  if (status)
    fprintf(stderr, "sf-state-mem: failed\n");
  cmd_state_destroy(st2);
  cmd_state_destroy(st);
  for (uint64_t i = 0; blobs && i < events; i++)
    free(blobs[i].buf);
  free(blobs);
  bench_gen_free(&gen);
  sf_event_codec_destroy(codec);
  return status;
}
