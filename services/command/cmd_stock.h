/* cmd_stock: the stock commands: movements of one store x product
 * (receipt, sale, return, adjustment, count), transfers between stores (two
 * events in one transaction) and orders that reserve stock (place, fulfil,
 * cancel). Events go to the stock topic keyed by store id, so all events of
 * a store are ordered. */
#ifndef CMD_STOCK_H
#define CMD_STOCK_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cmd_pipeline.h"
#include "sf/http.h"

/* Registers POST /v1/stores/{store_id}/transactions, /v1/transfers,
 * /v1/stores/{store_id}/orders, /v1/orders/{id}/fulfil|cancel. */
int cmd_stock_routes(cmd_pipeline_t *pl, sf_http_server_t *http);

/* The fields of one movement in a JSON object (borrowed from it). */
typedef struct cmd_movement_fields {
  const char *store_id; /* only when asked for (a batch item) */
  const char *product_id, *type, *reason, *reference;
  sf_movement_t movement;
  int64_t quantity;
} cmd_movement_fields_t;

/* Reads a movement from obj: only the movement keys (plus store_id when
 * with_store), product_id, type (parsed into movement), quantity, and the
 * optional reason and reference, with their bounds. Returns 0, or -1 with
 * the validation message in err (the 422's detail). The HTTP handler and
 * the batch items share it; the state is not consulted. */
int cmd_movement_fields(json_t *obj, bool with_store, cmd_movement_fields_t *f,
                        char *err, size_t cap);

/* Decides and commits one movement for c (validated fields; if_match -1
 * for none): answers 422/403/404/409/412 itself, or queues the event. The
 * HTTP handler and the bus intake (cmd_bus.c) both end here. */
void cmd_stock_movement(cmd_pipeline_t *pl, cmd_req_t *c, const char *store_id,
                        const char *product_id, sf_movement_t movement,
                        int64_t quantity, const char *reason,
                        const char *reference, int64_t if_match);

#endif
