/* proj_batch: builds the set-based statements of one batch (see
 * proj_batch.h for what each statement does and why).
 *
 * The SQL lives here, next to the code that fills its parameters, so the
 * column order of a statement and of its arrays cannot drift apart. Times
 * travel as Unix microseconds (bigint) and become timestamptz in SQL with
 * `'epoch' + us * interval '1 microsecond'`, which is exact (to_timestamp()
 * goes through a double). Collapsing per id sorts (key, input index) pairs,
 * so each id's events are visited in consume order: O(n log n), no hash
 * table needed. */
#include "proj_batch.h"

#include <stdlib.h>
#include <string.h>

#include "sf/err.h"
#include "sf/uuid.h"

#define US_EXPR(col) "(timestamptz 'epoch' + " col " * interval '1 microsecond')"

static const proj_stmt_def_t k_stmts[PROJ_STMT__COUNT] = {
    [PROJ_STMT_PRODUCT_INSERT] =
        {"proj_product_insert",
         "INSERT INTO products (id, sku, name, category, price, reorder_level,"
         " discontinued, version, created_at, updated_at)"
         " SELECT u.id, u.sku, u.name, u.category, u.price, u.reorder_level,"
         " u.discontinued, u.version, " US_EXPR("u.created_us") ", " US_EXPR("u.updated_us") " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],"
                                                                                             " $5::numeric[], $6::bigint[], $7::boolean[], $8::bigint[],"
                                                                                             " $9::bigint[], $10::bigint[])"
                                                                                             " AS u(id, sku, name, category, price, reorder_level, discontinued,"
                                                                                             " version, created_us, updated_us)"
                                                                                             " ON CONFLICT DO NOTHING",
         10},
    [PROJ_STMT_PRODUCT_UPDATE] =
        {"proj_product_update",
         "UPDATE products p SET sku = COALESCE(u.sku, p.sku),"
         " name = COALESCE(u.name, p.name),"
         " category = COALESCE(u.category, p.category),"
         " price = COALESCE(u.price, p.price),"
         " reorder_level = COALESCE(u.reorder_level, p.reorder_level),"
         " discontinued = p.discontinued OR u.discontinued,"
         " version = u.version, updated_at = " US_EXPR("u.updated_us") " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],"
                                                                       " $5::numeric[], $6::bigint[], $7::boolean[], $8::bigint[],"
                                                                       " $9::bigint[])"
                                                                       " AS u(id, sku, name, category, price, reorder_level, discontinued,"
                                                                       " version, updated_us)"
                                                                       " WHERE p.id = u.id AND p.version < u.version",
         9},
    [PROJ_STMT_PRODUCT_POLICY] =
        {"proj_product_policy",
         "UPDATE products p SET max_sale_quantity = u.max_sale,"
         " max_negative_adjustment = u.max_neg,"
         " count_requires_reason = u.count_reason, policy_version = u.version"
         " FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::boolean[],"
         " $5::bigint[]) AS u(id, max_sale, max_neg, count_reason, version)"
         " WHERE p.id = u.id AND p.policy_version < u.version",
         5},
    [PROJ_STMT_STORE_INSERT] =
        {"proj_store_insert",
         "INSERT INTO stores (id, name, location, manager_id, closed, version,"
         " created_at, updated_at)"
         " SELECT u.id, u.name, u.location, u.manager_id, u.closed, u.version, " US_EXPR("u.created_us") ", " US_EXPR("u.updated_us") " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[],"
                                                                                                                                      " $5::boolean[], $6::bigint[], $7::bigint[], $8::bigint[])"
                                                                                                                                      " AS u(id, name, location, manager_id, closed, version, created_us,"
                                                                                                                                      " updated_us)"
                                                                                                                                      " ON CONFLICT DO NOTHING",
         8},
    [PROJ_STMT_STORE_UPDATE] =
        {"proj_store_update",
         "UPDATE stores s SET name = COALESCE(u.name, s.name),"
         " location = COALESCE(u.location, s.location),"
         " manager_id = COALESCE(u.manager_id, s.manager_id),"
         " closed = s.closed OR u.closed,"
         " version = u.version, updated_at = " US_EXPR("u.updated_us") " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[],"
                                                                       " $5::boolean[], $6::bigint[], $7::bigint[])"
                                                                       " AS u(id, name, location, manager_id, closed, version, updated_us)"
                                                                       " WHERE s.id = u.id AND s.version < u.version",
         7},
    [PROJ_STMT_ORDER_UPSERT] =
        {"proj_order_upsert",
         "INSERT INTO orders (id, store_id, status, reference, version,"
         " created_at, updated_at, cancel_cause)"
         " SELECT u.id, u.store_id, u.status, u.reference, u.version, " US_EXPR("u.created_us") ", " US_EXPR("u.updated_us") ", u.cause"
                                                                                                                             " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],"
                                                                                                                             " $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])"
                                                                                                                             " AS u(id, store_id, status, reference, version, created_us,"
                                                                                                                             " updated_us, cause)"
                                                                                                                             " ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status,"
                                                                                                                             " reference = COALESCE(orders.reference, EXCLUDED.reference),"
                                                                                                                             " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,"
                                                                                                                             " cancel_cause = EXCLUDED.cancel_cause"
                                                                                                                             " WHERE orders.version < EXCLUDED.version",
         8},
    [PROJ_STMT_ORDER_LINES] =
        {"proj_order_lines",
         "INSERT INTO order_lines (order_id, product_id, quantity)"
         " SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[])"
         " ON CONFLICT DO NOTHING",
         3},
    /* Returns the ids of the transactions rows it inserted, in plan order
     * (the order of the arrays): the change log is written from them. */
    [PROJ_STMT_STOCK] =
        {"proj_stock",
         "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[],"
         " $4::uuid[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[],"
         " $9::bigint[], $10::bigint[], $11::text[], $12::text[], $13::uuid[],"
         " $14::bigint[], $15::integer[], $16::bigint[], $17::bigint[])"
         " WITH ORDINALITY"
         " AS u(id, command_id, store_id, product_id, type, quantity, delta,"
         " on_hand_after, reserved_after, version, reason, reference, actor,"
         " created_us, kafka_partition, kafka_offset, reserved_delta, seq)),"
         " ins AS (INSERT INTO transactions (id, command_id, store_id,"
         " product_id, type, quantity, delta, reserved_delta, on_hand_after,"
         " reserved_after, version, reason, reference, actor, created_at,"
         " kafka_partition, kafka_offset)"
         " SELECT id, command_id, store_id, product_id, type, quantity, delta,"
         " reserved_delta, on_hand_after, reserved_after, version, reason,"
         " reference, actor, " US_EXPR("created_us") ", kafka_partition, kafka_offset FROM u"
                                                     " ON CONFLICT DO NOTHING"
                                                     " RETURNING id, store_id, product_id, on_hand_after, reserved_after,"
                                                     " version, created_at),"
                                                     " best AS (SELECT DISTINCT ON (store_id, product_id) * FROM ins"
                                                     " ORDER BY store_id, product_id, version DESC),"
                                                     " inv AS (INSERT INTO inventory (store_id, product_id, on_hand,"
                                                     " reserved, version, updated_at)"
                                                     " SELECT store_id, product_id, on_hand_after, reserved_after, version,"
                                                     " created_at FROM best"
                                                     " ON CONFLICT (store_id, product_id) DO UPDATE SET"
                                                     " on_hand = EXCLUDED.on_hand, reserved = EXCLUDED.reserved,"
                                                     " version = EXCLUDED.version, updated_at = EXCLUDED.updated_at"
                                                     " WHERE inventory.version < EXCLUDED.version)"
                                                     " SELECT ins.id FROM ins JOIN u ON u.id = ins.id ORDER BY u.seq",
         17},
    [PROJ_STMT_CROSSINGS] =
        {"proj_crossings",
         "WITH u AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[],"
         " $4::uuid[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[],"
         " $9::bigint[], $10::bigint[]) WITH ORDINALITY"
         " AS u(id, command_id, store_id, product_id, kind, on_hand, reserved,"
         " reorder_level, version, created_us, seq)),"
         " ins AS (INSERT INTO stock_crossings (id, command_id, store_id,"
         " product_id, kind, on_hand, reserved, reorder_level, version,"
         " created_at)"
         " SELECT id, command_id, store_id, product_id, kind, on_hand,"
         " reserved, reorder_level, version, " US_EXPR("created_us") " FROM u ON CONFLICT DO NOTHING RETURNING id)"
                                                                     " SELECT ins.id FROM ins JOIN u ON u.id = ins.id ORDER BY u.seq",
         10},
    [PROJ_STMT_OFFSETS] =
        {"proj_offsets",
         "INSERT INTO projector_offsets (consumer_group, topic, partition,"
         " next_offset, updated_at)"
         " SELECT $1, u.topic, u.partition, u.next_offset, now()"
         " FROM unnest($2::text[], $3::integer[], $4::bigint[])"
         " AS u(topic, partition, next_offset)"
         " ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET"
         " next_offset = EXCLUDED.next_offset, updated_at = now()"
         " WHERE projector_offsets.next_offset < EXCLUDED.next_offset",
         4},
};

const proj_stmt_def_t *proj_stmt_def(proj_stmt_t s) {
  if ((unsigned)s >= PROJ_STMT__COUNT)
    return NULL;
  return &k_stmts[s];
}

/* Latest time PostgreSQL's timestamptz can hold comfortably (year 9999);
 * anything outside [0, this] would fail the whole batch forever. */
#define MAX_TIME_US INT64_C(253402300799999999)

/* ---- validation ---- */

bool proj_utf8_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p;
    size_t n;
    unsigned cp;
    if (c < 0x80) {
      p++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t i = 1; i <= n; i++) {
      if ((p[i] & 0xC0) != 0x80)
        return false; /* also stops at the NUL */
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    p += n + 1;
  }
  return true;
}

bool proj_price_valid(const char *s) {
  if (!s)
    return false;
  if (*s == '-')
    s++;
  size_t ip = 0, fp = 0;
  while (*s >= '0' && *s <= '9') {
    s++;
    ip++;
  }
  if (ip < 1 || ip > 15)
    return false;
  if (*s == '.') {
    s++;
    while (*s >= '0' && *s <= '9') {
      s++;
      fp++;
    }
    if (fp < 1 || fp > 4)
      return false;
  }
  return *s == '\0';
}

static bool text_ok(const char *s) { return !s || proj_utf8_valid(s); }

static bool time_ok(int64_t us) { return us >= 0 && us <= MAX_TIME_US; }

/* NULL when e can be stored, else a short static reason. */
static const char *check_product(const sf_event_t *e) {
  if (!sf_uuid_valid(e->product_id))
    return "product_id is not a uuid";
  if (e->stream_version < 1)
    return "stream_version below 1";
  if (!time_ok(e->occurred_at_us))
    return "occurred_at out of range";
  const char *sku = e->product.sku, *name = e->product.name;
  if (e->type == SF_EV_PRODUCT_CREATED && (!sku || !name || !e->product.price))
    return "ProductCreated without sku, name or price";
  if (e->product.price && !proj_price_valid(e->product.price))
    return "price is not a numeric(19,4) decimal";
  if (!text_ok(sku) || !text_ok(name) || !text_ok(e->product.category))
    return "text is not UTF-8";
  return NULL;
}

static const char *check_store(const sf_event_t *e) {
  if (!sf_uuid_valid(e->store_id))
    return "store_id is not a uuid";
  if (e->stream_version < 1)
    return "stream_version below 1";
  if (!time_ok(e->occurred_at_us))
    return "occurred_at out of range";
  if (e->type == SF_EV_STORE_OPENED && (!e->store.name || !e->store.location))
    return "StoreOpened without name or location";
  const char *m = e->store.manager_id;
  if (m && *m && !sf_uuid_valid(m))
    return "manager_id is not a uuid";
  if (!text_ok(e->store.name) || !text_ok(e->store.location))
    return "text is not UTF-8";
  return NULL;
}

static const char *check_stock(const sf_event_t *e) {
  if (!sf_uuid_valid(e->event_id) || !sf_uuid_valid(e->command_id))
    return "event_id or command_id is not a uuid";
  if (!sf_uuid_valid(e->store_id) || !sf_uuid_valid(e->product_id))
    return "store_id or product_id is not a uuid";
  if (e->actor[0] && !sf_uuid_valid(e->actor))
    return "actor is not a uuid";
  if (e->stream_version < 1)
    return "stream_version below 1";
  if (!time_ok(e->occurred_at_us))
    return "occurred_at out of range";
  if (e->type == SF_EV_STOCK_MOVED && !sf_movement_name(e->stock.movement))
    return "unknown movement";
  if (!text_ok(e->stock.reason) || !text_ok(e->stock.reference))
    return "text is not UTF-8";
  return NULL;
}

static const char *check_order(const sf_event_t *e) {
  if (!sf_uuid_valid(e->event_id) || !sf_uuid_valid(e->command_id))
    return "event_id or command_id is not a uuid";
  if (!sf_uuid_valid(e->store_id) || !sf_uuid_valid(e->order.order_id))
    return "store_id or order_id is not a uuid";
  if (e->actor[0] && !sf_uuid_valid(e->actor))
    return "actor is not a uuid";
  if (e->stream_version < 1)
    return "stream_version below 1";
  if (!time_ok(e->occurred_at_us))
    return "occurred_at out of range";
  if (e->order.n_lines < 1 || !e->order.lines)
    return "order without lines";
  if (e->order.n_lines > 0xFFFF)
    return "too many order lines";
  if (!text_ok(e->order.reference))
    return "text is not UTF-8";
  for (size_t i = 0; i < e->order.n_lines; i++) {
    const sf_order_line_t *l = &e->order.lines[i];
    if (!sf_uuid_valid(l->product_id))
      return "order line product_id is not a uuid";
    if (l->quantity < 1 || l->version < 1)
      return "order line quantity or version below 1";
    for (size_t j = 0; j < i; j++)
      if (strcmp(e->order.lines[j].product_id, l->product_id) == 0)
        return "two order lines share a product";
  }
  return NULL;
}

/* ---- plan memory ---- */

typedef struct key {
  const sf_event_t *ev;
  size_t i; /* input index: consume order */
} sortkey_t;

void proj_plan_init(proj_plan_t *p) {
  memset(p, 0, sizeof *p);
  for (size_t s = 0; s < PROJ_STMT__COUNT; s++)
    for (size_t c = 0; c < PROJ_MAX_PARAMS; c++)
      proj_sqlarr_init(&p->cols_[s][c]);
}

void proj_plan_free(proj_plan_t *p) {
  for (size_t s = 0; s < PROJ_STMT__COUNT; s++)
    for (size_t c = 0; c < PROJ_MAX_PARAMS; c++)
      proj_sqlarr_free(&p->cols_[s][c]);
  free(p->offsets);
  free(p->verdicts);
  free(p->why);
  free(p->keys_);
  proj_plan_init(p);
}

/* Empties p, keeping buffers, with room for n inputs. */
static int plan_reset(proj_plan_t *p, size_t n) {
  for (size_t s = 0; s < PROJ_STMT__COUNT; s++) {
    p->rows[s] = 0;
    for (size_t c = 0; c < PROJ_MAX_PARAMS; c++) {
      proj_sqlarr_reset(&p->cols_[s][c]);
      p->params[s][c] = NULL;
    }
  }
  p->n_offsets = 0;
  p->n_inputs = 0;
  memset(p->n_by_verdict, 0, sizeof p->n_by_verdict);
  if (n <= p->cap_)
    return 0;
  /* Fresh arrays; the old ones are freed only once all four exist. */
  proj_offset_t *offs = malloc(n * sizeof *offs);
  proj_verdict_t *verd = malloc(n * sizeof *verd);
  const char **why = malloc(n * sizeof *why);
  sortkey_t *keys = malloc(n * sizeof *keys);
  if (!offs || !verd || !why || !keys) {
    free(offs);
    free(verd);
    free(why);
    free(keys);
    return SF_ENOMEM;
  }
  free(p->offsets);
  free(p->verdicts);
  free(p->why);
  free(p->keys_);
  p->offsets = offs;
  p->verdicts = verd;
  p->why = why;
  p->keys_ = keys;
  p->cap_ = n;
  return 0;
}

static proj_sqlarr_t *col(proj_plan_t *p, proj_stmt_t s, int c) {
  return &p->cols_[s][c];
}

/* Allocation failures are sticky in proj_sqlarr; plan_finish checks once. */
static void add_text(proj_plan_t *p, proj_stmt_t s, int c, const char *v) {
  (void)proj_sqlarr_add_text(col(p, s, c), v);
}
static void add_int(proj_plan_t *p, proj_stmt_t s, int c, int64_t v) {
  (void)proj_sqlarr_add_int(col(p, s, c), v);
}
static void add_bool(proj_plan_t *p, proj_stmt_t s, int c, bool v) {
  (void)proj_sqlarr_add_bool(col(p, s, c), v);
}
static void add_null(proj_plan_t *p, proj_stmt_t s, int c) {
  (void)proj_sqlarr_add_null(col(p, s, c));
}

static const char *empty_to_null(const char *s) { return s && *s ? s : NULL; }

/* ---- offsets ---- */

static void note_offset(proj_plan_t *p, const proj_input_t *in) {
  for (size_t k = 0; k < p->n_offsets; k++) {
    proj_offset_t *o = &p->offsets[k];
    if (o->partition == in->partition && strcmp(o->topic, in->topic) == 0) {
      if (in->offset < o->first)
        o->first = in->offset;
      if (in->offset > o->last)
        o->last = in->offset;
      o->count++;
      return;
    }
  }
  p->offsets[p->n_offsets++] = (proj_offset_t){
      .topic = in->topic,
      .partition = in->partition,
      .first = in->offset,
      .last = in->offset,
      .count = 1,
  };
}

/* ---- sorting keys ---- */

static int cmp_index(const sortkey_t *a, const sortkey_t *b) {
  return (a->i > b->i) - (a->i < b->i);
}

static int cmp_product(const void *x, const void *y) {
  const sortkey_t *a = x, *b = y;
  int c = strcmp(a->ev->product_id, b->ev->product_id);
  return c ? c : cmp_index(a, b);
}

static int cmp_store(const void *x, const void *y) {
  const sortkey_t *a = x, *b = y;
  int c = strcmp(a->ev->store_id, b->ev->store_id);
  return c ? c : cmp_index(a, b);
}

static int cmp_event_id(const void *x, const void *y) {
  const sortkey_t *a = x, *b = y;
  int c = strcmp(a->ev->event_id, b->ev->event_id);
  return c ? c : cmp_index(a, b);
}

static int cmp_command(const void *x, const void *y) {
  const sortkey_t *a = x, *b = y;
  int c = strcmp(a->ev->command_id, b->ev->command_id);
  if (!c)
    c = strcmp(a->ev->store_id, b->ev->store_id);
  if (!c)
    c = strcmp(a->ev->product_id, b->ev->product_id);
  return c ? c : cmp_index(a, b);
}

static int cmp_order(const void *x, const void *y) {
  const sortkey_t *a = x, *b = y;
  int c = strcmp(a->ev->order.order_id, b->ev->order.order_id);
  return c ? c : cmp_index(a, b);
}

static int cmp_plain_index(const void *x, const void *y) {
  return cmp_index(x, y);
}

/* qsort, which must not get a NULL base even for zero elements. */
static void sort_keys(sortkey_t *keys, size_t m,
                      int (*cmp)(const void *, const void *)) {
  if (m > 1)
    qsort(keys, m, sizeof *keys, cmp);
}

typedef enum kind {
  K_NONE,
  K_PRODUCT,
  K_STORE,
  K_STOCK,
  K_ORDER,
  K_CROSSING
} kind_t;

static kind_t kind_of(sf_event_type_t t) {
  switch (t) {
  case SF_EV_PRODUCT_CREATED:
  case SF_EV_PRODUCT_UPDATED:
  case SF_EV_PRODUCT_DISCONTINUED:
  case SF_EV_PRODUCT_POLICY_SET:
    return K_PRODUCT;
  case SF_EV_STOCK_BELOW_REORDER:
  case SF_EV_STOCK_RESTORED:
    return K_CROSSING;
  case SF_EV_STORE_OPENED:
  case SF_EV_STORE_UPDATED:
  case SF_EV_STORE_CLOSED:
    return K_STORE;
  case SF_EV_STOCK_MOVED:
  case SF_EV_TRANSFER_OUT:
  case SF_EV_TRANSFER_IN:
    return K_STOCK;
  case SF_EV_ORDER_PLACED:
  case SF_EV_ORDER_FULFILLED:
  case SF_EV_ORDER_CANCELLED:
    return K_ORDER;
  default:
    return K_NONE;
  }
}

/* Collects the keys of the inputs of kind k still marked PROJ_APPLY. */
static size_t collect(proj_plan_t *p, const proj_input_t *in, size_t n,
                      kind_t k) {
  sortkey_t *keys = p->keys_;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (p->verdicts[i] == PROJ_APPLY && kind_of(in[i].ev->type) == k)
      keys[m++] = (sortkey_t){in[i].ev, i};
  return m;
}

/* ---- catalog: collapse per id ---- */

/* The merged state of one product or store over the batch. Strings are
 * borrowed from the events. */
typedef struct merged {
  const char *id;
  bool created; /* a created/opened event is in the batch */
  int64_t version, created_us, updated_us;
  const char *f[4]; /* product: sku, name, category, price;
                       store: name, location, manager_id */
  int64_t reorder_level;
  bool has_reorder_level;
  bool flag; /* discontinued / closed */
} merged_t;

static void merge_fields(merged_t *m, const sf_event_t *e, kind_t k) {
  const char *v[4];
  if (k == K_PRODUCT) {
    v[0] = e->product.sku;
    v[1] = e->product.name;
    v[2] = e->product.category;
    v[3] = e->product.price;
    if (e->product.has_reorder_level) {
      m->reorder_level = e->product.reorder_level;
      m->has_reorder_level = true;
    }
    if (e->type == SF_EV_PRODUCT_DISCONTINUED)
      m->flag = true;
  } else {
    v[0] = e->store.name;
    v[1] = e->store.location;
    v[2] = empty_to_null(e->store.manager_id);
    v[3] = NULL;
    if (e->type == SF_EV_STORE_CLOSED)
      m->flag = true;
  }
  for (size_t i = 0; i < 4; i++)
    if (v[i])
      m->f[i] = v[i];
}

static void emit_product(proj_plan_t *p, const merged_t *m) {
  if (m->created) {
    proj_stmt_t s = PROJ_STMT_PRODUCT_INSERT;
    add_text(p, s, 0, m->id);
    for (int i = 0; i < 4; i++)
      add_text(p, s, 1 + i, m->f[i]);
    add_int(p, s, 5, m->has_reorder_level ? m->reorder_level : 0);
    add_bool(p, s, 6, m->flag);
    add_int(p, s, 7, m->version);
    add_int(p, s, 8, m->created_us);
    add_int(p, s, 9, m->updated_us);
    p->rows[s]++;
  }
  proj_stmt_t s = PROJ_STMT_PRODUCT_UPDATE;
  add_text(p, s, 0, m->id);
  for (int i = 0; i < 4; i++)
    add_text(p, s, 1 + i, m->f[i]);
  if (m->has_reorder_level)
    add_int(p, s, 5, m->reorder_level);
  else
    add_null(p, s, 5);
  add_bool(p, s, 6, m->flag);
  add_int(p, s, 7, m->version);
  add_int(p, s, 8, m->updated_us);
  p->rows[s]++;
}

static void emit_store(proj_plan_t *p, const merged_t *m) {
  if (m->created) {
    proj_stmt_t s = PROJ_STMT_STORE_INSERT;
    add_text(p, s, 0, m->id);
    for (int i = 0; i < 3; i++)
      add_text(p, s, 1 + i, m->f[i]);
    add_bool(p, s, 4, m->flag);
    add_int(p, s, 5, m->version);
    add_int(p, s, 6, m->created_us);
    add_int(p, s, 7, m->updated_us);
    p->rows[s]++;
  }
  proj_stmt_t s = PROJ_STMT_STORE_UPDATE;
  add_text(p, s, 0, m->id);
  for (int i = 0; i < 3; i++)
    add_text(p, s, 1 + i, m->f[i]);
  add_bool(p, s, 4, m->flag);
  add_int(p, s, 5, m->version);
  add_int(p, s, 6, m->updated_us);
  p->rows[s]++;
}

/* Collapses the catalog events of kind k (K_PRODUCT or K_STORE) per id, in
 * consume order, and emits one merged row per id (sorted by id, which also
 * gives concurrent writers one lock order). */
static void plan_catalog(proj_plan_t *p, const proj_input_t *in, size_t n,
                         kind_t k) {
  sortkey_t *keys = p->keys_;
  size_t m = collect(p, in, n, k);
  sort_keys(keys, m, k == K_PRODUCT ? cmp_product : cmp_store);
  sf_event_type_t created_type =
      k == K_PRODUCT ? SF_EV_PRODUCT_CREATED : SF_EV_STORE_OPENED;
  size_t g = 0;
  while (g < m) {
    const char *id = k == K_PRODUCT ? keys[g].ev->product_id
                                    : keys[g].ev->store_id;
    merged_t row = {.id = id};
    bool have = false;
    size_t j = g;
    for (; j < m; j++) {
      const sf_event_t *e = keys[j].ev;
      if (strcmp(k == K_PRODUCT ? e->product_id : e->store_id, id) != 0)
        break;
      /* A second create, or any event not newer than what the batch holds,
       * is a replayed duplicate. */
      if (have && (e->type == created_type || e->stream_version <= row.version)) {
        p->verdicts[keys[j].i] = PROJ_DUPLICATE;
        continue;
      }
      if (!have) {
        have = true;
        row.created = e->type == created_type;
        row.created_us = e->occurred_at_us;
        if (row.created && k == K_PRODUCT)
          row.has_reorder_level = true; /* created: 0 unless given */
      }
      merge_fields(&row, e, k);
      row.version = e->stream_version;
      row.updated_us = e->occurred_at_us;
    }
    if (k == K_PRODUCT)
      emit_product(p, &row);
    else
      emit_store(p, &row);
    g = j;
  }
}

/* ---- stock ---- */

static const char *txn_type(const sf_event_t *e) {
  switch (e->type) {
  case SF_EV_TRANSFER_OUT:
    return "transfer_out";
  case SF_EV_TRANSFER_IN:
    return "transfer_in";
  default:
    return sf_movement_name(e->stock.movement);
  }
}

/* Marks every key but the first of each run that cmp calls equal when
 * ignoring the index; keys must be sorted with cmp. */
static void mark_dups(proj_plan_t *p, sortkey_t *keys, size_t m,
                      int (*cmp)(const void *, const void *)) {
  for (size_t j = 1; j < m; j++) {
    sortkey_t a = keys[j - 1], b = keys[j];
    a.i = b.i = 0;
    if (cmp(&a, &b) == 0)
      p->verdicts[keys[j].i] = PROJ_DUPLICATE;
  }
}

static const char *order_status(sf_event_type_t t) {
  switch (t) {
  case SF_EV_ORDER_PLACED:
    return "placed";
  case SF_EV_ORDER_FULFILLED:
    return "fulfilled";
  default:
    return "cancelled";
  }
}

/* Orders: drops events already in the batch (same event id, or a version
 * not above the one the batch holds for the order), then emits one upsert
 * row per order (sorted by id) and the order_lines rows of every applied
 * event. Transactions rows of the lines are emitted by plan_stock, which
 * keeps consume order across stock and order events. */
static void plan_orders(proj_plan_t *p, const proj_input_t *in, size_t n) {
  sortkey_t *keys = p->keys_;
  size_t m = collect(p, in, n, K_ORDER);
  sort_keys(keys, m, cmp_event_id);
  mark_dups(p, keys, m, cmp_event_id);
  m = collect(p, in, n, K_ORDER);
  sort_keys(keys, m, cmp_order);
  proj_stmt_t so = PROJ_STMT_ORDER_UPSERT;
  size_t g = 0;
  while (g < m) {
    const sf_event_t *first = keys[g].ev;
    const sf_event_t *last = first;
    int64_t created_us = first->occurred_at_us;
    const char *reference = NULL;
    size_t j = g;
    for (; j < m; j++) {
      const sf_event_t *e = keys[j].ev;
      if (strcmp(e->order.order_id, first->order.order_id) != 0)
        break;
      if (j > g && e->stream_version <= last->stream_version) {
        p->verdicts[keys[j].i] = PROJ_DUPLICATE;
        continue;
      }
      if (e->type == SF_EV_ORDER_PLACED)
        created_us = e->occurred_at_us;
      if (!reference && e->order.reference)
        reference = e->order.reference;
      last = e;
    }
    add_text(p, so, 0, first->order.order_id);
    add_text(p, so, 1, first->store_id);
    add_text(p, so, 2, order_status(last->type));
    add_text(p, so, 3, reference);
    add_int(p, so, 4, last->stream_version);
    add_int(p, so, 5, created_us);
    add_int(p, so, 6, last->occurred_at_us);
    add_text(p, so, 7, last->type == SF_EV_ORDER_CANCELLED ? last->order.cause : NULL);
    p->rows[so]++;
    g = j;
  }
  /* lines of every applied order event (duplicates rows are harmless:
   * ON CONFLICT DO NOTHING) */
  m = collect(p, in, n, K_ORDER);
  sort_keys(keys, m, cmp_plain_index);
  proj_stmt_t sl = PROJ_STMT_ORDER_LINES;
  for (size_t k = 0; k < m; k++) {
    const sf_event_t *e = keys[k].ev;
    for (size_t l = 0; l < e->order.n_lines; l++) {
      add_text(p, sl, 0, e->order.order_id);
      add_text(p, sl, 1, e->order.lines[l].product_id);
      add_int(p, sl, 2, e->order.lines[l].quantity);
      p->rows[sl]++;
    }
  }
}

/* The id of line l's transactions row: the event id with its last four hex
 * digits replaced by l (l <= 0xFFFF, checked by check_order). */
static void line_txn_id(char out[SF_ID_LEN], const char *event_id, size_t l) {
  static const char hex[] = "0123456789abcdef";
  memcpy(out, event_id, SF_ID_LEN);
  size_t len = strlen(out);
  for (size_t d = 0; d < 4 && d < len; d++)
    out[len - 1 - d] = hex[(l >> (4 * d)) & 0xF];
}

static void add_stock_row(proj_plan_t *p, const sf_event_t *e,
                          const proj_input_t *src, const char *id,
                          const char *product_id, const char *type,
                          int64_t quantity, int64_t delta,
                          int64_t reserved_delta, int64_t on_hand,
                          int64_t reserved, int64_t version,
                          const char *reason, const char *reference) {
  proj_stmt_t s = PROJ_STMT_STOCK;
  add_text(p, s, 0, id);
  add_text(p, s, 1, e->command_id);
  add_text(p, s, 2, e->store_id);
  add_text(p, s, 3, product_id);
  add_text(p, s, 4, type);
  add_int(p, s, 5, quantity);
  add_int(p, s, 6, delta);
  add_int(p, s, 7, on_hand);
  add_int(p, s, 8, reserved);
  add_int(p, s, 9, version);
  add_text(p, s, 10, reason);
  add_text(p, s, 11, reference);
  add_text(p, s, 12, empty_to_null(e->actor));
  add_int(p, s, 13, e->occurred_at_us);
  add_int(p, s, 14, src->partition);
  add_int(p, s, 15, src->offset);
  add_int(p, s, 16, reserved_delta);
  p->rows[s]++;
}

static void add_order_lines(proj_plan_t *p, const sf_event_t *e,
                            const proj_input_t *src) {
  /* an expiry is a cancellation whose lines say why */
  const char *type = e->type == SF_EV_ORDER_PLACED      ? "order_placed"
                     : e->type == SF_EV_ORDER_FULFILLED ? "order_fulfilled"
                     : e->order.cause && strcmp(e->order.cause, "expired") == 0
                         ? "order_expired"
                         : "order_cancelled";
  for (size_t l = 0; l < e->order.n_lines; l++) {
    const sf_order_line_t *ln = &e->order.lines[l];
    int64_t q = ln->quantity;
    int64_t delta = e->type == SF_EV_ORDER_FULFILLED ? -q : 0;
    int64_t rdelta = e->type == SF_EV_ORDER_PLACED ? q : -q;
    char id[SF_ID_LEN];
    line_txn_id(id, e->event_id, l);
    add_stock_row(p, e, src, id, ln->product_id, type, q, delta, rdelta,
                  ln->on_hand, ln->reserved, ln->version, NULL,
                  e->order.reference);
  }
}

static void plan_stock(proj_plan_t *p, const proj_input_t *in, size_t n) {
  sortkey_t *keys = p->keys_;
  size_t m = collect(p, in, n, K_STOCK);
  sort_keys(keys, m, cmp_event_id);
  mark_dups(p, keys, m, cmp_event_id);
  m = collect(p, in, n, K_STOCK);
  sort_keys(keys, m, cmp_command);
  mark_dups(p, keys, m, cmp_command);

  /* stock and order events still applied, in consume order */
  for (size_t i = 0; i < n; i++) {
    if (p->verdicts[i] != PROJ_APPLY)
      continue;
    const sf_event_t *e = in[i].ev;
    kind_t k = kind_of(e->type);
    if (k == K_STOCK)
      add_stock_row(p, e, &in[i], e->event_id, e->product_id, txn_type(e),
                    e->stock.quantity, e->stock.delta, 0, e->stock.on_hand,
                    e->stock.reserved, e->stream_version, e->stock.reason,
                    e->stock.reference);
    else if (k == K_ORDER)
      add_order_lines(p, e, &in[i]);
  }
}

/* ---- rules: policies and crossings ---- */

/* The newest policy event of each product still applied after
 * plan_catalog (which drops stale versions) gives one row. */
static void plan_policies(proj_plan_t *p, const proj_input_t *in, size_t n) {
  sortkey_t *keys = p->keys_;
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (p->verdicts[i] == PROJ_APPLY &&
        in[i].ev->type == SF_EV_PRODUCT_POLICY_SET)
      keys[m++] = (sortkey_t){in[i].ev, i};
  sort_keys(keys, m, cmp_product);
  proj_stmt_t s = PROJ_STMT_PRODUCT_POLICY;
  for (size_t j = 0; j < m; j++) {
    if (j + 1 < m &&
        strcmp(keys[j].ev->product_id, keys[j + 1].ev->product_id) == 0)
      continue; /* a newer one follows */
    const sf_event_t *e = keys[j].ev;
    add_text(p, s, 0, e->product_id);
    if (e->policy.has_max_sale)
      add_int(p, s, 1, e->policy.max_sale_quantity);
    else
      add_null(p, s, 1);
    if (e->policy.has_max_negative_adjustment)
      add_int(p, s, 2, e->policy.max_negative_adjustment);
    else
      add_null(p, s, 2);
    add_bool(p, s, 3, e->policy.count_requires_reason);
    add_int(p, s, 4, e->stream_version);
    p->rows[s]++;
  }
}

static const char *check_crossing(const sf_event_t *e) {
  if (!sf_uuid_valid(e->event_id) || !sf_uuid_valid(e->command_id))
    return "event_id or command_id is not a uuid";
  if (!sf_uuid_valid(e->store_id) || !sf_uuid_valid(e->product_id))
    return "store_id or product_id is not a uuid";
  if (e->stream_version < 1)
    return "stream_version below 1";
  if (!time_ok(e->occurred_at_us))
    return "occurred_at out of range";
  return NULL;
}

/* Crossings: one row each, in consume order (a repeated event id in the
 * batch is a duplicate; earlier batches are ON CONFLICT DO NOTHING). */
static void plan_crossings(proj_plan_t *p, const proj_input_t *in, size_t n) {
  sortkey_t *keys = p->keys_;
  size_t m = collect(p, in, n, K_CROSSING);
  sort_keys(keys, m, cmp_event_id);
  mark_dups(p, keys, m, cmp_event_id);
  proj_stmt_t s = PROJ_STMT_CROSSINGS;
  for (size_t i = 0; i < n; i++) {
    const sf_event_t *e = in[i].ev;
    if (p->verdicts[i] != PROJ_APPLY || kind_of(e->type) != K_CROSSING)
      continue;
    add_text(p, s, 0, e->event_id);
    add_text(p, s, 1, e->command_id);
    add_text(p, s, 2, e->store_id);
    add_text(p, s, 3, e->product_id);
    add_text(p, s, 4, e->type == SF_EV_STOCK_BELOW_REORDER ? "below_reorder" : "restored");
    add_int(p, s, 5, e->crossing.on_hand);
    add_int(p, s, 6, e->crossing.reserved);
    add_int(p, s, 7, e->crossing.reorder_level);
    add_int(p, s, 8, e->stream_version);
    add_int(p, s, 9, e->occurred_at_us);
    p->rows[s]++;
  }
}

/* ---- the plan ---- */

static int plan_finish(proj_plan_t *p, const char *group) {
  proj_stmt_t so = PROJ_STMT_OFFSETS;
  for (size_t k = 0; k < p->n_offsets; k++) {
    add_text(p, so, 1, p->offsets[k].topic);
    add_int(p, so, 2, p->offsets[k].partition);
    add_int(p, so, 3, p->offsets[k].last + 1);
  }
  p->rows[so] = p->n_offsets;

  for (size_t s = 0; s < PROJ_STMT__COUNT; s++) {
    if (p->rows[s] == 0)
      continue;
    int np = k_stmts[s].n_params;
    for (int c = 0; c < np; c++) {
      if (s == PROJ_STMT_OFFSETS && c == 0) {
        p->params[s][c] = group;
        continue;
      }
      p->params[s][c] = proj_sqlarr_text(col(p, (proj_stmt_t)s, c));
      if (!p->params[s][c])
        return SF_ENOMEM;
    }
  }
  return 0;
}

int proj_plan_build(proj_plan_t *p, const char *group, const proj_input_t *in,
                    size_t n) {
  if (!p || !group || (!in && n > 0))
    return SF_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!in[i].topic)
      return SF_EINVAL;
  int rc = plan_reset(p, n);
  if (rc)
    return rc;

  for (size_t i = 0; i < n; i++) {
    const sf_event_t *e = in[i].ev;
    note_offset(p, &in[i]);
    p->why[i] = NULL;
    if (!e) {
      p->verdicts[i] = PROJ_POISON;
      continue;
    }
    switch (kind_of(e->type)) {
    case K_PRODUCT:
      p->why[i] = check_product(e);
      break;
    case K_STORE:
      p->why[i] = check_store(e);
      break;
    case K_STOCK:
      p->why[i] = check_stock(e);
      break;
    case K_ORDER:
      p->why[i] = check_order(e);
      break;
    case K_CROSSING:
      p->why[i] = check_crossing(e);
      break;
    case K_NONE:
      p->verdicts[i] = PROJ_SKIPPED;
      continue;
    }
    p->verdicts[i] = p->why[i] ? PROJ_INVALID : PROJ_APPLY;
  }
  p->n_inputs = n;

  plan_catalog(p, in, n, K_PRODUCT);
  plan_catalog(p, in, n, K_STORE);
  plan_policies(p, in, n);
  plan_orders(p, in, n);
  plan_stock(p, in, n);
  plan_crossings(p, in, n);

  for (size_t i = 0; i < n; i++)
    p->n_by_verdict[p->verdicts[i]]++;

  rc = plan_finish(p, group);
  if (rc) {
    plan_reset(p, 0);
    return rc;
  }
  return 0;
}
