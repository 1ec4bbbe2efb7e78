/* cmd_rebuild: replays the log into a fresh cmd_state. It reads through an
 * sf_kafka consumer (assign, no group) that reports partition EOF, because
 * it needs to know when it reached the end of every partition.
 *
 * Progress: every partition's low and high watermarks are read before the
 * replay (total = the sum of high - low); a partition's done is its next
 * offset - low, and its end becomes the offset of its EOF (a read_committed
 * consumer stops at the last stable offset, which an open transaction keeps
 * below the high watermark), so done reaches total exactly at the end. */
#include "cmd_rebuild.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_reply.h"
#include "sf/err.h"
#include "sf/kafka.h"
#include "sf/event.h"
#include "sf/progress.h"
#include "sf/registry.h"

#define PROGRESS_PUBLISH_MS 250
#define REGISTRY_TIMEOUT_MS 5000
#define LEARN_BACKOFF_MAX_MS 5000
#define PROGRESS_LOG_MS 5000
#define PROGRESS_CHECK_EVERY 256 /* messages between two looks at the clock */

/* What a replay needs besides the state: the first legs of transfers
 * waiting for their second leg (to rebuild an idempotent answer). */
typedef struct held_leg {
  struct held_leg *next;
  sf_event_t e; /* owns its decode memory */
  char position[64];
} held_leg_t;

/* One partition's offsets: [low, end) is what the replay reads. */
typedef struct part {
  int64_t low, end, next;
} part_t;

typedef struct topic_parts {
  const char *name;
  bool catalog;
  int n;
  part_t *p;
} topic_parts_t;

typedef struct replay {
  cmd_state_t *state;
  sf_event_codec_t *codec;
  sf_registry_t *reg; /* NULL when no registry is configured */
  int64_t idem_retention_us;
  int64_t now_us;
  held_leg_t *held;
  sf_log_t *log;
  cmd_rebuild_stats_t *st;
  /* progress */
  topic_parts_t tops[2]; /* catalog, stock */
  sf_progress_t prog;
  cmd_rebuild_progress_t *shared; /* may be NULL */
  int64_t publish_ms, log_ms;
  unsigned since_check;
} replay_t;

void cmd_rebuild_progress_init(cmd_rebuild_progress_t *p) {
  atomic_init(&p->running, false);
  atomic_init(&p->done, 0);
  atomic_init(&p->total, 0);
  atomic_init(&p->rate_milli, 0);
  atomic_init(&p->eta_ms, -1);
  atomic_init(&p->elapsed_ms, 0);
}

void cmd_rebuild_progress_read(const cmd_rebuild_progress_t *p,
                               cmd_rebuild_snapshot_t *out) {
  out->running = atomic_load(&p->running);
  out->done = atomic_load(&p->done);
  out->total = atomic_load(&p->total);
  if (out->total < out->done)
    out->total = out->done;
  out->rate = (double)atomic_load(&p->rate_milli) / 1000.0;
  int64_t eta = atomic_load(&p->eta_ms);
  out->eta_s = eta < 0 ? -1.0 : (double)eta / 1000.0;
  out->elapsed_s = (double)atomic_load(&p->elapsed_ms) / 1000.0;
}

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void remember_answer(replay_t *r, const sf_event_t *const *evs,
                            size_t n, const char *const *positions) {
  int status = 0;
  json_t *body = cmd_reply_build(r->state, evs, n, &status);
  char *text = body ? cmd_reply_finish(body, positions, n) : NULL;
  if (!text ||
      cmd_state_idem_finish(r->state, evs[0]->idempotency_key,
                            evs[0]->request_hash, status, text,
                            evs[0]->occurred_at_us + r->idem_retention_us)) {
    SF_WARN(r->log, "rebuild", "could not restore the answer of idempotency "
                               "key of command %s",
            evs[0]->command_id);
  } else {
    r->st->idempotency_keys++;
  }
  free(text);
  json_decref(body);
}

/* Called after e was applied. Takes ownership of e when it returns true
 * (a first transfer leg held for its partner). */
static bool after_apply(replay_t *r, sf_event_t *e, const char *position) {
  if (!e->idempotency_key ||
      e->occurred_at_us + r->idem_retention_us < r->now_us)
    return false;
  if (e->type != SF_EV_TRANSFER_OUT && e->type != SF_EV_TRANSFER_IN) {
    const sf_event_t *one = e;
    remember_answer(r, &one, 1, &position);
    return false;
  }
  for (held_leg_t **pp = &r->held; *pp; pp = &(*pp)->next) {
    held_leg_t *h = *pp;
    if (strcmp(h->e.command_id, e->command_id) != 0)
      continue;
    *pp = h->next;
    bool out_first = h->e.type == SF_EV_TRANSFER_OUT;
    const sf_event_t *legs[2] = {out_first ? &h->e : e, out_first ? e : &h->e};
    const char *pos[2] = {out_first ? h->position : position,
                          out_first ? position : h->position};
    remember_answer(r, legs, 2, pos);
    sf_event_clear(&h->e);
    free(h);
    return false;
  }
  held_leg_t *h = calloc(1, sizeof(*h));
  if (!h)
    return false;
  h->e = *e;
  snprintf(h->position, sizeof(h->position), "%s", position);
  h->next = r->held;
  r->held = h;
  return true;
}

static void release_held(replay_t *r) {
  while (r->held) {
    held_leg_t *h = r->held;
    r->held = h->next;
    sf_event_clear(&h->e);
    free(h);
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void progress_log(replay_t *r, const char *what) {
  char line[160];
  sf_progress_format(&r->prog, "offsets", line, sizeof line);
  SF_INFO(r->log, "rebuild", "%s: %s", what, line);
}

/* Recomputes done/total, publishes them (at most every PROGRESS_PUBLISH_MS
 * unless force) and logs a line every PROGRESS_LOG_MS. */
static void progress_tick(replay_t *r, bool force) {
  if (!force && ++r->since_check < PROGRESS_CHECK_EVERY)
    return;
  r->since_check = 0;
  int64_t now = mono_ms();
  if (!force && now - r->publish_ms < PROGRESS_PUBLISH_MS)
    return;
  uint64_t done = 0, total = 0;
  for (int t = 0; t < 2; t++) {
    for (int i = 0; i < r->tops[t].n; i++) {
      const part_t *p = &r->tops[t].p[i];
      int64_t next = p->next < p->end ? p->next : p->end;
      total += (uint64_t)(p->end - p->low);
      done += next > p->low ? (uint64_t)(next - p->low) : 0;
    }
  }
  sf_progress_update(&r->prog, done, total, now);
  r->publish_ms = now;
  if (r->shared) {
    double eta = sf_progress_eta_s(&r->prog);
    atomic_store(&r->shared->done, r->prog.done);
    atomic_store(&r->shared->total, r->prog.total);
    atomic_store(&r->shared->rate_milli, (uint64_t)(r->prog.rate * 1000.0));
    atomic_store(&r->shared->eta_ms, eta < 0 ? -1 : (int64_t)(eta * 1000.0));
    atomic_store(&r->shared->elapsed_ms, now - r->prog.start_ms);
  }
  if (now - r->log_ms >= PROGRESS_LOG_MS) {
    progress_log(r, "replaying");
    r->log_ms = now;
  }
}

/* Partitions of a topic with their watermarks (the replay's bounds). */
static int measure(sf_kafka_consumer_t *c, topic_parts_t *tp, sf_log_t *log) {
  int32_t n = 0;
  int rc = sf_kafka_partition_count(c, tp->name, 10000, &n);
  if (rc) {
    SF_ERROR(log, "rebuild", "metadata for topic %s: %s", tp->name,
             sf_strerror(rc));
    return SF_EKAFKA;
  }
  if (n < 1) {
    SF_ERROR(log, "rebuild", "topic %s is missing or has no partitions",
             tp->name);
    return SF_EKAFKA;
  }
  tp->n = n;
  tp->p = calloc((size_t)tp->n, sizeof *tp->p);
  if (!tp->p)
    return SF_ENOMEM;
  for (int i = 0; i < tp->n; i++) {
    int64_t low = 0, high = 0;
    /* read_committed: high is the last stable offset */
    rc = sf_kafka_watermarks(c, tp->name, i, 10000, &low, &high);
    if (rc) {
      SF_ERROR(log, "rebuild", "watermarks of %s/%d: %s", tp->name, i,
               sf_strerror(rc));
      return SF_EKAFKA;
    }
    tp->p[i] = (part_t){low, high > low ? high : low, low};
  }
  return 0;
}

/* Teaches the codec the schema id of a Confluent-framed payload, waiting
 * for a registry that does not answer (or does not know the id) until it
 * does or stop becomes true. An id whose schema is not an envelope is left
 * to the decode, which skips the event. Returns 0 or SF_ECANCELED. */
static int learn(replay_t *r, const void *payload, size_t len,
                 const atomic_bool *stop) {
  int backoff = 100;
  for (;;) {
    int rc = sf_registry_learn(r->reg, r->codec, payload, len);
    if (rc == 0 || rc == SF_ESCHEMA || rc == SF_ECONFLICT)
      return 0;
    SF_WARN(r->log, "rebuild", "schema registry %s: %s (%s); retrying in %d ms",
            sf_registry_url(r->reg), sf_registry_error(r->reg),
            sf_err_name(rc), backoff);
    for (int slept = 0; slept < backoff; slept += 50) {
      if (atomic_load(stop))
        return SF_ECANCELED;
      struct timespec ts = {0, 50 * 1000000L};
      nanosleep(&ts, NULL);
    }
    backoff = backoff * 2 > LEARN_BACKOFF_MAX_MS ? LEARN_BACKOFF_MAX_MS
                                                 : backoff * 2;
  }
}

/* Applies one event read from tp; false when the replay must stop (rc
 * says why). */
static bool replay_one(replay_t *r, topic_parts_t *tp, const sf_kafka_msg_t *m,
                       const atomic_bool *stop, int *rc) {
  cmd_rebuild_stats_t *st = r->st;
  sf_log_t *log = r->log;
  const char *topic = tp->name;
  if (m->partition >= 0 && m->partition < tp->n &&
      m->offset + 1 > tp->p[m->partition].next)
    tp->p[m->partition].next = m->offset + 1;
  progress_tick(r, false);
  if (learn(r, m->value, m->value_len, stop)) {
    *rc = SF_ECANCELED;
    return false;
  }
  sf_event_t e;
  int drc = sf_event_decode(r->codec, m->value, m->value_len, &e);
  if (drc) {
    SF_ERROR(log, "rebuild", "skipping undecodable event %s/%d@%lld: %s",
             topic, (int)m->partition, (long long)m->offset,
             sf_err_name(drc));
    st->skipped++;
    return true;
  }
  cmd_apply_result_t res;
  int arc = cmd_state_apply(r->state, &e, &res);
  if (arc == SF_ENOMEM) {
    sf_event_clear(&e);
    *rc = SF_ENOMEM;
    return false;
  }
  if (arc) {
    SF_ERROR(log, "rebuild", "event %s (%s) at %s/%d@%lld breaks the "
                             "state's rules; skipped",
             e.event_id, sf_event_type_name(e.type), topic,
             (int)m->partition, (long long)m->offset);
    st->skipped++;
  } else if (res == CMD_APPLY_DUPLICATE) {
    SF_DEBUG(log, "rebuild", "duplicate event %s of command %s at "
                             "%s/%d@%lld skipped",
             e.event_id, e.command_id, topic, (int)m->partition,
             (long long)m->offset);
    st->duplicates++;
  } else {
    st->events++;
    char position[64];
    cmd_reply_position(position, sizeof(position), tp->catalog, m->partition,
                       m->offset);
    if (after_apply(r, &e, position))
      sf_event_init(&e); /* held: ownership moved */
  }
  sf_event_clear(&e);
  return true;
}

#define POLL_BATCH 64

static int replay_topic(sf_kafka_consumer_t *c, topic_parts_t *tp,
                        replay_t *r, const atomic_bool *stop) {
  sf_log_t *log = r->log;
  cmd_rebuild_stats_t *st = r->st;
  const char *topic = tp->name;
  int n = tp->n;
  int rc = 0;
  sf_kafka_tp_t *tps = calloc((size_t)n, sizeof *tps);
  bool *at_end = calloc((size_t)n, sizeof(bool));
  if (!tps || !at_end) {
    free(tps);
    free(at_end);
    return SF_ENOMEM;
  }
  for (int p = 0; p < n; p++)
    tps[p] = (sf_kafka_tp_t){topic, p, SF_KAFKA_OFFSET_BEGINNING};
  rc = sf_kafka_consumer_assign(c, tps, (size_t)n);
  free(tps);
  if (rc) {
    SF_ERROR(log, "rebuild", "assign %s: %s", topic, sf_strerror(rc));
    free(at_end);
    return SF_EKAFKA;
  }
  int remaining = n;
  double last_note = now_s();
  sf_kafka_msg_t msgs[POLL_BATCH];
  while (remaining > 0 && !rc) {
    if (atomic_load(stop)) {
      rc = SF_ECANCELED;
      break;
    }
    /* errors are logged by the consumer */
    int got = sf_kafka_consumer_poll(c, msgs, POLL_BATCH, 200);
    if (got <= 0) {
      progress_tick(r, true);
      if (now_s() - last_note > 10.0) {
        SF_WARN(log, "rebuild", "still reading %s: %d of %d partitions left, "
                                "%llu events so far",
                topic, remaining, n,
                (unsigned long long)st->events);
        last_note = now_s();
      }
      continue;
    }
    for (int i = 0; i < got; i++) {
      const sf_kafka_msg_t *m = &msgs[i];
      if (rc) {
        /* stopping: the rest of the batch is dropped */
      } else if (m->eof) {
        if (m->partition >= 0 && m->partition < n && !at_end[m->partition]) {
          at_end[m->partition] = true;
          remaining--;
          /* This partition ends here, whatever the watermark said. */
          part_t *p = &tp->p[m->partition];
          if (m->offset > p->next)
            p->next = m->offset;
          p->end = p->next;
          progress_tick(r, true);
        }
      } else {
        replay_one(r, tp, m, stop, &rc);
      }
      sf_kafka_msg_destroy(&msgs[i]);
    }
  }
  free(at_end);
  sf_kafka_consumer_assign(c, NULL, 0);
  return rc;
}

int cmd_rebuild_run(const char *brokers, const char *topic_catalog,
                    const char *topic_stock, const char *registry_url,
                    int64_t idem_retention_us,
                    const atomic_bool *stop, sf_log_t *log, cmd_state_t **out,
                    cmd_rebuild_stats_t *stats,
                    cmd_rebuild_progress_t *progress) {
  memset(stats, 0, sizeof(*stats));
  double t0 = now_s();
  int rc = 0;
  cmd_state_t *state = NULL;
  sf_event_codec_t *codec = NULL;
  sf_registry_t *reg = NULL;
  sf_kafka_consumer_t *consumer = NULL;

  rc = cmd_state_new(&state);
  if (rc)
    goto fail;
  rc = sf_event_codec_new(&codec);
  if (rc)
    goto fail;
  if (registry_url && registry_url[0] &&
      (rc = sf_registry_new(&reg, registry_url, REGISTRY_TIMEOUT_MS)))
    goto fail;

  /* read_committed, no offsets committed nor stored, earliest, and the
   * end of every partition reported */
  const char *tuning[][2] = {
      /* never joined nor committed to */
      {"group.id", "stockflow-command-rebuild"},
      {"fetch.max.bytes", "52428800"},
      {"queued.max.messages.kbytes", "65536"},
  };
  sf_kafka_consumer_opts_t co = {
      .brokers = brokers,
      .group_id = NULL, /* assign only */
      .client_id = "stockflow-command-rebuild",
      .partition_eof = true,
      .settings = tuning,
      .n_settings = sizeof(tuning) / sizeof(tuning[0]),
  };
  rc = sf_kafka_consumer_new(&consumer, &co, log);
  if (rc) {
    SF_ERROR(log, "rebuild", "creating consumer: %s", sf_strerror(rc));
    rc = rc == SF_ECONFIG ? rc : SF_EKAFKA;
    goto fail;
  }

  /* Catalog first: stock events refer to its products and stores. */
  replay_t r = {.state = state, .codec = codec, .reg = reg, .idem_retention_us = idem_retention_us, .now_us = wall_us(), .log = log, .st = stats, .shared = progress, .tops = {{.name = topic_catalog, .catalog = true}, {.name = topic_stock, .catalog = false}}};
  rc = measure(consumer, &r.tops[0], log);
  if (!rc)
    rc = measure(consumer, &r.tops[1], log);
  if (!rc) {
    uint64_t total = 0;
    for (int t = 0; t < 2; t++)
      for (int i = 0; i < r.tops[t].n; i++)
        total += (uint64_t)(r.tops[t].p[i].end - r.tops[t].p[i].low);
    int64_t now = mono_ms();
    sf_progress_start(&r.prog, total, now);
    r.log_ms = now;
    if (progress) {
      atomic_store(&progress->done, 0);
      atomic_store(&progress->total, total);
      atomic_store(&progress->eta_ms, -1);
      atomic_store(&progress->elapsed_ms, 0);
      atomic_store(&progress->running, true);
    }
    SF_INFO(log, "rebuild", "replaying %s (%d partition(s)) and %s (%d "
                            "partition(s)): %" PRIu64 " offsets",
            topic_catalog, r.tops[0].n,
            topic_stock, r.tops[1].n, total);
    rc = replay_topic(consumer, &r.tops[0], &r, stop);
  }
  if (!rc)
    rc = replay_topic(consumer, &r.tops[1], &r, stop);
  /* instances: where the tail of the other instances' events starts */
  for (int t = 0; !rc && t < 2; t++)
    for (int i = 0; !rc && i < (r.tops[t].catalog ? 1 : r.tops[t].n); i++)
      rc = cmd_state_set_log_next(state, r.tops[t].catalog, i,
                                  r.tops[t].p[i].end);
  if (!rc) {
    progress_tick(&r, true);
    /* The whole run's average (a short replay has no moving one yet). */
    double secs = now_s() - t0;
    if (secs > 0.001)
      r.prog.rate = (double)r.prog.done / secs;
    progress_log(&r, "replayed");
  }
  if (progress)
    atomic_store(&progress->running, false);
  release_held(&r);
  free(r.tops[0].p);
  free(r.tops[1].p);
  if (rc)
    goto fail;

  sf_kafka_consumer_destroy(consumer);
  sf_registry_destroy(reg);
  sf_event_codec_destroy(codec);
  stats->seconds = now_s() - t0;
  *out = state;
  return 0;

fail:
  sf_kafka_consumer_destroy(consumer);
  sf_registry_destroy(reg);
  sf_event_codec_destroy(codec);
  cmd_state_destroy(state);
  return rc;
}
