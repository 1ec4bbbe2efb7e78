/* ctl_signal: blocked signals, polled (see ctl_signal.h). */
#include "ctl_signal.h"

#include <errno.h>
#include <signal.h>
#include <time.h>

static void stop_set(sigset_t *s) {
  sigemptyset(s);
  sigaddset(s, SIGINT);
  sigaddset(s, SIGTERM);
}

int ctl_signal_block(void) {
  sigset_t s;
  stop_set(&s);
  signal(SIGPIPE, SIG_IGN);
  return sigprocmask(SIG_BLOCK, &s, NULL) == 0 ? 0 : -1;
}

bool ctl_signal_pending(void) {
  sigset_t p;
  if (sigpending(&p) != 0)
    return false;
  return sigismember(&p, SIGINT) == 1 || sigismember(&p, SIGTERM) == 1;
}

int ctl_signal_wait(int timeout_ms) {
  sigset_t s;
  stop_set(&s);
  struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
  for (;;) {
    int sig = sigtimedwait(&s, NULL, &ts);
    if (sig > 0)
      return sig;
    if (errno != EINTR)
      return 0; /* EAGAIN: the time is up */
  }
}
