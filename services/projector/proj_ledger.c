/* proj_ledger: the fold of the conservation check. See proj_ledger.h.
 * Rows are uthash entries keyed by the 32 raw bytes of store and product
 * ids (as in the command service's state). */
#include "proj_ledger.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "sf/err.h"

typedef struct row {
  uint8_t key[32]; /* store uuid, product uuid */
  bool in_log, in_model;
  int64_t sum_on_hand, sum_reserved;     /* Σ deltas */
  int64_t after_on_hand, after_reserved; /* of the newest event */
  int64_t version;
  int64_t model_on_hand, model_reserved;
  UT_hash_handle hh;
} row_t;

typedef struct product {
  uint8_t key[16];
  int64_t stores, transfer_net, movements;
  UT_hash_handle hh;
} product_t;

struct proj_ledger {
  row_t *rows;
  product_t *products;
  uint64_t events, duplicates;
};

int proj_ledger_new(proj_ledger_t **out) {
  *out = calloc(1, sizeof(**out));
  return *out ? 0 : SF_ENOMEM;
}

void proj_ledger_destroy(proj_ledger_t *l) {
  if (!l)
    return;
  row_t *r, *rt;
  HASH_ITER(hh, l->rows, r, rt) {
    HASH_DEL(l->rows, r);
    free(r);
  }
  product_t *p, *pt;
  HASH_ITER(hh, l->products, p, pt) {
    HASH_DEL(l->products, p);
    free(p);
  }
  free(l);
}

static row_t *get_row(proj_ledger_t *l, const char *store, const char *product,
                      int *rc) {
  sf_uuid_t s, p;
  *rc = 0;
  if (sf_uuid_parse(store, &s) || sf_uuid_parse(product, &p)) {
    *rc = SF_EINVAL;
    return NULL;
  }
  uint8_t key[32];
  memcpy(key, s.b, 16);
  memcpy(key + 16, p.b, 16);
  row_t *r = NULL;
  HASH_FIND(hh, l->rows, key, sizeof(key), r);
  if (r)
    return r;
  r = calloc(1, sizeof(*r));
  if (!r) {
    *rc = SF_ENOMEM;
    return NULL;
  }
  memcpy(r->key, key, sizeof(key));
  HASH_ADD(hh, l->rows, key, sizeof(r->key), r);
  return r;
}

static product_t *get_product(proj_ledger_t *l, const uint8_t key[16]) {
  product_t *p = NULL;
  HASH_FIND(hh, l->products, key, 16, p);
  if (p)
    return p;
  p = calloc(1, sizeof(*p));
  if (!p)
    return NULL;
  memcpy(p->key, key, 16);
  HASH_ADD(hh, l->products, key, sizeof(p->key), p);
  return p;
}

/* One store x product change: deltas and after-levels at version. */
static int fold(proj_ledger_t *l, const char *store, const char *product,
                int64_t d_on_hand, int64_t d_reserved, int64_t on_hand,
                int64_t reserved, int64_t version, bool transfer) {
  int rc;
  row_t *r = get_row(l, store, product, &rc);
  if (!r)
    return rc;
  if (r->in_log && version <= r->version) {
    l->duplicates++;
    return 0;
  }
  product_t *p = get_product(l, r->key + 16);
  if (!p)
    return SF_ENOMEM;
  r->in_log = true;
  r->sum_on_hand += d_on_hand;
  r->sum_reserved += d_reserved;
  r->after_on_hand = on_hand;
  r->after_reserved = reserved;
  r->version = version;
  if (transfer)
    p->transfer_net += d_on_hand;
  else
    p->movements += d_on_hand;
  l->events++;
  return 0;
}

int proj_ledger_apply(proj_ledger_t *l, const sf_event_t *e) {
  switch (e->type) {
  case SF_EV_STOCK_MOVED:
  case SF_EV_TRANSFER_OUT:
  case SF_EV_TRANSFER_IN:
    return fold(l, e->store_id, e->product_id, e->stock.delta, 0,
                e->stock.on_hand, e->stock.reserved, e->stream_version,
                e->type != SF_EV_STOCK_MOVED);
  case SF_EV_ORDER_PLACED:
  case SF_EV_ORDER_FULFILLED:
  case SF_EV_ORDER_CANCELLED:
    for (size_t i = 0; i < e->order.n_lines; i++) {
      const sf_order_line_t *ln = &e->order.lines[i];
      int64_t q = ln->quantity;
      int rc = fold(l, e->store_id, ln->product_id,
                    e->type == SF_EV_ORDER_FULFILLED ? -q : 0,
                    e->type == SF_EV_ORDER_PLACED ? q : -q, ln->on_hand,
                    ln->reserved, ln->version, false);
      if (rc)
        return rc;
    }
    return 0;
  default:
    return 0;
  }
}

int proj_ledger_observe(proj_ledger_t *l, const char *store_id,
                        const char *product_id, int64_t on_hand,
                        int64_t reserved) {
  int rc;
  row_t *r = get_row(l, store_id, product_id, &rc);
  if (!r)
    return rc;
  if (r->in_model)
    return SF_EEXISTS;
  product_t *p = get_product(l, r->key + 16);
  if (!p)
    return SF_ENOMEM;
  r->in_model = true;
  r->model_on_hand = on_hand;
  r->model_reserved = reserved;
  p->stores += on_hand;
  return 0;
}

void proj_ledger_report(const proj_ledger_t *l,
                        void (*row_cb)(void *ud, const proj_ledger_diff_t *d),
                        void (*product_cb)(void *ud,
                                           const proj_ledger_product_t *p),
                        void *ud, proj_ledger_summary_t *sum) {
  memset(sum, 0, sizeof(*sum));
  sum->events = l->events;
  sum->duplicates = l->duplicates;
  const row_t *r, *rt;
  HASH_ITER(hh, l->rows, r, rt) {
    sum->rows++;
    bool contradicts = r->in_log && (r->sum_on_hand != r->after_on_hand ||
                                     r->sum_reserved != r->after_reserved);
    bool differs = r->in_log != r->in_model ||
                   r->sum_on_hand != r->model_on_hand ||
                   r->sum_reserved != r->model_reserved;
    /* a row the log never moved and the model holds at zero is no harm */
    if (!r->in_log && r->model_on_hand == 0 && r->model_reserved == 0)
      differs = false;
    if (!differs && !contradicts)
      continue;
    sum->row_diffs++;
    if (!row_cb)
      continue;
    proj_ledger_diff_t d = {
        .in_log = r->in_log,
        .in_model = r->in_model,
        .log_on_hand = r->sum_on_hand,
        .log_reserved = r->sum_reserved,
        .model_on_hand = r->model_on_hand,
        .model_reserved = r->model_reserved,
        .log_contradicts = contradicts,
        .version = r->version,
    };
    sf_uuid_t u;
    memcpy(u.b, r->key, 16);
    sf_uuid_format(&u, d.store_id);
    memcpy(u.b, r->key + 16, 16);
    sf_uuid_format(&u, d.product_id);
    row_cb(ud, &d);
  }
  const product_t *p, *pt;
  HASH_ITER(hh, l->products, p, pt) {
    proj_ledger_product_t v = {
        .stores = p->stores,
        .in_transit = -p->transfer_net,
        .movements = p->movements,
    };
    v.balanced = v.stores + v.in_transit == v.movements;
    sum->products++;
    sum->stores += v.stores;
    sum->in_transit += v.in_transit;
    sum->movements += v.movements;
    if (!v.balanced)
      sum->product_diffs++;
    if (product_cb) {
      sf_uuid_t u;
      memcpy(u.b, p->key, 16);
      sf_uuid_format(&u, v.product_id);
      product_cb(ud, &v);
    }
  }
}
