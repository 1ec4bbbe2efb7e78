/* qry_parse_pos: what the Parse facade remembers of each session's writes,
 * for read-your-writes (docs/parse-compat.md, "Read your own writes").
 *
 * A map from session token to the position tokens of its successful
 * writes: one token per topic and partition ("stock-3-1234",
 * "catalog-0-17"), the highest offset kept, at most QRY_PARSE_POS_MAX_TOKENS
 * (the longest list a /v1 min_position takes), as a comma-separated list a
 * read passes on as min_position. Bounded (the oldest session is forgotten
 * when full) and expiring (an entry not written for ttl_ms is forgotten:
 * by then the projector has long applied it). Time is passed in by the
 * caller, so the module is pure and tested without a clock. Not
 * thread-safe. */
#ifndef QRY_PARSE_POS_H
#define QRY_PARSE_POS_H

#include <stddef.h>
#include <stdint.h>

#define QRY_PARSE_POS_MAX_TOKENS 32

typedef struct qry_parse_pos qry_parse_pos_t;

/* max_sessions >= 1, ttl_ms >= 1. Returns 0, SF_EINVAL or SF_ENOMEM. */
int qry_parse_pos_new(qry_parse_pos_t **out, size_t max_sessions,
                      uint64_t ttl_ms);
void qry_parse_pos_destroy(qry_parse_pos_t *m);

/* Merges position (one token or a comma-separated list as /v1 answers it)
 * into session's list and restarts its expiry at now_ms. Tokens that do not
 * parse are ignored. session and position are copied. Returns 0, SF_EINVAL
 * (empty session, or no token of position parsed) or SF_ENOMEM. */
int qry_parse_pos_put(qry_parse_pos_t *m, const char *session,
                      const char *position, uint64_t now_ms);

/* session's list ("stock-3-12,catalog-0-7"), or NULL when none is known or
 * it expired (an expired entry is dropped). Borrowed until the next call
 * into m. */
const char *qry_parse_pos_get(qry_parse_pos_t *m, const char *session,
                              uint64_t now_ms);

/* Sessions held (expired ones not yet dropped included). */
size_t qry_parse_pos_size(const qry_parse_pos_t *m);

/* Merges the tokens of position into list (a comma-separated list, may be
 * ""), keeping the highest offset per topic and partition and at most
 * QRY_PARSE_POS_MAX_TOKENS (the least recently merged dropped first);
 * writes the result to out (cap bytes). Returns 0, SF_EINVAL (no token of
 * position parsed) or SF_ETOOBIG (out too small). Pure. */
int qry_parse_pos_merge(const char *list, const char *position, char *out,
                        size_t cap);

#endif
