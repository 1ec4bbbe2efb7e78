/* log: JSON-lines logger. See sf/log.h for the contract. */
#include "sf/log.h"
#include "sf/err.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sf_log {
  FILE *sink;
  sf_log_level_t level;
  char service[32];
};

static const char *const level_names[] = {"debug", "info", "warn", "error",
                                          "off"};

int sf_log_new(sf_log_t **out, const char *service, sf_log_level_t level,
               FILE *sink) {
  if (!out || !service || !sink || level > SF_LOG_OFF)
    return SF_EINVAL;
  sf_log_t *log = calloc(1, sizeof(*log));
  if (!log)
    return SF_ENOMEM;
  log->sink = sink;
  log->level = level;
  snprintf(log->service, sizeof(log->service), "%s", service);
  *out = log;
  return 0;
}

void sf_log_destroy(sf_log_t *log) {
  if (log)
    fflush(log->sink);
  free(log);
}

int sf_log_level_parse(const char *text, sf_log_level_t *out) {
  if (!text || !out)
    return SF_EINVAL;
  for (int i = 0; i <= SF_LOG_OFF; i++) {
    if (strcmp(text, level_names[i]) == 0) {
      *out = (sf_log_level_t)i;
      return 0;
    }
  }
  if (strcmp(text, "warning") == 0) {
    *out = SF_LOG_WARN;
    return 0;
  }
  return SF_EINVAL;
}

const char *sf_log_level_name(sf_log_level_t level) {
  return level <= SF_LOG_OFF ? level_names[level] : "unknown";
}

bool sf_log_enabled(const sf_log_t *log, sf_log_level_t level) {
  return log && level < SF_LOG_OFF && level >= log->level;
}

/* Appends src JSON-escaped to buf at *len (bounded by cap, always
 * NUL-terminated; truncates silently on overflow). */
static void append_escaped(char *buf, size_t cap, size_t *len,
                           const char *src) {
  static const char hex[] = "0123456789abcdef";
  for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
    char tmp[7];
    size_t n = 0;
    switch (*p) {
    case '"':
      tmp[n++] = '\\';
      tmp[n++] = '"';
      break;
    case '\\':
      tmp[n++] = '\\';
      tmp[n++] = '\\';
      break;
    case '\n':
      tmp[n++] = '\\';
      tmp[n++] = 'n';
      break;
    case '\r':
      tmp[n++] = '\\';
      tmp[n++] = 'r';
      break;
    case '\t':
      tmp[n++] = '\\';
      tmp[n++] = 't';
      break;
    default:
      if (*p < 0x20) {
        memcpy(tmp, "\\u00", 4);
        n = 4;
        tmp[n++] = hex[*p >> 4];
        tmp[n++] = hex[*p & 0xf];
      } else {
        tmp[n++] = (char)*p;
      }
    }
    if (*len + n + 1 >= cap)
      return;
    memcpy(buf + *len, tmp, n);
    *len += n;
  }
  buf[*len] = '\0';
}

static void append_raw(char *buf, size_t cap, size_t *len, const char *src) {
  size_t n = strlen(src);
  if (*len + n + 1 >= cap)
    n = cap - *len - 1;
  memcpy(buf + *len, src, n);
  *len += n;
  buf[*len] = '\0';
}

void sf_log_write(sf_log_t *log, sf_log_level_t level, const char *module,
                  const char *fmt, ...) {
  if (!sf_log_enabled(log, level))
    return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);

  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[96];
  snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L);

  char line[4096];
  size_t len = 0;
  line[0] = '\0';
  append_raw(line, sizeof(line) - 2, &len, "{\"ts\":\"");
  append_raw(line, sizeof(line) - 2, &len, when);
  append_raw(line, sizeof(line) - 2, &len, "\",\"level\":\"");
  append_raw(line, sizeof(line) - 2, &len, sf_log_level_name(level));
  append_raw(line, sizeof(line) - 2, &len, "\",\"service\":\"");
  append_escaped(line, sizeof(line) - 2, &len, log->service);
  append_raw(line, sizeof(line) - 2, &len, "\",\"module\":\"");
  append_escaped(line, sizeof(line) - 2, &len, module ? module : "-");
  append_raw(line, sizeof(line) - 2, &len, "\",\"msg\":\"");
  append_escaped(line, sizeof(line) - 4, &len, msg);
  append_raw(line, sizeof(line), &len, "\"}\n");
  fwrite(line, 1, len, log->sink);
  fflush(log->sink);
}
