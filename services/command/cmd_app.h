/* cmd_app: the command service: HTTP routes, command handling, and the
 * hand-off to the group-commit writer.
 *
 * A command is parsed and validated, decided against the in-memory state,
 * encoded as an Avro event, folded into the state at once (so the next
 * command sees it), and queued for the writer. Its HTTP answer waits for the
 * transaction that carries it: 201 with the event's position after the
 * commit, 503 if the commit failed (the writer then rebuilds the state from
 * the log, so the state is as if the command never happened; while it does,
 * writes answer 503 and /readyz 503).
 *
 * Everything here runs on the loop thread. */
#ifndef CMD_APP_H
#define CMD_APP_H

#include <uv.h>

#include "cmd_config.h"
#include "sf/log.h"

typedef struct cmd_app cmd_app_t;

/* Creates the service (nothing listens yet). cfg, loop and log are
 * borrowed for the app's life. */
int cmd_app_new(cmd_app_t **out, uv_loop_t *loop, const cmd_settings_t *cfg,
                sf_log_t *log);
/* Listens and starts the writer (which rebuilds the state). */
int cmd_app_start(cmd_app_t *a);
/* Stops listening, stops the writer (pending commands are answered),
 * closes handles; done fires on the loop when everything is closed. */
void cmd_app_stop(cmd_app_t *a, void (*done)(void *), void *ud);
void cmd_app_destroy(cmd_app_t *a);

#endif
