/* cmd_rebuild: replays the log into a fresh cmd_state. It drives
 * librdkafka's consumer directly (assign, no group, partition EOF events)
 * because it needs to know when it reached the end of every partition; the
 * sf_kafka consumer wrapper hides EOF on purpose. */
#include "cmd_rebuild.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd_reply.h"
#include "sf/err.h"
#include "sf/kafka.h"
#include "sf/event.h"

/* What a replay needs besides the state: the first legs of transfers
 * waiting for their second leg (to rebuild an idempotent answer). */
typedef struct held_leg {
  struct held_leg *next;
  sf_event_t e; /* owns its decode memory */
  char position[64];
} held_leg_t;

typedef struct replay {
  cmd_state_t *state;
  sf_event_codec_t *codec;
  int64_t idem_retention_us;
  int64_t now_us;
  held_leg_t *held;
  sf_log_t *log;
  cmd_rebuild_stats_t *st;
} replay_t;

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
            "key of command %s", evs[0]->command_id);
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

static int partition_count(rd_kafka_t *rk, const char *topic, sf_log_t *log,
                           int *out) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  if (!rkt)
    return SF_ENOMEM;
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  int rc = 0;
  if (err) {
    SF_ERROR(log, "rebuild", "metadata for topic %s: %s", topic,
             rd_kafka_err2str(err));
    rc = SF_EKAFKA;
  } else if (md->topic_cnt != 1 || md->topics[0].err ||
             md->topics[0].partition_cnt < 1) {
    SF_ERROR(log, "rebuild", "topic %s is missing or has no partitions (%s)",
             topic,
             md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "?");
    rc = SF_EKAFKA;
  } else {
    *out = md->topics[0].partition_cnt;
  }
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return rc;
}

static int replay_topic(rd_kafka_t *rk, const char *topic, bool catalog,
                        replay_t *r, const atomic_bool *stop) {
  sf_event_codec_t *codec = r->codec;
  cmd_state_t *state = r->state;
  sf_log_t *log = r->log;
  cmd_rebuild_stats_t *st = r->st;
  int n = 0;
  int rc = partition_count(rk, topic, log, &n);
  if (rc)
    return rc;
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(n);
  for (int p = 0; p < n; p++)
    rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);
  if (err) {
    SF_ERROR(log, "rebuild", "assign %s: %s", topic, rd_kafka_err2str(err));
    return SF_EKAFKA;
  }
  bool *at_end = calloc((size_t)n, sizeof(bool));
  if (!at_end) {
    rd_kafka_assign(rk, NULL);
    return SF_ENOMEM;
  }
  int remaining = n;
  double last_note = now_s();
  while (remaining > 0) {
    if (atomic_load(stop)) {
      rc = SF_ECANCELED;
      break;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m) {
      if (now_s() - last_note > 10.0) {
        SF_WARN(log, "rebuild", "still reading %s: %d of %d partitions left, "
                "%llu events so far", topic, remaining, n,
                (unsigned long long)st->events);
        last_note = now_s();
      }
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (m->partition >= 0 && m->partition < n && !at_end[m->partition]) {
        at_end[m->partition] = true;
        remaining--;
      }
    } else if (m->err) {
      SF_WARN(log, "rebuild", "consume %s: %s", topic,
              rd_kafka_message_errstr(m));
    } else {
      sf_event_t e;
      int drc = sf_event_decode(codec, m->payload, m->len, &e);
      if (drc) {
        SF_ERROR(log, "rebuild", "skipping undecodable event %s/%d@%lld: %s",
                 topic, (int)m->partition, (long long)m->offset,
                 sf_err_name(drc));
        st->skipped++;
      } else {
        cmd_apply_result_t res;
        int arc = cmd_state_apply(state, &e, &res);
        if (arc == SF_ENOMEM) {
          sf_event_clear(&e);
          rd_kafka_message_destroy(m);
          rc = SF_ENOMEM;
          break;
        }
        if (arc) {
          SF_ERROR(log, "rebuild", "event %s (%s) at %s/%d@%lld breaks the "
                   "state's rules; skipped", e.event_id,
                   sf_event_type_name(e.type), topic, (int)m->partition,
                   (long long)m->offset);
          st->skipped++;
        } else if (res == CMD_APPLY_DUPLICATE) {
          SF_DEBUG(log, "rebuild", "duplicate event %s of command %s at "
                   "%s/%d@%lld skipped", e.event_id, e.command_id, topic,
                   (int)m->partition, (long long)m->offset);
          st->duplicates++;
        } else {
          st->events++;
          char position[64];
          cmd_reply_position(position, sizeof(position), catalog, m->partition,
                             m->offset);
          if (after_apply(r, &e, position))
            sf_event_init(&e); /* held: ownership moved */
        }
      }
      sf_event_clear(&e);
    }
    rd_kafka_message_destroy(m);
  }
  free(at_end);
  rd_kafka_assign(rk, NULL);
  return rc;
}

int cmd_rebuild_run(const char *brokers, const char *topic_catalog,
                    const char *topic_stock, int64_t idem_retention_us,
                    const atomic_bool *stop, sf_log_t *log, cmd_state_t **out,
                    cmd_rebuild_stats_t *stats) {
  char errstr[512];
  memset(stats, 0, sizeof(*stats));
  double t0 = now_s();
  int rc = 0;
  cmd_state_t *state = NULL;
  sf_event_codec_t *codec = NULL;
  rd_kafka_t *rk = NULL;

  rc = cmd_state_new(&state);
  if (rc)
    goto fail;
  rc = sf_event_codec_new(&codec);
  if (rc)
    goto fail;

  const char *settings[][2] = {
      {"bootstrap.servers", brokers},
      {"group.id", "stockflow-command-rebuild"},
      {"client.id", "stockflow-command-rebuild"},
      {"isolation.level", "read_committed"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},
      {"auto.offset.reset", "earliest"},
      {"fetch.max.bytes", "52428800"},
      {"queued.max.messages.kbytes", "65536"},
  };
  rd_kafka_conf_t *conf = sf_kafka_conf_new(
      settings, sizeof(settings) / sizeof(settings[0]), &log, errstr,
      sizeof(errstr));
  if (!conf) {
    SF_ERROR(log, "rebuild", "config: %s", errstr);
    rc = SF_ECONFIG;
    goto fail;
  }
  rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (!rk) {
    SF_ERROR(log, "rebuild", "creating consumer: %s", errstr);
    rd_kafka_conf_destroy(conf);
    rc = SF_EKAFKA;
    goto fail;
  }
  rd_kafka_poll_set_consumer(rk);

  /* Catalog first: stock events refer to its products and stores. */
  replay_t r = {state, codec, idem_retention_us, wall_us(), NULL, log, stats};
  rc = replay_topic(rk, topic_catalog, true, &r, stop);
  if (!rc)
    rc = replay_topic(rk, topic_stock, false, &r, stop);
  release_held(&r);
  if (rc)
    goto fail;

  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  sf_event_codec_destroy(codec);
  stats->seconds = now_s() - t0;
  *out = state;
  return 0;

fail:
  if (rk) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  sf_event_codec_destroy(codec);
  cmd_state_destroy(state);
  return rc;
}
