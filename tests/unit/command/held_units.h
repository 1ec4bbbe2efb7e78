/* held_units: the units a test's pipeline sink holds until the test hands
 * them back, committed at chosen offsets or failed: for the tests that
 * drive cmd_pipeline over a sink of their own (test_pipeline.c,
 * test_bus.c). Header-only (static inline) so that each test executable
 * stays one source file; include it after <cmocka.h>. */
#ifndef SF_TEST_HELD_UNITS_H
#define SF_TEST_HELD_UNITS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cmd_pipeline.h"
#include "sf/err.h"

#define HELD_UNITS_MAX 16

typedef struct held_units {
  cmd_unit_t *units[HELD_UNITS_MAX]; /* submitted, not handed back; oldest first */
  size_t n;
  size_t submitted; /* every unit ever held */
} held_units_t;

/* The sink's submit: holds u (ownership taken until handed back). */
static inline void held_units_add(held_units_t *h, cmd_unit_t *u) {
  assert_true(h->n < HELD_UNITS_MAX);
  h->units[h->n++] = u;
  h->submitted++;
}

/* Hands the oldest held unit back to pl: committed (err 0) with its
 * messages at consecutive offsets of partition 0 from offset, or failed
 * with err. Its command is answered inside this call. */
static inline void held_units_finish(held_units_t *h, cmd_pipeline_t *pl,
                                     int err, int64_t offset) {
  assert_true(h->n > 0);
  cmd_unit_t *u = h->units[0];
  memmove(h->units, h->units + 1, (h->n - 1) * sizeof(h->units[0]));
  h->n--;
  u->err = err;
  for (cmd_msg_t *m = u->msgs; m; m = m->next) {
    m->partition = 0;
    m->offset = offset++;
  }
  cmd_pipeline_unit_done(pl, u);
}

/* Hands every held unit back failed (SF_ECANCELED), oldest first: what a
 * test's teardown does before the pipeline goes. */
static inline void held_units_cancel(held_units_t *h, cmd_pipeline_t *pl) {
  while (h->n)
    held_units_finish(h, pl, SF_ECANCELED, 0);
}

#endif
