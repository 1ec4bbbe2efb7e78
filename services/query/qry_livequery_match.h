/* qry_livequery_match: the pure parts of the Parse LiveQuery server
 * (qry_livequery.c): reading the client's messages, the subscription's
 * query and its `where`, matching an Inventory row against it, choosing
 * the event (create / update / enter / leave) from the row before and
 * after a change, and writing the object in Parse's shape.
 *
 * Supported in `where` (docs/parse-compat.md, "Live queries"): on
 * objectId, store and product (pointers, or their objectId as a string)
 * equality, $eq, $ne, $in, $nin; on onHand, reserved, available and
 * version equality, $eq, $ne, $lt, $lte, $gt, $gte, $in, $nin with
 * integers. Several keys are ANDed. Anything else is refused with Parse's
 * code 102 (INVALID_QUERY), a class other than Inventory with 119.
 *
 * Nothing here touches the loop, the socket or the database: every
 * function is pure and safe from any thread on its own arguments. Out of
 * memory: the functions that allocate return SF_ENOMEM or NULL. */
#ifndef QRY_LIVEQUERY_MATCH_H
#define QRY_LIVEQUERY_MATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/uuid.h"

/* Parse Server's LiveQuery error codes that are not Parse.Error codes
 * (ParseLiveQueryServer's pushError): bad message shape, client not
 * connected / subscription not found, unknown op, wrong keys. */
enum {
  QRY_LQ_ERR_BAD_REQUEST = 1,
  QRY_LQ_ERR_NOT_FOUND = 2,
  QRY_LQ_ERR_UNKNOWN_OP = 3,
  QRY_LQ_ERR_BAD_KEYS = 4,
};

/* One Inventory row: the state after a change, or a snapshot row. */
typedef struct qry_lq_row {
  char store_id[SF_UUID_STR_LEN + 1];
  char product_id[SF_UUID_STR_LEN + 1];
  int64_t on_hand, reserved, version;
  char updated_at[32]; /* ISO 8601 with milliseconds, "" when unknown */
} qry_lq_row_t;

/* A parsed subscription query; opaque. */
typedef struct qry_lq_query qry_lq_query_t;

/* Parses the "query" member of a subscribe / update message (borrowed).
 * On success *out is a new query (free with qry_lq_query_free). On
 * refusal returns SF_EINVAL with *code set to the Parse error code (102,
 * 119 or 1) and msg (cap bytes) to the message for the client; SF_ENOMEM
 * on out of memory. */
int qry_lq_query_parse(const json_t *query, qry_lq_query_t **out, int *code,
                       char *msg, size_t cap);
void qry_lq_query_free(qry_lq_query_t *q);

/* The query as canonical JSON text (keys sorted, compact), the key under
 * which a subscription's resume point is kept. Borrowed from q. */
const char *qry_lq_query_text(const qry_lq_query_t *q);

/* The one store the query is bound to by an equality on store (or on
 * objectId), or NULL: a hint to narrow the change stream. Borrowed. */
const char *qry_lq_query_store(const qry_lq_query_t *q);

/* True when row r satisfies q's where. */
bool qry_lq_match(const qry_lq_query_t *q, const qry_lq_row_t *r);

typedef enum qry_lq_op {
  QRY_LQ_NONE = 0, /* nothing to send */
  QRY_LQ_CREATE,
  QRY_LQ_UPDATE,
  QRY_LQ_ENTER,
  QRY_LQ_LEAVE
} qry_lq_op_t;

/* "create", "update", "enter", "leave" ("" for QRY_LQ_NONE). */
const char *qry_lq_op_name(qry_lq_op_t op);

/* The event a change from prev (NULL: the row did not exist) to cur means
 * for q, as Parse Server decides it: both match -> update, only cur ->
 * enter (create when prev is NULL), only prev -> leave, neither -> none. */
qry_lq_op_t qry_lq_classify(const qry_lq_query_t *q, const qry_lq_row_t *prev,
                            const qry_lq_row_t *cur);

/* r as a Parse Inventory object: className, objectId
 * "<store_id>_<product_id>", store and product pointers, onHand, reserved,
 * available, version, updatedAt (and createdAt when created is true: the
 * row's first version), restricted to the query's keys when it has some
 * (className, objectId, createdAt and updatedAt always come). q may be
 * NULL (every key). Returns a new object or NULL on out of memory. */
json_t *qry_lq_object(const qry_lq_query_t *q, const qry_lq_row_t *r,
                      bool created);

/* Reads a change stream event's JSON text (qry_event_t json: store_id,
 * product_id, on_hand, reserved, version, occurred_at) into r. Returns 0,
 * SF_EPARSE or SF_ENOMEM. */
int qry_lq_row_from_change(const char *json, size_t len, qry_lq_row_t *r);

/* ---- client messages ---- */

typedef enum qry_lq_msg_kind {
  QRY_LQ_MSG_CONNECT,
  QRY_LQ_MSG_SUBSCRIBE,
  QRY_LQ_MSG_UPDATE, /* re-subscribe an existing request id */
  QRY_LQ_MSG_UNSUBSCRIBE
} qry_lq_msg_kind_t;

/* One client message. Strings and query are borrowed from root, which the
 * message owns (qry_lq_msg_clear). */
typedef struct qry_lq_msg {
  qry_lq_msg_kind_t kind;
  json_t *root;
  const char *application_id;  /* connect */
  const char *session_token;   /* connect, subscribe, update; or NULL */
  const char *installation_id; /* connect; or NULL */
  bool has_master_key;         /* connect: a masterKey was sent */
  int64_t request_id;          /* subscribe, update, unsubscribe: >= 0 */
  const json_t *query;         /* subscribe, update */
} qry_lq_msg_t;

/* Parses one text message. On refusal returns SF_EINVAL with *code (107
 * bad JSON, 1 bad shape, 3 unknown op) and msg filled, and *request_id
 * set when the message named one (else -1) so the error can name it;
 * SF_ENOMEM on out of memory. */
int qry_lq_msg_parse(const char *data, size_t len, qry_lq_msg_t *out,
                     int *code, char *msg, size_t cap, int64_t *request_id);
void qry_lq_msg_clear(qry_lq_msg_t *m);

/* {"op":"error","code":code,"error":error,"reconnect":reconnect} plus
 * "requestId" when request_id >= 0. NULL on out of memory. */
json_t *qry_lq_error_msg(int code, const char *error, bool reconnect,
                         int64_t request_id);

/* {"op":op,"clientId":client_id,"requestId":request_id,"object":object}
 * (object taken), with "original" (taken, may be NULL). NULL on out of
 * memory (both are released). */
json_t *qry_lq_event_msg(qry_lq_op_t op, uint64_t client_id,
                         int64_t request_id, json_t *object,
                         json_t *original);

#endif
