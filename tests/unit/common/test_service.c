/* Tests for common/src/service.c with a fake app on a real libuv loop: a
 * SIGTERM stops the app and the run ends 0; an app that ends on its own
 * (closes its handles) ends the run with its wait status; a failed create
 * or start ends it 1 with the right calls made (stop after a failed start,
 * destroy only for a created app); a bad log level is 2 before anything. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sf/err.h"
#include "sf/service.h"

typedef enum mode { M_SIGNAL,
                    M_OWN_END,
                    M_CREATE_FAILS,
                    M_START_FAILS } fake_mode_t;

typedef struct fake {
  fake_mode_t mode;
  uv_timer_t keep; /* the app's own handle, keeps the loop alive */
  uv_timer_t act;  /* fires once after start */
  bool keep_open, act_open;
  int created, started, stopped, waited, destroyed, done_fired;
  void (*done)(void *);
  void *done_ud;
} fake_t;

static void closed_cb(uv_handle_t *h) {
  fake_t *f = h->data;
  if (h == (uv_handle_t *)&f->keep)
    f->keep_open = false;
  else
    f->act_open = false;
  if (!f->keep_open && !f->act_open && f->done) {
    f->done_fired++;
    f->done(f->done_ud);
    f->done = NULL;
  }
}

static void close_all(fake_t *f) {
  if (f->keep_open && !uv_is_closing((uv_handle_t *)&f->keep))
    uv_close((uv_handle_t *)&f->keep, closed_cb);
  if (f->act_open && !uv_is_closing((uv_handle_t *)&f->act))
    uv_close((uv_handle_t *)&f->act, closed_cb);
}

static void keep_cb(uv_timer_t *t) { (void)t; }

static void act_cb(uv_timer_t *t) {
  fake_t *f = t->data;
  if (f->mode == M_SIGNAL)
    assert_int_equal(kill(getpid(), SIGTERM), 0);
  else
    close_all(f); /* ends on its own */
}

static int f_create(const void *cfg, uv_loop_t *loop, sf_log_t *log,
                    void **app) {
  (void)log;
  fake_t *f = (fake_t *)cfg;
  f->created++;
  if (f->mode == M_CREATE_FAILS) {
    *app = NULL;
    return SF_ENOMEM;
  }
  assert_int_equal(uv_timer_init(loop, &f->keep), 0);
  assert_int_equal(uv_timer_init(loop, &f->act), 0);
  f->keep.data = f->act.data = f;
  f->keep_open = f->act_open = true;
  *app = f;
  return 0;
}

static int f_start(void *app) {
  fake_t *f = app;
  f->started++;
  if (f->mode == M_START_FAILS)
    return SF_EINTERNAL;
  assert_int_equal(uv_timer_start(&f->keep, keep_cb, 1000, 1000), 0);
  assert_int_equal(uv_timer_start(&f->act, act_cb, 10, 0), 0);
  return 0;
}

static void f_stop(void *app, void (*done)(void *), void *ud) {
  fake_t *f = app;
  f->stopped++;
  f->done = done;
  f->done_ud = ud;
  close_all(f);
}

static int f_wait(void *app) {
  fake_t *f = app;
  f->waited++;
  return f->mode == M_OWN_END ? 1 : 0;
}

static void f_destroy(void *app) {
  fake_t *f = app;
  assert_false(f->keep_open || f->act_open); /* every handle closed */
  f->destroyed++;
}

static const sf_service_app_t fake_app = {f_create, f_start, f_stop, f_wait,
                                          f_destroy};
static const sf_service_def_t def = {"test-service", "test", &fake_app};

static int run(fake_t *f, const char *level) {
  FILE *err = fopen("/dev/null", "w");
  assert_non_null(err);
  int status = sf_service_run(&def, f, level, err);
  fclose(err);
  return status;
}

static void test_signal_stops(void **state) {
  (void)state;
  fake_t f = {.mode = M_SIGNAL};
  assert_int_equal(run(&f, "error"), 0);
  assert_int_equal(f.started, 1);
  assert_int_equal(f.stopped, 1);
  assert_int_equal(f.done_fired, 1);
  assert_int_equal(f.waited, 1);
  assert_int_equal(f.destroyed, 1);
}

static void test_ends_on_its_own(void **state) {
  (void)state;
  fake_t f = {.mode = M_OWN_END};
  assert_int_equal(run(&f, "error"), 1); /* its wait status */
  assert_int_equal(f.stopped, 0);
  assert_int_equal(f.waited, 1);
  assert_int_equal(f.destroyed, 1);
}

static void test_create_fails(void **state) {
  (void)state;
  fake_t f = {.mode = M_CREATE_FAILS};
  assert_int_equal(run(&f, "error"), 1);
  assert_int_equal(f.created, 1);
  assert_int_equal(f.started + f.stopped + f.waited + f.destroyed, 0);
}

static void test_start_fails(void **state) {
  (void)state;
  fake_t f = {.mode = M_START_FAILS};
  assert_int_equal(run(&f, "error"), 1);
  assert_int_equal(f.stopped, 1);
  assert_int_equal(f.done_fired, 1);
  assert_int_equal(f.waited, 0);
  assert_int_equal(f.destroyed, 1);
}

static void test_bad_log_level(void **state) {
  (void)state;
  fake_t f = {.mode = M_SIGNAL};
  assert_int_equal(run(&f, "loud"), 2);
  assert_int_equal(f.created, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_signal_stops),
      cmocka_unit_test(test_ends_on_its_own),
      cmocka_unit_test(test_create_fails),
      cmocka_unit_test(test_start_fails),
      cmocka_unit_test(test_bad_log_level),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
