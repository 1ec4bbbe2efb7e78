/* service: the one shape of a stockflow main().
 *
 * Each service is an app object with new / start / stop / destroy (and an
 * optional wait); main.c parses its settings and hands the app's functions
 * to sf_service_run, which wires everything in a stated order: the logger,
 * process setup (SIGPIPE ignored, libsodium, libcurl's
 * curl_global_init before any thread starts), the loop, the app, SIGINT and
 * SIGTERM, start; run the loop; then stop the app on a signal, close the
 * signal handles, drain the loop, wait for the app and free in reverse.
 * The signal handles are unreferenced, so the loop also ends when the app
 * ends on its own (closing every handle of its own), as the projector does
 * when its worker dies or its rebuild is over.
 *
 * The process-wide setup happens here, called from main only; nothing is
 * kept after it returns. */
#ifndef SF_SERVICE_H
#define SF_SERVICE_H

#include <stdio.h>
#include <uv.h>

#include "sf/log.h"

/* The app's lifecycle; app is the object made by create. */
typedef struct sf_service_app {
  /* Creates the app (nothing runs yet); cfg, loop and log are borrowed for
   * its life. Returns 0 or a negative SF_E code (the reason logged). */
  int (*create)(const void *cfg, uv_loop_t *loop, sf_log_t *log, void **app);
  /* Starts it (listen, threads). Returns 0 or a negative code (logged). */
  int (*start)(void *app);
  /* Begins the shutdown; done fires on the loop once it is complete. */
  void (*stop)(void *app, void (*done)(void *ud), void *ud);
  /* After the loop ran dry: the exit status (0 or 1). NULL: 0. */
  int (*wait)(void *app);
  void (*destroy)(void *app);
} sf_service_app_t;

typedef struct sf_service_def {
  const char *prog;    /* "stockflow-query", for messages on err */
  const char *service; /* "query", the logger's service field */
  const sf_service_app_t *app;
} sf_service_def_t;

/* Runs the service with the parsed settings cfg (borrowed) and their log
 * level text; the logger writes to err, and so does a bad log level
 * (before there is a logger). Returns the process exit status: 0 after a
 * clean stop, 1 when something failed or wait said so, 2 for a bad log
 * level. */
int sf_service_run(const sf_service_def_t *def, const void *cfg,
                   const char *log_level, FILE *err);

#endif
