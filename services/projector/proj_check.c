/* proj_check: the conservation check's I/O. See proj_check.h. */
#include "proj_check.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "proj_intake.h"
#include "proj_ledger.h"
#include "sf/err.h"
#include "sf/event.h"
#include "sf/kafka.h"
#include "sf/registry.h"

#define MOD "check"
#define KAFKA_TIMEOUT_MS 10000
#define POLL_BATCH 500

typedef struct target {
  int64_t end;  /* the group's next offset: fold [0, end) */
  int64_t next; /* next offset still to read */
} target_t;

typedef struct check {
  const proj_check_opts_t *o;
  sf_log_t *log;
  FILE *out;
  proj_ledger_t *ledger;
  target_t *parts;
  int32_t n_parts;
  uint64_t undecodable;
} check_t;

static int pg_fail(check_t *c, PGconn *conn, PGresult *r, const char *what) {
  SF_ERROR(c->log, MOD, "%s: %s", what,
           r ? PQresultErrorMessage(r) : PQerrorMessage(conn));
  PQclear(r);
  return SF_EPG;
}

/* The snapshot: the group's stock offsets and every inventory row. */
static int read_model(check_t *c) {
  PGconn *conn = PQconnectdb(c->o->pg_dsn);
  int rc = 0;
  if (PQstatus(conn) != CONNECTION_OK) {
    SF_ERROR(c->log, MOD, "connecting to PostgreSQL: %s",
             PQerrorMessage(conn));
    PQfinish(conn);
    return SF_EPG;
  }
  PGresult *r = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    rc = pg_fail(c, conn, r, "BEGIN");
    goto done;
  }
  PQclear(r);
  const char *params[2] = {c->o->group, c->o->topic_stock};
  r = PQexecParams(conn,
                   "SELECT partition, next_offset FROM projector_offsets"
                   " WHERE consumer_group = $1 AND topic = $2",
                   2, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = pg_fail(c, conn, r, "reading projector_offsets");
    goto done;
  }
  for (int i = 0; i < PQntuples(r); i++) {
    long p = strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (p < 0 || p >= c->n_parts) {
      SF_ERROR(c->log, MOD, "projector_offsets names %s[%ld], which the "
                            "topic does not have",
               c->o->topic_stock, p);
      rc = SF_ECONFIG;
      PQclear(r);
      goto done;
    }
    c->parts[p].end = strtoll(PQgetvalue(r, i, 1), NULL, 10);
  }
  PQclear(r);
  r = PQexec(conn, "SELECT store_id, product_id, on_hand, reserved FROM "
                   "inventory");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    rc = pg_fail(c, conn, r, "reading inventory");
    goto done;
  }
  for (int i = 0; i < PQntuples(r) && !rc; i++) {
    rc = proj_ledger_observe(c->ledger, PQgetvalue(r, i, 0),
                             PQgetvalue(r, i, 1),
                             strtoll(PQgetvalue(r, i, 2), NULL, 10),
                             strtoll(PQgetvalue(r, i, 3), NULL, 10));
    if (rc)
      SF_ERROR(c->log, MOD, "inventory row %d: %s", i, sf_strerror(rc));
  }
  PQclear(r);
  r = PQexec(conn, "COMMIT");
  PQclear(r);
done:
  PQfinish(conn);
  return rc;
}

static bool all_read(const check_t *c) {
  for (int32_t p = 0; p < c->n_parts; p++)
    if (c->parts[p].next < c->parts[p].end)
      return false;
  return true;
}

/* Folds the stock topic up to the stored offsets. */
static int read_log(check_t *c, sf_kafka_consumer_t *k) {
  sf_event_codec_t *codec = NULL;
  sf_registry_t *reg = NULL;
  int rc = sf_event_codec_new(&codec);
  if (rc)
    return rc;
  if (c->o->registry_url && c->o->registry_url[0] &&
      (rc = sf_registry_new(&reg, c->o->registry_url, KAFKA_TIMEOUT_MS))) {
    sf_event_codec_destroy(codec);
    return rc;
  }
  sf_kafka_tp_t *tps = calloc((size_t)c->n_parts, sizeof(*tps));
  if (!tps) {
    sf_registry_destroy(reg);
    sf_event_codec_destroy(codec);
    return SF_ENOMEM;
  }
  size_t n = 0;
  for (int32_t p = 0; p < c->n_parts; p++) {
    int64_t low = 0, high = 0;
    rc = sf_kafka_watermarks(k, c->o->topic_stock, p, KAFKA_TIMEOUT_MS, &low,
                             &high);
    if (rc)
      goto out;
    if (c->parts[p].end > high || (low > 0 && c->parts[p].end > 0)) {
      SF_ERROR(c->log, MOD, "%s[%d] holds offsets %" PRId64 "..%" PRId64 ", the read model applied up to %" PRId64 ": the log cannot "
                            "prove it",
               c->o->topic_stock, (int)p, low, high,
               c->parts[p].end);
      rc = SF_ECONFIG;
      goto out;
    }
    if (c->parts[p].end > 0)
      tps[n++] = (sf_kafka_tp_t){c->o->topic_stock, p,
                                 SF_KAFKA_OFFSET_BEGINNING};
  }
  if (n && (rc = sf_kafka_consumer_assign(k, tps, n)))
    goto out;
  sf_kafka_msg_t msgs[POLL_BATCH];
  int64_t idle_since = proj_now_ms();
  while (!all_read(c)) {
    int got = sf_kafka_consumer_poll(k, msgs, POLL_BATCH, 200);
    if (got < 0) {
      rc = got;
      goto out;
    }
    /* the position also moves past transaction markers */
    bool moved = got > 0;
    for (int32_t p = 0; p < c->n_parts; p++) {
      int64_t pos;
      if (sf_kafka_position(k, c->o->topic_stock, p, &pos) == 0 &&
          pos > c->parts[p].next) {
        c->parts[p].next = pos;
        moved = true;
      }
    }
    for (int i = 0; i < got; i++) {
      sf_kafka_msg_t *m = &msgs[i];
      target_t *t = &c->parts[m->partition];
      if (m->offset + 1 > t->next)
        t->next = m->offset + 1;
      if (m->offset < t->end && !rc) {
        /* an id whose schema is not an envelope was dead-lettered: it
         * fails to decode below; a registry that does not answer fails the
         * check rather than count valid events as undecodable */
        int lrc = sf_registry_learn(reg, codec, m->value, m->value_len);
        if (lrc && lrc != SF_ESCHEMA && lrc != SF_ECONFLICT) {
          SF_ERROR(c->log, MOD, "schema registry: %s",
                   sf_registry_error(reg));
          rc = lrc;
        } else {
          sf_event_t e;
          if (sf_event_decode(codec, m->value, m->value_len, &e) == 0)
            rc = proj_ledger_apply(c->ledger, &e);
          else
            c->undecodable++; /* the projector dead-lettered it too */
          sf_event_clear(&e);
        }
      }
      sf_kafka_msg_destroy(m);
    }
    if (rc)
      goto out;
    if (moved)
      idle_since = proj_now_ms();
    else if (proj_now_ms() - idle_since > c->o->timeout_ms) {
      SF_ERROR(c->log, MOD, "no progress reading %s for %d ms",
               c->o->topic_stock, c->o->timeout_ms);
      rc = SF_ETIMEOUT;
      goto out;
    }
  }
out:
  free(tps);
  sf_registry_destroy(reg);
  sf_event_codec_destroy(codec);
  return rc;
}

static void row_cb(void *ud, const proj_ledger_diff_t *d) {
  check_t *c = ud;
  if (d->log_contradicts)
    fprintf(c->out, "difference: store %s product %s: the log's deltas sum "
                    "to on_hand %" PRId64 " reserved %" PRId64 " but its events say "
                    "otherwise (version %" PRId64 ")\n",
            d->store_id, d->product_id,
            d->log_on_hand, d->log_reserved, d->version);
  else
    fprintf(c->out, "difference: store %s product %s: read model %s, log %s"
                    " (on_hand %" PRId64 " reserved %" PRId64 " in the read model, "
                    "%" PRId64 " and %" PRId64 " from the log)\n",
            d->store_id,
            d->product_id, d->in_model ? "has the row" : "lacks the row",
            d->in_log ? "moved it" : "never moved it", d->model_on_hand,
            d->model_reserved, d->log_on_hand, d->log_reserved);
}

static void product_cb(void *ud, const proj_ledger_product_t *p) {
  check_t *c = ud;
  if (!p->balanced)
    fprintf(c->out, "difference: product %s: stores %" PRId64 " + in transit "
                    "%" PRId64 " != movements %" PRId64 "\n",
            p->product_id,
            p->stores, p->in_transit, p->movements);
}

int proj_check_run(const proj_check_opts_t *o, FILE *out, sf_log_t *log,
                   size_t *differences) {
  check_t c = {.o = o, .log = log, .out = out};
  sf_kafka_consumer_t *k = NULL;
  sf_kafka_consumer_opts_t co = {.brokers = o->brokers,
                                 .group_id = NULL,
                                 .client_id = "stockflow-projector-check"};
  int rc = proj_ledger_new(&c.ledger);
  if (rc)
    return rc;
  rc = sf_kafka_consumer_new(&k, &co, log);
  if (rc)
    goto fail_consumer;
  rc = sf_kafka_partition_count(k, o->topic_stock, KAFKA_TIMEOUT_MS,
                                &c.n_parts);
  if (!rc && c.n_parts < 1) {
    SF_ERROR(log, MOD, "topic %s has no partitions", o->topic_stock);
    rc = SF_ECONFIG;
  }
  if (rc)
    goto fail_topic;
  c.parts = calloc((size_t)c.n_parts, sizeof(*c.parts));
  if (!c.parts) {
    rc = SF_ENOMEM;
    goto fail_topic;
  }
  rc = read_model(&c);
  if (!rc)
    rc = read_log(&c, k);
  if (!rc) {
    proj_ledger_summary_t s;
    proj_ledger_report(c.ledger, row_cb, product_cb, &c, &s);
    fprintf(out, "check: %" PRIu64 " stock events folded from %s up to the "
                 "offsets of group %s (%" PRIu64 " duplicates, %" PRIu64 " undecodable skipped); %zu store x product rows, %zu products\n",
            s.events, o->topic_stock, o->group, s.duplicates, c.undecodable,
            s.rows, s.products);
    fprintf(out, "check: stores %" PRId64 " + in transit %" PRId64 " %s "
                 "movements %" PRId64 "\n",
            s.stores, s.in_transit,
            s.stores + s.in_transit == s.movements ? "=" : "!=", s.movements);
    *differences = s.row_diffs + s.product_diffs;
    fprintf(out, "check: %s (%zu row and %zu product differences)\n",
            *differences ? "DIFFERENCES" : "ok", s.row_diffs,
            s.product_diffs);
    fflush(out);
  }
  free(c.parts);
fail_topic:
  sf_kafka_consumer_destroy(k);
fail_consumer:
  proj_ledger_destroy(c.ledger);
  return rc;
}
