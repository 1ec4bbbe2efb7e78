/* sf-kafka-limit: the Kafka limit. A raw librdkafka transactional producer,
 * configured like the command service's writer (idempotent, acks=all, lz4,
 * linger 0, the same CloudEvents headers, key = store id), writes the
 * generator's StockMoved events (bench_util.h), Avro-encoded by
 * sf_event_encode, in transactions of --txn events, and prints events/s.
 * All events are encoded before the clock starts, so the figure is Kafka's
 * alone.
 *
 * The same run leaves a real event log behind: with --catalog-topic it
 * first writes the StoreOpened/ProductCreated events of the generator's ids
 * (not timed), so the topic pair can be replayed by the projector and
 * rebuilt by the command service.
 *
 *   sf-kafka-limit --brokers B --topic T [--catalog-topic C] [--events 1M]
 *       [--stores 20] [--products 1000] [--txn 1000] [--salt N]
 *       [--transactional-id ID] [--linger-ms MS] [--producers K]
 *       [--gap-us US]
 *       [--set key=value]... [--json FILE]
 * --producers K (default 1) commits on K transactional producers (ids ID,
 * ID-1 ... ID-(K-1)) in parallel, each on its own thread with every K-th
 * transaction, as the command service's K writer lanes do
 * (STOCKFLOW_WRITER_LANES): the limit next to the command mix with K
 * lanes.
 * --gap-us US (default 2000, the command service's STOCKFLOW_COMMIT_GAP_US)
 * pauses a producer that long between a commit and its next transaction,
 * as a writer lane does: the coordinator refuses a transaction begun before
 * it completed the previous commit (CONCURRENT_TRANSACTIONS), and
 * librdkafka retries after a fixed 20 ms.
 * --set passes any librdkafka property (to try a setting against the same
 * load); the run's figure uses the command service's settings. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "bench_util.h"
#include "sf/err.h"
#include "sf/kafka.h"

typedef struct encoded {
  uint8_t *value;
  size_t len;
  char key[SF_ID_LEN];
  char id[SF_ID_LEN];
  char subject[96];
  char type[48];
  char when[40];
} encoded_t;

static void format_time(int64_t us, char *out, size_t cap) {
  time_t s = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  if (n && n < cap)
    snprintf(out + n, cap - n, ".%06dZ", (int)(us % 1000000));
}

static int encode_one(sf_event_codec_t *codec, const sf_event_t *e,
                      encoded_t *out) {
  int rc = sf_event_encode(codec, e, &out->value, &out->len);
  if (rc)
    return rc;
  snprintf(out->key, sizeof(out->key), "%s",
           e->store_id[0] ? e->store_id : e->product_id);
  snprintf(out->id, sizeof(out->id), "%s", e->event_id);
  snprintf(out->type, sizeof(out->type), "stockflow.%s",
           sf_event_type_name(e->type));
  format_time(e->occurred_at_us, out->when, sizeof(out->when));
  if (e->store_id[0] && e->product_id[0])
    snprintf(out->subject, sizeof(out->subject), "stores/%s/products/%s",
             e->store_id, e->product_id);
  else if (e->store_id[0])
    snprintf(out->subject, sizeof(out->subject), "stores/%s", e->store_id);
  else
    snprintf(out->subject, sizeof(out->subject), "products/%s", e->product_id);
  return 0;
}

static rd_kafka_headers_t *headers_of(const encoded_t *m) {
  rd_kafka_headers_t *h = rd_kafka_headers_new(7);
  rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
  rd_kafka_header_add(h, "ce_id", -1, m->id, -1);
  rd_kafka_header_add(h, "ce_type", -1, m->type, -1);
  rd_kafka_header_add(h, "ce_source", -1, "/stockflow/command", -1);
  rd_kafka_header_add(h, "ce_time", -1, m->when, -1);
  rd_kafka_header_add(h, "ce_subject", -1, m->subject, -1);
  rd_kafka_header_add(h, "content-type", -1, "application/avro", -1);
  return h;
}

/* Reports a transactional error and frees it; returns -1 if there was one. */
static int txn_err(rd_kafka_error_t *e, const char *what) {
  if (!e)
    return 0;
  fprintf(stderr, "sf-kafka-limit: %s: %s\n", what, rd_kafka_error_string(e));
  rd_kafka_error_destroy(e);
  return -1;
}

/* Time spent in each step of the transactions, nanoseconds. */
typedef struct phases {
  uint64_t produce, flush, commit;
} phases_t;

/* Produces msgs[0..n) to topic in one transaction: produce, flush (every
 * delivery report, as the command service waits for them), commit. */
static int produce_txn(rd_kafka_t *rk, const char *topic, encoded_t *msgs,
                       size_t n, phases_t *ph) {
  uint64_t t0 = bench_now_ns();
  if (txn_err(rd_kafka_begin_transaction(rk), "begin_transaction"))
    return -1;
  for (size_t i = 0; i < n; i++) {
    for (;;) {
      rd_kafka_headers_t *h = headers_of(&msgs[i]);
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic),
          RD_KAFKA_V_KEY(msgs[i].key, strlen(msgs[i].key)),
          RD_KAFKA_V_VALUE(msgs[i].value, msgs[i].len),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
          RD_KAFKA_V_END);
      if (!err)
        break;
      rd_kafka_headers_destroy(h);
      if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_poll(rk, 10);
        continue;
      }
      fprintf(stderr, "sf-kafka-limit: produce: %s\n", rd_kafka_err2str(err));
      txn_err(rd_kafka_abort_transaction(rk, 30000), "abort_transaction");
      return -1;
    }
  }
  uint64_t t1 = bench_now_ns();
  /* as the command service's writer waits (sf/kafka.h explains why not
   * rd_kafka_flush) */
  if (sf_kafka_await_delivery(rk, 60000)) {
    fprintf(stderr, "sf-kafka-limit: delivery reports not in within 60 s\n");
    txn_err(rd_kafka_abort_transaction(rk, 30000), "abort_transaction");
    return -1;
  }
  uint64_t t2 = bench_now_ns();
  int rc = txn_err(rd_kafka_commit_transaction(rk, 60000), "commit_transaction");
  uint64_t t3 = bench_now_ns();
  if (ph) {
    ph->produce += t1 - t0;
    ph->flush += t2 - t1;
    ph->commit += t3 - t2;
  }
  return rc;
}

#define MAX_SETS 16
#define MAX_PRODUCERS 8

static rd_kafka_t *make_producer(const char *brokers, const char *txn_id,
                                 const char *linger, char **sets,
                                 size_t n_sets) {
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  const char *settings[][2] = {
      {"bootstrap.servers", brokers},
      {"client.id", "sf-kafka-limit"},
      {"transactional.id", txn_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"partitioner", "murmur2_random"},
      {"linger.ms", linger},
      {"compression.type", "lz4"},
      {"transaction.timeout.ms", "60000"},
      {"queue.buffering.max.messages", "1000000"},
      {"socket.nagle.disable", "true"},
      {"retry.backoff.ms", "5"},
  };
  for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
    if (rd_kafka_conf_set(conf, settings[i][0], settings[i][1], errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      fprintf(stderr, "sf-kafka-limit: %s: %s\n", settings[i][0], errstr);
      rd_kafka_conf_destroy(conf);
      return NULL;
    }
  }
  for (size_t i = 0; i < n_sets; i++) {
    char *eq = strchr(sets[i], '=');
    if (!eq) {
      fprintf(stderr, "sf-kafka-limit: --set wants key=value\n");
      rd_kafka_conf_destroy(conf);
      return NULL;
    }
    *eq = '\0';
    if (rd_kafka_conf_set(conf, sets[i], eq + 1, errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
      fprintf(stderr, "sf-kafka-limit: %s: %s\n", sets[i], errstr);
      rd_kafka_conf_destroy(conf);
      return NULL;
    }
    *eq = '=';
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!rk) {
    fprintf(stderr, "sf-kafka-limit: producer: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
  }
  return rk;
}

/* One producer's share: transactions k, k+K, k+2K ... */
typedef struct lane_job {
  rd_kafka_t *rk;
  const char *topic;
  encoded_t *msgs;
  uint64_t events, txn, k, n;
  long gap_us;
  phases_t ph;
  int rc;
} lane_job_t;

static void lane_main(void *arg) {
  lane_job_t *j = arg;
  for (uint64_t t = j->k; t * j->txn < j->events && !j->rc; t += j->n) {
    uint64_t i = t * j->txn;
    size_t len = (size_t)(j->events - i < j->txn ? j->events - i : j->txn);
    if (t != j->k && j->gap_us > 0) {
      struct timespec ts = {j->gap_us / 1000000, (j->gap_us % 1000000) * 1000};
      nanosleep(&ts, NULL);
    }
    j->rc = produce_txn(j->rk, j->topic, j->msgs + i, len, &j->ph);
  }
}

int main(int argc, char **argv) {
  const char *brokers = "127.0.0.1:9092", *topic = NULL, *catalog = NULL;
  const char *json_out = NULL, *txn_id = "sf-kafka-limit", *linger = "0";
  uint64_t events = 1000000, stores = 20, products = 1000, txn = 1000;
  uint64_t n_rk = 1;
  long gap_us = 2000;
  char *end = NULL;
  uint32_t salt = 1;
  char *sets[MAX_SETS];
  size_t n_sets = 0;
  static const struct option longopts[] = {
      {"set", required_argument, NULL, 'K'},
      {"brokers", required_argument, NULL, 'b'},
      {"topic", required_argument, NULL, 't'},
      {"catalog-topic", required_argument, NULL, 'c'},
      {"events", required_argument, NULL, 'n'},
      {"stores", required_argument, NULL, 's'},
      {"products", required_argument, NULL, 'p'},
      {"txn", required_argument, NULL, 'x'},
      {"salt", required_argument, NULL, 'S'},
      {"transactional-id", required_argument, NULL, 'i'},
      {"linger-ms", required_argument, NULL, 'l'},
      {"producers", required_argument, NULL, 'P'},
      {"gap-us", required_argument, NULL, 'g'},
      {"json", required_argument, NULL, 'j'},
      {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    int bad = 0;
    switch (ch) {
    case 'b': brokers = optarg; break;
    case 't': topic = optarg; break;
    case 'c': catalog = optarg; break;
    case 'n': bad = bench_parse_count(optarg, &events); break;
    case 's': bad = bench_parse_count(optarg, &stores); break;
    case 'p': bad = bench_parse_count(optarg, &products); break;
    case 'x': bad = bench_parse_count(optarg, &txn); break;
    case 'S': salt = (uint32_t)strtoul(optarg, NULL, 10); break;
    case 'i': txn_id = optarg; break;
    case 'l': linger = optarg; break;
    case 'P':
      bad = bench_parse_count(optarg, &n_rk) || n_rk < 1 || n_rk > MAX_PRODUCERS;
      break;
    case 'j': json_out = optarg; break;
    case 'g':
      gap_us = strtol(optarg, &end, 10);
      bad = *end != '\0' || gap_us < 0 || gap_us > 1000000;
      break;
    case 'K':
      if (n_sets == MAX_SETS)
        bad = 1;
      else
        sets[n_sets++] = optarg;
      break;
    default: bad = 1;
    }
    if (bad) {
      fprintf(stderr, "usage: see the comment at the top of kafka_limit.c\n");
      return 2;
    }
  }
  if (!topic) {
    fprintf(stderr, "sf-kafka-limit: --topic is required\n");
    return 2;
  }

  int status = 1;
  sf_event_codec_t *codec = NULL;
  bench_gen_t gen;
  encoded_t *msgs = NULL, *cat = NULL;
  uint64_t n_cat = catalog ? stores + products : 0;
  rd_kafka_t *rks[MAX_PRODUCERS] = {NULL};
  if (sf_event_codec_new(&codec)) {
    fprintf(stderr, "sf-kafka-limit: codec\n");
    return 1;
  }
  if (bench_gen_init(&gen, salt, stores, products)) {
    fprintf(stderr, "sf-kafka-limit: out of memory\n");
    goto fail_gen;
  }
  msgs = calloc((size_t)events, sizeof(*msgs));
  cat = calloc((size_t)n_cat + 1, sizeof(*cat));
  if (!msgs || !cat) {
    fprintf(stderr, "sf-kafka-limit: out of memory\n");
    goto fail_alloc;
  }
  uint64_t t0 = bench_now_ns();
  size_t bytes = 0;
  for (uint64_t i = 0; i < n_cat; i++) {
    sf_event_t e;
    char name[64], sku[64];
    bench_gen_catalog(&gen, i, &e, name, sku);
    if (encode_one(codec, &e, &cat[i])) {
      fprintf(stderr, "sf-kafka-limit: encoding catalog event %" PRIu64 "\n", i);
      goto fail_alloc;
    }
  }
  for (uint64_t i = 0; i < events; i++) {
    sf_event_t e;
    bench_gen_next(&gen, &e);
    int rc = encode_one(codec, &e, &msgs[i]);
    if (rc) {
      fprintf(stderr, "sf-kafka-limit: encoding event %" PRIu64 ": %s\n", i,
              sf_err_name(rc));
      goto fail_alloc;
    }
    bytes += msgs[i].len;
  }
  double encode_s = (double)(bench_now_ns() - t0) / 1e9;
  fprintf(stderr, "sf-kafka-limit: encoded %" PRIu64 " events (%.1f MB, "
                  "%.0f B mean) in %.2f s (%.0f events/s encode)\n",
          events, (double)bytes / 1e6, (double)bytes / (double)events,
          encode_s, (double)events / encode_s);

  for (uint64_t k = 0; k < n_rk; k++) {
    char id[256];
    if (k == 0)
      snprintf(id, sizeof(id), "%s", txn_id);
    else
      snprintf(id, sizeof(id), "%s-%" PRIu64, txn_id, k);
    rks[k] = make_producer(brokers, id, linger, sets, n_sets);
    if (!rks[k] ||
        txn_err(rd_kafka_init_transactions(rks[k], 60000), "init_transactions"))
      goto fail_producer;
  }
  if (n_cat && produce_txn(rks[0], catalog, cat, (size_t)n_cat, NULL))
    goto fail_producer;
  /* one warm-up transaction would write extra events; instead the first
   * transaction is part of the measure (it is 1 of events/txn) */
  uint64_t t1 = bench_now_ns();
  uint64_t ntx = (events + txn - 1) / txn;
  phases_t ph = {0, 0, 0};
  lane_job_t jobs[MAX_PRODUCERS];
  uv_thread_t threads[MAX_PRODUCERS];
  for (uint64_t k = 0; k < n_rk; k++) {
    jobs[k] = (lane_job_t){rks[k], topic, msgs, events, txn, k, n_rk, gap_us, {0, 0, 0}, 0};
    if (uv_thread_create(&threads[k], lane_main, &jobs[k])) {
      fprintf(stderr, "sf-kafka-limit: cannot start a thread\n");
      for (uint64_t j = 0; j < k; j++)
        uv_thread_join(&threads[j]);
      goto fail_producer;
    }
  }
  int failed = 0;
  for (uint64_t k = 0; k < n_rk; k++) {
    uv_thread_join(&threads[k]);
    failed |= jobs[k].rc;
    ph.produce += jobs[k].ph.produce;
    ph.flush += jobs[k].ph.flush;
    ph.commit += jobs[k].ph.commit;
  }
  if (failed)
    goto fail_producer;
  double secs = (double)(bench_now_ns() - t1) / 1e9;
  double eps = (double)events / secs;
  printf("kafka limit: %" PRIu64 " events in %" PRIu64 " transactions of %" PRIu64 " on %" PRIu64 " producer(s) in parallel in %.2f s: %.0f "
         "events/s, %.1f MB/s, %.0f commits/s\n",
         events, ntx, txn, n_rk, secs, eps, (double)bytes / 1e6 / secs,
         (double)ntx / secs);
  printf("  per transaction: produce %.2f ms, flush %.2f ms, commit %.2f ms "
         "(%ld us between a commit and the next)\n",
         (double)ph.produce / 1e6 / (double)ntx,
         (double)ph.flush / 1e6 / (double)ntx,
         (double)ph.commit / 1e6 / (double)ntx, gap_us);
  if (json_out) {
    json_t *doc = json_pack(
        "{s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "events",
        (json_int_t)events, "txn", (json_int_t)txn, "producers",
        (json_int_t)n_rk, "seconds", secs, "events_per_s", eps,
        "mb_per_s", (double)bytes / 1e6 / secs, "encode_events_per_s",
        (double)events / encode_s, "produce_ms",
        (double)ph.produce / 1e6 / (double)ntx, "flush_ms",
        (double)ph.flush / 1e6 / (double)ntx, "commit_ms",
        (double)ph.commit / 1e6 / (double)ntx);
    if (!doc || json_dump_file(doc, json_out, JSON_INDENT(1)))
      fprintf(stderr, "sf-kafka-limit: cannot write %s\n", json_out);
    json_decref(doc);
  }
  status = 0;

fail_producer:
  for (uint64_t k = 0; k < n_rk; k++) {
    if (!rks[k])
      continue;
    rd_kafka_flush(rks[k], 10000);
    rd_kafka_destroy(rks[k]);
  }
fail_alloc:
  for (uint64_t i = 0; msgs && i < events; i++)
    free(msgs[i].value);
  for (uint64_t i = 0; cat && i < n_cat; i++)
    free(cat[i].value);
  free(msgs);
  free(cat);
  bench_gen_free(&gen);
fail_gen:
  sf_event_codec_destroy(codec);
  return status;
}
