/* sf-pg-limit: the PostgreSQL limit of the projector. Writes the rows the
 * projector writes for the generator's StockMoved events (bench_util.h):
 * one `transactions` row per event and the version-guarded `inventory`
 * upsert (plus one `changes` row per event when that table exists, as the
 * projector does from migration 003 on), by the fastest batched method:
 * per batch, COPY into a temporary staging table, then INSERT ... SELECT
 * ... ON CONFLICT from it, all in one transaction and one round trip after
 * the COPY. No Kafka and no decoding: what is left is PostgreSQL's cost.
 *
 *   sf-pg-limit --dsn DSN [--events 1M] [--stores 20] [--products 1000]
 *       [--batch 1000] [--salt N] [--json FILE]
 *
 * The database must have the read-model tables (deploy/local/pg.sh migrate)
 * and should be empty: rows already there make the inserts no-ops. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define US_EXPR(col) "(timestamptz 'epoch' + " col " * interval '1 microsecond')"

static const char k_stage[] =
    "CREATE TEMP TABLE bench_stage (id uuid, command_id uuid, store_id uuid,"
    " product_id uuid, type text, quantity bigint, delta bigint,"
    " on_hand_after bigint, reserved_after bigint, version bigint,"
    " created_us bigint, kafka_partition integer, kafka_offset bigint)"
    " ON COMMIT DELETE ROWS";

static const char k_apply[] =
    "INSERT INTO transactions (id, command_id, store_id, product_id, type,"
    " quantity, delta, reserved_delta, on_hand_after, reserved_after, version,"
    " reason, reference, actor, created_at, kafka_partition, kafka_offset)"
    " SELECT id, command_id, store_id, product_id, type, quantity, delta, 0,"
    " on_hand_after, reserved_after, version, NULL, NULL, NULL, " US_EXPR("created_us") ", kafka_partition, kafka_offset FROM bench_stage"
                                                                                        " ON CONFLICT DO NOTHING;"
                                                                                        "INSERT INTO inventory (store_id, product_id, on_hand, reserved, version,"
                                                                                        " updated_at)"
                                                                                        " SELECT DISTINCT ON (store_id, product_id) store_id, product_id,"
                                                                                        " on_hand_after, reserved_after, version, " US_EXPR("created_us") " FROM bench_stage ORDER BY store_id, product_id, version DESC"
                                                                                                                                                          " ON CONFLICT (store_id, product_id) DO UPDATE SET"
                                                                                                                                                          " on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved,"
                                                                                                                                                          " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
                                                                                                                                                          " WHERE inventory.version < EXCLUDED.version;";

static const char k_changes[] =
    "INSERT INTO changes (store_id, product_id, on_hand, reserved, version,"
    " cause, transaction_id, occurred_at)"
    " SELECT store_id, product_id, on_hand_after, reserved_after, version,"
    " type, id, " US_EXPR("created_us") " FROM bench_stage ORDER BY kafka_offset;";

static int exec_ok(PGconn *pg, const char *sql, ExecStatusType want) {
  PGresult *r = PQexec(pg, sql);
  int ok = PQresultStatus(r) == want;
  if (!ok)
    fprintf(stderr, "sf-pg-limit: %.60s...: %s", sql, PQerrorMessage(pg));
  PQclear(r);
  /* a multi-statement string returns the last result; drain any others */
  while ((r = PQgetResult(pg)) != NULL)
    PQclear(r);
  return ok ? 0 : -1;
}

/* One batch: BEGIN, COPY rows [k, k + n), apply, COMMIT. */
static int run_batch(PGconn *pg, bench_gen_t *g, uint64_t n, char *line_buf,
                     size_t line_cap, const char *commit_sql) {
  if (exec_ok(pg, "BEGIN", PGRES_COMMAND_OK))
    return -1;
  PGresult *r = PQexec(pg, "COPY bench_stage FROM STDIN");
  if (PQresultStatus(r) != PGRES_COPY_IN) {
    fprintf(stderr, "sf-pg-limit: COPY: %s", PQerrorMessage(pg));
    PQclear(r);
    return -1;
  }
  PQclear(r);
  size_t used = 0;
  for (uint64_t i = 0; i < n; i++) {
    uint64_t k = g->next;
    sf_event_t e;
    bench_gen_next(g, &e);
    char line[512];
    int len = snprintf(
        line, sizeof(line),
        "%s\t%s\t%s\t%s\t%s\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRId64
        "\t%" PRId64 "\t%" PRId64 "\t%u\t%" PRIu64 "\n",
        e.event_id, e.command_id, e.store_id, e.product_id,
        sf_movement_name(e.stock.movement), e.stock.quantity, e.stock.delta,
        e.stock.on_hand, e.stock.reserved, e.stream_version, e.occurred_at_us,
        (unsigned)(k % 6), k);
    if (used + (size_t)len > line_cap) {
      if (PQputCopyData(pg, line_buf, (int)used) != 1)
        goto copy_fail;
      used = 0;
    }
    memcpy(line_buf + used, line, (size_t)len);
    used += (size_t)len;
  }
  if (used && PQputCopyData(pg, line_buf, (int)used) != 1)
    goto copy_fail;
  if (PQputCopyEnd(pg, NULL) != 1)
    goto copy_fail;
  r = PQgetResult(pg);
  if (PQresultStatus(r) != PGRES_COMMAND_OK) {
    fprintf(stderr, "sf-pg-limit: COPY end: %s", PQerrorMessage(pg));
    PQclear(r);
    return -1;
  }
  PQclear(r);
  while ((r = PQgetResult(pg)) != NULL)
    PQclear(r);
  return exec_ok(pg, commit_sql, PGRES_COMMAND_OK);

copy_fail:
  fprintf(stderr, "sf-pg-limit: COPY data: %s", PQerrorMessage(pg));
  return -1;
}

int main(int argc, char **argv) {
  const char *dsn = NULL, *json_out = NULL;
  uint64_t events = 1000000, stores = 20, products = 1000, batch = 1000;
  uint32_t salt = 1;
  static const struct option longopts[] = {
      {"dsn", required_argument, NULL, 'd'},
      {"events", required_argument, NULL, 'n'},
      {"stores", required_argument, NULL, 's'},
      {"products", required_argument, NULL, 'p'},
      {"batch", required_argument, NULL, 'b'},
      {"salt", required_argument, NULL, 'S'},
      {"json", required_argument, NULL, 'j'},
      {NULL, 0, NULL, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    int bad = 0;
    switch (ch) {
    case 'd': dsn = optarg; break;
    case 'n': bad = bench_parse_count(optarg, &events); break;
    case 's': bad = bench_parse_count(optarg, &stores); break;
    case 'p': bad = bench_parse_count(optarg, &products); break;
    case 'b': bad = bench_parse_count(optarg, &batch); break;
    case 'S': salt = (uint32_t)strtoul(optarg, NULL, 10); break;
    case 'j': json_out = optarg; break;
    default: bad = 1;
    }
    if (bad) {
      fprintf(stderr, "usage: see the comment at the top of pg_limit.c\n");
      return 2;
    }
  }
  if (!dsn) {
    fprintf(stderr, "sf-pg-limit: --dsn is required\n");
    return 2;
  }
  int status = 1;
  bench_gen_t gen;
  if (bench_gen_init(&gen, salt, stores, products)) {
    fprintf(stderr, "sf-pg-limit: out of memory\n");
    return 1;
  }
  size_t line_cap = 1 << 20;
  char *line_buf = malloc(line_cap);
  char *commit_sql = NULL;
  PGconn *pg = PQconnectdb(dsn);
  if (!line_buf || PQstatus(pg) != CONNECTION_OK) {
    fprintf(stderr, "sf-pg-limit: connect: %s", PQerrorMessage(pg));
    goto fail;
  }
  PGresult *r = PQexec(pg, "SELECT to_regclass('changes') IS NOT NULL");
  bool changes = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
                 strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  if (exec_ok(pg, k_stage, PGRES_COMMAND_OK))
    goto fail;
  size_t cap = sizeof(k_apply) + sizeof(k_changes) + 16;
  commit_sql = malloc(cap);
  if (!commit_sql)
    goto fail;
  snprintf(commit_sql, cap, "%s%sCOMMIT", k_apply, changes ? k_changes : "");
  fprintf(stderr, "sf-pg-limit: %" PRIu64 " events, batches of %" PRIu64 ", tables transactions + inventory%s\n",
          events, batch, changes ? " + changes" : "");
  uint64_t t0 = bench_now_ns();
  uint64_t nb = 0;
  for (uint64_t done = 0; done < events; done += batch, nb++) {
    uint64_t n = events - done < batch ? events - done : batch;
    if (run_batch(pg, &gen, n, line_buf, line_cap, commit_sql))
      goto fail;
  }
  double secs = (double)(bench_now_ns() - t0) / 1e9;
  double rps = (double)events / secs;
  printf("pg limit: %" PRIu64 " events (rows of transactions + inventory%s) "
         "in %" PRIu64 " batches of %" PRIu64 " in %.2f s: %.0f events/s\n",
         events, changes ? " + changes" : "", nb, batch, secs, rps);
  if (json_out) {
    json_t *doc = json_pack("{s:I,s:I,s:f,s:f,s:b}", "events",
                            (json_int_t)events, "batch", (json_int_t)batch,
                            "seconds", secs, "events_per_s", rps, "changes",
                            changes);
    if (!doc || json_dump_file(doc, json_out, JSON_INDENT(1)))
      fprintf(stderr, "sf-pg-limit: cannot write %s\n", json_out);
    json_decref(doc);
  }
  status = 0;
fail:
  PQfinish(pg);
  free(commit_sql);
  free(line_buf);
  bench_gen_free(&gen);
  return status;
}
