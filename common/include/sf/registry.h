/* registry: a client of a schema registry's Confluent-compatible REST API.
 *
 * The Confluent wire format names an event's writer schema by an id that a
 * schema registry hands out (docs/events.md). This client does the two
 * calls stockflow needs: register a schema under a subject (the command
 * service, at start, for `<topic>-value`) and fetch the schema of an id
 * (every reader, once per id: the codec keeps what it learnt). The URL is
 * the base of the compatible API, e.g. http://127.0.0.1:18190/apis/ccompat/v7
 * for Apicurio Registry.
 *
 * Blocking HTTP through libcurl, bounded by the handle's timeout: call it
 * from a worker thread, never from an event loop. A handle is used by one
 * thread at a time (it keeps one curl handle and its connection); separate
 * handles are independent. Never prints: callers log sf_registry_error().
 *
 * Needs libcurl set up once per process, before threads start:
 * curl_global_init(CURL_GLOBAL_DEFAULT) (sf_service_run does it; a test or
 * tool that uses this module without it must call it itself). */
#ifndef SF_REGISTRY_H
#define SF_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "sf/event.h"

typedef struct sf_registry sf_registry_t;

/* Creates a client of the registry at url (copied; no trailing slash
 * needed) whose every call gives up after timeout_ms (> 0). Connects
 * lazily: a registry that is down is not an error here. Returns 0,
 * SF_EINVAL (NULL or empty url, timeout <= 0) or SF_ENOMEM. */
int sf_registry_new(sf_registry_t **out, const char *url, long timeout_ms);

/* Closes the connection and frees r; NULL is a no-op. */
void sf_registry_destroy(sf_registry_t *r);

/* Registers schema_json (borrowed) under subject (borrowed) and sets *id
 * to its id; registering the same schema again returns the same id.
 * Returns 0, SF_EUNAVAILABLE (cannot connect, timed out, 5xx: retriable),
 * SF_ECONFLICT (409: incompatible with the subject's compatibility rule),
 * SF_ESCHEMA (422: the registry refuses the schema), SF_EPARSE (an answer
 * that is not what the API says), SF_ENOMEM. */
int sf_registry_register(sf_registry_t *r, const char *subject,
                         const char *schema_json, uint32_t *id);

/* Fetches the schema of id: *schema_json gets a malloc'd NUL-terminated
 * JSON text owned by the caller. Returns 0, SF_ENOTFOUND (404: the
 * registry does not know the id), SF_EUNAVAILABLE, SF_EPARSE or
 * SF_ENOMEM. */
int sf_registry_fetch(sf_registry_t *r, uint32_t id, char **schema_json);

/* Makes codec c (borrowed) able to decode buf (len bytes, borrowed): when
 * buf is in the Confluent wire format with an id c has not learnt, fetches
 * that id's schema and teaches it to c. Anything else (single-object, a
 * known id, garbage) returns 0 at once and is left to sf_event_decode. r
 * may be NULL (no registry configured): then 0 too, and the decode of an
 * unknown id fails with SF_ESCHEMA. Returns 0, the errors of
 * sf_registry_fetch, or those of sf_event_codec_add_schema_id (SF_ESCHEMA,
 * SF_ECONFLICT: the id names a schema that is not an envelope). */
int sf_registry_learn(sf_registry_t *r, sf_event_codec_t *c,
                      const uint8_t *buf, size_t len);

/* What the last failed call of r met, for a log line ("" when none);
 * owned by r, valid until its next call. */
const char *sf_registry_error(const sf_registry_t *r);

/* The base URL r talks to (owned by r). */
const char *sf_registry_url(const sf_registry_t *r);

#endif
