/* qry_parse_map: the pure half of the Parse facade's writes
 * (docs/parse-compat.md, "Writes"): a Parse write becomes a /v1 request
 * (method, path, JSON body), a /v1 success answer becomes Parse's answer
 * (objectId, createdAt, updatedAt, ...), and a /v1 problem becomes a Parse
 * error (code and HTTP status). No I/O and no clock: qry_parse_write does
 * the sending. Everything here is pure and thread-safe.
 *
 * The /v1 paths here are the command service's routes, called as a client:
 * tests/tools/check_gateway.py knows this file is not the query service's
 * route table. */
#ifndef QRY_PARSE_MAP_H
#define QRY_PARSE_MAP_H

#include <jansson.h>
#include <stdbool.h>

#include "qry_parse_write.h"

/* A refusal in Parse's terms: HTTP status, Parse error code, message. */
typedef struct qry_parse_fault {
  int status;
  int code;
  char message[256];
} qry_parse_fault_t;

/* How a /v1 success answer is turned into Parse's. */
typedef enum qry_parse_shape {
  QRY_PARSE_SHAPE_TRANSACTION, /* 201 objectId, createdAt + stock fields */
  QRY_PARSE_SHAPE_CREATED,     /* 201 objectId, createdAt (+ status) */
  QRY_PARSE_SHAPE_UPDATED,     /* 200 updatedAt (+ status) */
  QRY_PARSE_SHAPE_INCREMENT,   /* 200 updatedAt + onHand, ... */
  QRY_PARSE_SHAPE_DELETED,     /* 200 {} */
  QRY_PARSE_SHAPE_SIGNUP,      /* 201 objectId, createdAt, sessionToken */
  QRY_PARSE_SHAPE_LOGIN,       /* 200 the user + sessionToken */
} qry_parse_shape_t;

/* A /v1 request. */
typedef struct qry_parse_v1 {
  const char *method; /* static string */
  char path[192];     /* "/v1/stores/<uuid>/transactions" */
  json_t *body;       /* owned by the caller once returned; NULL: none */
  qry_parse_shape_t shape;
} qry_parse_v1_t;

/* Parse Server's HTTP status for a Parse error code: 404 for 101, 500 for
 * 1, 503 for 100, 429 for 155, else 400. */
int qry_parse_map_status(int code);

/* Sets f to the Parse error for a /v1 problem: v1_status and v1_code (may
 * be NULL when the answer had none) and detail (the message; may be NULL).
 * login: a refused login (unauthorized) is 101 "Invalid username/password."
 * as on Parse. The table is in docs/parse-compat.md. */
void qry_parse_map_problem(int v1_status, const char *v1_code,
                           const char *detail, bool login,
                           qry_parse_fault_t *f);

/* Translates a class write (op QRY_PARSE_CREATE, _UPDATE or _DELETE;
 * object_id NULL for a create) with the Parse body (an object; borrowed)
 * into a /v1 request. Returns true with *v filled (v->body owned by the
 * caller), or false with *f set (wrong class, refused write, bad field). */
bool qry_parse_map_write(qry_parse_op_t op, const char *class_name,
                         const char *object_id, const json_t *body,
                         qry_parse_v1_t *v, qry_parse_fault_t *f);

/* The body of POST /v1/users for a Parse sign-up body
 * ({username, password, email?}); false with *f set (200 username missing,
 * 201 password missing, 111 wrong type, 105 other keys). */
bool qry_parse_map_signup(const json_t *body, qry_parse_v1_t *v,
                          qry_parse_fault_t *f);

/* The body of POST /v1/sessions from username and password (either may be
 * NULL: then 200 / 201). */
bool qry_parse_map_login(const char *username, const char *password,
                         qry_parse_v1_t *v, qry_parse_fault_t *f);

/* The /v1 request of a logout: DELETE /v1/sessions/current (no body). */
void qry_parse_map_logout(qry_parse_v1_t *v);

/* Parse's answer (new reference) for the /v1 answer v1 of a request of
 * shape; token is the session token for SIGNUP and LOGIN (else NULL);
 * now_iso the time for a sign-up's createdAt (the /v1 user has none).
 * *status is Parse's HTTP status. NULL on out of memory or a /v1 answer
 * without the fields needed (then the caller answers 1, internal). */
json_t *qry_parse_map_answer(qry_parse_shape_t shape, const json_t *v1,
                             const char *token, const char *now_iso,
                             int *status);

/* An RFC 3339 time of /v1 (microseconds) as Parse writes dates, in
 * milliseconds ("2025-03-14T09:26:53.589Z"), into out (32 bytes). False
 * when text does not parse. */
bool qry_parse_map_iso(const char *text, char out[32]);

/* The sub-request i of a /parse/batch body: op, class and object id
 * (copied into class_out / id_out) and its body (borrowed from item; an
 * empty object when absent is written to *body as a new reference). path
 * may start with "/parse" or not. Only writes: POST, PUT, DELETE on
 * /classes/... Returns true, or false with *f set. */
bool qry_parse_map_batch_item(const json_t *item, qry_parse_op_t *op,
                              char *class_out, size_t class_cap, char *id_out,
                              size_t id_cap, json_t **body,
                              qry_parse_fault_t *f);

#endif
