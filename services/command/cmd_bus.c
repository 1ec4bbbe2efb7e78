/* cmd_bus: the bus intake's consumer thread and its hand-off to the loop.
 * See cmd_bus.h. The thread consumes commands (an sf_kafka consumer in the
 * intake group, starting from the group's committed offsets), publishes
 * results with an idempotent sf_kafka producer, and commits a partition's
 * offset only past commands whose results the broker has acknowledged
 * (await before commit). */
#include "cmd_bus.h"

#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_instances.h"
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
  bool done;      /* its result is published (thread only) */
  int status;     /* the answer (set on the loop, then handed over) */
  bool skip;      /* instances: another instance answers it; no result */
  bool parked;    /* loop side: waiting for the tail (cmd_tail_sync) */
  bool caught_up; /* loop side: parked once already, never twice */
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
  /* loop side: commands parked for the tail, which still point here; the
   * bus is freed once the last has come back after destroy */
  size_t parked;
  bool destroyed, async_closed;
  item_t *retry; /* loop side: answered 503 or "in flight": run again */
  uv_timer_t retry_timer;
  uv_mutex_t mu;
  uv_async_t async;
  /* guarded by mu */
  item_t *in_head, *in_tail;
  item_t *out_head, *out_tail;
  size_t inflight;
  cmd_bus_stats_t stats;
  /* thread only (the consumer is closed by the thread as it ends) */
  sf_kafka_consumer_t *consumer;
  sf_kafka_producer_t *producer;
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

/* A command dropped on the loop without a result: its offset stays
 * uncommitted, so it is delivered again at the next start. */
static void leave_for_redelivery(cmd_bus_t *b) {
  uv_mutex_lock(&b->mu);
  b->inflight--;
  uv_mutex_unlock(&b->mu);
}

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
    if (b->stopping)
      leave_for_redelivery(b);
    else
      run_command(b, rev);
    rev = next;
  }
}

static void run_later(cmd_bus_t *b, item_t *it) {
  it->next = b->retry;
  b->retry = it;
  if (!uv_is_active((uv_handle_t *)&b->retry_timer))
    uv_timer_start(&b->retry_timer, retry_cb, 200, 0);
}

/* Hands an answered (or skipped) command to the thread. */
static void hand_back(cmd_bus_t *b, item_t *it) {
  uv_mutex_lock(&b->mu);
  push(&b->out_head, &b->out_tail, it);
  b->inflight--;
  if (it->skip)
    b->stats.skipped++;
  uv_mutex_unlock(&b->mu);
}

static void answer_cb(void *ud, int status, const char *body) {
  item_t *it = ud;
  cmd_bus_t *b = it->bus;
  /* Nothing was written (the service is rebuilding its state or shutting
   * down, or the first delivery of this command is still committing): try
   * again shortly rather than publish a result that would end the
   * command's delivery; once stopping, leave it to the next start. */
  if (status == 503 ||
      (status == 409 && body && strstr(body, "idempotency_key_in_flight"))) {
    if (b->stopping) {
      leave_for_redelivery(b);
      return;
    }
    run_later(b, it);
    return;
  }
  it->status = status;
  it->body = strdup(body ? body : "{}");
  hand_back(b, it);
}

static void maybe_free(cmd_bus_t *b) {
  if (b->async_closed && b->parked == 0)
    free(b);
}

/* instances: the command named a store or product this instance had not
 * read yet; it waits for the tail (cmd_pipeline_catch_up) */
static void parked_cb(void *ud) {
  item_t *it = ud;
  it->parked = true;
  it->bus->parked++;
}

static void again_cb(void *ud) {
  item_t *it = ud;
  cmd_bus_t *b = it->bus;
  it->parked = false;
  it->caught_up = true;
  b->parked--;
  if (b->destroyed) { /* left out of destroy's frees: ours now */
    free(it);
    maybe_free(b);
  } else if (b->stopping) { /* its offset stays uncommitted: it comes again */
    uv_mutex_lock(&b->mu);
    b->inflight--;
    uv_mutex_unlock(&b->mu);
  } else {
    run_command(b, it);
  }
}

static const cmd_catch_up_cbs_t catch_up_cbs = {parked_cb, again_cb};

static void run_command(cmd_bus_t *b, item_t *it) {
  it->bus = b;
  /* instances: every instance reads every command (a group of its own);
   * only the owner of the store's stock partition answers it */
  const char *store = it->decode_err ? it->key : it->cmd.store_id;
  switch (cmd_instances_intake(cmd_pipeline_instances(b->pipeline), store,
                               strlen(store),
                               cmd_pipeline_stock_partitions(b->pipeline))) {
  case CMD_INTAKE_SKIP:
    it->skip = true;
    hand_back(b, it);
    return;
  case CMD_INTAKE_WAIT: /* no state yet: the partition count comes with it */
    run_later(b, it);
    return;
  case CMD_INTAKE_ANSWER:
    break;
  }
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
    return;           /* answered at once */
  if (!it->caught_up) /* instances: a 404 waits for the tail once */
    cmd_req_allow_catch_up(req, &catch_up_cbs);
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
    if (b->stopping)
      leave_for_redelivery(b); /* not handed over */
    else
      run_command(b, it);
    it = next;
  }
}

/* ---- thread side ---- */

/* Starts from the group's committed offsets (earliest when none). */
static void assign_cb(void *ud, sf_kafka_tp_t *tps, size_t n) {
  (void)ud;
  for (size_t i = 0; i < n; i++)
    tps[i].offset = SF_KAFKA_OFFSET_STORED;
}

static int make_clients(cmd_bus_t *b) {
  char errstr[512];
  /* the consumer is read_committed, never auto-commits nor auto-stores,
   * starts at the earliest offset, session 6 s, heartbeat 2 s */
  sf_kafka_consumer_opts_t co = {.brokers = b->opts.brokers,
                                 .group_id = b->opts.group_id,
                                 .client_id = "stockflow-command-intake",
                                 .on_assign = assign_cb,
                                 .cb_ud = b};
  int rc = sf_kafka_consumer_new(&b->consumer, &co, b->log);
  if (rc) {
    SF_ERROR(b->log, "bus", "creating a Kafka client: %s", sf_strerror(rc));
    return rc;
  }
  /* the producer adds enable.idempotence=true and acks=all */
  const char *producer[][2] = {
      {"bootstrap.servers", b->opts.brokers},
      {"client.id", "stockflow-command-results"},
      {"partitioner", "murmur2_random"},
      {"linger.ms", "1"},
  };
  rc = sf_kafka_producer_new(&b->producer, producer,
                             sizeof(producer) / sizeof(producer[0]), NULL,
                             b->log, errstr, sizeof(errstr));
  if (rc) {
    SF_ERROR(b->log, "bus", "creating a Kafka client: %s", errstr);
    sf_kafka_consumer_destroy(b->consumer);
    b->consumer = NULL;
  }
  return rc;
}

static void take_message(cmd_bus_t *b, const sf_kafka_msg_t *m) {
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
  it->decode_err = sf_command_decode(m->value, m->value_len, b->fp, &it->cmd);
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, m->value, m->value_len);
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

/* On the thread: no offset is committed from now on (a result is missing);
 * the metrics show it until a restart redelivers those commands. */
static void block_commits(cmd_bus_t *b) {
  b->commit_blocked = true;
  uv_mutex_lock(&b->mu);
  b->stats.commits_blocked = 1;
  uv_mutex_unlock(&b->mu);
}

/* A result's delivery report (on the thread, inside _send, _serve or
 * _await; the item lives until its report: items are freed only after an
 * await that served every report). A result the broker did not take is
 * not acknowledged: the command's offset must not be committed past it. */
static void result_delivered_cb(void *ud, int err, int32_t partition,
                                int64_t offset, const char *errstr) {
  item_t *it = ud;
  cmd_bus_t *b = it->bus;
  (void)partition;
  (void)offset;
  if (!err)
    return;
  SF_ERROR(b->log, "bus", "the result of %s/%d@%lld was not delivered: %s; "
                          "offsets stop here until a restart redelivers it",
           b->opts.topic_commands, (int)it->partition, (long long)it->offset,
           errstr ? errstr : sf_strerror(err));
  block_commits(b);
}

/* Publishes the answered commands' results and returns how many commands
 * are done (skipped ones included: their offsets may move too). */
static size_t publish_results(cmd_bus_t *b) {
  uv_mutex_lock(&b->mu);
  item_t *it = b->out_head;
  b->out_head = b->out_tail = NULL;
  uv_mutex_unlock(&b->mu);
  size_t n = 0, sent = 0;
  item_t *done_list = NULL;
  while (it) {
    item_t *next = it->next;
    if (it->skip) { /* another instance answers it: only the offset moves */
      it->next = done_list;
      done_list = it;
      n++;
      it = next;
      continue;
    }
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
    int err = 0;
    char why[256] = "out of memory";
    if (text) {
      const sf_kafka_header_t h[] = {
          {"content-type", "application/json", 16}};
      /* waits while the local queue is full */
      err = sf_kafka_producer_send(b->producer, b->opts.topic_results, -1, key,
                                   strlen(key), text, strlen(text), h, 1,
                                   result_delivered_cb, it, why, sizeof(why));
    }
    if (!text || err) {
      SF_ERROR(b->log, "bus", "could not publish the result of %s/%d@%lld: "
                              "%s; offsets stop here until a restart redelivers it",
               b->opts.topic_commands, (int)it->partition,
               (long long)it->offset, why);
      block_commits(b);
    }
    free(text);
    free(it->body);
    it->body = NULL;
    it->next = done_list;
    done_list = it;
    n++;
    sent++;
    it = next;
  }
  if (sent && sf_kafka_producer_await(b->producer, 10000)) {
    SF_ERROR(b->log, "bus", "results not acknowledged by the broker within "
                            "10 s; offsets stop here until a restart redelivers them");
    block_commits(b);
  }
  for (item_t *d = done_list; d; d = d->next)
    d->done = true;
  uv_mutex_lock(&b->mu);
  b->stats.results += sent;
  uv_mutex_unlock(&b->mu);
  return n;
}

/* Commits, per partition, past the commands whose results are out. */
static void commit_offsets(cmd_bus_t *b) {
  if (b->commit_blocked)
    return;
  sf_kafka_tp_t tps[MAX_PARTITIONS];
  size_t n = 0;
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
    if (next >= 0)
      tps[n++] = (sf_kafka_tp_t){b->opts.topic_commands, p, next};
  }
  if (n && sf_kafka_consumer_commit(b->consumer, tps, n))
    SF_WARN(b->log, "bus", "committing intake offsets failed (the commands "
                           "will be delivered again and answered from their first answer)");
}

static void thread_main(void *arg) {
  cmd_bus_t *b = arg;
  while (!atomic_load(&b->stop)) {
    if (publish_results(b))
      commit_offsets(b);
    sf_kafka_producer_serve(b->producer);
    uv_mutex_lock(&b->mu);
    bool full = b->inflight >= b->opts.max_inflight;
    uv_mutex_unlock(&b->mu);
    if (atomic_load(&b->stop_intake) || full) {
      uv_sleep(10);
      continue;
    }
    /* errors are logged by the consumer; a fatal one is not retried
     * faster than the poll would wait */
    sf_kafka_msg_t m;
    int got = sf_kafka_consumer_poll(b->consumer, &m, 1, 20);
    if (got < 0)
      uv_sleep(20);
    if (got <= 0)
      continue;
    take_message(b, &m);
    sf_kafka_msg_destroy(&m);
  }
  /* the last answers (the writer has answered everything in flight) */
  if (publish_results(b))
    commit_offsets(b);
  /* leaves the group */
  sf_kafka_consumer_destroy(b->consumer);
  b->consumer = NULL;
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
  rc = make_clients(b);
  if (rc) {
    rc = SF_EKAFKA;
    goto fail_clients;
  }
  const char *topics[] = {b->opts.topic_commands};
  rc = sf_kafka_consumer_subscribe(b->consumer, topics, 1);
  if (rc) {
    SF_ERROR(log, "bus", "subscribing to %s: %s", b->opts.topic_commands,
             sf_strerror(rc));
    rc = SF_EKAFKA;
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
  sf_kafka_producer_destroy(b->producer);
  sf_kafka_consumer_destroy(b->consumer);
fail_clients:
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

static void async_closed_cb(uv_handle_t *h) {
  cmd_bus_t *b = h->data;
  b->async_closed = true;
  maybe_free(b);
}

void cmd_bus_destroy(cmd_bus_t *b) {
  if (!b)
    return;
  b->stopping = true;
  atomic_store(&b->stop_intake, true);
  atomic_store(&b->stop, true);
  if (b->thread_started)
    uv_thread_join(&b->thread);
  if (sf_kafka_producer_await(b->producer, 5000))
    SF_WARN(b->log, "bus", "%zu result(s) still queued at exit",
            sf_kafka_producer_inflight(b->producer));
  sf_kafka_producer_destroy(b->producer);
  sf_kafka_consumer_destroy(b->consumer); /* NULL once the thread ran */
  /* items never answered or never handed over: redelivered next time;
   * parked ones are freed when the tail hands them back (again_cb) */
  for (int p = 0; p < MAX_PARTITIONS; p++) {
    item_t *it = b->parts[p].head;
    while (it) {
      item_t *next = it->pnext;
      if (!it->parked) {
        free(it->body);
        free(it);
      }
      it = next;
    }
  }
  b->destroyed = true;
  uv_mutex_destroy(&b->mu);
  /* libuv runs close callbacks newest first: the one that frees b is
   * closed first so that it runs last */
  uv_close((uv_handle_t *)&b->async, async_closed_cb);
  uv_close((uv_handle_t *)&b->retry_timer, NULL);
}
