/* cmd_instances: the static partition assignment of command instances and
 * the redirect decision. See cmd_instances.h. */
#include "cmd_instances.h"

#include <stdio.h>
#include <string.h>

#include "sf/kafka.h"

/* The k-th comma-separated entry of list, trimmed of spaces and of
 * trailing '/', as [*start, *start + *len). false when there is none. */
static bool nth_entry(const char *list, unsigned k, const char **start,
                      size_t *len) {
  if (!list)
    return false;
  const char *p = list;
  for (unsigned i = 0; i < k; i++) {
    p = strchr(p, ',');
    if (!p)
      return false;
    p++;
  }
  const char *end = strchr(p, ',');
  if (!end)
    end = p + strlen(p);
  while (p < end && *p == ' ')
    p++;
  while (end > p && (end[-1] == ' ' || end[-1] == '/'))
    end--;
  if (end == p)
    return false;
  *start = p;
  *len = (size_t)(end - p);
  return true;
}

static unsigned n_entries(const char *list) {
  unsigned n = 1;
  for (const char *p = list; *p; p++)
    n += *p == ',';
  return n;
}

int cmd_instances_check(const cmd_instances_t *ins, char *err, size_t cap) {
  if (ins->count < 1 || ins->count > CMD_MAX_INSTANCES) {
    snprintf(err, cap, "instance-count must be 1 .. %d", CMD_MAX_INSTANCES);
    return -1;
  }
  if (ins->index >= ins->count) {
    snprintf(err, cap, "instance-index %u must be below instance-count %u",
             ins->index, ins->count);
    return -1;
  }
  if (!ins->peer_urls || !ins->peer_urls[0])
    return 0;
  unsigned n = n_entries(ins->peer_urls);
  if (n != ins->count) {
    snprintf(err, cap,
             "peer-urls lists %u URL(s); it needs one per instance (%u), "
             "in instance order",
             n, ins->count);
    return -1;
  }
  for (unsigned k = 0; k < n; k++) {
    const char *s;
    size_t len;
    if (!nth_entry(ins->peer_urls, k, &s, &len) ||
        len >= CMD_INSTANCE_URL_MAX ||
        !((len > 7 && strncmp(s, "http://", 7) == 0) ||
          (len > 8 && strncmp(s, "https://", 8) == 0))) {
      snprintf(err, cap,
               "peer-urls entry %u must be an http:// or https:// base URL "
               "shorter than %d bytes",
               k, CMD_INSTANCE_URL_MAX);
      return -1;
    }
  }
  return 0;
}

unsigned cmd_instances_owner_of_partition(int32_t partition, unsigned count) {
  if (count <= 1 || partition < 0)
    return 0;
  return (unsigned)partition % count;
}

bool cmd_instances_owns_partition(const cmd_instances_t *ins,
                                  int32_t partition) {
  return cmd_instances_owner_of_partition(partition, ins->count) == ins->index;
}

bool cmd_instances_owns_catalog(const cmd_instances_t *ins) {
  return ins->index == 0;
}

int32_t cmd_instances_n_owned(const cmd_instances_t *ins, int32_t partitions) {
  int32_t n = 0;
  for (int32_t p = 0; p < partitions; p++)
    n += cmd_instances_owns_partition(ins, p);
  return n;
}

bool cmd_instances_url(const cmd_instances_t *ins, unsigned k, char *out,
                       size_t cap) {
  const char *s;
  size_t len;
  if (k >= ins->count || !nth_entry(ins->peer_urls, k, &s, &len) ||
      len >= cap)
    return false;
  memcpy(out, s, len);
  out[len] = '\0';
  return true;
}

/* base itself for a single instance, else "<base>-<tag><index>of<count>". */
static int with_assignment(const cmd_instances_t *ins, const char *base,
                           char tag, char *out, size_t cap) {
  int n = ins->count <= 1 ? snprintf(out, cap, "%s", base)
                          : snprintf(out, cap, "%s-%c%uof%u", base, tag,
                                     ins->index, ins->count);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int cmd_instances_txn_prefix(const cmd_instances_t *ins, const char *base,
                             char *out, size_t cap) {
  return with_assignment(ins, base, 'p', out, cap);
}

void cmd_instances_route(const cmd_instances_t *ins, int32_t partition,
                         const char *path, cmd_route_t *out) {
  memset(out, 0, sizeof(*out));
  out->owner = partition < 0
                   ? 0
                   : cmd_instances_owner_of_partition(partition, ins->count);
  if (out->owner == ins->index) {
    out->kind = CMD_ROUTE_LOCAL;
    return;
  }
  char url[CMD_INSTANCE_URL_MAX];
  int n = -1;
  if (cmd_instances_url(ins, out->owner, url, sizeof(url)))
    n = snprintf(out->location, sizeof(out->location), "%s%s", url,
                 path ? path : "");
  if (n < 0 || (size_t)n >= sizeof(out->location)) {
    out->location[0] = '\0';
    out->kind = CMD_ROUTE_MISDIRECTED;
    return;
  }
  out->kind = CMD_ROUTE_REDIRECT;
}

int cmd_route_status(cmd_route_kind_t kind) {
  switch (kind) {
  case CMD_ROUTE_REDIRECT:
    return 307;
  case CMD_ROUTE_MISDIRECTED:
    return 421;
  default:
    return 0;
  }
}

int cmd_instances_intake_group(const cmd_instances_t *ins, const char *base,
                               char *out, size_t cap) {
  return with_assignment(ins, base, 'i', out, cap);
}

cmd_intake_verdict_t cmd_instances_intake(const cmd_instances_t *ins,
                                          const char *store, size_t len,
                                          int32_t stock_partitions) {
  if (ins->count <= 1)
    return CMD_INTAKE_ANSWER;
  unsigned owner = 0;
  if (store && len > 0) {
    if (stock_partitions <= 0)
      return CMD_INTAKE_WAIT;
    owner = cmd_instances_owner_of_partition(
        sf_kafka_partition_for_key(store, len, stock_partitions), ins->count);
  }
  return owner == ins->index ? CMD_INTAKE_ANSWER : CMD_INTAKE_SKIP;
}
