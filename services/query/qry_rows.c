/* qry_rows: table-driven mapping of result rows to JSON. Each answer shape
 * is a list of fields (JSON name, column, conversion); the derived
 * "available" is on_hand - reserved of the same row. See qry_rows.h. */
#include "qry_rows.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/json.h"

typedef enum field_kind {
  F_STR,       /* text, never NULL */
  F_STR_NULL,  /* text or null */
  F_I64,       /* bigint, never NULL */
  F_BOOL,      /* boolean "t"/"f" */
  F_TIME,      /* microseconds since the epoch -> RFC 3339 */
  F_TIME_NULL, /* same, or null */
  F_PRICE,     /* numeric text -> normalised decimal string */
  F_AVAILABLE, /* on_hand - reserved (columns "on_hand", "reserved") */
  F_JSON       /* JSON text built by PostgreSQL (json_agg), parsed */
} field_kind_t;

typedef struct field {
  const char *json;
  const char *col;
  field_kind_t kind;
} field_t;

static const field_t inventory_fields[] = {
    {"product_id", "product_id", F_STR},
    {"sku", "sku", F_STR},
    {"name", "name", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"updated_at", "updated_us", F_TIME_NULL},
    {NULL, NULL, F_STR}};

static const field_t inventory_at_fields[] = {
    {"store_id", "store_id", F_STR},
    {"product_id", "product_id", F_STR},
    {"sku", "sku", F_STR},
    {"name", "name", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"updated_at", "updated_us", F_TIME_NULL},
    {NULL, NULL, F_STR}};

static const field_t holding_fields[] = {
    {"store_id", "store_id", F_STR},
    {"store_name", "store_name", F_STR},
    {"product_id", "product_id", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"updated_at", "updated_us", F_TIME_NULL},
    {NULL, NULL, F_STR}};

static const field_t transaction_fields[] = {
    {"transaction_id", "transaction_id", F_STR},
    {"store_id", "store_id", F_STR},
    {"product_id", "product_id", F_STR},
    {"type", "type", F_STR},
    {"quantity", "quantity", F_I64},
    {"delta", "delta", F_I64},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"reason", "reason", F_STR_NULL},
    {"reference", "reference", F_STR_NULL},
    {"actor", "actor", F_STR_NULL},
    {"created_at", "created_us", F_TIME},
    {NULL, NULL, F_STR}};

static const field_t product_fields[] = {
    {"id", "id", F_STR},
    {"sku", "sku", F_STR},
    {"name", "name", F_STR},
    {"category", "category", F_STR_NULL},
    {"price", "price", F_PRICE},
    {"reorder_level", "reorder_level", F_I64},
    {"discontinued", "discontinued", F_BOOL},
    {"version", "version", F_I64},
    {"created_at", "created_us", F_TIME},
    {"updated_at", "updated_us", F_TIME},
    {"total_on_hand", "total_on_hand", F_I64},
    {"total_available", "total_available", F_I64},
    {NULL, NULL, F_STR}};

static const field_t store_fields[] = {
    {"id", "id", F_STR},
    {"name", "name", F_STR},
    {"location", "location", F_STR},
    {"manager_id", "manager_id", F_STR_NULL},
    {"closed", "closed", F_BOOL},
    {"version", "version", F_I64},
    {"created_at", "created_us", F_TIME},
    {"updated_at", "updated_us", F_TIME},
    {NULL, NULL, F_STR}};

static const field_t order_fields[] = {
    {"order_id", "order_id", F_STR},
    {"store_id", "store_id", F_STR},
    {"status", "status", F_STR},
    {"lines", "lines", F_JSON},
    {"reference", "reference", F_STR_NULL},
    {"version", "version", F_I64},
    {"created_at", "created_us", F_TIME},
    {"updated_at", "updated_us", F_TIME},
    {NULL, NULL, F_STR}};

static const field_t change_fields[] = {
    {"id", "id", F_I64},
    {"store_id", "store_id", F_STR},
    {"product_id", "product_id", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"cause", "cause", F_STR},
    {"transaction_id", "transaction_id", F_STR},
    {"occurred_at", "occurred_us", F_TIME},
    {NULL, NULL, F_STR}};

static const field_t snapshot_fields[] = {
    {"store_id", "store_id", F_STR},
    {"product_id", "product_id", F_STR},
    {"on_hand", "on_hand", F_I64},
    {"reserved", "reserved", F_I64},
    {"available", NULL, F_AVAILABLE},
    {"version", "version", F_I64},
    {"updated_at", "updated_us", F_TIME_NULL},
    {NULL, NULL, F_STR}};

int qry_row_i64(const PGresult *res, int row, const char *name, int64_t *out) {
  int c = PQfnumber(res, name);
  if (c < 0 || row < 0 || row >= PQntuples(res) || PQgetisnull(res, row, c))
    return SF_ENOTFOUND;
  const char *v = PQgetvalue(res, row, c);
  if (!*v)
    return SF_EPARSE;
  errno = 0;
  char *end = NULL;
  long long n = strtoll(v, &end, 10);
  if (errno || *end)
    return SF_EPARSE;
  *out = (int64_t)n;
  return 0;
}

/* Converts one field; returns the JSON value or NULL when malformed. */
static json_t *field_value(const PGresult *res, int row, const field_t *f) {
  if (f->kind == F_AVAILABLE) {
    int64_t on_hand, reserved;
    if (qry_row_i64(res, row, "on_hand", &on_hand) != 0 ||
        qry_row_i64(res, row, "reserved", &reserved) != 0)
      return NULL;
    return json_integer((json_int_t)(on_hand - reserved));
  }
  int c = PQfnumber(res, f->col);
  if (c < 0)
    return NULL;
  if (PQgetisnull(res, row, c)) {
    if (f->kind == F_STR_NULL || f->kind == F_TIME_NULL)
      return json_null();
    return NULL;
  }
  const char *v = PQgetvalue(res, row, c);
  switch (f->kind) {
  case F_STR:
  case F_STR_NULL:
    return json_string(v);
  case F_I64: {
    int64_t n;
    if (qry_row_i64(res, row, f->col, &n) != 0)
      return NULL;
    return json_integer((json_int_t)n);
  }
  case F_BOOL:
    if (strcmp(v, "t") == 0)
      return json_true();
    if (strcmp(v, "f") == 0)
      return json_false();
    return NULL;
  case F_TIME:
  case F_TIME_NULL: {
    int64_t us;
    if (qry_row_i64(res, row, f->col, &us) != 0)
      return NULL;
    char buf[40];
    sf_json_format_time(us, buf, sizeof(buf));
    return json_string(buf);
  }
  case F_PRICE: {
    char buf[64];
    if (qry_price_normalize(v, buf, sizeof(buf)) != 0)
      return NULL;
    return json_string(buf);
  }
  case F_JSON:
    return json_loads(v, JSON_REJECT_DUPLICATES, NULL);
  case F_AVAILABLE:
    break;
  }
  return NULL;
}

static json_t *map_row(const PGresult *res, int row, const field_t *fields) {
  if (row < 0 || row >= PQntuples(res))
    return NULL;
  json_t *obj = json_object();
  if (!obj)
    return NULL;
  for (const field_t *f = fields; f->json; f++) {
    json_t *v = field_value(res, row, f);
    if (!v || json_object_set_new(obj, f->json, v) != 0) {
      json_decref(obj);
      return NULL;
    }
  }
  return obj;
}

json_t *qry_row_inventory(const PGresult *res, int row) {
  return map_row(res, row, inventory_fields);
}

json_t *qry_row_inventory_at(const PGresult *res, int row) {
  return map_row(res, row, inventory_at_fields);
}

json_t *qry_row_holding(const PGresult *res, int row) {
  return map_row(res, row, holding_fields);
}

json_t *qry_row_transaction(const PGresult *res, int row) {
  return map_row(res, row, transaction_fields);
}

json_t *qry_row_product(const PGresult *res, int row) {
  return map_row(res, row, product_fields);
}

json_t *qry_row_store(const PGresult *res, int row) {
  return map_row(res, row, store_fields);
}

json_t *qry_row_order(const PGresult *res, int row) {
  return map_row(res, row, order_fields);
}

json_t *qry_row_change(const PGresult *res, int row) {
  return map_row(res, row, change_fields);
}

json_t *qry_row_snapshot(const PGresult *res, int row) {
  return map_row(res, row, snapshot_fields);
}

int qry_page_build(const PGresult *res, const char *key_col, int limit,
                   qry_cursor_kind_t kind, qry_row_fn fn, bool owner_row,
                   json_t **out) {
  int n = PQntuples(res);
  if (owner_row && n == 0)
    return SF_ENOTFOUND;
  int key = PQfnumber(res, key_col);
  if (key < 0 || limit < 1)
    return SF_EPARSE;
  /* json_object_set_new steals items even when it fails. */
  json_t *page = json_object();
  json_t *items = json_array();
  if (!page || !items) {
    json_decref(items);
    json_decref(page);
    return SF_ENOMEM;
  }
  if (json_object_set_new(page, "items", items) != 0) {
    json_decref(page);
    return SF_ENOMEM;
  }
  int kept = 0;
  int last = -1;
  bool more = false;
  for (int r = 0; r < n; r++) {
    if (PQgetisnull(res, r, key))
      continue;
    if (kept == limit) {
      more = true;
      break;
    }
    json_t *item = fn(res, r);
    if (!item) {
      json_decref(page);
      return SF_EPARSE;
    }
    if (json_array_append_new(items, item) != 0) {
      json_decref(page);
      return SF_ENOMEM;
    }
    kept++;
    last = r;
  }
  json_t *next;
  if (more) {
    char cur[QRY_CURSOR_CAP];
    if (qry_cursor_encode(kind, PQgetvalue(res, last, key), cur) != 0) {
      json_decref(page);
      return SF_EPARSE;
    }
    next = json_string(cur);
  } else {
    next = json_null();
  }
  if (!next || json_object_set_new(page, "next_cursor", next) != 0) {
    json_decref(page);
    return SF_ENOMEM;
  }
  *out = page;
  return 0;
}
