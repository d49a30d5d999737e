/* tailscale-cni: the CNI plugin binary. Owns the process: SIGPIPE, the
 * watchdog, stdin, stdout and the log sinks; cmd.c decides what to print. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "cmd.h"
#include "conf.h"
#include "error.h"
#include "log.h"
#include "mem.h"

#ifndef TSCNI_VERSION
#define TSCNI_VERSION "0.0.0"
#endif

enum {
	WATCHDOG_SLACK_MS = 1000,
	LOG_FILE_MAX = 16 * 1024 * 1024, /* rotated to <logFile>.1 above this */
};

/* The watchdog's answer, formatted before the timer is armed so that the
 * handler only calls write(2) and _exit(2), both async-signal-safe. */
static char watchdog_text[512];
static volatile size_t watchdog_len;
static volatile sig_atomic_t watchdog_quiet; /* DEL: exit 0 with empty stdout */

static void watchdog_fire(int sig)
{
	(void)sig;
	if (!watchdog_quiet && watchdog_len)
		(void)write_all(STDOUT_FILENO, watchdog_text, watchdog_len);
	_exit(watchdog_quiet ? 0 : 1);
}

static void watchdog_disarm(void)
{
	struct itimerval it = {0};

	setitimer(ITIMER_REAL, &it, NULL);
}

/* Arms (or re-arms) the backstop at ms from now: it prints an error with
 * code (11, or 50 for STATUS) and exits 1, or when quiet (DEL, and STATUS
 * under failurePolicy "ignore") exits 0 with empty stdout. */
static void watchdog_arm(unsigned int ms, const char *version, unsigned int code, bool quiet)
{
	struct itimerval it = {
		.it_value = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000}};
	struct cni_error e;
	size_t len;
	char *text;

	watchdog_disarm();
	error_set(&e, code, "tailscale-cni timed out",
		  "no answer within %u ms; the supervisor may be overloaded", ms);
	text = error_format(&e, version, &len);
	if (len > sizeof(watchdog_text))
		len = 0;
	else
		memcpy(watchdog_text, text, len);
	free(text);
	watchdog_len = len;
	watchdog_quiet = quiet;
	setitimer(ITIMER_REAL, &it, NULL);
}

/* Logging: warnings and errors to stderr (a few lines at most), and every
 * line up to logLevel to the optional log file with a timestamp and the
 * invocation's context. */
struct log_target {
	int fd;
	enum log_level file_level;
	char ctx[192];
};

static void log_sink(void *arg, enum log_level level, const char *line)
{
	struct log_target *t = arg;
	char buf[2600];
	struct timespec ts;
	struct tm tm;
	int n;

	if (level <= LOG_WARN) {
		n = snprintf(buf, sizeof(buf), "%s\n", line);
		if (n > 0)
			(void)write_all(STDERR_FILENO, buf,
					(size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	}
	if (t->fd < 0 || level > t->file_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s\n",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, t->ctx, line);
	if (n > 0)
		(void)write_all(t->fd, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* Opens logFile for appending, rotating it once when it grew too big. A log
 * that cannot be opened never fails the verb. */
static int open_log(const char *path)
{
	int flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW;
	struct stat st;
	int fd = open(path, flags, 0600);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) == 0 && st.st_size > LOG_FILE_MAX) {
		char *old = xasprintf("%s.1", path);

		close(fd);
		(void)rename(path, old);
		free(old);
		fd = open(path, flags, 0600);
	}
	return fd;
}

static void log_setup(struct log_target *t, const struct cmd *c)
{
	const char *cid = c->env.container_id ? c->env.container_id : "-";

	t->file_level = c->conf.log_level;
	snprintf(t->ctx, sizeof(t->ctx), "%s cid=%.12s net=%s netns=%.100s",
		 args_verb_name(c->env.verb), cid, c->conf.name ? c->conf.name : "-",
		 c->env.netns ? c->env.netns : "-");
	if (c->conf.log_file && t->fd < 0)
		t->fd = open_log(c->conf.log_file);
	log_set_level(t->file_level > LOG_WARN && t->fd >= 0 ? t->file_level : LOG_WARN);
}

/* Reads all of stdin up to CONF_MAX_STDIN bytes. Returns 0 with *buf
 * (malloc'd) and *len, -EFBIG above the cap (not drained), or -errno. */
static int read_stdin(char **buf, size_t *len)
{
	size_t cap = 64 * 1024, n = 0;
	char *b = xmalloc(cap);

	*buf = NULL;
	*len = 0;
	for (;;) {
		ssize_t r;

		if (n == cap) {
			if (cap > CONF_MAX_STDIN) {
				free(b);
				return -EFBIG;
			}
			cap = cap * 2 > CONF_MAX_STDIN + 1 ? CONF_MAX_STDIN + 1 : cap * 2;
			b = xrealloc(b, cap);
		}
		r = read(STDIN_FILENO, b + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			free(b);
			return (int)r;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > CONF_MAX_STDIN) {
			free(b);
			return -EFBIG;
		}
	}
	*buf = b;
	*len = n;
	return 0;
}

static int print_version(void)
{
	static const char text[] =
		"{\"cniVersion\":\"1.1.0\",\"supportedVersions\":" CONF_SUPPORTED_VERSIONS_JSON
		"}\n";

	return write_all(STDOUT_FILENO, text, sizeof(text) - 1) < 0 ? 1 : 0;
}

/* Writes the one JSON object stdout ever carries. */
static int emit(const char *text, size_t len)
{
	int ret = write_all(STDOUT_FILENO, text, len);

	if (ret < 0)
		log_err_r(ret, "write the result to stdout");
	return ret;
}

static int fail(const struct cmd *c, const char *version)
{
	size_t len;
	char *text = error_format(&c->err, version, &len);

	watchdog_disarm();
	log_warn("%s failed: code %u: %s%s%s", args_verb_name(c->env.verb), c->err.code, c->err.msg,
		 c->err.details[0] ? ": " : "", c->err.details);
	emit(text, len);
	free(text);
	return 1;
}

int main(void)
{
	struct log_target lt = {.fd = -1, .file_level = LOG_WARN};
	unsigned long long start = now_ms();
	struct cni_env env;
	char *in = NULL;
	size_t in_len = 0;
	struct cmd c;
	int ret, status;

	/* Before anything can write to a closed pipe: a runtime that closed
	 * stdout, or a supervisor that hung up, must not kill us silently. */
	signal(SIGPIPE, SIG_IGN);
	log_init("tailscale-cni", LOG_WARN);
	log_set_sink(log_sink, &lt);
	args_env_load(&env, getenv);

	if (env.verb == CNI_VERB_NONE) {
		fprintf(stderr,
			"tailscale-cni %s; CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, "
			"1.0.0, 1.1.0\n",
			TSCNI_VERSION);
		return 0;
	}
	if (env.verb == CNI_VERB_VERSION)
		return print_version(); /* stdin and every other variable ignored */

	cmd_init(&c, &env, start);
	signal(SIGALRM, watchdog_fire);
	watchdog_arm(CONF_MAX_TIMEOUT_MS + WATCHDOG_SLACK_MS, "1.1.0",
		     env.verb == CNI_VERB_STATUS ? CNI_ERR_NOT_READY : CNI_ERR_TRY_AGAIN,
		     env.verb == CNI_VERB_DEL);

	/* A bad environment is reported before stdin is read: a command the
	 * plugin does not know may come with no stdin at all. */
	if (args_env_validate(&c.env, &c.err) < 0) {
		status = fail(&c, "1.1.0");
		goto out;
	}
	ret = read_stdin(&in, &in_len);
	if (ret < 0) {
		if (ret == -EFBIG)
			error_set(&c.err, CNI_ERR_IO, "network configuration too large",
				  "stdin holds more than %d bytes", CONF_MAX_STDIN);
		else
			error_set(&c.err, CNI_ERR_IO, "cannot read stdin", "%s", strerror(-ret));
		status = fail(&c, "1.1.0");
		goto out;
	}
	if (cmd_prepare(&c, in, in_len) < 0) {
		status = fail(&c, cmd_version(&c));
		goto out;
	}
	log_setup(&lt, &c);
	watchdog_arm(cmd_budget_ms(&c) + WATCHDOG_SLACK_MS, cmd_version(&c),
		     env.verb == CNI_VERB_STATUS ? CNI_ERR_NOT_READY : CNI_ERR_TRY_AGAIN,
		     env.verb == CNI_VERB_DEL || (env.verb == CNI_VERB_STATUS && c.conf.fail_open));

	ret = cmd_exec(&c);
	watchdog_disarm();
	if (ret < 0) {
		status = fail(&c, cmd_version(&c));
		goto out;
	}
	status = 0;
	if (c.out && emit(c.out, c.out_len) < 0) {
		/* The runtime never saw the result: give back what ADD made.
		 * The runtime sends DEL anyway; this is the second line. */
		cmd_rollback(&c);
		status = 1;
	}
	if (env.verb != CNI_VERB_STATUS)
		log_info("ok in %llu ms", now_ms() - start);
out:
	cmd_destroy(&c);
	free(in);
	if (lt.fd >= 0)
		close(lt.fd);
	return status;
}
