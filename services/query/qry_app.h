/* qry_app: the query service as one object, so that main.c only wires.
 *
 * qry_app_new creates, in this order, the PostgreSQL pool, the HTTP server,
 * the authentication gate (on the same pool) and the service core
 * (qry_service: statements, routes, LISTEN); nothing listens yet.
 * qry_app_start listens. qry_app_stop stops in reverse: the service refuses
 * new work (503), cancels position waits and ends change streams while
 * statements already sent finish; once it is drained the pool closes, then
 * the HTTP server; done fires when every handle is closed, after which
 * qry_app_destroy frees everything. The same shape as cmd_app and
 * proj_app. Loop thread only. */
#ifndef QRY_APP_H
#define QRY_APP_H

#include <uv.h>

#include "qry_config.h"
#include "sf/log.h"

typedef struct qry_app qry_app_t;

/* Creates the service (nothing listens yet). loop, cfg and log are
 * borrowed for the app's life. Returns 0, SF_EINVAL (a bad listen
 * address), SF_ENOMEM or an error of the pool, the server or the service;
 * the reason is logged. On failure the pool's handles close when the loop
 * runs. */
int qry_app_new(qry_app_t **out, uv_loop_t *loop, const qry_settings_t *cfg,
                sf_log_t *log);

/* Listens on the configured address. Returns 0 or the error of
 * sf_http_listen (logged); then qry_app_stop and run the loop. */
int qry_app_start(qry_app_t *a);

/* Begins the shutdown (see above); done (may be NULL) fires once, on the
 * loop, when everything is closed. Calling again does nothing. */
void qry_app_stop(qry_app_t *a, void (*done)(void *ud), void *ud);

/* Frees the app: after done fired (or after a failed qry_app_new, never). */
void qry_app_destroy(qry_app_t *a);

#endif
