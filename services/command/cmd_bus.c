/* cmd_bus: the bus intake's consumer thread and its hand-off to the loop.
 * See cmd_bus.h. The thread drives librdkafka directly: it consumes
 * commands, publishes results with an idempotent producer, and commits a
 * partition's offset only past commands whose results the broker has
 * acknowledged (flush before commit). */
#include "cmd_bus.h"

#include <librdkafka/rdkafka.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_stock.h"
#include "sf/command.h"
#include "sf/err.h"
#include "sf/kafka.h"

#define MAX_PARTITIONS 1024

typedef struct item {
  struct item *next; /* inbox, outbox or the loop's retry list */
  struct cmd_bus *bus;
  struct item *pnext; /* the partition's pending list, in offset order */
  int32_t partition;
  int64_t offset;
  char key[128];
  int decode_err;
  sf_command_t cmd;
  char hash[2 * crypto_hash_sha256_BYTES + 1];
  char bus_key[64];
  bool done;  /* its result is published (thread only) */
  int status; /* the answer (set on the loop, then handed over) */
  char *body;
} item_t;

typedef struct plist {
  item_t *head, *tail;
} plist_t;

struct cmd_bus {
  uv_loop_t *loop;
  cmd_pipeline_t *pipeline;
  sf_log_t *log;
  cmd_bus_opts_t opts;
  uint64_t fp;
  uv_thread_t thread;
  bool thread_started;
  atomic_bool stop, stop_intake;
  bool stopping; /* loop side: hand nothing more to the pipeline */
  item_t *retry; /* loop side: answered 503 or "in flight": run again */
  uv_timer_t retry_timer;
  uv_mutex_t mu;
  uv_async_t async;
  /* guarded by mu */
  item_t *in_head, *in_tail;
  item_t *out_head, *out_tail;
  size_t inflight;
  cmd_bus_stats_t stats;
  /* thread only */
  rd_kafka_t *consumer, *producer;
  plist_t parts[MAX_PARTITIONS];
  bool commit_blocked;
};

static void push(item_t **head, item_t **tail, item_t *it) {
  it->next = NULL;
  if (*tail)
    (*tail)->next = it;
  else
    *head = it;
  *tail = it;
}

/* ---- loop side ---- */

static void run_command(cmd_bus_t *b, item_t *it);

static void retry_cb(uv_timer_t *t) {
  cmd_bus_t *b = t->data;
  item_t *it = b->retry;
  b->retry = NULL;
  /* oldest first: the list is built newest first */
  item_t *rev = NULL;
  while (it) {
    item_t *next = it->next;
    it->next = rev;
    rev = it;
    it = next;
  }
  while (rev) {
    item_t *next = rev->next;
    if (b->stopping) {
      uv_mutex_lock(&b->mu);
      b->inflight--;
      uv_mutex_unlock(&b->mu);
    } else {
      run_command(b, rev);
    }
    rev = next;
  }
}

static void answer_cb(void *ud, int status, const char *body) {
  item_t *it = ud;
  cmd_bus_t *b = it->bus;
  /* Nothing was written (the service is rebuilding its state, or the first
   * delivery of this command is still committing): try again shortly
   * rather than publish a result that would end the command's delivery. */
  if (!b->stopping &&
      (status == 503 ||
       (status == 409 && body && strstr(body, "idempotency_key_in_flight")))) {
    it->next = b->retry;
    b->retry = it;
    if (!uv_is_active((uv_handle_t *)&b->retry_timer))
      uv_timer_start(&b->retry_timer, retry_cb, 200, 0);
    return;
  }
  it->status = status;
  it->body = strdup(body ? body : "{}");
  uv_mutex_lock(&b->mu);
  push(&b->out_head, &b->out_tail, it);
  b->inflight--;
  uv_mutex_unlock(&b->mu);
}

static void run_command(cmd_bus_t *b, item_t *it) {
  it->bus = b;
  if (it->decode_err) {
    char body[300];
    snprintf(body, sizeof(body),
             "{\"type\":\"https://stockflow.dev/problems/malformed_command\","
             "\"title\":\"Bad Request\",\"status\":400,\"detail\":\"the "
             "message is not a StockCommand (schemas/command.avsc): %s\","
             "\"code\":\"malformed_command\"}",
             sf_strerror(it->decode_err));
    answer_cb(it, 400, body);
    return;
  }
  const sf_command_t *c = &it->cmd;
  snprintf(it->bus_key, sizeof(it->bus_key), "bus:%s", c->command_id);
  cmd_req_t *req = cmd_pipeline_begin_bus(b->pipeline, it->bus_key, it->hash,
                                          c->actor[0] ? c->actor : NULL, answer_cb,
                                          it);
  if (!req)
    return; /* answered at once */
  cmd_stock_movement(b->pipeline, req, c->store_id, c->product_id, c->movement,
                     c->quantity, c->has_reason ? c->reason : NULL,
                     c->has_reference ? c->reference : NULL, -1);
}

static void async_cb(uv_async_t *h) {
  cmd_bus_t *b = h->data;
  uv_mutex_lock(&b->mu);
  item_t *it = b->in_head;
  b->in_head = b->in_tail = NULL;
  uv_mutex_unlock(&b->mu);
  while (it) {
    item_t *next = it->next;
    if (b->stopping) {
      /* not handed over: its offset stays uncommitted, it comes again */
      uv_mutex_lock(&b->mu);
      b->inflight--;
      uv_mutex_unlock(&b->mu);
    } else {
      run_command(b, it);
    }
    it = next;
  }
}

/* ---- thread side ---- */

static rd_kafka_t *make_client(cmd_bus_t *b, rd_kafka_type_t type) {
  char errstr[512];
  const char *consumer[][2] = {
      {"bootstrap.servers", b->opts.brokers},
      {"group.id", b->opts.group_id},
      {"client.id", "stockflow-command-intake"},
      {"isolation.level", "read_committed"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
      {"session.timeout.ms", "6000"},
      {"heartbeat.interval.ms", "2000"},
  };
  const char *producer[][2] = {
      {"bootstrap.servers", b->opts.brokers},
      {"client.id", "stockflow-command-results"},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"partitioner", "murmur2_random"},
      {"linger.ms", "1"},
  };
  const char *(*settings)[2] = type == RD_KAFKA_CONSUMER ? consumer : producer;
  size_t n = type == RD_KAFKA_CONSUMER ? sizeof(consumer) / sizeof(consumer[0])
                                       : sizeof(producer) / sizeof(producer[0]);
  rd_kafka_conf_t *conf = sf_kafka_conf_new(settings, n, &b->log, errstr,
                                            sizeof(errstr));
  if (!conf) {
    SF_ERROR(b->log, "bus", "config: %s", errstr);
    return NULL;
  }
  rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
  if (!rk) {
    SF_ERROR(b->log, "bus", "creating a Kafka client: %s", errstr);
    rd_kafka_conf_destroy(conf);
  }
  return rk;
}

static void take_message(cmd_bus_t *b, rd_kafka_message_t *m) {
  if (m->partition < 0 || m->partition >= MAX_PARTITIONS) {
    SF_ERROR(b->log, "bus", "partition %d of %s is beyond %d: ignored",
             (int)m->partition, b->opts.topic_commands, MAX_PARTITIONS);
    return;
  }
  item_t *it = calloc(1, sizeof(*it));
  if (!it) {
    SF_ERROR(b->log, "bus", "out of memory: command at %s/%d@%lld left for "
                            "redelivery",
             b->opts.topic_commands, (int)m->partition,
             (long long)m->offset);
    return;
  }
  it->partition = m->partition;
  it->offset = m->offset;
  size_t klen = m->key_len < sizeof(it->key) - 1 ? m->key_len
                                                 : sizeof(it->key) - 1;
  if (m->key)
    memcpy(it->key, m->key, klen);
  it->decode_err = sf_command_decode(m->payload, m->len, b->fp, &it->cmd);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, m->payload, m->len);
  sodium_bin2hex(it->hash, sizeof(it->hash), digest, sizeof(digest));
  if (it->decode_err)
    SF_WARN(b->log, "bus", "malformed command at %s/%d@%lld: %s",
            b->opts.topic_commands, (int)m->partition, (long long)m->offset,
            sf_err_name(it->decode_err));
  plist_t *pl = &b->parts[m->partition];
  it->pnext = NULL;
  if (pl->tail)
    pl->tail->pnext = it;
  else
    pl->head = it;
  pl->tail = it;
  uv_mutex_lock(&b->mu);
  push(&b->in_head, &b->in_tail, it);
  b->inflight++;
  b->stats.received++;
  if (it->decode_err)
    b->stats.malformed++;
  uv_mutex_unlock(&b->mu);
  uv_async_send(&b->async);
}

/* Publishes the answered commands' results and returns how many. */
static size_t publish_results(cmd_bus_t *b) {
  uv_mutex_lock(&b->mu);
  item_t *it = b->out_head;
  b->out_head = b->out_tail = NULL;
  uv_mutex_unlock(&b->mu);
  size_t n = 0;
  item_t *done_list = NULL;
  while (it) {
    item_t *next = it->next;
    json_t *body = json_loads(it->body ? it->body : "{}", 0, NULL);
    json_t *res = json_pack(
        "{s:o, s:i, s:o, s:o, s:{s:s, s:i, s:I}}", "command_id",
        it->decode_err ? json_null() : json_string(it->cmd.command_id),
        "status", it->status, "body", body ? body : json_object(),
        "correlation_id",
        !it->decode_err && it->cmd.has_correlation_id
            ? json_string(it->cmd.correlation_id)
            : json_null(),
        "source", "topic", b->opts.topic_commands, "partition",
        (int)it->partition, "offset", (json_int_t)it->offset);
    char *text = res ? json_dumps(res, JSON_COMPACT) : NULL;
    json_decref(res);
    const char *key = it->key[0]       ? it->key
                      : it->decode_err ? ""
                                       : it->cmd.store_id;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (text) {
      rd_kafka_headers_t *h = rd_kafka_headers_new(1);
      rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
      for (;;) {
        err = rd_kafka_producev(
            b->producer, RD_KAFKA_V_TOPIC(b->opts.topic_results),
            RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(text, strlen(text)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
            RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
          break;
        rd_kafka_poll(b->producer, 10);
      }
      if (err)
        rd_kafka_headers_destroy(h);
    }
    if (!text || err) {
      SF_ERROR(b->log, "bus", "could not publish the result of %s/%d@%lld: "
                              "%s; offsets stop here until a restart redelivers it",
               b->opts.topic_commands, (int)it->partition,
               (long long)it->offset,
               text ? rd_kafka_err2str(err) : "out of memory");
      b->commit_blocked = true;
    }
    free(text);
    free(it->body);
    it->body = NULL;
    it->next = done_list;
    done_list = it;
    n++;
    it = next;
  }
  if (n && sf_kafka_await_delivery(b->producer, 10000)) {
    SF_ERROR(b->log, "bus", "results not acknowledged by the broker within "
                            "10 s; offsets stop here until a restart redelivers them");
    b->commit_blocked = true;
  }
  for (item_t *d = done_list; d; d = d->next)
    d->done = true;
  uv_mutex_lock(&b->mu);
  b->stats.results += n;
  uv_mutex_unlock(&b->mu);
  return n;
}

/* Commits, per partition, past the commands whose results are out. */
static void commit_offsets(cmd_bus_t *b) {
  if (b->commit_blocked)
    return;
  rd_kafka_topic_partition_list_t *l = NULL;
  for (int p = 0; p < MAX_PARTITIONS; p++) {
    plist_t *pl = &b->parts[p];
    int64_t next = -1;
    while (pl->head && pl->head->done) {
      item_t *it = pl->head;
      pl->head = it->pnext;
      if (!pl->head)
        pl->tail = NULL;
      next = it->offset + 1;
      free(it);
    }
    if (next < 0)
      continue;
    if (!l)
      l = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_add(l, b->opts.topic_commands, p)->offset =
        next;
  }
  if (!l)
    return;
  rd_kafka_resp_err_t err = rd_kafka_commit(b->consumer, l, 0);
  if (err)
    SF_WARN(b->log, "bus", "committing intake offsets: %s (the commands "
                           "will be delivered again and answered from their first answer)",
            rd_kafka_err2str(err));
  rd_kafka_topic_partition_list_destroy(l);
}

static void thread_main(void *arg) {
  cmd_bus_t *b = arg;
  while (!atomic_load(&b->stop)) {
    if (publish_results(b))
      commit_offsets(b);
    rd_kafka_poll(b->producer, 0);
    uv_mutex_lock(&b->mu);
    bool full = b->inflight >= b->opts.max_inflight;
    uv_mutex_unlock(&b->mu);
    if (atomic_load(&b->stop_intake) || full) {
      uv_sleep(10);
      continue;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(b->consumer, 20);
    if (!m)
      continue;
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        SF_WARN(b->log, "bus", "consume %s: %s", b->opts.topic_commands,
                rd_kafka_message_errstr(m));
    } else {
      take_message(b, m);
    }
    rd_kafka_message_destroy(m);
  }
  /* the last answers (the writer has answered everything in flight) */
  if (publish_results(b))
    commit_offsets(b);
  rd_kafka_consumer_close(b->consumer);
}

int cmd_bus_new(cmd_bus_t **out, uv_loop_t *loop, cmd_pipeline_t *pipeline,
                const cmd_bus_opts_t *opts, sf_log_t *log) {
  cmd_bus_t *b = calloc(1, sizeof(*b));
  if (!b)
    return SF_ENOMEM;
  b->loop = loop;
  b->pipeline = pipeline;
  b->log = log;
  b->opts = *opts;
  if (b->opts.max_inflight == 0)
    b->opts.max_inflight = 1000;
  int rc = sf_command_fingerprint(&b->fp);
  if (rc)
    goto fail_fp;
  rc = SF_EINTERNAL;
  if (uv_mutex_init(&b->mu))
    goto fail_fp;
  if (uv_async_init(loop, &b->async, async_cb))
    goto fail_async;
  b->async.data = b;
  uv_timer_init(loop, &b->retry_timer);
  b->retry_timer.data = b;
  rc = SF_EKAFKA;
  b->consumer = make_client(b, RD_KAFKA_CONSUMER);
  if (!b->consumer)
    goto fail_consumer;
  rd_kafka_poll_set_consumer(b->consumer);
  b->producer = make_client(b, RD_KAFKA_PRODUCER);
  if (!b->producer)
    goto fail_producer;
  rd_kafka_topic_partition_list_t *topics =
      rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, b->opts.topic_commands,
                                    RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(b->consumer, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (err) {
    SF_ERROR(log, "bus", "subscribing to %s: %s", b->opts.topic_commands,
             rd_kafka_err2str(err));
    goto fail_subscribe;
  }
  rc = SF_EINTERNAL;
  if (uv_thread_create(&b->thread, thread_main, b))
    goto fail_subscribe;
  b->thread_started = true;
  SF_INFO(log, "bus", "taking commands from %s (group %s), results to %s",
          b->opts.topic_commands, b->opts.group_id, b->opts.topic_results);
  *out = b;
  return 0;

fail_subscribe:
  rd_kafka_destroy(b->producer);
fail_producer:
  rd_kafka_consumer_close(b->consumer);
  rd_kafka_destroy(b->consumer);
fail_consumer:
  uv_close((uv_handle_t *)&b->retry_timer, NULL);
  uv_close((uv_handle_t *)&b->async, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
fail_async:
  uv_mutex_destroy(&b->mu);
fail_fp:
  free(b);
  return rc;
}

void cmd_bus_stop_intake(cmd_bus_t *b) {
  if (!b)
    return;
  b->stopping = true;
  atomic_store(&b->stop_intake, true);
}

void cmd_bus_stats(cmd_bus_t *b, cmd_bus_stats_t *out) {
  uv_mutex_lock(&b->mu);
  *out = b->stats;
  uv_mutex_unlock(&b->mu);
}

static void async_closed_cb(uv_handle_t *h) { free(h->data); }

void cmd_bus_destroy(cmd_bus_t *b) {
  if (!b)
    return;
  b->stopping = true;
  atomic_store(&b->stop_intake, true);
  atomic_store(&b->stop, true);
  if (b->thread_started)
    uv_thread_join(&b->thread);
  rd_kafka_flush(b->producer, 5000);
  rd_kafka_destroy(b->producer);
  rd_kafka_destroy(b->consumer);
  /* items never answered or never handed over: redelivered next time */
  for (int p = 0; p < MAX_PARTITIONS; p++) {
    item_t *it = b->parts[p].head;
    while (it) {
      item_t *next = it->pnext;
      free(it->body);
      free(it);
      it = next;
    }
  }
  uv_mutex_destroy(&b->mu);
  /* libuv runs close callbacks newest first: the one that frees b is
   * closed first so that it runs last */
  uv_close((uv_handle_t *)&b->async, async_closed_cb);
  uv_close((uv_handle_t *)&b->retry_timer, NULL);
}
