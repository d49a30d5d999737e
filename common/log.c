/* Logging to stderr (or a sink set by the process, e.g. a worker's fd 3). */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mem.h"

enum { LOG_LINE_MAX = 2048 };

static const char level_chars[] = {'E', 'W', 'I', 'D'};

/* Process-wide logging configuration: set once in main() before any thread
 * starts, read-only afterwards. */
static struct {
	const char *ident;
	enum log_level level;
	log_sink_fn *sink;
	void *sink_arg;
} log_cfg = {.ident = NULL, .level = LOG_INFO};

void log_init(const char *ident, enum log_level level)
{
	log_cfg.ident = ident;
	log_cfg.level = level;
}

void log_set_level(enum log_level level)
{
	log_cfg.level = level;
}

enum log_level log_get_level(void)
{
	return log_cfg.level;
}

void log_set_sink(log_sink_fn *fn, void *arg)
{
	log_cfg.sink = fn;
	log_cfg.sink_arg = arg;
}

static const char *const level_names[] = {"err", "warn", "info", "debug"};

const char *log_level_name(enum log_level level)
{
	return (unsigned)level < sizeof(level_names) / sizeof(level_names[0]) ? level_names[level]
									      : "info";
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_emit(enum log_level level, const char *func, int err, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	int saved_errno = errno;
	size_t off = 0;
	va_list ap;
	int n;

	if (level > log_cfg.level)
		return;
	n = snprintf(line, sizeof(line), "%c %s%s%s: ", level_chars[level],
		     log_cfg.ident ? log_cfg.ident : "", log_cfg.ident ? " " : "", func);
	if (n > 0)
		off = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	va_start(ap, fmt);
	n = vsnprintf(line + off, sizeof(line) - off, fmt, ap);
	va_end(ap);
	if (n > 0)
		off += (size_t)n < sizeof(line) - off ? (size_t)n : sizeof(line) - off - 1;
	if (err < 0 && off < sizeof(line) - 1) {
		n = snprintf(line + off, sizeof(line) - off, ": %s", strerror(-err));
		if (n > 0)
			off += (size_t)n < sizeof(line) - off ? (size_t)n : sizeof(line) - off - 1;
	}
	if (log_cfg.sink) {
		log_cfg.sink(log_cfg.sink_arg, level, line);
	} else {
		/* One write per line so concurrent writers do not interleave. */
		if (off >= sizeof(line) - 1)
			off = sizeof(line) - 2;
		line[off++] = '\n';
		(void)write_all(STDERR_FILENO, line, off);
	}
	errno = saved_errno;
}

char *log_escape(char *dst, size_t n, const char *src, size_t srclen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (n == 0)
		return dst;
	for (size_t i = 0; i < srclen; i++) {
		unsigned char c = (unsigned char)src[i];
		size_t need = (c >= 0x20 && c < 0x7f && c != '\\') ? 1 : 4;

		if (o + need > n - 1) {
			/* Does not fit: end with "..." (when there is room for it). */
			if (n >= 4)
				memcpy(dst + (o < n - 4 ? o : n - 4), "...", 4);
			else
				dst[0] = '\0';
			return dst;
		}
		if (need == 1) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		}
	}
	dst[o] = '\0';
	return dst;
}

uint64_t log_ratelimit_hit(struct log_ratelimit *rl, uint64_t now_ms, uint64_t interval_ms)
{
	uint64_t n;

	if (rl->armed && now_ms < rl->next_ms) {
		rl->missed++;
		return 0;
	}
	n = rl->missed + 1;
	rl->missed = 0;
	rl->next_ms = now_ms + interval_ms;
	rl->armed = true;
	return n;
}
