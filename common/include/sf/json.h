/* json: helpers over jansson for request bodies and answers.
 *
 * Parsing rejects duplicate keys and anything but an object at the top.
 * Getters validate type and range and, on failure, write a one-line reason
 * naming the field into err (err_cap bytes) so the caller can answer 422
 * validation_failed with it. All functions are pure and thread-safe. */
#ifndef SF_JSON_H
#define SF_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses body as a JSON object. Returns 0 with *out owned by the caller, or
 * SF_EPARSE (malformed, not an object, duplicate key) with err filled. */
int sf_json_parse_object(const char *body, size_t len, json_t **out, char *err,
                         size_t err_cap);

/* String field key of obj. Missing or null: SF_ENOTFOUND if required (err
 * filled), else 0 with *out = NULL. Wrong type, empty when required, longer
 * than max_len bytes or containing control characters: SF_EINVAL. *out is
 * borrowed from obj. */
int sf_json_get_string(const json_t *obj, const char *key, bool required,
                       size_t max_len, const char **out, char *err,
                       size_t err_cap);

/* Integer field in [min, max]. A real (1.5), a string, a boolean or a value
 * out of range is SF_EINVAL; missing follows the rule of get_string (then
 * *out is left untouched). */
int sf_json_get_int(const json_t *obj, const char *key, bool required,
                    int64_t min, int64_t max, int64_t *out, bool *present,
                    char *err, size_t err_cap);

/* Fails with SF_EINVAL (err names the first one) when obj has a key not in
 * the NULL-terminated list allowed. */
int sf_json_only_keys(const json_t *obj, const char *const *allowed, char *err,
                      size_t err_cap);

/* Serializes compactly (JSON_COMPACT, keys in insertion order). Returns a
 * malloc'd string or NULL. */
char *sf_json_dumps(const json_t *v);

/* Formats microseconds since the epoch as RFC 3339 UTC with microseconds
 * ("2026-11-26T15:00:00.123456Z") into out (at least 32 bytes). */
void sf_json_format_time(int64_t unix_us, char *out, size_t cap);

/* Parses an RFC 3339 time (Z or +hh:mm offset, optional fraction) into
 * microseconds since the epoch. Returns 0 or SF_EINVAL. */
int sf_json_parse_time(const char *text, int64_t *unix_us);

/* Validates a decimal price string: digits, optional '.' and 1..4 fraction
 * digits, no sign, at most 15 integer digits. Returns 0 or SF_EINVAL. */
int sf_json_check_decimal(const char *text);

#endif
