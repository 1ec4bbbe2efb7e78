/* qry_livequery: the Parse LiveQuery server on GET /parse (a WebSocket),
 * fed by the change stream (issue 11 part 3; docs/parse-compat.md, "Live
 * queries").
 *
 * A connection speaks Parse Server's LiveQuery protocol: "connect" (the
 * application id is checked, the session token -- a stockflow bearer
 * token -- looked up through the authentication gate) is answered
 * "connected"; each "subscribe" (class Inventory, a where the pure module
 * qry_livequery_match evaluates) becomes one listener of the change hub
 * (qry_changes_listen) that starts from a snapshot of the inventory rows in
 * one MVCC snapshot with its change id, so that each change is turned into
 * create / update / enter / leave by comparing the row before and after it.
 * A viewer receives only the rows of its stores.
 *
 * Gap-free resume: when a connection ends, each subscription's position
 * (last change id handed to the socket) and row state are kept for
 * resume_ms under (installationId, requestId, query). A reconnecting SDK
 * that subscribes again with the same three gets the changes since then
 * first, none lost or repeated, then the live ones.
 *
 * Heartbeats (WebSocket ping) and the stall cut-off are the change
 * stream's; a connection whose unsent bytes pass the stream buffer limit is
 * closed (1008). Logout or a role change closes the user's connections.
 * Loop thread only; not thread-safe. */
#ifndef QRY_LIVEQUERY_H
#define QRY_LIVEQUERY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "qry_changes.h"
#include "sf/authn.h"
#include "sf/http.h"
#include "sf/log.h"
#include "sf/pg.h"

typedef struct qry_livequery qry_livequery_t;

typedef struct qry_livequery_opts {
  const char *app_id;    /* STOCKFLOW_PARSE_APP_ID (borrowed) */
  uint64_t resume_ms;    /* STOCKFLOW_PARSE_LIVEQUERY_RESUME_MS; 0: none */
  size_t resume_max;     /* STOCKFLOW_PARSE_LIVEQUERY_RESUME_MAX entries */
  size_t max_buffer;     /* STOCKFLOW_STREAM_MAX_BUFFER */
  uint64_t heartbeat_ms; /* STOCKFLOW_STREAM_HEARTBEAT_MS, > 0 */
} qry_livequery_opts_t;

typedef struct qry_livequery_counters {
  size_t open;           /* connections open now */
  size_t subscriptions;  /* subscriptions open now */
  uint64_t resumed;      /* subscriptions that resumed from a kept point */
  uint64_t cut_off;      /* connections closed for overflow or stall */
  size_t resume_entries; /* resume points kept now */
} qry_livequery_counters_t;

/* Creates the server. loop, pg, hub, authn (NULL: every connect is refused
 * 209) and log are borrowed and must outlive it; opts is copied (app_id
 * stays borrowed). Returns 0, SF_EINVAL or SF_ENOMEM. */
int qry_livequery_new(qry_livequery_t **out, uv_loop_t *loop, sf_pg_t *pg,
                      qry_changes_t *hub, sf_authn_t *authn,
                      const qry_livequery_opts_t *opts, sf_log_t *log);

/* Adds GET /parse (exactly) to http. Returns 0 or the error of
 * sf_http_route. */
int qry_livequery_register(qry_livequery_t *lq, sf_http_server_t *http);

/* Closes every connection of user_id (1008): logout, role or store change.
 * The SDK reconnects and its token is checked again. */
void qry_livequery_revoke_user(qry_livequery_t *lq, const char *user_id);

/* Closes every connection (1001) and takes no more; idle fires once no
 * query or handle is left (possibly before this returns). */
void qry_livequery_shutdown(qry_livequery_t *lq, void (*idle)(void *ud),
                            void *ud);

/* Queries in flight plus open handles. */
size_t qry_livequery_pending(const qry_livequery_t *lq);

void qry_livequery_stats(const qry_livequery_t *lq,
                         qry_livequery_counters_t *out);

/* Frees the server after qry_livequery_shutdown and a loop run to its idle
 * callback (or when no connection was ever opened). */
void qry_livequery_destroy(qry_livequery_t *lq);

#endif
