/* placeholder, replaced by engineer B's module at merge: it answers every
 * Parse write and sign-in with a Parse error (code 100, 501 Not
 * Implemented), remembers no positions, and lets the facade's read side
 * build, run and shut down (qry_parse_write.h). Never to land on main. */
#include "qry_parse_write.h"

#include <stdlib.h>

#include "sf/err.h"

struct qry_parse_writes {
  uv_timer_t timer; /* fires the close's done on the loop */
  void (*done)(void *ud);
  void *done_ud;
};

int qry_parse_writes_new(qry_parse_writes_t **out, uv_loop_t *loop,
                         const char *command_url, sf_log_t *log) {
  (void)command_url;
  (void)log;
  *out = NULL;
  if (!loop)
    return SF_EINVAL;
  qry_parse_writes_t *w = calloc(1, sizeof(*w));
  if (!w)
    return SF_ENOMEM;
  int rc = uv_timer_init(loop, &w->timer);
  if (rc) {
    free(w);
    return SF_EIO;
  }
  *out = w;
  return 0;
}

void qry_parse_writes_handle(qry_parse_writes_t *w, qry_parse_req_t *pr,
                             qry_parse_op_t op, const char *class_name,
                             const char *object_id) {
  (void)w;
  (void)op;
  (void)class_name;
  (void)object_id;
  qry_parse_error(pr->req, 501, QRY_PARSE_CONNECTION_FAILED,
                  "writes are not served by this build");
}

const char *qry_parse_writes_position(qry_parse_writes_t *w,
                                      const char *session_token) {
  (void)w;
  (void)session_token;
  return NULL;
}

static void on_closed(uv_handle_t *h) {
  qry_parse_writes_t *w = h->data;
  void (*done)(void *ud) = w->done;
  void *ud = w->done_ud;
  free(w);
  if (done)
    done(ud);
}

void qry_parse_writes_close(qry_parse_writes_t *w, void (*done)(void *ud),
                            void *ud) {
  w->done = done;
  w->done_ud = ud;
  w->timer.data = w;
  uv_close((uv_handle_t *)&w->timer, on_closed);
}
