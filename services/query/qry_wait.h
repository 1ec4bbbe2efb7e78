/* qry_wait: read-your-writes. Waits until the projector has applied every
 * position of a list (projector_offsets.next_offset > offset for the group,
 * topic and partition of each), until a deadline.
 *
 * This is the only place that knows how "applied" is observed: one
 * QRY_SQL_POSITIONS check when the wait starts, one more each time
 * qry_waits_notify reports that the projector committed (the service calls
 * it on NOTIFY stockflow_offsets), and a slow safety re-check every
 * interval_ms in case a notification was lost (the listening connection was
 * down). No busy polling.
 *
 * A waiter set belongs to one loop and one pool (both borrowed). Everything
 * runs on the loop thread; not thread-safe. */
#ifndef QRY_WAIT_H
#define QRY_WAIT_H

#include <stdint.h>
#include <uv.h>

#include "qry_params.h"
#include "sf/log.h"
#include "sf/pg.h"

typedef struct qry_waits qry_waits_t;
typedef struct qry_wait qry_wait_t;

typedef enum qry_wait_outcome {
  QRY_WAIT_APPLIED = 0, /* the position is in the read model */
  QRY_WAIT_TIMEOUT,     /* max_wait_ms passed first */
  QRY_WAIT_ERROR,       /* PostgreSQL failed or is unreachable */
  QRY_WAIT_CANCELED     /* qry_wait_cancel or qry_waits_cancel_all */
} qry_wait_outcome_t;

/* Fires exactly once per successful qry_wait_start, on the loop, never from
 * inside qry_wait_start; the waiter is freed right after it returns. */
typedef void (*qry_wait_cb)(void *ud, qry_wait_outcome_t outcome);

typedef struct qry_wait_opts {
  const char *group;         /* projector consumer group (borrowed) */
  const char *topic_catalog; /* topic of "catalog-" tokens (borrowed) */
  const char *topic_stock;   /* topic of "stock-" tokens (borrowed) */
  uint64_t max_wait_ms;      /* give up after this long */
  uint64_t interval_ms;      /* safety re-check period; 250 when 0 */
} qry_wait_opts_t;

/* Creates a waiter set. loop, pg and log are borrowed and must outlive it;
 * the strings of opts too. QRY_SQL_POSITION must be prepared on pg. Returns
 * 0, SF_EINVAL or SF_ENOMEM. */
int qry_waits_new(qry_waits_t **out, uv_loop_t *loop, sf_pg_t *pg,
                  const qry_wait_opts_t *opts, sf_log_t *log);

/* Starts waiting until every one of the n positions in pos (copied; 1 to
 * QRY_POSITIONS_MAX) is applied. On 0, *handle (may be NULL) identifies the
 * wait until cb fires. Returns SF_EINVAL (bad arguments), SF_ENOMEM or
 * SF_EUNAVAILABLE (the pool refused the query) without ever firing cb. */
int qry_wait_start(qry_waits_t *ws, const qry_position_t *pos, size_t n,
                   qry_wait_cb cb, void *ud, qry_wait_t **handle);

/* The projector committed offsets (NOTIFY stockflow_offsets): every pending
 * wait checks once more (a wait whose check is in flight checks again when
 * that one answers, so a commit between its snapshot and the notification
 * is not missed). */
void qry_waits_notify(qry_waits_t *ws);

/* Ends a wait early: cb fires (later, on the loop) with QRY_WAIT_CANCELED
 * unless it already has an outcome. The handle is invalid once cb fired. */
void qry_wait_cancel(qry_wait_t *w);

/* Cancels every pending wait (shutdown). */
void qry_waits_cancel_all(qry_waits_t *ws);

/* Sets a hook called (on the loop) each time the number of pending waits
 * drops to zero; NULL clears it. Used to drain at shutdown. */
void qry_waits_set_idle_cb(qry_waits_t *ws, void (*cb)(void *ud), void *ud);

/* Number of waits not yet finished (including their close). */
size_t qry_waits_pending(const qry_waits_t *ws);

/* Counters for /metrics: waits started, timeouts, checks (queries) made,
 * notifications received. */
typedef struct qry_waits_counters {
  uint64_t started, timeouts, checks, notifications;
} qry_waits_counters_t;
void qry_waits_stats(const qry_waits_t *ws, qry_waits_counters_t *out);

/* Frees the set. Every wait must have completed (qry_waits_pending() == 0,
 * i.e. run the loop after qry_waits_cancel_all). */
void qry_waits_destroy(qry_waits_t *ws);

#endif
