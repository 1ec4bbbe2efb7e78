/* cmd_state: the command service's write-side state, and the rules.
 *
 * The state is the fold of the event log: the catalog (products, stores) and,
 * per store x product, on_hand, reserved and the stream version. The same
 * function folds an event into the state at startup (replaying the log) and
 * after a command is decided (so the next command sees it at once): there is
 * one path from events to state.
 *
 * "Decide" functions check a command against the state and fill an event
 * without changing anything; the caller then applies the event with
 * cmd_state_apply(). An event whose stream version is not above the
 * current one is a replay or a broker-side duplicate: apply skips it and
 * says so (CMD_APPLY_DUPLICATE); the command id it carries was applied
 * already because one command produces the event of one stream version.
 *
 * Pure logic, no I/O; one thread at a time. Strings given to decide are
 * borrowed until the event is encoded; the state copies what it keeps. */
#ifndef CMD_STATE_H
#define CMD_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/event.h"
#include "sf/uuid.h"

/* Quantities are at most 2^31 - 1 per command (API contract); on hand is
 * kept well inside int64 by refusing anything that would pass CMD_MAX_STOCK. */
#define CMD_MAX_QUANTITY INT64_C(2147483647)
#define CMD_MAX_STOCK (INT64_C(1) << 53)

typedef struct cmd_state cmd_state_t;

/* Why a command was refused; maps 1:1 to an HTTP status and problem code. */
typedef enum cmd_verdict {
  CMD_OK = 0,
  CMD_NOT_FOUND_STORE,                /* 404 not_found */
  CMD_NOT_FOUND_PRODUCT,              /* 404 not_found */
  CMD_DUPLICATE_SKU,                  /* 409 duplicate_sku */
  CMD_STORE_CLOSED,                   /* 409 store_closed */
  CMD_PRODUCT_DISCONTINUED,           /* 409 product_discontinued */
  CMD_INSUFFICIENT_STOCK,             /* 409 insufficient_stock */
  CMD_COUNT_BELOW_RESERVED,           /* 409 count_below_reserved */
  CMD_STOCK_LIMIT,                    /* 409 stock_limit_exceeded */
  CMD_VERSION_CONFLICT,               /* 412 version_conflict */
  CMD_INVALID_STATE,                  /* 409 invalid_state (already closed, ...) */
  CMD_SAME_STORE,                     /* 422 validation_failed */
  CMD_NOT_FOUND_ORDER,                /* 404 not_found */
  CMD_DUPLICATE_LINE,                 /* 422 validation_failed */
  CMD_POLICY_MAX_SALE,                /* 409 policy_max_sale_quantity */
  CMD_POLICY_MAX_NEGATIVE_ADJUSTMENT, /* 409 policy_max_negative_adjustment */
  CMD_POLICY_REASON_REQUIRED,         /* 409 policy_reason_required */
  CMD_NOT_DUE                         /* expiry: the order is not due yet (internal) */
} cmd_verdict_t;

/* A product's stock policy (ProductPolicySet); all zero: no rules. */
typedef struct cmd_policy {
  bool has_max_sale;
  int64_t max_sale_quantity; /* a sale may not sell more (when has_...) */
  bool has_max_negative_adjustment;
  int64_t max_negative_adjustment; /* an adjustment may not remove more */
  bool count_requires_reason;
} cmd_policy_t;

typedef struct cmd_stock_row {
  int64_t on_hand, reserved, version;
} cmd_stock_row_t;

typedef struct cmd_product_view {
  const char *sku, *name, *category, *price;
  int64_t reorder_level, version;
  bool discontinued;
  cmd_policy_t policy;
} cmd_product_view_t;

typedef struct cmd_store_view {
  const char *name, *location, *manager_id;
  int64_t version;
  bool closed;
} cmd_store_view_t;

typedef enum cmd_apply_result {
  CMD_APPLY_APPLIED = 0,
  CMD_APPLY_DUPLICATE, /* stream version already applied: skipped */
  CMD_APPLY_IGNORED    /* type this state does not track (yet): skipped */
} cmd_apply_result_t;

int cmd_state_new(cmd_state_t **out);
void cmd_state_destroy(cmd_state_t *s);

/* Folds e into the state. Returns 0 with *res set, SF_ENOMEM, or SF_EINVAL
 * for an event that breaks the state's invariants (logged by the caller;
 * the state is unchanged). */
int cmd_state_apply(cmd_state_t *s, const sf_event_t *e,
                    cmd_apply_result_t *res);

/* Lookups by id string; false when unknown (views borrow from the state and
 * stay valid until the next apply). */
bool cmd_state_product(const cmd_state_t *s, const char *id,
                       cmd_product_view_t *out);
bool cmd_state_store(const cmd_state_t *s, const char *id,
                     cmd_store_view_t *out);
/* The stock row (zeros with version 0 when never moved). */
void cmd_state_stock(const cmd_state_t *s, const char *store_id,
                     const char *product_id, cmd_stock_row_t *out);
bool cmd_state_sku_taken(const cmd_state_t *s, const char *sku);

/* ---- log positions (instances) ----
 * The rebuild records, per partition, the offset after the last one it
 * folded; the tail (cmd_tail.h) that keeps folding the events other
 * instances write starts there and moves it on. Catalog: partition 0
 * only. */
/* Returns 0, SF_EINVAL (bad partition) or SF_ENOMEM. */
int cmd_state_set_log_next(cmd_state_t *s, bool catalog, int32_t partition,
                           int64_t next);
/* The next offset to fold, or -1 when never recorded. */
int64_t cmd_state_log_next(const cmd_state_t *s, bool catalog,
                           int32_t partition);
/* Stock partitions with a recorded position (the topic's partition count
 * once a rebuild ran; 0 before). */
int32_t cmd_state_stock_partitions(const cmd_state_t *s);

/* Counts for metrics and the startup log. */
size_t cmd_state_n_products(const cmd_state_t *s);
size_t cmd_state_n_stores(const cmd_state_t *s);
size_t cmd_state_n_stock(const cmd_state_t *s);

/* ---- decisions: fill e (envelope ids, time and command id are set by the
 * caller before or after; these set type, stream ids, version, payload) ---- */

typedef struct cmd_movement_cmd {
  const char *store_id, *product_id;
  sf_movement_t movement;
  int64_t quantity;               /* validated range by the caller: see cmd_check_quantity */
  const char *reason, *reference; /* NULL when absent */
  int64_t if_match;               /* expected stream version, or -1 for none */
} cmd_movement_cmd_t;

/* Range rules of the contract for the quantity of a movement: receipt, sale
 * and return 1..2^31-1; adjustment non-zero within +-(2^31-1) and a reason;
 * count 0..2^31-1. Returns NULL when valid, else a message naming the rule. */
const char *cmd_check_movement(sf_movement_t m, int64_t quantity,
                               const char *reason);

cmd_verdict_t cmd_decide_movement(const cmd_state_t *s,
                                  const cmd_movement_cmd_t *c, sf_event_t *e);
cmd_verdict_t cmd_decide_product_create(const cmd_state_t *s,
                                        const char *product_id,
                                        const char *sku, const char *name,
                                        const char *category,
                                        const char *price,
                                        int64_t reorder_level, sf_event_t *e);
cmd_verdict_t cmd_decide_store_open(const cmd_state_t *s, const char *store_id,
                                    const char *name, const char *location,
                                    const char *manager_id, sf_event_t *e);

/* Catalog changes. NULL fields are left unchanged; has_reorder_level tells
 * whether reorder_level is given. */
cmd_verdict_t cmd_decide_product_update(const cmd_state_t *s, const char *id,
                                        const char *name, const char *category,
                                        const char *price,
                                        bool has_reorder_level,
                                        int64_t reorder_level, sf_event_t *e);
cmd_verdict_t cmd_decide_product_discontinue(const cmd_state_t *s,
                                             const char *id, sf_event_t *e);
cmd_verdict_t cmd_decide_store_update(const cmd_state_t *s, const char *id,
                                      const char *name, const char *location,
                                      const char *manager_id, sf_event_t *e);
cmd_verdict_t cmd_decide_store_close(const cmd_state_t *s, const char *id,
                                     sf_event_t *e);

/* A transfer: two stock events that commit in one Kafka transaction, the
 * source leg (out, delta -quantity) and the destination leg (in, +quantity).
 * Both stores must exist and be open, the product must exist, the source
 * must have the units available. transfer_id is copied into both. Deciding
 * the second leg assumes the first: the caller applies out then in. */
cmd_verdict_t cmd_decide_transfer(const cmd_state_t *s, const char *from_store,
                                  const char *to_store, const char *product_id,
                                  int64_t quantity, const char *reference,
                                  const char *transfer_id, sf_event_t *out,
                                  sf_event_t *in);

/* ---- orders ---- */

typedef enum cmd_order_status {
  CMD_ORDER_PLACED = 0,
  CMD_ORDER_FULFILLED,
  CMD_ORDER_CANCELLED
} cmd_order_status_t;

const char *cmd_order_status_name(cmd_order_status_t st);

/* Places an order reserving every line or none. lines_out must have room
 * for n lines; it receives each line with its after-levels and is what the
 * event points to (e->order.lines), so it must outlive the encoding. On
 * CMD_INSUFFICIENT_STOCK, short[i] is set true for each short line (short
 * has n entries). The order id is copied. */
cmd_verdict_t cmd_decide_order_place(const cmd_state_t *s, const char *store_id,
                                     const char *order_id,
                                     const sf_order_line_t *lines, size_t n,
                                     const char *reference,
                                     sf_order_line_t *lines_out, bool *shorts,
                                     sf_event_t *e);
/* Fulfils (fulfil = true) or cancels a placed order; CMD_NOT_FOUND_ORDER,
 * CMD_INVALID_STATE when it is not placed any more. lines_out needs room
 * for CMD_MAX_LINES entries. */
cmd_verdict_t cmd_decide_order_finish(const cmd_state_t *s,
                                      const char *order_id, bool fulfil,
                                      sf_order_line_t *lines_out,
                                      sf_event_t *e);
/* The order's store, status and version; false when unknown. */
bool cmd_state_order(const cmd_state_t *s, const char *order_id,
                     char store_id[SF_ID_LEN], cmd_order_status_t *status,
                     int64_t *version);

#define CMD_MAX_LINES SF_EVENT_MAX_LINES

/* ---- expiry of reservations ----
 * A placed order's reservation expires ttl after the order was placed
 * (OrderPlaced's occurred_at, from the log: a rebuilt state expires the
 * same orders). Expiry is an OrderCancelled with cause "expired". */

#define CMD_CAUSE_EXPIRED "expired"

/* True when an order placed at placed_at_us is due at now_us (ttl_us <= 0:
 * never). */
bool cmd_order_due(int64_t placed_at_us, int64_t now_us, int64_t ttl_us);
/* Writes the ids of up to cap placed orders that are due into ids; returns
 * how many. */
size_t cmd_state_due_orders(const cmd_state_t *s, int64_t now_us,
                            int64_t ttl_us, char (*ids)[SF_ID_LEN],
                            size_t cap);
/* The same, only orders whose store keep(ud, store_id) accepts (keep NULL:
 * every order): an instance expires the orders of its own stores only. */
size_t cmd_state_due_orders_where(const cmd_state_t *s, int64_t now_us,
                                  int64_t ttl_us,
                                  bool (*keep)(void *ud, const char *store_id),
                                  void *ud, char (*ids)[SF_ID_LEN],
                                  size_t cap);
size_t cmd_state_n_open_orders(const cmd_state_t *s);
/* Decides the expiry of order_id like a cancel (lines_out: room for
 * CMD_MAX_LINES), with cause "expired": CMD_NOT_FOUND_ORDER,
 * CMD_INVALID_STATE when it was fulfilled or cancelled meanwhile,
 * CMD_NOT_DUE when its time has not come. */
cmd_verdict_t cmd_decide_order_expire(const cmd_state_t *s,
                                      const char *order_id, int64_t now_us,
                                      int64_t ttl_us,
                                      sf_order_line_t *lines_out,
                                      sf_event_t *e);

/* ---- low-stock crossings ----
 * A store x product is below its reorder level when its available stock
 * (on_hand - reserved) is below the product's reorder level (0: never),
 * the same test as the query side's below_reorder filter. Each stock row
 * remembers the last crossing event folded into it (StockBelowReorder or
 * StockRestored); a stock or order event whose after-levels put the row on
 * the other side causes one crossing event, once per crossing. */

bool cmd_below_reorder(int64_t on_hand, int64_t reserved,
                       int64_t reorder_level);
/* The crossing events that the decided event e causes, for each store x
 * product it moves (one for a movement or a transfer leg, up to one per
 * line for an order), written to out (room for cap; cap = 1 for stock
 * events, e->order.n_lines for orders is always enough). Each gets e's
 * command id, actor and time, the store x product, the version of the row
 * after e and the levels; the caller gives it an event id and folds it
 * after e. The rows' flags are read, not changed: call before or after
 * folding e, but before folding the crossings. Returns how many. */
size_t cmd_state_crossings(const cmd_state_t *s, const sf_event_t *e,
                           sf_event_t *out, size_t cap);

/* ---- per-product policies ---- */

/* CMD_OK, or the rule of p that the movement breaks: a sale above
 * max_sale_quantity, an adjustment removing more than
 * max_negative_adjustment, a count without reason when required. */
cmd_verdict_t cmd_policy_check(const cmd_policy_t *p, sf_movement_t m,
                               int64_t quantity, const char *reason);
/* The detail of a policy verdict v for a movement of quantity under p
 * ("sale of 6 is above the product's max_sale_quantity 5", ...), into out;
 * false (out untouched) when v is not a policy verdict. */
bool cmd_policy_explain(const cmd_policy_t *p, cmd_verdict_t v,
                        int64_t quantity, char *out, size_t cap);
/* Sets the whole policy of product id (CMD_NOT_FOUND_PRODUCT). A
 * discontinued product keeps a policy: it still sells and adjusts. */
cmd_verdict_t cmd_decide_product_policy(const cmd_state_t *s, const char *id,
                                        const cmd_policy_t *policy,
                                        sf_event_t *e);

/* ---- idempotency keys ----
 * A key remembers the first answer to a write (status and body) and the
 * hash of its request, until it expires. A key whose first request is
 * still in flight is pending. Keys of committed commands are rebuilt from
 * the log (the key and request hash ride in the event); answers that wrote
 * nothing (4xx) are remembered in memory only. */

typedef struct cmd_idem_view {
  const char *request_hash; /* hex */
  bool pending;
  int status;
  const char *body; /* NULL while pending */
} cmd_idem_view_t;

bool cmd_state_idem_get(const cmd_state_t *s, const char *key,
                        cmd_idem_view_t *out);
/* Marks key pending for request_hash (both copied). SF_EEXISTS if the key
 * is present. */
int cmd_state_idem_begin(cmd_state_t *s, const char *key,
                         const char *request_hash, int64_t expires_us);
/* Records the answer of key (creating the entry when absent, e.g. during
 * the rebuild); body copied. */
int cmd_state_idem_finish(cmd_state_t *s, const char *key,
                          const char *request_hash, int status,
                          const char *body, int64_t expires_us);
/* Forgets key if it is still pending (its command wrote nothing and may be
 * retried); an answered key stays. */
void cmd_state_idem_drop(cmd_state_t *s, const char *key);
/* Forgets every key that expired before now_us; returns how many. */
size_t cmd_state_idem_expire(cmd_state_t *s, int64_t now_us);
size_t cmd_state_n_idem(const cmd_state_t *s);

/* ---- savepoints (stock rows only) ----
 * An atomic batch folds its commands one by one (each must see the ones
 * before it) and, if one is refused, puts every stock row back. Only stock
 * movements may be applied while a savepoint is open. */
void cmd_state_savepoint(cmd_state_t *s);
void cmd_state_rollback(cmd_state_t *s);
void cmd_state_release(cmd_state_t *s);

/* HTTP status and stable problem code for a verdict. */
int cmd_verdict_status(cmd_verdict_t v);
const char *cmd_verdict_code(cmd_verdict_t v);

#endif
