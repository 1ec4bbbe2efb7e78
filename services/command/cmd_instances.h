/* cmd_instances: which command instance owns which stock partitions, and
 * what a request for another instance's store is answered.
 *
 * Several command instances share the stock partitions by a static
 * assignment: instance i of n owns the partitions p with p mod n == i, so
 * it alone decides and writes the commands of the stores keyed onto them
 * (a store's partition is murmur2 of its id, cmd_lanes_partition).
 * Instance 0 also owns the catalog topic (one partition, one writer). A
 * request for a store another instance owns writes nothing and is
 * answered 307 Temporary Redirect to the owner's URL for the same path
 * (307 keeps the method and the body), or 421 Misdirected Request naming
 * the owner when its URL is not configured. The transactional ids are
 * derived from the assignment, so a second instance started with the same
 * assignment fences the first and disjoint assignments never meet.
 *
 * Pure functions (no I/O, no allocation beyond what is said); the value
 * type cmd_instances_t is filled once from the settings and read-only
 * after. Safe from any thread. */
#ifndef CMD_INSTANCES_H
#define CMD_INSTANCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CMD_MAX_INSTANCES 1024
#define CMD_INSTANCE_URL_MAX 256

typedef struct cmd_instances {
  unsigned index;        /* this instance, 0 .. count-1 */
  unsigned count;        /* 1: a single instance owns everything */
  const char *peer_urls; /* borrowed: "url0,url1,..." or "" (none known) */
} cmd_instances_t;

/* Checks the assignment: index < count, and peer_urls either empty or
 * exactly count comma-separated http(s) URLs. Returns 0, or -1 with a
 * message in err. */
int cmd_instances_check(const cmd_instances_t *ins, char *err, size_t cap);

/* The instance that owns stock partition p (0 for a negative one). */
unsigned cmd_instances_owner_of_partition(int32_t partition, unsigned count);

/* Whether instance ins->index owns stock partition p. */
bool cmd_instances_owns_partition(const cmd_instances_t *ins,
                                  int32_t partition);

/* Whether this instance owns the catalog topic (instance 0). */
bool cmd_instances_owns_catalog(const cmd_instances_t *ins);

/* How many of `partitions` stock partitions this instance owns. */
int32_t cmd_instances_n_owned(const cmd_instances_t *ins, int32_t partitions);

/* The base URL of instance k (without a trailing '/') into out; false
 * when unknown (no peer URLs, or k out of range) or too long. */
bool cmd_instances_url(const cmd_instances_t *ins, unsigned k, char *out,
                       size_t cap);

/* The transactional id prefix of this instance's lanes: base itself for a
 * single instance (the ids every deployment had before), else
 * "<base>-p<index>of<count>". Returns 0, or -1 when out is too small. */
int cmd_instances_txn_prefix(const cmd_instances_t *ins, const char *base,
                             char *out, size_t cap);

/* ---- the redirect decision ---- */

typedef enum cmd_route_kind {
  CMD_ROUTE_LOCAL = 0,   /* this instance decides */
  CMD_ROUTE_REDIRECT,    /* 307 to location */
  CMD_ROUTE_MISDIRECTED, /* 421: the owner's URL is unknown */
} cmd_route_kind_t;

typedef struct cmd_route {
  cmd_route_kind_t kind;
  unsigned owner;                            /* the owning instance */
  char location[CMD_INSTANCE_URL_MAX + 512]; /* REDIRECT: owner URL + path */
} cmd_route_t;

/* Where a request for partition `partition` (of a store) or, with
 * partition < 0, for the catalog goes: LOCAL when this instance owns it,
 * else REDIRECT with the owner's URL followed by path, or MISDIRECTED
 * when that URL is unknown or the location would not fit. */
void cmd_instances_route(const cmd_instances_t *ins, int32_t partition,
                         const char *path, cmd_route_t *out);

/* HTTP status of a route kind: 0 (local), 307 or 421. */
int cmd_route_status(cmd_route_kind_t kind);

/* ---- the bus intake ---- */

/* The consumer group of this instance's bus intake: base itself for a
 * single instance (the group every deployment had before), else
 * "<base>-i<index>of<count>": each instance reads the whole commands topic
 * in a group of its own and commits its own offsets. Returns 0, or -1 when
 * out is too small. */
int cmd_instances_intake_group(const cmd_instances_t *ins, const char *base,
                               char *out, size_t cap);

typedef enum cmd_intake_verdict {
  CMD_INTAKE_ANSWER = 0, /* this instance decides and answers the command */
  CMD_INTAKE_SKIP,       /* another instance answers it: nothing from here */
  CMD_INTAKE_WAIT,       /* the stock partition count is not known yet */
} cmd_intake_verdict_t;

/* Whether this instance answers a bus command for store id store (len
 * bytes; for a command that cannot be decoded, its record key, which
 * publishers set to the store id): the owner of the store's *stock*
 * partition, murmur2 of the id over stock_partitions, answers it, whatever
 * partition of the commands topic it came on (that topic may have another
 * partition count, a publisher another partitioner). A command with no
 * store (len 0) is instance 0's. A single instance answers everything;
 * otherwise stock_partitions <= 0 (unknown) gives WAIT. */
cmd_intake_verdict_t cmd_instances_intake(const cmd_instances_t *ins,
                                          const char *store, size_t len,
                                          int32_t stock_partitions);

#endif
