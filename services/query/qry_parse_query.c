/* qry_parse_query: Parse queries -> SQL, rows -> Parse objects. See
 * qry_parse_query.h. The SQL is written into a sf_jbuf used as a plain
 * growable text buffer (its raw appenders, sticky out-of-memory). */
#include "qry_parse_query.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qry_params.h"
#include "qry_rows.h"
#include "sf/err.h"
#include "sf/jbuf.h"
#include "sf/json.h"
#include "sf/uuid.h"

#define US(x) "(extract(epoch from " x ") * 1000000)::bigint"
#define IN_STORES(col) "($1::uuid[] IS NULL OR " col " = ANY($1::uuid[]))"
#define UNSCOPED "($1::uuid[] IS NULL OR true)"
#define INCLUDE_MAX 4 /* pointer fields of one class */

/* ---- the classes ---- */

static const qry_pq_class_t user_public_class;
static const qry_pq_class_t store_class;
static const qry_pq_class_t product_class;

static const qry_pq_field_t user_fields[] = {
    {"objectId", QRY_PQ_ID, NULL},
    {"username", QRY_PQ_TEXT, NULL},
    {"email", QRY_PQ_TEXT, NULL},
    {"role", QRY_PQ_TEXT, NULL},
    {"storeIds", QRY_PQ_JSON, NULL},
    {"createdAt", QRY_PQ_DATE, NULL},
    {"updatedAt", QRY_PQ_DATE, NULL},
};

static const qry_pq_class_t user_class = {
    "_User",
    "SELECT u.id AS \"objectId\", u.username AS \"username\","
    " u.email AS \"email\", u.role AS \"role\","
    " to_json(u.store_ids)::text AS \"storeIds\","
    " " US("u.created_at") " AS \"createdAt\","
                           " " US("u.updated_at") " AS \"updatedAt\""
                                                  " FROM users u WHERE u.disabled_at IS NULL AND " UNSCOPED,
    user_fields, sizeof(user_fields) / sizeof(user_fields[0]), false};

/* A store's manager as other users see it: no e-mail, no store list. */
static const qry_pq_field_t user_public_fields[] = {
    {"objectId", QRY_PQ_ID, NULL},
    {"username", QRY_PQ_TEXT, NULL},
    {"role", QRY_PQ_TEXT, NULL},
    {"createdAt", QRY_PQ_DATE, NULL},
    {"updatedAt", QRY_PQ_DATE, NULL},
};

static const qry_pq_class_t user_public_class = {
    "_User",
    "SELECT u.id AS \"objectId\", u.username AS \"username\","
    " u.role AS \"role\", " US("u.created_at") " AS \"createdAt\","
                                               " " US("u.updated_at") " AS \"updatedAt\" FROM users u WHERE " UNSCOPED,
    user_public_fields,
    sizeof(user_public_fields) / sizeof(user_public_fields[0]), false};

static const qry_pq_field_t store_fields[] = {
    {"objectId", QRY_PQ_ID, NULL},
    {"name", QRY_PQ_TEXT, NULL},
    {"location", QRY_PQ_TEXT, NULL},
    {"manager", QRY_PQ_POINTER, &user_public_class},
    {"closed", QRY_PQ_BOOL, NULL},
    {"createdAt", QRY_PQ_DATE, NULL},
    {"updatedAt", QRY_PQ_DATE, NULL},
};

static const qry_pq_class_t store_class = {
    "Store",
    "SELECT s.id AS \"objectId\", s.name AS \"name\","
    " s.location AS \"location\", s.manager_id AS \"manager\","
    " s.closed AS \"closed\", " US("s.created_at") " AS \"createdAt\","
                                                   " " US("s.updated_at") " AS \"updatedAt\" FROM stores s WHERE " IN_STORES("s.id"),
    store_fields, sizeof(store_fields) / sizeof(store_fields[0]), false};

static const qry_pq_field_t product_fields[] = {
    {"objectId", QRY_PQ_ID, NULL},
    {"sku", QRY_PQ_TEXT, NULL},
    {"name", QRY_PQ_TEXT, NULL},
    {"category", QRY_PQ_TEXT, NULL},
    {"price", QRY_PQ_DECIMAL, NULL},
    {"reorderLevel", QRY_PQ_INT, NULL},
    {"discontinued", QRY_PQ_BOOL, NULL},
    {"createdAt", QRY_PQ_DATE, NULL},
    {"updatedAt", QRY_PQ_DATE, NULL},
};

static const qry_pq_class_t product_class = {
    "Product",
    "SELECT p.id AS \"objectId\", p.sku AS \"sku\", p.name AS \"name\","
    " p.category AS \"category\", p.price AS \"price\","
    " p.reorder_level AS \"reorderLevel\","
    " p.discontinued AS \"discontinued\","
    " " US("p.created_at") " AS \"createdAt\","
                           " " US("p.updated_at") " AS \"updatedAt\" FROM products p WHERE " UNSCOPED,
    product_fields, sizeof(product_fields) / sizeof(product_fields[0]), false};

/* The read model keeps no creation time of an inventory row: createdAt is
 * its last change, as updatedAt (docs/parse-compat.md). */
static const qry_pq_field_t inventory_fields[] = {
    {"objectId", QRY_PQ_TEXT, NULL},
    {"store", QRY_PQ_POINTER, &store_class},
    {"product", QRY_PQ_POINTER, &product_class},
    {"onHand", QRY_PQ_INT, NULL},
    {"reserved", QRY_PQ_INT, NULL},
    {"available", QRY_PQ_INT, NULL},
    {"version", QRY_PQ_INT, NULL},
    {"createdAt", QRY_PQ_DATE, NULL},
    {"updatedAt", QRY_PQ_DATE, NULL},
};

static const qry_pq_class_t inventory_class = {
    "Inventory",
    "SELECT i.store_id::text || '_' || i.product_id::text AS \"objectId\","
    " i.store_id AS \"store\", i.product_id AS \"product\","
    " i.on_hand AS \"onHand\", i.reserved AS \"reserved\","
    " i.on_hand - i.reserved AS \"available\", i.version AS \"version\","
    " " US("i.updated_at") " AS \"createdAt\","
                           " " US("i.updated_at") " AS \"updatedAt\" FROM inventory i WHERE " IN_STORES("i.store_id"),
    inventory_fields, sizeof(inventory_fields) / sizeof(inventory_fields[0]),
    true};

/* A movement is never changed: updatedAt is createdAt. */
static const qry_pq_field_t transaction_fields[] = {
    {"objectId", QRY_PQ_ID, NULL},
    {"store", QRY_PQ_POINTER, &store_class},
    {"product", QRY_PQ_POINTER, &product_class},
    {"type", QRY_PQ_TEXT, NULL},
    {"quantity", QRY_PQ_INT, NULL},
    {"delta", QRY_PQ_INT, NULL},
    {"reason", QRY_PQ_TEXT, NULL},
    {"reference", QRY_PQ_TEXT, NULL},
    {"createdAt", QRY_PQ_DATE, NULL},
    {"updatedAt", QRY_PQ_DATE, NULL},
};

static const qry_pq_class_t transaction_class = {
    "Transaction",
    "SELECT t.id AS \"objectId\", t.store_id AS \"store\","
    " t.product_id AS \"product\", t.type AS \"type\","
    " t.quantity AS \"quantity\", t.delta AS \"delta\","
    " t.reason AS \"reason\", t.reference AS \"reference\","
    " " US("t.created_at") " AS \"createdAt\","
                           " " US("t.created_at") " AS \"updatedAt\" FROM transactions t WHERE " IN_STORES("t.store_id"),
    transaction_fields,
    sizeof(transaction_fields) / sizeof(transaction_fields[0]), false};

static const qry_pq_field_t order_fields[] = {
    {"objectId", QRY_PQ_ID, NULL},
    {"store", QRY_PQ_POINTER, &store_class},
    {"status", QRY_PQ_TEXT, NULL},
    {"lines", QRY_PQ_JSON, NULL},
    {"reference", QRY_PQ_TEXT, NULL},
    {"createdAt", QRY_PQ_DATE, NULL},
    {"updatedAt", QRY_PQ_DATE, NULL},
};

static const qry_pq_class_t order_class = {
    "Order",
    "SELECT o.id AS \"objectId\", o.store_id AS \"store\","
    " o.status AS \"status\", (SELECT coalesce(json_agg(json_build_object("
    "'product', json_build_object('__type', 'Pointer', 'className',"
    " 'Product', 'objectId', l.product_id), 'quantity', l.quantity)"
    " ORDER BY l.product_id), '[]')::text FROM order_lines l"
    " WHERE l.order_id = o.id) AS \"lines\", o.reference AS \"reference\","
    " " US("o.created_at") " AS \"createdAt\","
                           " " US("o.updated_at") " AS \"updatedAt\" FROM orders o WHERE " IN_STORES("o.store_id"),
    order_fields, sizeof(order_fields) / sizeof(order_fields[0]), false};

static const qry_pq_class_t *const served[] = {
    &store_class, &product_class, &inventory_class, &transaction_class,
    &order_class};

const qry_pq_class_t *qry_pq_class(const char *name) {
  for (size_t i = 0; name && i < sizeof(served) / sizeof(served[0]); i++)
    if (strcmp(served[i]->name, name) == 0)
      return served[i];
  return NULL;
}

const qry_pq_class_t *qry_pq_user_class(void) { return &user_class; }

static int field_index(const qry_pq_class_t *cls, const char *key,
                       size_t len) {
  for (size_t i = 0; i < cls->n_fields; i++)
    if (strlen(cls->fields[i].key) == len &&
        memcmp(cls->fields[i].key, key, len) == 0)
      return (int)i;
  return -1;
}

/* ---- building ---- */

typedef struct build {
  qry_pq_t *q;
  sf_jbuf_t conds; /* " AND ..." per constraint */
} build_t;

static int refuse(qry_pq_t *q, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(qry_pq_t *q, int code, const char *fmt, ...) {
  q->code = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(q->error, sizeof(q->error), fmt, ap);
  va_end(ap);
  return SF_EINVAL;
}

/* Adds a parameter (text copied; NULL = SQL NULL); returns its number or a
 * negative error. */
static int add_param(qry_pq_t *q, const char *text) {
  if (q->n_params >= QRY_PQ_MAX_PARAMS)
    return refuse(q, 102, "too many constraints (at most %d values)",
                  QRY_PQ_MAX_PARAMS - 4);
  char *copy = NULL;
  if (text && !(copy = strdup(text)))
    return SF_ENOMEM;
  q->params[q->n_params++] = copy;
  return q->n_params;
}

static const char *sql_type(qry_pq_type_t t) {
  switch (t) {
  case QRY_PQ_ID:
  case QRY_PQ_POINTER:
    return "uuid";
  case QRY_PQ_INT:
  case QRY_PQ_DECIMAL:
    return "numeric";
  case QRY_PQ_BOOL:
    return "boolean";
  case QRY_PQ_DATE:
    return "bigint";
  case QRY_PQ_TEXT:
  case QRY_PQ_JSON:
    break;
  }
  return "text";
}

/* The shortest decimal text that reads back as d (9.99, not
 * 9.9900000000000002). */
static void format_real(double d, char *out, size_t cap) {
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(out, cap, "%.*g", prec, d);
    if (strtod(out, NULL) == d)
      return;
  }
}

/* Converts a where value for field f into parameter text (out, cap bytes).
 * Returns 0 or SF_EINVAL with the refusal (111) set. */
static int value_text(qry_pq_t *q, const qry_pq_field_t *f, const json_t *v,
                      char *out, size_t cap) {
  switch (f->type) {
  case QRY_PQ_ID:
    if (!json_is_string(v) || !sf_uuid_valid(json_string_value(v)))
      return refuse(q, 111, "%s must be an objectId (a UUID)", f->key);
    snprintf(out, cap, "%s", json_string_value(v));
    return 0;
  case QRY_PQ_TEXT:
    if (!json_is_string(v))
      return refuse(q, 111, "%s must be a String", f->key);
    if (json_string_length(v) >= cap)
      return refuse(q, 102, "the value of %s is too long", f->key);
    if (memchr(json_string_value(v), '\0', json_string_length(v)))
      return refuse(q, 111, "%s must be a String without NUL", f->key);
    snprintf(out, cap, "%s", json_string_value(v));
    return 0;
  case QRY_PQ_INT:
  case QRY_PQ_DECIMAL:
    if (json_is_integer(v))
      snprintf(out, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v) && isfinite(json_real_value(v)))
      format_real(json_real_value(v), out, cap);
    else
      return refuse(q, 111, "%s must be a Number", f->key);
    return 0;
  case QRY_PQ_BOOL:
    if (!json_is_boolean(v))
      return refuse(q, 111, "%s must be a Boolean", f->key);
    snprintf(out, cap, "%s", json_is_true(v) ? "true" : "false");
    return 0;
  case QRY_PQ_DATE: {
    const char *iso = NULL;
    if (json_is_string(v)) {
      iso = json_string_value(v);
    } else if (json_is_object(v)) {
      const char *t = json_string_value(json_object_get(v, "__type"));
      if (t && strcmp(t, "Date") == 0 && json_object_size(v) == 2)
        iso = json_string_value(json_object_get(v, "iso"));
    }
    int64_t us;
    if (!iso || sf_json_parse_time(iso, &us) != 0)
      return refuse(q, 111,
                    "%s must be a Date ({\"__type\": \"Date\", \"iso\": ...})",
                    f->key);
    snprintf(out, cap, "%lld", (long long)us);
    return 0;
  }
  case QRY_PQ_POINTER: {
    const char *t = json_string_value(json_object_get(v, "__type"));
    const char *cn = json_string_value(json_object_get(v, "className"));
    const char *id = json_string_value(json_object_get(v, "objectId"));
    if (!json_is_object(v) || !t || strcmp(t, "Pointer") != 0 || !cn ||
        strcmp(cn, f->target->name) != 0 || !id || !sf_uuid_valid(id))
      return refuse(q, 111, "%s must be a Pointer to a valid object", f->key);
    snprintf(out, cap, "%s", id);
    return 0;
  }
  case QRY_PQ_JSON:
    break;
  }
  return refuse(q, 102, "%s cannot be queried", f->key);
}

/* " AND b."key" <op> $n::type" with v as the parameter. */
static int add_compare(build_t *b, const qry_pq_field_t *f, const char *op,
                       const json_t *v) {
  char text[1024];
  int rc = value_text(b->q, f, v, text, sizeof(text));
  if (rc)
    return rc;
  int n = add_param(b->q, text);
  if (n < 0)
    return n;
  char sql[192];
  if (strcmp(op, "IS DISTINCT FROM") == 0)
    snprintf(sql, sizeof(sql), " AND b.\"%s\" IS DISTINCT FROM $%d::%s", f->key,
             n, sql_type(f->type));
  else
    snprintf(sql, sizeof(sql), " AND b.\"%s\" %s $%d::%s", f->key, op, n,
             sql_type(f->type));
  sf_jbuf_lit(&b->conds, sql);
  return 0;
}

/* $in / $nin: the values as one JSON array parameter of strings. */
static int add_in(build_t *b, const qry_pq_field_t *f, const json_t *v,
                  bool negate) {
  if (!json_is_array(v))
    return refuse(b->q, 111, "$in / $nin of %s needs an Array", f->key);
  if (json_array_size(v) > QRY_PQ_MAX_IN)
    return refuse(b->q, 102, "$in / $nin of %s: at most 1000 values",
                  f->key);
  json_t *arr = json_array();
  if (!arr)
    return SF_ENOMEM;
  size_t i;
  const json_t *e;
  char text[1024];
  json_array_foreach(v, i, e) {
    int rc = value_text(b->q, f, e, text, sizeof(text));
    if (!rc && json_array_append_new(arr, json_string(text)) != 0)
      rc = SF_ENOMEM;
    if (rc) {
      json_decref(arr);
      return rc;
    }
  }
  char *dump = sf_json_dumps(arr);
  json_decref(arr);
  if (!dump)
    return SF_ENOMEM;
  int n = add_param(b->q, dump);
  free(dump);
  if (n < 0)
    return n;
  char sql[320];
  char any[200];
  snprintf(any, sizeof(any),
           "b.\"%s\" = ANY(ARRAY(SELECT jsonb_array_elements_text($%d::jsonb)"
           ")::%s[])",
           f->key, n, sql_type(f->type));
  if (negate)
    snprintf(sql, sizeof(sql), " AND (b.\"%s\" IS NULL OR NOT %s)", f->key,
             any);
  else
    snprintf(sql, sizeof(sql), " AND %s", any);
  sf_jbuf_lit(&b->conds, sql);
  return 0;
}

static void add_null_test(build_t *b, const qry_pq_field_t *f, bool is_null) {
  char sql[96];
  snprintf(sql, sizeof(sql), " AND b.\"%s\" IS %sNULL", f->key,
           is_null ? "" : "NOT ");
  sf_jbuf_lit(&b->conds, sql);
}

static const struct {
  const char *name;
  const char *sql;
} comparisons[] = {{"$lt", "<"}, {"$lte", "<="}, {"$gt", ">"}, {"$gte", ">="}};

/* One operator of a key's constraint object. */
static int add_operator(build_t *b, const qry_pq_field_t *f, const char *op,
                        const json_t *v) {
  for (size_t i = 0; i < sizeof(comparisons) / sizeof(comparisons[0]); i++)
    if (strcmp(op, comparisons[i].name) == 0) {
      if (json_is_null(v))
        return refuse(b->q, 111, "%s cannot be compared with null", f->key);
      return add_compare(b, f, comparisons[i].sql, v);
    }
  if (strcmp(op, "$eq") == 0) {
    if (json_is_null(v)) {
      add_null_test(b, f, true);
      return 0;
    }
    return add_compare(b, f, "=", v);
  }
  if (strcmp(op, "$ne") == 0) {
    if (json_is_null(v)) {
      add_null_test(b, f, false);
      return 0;
    }
    return add_compare(b, f, "IS DISTINCT FROM", v);
  }
  if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0)
    return add_in(b, f, v, op[1] == 'n');
  if (strcmp(op, "$exists") == 0) {
    if (!json_is_boolean(v))
      return refuse(b->q, 111, "$exists of %s needs a Boolean", f->key);
    add_null_test(b, f, !json_is_true(v));
    return 0;
  }
  return refuse(b->q, 102, "unsupported operator %s", op);
}

/* True when v is an object whose keys are operators ("$..."). */
static bool is_constraint(const json_t *v) {
  if (!json_is_object(v) || json_object_size(v) == 0)
    return false;
  const char *k;
  const json_t *e;
  json_object_foreach((json_t *)v, k, e) {
    if (k[0] != '$')
      return false;
  }
  return true;
}

static int add_where(build_t *b, const json_t *where) {
  if (!where || json_is_null(where))
    return 0;
  if (!json_is_object(where))
    return refuse(b->q, 102, "where must be a JSON object");
  const char *key;
  const json_t *v;
  json_object_foreach((json_t *)where, key, v) {
    if (key[0] == '$')
      return refuse(b->q, 102, "unsupported operator %s", key);
    int i = field_index(b->q->cls, key, strlen(key));
    if (i < 0)
      return refuse(b->q, 105, "Invalid key name: %s", key);
    const qry_pq_field_t *f = &b->q->cls->fields[i];
    if (f->type == QRY_PQ_JSON)
      return refuse(b->q, 102, "%s cannot be queried", key);
    int rc;
    if (is_constraint(v)) {
      const char *op;
      const json_t *arg;
      json_object_foreach((json_t *)v, op, arg) {
        if ((rc = add_operator(b, f, op, arg)) != 0)
          return rc;
      }
    } else if (json_is_null(v)) {
      add_null_test(b, f, true);
    } else if (json_is_object(v) && json_object_get(v, "$regex")) {
      return refuse(b->q, 102, "unsupported operator %s", "$regex");
    } else if ((rc = add_compare(b, f, "=", v)) != 0) {
      return rc;
    }
  }
  return 0;
}

/* A count-like parameter: absent, an integer, or a string of digits. */
static int param_int(qry_pq_t *q, const json_t *params, const char *name,
                     long long def, long long max, long long *out) {
  const json_t *v = json_object_get(params, name);
  *out = def;
  if (!v || json_is_null(v))
    return 0;
  long long n = -1;
  if (json_is_integer(v)) {
    n = json_integer_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    size_t len = strlen(s);
    if (len == 0 || len > 9 || strspn(s, "0123456789") != len)
      n = -1;
    else
      n = strtoll(s, NULL, 10);
  }
  if (n < 0 || n > max)
    return refuse(q, 102, "%s must be an integer from 0 to %lld", name, max);
  *out = n;
  return 0;
}

/* A comma-separated list parameter: each item is passed to each_cb. */
typedef int (*item_fn)(build_t *b, const char *item, size_t len);

static int for_items(build_t *b, const json_t *params, const char *name,
                     item_fn fn) {
  const json_t *v = json_object_get(params, name);
  if (!v || json_is_null(v))
    return 0;
  if (!json_is_string(v))
    return refuse(b->q, 102, "%s must be a comma-separated String", name);
  const char *s = json_string_value(v);
  while (*s) {
    const char *end = strchr(s, ',');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    while (len && *s == ' ')
      s++, len--;
    while (len && s[len - 1] == ' ')
      len--;
    if (len) {
      int rc = fn(b, s, len);
      if (rc)
        return rc;
    }
    s = end ? end + 1 : s + strlen(s);
  }
  return 0;
}

static int unknown_key(build_t *b, const char *item, size_t len) {
  return refuse(b->q, 105, "Invalid key name: %.*s",
                (int)(len < 60 ? len : 60), item);
}

static int keys_item(build_t *b, const char *item, size_t len) {
  int i = field_index(b->q->cls, item, len);
  if (i < 0)
    return unknown_key(b, item, len);
  b->q->keys |= UINT64_C(1) << i;
  return 0;
}

static int include_item(build_t *b, const char *item, size_t len) {
  int i = field_index(b->q->cls, item, len);
  if (i < 0)
    return unknown_key(b, item, len);
  if (b->q->cls->fields[i].type != QRY_PQ_POINTER)
    return refuse(b->q, 102, "include: %s is not a Pointer",
                  b->q->cls->fields[i].key);
  b->q->include |= UINT64_C(1) << i;
  return 0;
}

/* ORDER BY text for alias a ("b" or "x"); returns 0 or a refusal. */
static int write_order(qry_pq_t *q, const json_t *params, const char *a,
                       sf_jbuf_t *out) {
  const json_t *v = json_object_get(params, "order");
  bool id_seen = false;
  bool any = false;
  char piece[128];
  if (v && !json_is_null(v)) {
    if (!json_is_string(v))
      return refuse(q, 102, "order must be a comma-separated String");
    const char *s = json_string_value(v);
    while (*s) {
      const char *end = strchr(s, ',');
      size_t len = end ? (size_t)(end - s) : strlen(s);
      while (len && *s == ' ')
        s++, len--;
      while (len && s[len - 1] == ' ')
        len--;
      bool desc = len && *s == '-';
      const char *key = desc ? s + 1 : s;
      size_t klen = desc ? len - 1 : len;
      if (len) {
        int i = field_index(q->cls, key, klen);
        if (i < 0) {
          return refuse(q, 105, "Invalid key name: %.*s",
                        (int)(klen < 60 ? klen : 60), key);
        }
        if (q->cls->fields[i].type == QRY_PQ_JSON)
          return refuse(q, 102, "cannot order by %s", q->cls->fields[i].key);
        id_seen = id_seen || i == 0;
        snprintf(piece, sizeof(piece), "%s%s.\"%s\"%s", any ? ", " : "", a,
                 q->cls->fields[i].key, desc ? " DESC" : "");
        sf_jbuf_lit(out, piece);
        any = true;
      }
      s = end ? end + 1 : s + strlen(s);
    }
  }
  if (!id_seen) {
    snprintf(piece, sizeof(piece), "%s%s.\"objectId\"", any ? ", " : "", a);
    sf_jbuf_lit(out, piece);
  }
  return 0;
}

/* The selected columns and joins of the included pointers. */
static void write_includes(const qry_pq_t *q, sf_jbuf_t *cols,
                           sf_jbuf_t *joins) {
  char piece[256];
  for (size_t i = 0; i < q->cls->n_fields; i++) {
    if (!(q->include & (UINT64_C(1) << i)))
      continue;
    const qry_pq_field_t *f = &q->cls->fields[i];
    for (size_t j = 0; j < f->target->n_fields; j++) {
      snprintf(piece, sizeof(piece), ", i%zu.\"%s\" AS \"%s.%s\"", i,
               f->target->fields[j].key, f->key, f->target->fields[j].key);
      sf_jbuf_lit(cols, piece);
    }
    sf_jbuf_lit(joins, " LEFT JOIN LATERAL (SELECT * FROM (");
    sf_jbuf_lit(joins, f->target->base);
    snprintf(piece, sizeof(piece),
             ") z WHERE z.\"objectId\" = b.\"%s\") i%zu ON true", f->key, i);
    sf_jbuf_lit(joins, piece);
  }
}

void qry_pq_free(qry_pq_t *q) {
  if (!q)
    return;
  free(q->sql);
  for (int i = 0; i < q->n_params; i++)
    free(q->params[i]);
  q->sql = NULL;
  q->n_params = 0;
}

/* The id condition of a by-id query; SF_ENOTFOUND when id cannot be one. */
static int add_id(build_t *b, const char *id) {
  qry_pq_t *q = b->q;
  if (!q->cls->composite_id) {
    if (!sf_uuid_valid(id))
      return SF_ENOTFOUND;
    int n = add_param(q, id);
    if (n < 0)
      return n;
    char sql[64];
    snprintf(sql, sizeof(sql), " AND b.\"objectId\" = $%d::uuid", n);
    sf_jbuf_lit(&b->conds, sql);
    return 0;
  }
  /* "<storeId>_<productId>": the two key columns, so the primary key is
   * used. */
  char store[SF_UUID_STR_LEN + 1];
  if (strlen(id) != 2 * SF_UUID_STR_LEN + 1 || id[SF_UUID_STR_LEN] != '_')
    return SF_ENOTFOUND;
  memcpy(store, id, SF_UUID_STR_LEN);
  store[SF_UUID_STR_LEN] = '\0';
  const char *product = id + SF_UUID_STR_LEN + 1;
  if (!sf_uuid_valid(store) || !sf_uuid_valid(product))
    return SF_ENOTFOUND;
  int ns = add_param(q, store);
  if (ns < 0)
    return ns;
  int np = add_param(q, product);
  if (np < 0)
    return np;
  char sql[96];
  snprintf(sql, sizeof(sql),
           " AND b.\"store\" = $%d::uuid AND b.\"product\" = $%d::uuid", ns,
           np);
  sf_jbuf_lit(&b->conds, sql);
  return 0;
}

static int build_sql(build_t *b, const json_t *params, const char *object_id) {
  qry_pq_t *q = b->q;
  int rc;
  if (object_id) {
    if ((rc = add_id(b, object_id)) != 0)
      return rc;
  } else if ((rc = add_where(b, json_object_get(params, "where"))) != 0) {
    return rc;
  }
  if ((rc = for_items(b, params, "keys", keys_item)) != 0 ||
      (rc = for_items(b, params, "include", include_item)) != 0)
    return rc;
  if (q->keys == 0)
    q->keys = ~UINT64_C(0);
  long long limit = 1, skip = 0, count = 0;
  if (!object_id &&
      ((rc = param_int(q, params, "limit", QRY_PQ_DEFAULT_LIMIT,
                       QRY_PQ_MAX_LIMIT, &limit)) != 0 ||
       (rc = param_int(q, params, "skip", 0, QRY_PQ_MAX_SKIP, &skip)) != 0 ||
       (rc = param_int(q, params, "count", 0, 1, &count)) != 0))
    return rc;
  q->count = count == 1;
  sf_jbuf_t order_b, order_x, cols, joins, sql;
  sf_jbuf_init(&order_b, 0);
  sf_jbuf_init(&order_x, 0);
  sf_jbuf_init(&cols, 0);
  sf_jbuf_init(&joins, 0);
  sf_jbuf_init(&sql, 0);
  rc = 0;
  if (!object_id && ((rc = write_order(q, params, "b", &order_b)) != 0 ||
                     (rc = write_order(q, params, "x", &order_x)) != 0))
    goto done;
  write_includes(q, &cols, &joins);
  int nl = 0, ns = 0;
  if (!object_id) {
    char num[24];
    snprintf(num, sizeof(num), "%lld", limit);
    if ((nl = add_param(q, num)) < 0) {
      rc = nl;
      goto done;
    }
    snprintf(num, sizeof(num), "%lld", skip);
    if ((ns = add_param(q, num)) < 0) {
      rc = ns;
      goto done;
    }
  }
  /* the NUL of every piece, so that an empty one is "" */
  sf_jbuf_raw(&cols, "", 1);
  sf_jbuf_raw(&joins, "", 1);
  sf_jbuf_raw(&b->conds, "", 1);
  sf_jbuf_raw(&order_b, "", 1);
  sf_jbuf_raw(&order_x, "", 1);
  if (cols.err || joins.err || b->conds.err || order_b.err || order_x.err) {
    rc = SF_ENOMEM;
    goto done;
  }
  char tail[96];
  snprintf(tail, sizeof(tail), " LIMIT $%d::int OFFSET $%d::int", nl, ns);
  if (q->count) {
    sf_jbuf_lit(&sql, "SELECT f.n AS \"@count\", x.* FROM (SELECT count(*)"
                      " AS n FROM (");
    sf_jbuf_lit(&sql, q->cls->base);
    sf_jbuf_lit(&sql, ") b WHERE true");
    sf_jbuf_lit(&sql, b->conds.data);
    sf_jbuf_lit(&sql, ") f LEFT JOIN LATERAL (");
  }
  sf_jbuf_lit(&sql, "SELECT b.*");
  sf_jbuf_lit(&sql, cols.data);
  sf_jbuf_lit(&sql, " FROM (");
  sf_jbuf_lit(&sql, q->cls->base);
  sf_jbuf_lit(&sql, ") b");
  sf_jbuf_lit(&sql, joins.data);
  sf_jbuf_lit(&sql, " WHERE true");
  sf_jbuf_lit(&sql, b->conds.data);
  if (!object_id) {
    sf_jbuf_lit(&sql, " ORDER BY ");
    sf_jbuf_lit(&sql, order_b.data);
    sf_jbuf_lit(&sql, tail);
  }
  if (q->count) {
    sf_jbuf_lit(&sql, ") x ON true ORDER BY ");
    sf_jbuf_lit(&sql, order_x.data);
  }
  size_t len;
  rc = sf_jbuf_take(&sql, &q->sql, &len);
done:
  sf_jbuf_free(&order_b);
  sf_jbuf_free(&order_x);
  sf_jbuf_free(&cols);
  sf_jbuf_free(&joins);
  sf_jbuf_free(&sql);
  return rc;
}

int qry_pq_build(const qry_pq_class_t *cls, const json_t *params,
                 const char *object_id, const char *store_filter,
                 qry_pq_t *q) {
  memset(q, 0, sizeof(*q));
  if (!cls)
    return SF_EINVAL;
  q->cls = cls;
  q->by_id = object_id != NULL;
  build_t b = {.q = q};
  sf_jbuf_init(&b.conds, 0);
  int rc = add_param(q, store_filter);
  if (rc >= 0)
    rc = build_sql(&b, params, object_id);
  sf_jbuf_free(&b.conds);
  if (rc > 0)
    rc = 0;
  if (rc) {
    int code = q->code;
    char error[sizeof(q->error)];
    memcpy(error, q->error, sizeof(error));
    qry_pq_free(q);
    q->code = code;
    memcpy(q->error, error, sizeof(error));
  }
  return rc;
}

/* ---- rendering ---- */

#define FIELDS_MAX 16

/* Column numbers of one object's fields (prefix "" or "<pointer>."). */
typedef struct colmap {
  int col[FIELDS_MAX];
} colmap_t;

static void colmap_find(const qry_pq_class_t *cls, const char *prefix,
                        const PGresult *res, colmap_t *m) {
  int nf = PQnfields(res);
  size_t plen = strlen(prefix);
  for (size_t i = 0; i < FIELDS_MAX; i++)
    m->col[i] = -1;
  for (size_t i = 0; i < cls->n_fields && i < FIELDS_MAX; i++)
    for (int c = 0; c < nf; c++) {
      const char *name = PQfname(res, c);
      if (strncmp(name, prefix, plen) == 0 &&
          strcmp(name + plen, cls->fields[i].key) == 0) {
        m->col[i] = c;
        break;
      }
    }
}

typedef struct render {
  const qry_pq_t *q;
  const PGresult *res;
  sf_jbuf_t b;
  colmap_t top;
  colmap_t inc[FIELDS_MAX]; /* by field index of the pointer */
} render_t;

static void render_init(render_t *r, const qry_pq_t *q, const PGresult *res) {
  memset(r, 0, sizeof(*r));
  r->q = q;
  r->res = res;
  sf_jbuf_init(&r->b, 0);
  colmap_find(q->cls, "", res, &r->top);
  for (size_t i = 0; i < q->cls->n_fields && i < FIELDS_MAX; i++) {
    if (!(q->include & (UINT64_C(1) << i)))
      continue;
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "%s.", q->cls->fields[i].key);
    colmap_find(q->cls->fields[i].target, prefix, res, &r->inc[i]);
  }
}

static int write_value(sf_jbuf_t *b, const qry_pq_field_t *f, const char *v) {
  switch (f->type) {
  case QRY_PQ_ID:
  case QRY_PQ_TEXT:
    sf_jbuf_str(b, v, strlen(v));
    return 0;
  case QRY_PQ_INT: {
    const char *d = v + (*v == '-');
    if (!*d || strspn(d, "0123456789") != strlen(d))
      return SF_EPARSE;
    sf_jbuf_lit(b, v);
    return 0;
  }
  case QRY_PQ_DECIMAL: {
    char buf[64];
    if (qry_price_normalize(v, buf, sizeof(buf)) != 0)
      return SF_EPARSE;
    sf_jbuf_lit(b, buf); /* digits and at most one '.': a JSON number */
    return 0;
  }
  case QRY_PQ_BOOL:
    if (strcmp(v, "t") != 0 && strcmp(v, "f") != 0)
      return SF_EPARSE;
    sf_jbuf_lit(b, *v == 't' ? "true" : "false");
    return 0;
  case QRY_PQ_DATE: {
    char *end;
    long long us = strtoll(v, &end, 10);
    if (!*v || *end)
      return SF_EPARSE;
    char iso[40];
    sf_json_format_time((int64_t)us, iso, sizeof(iso));
    sf_jbuf_str(b, iso, strlen(iso));
    return 0;
  }
  case QRY_PQ_JSON:
    return qry_json_column(v, b);
  case QRY_PQ_POINTER:
    break;
  }
  return SF_EPARSE;
}

/* Writes one object of cls from row. m: its columns; keys: the fields
 * shown (objectId, createdAt, updatedAt always); top: the queried object
 * (its included pointers are written as objects, an included object's own
 * pointers as Pointers); token: "sessionToken" or NULL. */
static int write_object(render_t *r, int row, const qry_pq_class_t *cls,
                        const colmap_t *m, uint64_t keys, bool top,
                        const char *token) {
  sf_jbuf_t *b = &r->b;
  sf_jbuf_lit(b, "{");
  bool first = true;
  if (!top) {
    sf_jbuf_lit(b, "\"__type\":\"Object\",\"className\":");
    sf_jbuf_str(b, cls->name, strlen(cls->name));
    first = false;
  }
  for (size_t i = 0; i < cls->n_fields && i < FIELDS_MAX; i++) {
    const qry_pq_field_t *f = &cls->fields[i];
    bool always = i == 0 || strcmp(f->key, "createdAt") == 0 ||
                  strcmp(f->key, "updatedAt") == 0;
    if (!always && !(keys & (UINT64_C(1) << i)))
      continue;
    if (m->col[i] < 0)
      return SF_EPARSE;
    if (PQgetisnull(r->res, row, m->col[i]))
      continue; /* Parse leaves an undefined field out */
    const char *v = PQgetvalue(r->res, row, m->col[i]);
    sf_jbuf_lit(b, first ? "\"" : ",\"");
    sf_jbuf_lit(b, f->key);
    sf_jbuf_lit(b, "\":");
    first = false;
    if (f->type != QRY_PQ_POINTER) {
      int rc = write_value(b, f, v);
      if (rc)
        return rc;
      continue;
    }
    if (top && (r->q->include & (UINT64_C(1) << i))) {
      const colmap_t *im = &r->inc[i];
      if (im->col[0] >= 0 && !PQgetisnull(r->res, row, im->col[0])) {
        int rc = write_object(r, row, f->target, im, ~UINT64_C(0), false,
                              NULL);
        if (rc)
          return rc;
        continue;
      }
    }
    sf_jbuf_lit(b, "{\"__type\":\"Pointer\",\"className\":");
    sf_jbuf_str(b, f->target->name, strlen(f->target->name));
    sf_jbuf_lit(b, ",\"objectId\":");
    sf_jbuf_str(b, v, strlen(v));
    sf_jbuf_lit(b, "}");
  }
  if (token) {
    sf_jbuf_lit(b, first ? "\"sessionToken\":" : ",\"sessionToken\":");
    sf_jbuf_str(b, token, strlen(token));
  }
  sf_jbuf_lit(b, "}");
  return 0;
}

static int render_done(render_t *r, int rc, char **out, size_t *len) {
  if (rc) {
    sf_jbuf_free(&r->b);
    return rc;
  }
  return sf_jbuf_take(&r->b, out, len);
}

int qry_pq_render_list(const qry_pq_t *q, const PGresult *res, char **out,
                       size_t *len) {
  render_t r;
  render_init(&r, q, res);
  int rc = 0;
  int count_col = q->count ? PQfnumber(res, "\"@count\"") : -1;
  if (q->count && count_col < 0)
    rc = SF_EPARSE;
  sf_jbuf_lit(&r.b, "{\"results\":[");
  bool first = true;
  for (int row = 0; !rc && row < PQntuples(res); row++) {
    /* with count, an empty page is one row of NULLs */
    if (r.top.col[0] < 0 || PQgetisnull(res, row, r.top.col[0]))
      continue;
    if (!first)
      sf_jbuf_lit(&r.b, ",");
    first = false;
    rc = write_object(&r, row, q->cls, &r.top, q->keys, true, NULL);
  }
  sf_jbuf_lit(&r.b, "]");
  if (!rc && q->count) {
    const char *n = PQntuples(res) > 0 ? PQgetvalue(res, 0, count_col) : "";
    if (!*n || strspn(n, "0123456789") != strlen(n)) {
      rc = SF_EPARSE;
    } else {
      sf_jbuf_lit(&r.b, ",\"count\":");
      sf_jbuf_lit(&r.b, n);
    }
  }
  sf_jbuf_lit(&r.b, "}");
  return render_done(&r, rc, out, len);
}

int qry_pq_render_one(const qry_pq_t *q, const PGresult *res,
                      const char *session_token, char **out, size_t *len) {
  render_t r;
  render_init(&r, q, res);
  if (PQntuples(res) < 1 || r.top.col[0] < 0 ||
      PQgetisnull(res, 0, r.top.col[0]))
    return render_done(&r, SF_ENOTFOUND, out, len);
  int rc = write_object(&r, 0, q->cls, &r.top, q->keys, true, session_token);
  return render_done(&r, rc, out, len);
}
