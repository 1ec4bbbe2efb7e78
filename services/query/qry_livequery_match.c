/* qry_livequery_match: LiveQuery messages, queries and matching. See
 * qry_livequery_match.h. */
#include "qry_livequery_match.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qry_parse.h"
#include "sf/err.h"

#define CLASS_NAME "Inventory"

typedef enum field {
  F_OBJECT_ID,
  F_STORE,
  F_PRODUCT,
  F_ON_HAND,
  F_RESERVED,
  F_AVAILABLE,
  F_VERSION
} field_t;

typedef enum cmp { C_EQ,
                   C_NE,
                   C_LT,
                   C_LTE,
                   C_GT,
                   C_GTE,
                   C_IN,
                   C_NIN } cmp_t;

/* One condition: field cmp value(s). Ids are strings (objectId, pointer
 * ids), numbers integers; an $in / $nin list holds n values of either. */
typedef struct cond {
  field_t field;
  cmp_t cmp;
  size_t n;
  int64_t *nums; /* numeric fields */
  char **ids;    /* id fields (owned strings) */
} cond_t;

struct qry_lq_query {
  cond_t *conds;
  size_t n_conds;
  char **keys; /* NULL: every key */
  size_t n_keys;
  char *text;
  char store[SF_UUID_STR_LEN + 1]; /* "" when not bound to one store */
};

static const struct {
  const char *name;
  field_t field;
  bool numeric;
} fields[] = {
    {"objectId", F_OBJECT_ID, false},
    {"store", F_STORE, false},
    {"product", F_PRODUCT, false},
    {"onHand", F_ON_HAND, true},
    {"reserved", F_RESERVED, true},
    {"available", F_AVAILABLE, true},
    {"version", F_VERSION, true},
};

static const struct {
  const char *name;
  cmp_t cmp;
  bool numeric_only;
} ops[] = {
    {"$eq", C_EQ, false},
    {"$ne", C_NE, false},
    {"$in", C_IN, false},
    {"$nin", C_NIN, false},
    {"$lt", C_LT, true},
    {"$lte", C_LTE, true},
    {"$gt", C_GT, true},
    {"$gte", C_GTE, true},
};

static void cond_free(cond_t *c) {
  if (c->ids)
    for (size_t i = 0; i < c->n; i++)
      free(c->ids[i]);
  free(c->ids);
  free(c->nums);
}

void qry_lq_query_free(qry_lq_query_t *q) {
  if (!q)
    return;
  for (size_t i = 0; i < q->n_conds; i++)
    cond_free(&q->conds[i]);
  free(q->conds);
  for (size_t i = 0; i < q->n_keys; i++)
    free(q->keys[i]);
  free(q->keys);
  free(q->text);
  free(q);
}

/* The error helper of the parsers: sets code and msg, returns SF_EINVAL. */
static int refuse(int *code, char *msg, size_t cap, int c, const char *what,
                  const char *detail) {
  *code = c;
  snprintf(msg, cap, "%s%s", what, detail ? detail : "");
  return SF_EINVAL;
}

/* The id a value names for an id field: a string, or for store / product a
 * pointer of the right class. NULL when v is neither. */
static const char *id_value(field_t f, const json_t *v) {
  if (json_is_string(v))
    return json_string_value(v);
  if (f == F_OBJECT_ID || !json_is_object(v))
    return NULL;
  const char *type = json_string_value(json_object_get(v, "__type"));
  const char *cls = json_string_value(json_object_get(v, "className"));
  const char *want = f == F_STORE ? "Store" : "Product";
  if (!type || strcmp(type, "Pointer") != 0 || !cls || strcmp(cls, want) != 0)
    return NULL;
  return json_string_value(json_object_get(v, "objectId"));
}

/* Adds value v (one element) to c. Returns 0, SF_EINVAL (wrong type) or
 * SF_ENOMEM. */
static int cond_add(cond_t *c, bool numeric, const json_t *v, size_t i) {
  if (numeric) {
    if (!json_is_integer(v))
      return SF_EINVAL;
    c->nums[i] = json_integer_value(v);
    return 0;
  }
  const char *id = id_value(c->field, v);
  if (!id)
    return SF_EINVAL;
  c->ids[i] = strdup(id);
  return c->ids[i] ? 0 : SF_ENOMEM;
}

/* Fills c for value v (one value, or an array for $in / $nin). */
static int cond_fill(cond_t *c, bool numeric, const json_t *v) {
  bool list = c->cmp == C_IN || c->cmp == C_NIN;
  if (list && !json_is_array(v))
    return SF_EINVAL;
  c->n = list ? json_array_size(v) : 1;
  size_t alloc = c->n ? c->n : 1;
  if (numeric)
    c->nums = calloc(alloc, sizeof(*c->nums));
  else
    c->ids = calloc(alloc, sizeof(*c->ids));
  if (!c->nums && !c->ids)
    return SF_ENOMEM;
  for (size_t i = 0; i < c->n; i++) {
    int rc = cond_add(c, numeric, list ? json_array_get(v, i) : v, i);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int push_cond(qry_lq_query_t *q, field_t f, cmp_t cmp, bool numeric,
                     const json_t *v) {
  cond_t *grown = realloc(q->conds, (q->n_conds + 1) * sizeof(*grown));
  if (!grown)
    return SF_ENOMEM;
  q->conds = grown;
  cond_t *c = &q->conds[q->n_conds++];
  memset(c, 0, sizeof(*c));
  c->field = f;
  c->cmp = cmp;
  return cond_fill(c, numeric, v);
}

/* Parses one key of where. */
static int parse_key(qry_lq_query_t *q, const char *key, const json_t *v,
                     int *code, char *msg, size_t cap) {
  size_t fi = 0;
  while (fi < sizeof(fields) / sizeof(fields[0]) &&
         strcmp(fields[fi].name, key) != 0)
    fi++;
  if (fi == sizeof(fields) / sizeof(fields[0]))
    return refuse(code, msg, cap,
                  key[0] == '$' ? QRY_PARSE_INVALID_QUERY
                                : QRY_PARSE_INVALID_KEY_NAME,
                  key[0] == '$' ? "unsupported operator in where: "
                                : "Inventory has no key ",
                  key);
  field_t f = fields[fi].field;
  bool numeric = fields[fi].numeric;
  bool is_ops = json_is_object(v) && !json_object_get(v, "__type");
  if (!is_ops) {
    int rc = push_cond(q, f, C_EQ, numeric, v);
    if (rc == SF_EINVAL)
      return refuse(code, msg, cap, QRY_PARSE_INCORRECT_TYPE,
                    "wrong type of value for ", key);
    return rc;
  }
  const char *op;
  const json_t *ov;
  json_object_foreach((json_t *)v, op, ov) {
    size_t oi = 0;
    while (oi < sizeof(ops) / sizeof(ops[0]) && strcmp(ops[oi].name, op) != 0)
      oi++;
    if (oi == sizeof(ops) / sizeof(ops[0]) ||
        (ops[oi].numeric_only && !numeric))
      return refuse(code, msg, cap, QRY_PARSE_INVALID_QUERY,
                    "unsupported operator in where: ", op);
    int rc = push_cond(q, f, ops[oi].cmp, numeric, ov);
    if (rc == SF_EINVAL)
      return refuse(code, msg, cap, QRY_PARSE_INCORRECT_TYPE,
                    "wrong type of value for ", key);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* Remembers the single store an equality binds the query to. */
static void find_store(qry_lq_query_t *q) {
  for (size_t i = 0; i < q->n_conds; i++) {
    const cond_t *c = &q->conds[i];
    const char *id = NULL;
    if (c->cmp == C_EQ && c->field == F_STORE)
      id = c->ids[0];
    else if (c->cmp == C_IN && c->field == F_STORE && c->n == 1)
      id = c->ids[0];
    if (id && sf_uuid_valid(id)) {
      snprintf(q->store, sizeof(q->store), "%s", id);
      for (char *p = q->store; *p; p++)
        if (*p >= 'A' && *p <= 'F')
          *p = (char)(*p - 'A' + 'a');
      return;
    }
  }
}

static int parse_keys(qry_lq_query_t *q, const json_t *keys, int *code,
                      char *msg, size_t cap) {
  if (!keys || json_is_null(keys))
    return 0;
  if (!json_is_array(keys))
    return refuse(code, msg, cap, QRY_PARSE_INVALID_QUERY,
                  "keys must be an array of strings", NULL);
  q->keys = calloc(json_array_size(keys) + 1, sizeof(*q->keys));
  if (!q->keys)
    return SF_ENOMEM;
  size_t i;
  const json_t *k;
  json_array_foreach(keys, i, k) {
    if (!json_is_string(k))
      return refuse(code, msg, cap, QRY_PARSE_INVALID_QUERY,
                    "keys must be an array of strings", NULL);
    q->keys[q->n_keys] = strdup(json_string_value(k));
    if (!q->keys[q->n_keys])
      return SF_ENOMEM;
    q->n_keys++;
  }
  return 0;
}

int qry_lq_query_parse(const json_t *query, qry_lq_query_t **out, int *code,
                       char *msg, size_t cap) {
  *out = NULL;
  if (!json_is_object(query))
    return refuse(code, msg, cap, QRY_LQ_ERR_BAD_REQUEST,
                  "query must be an object", NULL);
  const char *cls = json_string_value(json_object_get(query, "className"));
  if (!cls)
    return refuse(code, msg, cap, QRY_LQ_ERR_BAD_REQUEST,
                  "query.className is required", NULL);
  if (strcmp(cls, CLASS_NAME) != 0)
    return refuse(code, msg, cap, QRY_PARSE_OPERATION_FORBIDDEN,
                  "live queries are served for class Inventory only, not ",
                  cls);
  const json_t *where = json_object_get(query, "where");
  if (where && !json_is_null(where) && !json_is_object(where))
    return refuse(code, msg, cap, QRY_PARSE_INVALID_QUERY,
                  "where must be an object", NULL);
  qry_lq_query_t *q = calloc(1, sizeof(*q));
  if (!q)
    return SF_ENOMEM;
  int rc = 0;
  const char *key;
  const json_t *v;
  if (json_is_object(where))
    json_object_foreach((json_t *)where, key, v) {
      if ((rc = parse_key(q, key, v, code, msg, cap)) != 0)
        goto fail;
    }
  if ((rc = parse_keys(q, json_object_get(query, "keys"), code, msg, cap)))
    goto fail;
  /* the resume key: className, where and keys, canonical */
  json_t *canon = json_pack("{s:s,s:O?,s:O?}", "className", cls, "where",
                            where, "keys", json_object_get(query, "keys"));
  q->text = canon ? json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(canon);
  if (!q->text) {
    rc = SF_ENOMEM;
    goto fail;
  }
  find_store(q);
  *out = q;
  return 0;
fail:
  qry_lq_query_free(q);
  return rc;
}

const char *qry_lq_query_text(const qry_lq_query_t *q) { return q->text; }

const char *qry_lq_query_store(const qry_lq_query_t *q) {
  return q->store[0] ? q->store : NULL;
}

/* ---- matching ---- */

static int64_t num_of(field_t f, const qry_lq_row_t *r) {
  switch (f) {
  case F_ON_HAND: return r->on_hand;
  case F_RESERVED: return r->reserved;
  case F_AVAILABLE: return r->on_hand - r->reserved;
  default: return r->version;
  }
}

static bool id_equal(field_t f, const char *want, const qry_lq_row_t *r) {
  if (f == F_STORE)
    return strcasecmp(want, r->store_id) == 0;
  if (f == F_PRODUCT)
    return strcasecmp(want, r->product_id) == 0;
  /* objectId: "<store>_<product>" */
  size_t sl = strlen(r->store_id);
  return strncasecmp(want, r->store_id, sl) == 0 && want[sl] == '_' &&
         strcasecmp(want + sl + 1, r->product_id) == 0;
}

static bool value_equal(const cond_t *c, size_t i, const qry_lq_row_t *r) {
  if (c->nums)
    return c->nums[i] == num_of(c->field, r);
  return id_equal(c->field, c->ids[i], r);
}

static bool cond_match(const cond_t *c, const qry_lq_row_t *r) {
  switch (c->cmp) {
  case C_EQ: return value_equal(c, 0, r);
  case C_NE: return !value_equal(c, 0, r);
  case C_IN:
  case C_NIN: {
    bool found = false;
    for (size_t i = 0; i < c->n && !found; i++)
      found = value_equal(c, i, r);
    return c->cmp == C_IN ? found : !found;
  }
  default: break;
  }
  int64_t v = num_of(c->field, r), w = c->nums[0];
  switch (c->cmp) {
  case C_LT: return v < w;
  case C_LTE: return v <= w;
  case C_GT: return v > w;
  default: return v >= w;
  }
}

bool qry_lq_match(const qry_lq_query_t *q, const qry_lq_row_t *r) {
  for (size_t i = 0; i < q->n_conds; i++)
    if (!cond_match(&q->conds[i], r))
      return false;
  return true;
}

const char *qry_lq_op_name(qry_lq_op_t op) {
  switch (op) {
  case QRY_LQ_CREATE: return "create";
  case QRY_LQ_UPDATE: return "update";
  case QRY_LQ_ENTER: return "enter";
  case QRY_LQ_LEAVE: return "leave";
  default: return "";
  }
}

qry_lq_op_t qry_lq_classify(const qry_lq_query_t *q, const qry_lq_row_t *prev,
                            const qry_lq_row_t *cur) {
  bool was = prev && qry_lq_match(q, prev);
  bool is = qry_lq_match(q, cur);
  if (was && is)
    return QRY_LQ_UPDATE;
  if (is)
    return prev ? QRY_LQ_ENTER : QRY_LQ_CREATE;
  return was ? QRY_LQ_LEAVE : QRY_LQ_NONE;
}

/* ---- objects ---- */

static bool wanted(const qry_lq_query_t *q, const char *key) {
  if (!q || !q->keys)
    return true;
  for (size_t i = 0; i < q->n_keys; i++)
    if (strcmp(q->keys[i], key) == 0)
      return true;
  return false;
}

static int set_new(json_t *o, const qry_lq_query_t *q, const char *key,
                   json_t *v) {
  if (!wanted(q, key)) {
    json_decref(v);
    return 0;
  }
  return v ? json_object_set_new(o, key, v) : -1;
}

json_t *qry_lq_object(const qry_lq_query_t *q, const qry_lq_row_t *r,
                      bool created) {
  char oid[2 * SF_UUID_STR_LEN + 2];
  snprintf(oid, sizeof(oid), "%s_%s", r->store_id, r->product_id);
  json_t *o = json_pack("{s:s,s:s}", "className", CLASS_NAME, "objectId", oid);
  if (!o)
    return NULL;
  int rc = 0;
  rc |= set_new(o, q, "store",
                json_pack("{s:s,s:s,s:s}", "__type", "Pointer", "className",
                          "Store", "objectId", r->store_id));
  rc |= set_new(o, q, "product",
                json_pack("{s:s,s:s,s:s}", "__type", "Pointer", "className",
                          "Product", "objectId", r->product_id));
  rc |= set_new(o, q, "onHand", json_integer(r->on_hand));
  rc |= set_new(o, q, "reserved", json_integer(r->reserved));
  rc |= set_new(o, q, "available", json_integer(r->on_hand - r->reserved));
  rc |= set_new(o, q, "version", json_integer(r->version));
  if (r->updated_at[0]) {
    rc |= json_object_set_new(o, "updatedAt", json_string(r->updated_at));
    if (created)
      rc |= json_object_set_new(o, "createdAt", json_string(r->updated_at));
  }
  if (rc != 0) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* Copies a UUID member of o into out; false when absent or not a UUID. */
static bool get_uuid(const json_t *o, const char *key,
                     char out[SF_UUID_STR_LEN + 1]) {
  const char *v = json_string_value(json_object_get(o, key));
  if (!v || !sf_uuid_valid(v))
    return false;
  snprintf(out, SF_UUID_STR_LEN + 1, "%s", v);
  return true;
}

int qry_lq_row_from_change(const char *json, size_t len, qry_lq_row_t *r) {
  json_t *o = json_loadb(json, len, 0, NULL);
  if (!o)
    return SF_EPARSE;
  memset(r, 0, sizeof(*r));
  const json_t *oh = json_object_get(o, "on_hand");
  const json_t *rs = json_object_get(o, "reserved");
  const json_t *vs = json_object_get(o, "version");
  const char *at = json_string_value(json_object_get(o, "occurred_at"));
  int rc = SF_EPARSE;
  if (get_uuid(o, "store_id", r->store_id) &&
      get_uuid(o, "product_id", r->product_id) && json_is_integer(oh) &&
      json_is_integer(rs) && json_is_integer(vs)) {
    r->on_hand = json_integer_value(oh);
    r->reserved = json_integer_value(rs);
    r->version = json_integer_value(vs);
    /* Parse's dates carry milliseconds: "YYYY-MM-DDTHH:MM:SS.mmmZ" */
    if (at && strlen(at) >= 23)
      snprintf(r->updated_at, sizeof(r->updated_at), "%.23sZ", at);
    rc = 0;
  }
  json_decref(o);
  return rc;
}

/* ---- messages ---- */

void qry_lq_msg_clear(qry_lq_msg_t *m) {
  json_decref(m->root);
  memset(m, 0, sizeof(*m));
}

/* Reads the optional string member key; false when present and not a
 * string. */
static bool opt_string(const json_t *o, const char *key, const char **out) {
  const json_t *v = json_object_get(o, key);
  *out = json_string_value(v);
  return !v || json_is_null(v) || json_is_string(v);
}

int qry_lq_msg_parse(const char *data, size_t len, qry_lq_msg_t *out,
                     int *code, char *msg, size_t cap, int64_t *request_id) {
  memset(out, 0, sizeof(*out));
  *request_id = -1;
  json_error_t jerr;
  json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return refuse(code, msg, cap, QRY_PARSE_INVALID_JSON,
                  "the message is not valid JSON: ", jerr.text);
  out->root = root;
  int rc = SF_EINVAL;
  if (!json_is_object(root)) {
    rc = refuse(code, msg, cap, QRY_LQ_ERR_BAD_REQUEST,
                "the message must be a JSON object", NULL);
    goto fail;
  }
  const json_t *rid = json_object_get(root, "requestId");
  if (json_is_integer(rid) && json_integer_value(rid) >= 0)
    *request_id = json_integer_value(rid);
  const char *op = json_string_value(json_object_get(root, "op"));
  if (!op) {
    rc = refuse(code, msg, cap, QRY_LQ_ERR_BAD_REQUEST, "op is required",
                NULL);
    goto fail;
  }
  if (strcmp(op, "connect") == 0) {
    out->kind = QRY_LQ_MSG_CONNECT;
    const json_t *mk = json_object_get(root, "masterKey");
    out->has_master_key = mk && !json_is_null(mk);
    if (!opt_string(root, "applicationId", &out->application_id) ||
        !opt_string(root, "sessionToken", &out->session_token) ||
        !opt_string(root, "installationId", &out->installation_id)) {
      rc = refuse(code, msg, cap, QRY_LQ_ERR_BAD_REQUEST,
                  "applicationId, sessionToken and installationId must be "
                  "strings",
                  NULL);
      goto fail;
    }
    out->session_token = qry_parse_bare_token(out->session_token);
    return 0;
  }
  if (strcmp(op, "subscribe") == 0)
    out->kind = QRY_LQ_MSG_SUBSCRIBE;
  else if (strcmp(op, "update") == 0)
    out->kind = QRY_LQ_MSG_UPDATE;
  else if (strcmp(op, "unsubscribe") == 0)
    out->kind = QRY_LQ_MSG_UNSUBSCRIBE;
  else {
    rc = refuse(code, msg, cap, QRY_LQ_ERR_UNKNOWN_OP, "unknown op: ", op);
    goto fail;
  }
  if (*request_id < 0) {
    rc = refuse(code, msg, cap, QRY_LQ_ERR_BAD_REQUEST,
                "requestId must be a non-negative integer", NULL);
    goto fail;
  }
  out->request_id = *request_id;
  if (out->kind == QRY_LQ_MSG_UNSUBSCRIBE)
    return 0;
  if (!opt_string(root, "sessionToken", &out->session_token)) {
    rc = refuse(code, msg, cap, QRY_LQ_ERR_BAD_REQUEST,
                "sessionToken must be a string", NULL);
    goto fail;
  }
  out->session_token = qry_parse_bare_token(out->session_token);
  out->query = json_object_get(root, "query");
  if (!json_is_object(out->query)) {
    rc = refuse(code, msg, cap, QRY_LQ_ERR_BAD_REQUEST,
                "query must be an object", NULL);
    goto fail;
  }
  return 0;
fail:
  qry_lq_msg_clear(out);
  return rc;
}

json_t *qry_lq_error_msg(int code, const char *error, bool reconnect,
                         int64_t request_id) {
  json_t *m = json_pack("{s:s,s:i,s:s,s:b}", "op", "error", "code", code,
                        "error", error ? error : "", "reconnect", reconnect);
  if (m && request_id >= 0 &&
      json_object_set_new(m, "requestId", json_integer(request_id)) != 0) {
    json_decref(m);
    return NULL;
  }
  return m;
}

json_t *qry_lq_event_msg(qry_lq_op_t op, uint64_t client_id,
                         int64_t request_id, json_t *object,
                         json_t *original) {
  json_t *m = NULL;
  if (object)
    m = json_pack("{s:s,s:I,s:I,s:O}", "op", qry_lq_op_name(op), "clientId",
                  (json_int_t)client_id, "requestId", (json_int_t)request_id,
                  "object", object);
  if (m && original && json_object_set(m, "original", original) != 0) {
    json_decref(m);
    m = NULL;
  }
  json_decref(object);
  json_decref(original);
  return m;
}
