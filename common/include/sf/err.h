/* err: the one error convention of stockflow.
 *
 * Functions return int: 0 on success, a negative SF_E* code on failure. One
 * X-macro list generates the enum, sf_strerror(), sf_err_name() and
 * sf_err_is_retriable(), so retry loops and the 503-versus-500 choice share
 * one truth. All functions here are pure and thread-safe. */
#ifndef SF_ERR_H
#define SF_ERR_H

#include <stdbool.h>

/* X(name, value, retriable, message) */
#define SF_ERR_MAP(X)                                 \
  X(NOMEM, -1, false, "out of memory")                \
  X(INVAL, -2, false, "invalid argument")             \
  X(IO, -3, true, "input/output error")               \
  X(NOTFOUND, -4, false, "not found")                 \
  X(EXISTS, -5, false, "already exists")              \
  X(TOOBIG, -6, false, "too large")                   \
  X(TRUNCATED, -7, false, "truncated input")          \
  X(PARSE, -8, false, "malformed input")              \
  X(CONFIG, -9, false, "bad configuration")           \
  X(KAFKA, -10, true, "kafka error")                  \
  X(KAFKA_FATAL, -11, false, "fatal kafka error")     \
  X(PG, -12, true, "postgresql error")                \
  X(TIMEOUT, -13, true, "timed out")                  \
  X(UNAVAILABLE, -14, true, "dependency unavailable") \
  X(CONFLICT, -15, false, "conflict")                 \
  X(STATE, -16, false, "invalid state")               \
  X(SCHEMA, -17, false, "schema mismatch")            \
  X(CANCELED, -18, false, "canceled")                 \
  X(INTERNAL, -19, false, "internal error")

typedef enum sf_err {
  SF_OK = 0,
#define SF__ERR_ENUM(name, value, retriable, msg) SF_E##name = (value),
  SF_ERR_MAP(SF__ERR_ENUM)
#undef SF__ERR_ENUM
} sf_err_t;

/* Human-readable message for code; never NULL ("unknown error" otherwise). */
const char *sf_strerror(int code);

/* Stable symbolic name, e.g. "SF_ENOMEM"; never NULL. */
const char *sf_err_name(int code);

/* True when retrying the same operation later may succeed (network, broker,
 * database); such failures map to HTTP 503, the others to 4xx/500. */
bool sf_err_is_retriable(int code);

#endif
