/* ctl_signal: Ctrl-C and SIGTERM for the long commands (tail, rebuild)
 * without a signal handler or any global flag: the two signals are
 * blocked, and the command asks whether one is pending, or waits for one
 * with a timeout (sigtimedwait). Children started later get an empty mask
 * (ctl_rebuild sets it). */
#ifndef CTL_SIGNAL_H
#define CTL_SIGNAL_H

#include <stdbool.h>

/* Blocks SIGINT and SIGTERM in the calling thread; ignores SIGPIPE.
 * Returns 0 or -1. */
int ctl_signal_block(void);

/* True when SIGINT or SIGTERM is pending (not consumed). */
bool ctl_signal_pending(void);

/* Waits up to timeout_ms for SIGINT or SIGTERM and consumes it: returns
 * the signal, or 0 when none came. */
int ctl_signal_wait(int timeout_ms);

#endif
