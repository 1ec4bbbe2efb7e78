/* ctl_token: where stockflowctl keeps its session token.
 *
 * The token file is a JSON object {"token", "username", "command_url",
 * "expires_at"} of mode 0600 in a folder created 0700, written to a
 * temporary file in the same folder and renamed over the old one (a reader
 * never sees half a file). Reading refuses a file that is not a regular
 * file, that another user owns, or that group or others may read or write:
 * a token is a password. STOCKFLOW_TOKEN, when set, wins over the file.
 *
 * No global state; thread-safe. */
#ifndef CTL_TOKEN_H
#define CTL_TOKEN_H

#include <stddef.h>

#include "ctl_config.h"

/* The default path: $XDG_CONFIG_HOME/stockflow/token, else
 * $HOME/.config/stockflow/token. Returns 0, SF_ENOTFOUND (neither variable
 * is set) or SF_ETOOBIG (cap too small). */
int ctl_token_default_path(ctl_getenv_fn env, char *buf, size_t cap);

/* Writes the file (creating its folder). Returns 0 or SF_EIO with the
 * reason in err (cap > 0). */
int ctl_token_save(const char *path, const char *token, const char *username,
                   const char *command_url, const char *expires_at, char *err,
                   size_t cap);

/* Reads the token into buf. Returns 0, SF_ENOTFOUND (no file), SF_ESTATE
 * (unsafe owner, mode or type), SF_EPARSE (not a token file) or SF_EIO,
 * with the reason in err. */
int ctl_token_load(const char *path, char *buf, size_t buf_cap, char *err,
                   size_t cap);

/* Deletes the file. Returns 0 (also when there was none) or SF_EIO. */
int ctl_token_remove(const char *path, char *err, size_t cap);

#endif
