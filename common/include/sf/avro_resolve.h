/* avro_resolve: Avro schema resolution with reader defaults.
 *
 * A datum written with one schema (the writer's) is read as another (the
 * reader's) by the Avro specification's rules: records, enums and fixed
 * match by name, fields by name, a writer union branch goes to the first
 * reader branch it matches, numbers and text may be promoted (int -> long ->
 * float -> double, string <-> bytes), fields only the writer has are dropped
 * and each reader field the writer lacks takes the reader's default. avro-c
 * 1.11 cannot do this: its resolvers stop at a reader field the writer
 * lacks, which is the very case of an old event read by a new consumer, and
 * it keeps no defaults, so they come from the reader schema's JSON.
 *
 * A plan is compiled once per (writer, reader) pair and then copies a
 * generic value of the writer schema into a generic value of the reader
 * schema. Readers and plans are immutable after creation; a plan may be
 * executed by several threads at once on distinct values. */
#ifndef SF_AVRO_RESOLVE_H
#define SF_AVRO_RESOLVE_H

#include <avro.h>
#include <stddef.h>

/* The reader schema's record definitions and defaults. */
typedef struct sf_avro_reader sf_avro_reader_t;

/* Reads the record definitions of the reader schema JSON text json (len
 * bytes, borrowed for the call) into *out, owned by the caller. Returns 0,
 * SF_ENOMEM or SF_ESCHEMA (not JSON, a record without a name or fields, two
 * records with one unqualified name: defaults are found by it). */
int sf_avro_reader_new(const char *json, size_t len, sf_avro_reader_t **out);

void sf_avro_reader_destroy(sf_avro_reader_t *r);

/* Bytes the strings of every default may add to a datum: the sum of
 * (length + 1) over every string in the reader's defaults. */
size_t sf_avro_reader_default_text_bytes(const sf_avro_reader_t *r);

/* Sets every field of record value rec (of a record of the reader schema)
 * that has a default to it; a record the reader does not define is left
 * alone. Returns 0, SF_ENOMEM or SF_EINVAL (rec does not fit). */
int sf_avro_reader_fill_defaults(const sf_avro_reader_t *r, avro_value_t *rec);

/* A compiled (writer, reader) resolution. */
typedef struct sf_avro_plan sf_avro_plan_t;

/* Compiles the resolution of writer (schema, borrowed for the call) to
 * reader_schema, the avro-c schema of the JSON that defs was made from.
 * defs is borrowed until the plan is destroyed. Returns 0, SF_ENOMEM or
 * SF_ESCHEMA (the writer does not resolve: names or kinds differ, a type
 * cannot be promoted, a new reader field has no valid default). Union
 * branches and enum symbols only the writer has are not an error here: a
 * datum that uses one fails in sf_avro_plan_exec. */
int sf_avro_plan_new(const sf_avro_reader_t *defs, avro_schema_t writer,
                     avro_schema_t reader_schema, sf_avro_plan_t **out);

void sf_avro_plan_destroy(sf_avro_plan_t *p);

/* Copies w (a value of the writer schema) into r (a reset value of the
 * reader schema). Returns 0, SF_ENOMEM, SF_ESCHEMA (the datum uses a union
 * branch or an enum symbol the reader lacks) or SF_EPARSE (w does not fit
 * the plan, or bytes read as a string are not UTF-8 or hold a NUL). */
int sf_avro_plan_exec(const sf_avro_plan_t *p, avro_value_t *w,
                      avro_value_t *r);

#endif
