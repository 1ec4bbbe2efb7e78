/* log: structured logging, one JSON object per line.
 *
 * A logger is created in main() and passed down; common/ never prints on its
 * own. Lines look like
 *   {"ts":"2026-11-26T15:00:00.123Z","level":"info","service":"command",
 *    "module":"http","msg":"listening on 127.0.0.1:8081"}
 * The SF_LOG* macros test the level before evaluating their arguments. Every
 * function accepts a NULL logger (then nothing is written). Writing is
 * thread-safe: each line is formatted into a local buffer and emitted with a
 * single fwrite on a locked FILE. */
#ifndef SF_LOG_H
#define SF_LOG_H

#include <stdbool.h>
#include <stdio.h>

typedef enum sf_log_level {
  SF_LOG_DEBUG = 0,
  SF_LOG_INFO = 1,
  SF_LOG_WARN = 2,
  SF_LOG_ERROR = 3,
  SF_LOG_OFF = 4
} sf_log_level_t;

typedef struct sf_log sf_log_t;

/* Creates a logger writing to sink (borrowed; must outlive the logger).
 * service is copied. Returns 0 or SF_ENOMEM / SF_EINVAL. */
int sf_log_new(sf_log_t **out, const char *service, sf_log_level_t level,
               FILE *sink);
void sf_log_destroy(sf_log_t *log);

/* Parses "debug", "info", "warn", "error", "off". Returns 0 or SF_EINVAL. */
int sf_log_level_parse(const char *text, sf_log_level_t *out);
const char *sf_log_level_name(sf_log_level_t level);

bool sf_log_enabled(const sf_log_t *log, sf_log_level_t level);

/* Writes one line; fmt is printf-style and becomes the "msg" field (JSON
 * escaped). module is a short static tag ("http", "kafka", ...). */
void sf_log_write(sf_log_t *log, sf_log_level_t level, const char *module,
                  const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define SF_LOG(log, level, module, ...)                    \
  do {                                                     \
    if (sf_log_enabled((log), (level)))                    \
      sf_log_write((log), (level), (module), __VA_ARGS__); \
  } while (0)
#define SF_DEBUG(log, module, ...) SF_LOG(log, SF_LOG_DEBUG, module, __VA_ARGS__)
#define SF_INFO(log, module, ...) SF_LOG(log, SF_LOG_INFO, module, __VA_ARGS__)
#define SF_WARN(log, module, ...) SF_LOG(log, SF_LOG_WARN, module, __VA_ARGS__)
#define SF_ERROR(log, module, ...) SF_LOG(log, SF_LOG_ERROR, module, __VA_ARGS__)

#endif
