/* ctl_session: `stockflowctl login` and `logout`, and the token every other
 * command sends (STOCKFLOW_TOKEN, else the token file of ctl_token.h).
 *
 * Not thread-safe (reads the terminal). */
#ifndef CTL_SESSION_H
#define CTL_SESSION_H

#include <stddef.h>
#include <stdio.h>

#include "ctl_config.h"
#include "ctl_http.h"

/* Finds the token into buf: *token points at buf, or is NULL when there is
 * none (the request then goes without and the service says 401). Returns
 * CTL_EXIT_OK, or CTL_EXIT_FAIL after printing why the token file cannot
 * be used (unsafe mode or owner, not a token file). */
int ctl_session_token(const ctl_args_t *a, ctl_getenv_fn env, char *buf,
                      size_t cap, const char **token, FILE *err);

/* The commands; they return a ctl_exit_t. */
int ctl_session_login(const ctl_args_t *a, ctl_getenv_fn env, ctl_http_t *h,
                      FILE *out, FILE *err);
int ctl_session_logout(const ctl_args_t *a, ctl_getenv_fn env, ctl_http_t *h,
                       FILE *out, FILE *err);

#endif
