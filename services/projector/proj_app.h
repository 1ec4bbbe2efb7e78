/* proj_app: the projector as one object, so that main.c only wires.
 *
 * In service mode proj_app_new creates, in this order, the status, the
 * worker (consumer and PostgreSQL handle, no thread yet), the HTTP server
 * with /healthz, /readyz and /metrics, and the uv_async through which the
 * worker's end wakes the loop; proj_app_start listens and starts the worker
 * thread (consume -> apply). With cfg->rebuild it runs the one-shot rebuild
 * instead (proj_rebuild, on a thread of its own; nothing listens) and ends
 * once the rebuilt tables are switched in.
 *
 * proj_app_stop asks the worker (or the rebuild) to stop and closes the
 * server; done fires on the loop once every handle of the app is closed.
 * The app also ends on its own, closing its handles, when the worker dies
 * or the rebuild is over: then the loop runs dry without done (main keeps
 * its signal handles unreferenced for that). After the loop, proj_app_wait
 * joins the thread and says how it ended; then proj_app_destroy. The same
 * shape as cmd_app and qry_app. Loop thread only. */
#ifndef PROJ_APP_H
#define PROJ_APP_H

#include <uv.h>

#include "proj_config.h"
#include "sf/log.h"

typedef struct proj_app proj_app_t;

/* Creates the app (nothing runs yet). loop, cfg and log are borrowed for
 * the app's life. Returns 0, SF_EINVAL (a bad listen address), SF_ENOMEM or
 * an error of the worker, the rebuild or the server; the reason is logged. */
int proj_app_new(proj_app_t **out, uv_loop_t *loop, const proj_config_t *cfg,
                 sf_log_t *log);

/* Listens and starts the worker thread, or starts the rebuild thread.
 * Returns 0 or an error (logged); then proj_app_stop and run the loop. */
int proj_app_start(proj_app_t *a);

/* Begins the shutdown (see above); done (may be NULL) fires once, on the
 * loop, when every handle of the app is closed. Calling again, or after the
 * app ended on its own, only records done when it has not fired yet. */
void proj_app_stop(proj_app_t *a, void (*done)(void *ud), void *ud);

/* After the loop ran dry: joins the thread and returns 0 when the worker
 * stopped on request or the rebuild was switched in, else 1 (the worker
 * died, the rebuild failed or was stopped, or nothing was started). */
int proj_app_wait(proj_app_t *a);

/* Frees the app, after proj_app_wait (or after a failed start and the loop
 * run that closed it). */
void proj_app_destroy(proj_app_t *a);

#endif
