/* cmd_tail: folds the partitions other instances write into the state.
 * See cmd_tail.h. */
#include "cmd_tail.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/registry.h"
#include "sf/event.h"
#include "sf/kafka.h"

/* Messages folded per timer tick at most, so that a burst of foreign
 * events does not stall the loop: the rest waits for the next tick. */
#define TAIL_PER_TICK 2000
#define TAIL_POLL_BATCH 64

typedef struct tail_part {
  bool catalog;
  int32_t partition;
  int64_t reached; /* everything below this offset is folded */
} tail_part_t;

typedef struct sync_req {
  struct sync_req *next;
  cmd_tail_t *t;
  cmd_tail_sync_cb cb;
  void *ud;
  uv_work_t work;
  uint64_t parts_gen;
  uint64_t deadline_ms;
  size_t n;
  tail_part_t *parts; /* a copy of the tail's list, reached = target */
  int rc;
} sync_req_t;

struct cmd_tail {
  sf_log_t *log; /* first member: the librdkafka opaque convention */
  uv_loop_t *loop;
  cmd_tail_opts_t opts;
  sf_kafka_consumer_t *consumer;
  sf_event_codec_t *codec;
  sf_registry_t *reg; /* NULL without a registry */
  uv_timer_t timer;
  cmd_state_t *state; /* borrowed; NULL: fold nothing */
  tail_part_t *parts;
  size_t n_parts;
  uint64_t parts_gen; /* changes with every reset */
  sync_req_t *syncs;  /* waiting for the tail (queries done) */
  unsigned works;     /* queries on the thread pool */
  bool closing, timer_closed;
  uint64_t folded, n_syncs;
};

static void maybe_free(cmd_tail_t *t) {
  if (!t->closing || !t->timer_closed || t->works)
    return;
  sf_kafka_consumer_destroy(t->consumer);
  sf_event_codec_destroy(t->codec);
  sf_registry_destroy(t->reg);
  free(t->parts);
  free(t);
}

static void sync_finish(sync_req_t *s, bool caught_up) {
  s->cb(s->ud, caught_up);
  free(s->parts);
  free(s);
}

/* Fires every waiting sync with caught_up = what the test says. */
static void check_syncs(cmd_tail_t *t, bool force_fail) {
  uint64_t now = uv_now(t->loop);
  sync_req_t **pp = &t->syncs;
  while (*pp) {
    sync_req_t *s = *pp;
    bool done = true;
    for (size_t i = 0; i < s->n && done && !force_fail; i++)
      done = t->parts[i].reached >= s->parts[i].reached;
    if (!done && !force_fail && now < s->deadline_ms) {
      pp = &s->next;
      continue;
    }
    *pp = s->next;
    sync_finish(s, done && !force_fail);
  }
}

static tail_part_t *find_part(cmd_tail_t *t, const char *topic,
                              int32_t partition) {
  bool catalog = strcmp(topic, t->opts.topic_catalog) == 0;
  for (size_t i = 0; i < t->n_parts; i++)
    if (t->parts[i].catalog == catalog && t->parts[i].partition == partition)
      return &t->parts[i];
  return NULL;
}

static void reach(cmd_tail_t *t, tail_part_t *p, int64_t offset) {
  if (offset <= p->reached)
    return;
  p->reached = offset;
  if (t->state &&
      cmd_state_set_log_next(t->state, p->catalog, p->partition, offset))
    SF_WARN(t->log, "tail", "could not record the tail's position (out of "
                            "memory)");
}

static void fold(cmd_tail_t *t, tail_part_t *p, const sf_kafka_msg_t *m) {
  const char *topic = m->topic;
  if (m->offset < p->reached) /* folded already (rebuild or earlier) */
    return;
  sf_event_t e;
  if (t->reg && sf_registry_learn(t->reg, t->codec, m->value, m->value_len) != 0)
    SF_WARN(t->log, "tail", "schema registry %s: %s", sf_registry_url(t->reg),
            sf_registry_error(t->reg));
  int rc = sf_event_decode(t->codec, m->value, m->value_len, &e);
  if (rc) {
    SF_ERROR(t->log, "tail", "skipping undecodable event %s/%d@%lld: %s",
             topic, (int)m->partition, (long long)m->offset, sf_err_name(rc));
  } else {
    cmd_apply_result_t res;
    rc = cmd_state_apply(t->state, &e, &res);
    if (rc)
      SF_ERROR(t->log, "tail", "event %s (%s) at %s/%d@%lld could not be "
                               "folded: %s; skipped",
               e.event_id, sf_event_type_name(e.type), topic,
               (int)m->partition, (long long)m->offset, sf_err_name(rc));
    else if (res == CMD_APPLY_APPLIED)
      t->folded++;
    sf_event_clear(&e);
  }
  reach(t, p, m->offset + 1);
}

static void tick_cb(uv_timer_t *h) {
  cmd_tail_t *t = h->data;
  sf_kafka_msg_t msgs[TAIL_POLL_BATCH];
  for (int done = 0; done < TAIL_PER_TICK && t->state;) {
    int got = sf_kafka_consumer_poll(t->consumer, msgs, TAIL_POLL_BATCH, 0);
    if (got <= 0)
      break; /* nothing more now, or an error the consumer logged */
    for (int i = 0; i < got; i++) {
      const sf_kafka_msg_t *m = &msgs[i];
      tail_part_t *p = t->state ? find_part(t, m->topic, m->partition) : NULL;
      if (p && m->eof)
        reach(t, p, m->offset);
      else if (p)
        fold(t, p, m);
      sf_kafka_msg_destroy(&msgs[i]);
    }
    done += got;
  }
  check_syncs(t, false);
}

int cmd_tail_new(cmd_tail_t **out, uv_loop_t *loop, const cmd_tail_opts_t *o,
                 sf_log_t *log) {
  cmd_tail_t *t = calloc(1, sizeof(*t));
  if (!t)
    return SF_ENOMEM;
  t->log = log;
  t->loop = loop;
  t->opts = *o;
  int rc = sf_event_codec_new(&t->codec);
  if (rc)
    goto fail_codec;
  if (o->registry_url && *o->registry_url) {
    rc = sf_registry_new(&t->reg, o->registry_url, 2000);
    if (rc)
      goto fail_conf;
  }
  /* read_committed, assigned (no group), the end of each partition
   * reported: a partition at its end is caught up with */
  const char *tuning[][2] = {
      {"group.id", "stockflow-command-tail"}, /* never joined nor committed */
      {"fetch.wait.max.ms", "20"},
  };
  sf_kafka_consumer_opts_t co = {
      .brokers = o->brokers,
      .group_id = NULL,
      .client_id = "stockflow-command-tail",
      .partition_eof = true,
      .settings = tuning,
      .n_settings = sizeof(tuning) / sizeof(tuning[0]),
  };
  rc = sf_kafka_consumer_new(&t->consumer, &co, log);
  if (rc) {
    SF_ERROR(log, "tail", "creating consumer: %s", sf_strerror(rc));
    rc = rc == SF_ECONFIG ? rc : SF_EKAFKA;
    goto fail_conf;
  }
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  uv_timer_start(&t->timer, tick_cb, o->poll_ms, o->poll_ms);
  *out = t;
  return 0;

fail_conf:
  sf_registry_destroy(t->reg);
  sf_event_codec_destroy(t->codec);
fail_codec:
  free(t);
  return rc;
}

int cmd_tail_reset(cmd_tail_t *t, cmd_state_t *state) {
  t->state = NULL;
  t->parts_gen++;
  check_syncs(t, true);
  sf_kafka_consumer_assign(t->consumer, NULL, 0);
  free(t->parts);
  t->parts = NULL;
  t->n_parts = 0;
  if (!state)
    return 0;
  int32_t n_stock = cmd_state_stock_partitions(state);
  tail_part_t *parts = calloc((size_t)n_stock + 1, sizeof(*parts));
  sf_kafka_tp_t *list = calloc((size_t)n_stock + 1, sizeof(*list));
  if (!parts || !list) {
    free(parts);
    free(list);
    return SF_ENOMEM;
  }
  size_t n = 0;
  for (int32_t p = -1; p < n_stock; p++) {
    bool catalog = p < 0;
    int32_t partition = catalog ? 0 : p;
    if (catalog ? cmd_instances_owns_catalog(&t->opts.instances)
                : cmd_instances_owns_partition(&t->opts.instances, p))
      continue;
    int64_t next = cmd_state_log_next(state, catalog, partition);
    parts[n] = (tail_part_t){catalog, partition, next < 0 ? 0 : next};
    list[n] = (sf_kafka_tp_t){
        catalog ? t->opts.topic_catalog : t->opts.topic_stock, partition,
        next < 0 ? SF_KAFKA_OFFSET_BEGINNING : next};
    n++;
  }
  /* n == 0 (this instance owns everything) assigns nothing */
  int rc = sf_kafka_consumer_assign(t->consumer, list, n);
  free(list);
  if (rc) {
    free(parts);
    return rc;
  }
  t->parts = parts;
  t->n_parts = n;
  t->state = state;
  SF_INFO(t->log, "tail", "folding the events of %zu partition(s) other "
                          "instances write (catalog: %s)",
          n, cmd_instances_owns_catalog(&t->opts.instances) ? "no" : "yes");
  return 0;
}

/* On the thread pool: the last stable offset of every tailed partition
 * (a read_committed handle's ListOffsets answers it as the high mark). */
static void sync_work_cb(uv_work_t *w) {
  sync_req_t *s = w->data;
  for (size_t i = 0; i < s->n && !s->rc; i++) {
    int64_t lo = 0, hi = 0;
    s->rc = sf_kafka_watermarks(
        s->t->consumer,
        s->parts[i].catalog ? s->t->opts.topic_catalog : s->t->opts.topic_stock,
        s->parts[i].partition, 2000, &lo, &hi);
    if (!s->rc)
      s->parts[i].reached = hi;
  }
}

static void sync_after_cb(uv_work_t *w, int status) {
  sync_req_t *s = w->data;
  cmd_tail_t *t = s->t;
  t->works--;
  if (status || s->rc || t->closing ||
      s->parts_gen != t->parts_gen) {
    if (s->rc)
      SF_WARN(t->log, "tail", "could not read the stable offsets to catch up "
                              "with");
    sync_finish(s, false);
    maybe_free(t);
    return;
  }
  s->next = t->syncs;
  t->syncs = s;
  check_syncs(t, false);
}

void cmd_tail_sync(cmd_tail_t *t, cmd_tail_sync_cb cb, void *ud) {
  sync_req_t *s = calloc(1, sizeof(*s));
  if (s && t->n_parts) {
    s->parts = malloc(t->n_parts * sizeof(*s->parts));
    if (!s->parts) {
      free(s);
      s = NULL;
    }
  }
  if (!s) {
    cb(ud, false); /* out of memory: answer as without the tail */
    return;
  }
  t->n_syncs++;
  s->t = t;
  s->cb = cb;
  s->ud = ud;
  s->parts_gen = t->parts_gen;
  s->deadline_ms = uv_now(t->loop) + t->opts.sync_timeout_ms;
  s->n = t->n_parts;
  if (s->n)
    memcpy(s->parts, t->parts, s->n * sizeof(*s->parts));
  s->work.data = s;
  if (uv_queue_work(t->loop, &s->work, sync_work_cb, sync_after_cb) != 0) {
    for (size_t i = 0; i < s->n; i++) /* never reached: fires false */
      s->parts[i].reached = INT64_MAX;
    s->next = t->syncs; /* at the next tick */
    t->syncs = s;
    s->deadline_ms = 0;
    return;
  }
  t->works++;
}

void cmd_tail_stats(const cmd_tail_t *t, uint64_t *folded, uint64_t *syncs) {
  *folded = t ? t->folded : 0;
  *syncs = t ? t->n_syncs : 0;
}

static void timer_closed_cb(uv_handle_t *h) {
  cmd_tail_t *t = h->data;
  t->timer_closed = true;
  maybe_free(t);
}

void cmd_tail_destroy(cmd_tail_t *t) {
  if (!t)
    return;
  t->closing = true;
  t->state = NULL;
  check_syncs(t, true);
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t *)&t->timer, timer_closed_cb);
}
