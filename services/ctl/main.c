/* stockflowctl: the operators' command line. main only wires: parse the
 * command line (ctl_config), print help or version, set up libcurl and one
 * HTTP client, find the token, run the command's module, tear down in
 * reverse, exit with the command's ctl_exit_t. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>

#include "ctl_config.h"
#include "ctl_http.h"
#include "ctl_rebuild.h"
#include "ctl_session.h"
#include "ctl_stock.h"
#include "ctl_tail.h"

#define REQUEST_TIMEOUT_MS 30000L
#define TOKEN_MAX 512

static const char *env_lookup(const char *name) { return getenv(name); }

int main(int argc, char **argv) {
  ctl_args_t a;
  char why[512];
  if (ctl_args_parse(&a, argc, argv, env_lookup, why, sizeof why)) {
    fprintf(stderr, "stockflowctl: %s\n(stockflowctl %s%s--help for help)\n",
            why, ctl_cmd_name(a.cmd), a.cmd ? " " : "");
    return CTL_EXIT_USAGE;
  }
  if (a.help) {
    ctl_usage(a.cmd, stdout);
    return CTL_EXIT_OK;
  }
  if (a.version) {
    printf("stockflowctl %s (%s)\n", SF_VERSION, curl_version());
    return CTL_EXIT_OK;
  }
  if (a.cmd == CTL_CMD_REBUILD) /* no HTTP: a child process */
    return ctl_rebuild_run(&a, stdout, stderr);

  int rc = CTL_EXIT_FAIL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fputs("stockflowctl: libcurl failed to initialise\n", stderr);
    return CTL_EXIT_FAIL;
  }
  ctl_http_t *h = NULL;
  if (ctl_http_new(&h, REQUEST_TIMEOUT_MS)) {
    fputs("stockflowctl: cannot create the HTTP client\n", stderr);
    goto fail_http;
  }
  char token_buf[TOKEN_MAX];
  const char *token = NULL;
  switch (a.cmd) {
  case CTL_CMD_LOGIN:
    rc = ctl_session_login(&a, env_lookup, h, stdout, stderr);
    break;
  case CTL_CMD_LOGOUT:
    rc = ctl_session_logout(&a, env_lookup, h, stdout, stderr);
    break;
  default:
    rc = ctl_session_token(&a, env_lookup, token_buf, sizeof token_buf,
                           &token, stderr);
    if (rc)
      break;
    if (a.cmd == CTL_CMD_STOCK)
      rc = ctl_stock_show(&a, h, token, stdout, stderr);
    else if (a.cmd == CTL_CMD_MOVE)
      rc = ctl_stock_move(&a, h, token, stdout, stderr);
    else if (a.cmd == CTL_CMD_TAIL)
      rc = ctl_tail_run(&a, h, token, stdout, stderr);
    break;
  }
  if (fflush(stdout) != 0 && rc == CTL_EXIT_OK) {
    perror("stockflowctl: writing the output");
    rc = CTL_EXIT_FAIL;
  }
  ctl_http_destroy(h);
fail_http:
  curl_global_cleanup();
  return rc;
}
