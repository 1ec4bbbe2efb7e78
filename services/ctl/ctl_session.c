/* ctl_session: login, logout and the token (see ctl_session.h). */
#include "ctl_session.h"

#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "ctl_token.h"
#include "sf/err.h"

#define PASSWORD_MAX 1024
#define TOKEN_MAX 512

static int token_path(const ctl_args_t *a, ctl_getenv_fn env, char *buf,
                      size_t cap, FILE *err) {
  if (a->token_file) {
    snprintf(buf, cap, "%s", a->token_file);
    return CTL_EXIT_OK;
  }
  if (ctl_token_default_path(env, buf, cap) == 0)
    return CTL_EXIT_OK;
  fputs("stockflowctl: no token file: set --token-file, STOCKFLOW_TOKEN_FILE, "
        "XDG_CONFIG_HOME or HOME\n",
        err);
  return CTL_EXIT_USAGE;
}

int ctl_session_token(const ctl_args_t *a, ctl_getenv_fn env, char *buf,
                      size_t cap, const char **token, FILE *err) {
  *token = NULL;
  const char *t = env ? env("STOCKFLOW_TOKEN") : NULL;
  if (t && *t) {
    snprintf(buf, cap, "%s", t);
    *token = buf;
    return CTL_EXIT_OK;
  }
  char path[4096], why[512];
  if (token_path(a, env, path, sizeof path, err))
    return CTL_EXIT_OK; /* no path: go without a token */
  int rc = ctl_token_load(path, buf, cap, why, sizeof why);
  if (rc == SF_ENOTFOUND)
    return CTL_EXIT_OK;
  if (rc) {
    fprintf(err, "stockflowctl: %s\n", why);
    return CTL_EXIT_FAIL;
  }
  *token = buf;
  return CTL_EXIT_OK;
}

/* Reads the password: from the terminal without echo, or the first line of
 * a stdin that is not a terminal. Returns its length or -1. */
static int read_password(const char *user, char *buf, size_t cap, FILE *err) {
  FILE *in = stdin;
  FILE *tty = NULL;
  struct termios old, quiet;
  bool echo_off = false;
  if (isatty(STDIN_FILENO)) {
    tty = fopen("/dev/tty", "r+");
    if (tty) {
      in = tty;
      fprintf(tty, "password for %s: ", user);
      fflush(tty);
      if (tcgetattr(fileno(tty), &old) == 0) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        echo_off = tcsetattr(fileno(tty), TCSAFLUSH, &quiet) == 0;
      }
    }
  }
  bool got = fgets(buf, (int)cap, in) != NULL;
  if (echo_off) {
    tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', tty);
  }
  if (tty)
    fclose(tty);
  if (!got) {
    fputs("stockflowctl: login: no password given (type it, or pipe it as "
          "the first line of stdin)\n",
          err);
    return -1;
  }
  size_t n = strlen(buf);
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    buf[--n] = '\0';
  return (int)n;
}

int ctl_session_login(const ctl_args_t *a, ctl_getenv_fn env, ctl_http_t *h,
                      FILE *out, FILE *err) {
  char path[4096];
  int rc = token_path(a, env, path, sizeof path, err);
  if (rc)
    return rc;
  char password[PASSWORD_MAX + 2];
  if (read_password(a->username, password, sizeof password, err) < 0)
    return CTL_EXIT_USAGE;
  json_t *req = json_pack("{s:s, s:s}", "username", a->username, "password",
                          password);
  char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
  json_decref(req);
  sodium_memzero(password, sizeof password);
  if (!body) {
    fputs("stockflowctl: login: out of memory (or the password is not "
          "UTF-8)\n",
          err);
    return CTL_EXIT_FAIL;
  }
  ctl_resp_t resp;
  rc = ctl_http_request(h, "POST", a->command_url, "/v1/sessions", NULL, NULL,
                        body, &resp);
  sodium_memzero(body, strlen(body));
  free(body);
  if (rc || resp.status != 201) {
    rc = ctl_http_report(&resp, "login", err);
    ctl_resp_free(&resp);
    return rc;
  }
  json_t *ans = json_loadb(resp.body, resp.len, 0, NULL);
  json_t *user = json_object_get(ans, "user");
  const char *token = json_string_value(json_object_get(ans, "token"));
  const char *name = json_string_value(json_object_get(user, "username"));
  const char *role = json_string_value(json_object_get(user, "role"));
  const char *expires = json_string_value(json_object_get(ans, "expires_at"));
  char why[512];
  if (!token) {
    fputs("stockflowctl: login: the answer has no token\n", err);
    rc = CTL_EXIT_FAIL;
  } else if (ctl_token_save(path, token, name, a->command_url, expires, why,
                            sizeof why)) {
    fprintf(err, "stockflowctl: login: %s\n", why);
    rc = CTL_EXIT_FAIL;
  } else if (a->json) {
    json_t *o = json_pack("{s:O?, s:s?, s:s}", "user", user, "expires_at",
                          expires, "token_file", path);
    if (o)
      json_dumpf(o, out, JSON_COMPACT);
    fputc('\n', out);
    json_decref(o);
  } else {
    fprintf(out, "logged in as %s (%s) until %s; token in %s\n",
            name ? name : a->username, role ? role : "?",
            expires ? expires : "?", path);
  }
  json_decref(ans);
  ctl_resp_free(&resp);
  return rc;
}

int ctl_session_logout(const ctl_args_t *a, ctl_getenv_fn env, ctl_http_t *h,
                       FILE *out, FILE *err) {
  char path[4096], buf[TOKEN_MAX], why[512];
  const char *token = NULL;
  int rc = ctl_session_token(a, env, buf, sizeof buf, &token, err);
  if (rc)
    return rc;
  bool from_env = env && env("STOCKFLOW_TOKEN") && *env("STOCKFLOW_TOKEN");
  bool have_path = token_path(a, env, path, sizeof path, err) == 0;
  if (!token) {
    fputs("not logged in\n", out);
    return CTL_EXIT_OK;
  }
  ctl_resp_t resp;
  rc = ctl_http_request(h, "DELETE", a->command_url, "/v1/sessions/current",
                        token, NULL, NULL, &resp);
  sodium_memzero(buf, sizeof buf);
  if (rc || (resp.status != 204 && resp.status != 401)) {
    rc = ctl_http_report(&resp, "logout", err);
    ctl_resp_free(&resp);
    return rc; /* the token stays, to be revoked later */
  }
  bool was_valid = resp.status == 204;
  ctl_resp_free(&resp);
  if (!from_env && have_path && ctl_token_remove(path, why, sizeof why)) {
    fprintf(err, "stockflowctl: logout: %s\n", why);
    return CTL_EXIT_FAIL;
  }
  fputs(was_valid ? "logged out\n"
                  : "logged out (the token was already expired or revoked)\n",
        out);
  return CTL_EXIT_OK;
}
