/* cmd_bus: bus intake. Warehouse and point-of-sale systems publish stock
 * movements as Avro StockCommand records (schemas/command.avsc) on
 * inventory.commands, keyed by store id; each one goes through the same
 * validation, rules and group commit as POST /v1/stores/{id}/transactions,
 * and its outcome (status and the same JSON answer) is published on
 * inventory.command-results under the same key.
 *
 * Delivery: a consumer thread (group stockflow-command-intake, offsets
 * committed to Kafka only after the results of every earlier command of the
 * partition are acknowledged by the broker) hands commands to the loop. A
 * command whose offset was not committed is delivered again after a crash;
 * its command id is its Idempotency-Key (kept in the event log), so a
 * redelivered command is answered with its first answer and applied once.
 * A result may therefore be published twice; consumers dedupe by command id.
 *
 * Instances (cmd_instances.h): with several, each instance's intake reads
 * the whole topic in a group of its own (opts->group_id, made by
 * cmd_instances_intake_group) and answers only the commands whose store's
 * stock partition it owns (cmd_instances_intake); it skips the others
 * without a result, so every command has one answer, from its owner. A
 * command naming a store or product this instance has not read yet waits
 * for the tail once (cmd_pipeline_catch_up) before it is answered 404.
 *
 * cmd_bus_new/_stop_intake/_destroy run on the loop thread. */
#ifndef CMD_BUS_H
#define CMD_BUS_H

#include <uv.h>

#include "cmd_pipeline.h"
#include "sf/log.h"

typedef struct cmd_bus cmd_bus_t;

typedef struct cmd_bus_opts {
  const char *brokers;
  const char *topic_commands;
  const char *topic_results;
  const char *group_id;
  size_t max_inflight; /* commands handed to the loop, not yet answered */
} cmd_bus_opts_t;

/* Starts the intake thread. opts strings, pipeline, loop and log are borrowed
 * for the bus's life. Returns 0, SF_ENOMEM, SF_EKAFKA, SF_EINTERNAL. */
int cmd_bus_new(cmd_bus_t **out, uv_loop_t *loop, cmd_pipeline_t *pipeline,
                const cmd_bus_opts_t *opts, sf_log_t *log);

/* Stops taking new commands (those not yet handed over are delivered again
 * at the next start). Answers of commands in flight still go out, except
 * those that wrote nothing (503: the service is shutting down or
 * rebuilding): their offsets stay uncommitted and they are delivered again
 * at the next start. */
void cmd_bus_stop_intake(cmd_bus_t *b);

/* Publishes the answers it has, commits what they cover, stops the thread
 * and frees (the async handle is freed on the next loop iteration). Call
 * it after cmd_bus_stop_intake once the pipeline has answered every
 * command handed to it (cmd_app destroys the lanes first, which answers
 * what they hold): an answer that comes later would reach freed memory.
 * Commands not answered by then are delivered again at the next start. */
void cmd_bus_destroy(cmd_bus_t *b);

/* Counters for /metrics. */
typedef struct cmd_bus_stats {
  uint64_t received, malformed, results;
  uint64_t skipped; /* instances: commands another instance answers */
  /* 1 once a result could not be published or acknowledged: offsets stop
   * there until a restart redelivers (and replays) those commands */
  uint64_t commits_blocked;
} cmd_bus_stats_t;
void cmd_bus_stats(cmd_bus_t *b, cmd_bus_stats_t *out);

#endif
