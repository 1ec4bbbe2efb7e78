/* cmd_state: the write-side fold and the rules of every command. See
 * cmd_state.h for the contract. Hash tables are uthash (Debian uthash-dev):
 * stock rows are keyed by the 32 raw bytes of the two UUIDs so that a
 * million store x product pairs stay around 120 bytes each. */
#include "cmd_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "sf/err.h"

typedef struct product {
  sf_uuid_t id;
  char *sku, *name, *category, *price;
  int64_t reorder_level, version;
  bool discontinued;
  cmd_policy_t policy;
  UT_hash_handle hh;     /* by id */
  UT_hash_handle hh_sku; /* by sku */
} product_t;

typedef struct store {
  sf_uuid_t id;
  char *name, *location, *manager_id;
  int64_t version;
  bool closed;
  UT_hash_handle hh;
} store_t;

typedef struct stock_key {
  uint8_t b[32]; /* store uuid then product uuid */
} stock_key_t;

typedef struct stock {
  stock_key_t key;
  int64_t on_hand, reserved, version;
  bool below; /* the last crossing event was StockBelowReorder */
  UT_hash_handle hh;
} stock_t;

typedef struct order {
  sf_uuid_t id;
  char store_id[SF_ID_LEN];
  cmd_order_status_t status;
  int64_t version;
  int64_t placed_at_us; /* occurred_at of OrderPlaced: expiry counts from it */
  size_t n_lines;
  sf_order_line_t *lines; /* product and quantity; levels unused */
  UT_hash_handle hh;
  UT_hash_handle hh_open; /* in cmd_state.open_orders while placed */
} order_t;

typedef struct idem {
  char *key;
  char hash[72];
  bool pending;
  int status;
  char *body;
  int64_t expires_us;
  UT_hash_handle hh;
} idem_t;

/* One undo record of a savepoint: a stock row as it was. */
typedef struct undo {
  stock_key_t key;
  bool existed, below;
  int64_t on_hand, reserved, version;
} undo_t;

struct cmd_state {
  undo_t *undo; /* savepoint log (stock rows only), NULL when none */
  size_t n_undo, cap_undo;
  bool recording;
  product_t *products;
  product_t *by_sku;
  store_t *stores;
  stock_t *stock;
  order_t *orders;
  order_t *open_orders; /* the placed ones (hh_open), for expiry */
  idem_t *idem;
  /* instances: the log offsets folded so far (the next to read), for the
   * tail that keeps folding what other instances write (cmd_tail.c) */
  int64_t catalog_next;
  int64_t *stock_next;
  int32_t n_stock_parts;
};

int cmd_state_new(cmd_state_t **out) {
  cmd_state_t *s = calloc(1, sizeof(*s));
  if (!s)
    return SF_ENOMEM;
  s->catalog_next = -1;
  *out = s;
  return 0;
}

int cmd_state_set_log_next(cmd_state_t *s, bool catalog, int32_t partition,
                           int64_t next) {
  if (partition < 0)
    return SF_EINVAL;
  if (catalog) {
    if (partition != 0)
      return SF_EINVAL;
    s->catalog_next = next;
    return 0;
  }
  if (partition >= s->n_stock_parts) {
    int64_t *a = realloc(s->stock_next, (size_t)(partition + 1) * sizeof(*a));
    if (!a)
      return SF_ENOMEM;
    for (int32_t p = s->n_stock_parts; p <= partition; p++)
      a[p] = -1;
    s->stock_next = a;
    s->n_stock_parts = partition + 1;
  }
  s->stock_next[partition] = next;
  return 0;
}

int64_t cmd_state_log_next(const cmd_state_t *s, bool catalog,
                           int32_t partition) {
  if (catalog)
    return partition == 0 ? s->catalog_next : -1;
  return partition >= 0 && partition < s->n_stock_parts
             ? s->stock_next[partition]
             : -1;
}

int32_t cmd_state_stock_partitions(const cmd_state_t *s) {
  return s->n_stock_parts;
}

static void product_free(product_t *p) {
  free(p->sku);
  free(p->name);
  free(p->category);
  free(p->price);
  free(p);
}

static void store_free(store_t *st) {
  free(st->name);
  free(st->location);
  free(st->manager_id);
  free(st);
}

void cmd_state_destroy(cmd_state_t *s) {
  if (!s)
    return;
  free(s->stock_next);
  product_t *p, *ptmp;
  HASH_CLEAR(hh_sku, s->by_sku);
  HASH_ITER(hh, s->products, p, ptmp) {
    HASH_DEL(s->products, p);
    product_free(p);
  }
  store_t *st, *sttmp;
  HASH_ITER(hh, s->stores, st, sttmp) {
    HASH_DEL(s->stores, st);
    store_free(st);
  }
  stock_t *k, *ktmp;
  HASH_ITER(hh, s->stock, k, ktmp) {
    HASH_DEL(s->stock, k);
    free(k);
  }
  order_t *o, *otmp;
  HASH_CLEAR(hh_open, s->open_orders);
  HASH_ITER(hh, s->orders, o, otmp) {
    HASH_DEL(s->orders, o);
    free(o->lines);
    free(o);
  }
  idem_t *i, *itmp;
  HASH_ITER(hh, s->idem, i, itmp) {
    HASH_DEL(s->idem, i);
    free(i->key);
    free(i->body);
    free(i);
  }
  free(s->undo);
  free(s);
}

/* Replaces *dst with a copy of src (NULL keeps NULL). */
static int set_str(char **dst, const char *src) {
  char *copy = NULL;
  if (src) {
    copy = strdup(src);
    if (!copy)
      return SF_ENOMEM;
  }
  free(*dst);
  *dst = copy;
  return 0;
}

static product_t *find_product(const cmd_state_t *s, const char *id) {
  sf_uuid_t u;
  if (!id || sf_uuid_parse(id, &u) != 0)
    return NULL;
  product_t *p = NULL;
  HASH_FIND(hh, s->products, &u, sizeof(u), p);
  return p;
}

static store_t *find_store(const cmd_state_t *s, const char *id) {
  sf_uuid_t u;
  if (!id || sf_uuid_parse(id, &u) != 0)
    return NULL;
  store_t *st = NULL;
  HASH_FIND(hh, s->stores, &u, sizeof(u), st);
  return st;
}

static int make_stock_key(const char *store_id, const char *product_id,
                          stock_key_t *k) {
  sf_uuid_t a, b;
  if (sf_uuid_parse(store_id, &a) != 0 || sf_uuid_parse(product_id, &b) != 0)
    return SF_EINVAL;
  memcpy(k->b, a.b, 16);
  memcpy(k->b + 16, b.b, 16);
  return 0;
}

static stock_t *find_stock(const cmd_state_t *s, const char *store_id,
                           const char *product_id) {
  stock_key_t k;
  if (make_stock_key(store_id, product_id, &k) != 0)
    return NULL;
  stock_t *row = NULL;
  HASH_FIND(hh, s->stock, &k, sizeof(k), row);
  return row;
}

/* ---- apply ---- */

static int apply_product(cmd_state_t *s, const sf_event_t *e,
                         cmd_apply_result_t *res) {
  product_t *p = find_product(s, e->product_id);
  if (e->type == SF_EV_PRODUCT_CREATED) {
    if (p) {
      *res = CMD_APPLY_DUPLICATE;
      return 0;
    }
    if (!e->product.sku || !e->product.name || !e->product.price)
      return SF_EINVAL;
    p = calloc(1, sizeof(*p));
    if (!p)
      return SF_ENOMEM;
    if (sf_uuid_parse(e->product_id, &p->id) != 0) {
      free(p);
      return SF_EINVAL;
    }
    if (set_str(&p->sku, e->product.sku) || set_str(&p->name, e->product.name) ||
        set_str(&p->category, e->product.category) ||
        set_str(&p->price, e->product.price)) {
      product_free(p);
      return SF_ENOMEM;
    }
    p->reorder_level = e->product.has_reorder_level ? e->product.reorder_level : 0;
    p->version = e->stream_version;
    HASH_ADD(hh, s->products, id, sizeof(p->id), p);
    HASH_ADD_KEYPTR(hh_sku, s->by_sku, p->sku, strlen(p->sku), p);
    *res = CMD_APPLY_APPLIED;
    return 0;
  }
  if (!p)
    return SF_EINVAL; /* update of a product the log never created */
  if (e->stream_version <= p->version) {
    *res = CMD_APPLY_DUPLICATE;
    return 0;
  }
  if (e->type == SF_EV_PRODUCT_POLICY_SET) {
    p->policy.has_max_sale = e->policy.has_max_sale;
    p->policy.max_sale_quantity = e->policy.max_sale_quantity;
    p->policy.has_max_negative_adjustment =
        e->policy.has_max_negative_adjustment;
    p->policy.max_negative_adjustment = e->policy.max_negative_adjustment;
    p->policy.count_requires_reason = e->policy.count_requires_reason;
  } else if (e->type == SF_EV_PRODUCT_UPDATED) {
    if ((e->product.name && set_str(&p->name, e->product.name)) ||
        (e->product.category && set_str(&p->category, e->product.category)) ||
        (e->product.price && set_str(&p->price, e->product.price)))
      return SF_ENOMEM;
    if (e->product.has_reorder_level)
      p->reorder_level = e->product.reorder_level;
  } else {
    p->discontinued = true;
  }
  p->version = e->stream_version;
  *res = CMD_APPLY_APPLIED;
  return 0;
}

static int apply_store(cmd_state_t *s, const sf_event_t *e,
                       cmd_apply_result_t *res) {
  store_t *st = find_store(s, e->store_id);
  if (e->type == SF_EV_STORE_OPENED) {
    if (st) {
      *res = CMD_APPLY_DUPLICATE;
      return 0;
    }
    if (!e->store.name || !e->store.location)
      return SF_EINVAL;
    st = calloc(1, sizeof(*st));
    if (!st)
      return SF_ENOMEM;
    if (sf_uuid_parse(e->store_id, &st->id) != 0) {
      free(st);
      return SF_EINVAL;
    }
    if (set_str(&st->name, e->store.name) ||
        set_str(&st->location, e->store.location) ||
        set_str(&st->manager_id, e->store.manager_id)) {
      store_free(st);
      return SF_ENOMEM;
    }
    st->version = e->stream_version;
    HASH_ADD(hh, s->stores, id, sizeof(st->id), st);
    *res = CMD_APPLY_APPLIED;
    return 0;
  }
  if (!st)
    return SF_EINVAL;
  if (e->stream_version <= st->version) {
    *res = CMD_APPLY_DUPLICATE;
    return 0;
  }
  if (e->type == SF_EV_STORE_UPDATED) {
    if ((e->store.name && set_str(&st->name, e->store.name)) ||
        (e->store.location && set_str(&st->location, e->store.location)) ||
        (e->store.manager_id && set_str(&st->manager_id, e->store.manager_id)))
      return SF_ENOMEM;
  } else {
    st->closed = true;
  }
  st->version = e->stream_version;
  *res = CMD_APPLY_APPLIED;
  return 0;
}

/* Records the row's current values before a change when a savepoint is
 * open. */
static int remember(cmd_state_t *s, const stock_key_t *k, const stock_t *row) {
  if (!s->recording)
    return 0;
  if (s->n_undo == s->cap_undo) {
    size_t cap = s->cap_undo ? s->cap_undo * 2 : 64;
    undo_t *u = realloc(s->undo, cap * sizeof(*u));
    if (!u)
      return SF_ENOMEM;
    s->undo = u;
    s->cap_undo = cap;
  }
  undo_t *u = &s->undo[s->n_undo++];
  u->key = *k;
  u->existed = row != NULL;
  u->below = row && row->below;
  u->on_hand = row ? row->on_hand : 0;
  u->reserved = row ? row->reserved : 0;
  u->version = row ? row->version : 0;
  return 0;
}

void cmd_state_savepoint(cmd_state_t *s) {
  s->n_undo = 0;
  s->recording = true;
}

void cmd_state_release(cmd_state_t *s) {
  s->recording = false;
  s->n_undo = 0;
}

void cmd_state_rollback(cmd_state_t *s) {
  for (size_t i = s->n_undo; i-- > 0;) {
    const undo_t *u = &s->undo[i];
    stock_t *row = NULL;
    HASH_FIND(hh, s->stock, &u->key, sizeof(u->key), row);
    if (!u->existed) {
      if (row) {
        HASH_DEL(s->stock, row);
        free(row);
      }
      continue;
    }
    if (row) {
      row->on_hand = u->on_hand;
      row->reserved = u->reserved;
      row->version = u->version;
      row->below = u->below;
    }
  }
  cmd_state_release(s);
}

static int apply_stock(cmd_state_t *s, const sf_event_t *e,
                       cmd_apply_result_t *res) {
  stock_key_t k;
  if (make_stock_key(e->store_id, e->product_id, &k) != 0)
    return SF_EINVAL;
  if (e->stock.on_hand < 0 || e->stock.reserved < 0 ||
      e->stock.reserved > e->stock.on_hand || e->stream_version < 1)
    return SF_EINVAL;
  stock_t *row = NULL;
  HASH_FIND(hh, s->stock, &k, sizeof(k), row);
  if (row && e->stream_version <= row->version) {
    *res = CMD_APPLY_DUPLICATE;
    return 0;
  }
  if (remember(s, &k, row))
    return SF_ENOMEM;
  if (!row) {
    row = calloc(1, sizeof(*row));
    if (!row)
      return SF_ENOMEM;
    row->key = k;
    HASH_ADD(hh, s->stock, key, sizeof(row->key), row);
  }
  /* Events carry the values after the event: folding sets them. */
  row->on_hand = e->stock.on_hand;
  row->reserved = e->stock.reserved;
  row->version = e->stream_version;
  *res = CMD_APPLY_APPLIED;
  return 0;
}

static order_t *find_order(const cmd_state_t *s, const char *id) {
  sf_uuid_t u;
  if (!id || sf_uuid_parse(id, &u) != 0)
    return NULL;
  order_t *o = NULL;
  HASH_FIND(hh, s->orders, &u, sizeof(u), o);
  return o;
}

/* Sets each line's stock row to its after-levels (per-line version guard).
 * Checks every line before changing anything. */
static int apply_order_lines(cmd_state_t *s, const sf_event_t *e) {
  for (size_t i = 0; i < e->order.n_lines; i++) {
    const sf_order_line_t *l = &e->order.lines[i];
    stock_key_t k;
    if (make_stock_key(e->store_id, l->product_id, &k) != 0 || l->on_hand < 0 ||
        l->reserved < 0 || l->reserved > l->on_hand || l->version < 1)
      return SF_EINVAL;
  }
  for (size_t i = 0; i < e->order.n_lines; i++) {
    const sf_order_line_t *l = &e->order.lines[i];
    stock_key_t k;
    make_stock_key(e->store_id, l->product_id, &k);
    stock_t *row = NULL;
    HASH_FIND(hh, s->stock, &k, sizeof(k), row);
    if (row && l->version <= row->version)
      continue;
    if (!row) {
      row = calloc(1, sizeof(*row));
      if (!row)
        return SF_ENOMEM;
      row->key = k;
      HASH_ADD(hh, s->stock, key, sizeof(row->key), row);
    }
    row->on_hand = l->on_hand;
    row->reserved = l->reserved;
    row->version = l->version;
  }
  return 0;
}

static int apply_order(cmd_state_t *s, const sf_event_t *e,
                       cmd_apply_result_t *res) {
  order_t *o = find_order(s, e->order.order_id);
  if (e->type == SF_EV_ORDER_PLACED) {
    if (o) {
      *res = CMD_APPLY_DUPLICATE;
      return 0;
    }
    if (e->order.n_lines == 0 || !e->store_id[0])
      return SF_EINVAL;
    o = calloc(1, sizeof(*o));
    if (!o)
      return SF_ENOMEM;
    o->lines = calloc(e->order.n_lines, sizeof(*o->lines));
    if (!o->lines) {
      free(o);
      return SF_ENOMEM;
    }
    if (sf_uuid_parse(e->order.order_id, &o->id) != 0) {
      free(o->lines);
      free(o);
      return SF_EINVAL;
    }
    int rc = apply_order_lines(s, e);
    if (rc) {
      free(o->lines);
      free(o);
      return rc;
    }
    memcpy(o->lines, e->order.lines, e->order.n_lines * sizeof(*o->lines));
    o->n_lines = e->order.n_lines;
    snprintf(o->store_id, sizeof(o->store_id), "%s", e->store_id);
    o->status = CMD_ORDER_PLACED;
    o->version = e->stream_version;
    o->placed_at_us = e->occurred_at_us;
    HASH_ADD(hh, s->orders, id, sizeof(o->id), o);
    HASH_ADD(hh_open, s->open_orders, id, sizeof(o->id), o);
    *res = CMD_APPLY_APPLIED;
    return 0;
  }
  if (!o)
    return SF_EINVAL;
  if (e->stream_version <= o->version) {
    *res = CMD_APPLY_DUPLICATE;
    return 0;
  }
  int rc = apply_order_lines(s, e);
  if (rc)
    return rc;
  if (o->status == CMD_ORDER_PLACED)
    HASH_DELETE(hh_open, s->open_orders, o);
  o->status = e->type == SF_EV_ORDER_FULFILLED ? CMD_ORDER_FULFILLED
                                               : CMD_ORDER_CANCELLED;
  o->version = e->stream_version;
  *res = CMD_APPLY_APPLIED;
  return 0;
}

/* A crossing event sets the row's flag. It carries the version of the
 * stock event that crossed (it does not move the stream): one of an older
 * version is a replayed duplicate, one of a version the row never reached
 * breaks the log's order. */
static int apply_crossing(cmd_state_t *s, const sf_event_t *e,
                          cmd_apply_result_t *res) {
  stock_key_t k;
  if (make_stock_key(e->store_id, e->product_id, &k) != 0)
    return SF_EINVAL;
  stock_t *row = NULL;
  HASH_FIND(hh, s->stock, &k, sizeof(k), row);
  if (!row || e->stream_version > row->version)
    return SF_EINVAL;
  bool below = e->type == SF_EV_STOCK_BELOW_REORDER;
  if (e->stream_version < row->version || row->below == below) {
    *res = CMD_APPLY_DUPLICATE;
    return 0;
  }
  if (remember(s, &k, row))
    return SF_ENOMEM;
  row->below = below;
  *res = CMD_APPLY_APPLIED;
  return 0;
}

int cmd_state_apply(cmd_state_t *s, const sf_event_t *e,
                    cmd_apply_result_t *res) {
  switch (e->type) {
  case SF_EV_PRODUCT_CREATED:
  case SF_EV_PRODUCT_UPDATED:
  case SF_EV_PRODUCT_DISCONTINUED:
  case SF_EV_PRODUCT_POLICY_SET:
    return apply_product(s, e, res);
  case SF_EV_STOCK_BELOW_REORDER:
  case SF_EV_STOCK_RESTORED:
    return apply_crossing(s, e, res);
  case SF_EV_STORE_OPENED:
  case SF_EV_STORE_UPDATED:
  case SF_EV_STORE_CLOSED:
    return apply_store(s, e, res);
  case SF_EV_STOCK_MOVED:
  case SF_EV_TRANSFER_OUT:
  case SF_EV_TRANSFER_IN:
    return apply_stock(s, e, res);
  case SF_EV_ORDER_PLACED:
  case SF_EV_ORDER_FULFILLED:
  case SF_EV_ORDER_CANCELLED:
    return apply_order(s, e, res);
  default:
    *res = CMD_APPLY_IGNORED;
    return 0;
  }
}

/* ---- lookups ---- */

bool cmd_state_product(const cmd_state_t *s, const char *id,
                       cmd_product_view_t *out) {
  const product_t *p = find_product(s, id);
  if (!p)
    return false;
  out->sku = p->sku;
  out->name = p->name;
  out->category = p->category;
  out->price = p->price;
  out->reorder_level = p->reorder_level;
  out->version = p->version;
  out->discontinued = p->discontinued;
  out->policy = p->policy;
  return true;
}

bool cmd_state_store(const cmd_state_t *s, const char *id,
                     cmd_store_view_t *out) {
  const store_t *st = find_store(s, id);
  if (!st)
    return false;
  out->name = st->name;
  out->location = st->location;
  out->manager_id = st->manager_id;
  out->version = st->version;
  out->closed = st->closed;
  return true;
}

void cmd_state_stock(const cmd_state_t *s, const char *store_id,
                     const char *product_id, cmd_stock_row_t *out) {
  const stock_t *row = find_stock(s, store_id, product_id);
  out->on_hand = row ? row->on_hand : 0;
  out->reserved = row ? row->reserved : 0;
  out->version = row ? row->version : 0;
}

bool cmd_state_sku_taken(const cmd_state_t *s, const char *sku) {
  product_t *p = NULL;
  HASH_FIND(hh_sku, s->by_sku, sku, strlen(sku), p);
  return p != NULL;
}

size_t cmd_state_n_products(const cmd_state_t *s) {
  return HASH_CNT(hh, s->products);
}
size_t cmd_state_n_stores(const cmd_state_t *s) {
  return HASH_CNT(hh, s->stores);
}
size_t cmd_state_n_stock(const cmd_state_t *s) { return HASH_CNT(hh, s->stock); }

/* ---- decisions ---- */

const char *cmd_check_movement(sf_movement_t m, int64_t quantity,
                               const char *reason) {
  switch (m) {
  case SF_MOVE_RECEIPT:
  case SF_MOVE_SALE:
  case SF_MOVE_RETURN:
    if (quantity < 1 || quantity > CMD_MAX_QUANTITY)
      return "quantity: must be an integer between 1 and 2147483647";
    return NULL;
  case SF_MOVE_ADJUSTMENT:
    if (quantity == 0 || quantity > CMD_MAX_QUANTITY ||
        quantity < -CMD_MAX_QUANTITY)
      return "quantity: must be a non-zero integer between -2147483647 and "
             "2147483647";
    if (!reason || !*reason)
      return "reason: required for an adjustment";
    return NULL;
  case SF_MOVE_COUNT:
    if (quantity < 0 || quantity > CMD_MAX_QUANTITY)
      return "quantity: must be an integer between 0 and 2147483647";
    return NULL;
  default:
    return "type: must be one of receipt, sale, return, adjustment, count";
  }
}

cmd_verdict_t cmd_decide_movement(const cmd_state_t *s,
                                  const cmd_movement_cmd_t *c, sf_event_t *e) {
  const store_t *st = find_store(s, c->store_id);
  if (!st)
    return CMD_NOT_FOUND_STORE;
  const product_t *p = find_product(s, c->product_id);
  if (!p)
    return CMD_NOT_FOUND_PRODUCT;
  if (st->closed)
    return CMD_STORE_CLOSED;
  if (p->discontinued && c->movement == SF_MOVE_RECEIPT)
    return CMD_PRODUCT_DISCONTINUED;
  cmd_stock_row_t row;
  cmd_state_stock(s, c->store_id, c->product_id, &row);
  if (c->if_match >= 0 && c->if_match != row.version)
    return CMD_VERSION_CONFLICT;
  cmd_verdict_t pv = cmd_policy_check(&p->policy, c->movement, c->quantity,
                                      c->reason);
  if (pv != CMD_OK)
    return pv;

  int64_t delta = 0;
  switch (c->movement) {
  case SF_MOVE_RECEIPT:
  case SF_MOVE_RETURN:
    delta = c->quantity;
    break;
  case SF_MOVE_SALE:
    delta = -c->quantity;
    break;
  case SF_MOVE_ADJUSTMENT:
    delta = c->quantity;
    break;
  case SF_MOVE_COUNT:
    if (c->quantity < row.reserved)
      return CMD_COUNT_BELOW_RESERVED;
    delta = c->quantity - row.on_hand;
    break;
  default:
    return CMD_NOT_FOUND_PRODUCT; /* unreachable: checked by the caller */
  }
  int64_t on_hand = row.on_hand + delta;
  if (on_hand - row.reserved < 0)
    return CMD_INSUFFICIENT_STOCK;
  if (on_hand > CMD_MAX_STOCK)
    return CMD_STOCK_LIMIT;

  e->type = SF_EV_STOCK_MOVED;
  memcpy(e->store_id, c->store_id, sizeof(e->store_id) - 1);
  e->store_id[sizeof(e->store_id) - 1] = '\0';
  memcpy(e->product_id, c->product_id, sizeof(e->product_id) - 1);
  e->product_id[sizeof(e->product_id) - 1] = '\0';
  e->stream_version = row.version + 1;
  e->stock.movement = c->movement;
  e->stock.quantity = c->quantity;
  e->stock.delta = delta;
  e->stock.on_hand = on_hand;
  e->stock.reserved = row.reserved;
  e->stock.reason = c->reason;
  e->stock.reference = c->reference;
  return CMD_OK;
}

static void copy_id(char dst[SF_ID_LEN], const char *src) {
  size_t n = strlen(src);
  if (n > SF_ID_LEN - 1)
    n = SF_ID_LEN - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

cmd_verdict_t cmd_decide_product_create(const cmd_state_t *s,
                                        const char *product_id,
                                        const char *sku, const char *name,
                                        const char *category,
                                        const char *price,
                                        int64_t reorder_level, sf_event_t *e) {
  if (cmd_state_sku_taken(s, sku))
    return CMD_DUPLICATE_SKU;
  e->type = SF_EV_PRODUCT_CREATED;
  copy_id(e->product_id, product_id);
  e->store_id[0] = '\0';
  e->stream_version = 1;
  e->product.sku = sku;
  e->product.name = name;
  e->product.category = category;
  e->product.price = price;
  e->product.reorder_level = reorder_level;
  e->product.has_reorder_level = true;
  return CMD_OK;
}

cmd_verdict_t cmd_decide_store_open(const cmd_state_t *s, const char *store_id,
                                    const char *name, const char *location,
                                    const char *manager_id, sf_event_t *e) {
  (void)s;
  e->type = SF_EV_STORE_OPENED;
  copy_id(e->store_id, store_id);
  e->product_id[0] = '\0';
  e->stream_version = 1;
  e->store.name = name;
  e->store.location = location;
  e->store.manager_id = manager_id;
  return CMD_OK;
}

cmd_verdict_t cmd_decide_product_update(const cmd_state_t *s, const char *id,
                                        const char *name, const char *category,
                                        const char *price,
                                        bool has_reorder_level,
                                        int64_t reorder_level, sf_event_t *e) {
  const product_t *p = find_product(s, id);
  if (!p)
    return CMD_NOT_FOUND_PRODUCT;
  if (p->discontinued)
    return CMD_PRODUCT_DISCONTINUED;
  e->type = SF_EV_PRODUCT_UPDATED;
  copy_id(e->product_id, id);
  e->store_id[0] = '\0';
  e->stream_version = p->version + 1;
  e->product.name = name;
  e->product.category = category;
  e->product.price = price;
  e->product.has_reorder_level = has_reorder_level;
  e->product.reorder_level = reorder_level;
  return CMD_OK;
}

cmd_verdict_t cmd_decide_product_discontinue(const cmd_state_t *s,
                                             const char *id, sf_event_t *e) {
  const product_t *p = find_product(s, id);
  if (!p)
    return CMD_NOT_FOUND_PRODUCT;
  if (p->discontinued)
    return CMD_INVALID_STATE;
  e->type = SF_EV_PRODUCT_DISCONTINUED;
  copy_id(e->product_id, id);
  e->store_id[0] = '\0';
  e->stream_version = p->version + 1;
  return CMD_OK;
}

cmd_verdict_t cmd_decide_store_update(const cmd_state_t *s, const char *id,
                                      const char *name, const char *location,
                                      const char *manager_id, sf_event_t *e) {
  const store_t *st = find_store(s, id);
  if (!st)
    return CMD_NOT_FOUND_STORE;
  if (st->closed)
    return CMD_STORE_CLOSED;
  e->type = SF_EV_STORE_UPDATED;
  copy_id(e->store_id, id);
  e->product_id[0] = '\0';
  e->stream_version = st->version + 1;
  e->store.name = name;
  e->store.location = location;
  e->store.manager_id = manager_id;
  return CMD_OK;
}

cmd_verdict_t cmd_decide_store_close(const cmd_state_t *s, const char *id,
                                     sf_event_t *e) {
  const store_t *st = find_store(s, id);
  if (!st)
    return CMD_NOT_FOUND_STORE;
  if (st->closed)
    return CMD_INVALID_STATE;
  e->type = SF_EV_STORE_CLOSED;
  copy_id(e->store_id, id);
  e->product_id[0] = '\0';
  e->stream_version = st->version + 1;
  return CMD_OK;
}

cmd_verdict_t cmd_decide_transfer(const cmd_state_t *s, const char *from_store,
                                  const char *to_store, const char *product_id,
                                  int64_t quantity, const char *reference,
                                  const char *transfer_id, sf_event_t *out,
                                  sf_event_t *in) {
  const store_t *from = find_store(s, from_store);
  const store_t *to = find_store(s, to_store);
  if (!from || !to)
    return CMD_NOT_FOUND_STORE;
  if (from == to)
    return CMD_SAME_STORE;
  if (!find_product(s, product_id))
    return CMD_NOT_FOUND_PRODUCT;
  if (from->closed || to->closed)
    return CMD_STORE_CLOSED;
  cmd_stock_row_t src, dst;
  cmd_state_stock(s, from_store, product_id, &src);
  cmd_state_stock(s, to_store, product_id, &dst);
  if (src.on_hand - src.reserved - quantity < 0)
    return CMD_INSUFFICIENT_STOCK;
  if (dst.on_hand + quantity > CMD_MAX_STOCK)
    return CMD_STOCK_LIMIT;

  out->type = SF_EV_TRANSFER_OUT;
  copy_id(out->store_id, from_store);
  copy_id(out->product_id, product_id);
  out->stream_version = src.version + 1;
  out->stock.movement = SF_MOVE_ADJUSTMENT; /* unused for transfers */
  out->stock.quantity = quantity;
  out->stock.delta = -quantity;
  out->stock.on_hand = src.on_hand - quantity;
  out->stock.reserved = src.reserved;
  out->stock.reference = reference;
  copy_id(out->stock.transfer_id, transfer_id);
  copy_id(out->stock.counterpart_store_id, to_store);

  in->type = SF_EV_TRANSFER_IN;
  copy_id(in->store_id, to_store);
  copy_id(in->product_id, product_id);
  in->stream_version = dst.version + 1;
  in->stock.movement = SF_MOVE_ADJUSTMENT;
  in->stock.quantity = quantity;
  in->stock.delta = quantity;
  in->stock.on_hand = dst.on_hand + quantity;
  in->stock.reserved = dst.reserved;
  in->stock.reference = reference;
  copy_id(in->stock.transfer_id, transfer_id);
  copy_id(in->stock.counterpart_store_id, from_store);
  return CMD_OK;
}

const char *cmd_order_status_name(cmd_order_status_t st) {
  switch (st) {
  case CMD_ORDER_PLACED: return "placed";
  case CMD_ORDER_FULFILLED: return "fulfilled";
  case CMD_ORDER_CANCELLED: return "cancelled";
  }
  return "unknown";
}

cmd_verdict_t cmd_decide_order_place(const cmd_state_t *s, const char *store_id,
                                     const char *order_id,
                                     const sf_order_line_t *lines, size_t n,
                                     const char *reference,
                                     sf_order_line_t *lines_out, bool *shorts,
                                     sf_event_t *e) {
  const store_t *st = find_store(s, store_id);
  if (!st)
    return CMD_NOT_FOUND_STORE;
  for (size_t i = 0; i < n; i++) {
    if (!find_product(s, lines[i].product_id))
      return CMD_NOT_FOUND_PRODUCT;
    for (size_t j = 0; j < i; j++)
      if (strcmp(lines[i].product_id, lines[j].product_id) == 0)
        return CMD_DUPLICATE_LINE;
  }
  if (st->closed)
    return CMD_STORE_CLOSED;
  bool short_any = false;
  for (size_t i = 0; i < n; i++) {
    cmd_stock_row_t row;
    cmd_state_stock(s, store_id, lines[i].product_id, &row);
    shorts[i] = row.on_hand - row.reserved < lines[i].quantity;
    short_any = short_any || shorts[i];
    lines_out[i] = lines[i];
    lines_out[i].on_hand = row.on_hand;
    lines_out[i].reserved = row.reserved + lines[i].quantity;
    lines_out[i].version = row.version + 1;
  }
  if (short_any)
    return CMD_INSUFFICIENT_STOCK;
  e->type = SF_EV_ORDER_PLACED;
  copy_id(e->store_id, store_id);
  e->product_id[0] = '\0';
  e->stream_version = 1;
  copy_id(e->order.order_id, order_id);
  e->order.lines = lines_out;
  e->order.n_lines = n;
  e->order.reference = reference;
  return CMD_OK;
}

/* Fulfil, cancel or expire (cause "expired") a placed order. */
static cmd_verdict_t decide_finish(const cmd_state_t *s, const order_t *o,
                                   bool fulfil, const char *cause,
                                   sf_order_line_t *lines_out, sf_event_t *e) {
  if (o->status != CMD_ORDER_PLACED)
    return CMD_INVALID_STATE;
  for (size_t i = 0; i < o->n_lines; i++) {
    cmd_stock_row_t row;
    cmd_state_stock(s, o->store_id, o->lines[i].product_id, &row);
    int64_t q = o->lines[i].quantity;
    if (row.reserved < q)
      return CMD_INVALID_STATE; /* cannot happen: the reservation is held */
    lines_out[i] = o->lines[i];
    lines_out[i].on_hand = fulfil ? row.on_hand - q : row.on_hand;
    lines_out[i].reserved = row.reserved - q;
    lines_out[i].version = row.version + 1;
  }
  e->type = fulfil ? SF_EV_ORDER_FULFILLED : SF_EV_ORDER_CANCELLED;
  copy_id(e->store_id, o->store_id);
  e->product_id[0] = '\0';
  e->stream_version = o->version + 1;
  sf_uuid_format(&o->id, e->order.order_id);
  e->order.lines = lines_out;
  e->order.n_lines = o->n_lines;
  e->order.cause = fulfil ? NULL : cause;
  return CMD_OK;
}

cmd_verdict_t cmd_decide_order_finish(const cmd_state_t *s,
                                      const char *order_id, bool fulfil,
                                      sf_order_line_t *lines_out,
                                      sf_event_t *e) {
  const order_t *o = find_order(s, order_id);
  if (!o)
    return CMD_NOT_FOUND_ORDER;
  return decide_finish(s, o, fulfil, NULL, lines_out, e);
}

/* ---- expiry of reservations ---- */

bool cmd_order_due(int64_t placed_at_us, int64_t now_us, int64_t ttl_us) {
  return ttl_us > 0 && placed_at_us <= now_us - ttl_us;
}

size_t cmd_state_due_orders(const cmd_state_t *s, int64_t now_us,
                            int64_t ttl_us, char (*ids)[SF_ID_LEN],
                            size_t cap) {
  return cmd_state_due_orders_where(s, now_us, ttl_us, NULL, NULL, ids, cap);
}

size_t cmd_state_due_orders_where(const cmd_state_t *s, int64_t now_us,
                                  int64_t ttl_us,
                                  bool (*keep)(void *ud, const char *store_id),
                                  void *ud, char (*ids)[SF_ID_LEN],
                                  size_t cap) {
  size_t n = 0;
  const order_t *o, *tmp;
  HASH_ITER(hh_open, s->open_orders, o, tmp) {
    if (n == cap)
      break;
    if (cmd_order_due(o->placed_at_us, now_us, ttl_us) &&
        (!keep || keep(ud, o->store_id)))
      sf_uuid_format(&o->id, ids[n++]);
  }
  return n;
}

size_t cmd_state_n_open_orders(const cmd_state_t *s) {
  return HASH_CNT(hh_open, s->open_orders);
}

cmd_verdict_t cmd_decide_order_expire(const cmd_state_t *s,
                                      const char *order_id, int64_t now_us,
                                      int64_t ttl_us,
                                      sf_order_line_t *lines_out,
                                      sf_event_t *e) {
  const order_t *o = find_order(s, order_id);
  if (!o)
    return CMD_NOT_FOUND_ORDER;
  if (o->status == CMD_ORDER_PLACED &&
      !cmd_order_due(o->placed_at_us, now_us, ttl_us))
    return CMD_NOT_DUE;
  return decide_finish(s, o, false, CMD_CAUSE_EXPIRED, lines_out, e);
}

/* ---- low-stock crossings ---- */

bool cmd_below_reorder(int64_t on_hand, int64_t reserved,
                       int64_t reorder_level) {
  return reorder_level > 0 && on_hand - reserved < reorder_level;
}

/* One store x product after e: fills out when its status differs from the
 * row's flag. Returns 1 when it did, else 0. */
static size_t crossing_of(const cmd_state_t *s, const sf_event_t *e,
                          const char *product_id, int64_t on_hand,
                          int64_t reserved, int64_t version, sf_event_t *out) {
  const product_t *p = find_product(s, product_id);
  if (!p)
    return 0;
  const stock_t *row = find_stock(s, e->store_id, product_id);
  bool was = row && row->below;
  bool now = cmd_below_reorder(on_hand, reserved, p->reorder_level);
  if (was == now)
    return 0;
  sf_event_init(out);
  out->type = now ? SF_EV_STOCK_BELOW_REORDER : SF_EV_STOCK_RESTORED;
  memcpy(out->command_id, e->command_id, sizeof(out->command_id));
  memcpy(out->actor, e->actor, sizeof(out->actor));
  memcpy(out->store_id, e->store_id, sizeof(out->store_id));
  copy_id(out->product_id, product_id);
  out->occurred_at_us = e->occurred_at_us;
  out->stream_version = version;
  out->crossing.on_hand = on_hand;
  out->crossing.reserved = reserved;
  out->crossing.reorder_level = p->reorder_level;
  return 1;
}

size_t cmd_state_crossings(const cmd_state_t *s, const sf_event_t *e,
                           sf_event_t *out, size_t cap) {
  size_t n = 0;
  switch (e->type) {
  case SF_EV_STOCK_MOVED:
  case SF_EV_TRANSFER_OUT:
  case SF_EV_TRANSFER_IN:
    if (cap > 0)
      n = crossing_of(s, e, e->product_id, e->stock.on_hand,
                      e->stock.reserved, e->stream_version, out);
    return n;
  case SF_EV_ORDER_PLACED:
  case SF_EV_ORDER_FULFILLED:
  case SF_EV_ORDER_CANCELLED:
    for (size_t i = 0; i < e->order.n_lines && n < cap; i++) {
      const sf_order_line_t *l = &e->order.lines[i];
      n += crossing_of(s, e, l->product_id, l->on_hand, l->reserved,
                       l->version, &out[n]);
    }
    return n;
  default:
    return 0;
  }
}

/* ---- policies ---- */

cmd_verdict_t cmd_policy_check(const cmd_policy_t *p, sf_movement_t m,
                               int64_t quantity, const char *reason) {
  if (m == SF_MOVE_SALE && p->has_max_sale && quantity > p->max_sale_quantity)
    return CMD_POLICY_MAX_SALE;
  if (m == SF_MOVE_ADJUSTMENT && p->has_max_negative_adjustment &&
      quantity < 0 && -quantity > p->max_negative_adjustment)
    return CMD_POLICY_MAX_NEGATIVE_ADJUSTMENT;
  if (m == SF_MOVE_COUNT && p->count_requires_reason && (!reason || !*reason))
    return CMD_POLICY_REASON_REQUIRED;
  return CMD_OK;
}

bool cmd_policy_explain(const cmd_policy_t *p, cmd_verdict_t v,
                        int64_t quantity, char *out, size_t cap) {
  switch (v) {
  case CMD_POLICY_MAX_SALE:
    snprintf(out, cap,
             "a sale of %lld is above the product's max_sale_quantity %lld",
             (long long)quantity, (long long)p->max_sale_quantity);
    return true;
  case CMD_POLICY_MAX_NEGATIVE_ADJUSTMENT:
    snprintf(out, cap,
             "an adjustment of %lld removes more than the product's "
             "max_negative_adjustment %lld",
             (long long)quantity, (long long)p->max_negative_adjustment);
    return true;
  case CMD_POLICY_REASON_REQUIRED:
    snprintf(out, cap, "the product's policy requires a reason for a count");
    return true;
  default:
    return false;
  }
}

cmd_verdict_t cmd_decide_product_policy(const cmd_state_t *s, const char *id,
                                        const cmd_policy_t *policy,
                                        sf_event_t *e) {
  const product_t *p = find_product(s, id);
  if (!p)
    return CMD_NOT_FOUND_PRODUCT;
  e->type = SF_EV_PRODUCT_POLICY_SET;
  copy_id(e->product_id, id);
  e->store_id[0] = '\0';
  e->stream_version = p->version + 1;
  e->policy.has_max_sale = policy->has_max_sale;
  e->policy.max_sale_quantity = policy->max_sale_quantity;
  e->policy.has_max_negative_adjustment = policy->has_max_negative_adjustment;
  e->policy.max_negative_adjustment = policy->max_negative_adjustment;
  e->policy.count_requires_reason = policy->count_requires_reason;
  return CMD_OK;
}

bool cmd_state_order(const cmd_state_t *s, const char *order_id,
                     char store_id[SF_ID_LEN], cmd_order_status_t *status,
                     int64_t *version) {
  const order_t *o = find_order(s, order_id);
  if (!o)
    return false;
  memcpy(store_id, o->store_id, SF_ID_LEN);
  *status = o->status;
  *version = o->version;
  return true;
}

/* ---- idempotency ---- */

static idem_t *find_idem(const cmd_state_t *s, const char *key) {
  idem_t *i = NULL;
  HASH_FIND_STR(s->idem, key, i);
  return i;
}

bool cmd_state_idem_get(const cmd_state_t *s, const char *key,
                        cmd_idem_view_t *out) {
  const idem_t *i = find_idem(s, key);
  if (!i)
    return false;
  out->request_hash = i->hash;
  out->pending = i->pending;
  out->status = i->status;
  out->body = i->body;
  return true;
}

static idem_t *idem_add(cmd_state_t *s, const char *key,
                        const char *request_hash, int64_t expires_us) {
  idem_t *i = calloc(1, sizeof(*i));
  if (!i)
    return NULL;
  i->key = strdup(key);
  if (!i->key) {
    free(i);
    return NULL;
  }
  snprintf(i->hash, sizeof(i->hash), "%s", request_hash ? request_hash : "");
  i->expires_us = expires_us;
  HASH_ADD_KEYPTR(hh, s->idem, i->key, strlen(i->key), i);
  return i;
}

int cmd_state_idem_begin(cmd_state_t *s, const char *key,
                         const char *request_hash, int64_t expires_us) {
  if (find_idem(s, key))
    return SF_EEXISTS;
  idem_t *i = idem_add(s, key, request_hash, expires_us);
  if (!i)
    return SF_ENOMEM;
  i->pending = true;
  return 0;
}

int cmd_state_idem_finish(cmd_state_t *s, const char *key,
                          const char *request_hash, int status,
                          const char *body, int64_t expires_us) {
  idem_t *i = find_idem(s, key);
  if (!i) {
    i = idem_add(s, key, request_hash, expires_us);
    if (!i)
      return SF_ENOMEM;
  } else if (!i->pending) {
    return 0; /* the first answer stays (a duplicate event in the log) */
  }
  char *copy = strdup(body);
  if (!copy)
    return SF_ENOMEM;
  free(i->body);
  i->body = copy;
  i->status = status;
  i->pending = false;
  return 0;
}

void cmd_state_idem_drop(cmd_state_t *s, const char *key) {
  idem_t *i = find_idem(s, key);
  if (!i || !i->pending)
    return;
  HASH_DEL(s->idem, i);
  free(i->key);
  free(i->body);
  free(i);
}

size_t cmd_state_idem_expire(cmd_state_t *s, int64_t now_us) {
  size_t n = 0;
  idem_t *i, *tmp;
  HASH_ITER(hh, s->idem, i, tmp) {
    if (!i->pending && i->expires_us < now_us) {
      HASH_DEL(s->idem, i);
      free(i->key);
      free(i->body);
      free(i);
      n++;
    }
  }
  return n;
}

size_t cmd_state_n_idem(const cmd_state_t *s) { return HASH_CNT(hh, s->idem); }

int cmd_verdict_status(cmd_verdict_t v) {
  switch (v) {
  case CMD_OK:
    return 201;
  case CMD_SAME_STORE:
  case CMD_DUPLICATE_LINE:
    return 422;
  case CMD_NOT_FOUND_ORDER:
    return 404;
  case CMD_NOT_FOUND_STORE:
  case CMD_NOT_FOUND_PRODUCT:
    return 404;
  case CMD_VERSION_CONFLICT:
    return 412;
  case CMD_NOT_DUE:
    return 500; /* never answered: the sweeper's own check */
  default:
    return 409;
  }
}

const char *cmd_verdict_code(cmd_verdict_t v) {
  switch (v) {
  case CMD_OK: return "ok";
  case CMD_NOT_FOUND_STORE: return "not_found";
  case CMD_NOT_FOUND_PRODUCT: return "not_found";
  case CMD_DUPLICATE_SKU: return "duplicate_sku";
  case CMD_STORE_CLOSED: return "store_closed";
  case CMD_PRODUCT_DISCONTINUED: return "product_discontinued";
  case CMD_INSUFFICIENT_STOCK: return "insufficient_stock";
  case CMD_COUNT_BELOW_RESERVED: return "count_below_reserved";
  case CMD_STOCK_LIMIT: return "stock_limit_exceeded";
  case CMD_VERSION_CONFLICT: return "version_conflict";
  case CMD_INVALID_STATE: return "invalid_state";
  case CMD_SAME_STORE: return "validation_failed";
  case CMD_NOT_FOUND_ORDER: return "not_found";
  case CMD_DUPLICATE_LINE: return "validation_failed";
  case CMD_POLICY_MAX_SALE: return "policy_max_sale_quantity";
  case CMD_POLICY_MAX_NEGATIVE_ADJUSTMENT:
    return "policy_max_negative_adjustment";
  case CMD_POLICY_REASON_REQUIRED: return "policy_reason_required";
  case CMD_NOT_DUE: return "not_due";
  }
  return "internal";
}
