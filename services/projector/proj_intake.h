/* proj_intake: the batch in hand, from poll to plan.
 *
 * Both the live worker and the rebuild consume the same way: poll up to
 * cap messages (or until wait_ms after the first one), decode each into an
 * event, and build the batch's proj_plan_t. This module holds the arrays
 * for that (messages, events, decode results, plan inputs) and the codec,
 * so the two paths cannot drift apart. Messages that do not decode become
 * PROJ_POISON inputs and keep their decode error for the dead letter.
 *
 * A value the caller owns (embed, init, use, free); one thread at a time.
 * No global state. */
#ifndef PROJ_INTAKE_H
#define PROJ_INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proj_batch.h"
#include "sf/event.h"
#include "sf/kafka.h"
#include "sf/log.h"
#include "sf/registry.h"

typedef struct proj_intake {
  size_t cap; /* messages per batch */
  size_t n;   /* messages in hand: msgs[0..n) owned until release */
  sf_kafka_msg_t *msgs;
  sf_event_t *events;
  proj_input_t *inputs;
  int *decode_rc; /* per message: 0 or the sf_event_decode error */
  proj_plan_t plan;
  sf_event_codec_t *codec;
  sf_registry_t *registry; /* NULL when no registry is configured */
} proj_intake_t;

/* Allocates room for cap (>= 1) messages, the codec and, when
 * registry_url (borrowed) is neither NULL nor "", a schema registry client.
 * Returns 0, SF_EINVAL, SF_ENOMEM or SF_ESCHEMA; on failure nothing needs
 * freeing. */
int proj_intake_init(proj_intake_t *b, size_t cap, const char *registry_url);

/* Makes the codec able to decode every message in hand that is in the
 * Confluent wire format: fetches the schema of each schema id it has not
 * learnt from the registry. A registry that does not answer, or does not
 * know the id, is waited for (logged, retried with backoff until
 * stop(ud)): a valid event must not be dead-lettered because the registry
 * blinked. An id whose schema is not an envelope is left for the decode to
 * dead-letter. Without a registry, nothing to do. Returns 0, or
 * SF_ECANCELED when stop(ud) came first. */
int proj_intake_learn(proj_intake_t *b, bool (*stop)(void *ud), void *ud,
                      sf_log_t *log);
/* Releases the batch and frees everything. Safe on a zeroed value. */
void proj_intake_free(proj_intake_t *b);

/* Polls into the batch until cap messages are in hand, wait_ms after the
 * first one, or stop(ud) returns true (checked between polls); returns with
 * n == 0 when nothing came within idle_ms. *t0 gets the monotonic ms of the first message. Returns 0 or
 * SF_EKAFKA_FATAL. */
int proj_intake_fill(proj_intake_t *b, sf_kafka_consumer_t *c, int wait_ms,
                     int idle_ms, bool (*stop)(void *ud), void *ud,
                     int64_t *t0, sf_log_t *log);

/* Decodes msgs[0..n) and builds the plan for group (borrowed). Logs every
 * message that will not be applied (poison and invalid as errors, skipped
 * and duplicates at debug). Returns 0 or SF_ENOMEM. */
int proj_intake_plan(proj_intake_t *b, const char *group, sf_log_t *log);

/* True when input i is a dead letter (did not decode, or unstorable). */
bool proj_intake_is_dead(const proj_intake_t *b, size_t i);

/* The x-error text of dead input i into buf: "SF_EPARSE: malformed input"
 * for a decode failure, "SF_EINVAL: <reason>" for an unstorable event.
 * Returns buf. */
const char *proj_intake_error(const proj_intake_t *b, size_t i, char *buf,
                              size_t cap);

/* Releases the messages and events in hand (n becomes 0). */
void proj_intake_release(proj_intake_t *b);

/* Monotonic milliseconds. */
int64_t proj_now_ms(void);

#endif
