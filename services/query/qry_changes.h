/* qry_changes: GET /v1/changes, the stream of read-model changes, as
 * Server-Sent Events or over a WebSocket.
 *
 * One hub per service. A subscriber starts with one statement
 * (QRY_SQL_CHANGES_START: the filter's store/product exist, the resume point
 * is not pruned, and the optional snapshot with the changes id it reflects,
 * all from one MVCC snapshot), then CATCHES UP with pages of its own
 * (QRY_SQL_CHANGES_PAGE, paced by how fast the client reads) until it has
 * seen everything the hub has fetched, and then is LIVE: the hub LISTENs on
 * stockflow_changes and, per notification, runs ONE shared fetch
 * (QRY_SQL_CHANGES_NEXT, 1000 rows at a time until caught up) whose rows
 * become refcounted events fanned out to every live subscriber whose filter
 * matches. Each subscriber keeps a cursor (every id <= cursor is handled),
 * so the handover from catch-up to live neither loses nor repeats an id.
 *
 * Slow clients: a live subscriber whose unsent bytes (socket queue plus its
 * own queue) would pass max_buffer gets a final "overflow" message naming
 * the last change id it was sent, and is disconnected; a subscriber whose
 * socket makes no progress for 4 heartbeat periods is cut off the same way.
 * Heartbeats (SSE comment ": ping", WebSocket ping) go out when nothing else
 * was written for heartbeat_ms. A safety fetch runs every poll_ms while
 * subscribers are live, in case a notification was lost.
 *
 * Lifetimes: a subscriber is refcounted (its stream, each write in flight,
 * its page query); it is freed when the last goes, never while a caller up
 * the stack still uses it. Loop thread only; not thread-safe. */
#ifndef QRY_CHANGES_H
#define QRY_CHANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "qry_call.h"
#include "qry_event.h"
#include "qry_ws.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"

typedef struct qry_changes qry_changes_t;

typedef struct qry_changes_opts {
  size_t max_buffer;     /* STOCKFLOW_STREAM_MAX_BUFFER bytes, > 0 */
  uint64_t heartbeat_ms; /* STOCKFLOW_STREAM_HEARTBEAT_MS, > 0 */
  uint64_t poll_ms;      /* safety fetch period; 1000 when 0 */
  int page_rows;         /* rows per fetch or page; 1000 when 0 */
} qry_changes_opts_t;

typedef struct qry_changes_counters {
  uint64_t notifications;   /* NOTIFY stockflow_changes received */
  uint64_t fetches;         /* shared fetches run */
  uint64_t fetched;         /* changes read by shared fetches */
  uint64_t fanned_out;      /* change events queued to live subscribers */
  uint64_t pages;           /* catch-up pages run */
  uint64_t opened;          /* streams started */
  uint64_t overflows;       /* subscribers cut off for their buffer */
  uint64_t stalls;          /* subscribers cut off for making no progress */
  size_t open_sse, open_ws; /* streams open now */
  size_t open_listeners;    /* listeners (qry_changes_listen) open now */
  size_t live;              /* of which live (caught up) */
} qry_changes_counters_t;

/* Creates the hub. loop, pg, calls (for qry_call_begin) and log are borrowed
 * and must outlive it. The statements of qry_sql.h must be prepared on pg.
 * Returns 0, SF_EINVAL or SF_ENOMEM. */
int qry_changes_new(qry_changes_t **out, uv_loop_t *loop, sf_pg_t *pg,
                    qry_calls_t *calls, const qry_changes_opts_t *opts,
                    sf_log_t *log);

/* Adds GET /v1/changes to http. Returns 0 or the error of sf_http_route. */
int qry_changes_register(qry_changes_t *h, sf_http_server_t *http);

/* NOTIFY stockflow_changes arrived; payload is the highest id written (a
 * payload that does not parse just means "something new"). */
void qry_changes_notify(qry_changes_t *h, const char *payload);

/* Ends every stream (WebSocket close 1001), stops the hub's timer and takes
 * no more subscribers. idle fires once no query or handle of the hub is
 * left (possibly before this returns). */
void qry_changes_shutdown(qry_changes_t *h, void (*idle)(void *ud), void *ud);

/* Ends every open stream of user_id at once (logout, role or store change):
 * the client reconnects and is authorized again. */
void qry_changes_revoke_user(qry_changes_t *h, const char *user_id);

/* Checks a WebSocket upgrade request (Upgrade, Connection, version 13, a
 * well-formed Sec-WebSocket-Key) and computes Sec-WebSocket-Accept into
 * accept_key. On a bad request answers it (400, 426 or 500) and returns
 * false. */
bool qry_changes_ws_handshake(sf_http_req_t *req,
                              char accept_key[QRY_WS_ACCEPT_LEN + 1]);

/* ---- listeners: the change stream for another protocol ----
 *
 * A listener is a subscriber of the hub without a socket of its own (the
 * Parse LiveQuery server, qry_livequery.c, runs one per subscription): it
 * resumes after a change id with the same paced catch-up pages and then
 * goes live on the shared fetch exactly like a stream, but each change
 * event is handed to the consumer's sink instead of being written. The
 * consumer owns the socket, its heartbeats and stall detection; the hub
 * still cuts a listener off when the consumer's unsent bytes (sink
 * pending) plus its queue would pass max_buffer. */

typedef struct qry_changes_listener qry_changes_listener_t;

typedef enum qry_changes_end {
  QRY_CHANGES_END_OVERFLOW, /* the consumer was too slow */
  QRY_CHANGES_END_EXPIRED,  /* the resume point was pruned meanwhile */
  QRY_CHANGES_END_FAILED,   /* database error, out of memory, or the sink
                               refused an event */
  QRY_CHANGES_END_SHUTDOWN  /* the hub is shutting down */
} qry_changes_end_t;

typedef struct qry_changes_sink {
  /* One change event (kind QRY_EVENT_CHANGE), in id order, each id once;
   * e is borrowed for the call. Returns 0, or non-zero to end the listener
   * (end then fires with QRY_CHANGES_END_FAILED). */
  int (*event)(void *ud, const qry_event_t *e);
  /* Bytes the consumer holds unsent (its socket queue). */
  size_t (*pending)(void *ud);
  /* The hub ended the listener; last_sent is the last change id handed to
   * event (or the resume point). Fires at most once, never after
   * qry_changes_unlisten; the listener is gone when it fires. */
  void (*end)(void *ud, qry_changes_end_t why, int64_t last_sent);
} qry_changes_sink_t;

/* Starts a listener of the changes with id > after that pass filter
 * (borrowed, copied). sink (borrowed, must outlive the listener) and ud are
 * the consumer's. Events are delivered from the loop, never before this
 * returns. Returns 0, SF_ESTATE (the hub is shutting down), SF_EIO (the
 * first page could not be queued: database unavailable) or SF_ENOMEM. */
int qry_changes_listen(qry_changes_t *h, const qry_filter_t *filter,
                       int64_t after, const qry_changes_sink_t *sink,
                       void *ud, qry_changes_listener_t **out);

/* The consumer's socket made room: delivers queued events and continues a
 * paced catch-up. */
void qry_changes_listener_kick(qry_changes_listener_t *l);

/* Ends a listener; its end callback does not fire. NULL is ignored. */
void qry_changes_unlisten(qry_changes_listener_t *l);

/* Queries in flight plus open handles of the hub. */
size_t qry_changes_pending(const qry_changes_t *h);

void qry_changes_stats(const qry_changes_t *h, qry_changes_counters_t *out);

/* Frees the hub: after qry_changes_shutdown and a loop run to its idle
 * callback, or directly when no stream was ever opened. Subscribers still
 * draining their last writes free themselves. */
void qry_changes_destroy(qry_changes_t *h);

#endif
