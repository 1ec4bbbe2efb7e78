/* cmd_schema: the wire format of the events the command service writes.
 *
 * Single-object encoding needs nothing but the codec. The Confluent wire
 * format needs the schema's id in a schema registry: at start the envelope
 * schema is registered under `<topic>-value` for the catalog and the stock
 * topic (a registry gives the same schema the same id; each topic keeps the
 * id it got anyway), on a libuv worker thread because the registry client
 * blocks. Until both ids are known the service is not ready (/readyz 503,
 * writes 503); a registry that does not answer is retried with backoff (1 s
 * doubling to 10 s), never a crash. The ids are then taught to the codec,
 * which encodes with them.
 *
 * Runs on the loop thread (the worker thread only talks to the registry).
 * No global state. */
#ifndef CMD_SCHEMA_H
#define CMD_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sf/event.h"
#include "sf/log.h"

typedef struct cmd_schema_opts {
  const char *format;       /* "single-object" or "confluent" */
  const char *registry_url; /* required for confluent; NULL or "" otherwise */
  const char *topic_catalog;
  const char *topic_stock;
} cmd_schema_opts_t;

typedef struct cmd_schema cmd_schema_t;

/* Checks o (its strings borrowed for the object's life) and creates the
 * object; codec (borrowed, used on the loop thread only) encodes the
 * events. Logs and returns SF_ECONFIG for an unknown format or confluent
 * without a registry URL; SF_ENOMEM. */
int cmd_schema_new(cmd_schema_t **out, uv_loop_t *loop,
                   const cmd_schema_opts_t *o, sf_event_codec_t *codec,
                   sf_log_t *log);

/* Starts the registration (confluent; single-object is ready at once).
 * Returns 0 or SF_ENOMEM. */
int cmd_schema_start(cmd_schema_t *s);

/* True when events can be encoded (false for NULL: closed). */
bool cmd_schema_ready(const cmd_schema_t *s);

/* Why it is not ready (for a 503), "" when it is. Owned by s. */
const char *cmd_schema_not_ready_reason(const cmd_schema_t *s);

/* The format events are written in. */
sf_event_format_t cmd_schema_format(const cmd_schema_t *s);

/* Encodes e for topic (which must be the catalog or the stock topic of
 * the options) in the configured format into a malloc'd buffer owned by
 * the caller. Returns 0, SF_EUNAVAILABLE (not ready) or the errors of
 * sf_event_encode. */
int cmd_schema_encode(cmd_schema_t *s, const sf_event_t *e, const char *topic,
                      uint8_t **out, size_t *out_len);

/* Stops retrying; the memory goes once the timer is closed and a
 * registration in flight has come back. NULL is a no-op. */
void cmd_schema_close(cmd_schema_t *s);

#endif
