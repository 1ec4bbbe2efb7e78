/* proj_pg: the projector's own blocking PostgreSQL connection.
 *
 * The projector's work is one transaction per batch, and a batch cannot
 * start before the previous one committed (its offsets depend on it), so
 * there is nothing to overlap: one blocking libpq connection on the worker
 * thread is the simplest correct tool (sf_pg is the loop-driven pool for the
 * request-serving services). It prepares the statements of proj_batch on
 * connect, runs a plan inside BEGIN ... COMMIT and reads the stored offsets.
 *
 * One thread at a time (the worker's). No global state. */
#ifndef PROJ_PG_H
#define PROJ_PG_H

#include <stdbool.h>
#include <stddef.h>

#include "proj_batch.h"
#include "sf/kafka.h"
#include "sf/log.h"

typedef struct proj_pg proj_pg_t;

/* Why the last operation failed (for logs): sqlstate is "" for connection
 * errors; stmt names the step ("connect", "BEGIN", a statement name, ...). */
typedef struct proj_pg_error {
  char sqlstate[6];
  char stmt[32];
  char message[512];
} proj_pg_error_t;

/* Creates the handle without connecting. dsn, group and log are borrowed
 * and must outlive it. Returns 0 or SF_ENOMEM. */
int proj_pg_new(proj_pg_t **out, const char *dsn, const char *group,
                sf_log_t *log);
void proj_pg_destroy(proj_pg_t *pg);

/* Connects (dropping any previous connection) and prepares the statements.
 * Blocks up to the connect timeout. Returns 0 or SF_EPG with err filled. */
int proj_pg_connect(proj_pg_t *pg, proj_pg_error_t *err);
/* True when the connection is up (as far as libpq knows). */
bool proj_pg_connected(const proj_pg_t *pg);

/* Sets tps[i].offset to the stored next_offset of the group for that topic
 * x partition, or SF_KAFKA_OFFSET_BEGINNING when none is stored. Connects
 * first if needed. Returns 0 or SF_EPG (tps unchanged). */
int proj_pg_load_offsets(proj_pg_t *pg, sf_kafka_tp_t *tps, size_t n,
                         proj_pg_error_t *err);

/* Runs every statement of plan with rows in one transaction, ending with
 * the offsets. On any failure rolls back and returns SF_EPG with err
 * filled; the caller may call again with the same plan (after
 * proj_pg_connect when the connection is lost). Returns 0 on commit. */
int proj_pg_apply(proj_pg_t *pg, const proj_plan_t *plan,
                  proj_pg_error_t *err);

#endif
