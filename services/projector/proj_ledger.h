/* proj_ledger: the conservation check's fold of the stock topic, pure.
 *
 * It folds stock events the way the read model should have (per store x
 * product: on hand and reserved as the sum of the events' deltas, a
 * stream version guard that skips replays and broker duplicates, exactly
 * like the projector's inventory upsert) and, per product, the movements
 * (every change of on hand but transfers: receipts, sales, returns,
 * adjustments, counts, fulfilled orders) and the units in transit (sent by
 * a TransferOut whose TransferIn is not folded). Then the read model's
 * inventory rows are compared with it: every store x product whose on hand
 * or reserved differs, or that only one side has, is a difference; and per
 * product, Σ stores (read model) + in transit must equal Σ movements.
 * A row whose summed deltas disagree with the after-levels its own events
 * carry is reported too (the log contradicts itself).
 *
 * No I/O (proj_check does that); one thread at a time. */
#ifndef PROJ_LEDGER_H
#define PROJ_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sf/event.h"

typedef struct proj_ledger proj_ledger_t;

int proj_ledger_new(proj_ledger_t **out);
void proj_ledger_destroy(proj_ledger_t *l);

/* Folds e (borrowed for the call). Events that move no stock (catalog,
 * crossings) are ignored. Returns 0, SF_ENOMEM, or SF_EINVAL for ids that
 * are not UUIDs. */
int proj_ledger_apply(proj_ledger_t *l, const sf_event_t *e);

/* Records one inventory row of the read model. SF_EINVAL for bad ids,
 * SF_EEXISTS when the row was given already. */
int proj_ledger_observe(proj_ledger_t *l, const char *store_id,
                        const char *product_id, int64_t on_hand,
                        int64_t reserved);

typedef struct proj_ledger_diff {
  char store_id[SF_ID_LEN], product_id[SF_ID_LEN];
  bool in_log, in_model;
  int64_t log_on_hand, log_reserved;     /* Σ deltas (0 when !in_log) */
  int64_t model_on_hand, model_reserved; /* 0 when !in_model */
  bool log_contradicts;                  /* Σ deltas != the last event's after-levels */
  int64_t version;                       /* of the last folded event */
} proj_ledger_diff_t;

typedef struct proj_ledger_product {
  char product_id[SF_ID_LEN];
  int64_t stores;     /* Σ on hand over the read model's rows */
  int64_t in_transit; /* transferred out, not yet in */
  int64_t movements;  /* Σ deltas of everything but transfers */
  bool balanced;      /* stores + in_transit == movements */
} proj_ledger_product_t;

typedef struct proj_ledger_summary {
  uint64_t events;     /* folded (duplicates not counted) */
  uint64_t duplicates; /* skipped by the version guard */
  size_t rows;         /* store x product rows, either side */
  size_t products;
  size_t row_diffs, product_diffs;
  int64_t stores, in_transit, movements; /* over all products */
} proj_ledger_summary_t;

/* Calls row_cb for every row difference and product_cb for every product
 * (balanced or not; either callback may be NULL), then fills *sum. */
void proj_ledger_report(const proj_ledger_t *l,
                        void (*row_cb)(void *ud, const proj_ledger_diff_t *d),
                        void (*product_cb)(void *ud,
                                           const proj_ledger_product_t *p),
                        void *ud, proj_ledger_summary_t *sum);

#endif
