/* proj_batch: turns one batch of consumed events into set-based SQL.
 *
 * The projector applies a batch with a fixed list of statements (products
 * insert and update, stores insert and update, stock, offsets), each run at
 * most once per batch with one array parameter per column. This module is
 * the pure half of that: it takes the decoded events of a batch (in consume
 * order) and produces the text parameters of every statement, without
 * Kafka or PostgreSQL, so it is unit-tested on its own. proj_pg runs the
 * statements (proj_stmt_def gives their SQL) inside the batch transaction.
 *
 * What the plan encodes, per table:
 *  - products and stores are collapsed in memory per id, in stream order:
 *    a created/opened event gives an insert row (ON CONFLICT DO NOTHING);
 *    every id also gives one update row carrying the fields the batch sets
 *    (NULL = unchanged), the highest version and the discontinued/closed
 *    flag, applied WHERE row.version < that version. An event whose version
 *    is not above what the batch already holds for its id is a duplicate.
 *  - stock events (STOCK_MOVED, TRANSFER_OUT, TRANSFER_IN) each give one
 *    transactions row; a second event with the same event id, or with the
 *    same command id for the same store x product, is a duplicate and
 *    dropped (the command service's rebuild skips those too). The stock
 *    statement inserts the transactions with ON CONFLICT DO NOTHING and
 *    upserts inventory from the rows it actually inserted, collapsed per
 *    store x product to the highest stream_version, WHERE inventory.version
 *    < EXCLUDED.version: an event whose command was already applied in an
 *    earlier batch changes nothing.
 *  - orders (ORDER_PLACED, ORDER_FULFILLED, ORDER_CANCELLED) are collapsed
 *    per order id like the catalog: one upsert row with the status and
 *    version of the newest event, applied WHERE orders.version < that
 *    version; each order event's lines give order_lines rows (ON CONFLICT
 *    DO NOTHING) and, per line, one transactions row for the stock
 *    statement (id = the event id with its last four hex digits replaced by
 *    the line index, so replays dedupe; type order_placed / ..., delta and
 *    reserved_delta from the line, after-values and version of the line).
 *    An order event whose version is not above what the batch already holds
 *    for its order is a duplicate.
 *  - the stock statement gets its rows in consume order (order lines in
 *    line order) and returns the ids of the rows it inserted in that order;
 *    proj_pg writes one changes row for each of them.
 *  - low-stock crossings (STOCK_BELOW_REORDER, STOCK_RESTORED) each give
 *    one stock_crossings row (id = event id, ON CONFLICT DO NOTHING), in
 *    consume order; the statement returns the ids it inserted and proj_pg
 *    writes one changes row for each, after the batch's stock changes.
 *  - product policies (PRODUCT_POLICY_SET) move the product's version like
 *    any product event and give one policy row per product (the newest in
 *    the batch), applied WHERE products.policy_version < its version.
 *  - offsets: one row per topic x partition seen, next_offset = highest
 *    offset + 1, whatever happened to the messages (poison, skipped,
 *    duplicate): they are consumed once they are in a committed batch.
 * Events that decode but cannot be stored (a missing or malformed id, a
 * malformed price, text that is not UTF-8) are rejected here with a reason,
 * as poison: retrying them could never succeed and must not stall the
 * projector. Event types the projector does not know are skipped.
 *
 * Not thread-safe; a plan belongs to one thread. No global state. */
#ifndef PROJ_BATCH_H
#define PROJ_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proj_sqlarr.h"
#include "sf/event.h"

typedef enum proj_stmt {
  PROJ_STMT_PRODUCT_INSERT = 0,
  PROJ_STMT_PRODUCT_UPDATE,
  PROJ_STMT_PRODUCT_POLICY, /* ProductPolicySet, guarded by policy_version */
  PROJ_STMT_STORE_INSERT,
  PROJ_STMT_STORE_UPDATE,
  PROJ_STMT_ORDER_UPSERT, /* before ORDER_LINES: the lines reference orders */
  PROJ_STMT_ORDER_LINES,
  PROJ_STMT_STOCK,     /* returns the inserted transaction ids (change log) */
  PROJ_STMT_CROSSINGS, /* stock_crossings; returns the inserted ids (ditto) */
  PROJ_STMT_OFFSETS,
  PROJ_STMT__COUNT
} proj_stmt_t;

#define PROJ_MAX_PARAMS 18

typedef struct proj_stmt_def {
  const char *name; /* prepared statement name, e.g. "proj_stock" */
  const char *sql;
  int n_params;
} proj_stmt_def_t;

/* The statement s (static; never NULL for s < PROJ_STMT__COUNT). */
const proj_stmt_def_t *proj_stmt_def(proj_stmt_t s);

/* One consumed message of the batch. */
typedef struct proj_input {
  const char *topic; /* borrowed; must outlive the plan */
  int32_t partition;
  int64_t offset;
  const sf_event_t *ev; /* decoded event (borrowed for the build), or NULL
                           when the value did not decode (poison) */
} proj_input_t;

/* What the plan does with each input. */
typedef enum proj_verdict {
  PROJ_APPLY = 0, /* contributes rows */
  PROJ_DUPLICATE, /* already in this batch (same event, command or version) */
  PROJ_SKIPPED,   /* a type the projector does not handle yet */
  PROJ_INVALID,   /* decoded but unstorable; reason in proj_plan_t.why */
  PROJ_POISON     /* did not decode (ev == NULL) */
} proj_verdict_t;

/* The offsets consumed from one partition in this batch. */
typedef struct proj_offset {
  const char *topic; /* borrowed from the inputs */
  int32_t partition;
  int64_t first, last; /* lowest and highest offset seen */
  size_t count;
} proj_offset_t;

typedef struct proj_plan {
  /* Statement parameters: params[s][i] is the text of $i+1 of statement s
   * (borrowed from the plan), meaningful when rows[s] > 0; statements with
   * rows[s] == 0 are not run. */
  const char *params[PROJ_STMT__COUNT][PROJ_MAX_PARAMS];
  size_t rows[PROJ_STMT__COUNT];

  proj_offset_t *offsets; /* one per topic x partition, in order of first
                             appearance */
  size_t n_offsets;

  proj_verdict_t *verdicts; /* one per input */
  const char **why;         /* per input: static reason for PROJ_INVALID,
                               else NULL */
  size_t n_inputs;
  size_t n_by_verdict[PROJ_POISON + 1];

  /* private */
  proj_sqlarr_t cols_[PROJ_STMT__COUNT][PROJ_MAX_PARAMS];
  void *keys_; /* scratch: sort keys, one per input */
  size_t cap_; /* inputs the arrays above have room for */
} proj_plan_t;

/* Makes an empty plan (no allocation). */
void proj_plan_init(proj_plan_t *p);
/* Frees everything the plan owns and re-inits it. */
void proj_plan_free(proj_plan_t *p);

/* Builds the plan for inputs in[0..n) (in consume order) of consumer group
 * group (borrowed; $1 of the offsets statement). Replaces any previous
 * content of p; buffers are reused. Events are only read during the call;
 * topics must outlive the plan. Returns 0, SF_EINVAL (NULL argument or an
 * input without a topic) or SF_ENOMEM (p is then empty). */
int proj_plan_build(proj_plan_t *p, const char *group, const proj_input_t *in,
                    size_t n);

/* Validation helpers, exposed for tests. */
/* True when s is well-formed UTF-8 (no overlongs, surrogates or code points
 * above U+10FFFF). */
bool proj_utf8_valid(const char *s);
/* True when s is a decimal that fits numeric(19,4): optional '-', 1 to 15
 * digits, optionally '.' and 1 to 4 digits. */
bool proj_price_valid(const char *s);

#endif
