/* qry_gql_map: the GraphQL schema of /graphql (docs/parse-graphql.graphql)
 * mapped onto the Parse facade's query builder (qry_parse_query), so that
 * both APIs share one query builder and its refusals.
 *
 * qry_gqlm_plan checks one root field of a query against the schema (its
 * name, arguments, and every field it selects, fragments expanded) and
 * turns its arguments into the parameters of a Parse REST query: the
 * Parse GraphQL `where` input ({field: {equalTo: X, ...}}, pointers as
 * {have: {objectId: {...}}}) into the REST where JSON, `order`
 * ([name_ASC, createdAt_DESC]) into the order text, skip / first / after
 * into skip and limit (one more row than asked, to know hasNextPage), and
 * the pointers selected into include. qry_gqlm_shape_* then turn the Parse
 * JSON of the result into the GraphQL answer of exactly the fields
 * selected: a connection {edges {cursor node}, pageInfo, count}, a node
 * with its global id (base64 of "Class:objectId"), pointers as the object
 * pointed to.
 *
 * Mutations (logIn, logOut, createTransaction, createOrder) are planned
 * into the Parse REST body of the write ({store: {link: id}} becomes a
 * Pointer), for the facade's write path (qry_parse_write), so the same /v1
 * rules apply; their payload selection is checked like a query's.
 *
 * Errors come in two kinds, as in GraphQL servers: a plan that does not
 * fit the schema (unknown field or argument, wrong argument type) is a
 * validation error of the whole request (SF_EPARSE); a `where` that the
 * builder refuses is an execution error of that field, with Parse's code
 * (SF_EINVAL, code set). Pure and thread-safe; no I/O. */
#ifndef QRY_GQL_MAP_H
#define QRY_GQL_MAP_H

#include <jansson.h>
#include <stdbool.h>

#include "qry_gql.h"
#include "qry_parse_query.h"

#define QRY_GQLM_DEFAULT_FIRST 100
#define QRY_GQLM_ID_CAP 128 /* an objectId as text, NUL included */

typedef enum qry_gqlm_kind {
  QRY_GQLM_TYPENAME, /* __typename: "Query" */
  QRY_GQLM_ONE,      /* store(id:) ... */
  QRY_GQLM_LIST,     /* stores(where:, order:, skip:, first:, after:) */
  QRY_GQLM_VIEWER,   /* viewer { user sessionToken } */
  QRY_GQLM_LOGIN,    /* mutation logIn(input: {username, password}) */
  QRY_GQLM_LOGOUT,   /* mutation logOut(input: {}) */
  QRY_GQLM_CREATE,   /* mutation createTransaction / createOrder */
} qry_gqlm_kind_t;

/* One root field of a query, planned. */
typedef struct qry_gqlm_root {
  qry_gqlm_kind_t kind;
  const qry_gql_sel_t *field;      /* borrowed from the document */
  const qry_pq_class_t *cls;       /* ONE, LIST; VIEWER: the _User class */
  json_t *params;                  /* qry_pq_build's parameters (owned); CREATE: those
                        of the read back */
  json_t *body;                    /* mutations: the Parse REST body of the write (owned) */
  json_t *client_id;               /* mutations: input.clientMutationId, or NULL */
  char object_id[QRY_GQLM_ID_CAP]; /* ONE: the objectId asked for */
  long long skip;                  /* LIST: offset of the first edge */
  long long first;                 /* LIST: edges asked for */
  bool with_count;                 /* LIST: the builder counts */
  int code;                        /* SF_EINVAL: the Parse error code */
} qry_gqlm_root_t;

/* Plans root field f (a field of op's selection set, after the fragments
 * are expanded by qry_gqlm_roots) of a query operation; vars are the
 * request's variables (may be NULL). Returns 0 with *r filled (release it
 * with qry_gqlm_root_free), SF_EPARSE with err filled (a validation error:
 * answer 400 with nothing executed), SF_EINVAL with r->code and err set (an
 * execution error of this field: its data is null), or SF_ENOMEM. */
int qry_gqlm_plan(const qry_gql_doc_t *doc, const qry_gql_op_t *op,
                  const qry_gql_sel_t *f, const json_t *vars,
                  qry_gqlm_root_t *r, qry_gql_error_t *err);

void qry_gqlm_root_free(qry_gqlm_root_t *r);

/* The fields of op's selection set with fragments expanded, in order, at
 * most cap of them, into out (borrowed from doc). Returns the count, or -1
 * with err filled (an unknown fragment, a cycle, a fragment on another
 * type, more than cap fields). */
int qry_gqlm_roots(const qry_gql_doc_t *doc, const qry_gql_op_t *op,
                   const qry_gql_sel_t **out, int cap, qry_gql_error_t *err);

/* The answer of a LIST root from the Parse list result {"results": [...],
 * "count"?: N} (borrowed). Returns 0 with *out a new reference, SF_EPARSE
 * for a result that does not fit (a bug), SF_ENOMEM. */
int qry_gqlm_shape_list(const qry_gql_doc_t *doc, const qry_gqlm_root_t *r,
                        const json_t *result, json_t **out);

/* The answer of a ONE root from the Parse object (borrowed), or of a
 * VIEWER root from the user's Parse object and the session token. */
int qry_gqlm_shape_one(const qry_gql_doc_t *doc, const qry_gqlm_root_t *r,
                       const json_t *obj, json_t **out);
int qry_gqlm_shape_viewer(const qry_gql_doc_t *doc, const qry_gqlm_root_t *r,
                          const json_t *user, const char *session_token,
                          json_t **out);

/* The payload of a mutation root: LOGIN from the Parse login answer
 * (the user with its sessionToken), LOGOUT from nothing (obj NULL), CREATE
 * from the object written, read back. */
int qry_gqlm_shape_payload(const qry_gql_doc_t *doc, const qry_gqlm_root_t *r,
                           const json_t *obj, json_t **out);

/* Parse's global id of an object: base64 of "Class:objectId" into out
 * (cap bytes). Returns 0 or SF_ETOOBIG. */
int qry_gqlm_global_id(const char *class_name, const char *object_id,
                       char *out, size_t cap);

/* The objectId behind id for class_name: a global id of that class is
 * decoded, anything else is taken as an objectId. 0, or SF_EINVAL when it
 * does not fit into out (cap bytes) or is a global id of another class. */
int qry_gqlm_object_id(const char *class_name, const char *id, char *out,
                       size_t cap);

/* The REST where JSON of a GraphQL where input of cls (borrowed). Returns
 * 0 with *out a new reference, SF_EINVAL with *code (102 INVALID_QUERY)
 * and err set, or SF_ENOMEM. Keys the class does not have are passed on,
 * for the builder to refuse (105), as are values of the wrong type
 * (111). */
int qry_gqlm_where(const qry_pq_class_t *cls, const json_t *where,
                   json_t **out, int *code, qry_gql_error_t *err);

#endif
