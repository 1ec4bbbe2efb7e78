/* ctl_rebuild: the projector's rebuild as a child, with a progress bar
 * (see ctl_rebuild.h). */
#include "ctl_rebuild.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_signal.h"
#include "sf/progress.h"

extern char **environ;

#define BAR_WIDTH 30
#define LINE_MAX_BYTES 65536
#define POLL_MS 200

int ctl_rebuild_parse(const char *line, ctl_rebuild_report_t *r) {
  memset(r, 0, sizeof *r);
  r->eta_s = -1.0;
  json_t *o = json_loads(line, 0, NULL);
  const char *phase = json_string_value(json_object_get(o, "phase"));
  if (!phase) {
    json_decref(o);
    return -1;
  }
  snprintf(r->phase, sizeof r->phase, "%s", phase);
  json_int_t v;
  double d;
#define GET_U(field)                                  \
  v = json_integer_value(json_object_get(o, #field)); \
  r->field = v > 0 ? (uint64_t)v : 0
#define GET_D(field, key)                         \
  d = json_number_value(json_object_get(o, key)); \
  r->field = d
  GET_U(done);
  GET_U(total);
  GET_U(messages);
  GET_U(applied);
  GET_U(poison);
  GET_U(batches);
  GET_D(rate, "rate");
  GET_D(elapsed_s, "elapsed_s");
  GET_D(replay_s, "replay_s");
  GET_D(switch_s, "switch_s");
#undef GET_U
#undef GET_D
  json_t *eta = json_object_get(o, "eta_s");
  if (json_is_number(eta))
    r->eta_s = json_number_value(eta);
  snprintf(r->error, sizeof r->error, "%s",
           json_string_value(json_object_get(o, "error"))
               ? json_string_value(json_object_get(o, "error"))
               : "");
  snprintf(r->message, sizeof r->message, "%s",
           json_string_value(json_object_get(o, "message"))
               ? json_string_value(json_object_get(o, "message"))
               : "");
  if (r->total < r->done)
    r->total = r->done;
  json_decref(o);
  return 0;
}

static const char *phase_words(const char *phase) {
  if (strcmp(phase, "lock") == 0)
    return "taking the rebuild lock";
  if (strcmp(phase, "create") == 0)
    return "creating the new tables";
  if (strcmp(phase, "indexes") == 0)
    return "building indexes, foreign keys and statistics";
  if (strcmp(phase, "switch") == 0)
    return "switching the rebuilt tables in";
  return NULL;
}

int ctl_rebuild_render(const ctl_rebuild_report_t *r, int bar_width,
                       char *buf, size_t cap) {
  const char *words = phase_words(r->phase);
  if (words || (r->total == 0 && r->done == 0))
    return snprintf(buf, cap, "%-9s %s", r->phase, words ? words : "");
  if (bar_width < 1)
    bar_width = 1;
  if (bar_width > 200)
    bar_width = 200;
  double f = r->total ? (double)r->done / (double)r->total : 1.0;
  int full = (int)floor(f * bar_width);
  if (full > bar_width)
    full = bar_width;
  if (full == bar_width && r->done < r->total)
    full = bar_width - 1; /* a full bar only when done */
  char bar[202];
  for (int i = 0; i < bar_width; i++)
    bar[i] = i < full ? '#' : '-';
  bar[bar_width] = '\0';
  char eta[24] = "";
  if (r->done < r->total) {
    memcpy(eta, "  ETA ", 7);
    sf_progress_duration(r->eta_s, eta + 6, sizeof eta - 6);
  }
  double pct = r->done >= r->total ? 100.0 : floor(f * 1000.0) / 10.0;
  return snprintf(buf, cap,
                  "%-9s [%s]  %" PRIu64 "/%" PRIu64 " offsets  %.1f %%  "
                  "%.0f/s%s",
                  r->phase, bar, r->done, r->total, pct, r->rate, eta);
}

int ctl_rebuild_exit_code(int exit_status, const char *error) {
  if (exit_status == 0)
    return CTL_EXIT_OK;
  if (error && *error) {
    if (strcmp(error, "SF_ECANCELED") == 0)
      return CTL_EXIT_INTERRUPTED;
    if (strcmp(error, "SF_ESTATE") == 0) /* another rebuild holds the lock */
      return CTL_EXIT_REFUSED;
    if (strcmp(error, "SF_EKAFKA") == 0 || strcmp(error, "SF_EPG") == 0 ||
        strcmp(error, "SF_ETIMEOUT") == 0 ||
        strcmp(error, "SF_EUNAVAILABLE") == 0)
      return CTL_EXIT_UNAVAILABLE;
  }
  return CTL_EXIT_FAIL;
}

/* ---- the child ---- */

/* The projector to run: --projector-bin, else next to this program, else
 * ../projector/ (the build tree), else "stockflow-projector" on PATH. */
static void find_projector(const ctl_args_t *a, char *buf, size_t cap,
                           bool *use_path) {
  *use_path = false;
  if (a->projector_bin) {
    snprintf(buf, cap, "%s", a->projector_bin);
    return;
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) {
      *slash = '\0';
      const char *rel[] = {"/stockflow-projector",
                           "/../projector/stockflow-projector"};
      for (size_t i = 0; i < 2; i++) {
        snprintf(buf, cap, "%s%s", self, rel[i]);
        if (access(buf, X_OK) == 0)
          return;
      }
    }
  }
  snprintf(buf, cap, "stockflow-projector");
  *use_path = true;
}

typedef struct linebuf {
  int fd;
  char buf[LINE_MAX_BYTES];
  size_t len;
} linebuf_t;

typedef struct ui {
  const ctl_args_t *a;
  FILE *out, *err;
  bool tty;       /* err is a terminal: redraw in place */
  bool drawn;     /* a bar line is on the terminal */
  char last[256]; /* the last line shown (non-terminal: no repeats) */
  ctl_rebuild_report_t final;
  bool have_final;
  bool saw_progress;
} ui_t;

static void clear_bar(ui_t *u) {
  if (u->tty && u->drawn) {
    fputs("\r\033[K", u->err);
    u->drawn = false;
  }
}

static void show_report(ui_t *u, const ctl_rebuild_report_t *r) {
  if (strcmp(r->phase, "done") == 0 || strcmp(r->phase, "failed") == 0) {
    u->final = *r;
    u->have_final = true;
    return;
  }
  u->saw_progress = true;
  char line[256];
  ctl_rebuild_render(r, BAR_WIDTH, line, sizeof line);
  if (u->tty) {
    fprintf(u->err, "\r\033[Krebuild: %s", line);
    u->drawn = true;
  } else if (strcmp(line, u->last) != 0) {
    fprintf(u->err, "rebuild: %s\n", line);
  }
  snprintf(u->last, sizeof u->last, "%s", line);
  fflush(u->err);
}

/* A line of the projector's log: warnings and errors always, the rest with
 * --verbose; a line that is not JSON (a crash report) always. */
static void show_log(ui_t *u, const char *line) {
  json_t *o = json_loads(line, 0, NULL);
  const char *level = json_string_value(json_object_get(o, "level"));
  const char *msg = json_string_value(json_object_get(o, "msg"));
  bool loud = !level || strcmp(level, "warn") == 0 ||
              strcmp(level, "error") == 0;
  if (loud || u->a->verbose) {
    clear_bar(u);
    if (level && msg)
      fprintf(u->err, "projector: %s: %s\n", level, msg);
    else
      fprintf(u->err, "projector: %s\n", line);
    if (u->tty && u->last[0]) { /* the bar again, under the message */
      fprintf(u->err, "rebuild: %s", u->last);
      u->drawn = true;
    }
    fflush(u->err);
  }
  json_decref(o);
}

/* Reads what fd has; calls back per complete line. Returns false at EOF or
 * on an error (the fd is closed then). */
static bool pump(ui_t *u, linebuf_t *lb, bool is_stdout) {
  ssize_t n = read(lb->fd, lb->buf + lb->len, sizeof lb->buf - 1 - lb->len);
  if (n < 0 && (errno == EINTR || errno == EAGAIN))
    return true;
  if (n <= 0) {
    if (lb->len) { /* a last line without its newline */
      lb->buf[lb->len] = '\0';
      if (!is_stdout)
        show_log(u, lb->buf);
    }
    close(lb->fd);
    lb->fd = -1;
    return false;
  }
  lb->len += (size_t)n;
  size_t start = 0;
  for (size_t i = 0; i < lb->len; i++) {
    if (lb->buf[i] != '\n')
      continue;
    lb->buf[i] = '\0';
    const char *line = lb->buf + start;
    ctl_rebuild_report_t r;
    if (is_stdout && ctl_rebuild_parse(line, &r) == 0)
      show_report(u, &r);
    else if (*line)
      show_log(u, line);
    start = i + 1;
  }
  if (start == 0 && lb->len == sizeof lb->buf - 1) {
    lb->buf[lb->len] = '\0'; /* a line too long: shown cut */
    show_log(u, lb->buf);
    lb->len = 0;
  } else {
    memmove(lb->buf, lb->buf + start, lb->len - start);
    lb->len -= start;
  }
  return true;
}

static int spawn(const char *bin, bool use_path, int out_fd, int err_fd,
                 pid_t *pid) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t none, dflt;
  sigemptyset(&none);
  sigemptyset(&dflt);
  sigaddset(&dflt, SIGINT);
  sigaddset(&dflt, SIGTERM);
  sigaddset(&dflt, SIGPIPE);
  if (posix_spawn_file_actions_init(&fa) != 0)
    return ENOMEM;
  if (posix_spawnattr_init(&at) != 0) {
    posix_spawn_file_actions_destroy(&fa);
    return ENOMEM;
  }
  int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  rc = rc ? rc : posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  rc = rc ? rc : posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  rc = rc ? rc : posix_spawnattr_setsigmask(&at, &none);
  rc = rc ? rc : posix_spawnattr_setsigdefault(&at, &dflt);
  rc = rc ? rc
          : posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETSIGDEF);
  char *argv[] = {(char *)bin, "--rebuild", "--rebuild-progress-json=true",
                  NULL};
  if (!rc)
    rc = use_path ? posix_spawnp(pid, bin, &fa, &at, argv, environ)
                  : posix_spawn(pid, bin, &fa, &at, argv, environ);
  posix_spawnattr_destroy(&at);
  posix_spawn_file_actions_destroy(&fa);
  return rc;
}

int ctl_rebuild_run(const ctl_args_t *a, FILE *out, FILE *err) {
  if (ctl_signal_block() != 0) {
    fputs("stockflowctl: rebuild: cannot block SIGINT\n", err);
    return CTL_EXIT_FAIL;
  }
  char bin[4200];
  bool use_path;
  find_projector(a, bin, sizeof bin, &use_path);
  int po[2] = {-1, -1}, pe[2] = {-1, -1};
  if (pipe(po) != 0 || pipe(pe) != 0) {
    fprintf(err, "stockflowctl: rebuild: pipe: %s\n", strerror(errno));
    for (int i = 0; i < 2; i++) {
      if (po[i] >= 0)
        close(po[i]);
      if (pe[i] >= 0)
        close(pe[i]);
    }
    return CTL_EXIT_FAIL;
  }
  for (int i = 0; i < 2; i++) {
    fcntl(po[i], F_SETFD, FD_CLOEXEC);
    fcntl(pe[i], F_SETFD, FD_CLOEXEC);
  }
  pid_t pid;
  int src = spawn(bin, use_path, po[1], pe[1], &pid);
  close(po[1]);
  close(pe[1]);
  if (src) {
    fprintf(err, "stockflowctl: rebuild: cannot run %s: %s (set "
                 "--projector-bin or STOCKFLOW_PROJECTOR_BIN)\n",
            bin, strerror(src));
    close(po[0]);
    close(pe[0]);
    return CTL_EXIT_FAIL;
  }
  ui_t u = {.a = a, .out = out, .err = err, .tty = isatty(fileno(err)) == 1};
  linebuf_t *lbs = calloc(2, sizeof *lbs); /* 128 KiB: not on the stack */
  if (!lbs) {
    fputs("stockflowctl: rebuild: out of memory\n", err);
    close(po[0]);
    close(pe[0]);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    return CTL_EXIT_FAIL;
  }
  linebuf_t *lo = &lbs[0], *le = &lbs[1];
  lo->fd = po[0];
  lo->len = 0;
  le->fd = pe[0];
  le->len = 0;
  bool interrupted = false;
  while (lo->fd >= 0 || le->fd >= 0) {
    struct pollfd fds[2];
    nfds_t nf = 0;
    linebuf_t *which[2];
    if (lo->fd >= 0)
      fds[nf] = (struct pollfd){lo->fd, POLLIN, 0}, which[nf++] = lo;
    if (le->fd >= 0)
      fds[nf] = (struct pollfd){le->fd, POLLIN, 0}, which[nf++] = le;
    int pr = poll(fds, nf, POLL_MS);
    if (pr < 0 && errno != EINTR) {
      fprintf(err, "stockflowctl: rebuild: poll: %s\n", strerror(errno));
      break;
    }
    for (nfds_t i = 0; pr > 0 && i < nf; i++)
      if (fds[i].revents)
        pump(&u, which[i], which[i] == lo);
    if (ctl_signal_wait(0)) {
      if (!interrupted) {
        clear_bar(&u);
        fputs("stockflowctl: rebuild: stopping (the read model stays as it "
              "was unless the switch has begun)\n",
              err);
      }
      interrupted = true;
      kill(pid, SIGTERM);
    }
  }
  for (int i = 0; i < 2; i++)
    if (lbs[i].fd >= 0)
      close(lbs[i].fd);
  free(lbs);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  clear_bar(&u);
  if (u.tty && u.saw_progress)
    fprintf(err, "rebuild: %s\n", u.last);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const char *error = u.have_final && strcmp(u.final.phase, "failed") == 0
                          ? u.final.error
                          : NULL;
  int rc = ctl_rebuild_exit_code(code, error);
  if (rc == CTL_EXIT_OK && u.have_final) {
    fprintf(out,
            "rebuild done: %" PRIu64 " messages (%" PRIu64 " applied, %" PRIu64
            " skipped as poison) in %" PRIu64 " batches; replay %.1f s, "
            "switch %.3f s\n",
            u.final.messages, u.final.applied, u.final.poison,
            u.final.batches, u.final.replay_s, u.final.switch_s);
  } else if (rc == CTL_EXIT_OK) {
    fputs("rebuild done\n", out);
  } else if (error) {
    fprintf(err, "stockflowctl: rebuild failed: %s (%s)%s\n", u.final.message,
            error,
            rc == CTL_EXIT_REFUSED ? ": another rebuild is running" : "");
  } else if (WIFSIGNALED(status)) {
    fprintf(err, "stockflowctl: rebuild: %s was killed by signal %d\n", bin,
            WTERMSIG(status));
  } else {
    fprintf(err, "stockflowctl: rebuild: %s exited %d\n", bin, code);
  }
  if (interrupted && rc != CTL_EXIT_OK)
    rc = CTL_EXIT_INTERRUPTED;
  return rc;
}
