/* avro: what avro-c 1.11 lacks for reading untrusted Avro.
 *
 * The CRC-64-AVRO (Rabin) fingerprint and the schema's Parsing Canonical
 * Form it is computed over (avro-c has neither), and a bounds-checking walk
 * of a binary datum over its schema: avro-c allocates whatever a crafted
 * length asks for (AVRO-4293), so every length, count, union and enum index
 * is proven sane against the bytes that remain before avro-c reads them.
 * The walk is compiled once per schema into a flat node table. Everything
 * here is pure: no I/O, no global state; a compiled walk is immutable and
 * may be used by several threads at once. */
#ifndef SF_AVRO_H
#define SF_AVRO_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting bound of every recursive walk over a schema or a datum. */
#define SF_AVRO_MAX_DEPTH 64
/* The largest fixed type a walk accepts (bytes). */
#define SF_AVRO_MAX_FIXED (1024 * 1024)

/* The CRC-64-AVRO (Rabin) fingerprint of bytes, as the Avro spec defines. */
uint64_t sf_avro_crc64(const void *bytes, size_t len);

/* The Parsing Canonical Form of the schema JSON text json (len bytes,
 * borrowed): primitives in simple form, full names, only name, type, fields,
 * symbols, items, values and size, in that order, no whitespace. Sets *out
 * to a malloc'd NUL-terminated string owned by the caller. Returns 0 or
 * SF_ESCHEMA (not a schema; also when memory runs out). */
int sf_avro_canonical_form(const char *json, size_t len, char **out);

/* The fingerprint of a schema: CRC-64-AVRO of the Parsing Canonical Form of
 * the JSON text json (len bytes, borrowed). Returns 0 and sets *out, or
 * SF_ESCHEMA (not a schema; also when memory runs out while canonicalising). */
int sf_avro_schema_fingerprint(const char *json, size_t len, uint64_t *out);

/* The little-endian 8 bytes of fp, as single-object encoding writes it. */
void sf_avro_fingerprint_bytes(uint64_t fp, uint8_t out[8]);

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, at most
 * U+10FFFF. Avro strings are UTF-8 and other implementations (Java, Python)
 * fail or substitute on anything else. */
bool sf_avro_utf8_valid(const uint8_t *s, size_t n);

/* A compiled bounds-checking walk of one schema. */
typedef struct sf_avro_walk sf_avro_walk_t;

/* Compiles schema (borrowed; it must outlive the walk, which keeps pointers
 * to its named types only while compiling) into *out, owned by the caller.
 * Returns 0, SF_ENOMEM or SF_ESCHEMA (a type the walk cannot check, nesting
 * deeper than SF_AVRO_MAX_DEPTH, a fixed over SF_AVRO_MAX_FIXED, an empty
 * union or enum). */
int sf_avro_walk_new(avro_schema_t schema, sf_avro_walk_t **out);

void sf_avro_walk_destroy(sf_avro_walk_t *w);

/* Checks that buf (len bytes, borrowed) is exactly one datum of the walk's
 * schema: every varint at most 10 bytes, ints in range, booleans 0 or 1,
 * every length and count within the bytes that remain, union and enum
 * indexes in range, strings (and map keys) UTF-8 without NUL, block sizes
 * that match, at most max_items array and map items in all, nothing after
 * the datum. Returns 0, SF_ETRUNCATED (a length or count exceeds the bytes
 * that remain), SF_ETOOBIG (over max_items) or SF_EPARSE (anything else,
 * including trailing bytes). */
int sf_avro_walk_check(const sf_avro_walk_t *w, const uint8_t *buf,
                       size_t len, size_t max_items);

#endif
