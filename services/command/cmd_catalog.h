/* cmd_catalog: the catalog commands (products and stores): create, update,
 * discontinue a product; open, update, close a store. Events go to the
 * catalog topic, keyed by the product or store id. */
#ifndef CMD_CATALOG_H
#define CMD_CATALOG_H

#include "cmd_pipeline.h"
#include "sf/http.h"

/* Registers POST/PATCH/DELETE /v1/products[/{id}] and /v1/stores[/{id}]. */
int cmd_catalog_routes(cmd_pipeline_t *pl, sf_http_server_t *http);

#endif
