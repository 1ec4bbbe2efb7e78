/* ctl_token: the token file (see ctl_token.h). */
#include "ctl_token.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sf/err.h"

#define TOKEN_FILE_MAX 8192

int ctl_token_default_path(ctl_getenv_fn env, char *buf, size_t cap) {
  const char *xdg = env ? env("XDG_CONFIG_HOME") : NULL;
  const char *home = env ? env("HOME") : NULL;
  int n;
  if (xdg && *xdg == '/')
    n = snprintf(buf, cap, "%s/stockflow/token", xdg);
  else if (home && *home)
    n = snprintf(buf, cap, "%s/.config/stockflow/token", home);
  else
    return SF_ENOTFOUND;
  return n < 0 || (size_t)n >= cap ? SF_ETOOBIG : 0;
}

/* mkdir -p of path's folder, new folders 0700. */
static int make_parents(const char *path, char *err, size_t cap) {
  char dir[4096];
  if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) {
    snprintf(err, cap, "path too long: %s", path);
    return SF_EIO;
  }
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir)
    return 0;
  *slash = '\0';
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char keep = *p;
    *p = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
      snprintf(err, cap, "cannot create %s: %s", dir, strerror(errno));
      return SF_EIO;
    }
    *p = keep;
    if (!keep)
      break;
  }
  return 0;
}

int ctl_token_save(const char *path, const char *token, const char *username,
                   const char *command_url, const char *expires_at, char *err,
                   size_t cap) {
  int rc = make_parents(path, err, cap);
  if (rc)
    return rc;
  json_t *o = json_pack("{s:s, s:s?, s:s?, s:s?}", "token", token, "username",
                        username, "command_url", command_url, "expires_at",
                        expires_at);
  char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!text) {
    snprintf(err, cap, "out of memory");
    return SF_EIO;
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  rc = SF_EIO;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, cap, "cannot create %s: %s", tmp, strerror(errno));
    goto done;
  }
  size_t len = strlen(text), off = 0;
  while (off < len) {
    ssize_t w = write(fd, text + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      snprintf(err, cap, "cannot write %s: %s", tmp, strerror(errno));
      break;
    }
    off += (size_t)w;
  }
  bool ok = off == len && write(fd, "\n", 1) == 1;
  if (ok && fsync(fd) != 0) {
    snprintf(err, cap, "cannot sync %s: %s", tmp, strerror(errno));
    ok = false;
  }
  if (close(fd) != 0 && ok) {
    snprintf(err, cap, "cannot close %s: %s", tmp, strerror(errno));
    ok = false;
  }
  if (ok && rename(tmp, path) != 0) {
    snprintf(err, cap, "cannot rename %s to %s: %s", tmp, path,
             strerror(errno));
    ok = false;
  }
  if (!ok)
    unlink(tmp);
  else
    rc = 0;
done:
  free(text);
  return rc;
}

int ctl_token_load(const char *path, char *buf, size_t buf_cap, char *err,
                   size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    int e = errno;
    snprintf(err, cap, "cannot open %s: %s", path, strerror(e));
    return e == ENOENT ? SF_ENOTFOUND : e == ELOOP ? SF_ESTATE
                                                   : SF_EIO;
  }
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) != 0) {
    snprintf(err, cap, "cannot stat %s: %s", path, strerror(errno));
    rc = SF_EIO;
  } else if (!S_ISREG(st.st_mode)) {
    snprintf(err, cap, "%s is not a regular file", path);
    rc = SF_ESTATE;
  } else if (st.st_uid != geteuid()) {
    snprintf(err, cap, "%s belongs to another user (uid %ld)", path,
             (long)st.st_uid);
    rc = SF_ESTATE;
  } else if (st.st_mode & 077) {
    snprintf(err, cap, "%s may be read or written by others (mode %03o); "
                       "chmod 600 it or log in again",
             path,
             (unsigned)(st.st_mode & 0777));
    rc = SF_ESTATE;
  }
  char text[TOKEN_FILE_MAX + 1];
  ssize_t n = 0;
  if (!rc) {
    n = read(fd, text, TOKEN_FILE_MAX);
    if (n < 0) {
      snprintf(err, cap, "cannot read %s: %s", path, strerror(errno));
      rc = SF_EIO;
    }
  }
  close(fd);
  if (rc)
    return rc;
  json_t *o = json_loadb(text, (size_t)n, 0, NULL);
  const char *tok = json_string_value(json_object_get(o, "token"));
  if (!tok || !*tok || strlen(tok) >= buf_cap) {
    snprintf(err, cap, "%s is not a stockflowctl token file", path);
    rc = SF_EPARSE;
  } else {
    snprintf(buf, buf_cap, "%s", tok);
  }
  json_decref(o);
  return rc;
}

int ctl_token_remove(const char *path, char *err, size_t cap) {
  if (unlink(path) != 0 && errno != ENOENT) {
    snprintf(err, cap, "cannot delete %s: %s", path, strerror(errno));
    return SF_EIO;
  }
  return 0;
}
