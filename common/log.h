/* Logging: one line per event, levels ERR..DEBUG, the calling function's name
 * recorded. Never pass a key, token, auth key or raw protobuf to these. */
#ifndef TSCNI_COMMON_LOG_H
#define TSCNI_COMMON_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* A sink receives one formatted line (no trailing newline). The default
 * writes "<L> <func>: <msg>\n" to stderr in one write(2). */
typedef void log_sink_fn(void *arg, enum log_level level, const char *line);

void log_init(const char *ident, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_sink(log_sink_fn *fn, void *arg);
/* "err", "warn", "info" or "debug": what log_level_parse reads. */
const char *log_level_name(enum log_level level);
/* Parses "err", "warn", "info", "debug"; returns -EINVAL on anything else. */
int log_level_parse(const char *s, enum log_level *out);

void log_emit(enum log_level level, const char *func, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define log_err(...)   log_emit(LOG_ERR, __func__, 0, __VA_ARGS__)
#define log_warn(...)  log_emit(LOG_WARN, __func__, 0, __VA_ARGS__)
#define log_info(...)  log_emit(LOG_INFO, __func__, 0, __VA_ARGS__)
#define log_debug(...) log_emit(LOG_DEBUG, __func__, 0, __VA_ARGS__)
/* The _r forms append ": <strerror(-ret)>"; ret is a negative errno. */
#define log_err_r(r, ...)  log_emit(LOG_ERR, __func__, (r), __VA_ARGS__)
#define log_warn_r(r, ...) log_emit(LOG_WARN, __func__, (r), __VA_ARGS__)
#define log_info_r(r, ...) log_emit(LOG_INFO, __func__, (r), __VA_ARGS__)

/* Copies src into dst (size n > 0) for a log line: printable ASCII kept,
 * everything else as \xNN, always NUL-terminated, truncated with "..." if
 * needed. Returns dst. For strings that came from a worker or a peer. */
char *log_escape(char *dst, size_t n, const char *src, size_t srclen);

/* At most one line per interval for an event a remote peer can cause at
 * will (docs/style.md §5): one of these per kind of event, zeroed at first,
 * owned by the one thread that logs that kind. */
struct log_ratelimit {
	uint64_t next_ms; /* no line before this */
	uint64_t missed;  /* events since the last line that had none */
	bool armed;	  /* a line was written: next_ms holds */
};

/* Counts one event at now_ms (a monotonic clock, milliseconds). Returns 0
 * when no line may be written for it, else how many events happened since
 * the previous line, this one included, for the line to say; the next line
 * is then allowed interval_ms later. */
uint64_t log_ratelimit_hit(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms);

#endif
