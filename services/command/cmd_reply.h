/* cmd_reply: the answer body of a committed command, built from its events
 * and the state right after they were folded.
 *
 * The same function builds the answer when the command commits and when the
 * state is rebuilt from the log (to remember the answers of idempotency
 * keys), so a retry after a restart gets the first answer byte for byte.
 * The body has no "position"; the caller appends it last (cmd_reply_finish).
 * Pure; one thread at a time. */
#ifndef CMD_REPLY_H
#define CMD_REPLY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cmd_state.h"
#include "sf/event.h"

/* Builds the body for the events of one command (in the order the command
 * produced them: a transfer is out then in) and sets *status (200 or 201).
 * Returns a new reference, or NULL for an event list no command produces. */
json_t *cmd_reply_build(const cmd_state_t *s, const sf_event_t *const *evs,
                        size_t n, int *status);

/* Formats one position, "stock-3-17" or "catalog-0-5", into out. */
void cmd_reply_position(char *out, size_t cap, bool catalog, int32_t partition,
                        int64_t offset);

/* Adds "position" (positions joined by commas) and serializes the body the
 * way it is sent. Returns a malloc'd string or NULL; takes no ownership. */
char *cmd_reply_finish(json_t *body, const char *const *positions, size_t n);

#endif
