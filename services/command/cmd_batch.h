/* cmd_batch: bulk intake for warehouse systems. POST /v1/batches takes up
 * to 1,000 stock movements; each is accepted or rejected on its own with
 * its own result, and every accepted one commits in ONE Kafka transaction.
 * With ?atomic=true it is all or none: one refusal puts every row back and
 * nothing is written. */
#ifndef CMD_BATCH_H
#define CMD_BATCH_H

#include "cmd_pipeline.h"
#include "sf/http.h"

#define CMD_BATCH_MAX_ITEMS 1000

/* Registers POST /v1/batches with its own body limit (max_body bytes). */
int cmd_batch_routes(cmd_pipeline_t *pl, sf_http_server_t *http, size_t max_body);

#endif
