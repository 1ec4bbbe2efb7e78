/* qry_parse_query: a Parse query -> ONE parameterized SQL text over the
 * read models, and its result rows -> Parse objects (docs/parse-compat.md,
 * "Classes" and "Queries").
 *
 * Each Parse class has a fixed field table (key, type, pointer target) and
 * a fixed base SELECT over the read-model tables whose columns are named
 * after the Parse keys (times as bigint microseconds, so comparisons are
 * exact) and which is scoped to the caller's stores by parameter $1 (a
 * PostgreSQL uuid[] text, or NULL: every store), as the /v1 lists are.
 * qry_pq_build checks a query (where, order, limit, skip, keys, include,
 * count; or one object id) against the table and writes the SQL around the
 * base: column names only ever come from the table, every value from the
 * request is a parameter. A query the facade refuses gives the Parse code
 * and message to answer (102 INVALID_QUERY, 105 INVALID_KEY_NAME, 111
 * INCORRECT_TYPE).
 *
 * qry_pq_render_* turn the result into Parse's JSON: objectId, createdAt /
 * updatedAt as ISO strings, pointers as {"__type":"Pointer",...} or, when
 * included, the object with "__type":"Object", price as a JSON number with
 * the exact decimal text, keys projection.
 *
 * Pure and thread-safe; no I/O. */
#ifndef QRY_PARSE_QUERY_H
#define QRY_PARSE_QUERY_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QRY_PQ_MAX_PARAMS 64 /* $1 scope + values of where + limit/skip */
#define QRY_PQ_MAX_IN 1000   /* values of one $in / $nin */
#define QRY_PQ_DEFAULT_LIMIT 100
#define QRY_PQ_MAX_LIMIT 1000
#define QRY_PQ_MAX_SKIP 10000

typedef enum qry_pq_type {
  QRY_PQ_ID,      /* uuid text */
  QRY_PQ_TEXT,    /* text */
  QRY_PQ_INT,     /* bigint */
  QRY_PQ_DECIMAL, /* numeric (price): exact decimal text */
  QRY_PQ_BOOL,    /* boolean */
  QRY_PQ_DATE,    /* bigint microseconds since the epoch */
  QRY_PQ_POINTER, /* uuid of an object of class target */
  QRY_PQ_JSON,    /* JSON text (arrays): shown, not queryable */
} qry_pq_type_t;

typedef struct qry_pq_class qry_pq_class_t;

typedef struct qry_pq_field {
  const char *key;
  qry_pq_type_t type;
  const qry_pq_class_t *target; /* pointers: the class pointed to */
} qry_pq_field_t;

struct qry_pq_class {
  const char *name;             /* Parse class name */
  const char *base;             /* SELECT ... ; $1 = the store scope */
  const qry_pq_field_t *fields; /* fields[0] is objectId */
  size_t n_fields;
  bool composite_id; /* Inventory: objectId is "<storeId>_<productId>" */
};

/* The class served under /classes/{name}, or NULL (unknown: 103). */
const qry_pq_class_t *qry_pq_class(const char *name);

/* _User as /users/me shows it (not served under /classes). */
const qry_pq_class_t *qry_pq_user_class(void);

/* A built query; the caller owns it (qry_pq_free). */
typedef struct qry_pq {
  const qry_pq_class_t *cls;
  char *sql;
  int n_params;
  char *params[QRY_PQ_MAX_PARAMS]; /* malloc'd text, NULL = SQL NULL */
  bool by_id;                      /* one object (GET .../{objectId}) */
  bool count;                      /* count=1: column "@count" */
  uint64_t keys;                   /* fields shown (bit = field index) */
  uint64_t include;                /* pointer fields included */
  int code;                        /* on SF_EINVAL: the Parse error code */
  char error[160];                 /* and its message */
} qry_pq_t;

/* Builds the SQL of a query of cls. params is the request's parameter
 * object (where as an object; limit, skip, count as numbers or decimal
 * strings; order, keys, include as comma-separated strings; unknown names
 * are ignored); borrowed. object_id: one object (where, order, limit, skip
 * and count are then ignored), or NULL for a list. store_filter: $1, copied
 * (NULL: every store). Returns 0 with *q filled (free it with
 * qry_pq_free), SF_EINVAL with q->code and q->error set (nothing to free),
 * SF_ENOTFOUND when object_id cannot be an id of the class (answer 101),
 * or SF_ENOMEM. */
int qry_pq_build(const qry_pq_class_t *cls, const json_t *params,
                 const char *object_id, const char *store_filter,
                 qry_pq_t *q);

void qry_pq_free(qry_pq_t *q);

/* {"results":[...]} (and "count" when q->count) from the rows of a list.
 * On 0 *out is malloc'd JSON text of *len bytes (free it); SF_EPARSE for a
 * row that cannot be shown (a bug: answer 500), SF_ENOMEM. */
int qry_pq_render_list(const qry_pq_t *q, const PGresult *res, char **out,
                       size_t *len);

/* The one object of a by-id query; session_token (may be NULL) is added
 * as "sessionToken". SF_ENOTFOUND when there is no row; else as above. */
int qry_pq_render_one(const qry_pq_t *q, const PGresult *res,
                      const char *session_token, char **out, size_t *len);

#endif
