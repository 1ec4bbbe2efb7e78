/* cmd_app: the command service's composition root: its lifecycle (HTTP
 * server, accounts, writer lanes, bus intake, expiry sweeper), the
 * operations routes (/healthz, /readyz, /metrics) and the registration of
 * the handler modules' routes. The write pipeline those handlers go through
 * is cmd_pipeline; cmd_app owns it, feeds it the state the lanes rebuild
 * and commits its units on the lanes. Everything here runs on the loop
 * thread. */
#ifndef CMD_APP_H
#define CMD_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "cmd_config.h"
#include "sf/log.h"

typedef struct cmd_app cmd_app_t;

/* Creates the service (nothing listens yet). cfg, loop and log are
 * borrowed for the app's life. */
int cmd_app_new(cmd_app_t **out, uv_loop_t *loop, const cmd_settings_t *cfg,
                sf_log_t *log);
/* Listens and starts the writer lanes (the state is rebuilt once every
 * lane has initialised its transactions). */
int cmd_app_start(cmd_app_t *a);
/* Stops the writer (pending commands are answered), stops listening,
 * closes handles; done fires on the loop when everything is closed. */
void cmd_app_stop(cmd_app_t *a, void (*done)(void *), void *ud);
void cmd_app_destroy(cmd_app_t *a);

/* Whether the instance stopped because it can no longer write (a lane was
 * fenced by another instance with the same transactional ids): the app
 * then stops by itself and main exits non-zero so that a supervisor
 * restarts it. */
bool cmd_app_failed(const cmd_app_t *a);

/* The writer lanes the settings ask for (writer-lanes; 0: one per core). */
size_t cmd_app_lane_count(const cmd_settings_t *cfg);

#endif
