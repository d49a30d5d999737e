/* The child side of a spawn, in the order docs/design.md §1 gives: fds,
 * sandbox, Hello/Start, threads, seccomp, control loop. */
#include "worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "mem.h"
#include "sandbox.h"

/* The supervisor bounds each WireGuard timer override by this (common/validate.h). */
_Static_assert(START_WG_TIMER_MAX_MS == REJECT_AFTER_TIME * 1000,
	       "START_WG_TIMER_MAX_MS is WireGuard's REJECT_AFTER_TIME");

/* Closes every fd >= first. close_range(2) since 5.9; before that (ENOSYS)
 * walk /proc/self/fd. */
static int close_from(int first, bool fallback)
{
	DIR *d;
	struct dirent *e;

	if (!fallback) {
		if (syscall(SYS_close_range, (unsigned int)first, ~0U, 0) == 0)
			return 0;
		if (errno != ENOSYS)
			return -errno;
	}
	d = opendir("/proc/self/fd");
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);

		if (*end || end == e->d_name || fd < first || fd == dirfd(d))
			continue;
		close((int)fd);
	}
	closedir(d);
	return 0;
}

/* Moves the nfds received fds onto 3, 4, ... and closes everything else the
 * zygote had open (its own link to the supervisor included). */
static int arrange_fds(const int *fds, size_t nfds, bool fallback)
{
	int tmp[WORKER_FD_MAX];

	/* First out of the way of the target range, then into place: a
	 * received fd may itself sit on 3 or 4. */
	for (size_t i = 0; i < nfds; i++) {
		tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, WORKER_FD_CTL + WORKER_FD_MAX);
		if (tmp[i] < 0)
			return -errno;
	}
	for (size_t i = 0; i < nfds; i++)
		if (dup2(tmp[i], WORKER_FD_CTL + (int)i) < 0)
			return -errno;
	return close_from(WORKER_FD_CTL + (int)nfds, fallback);
}

/* Before the log sink exists: one Log line straight onto fd 3. */
static void early_log(const char *what, const char *why, int err)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Log l = TSCNI__LOG__INIT;
	char line[256];

	snprintf(line, sizeof(line), "worker: %s: %s: %s", what, why, strerror(-err));
	l.level = LOG_ERR;
	l.msg = line;
	m.body_case = TSCNI__WORKER_MSG__BODY_LOG;
	m.log = &l;
	ipc_send(WORKER_FD_CTL, &m);
}

void worker_start_clear(struct worker_start *s)
{
	if (s->auth_key) {
		explicit_bzero(s->auth_key, strlen(s->auth_key));
		free(s->auth_key);
	}
	free(s->control_url);
	free(s->hostname);
	for (size_t i = 0; i < s->n_tags; i++)
		free(s->tags[i]);
	free(s->tags);
	free(s->ca_pem);
	explicit_bzero(s, sizeof(*s));
}

/* The CA bundle as it arrives in CaChunk messages before Start. */
struct ca_pieces {
	char *buf; /* NUL-terminated */
	size_t len;
};

/* Appends one validated piece; the whole stays within CA_BUNDLE_MAX_LEN. */
static int ca_chunk_add(struct ca_pieces *ca, const Tscni__CaChunk *c, const char **why)
{
	if (c->data.len > CA_BUNDLE_MAX_LEN - ca->len) {
		*why = "CaChunk: the CA bundle is over CA_BUNDLE_MAX_LEN";
		return -EBADMSG;
	}
	ca->buf = xrealloc(ca->buf, ca->len + c->data.len + 1);
	memcpy(ca->buf + ca->len, c->data.data, c->data.len);
	ca->len += c->data.len;
	ca->buf[ca->len] = '\0';
	return 0;
}

/* Keeps what the control client needs from Start (validated: the keys are
 * 32 bytes, the strings bounded). */
static void start_keep(struct worker_start *ks, const Tscni__Start *s, struct ca_pieces *ca)
{
	ks->control_url = xstrdup(s->control_url);
	ks->hostname = xstrdup(s->hostname);
	if (s->n_tags) {
		ks->tags = xcalloc(s->n_tags, sizeof(*ks->tags));
		for (size_t i = 0; i < s->n_tags; i++)
			ks->tags[i] = xstrdup(s->tags[i]);
		ks->n_tags = s->n_tags;
	}
	ks->auth_key = s->auth_key[0] ? xstrdup(s->auth_key) : NULL;
	if (s->ca_bundle.len) {
		ks->ca_pem = xmalloc(s->ca_bundle.len + 1);
		memcpy(ks->ca_pem, s->ca_bundle.data, s->ca_bundle.len);
		ks->ca_pem[s->ca_bundle.len] = '\0';
		ks->ca_pem_len = s->ca_bundle.len;
	} else if (ca->len) {
		ks->ca_pem = ca->buf; /* NUL-terminated by ca_chunk_add */
		ks->ca_pem_len = ca->len;
		*ca = (struct ca_pieces){0};
	}
	memcpy(ks->machine_private, s->machine_private.data, KEY_LEN);
	memcpy(ks->node_private, s->node_private.data, KEY_LEN);
	/* Validated: empty or 32 bytes. */
	ks->has_old_node = s->old_node_public.len == KEY_LEN;
	if (ks->has_old_node)
		memcpy(ks->old_node_public, s->old_node_public.data, KEY_LEN);
	ks->test_flags = s->control_test_flags;
	ks->mtu = s->mtu;
	/* Validated: at most IFADDR_DENY_MAX bounded globs. */
	for (size_t i = 0; i < s->n_endpoint_deny_iface; i++)
		ifaddr_deny_add(&ks->deny, s->endpoint_deny_iface[i]);
	if (s->wg_timers) {
		const Tscni__WgTimers *t = s->wg_timers;

		ks->has_timers = true;
		ks->timers = (struct wg_device_timers){
			.rekey_after_ns = (uint64_t)t->rekey_after_ms * 1000000,
			.reject_after_ns = (uint64_t)t->reject_after_ms * 1000000,
			.rekey_attempt_ns = (uint64_t)t->rekey_attempt_ms * 1000000,
			.rekey_timeout_ns = (uint64_t)t->rekey_timeout_ms * 1000000,
			.keepalive_ns = (uint64_t)t->keepalive_ms * 1000000,
			.jitter_max_ns = (uint64_t)t->jitter_max_ms * 1000000,
		};
	}
}

/* Waits for the supervisor's Hello and Start. Keys in Start are wiped at
 * once; a worker with a control URL keeps a copy in ctx->start until the
 * control client has its own (control_thread_init). */
static int await_start(struct worker_ctx *ctx, const char **why)
{
	unsigned long long deadline = now_ms() + WORKER_START_TIMEOUT_MS;
	struct ca_pieces ca = {0};
	bool hello = false;
	int ret;

	for (;;) {
		struct pollfd pfd = {.fd = WORKER_FD_CTL, .events = POLLIN};
		unsigned long long now = now_ms();
		Tscni__SupervisorMsg *m;

		if (now >= deadline) {
			*why = "no Start from the supervisor in time";
			ret = -ETIMEDOUT;
			goto out;
		}
		ret = poll(&pfd, 1, (int)(deadline - now));
		if (ret < 0 && errno != EINTR) {
			*why = "poll fd 3";
			ret = -errno;
			goto out;
		}
		if (ret <= 0)
			continue;
		ret = ipc_recv(WORKER_FD_CTL, &m, why);
		if (ret == -EAGAIN)
			continue;
		if (ret == 0) {
			*why = "supervisor gone before Start";
			ret = -ECONNRESET;
			goto out;
		}
		if (ret < 0)
			goto out;
		ret = 0;
		if (m->body_case == TSCNI__SUPERVISOR_MSG__BODY_HELLO) {
			if (m->hello->max_version < WORKER_PROTO_MIN ||
			    m->hello->min_version > WORKER_PROTO_MAX) {
				*why = "supervisor speaks no version we know";
				ret = -EPROTONOSUPPORT;
			}
			ctx->sup_version = m->hello->max_version < WORKER_PROTO_MAX
						   ? m->hello->max_version
						   : WORKER_PROTO_MAX;
			hello = true;
		} else if (m->body_case == TSCNI__SUPERVISOR_MSG__BODY_CA_CHUNK && hello) {
			ret = ca_chunk_add(&ca, m->ca_chunk, why);
		} else if (m->body_case == TSCNI__SUPERVISOR_MSG__BODY_START && hello) {
			Tscni__Start *s = m->start;

			if (s->fd_count != ctx->nfds - 1) {
				*why = "Start.fd_count does not match the fds spawned with";
				ret = -EBADMSG;
			}
			if (s->ca_bundle_len != ca.len) {
				*why = "Start.ca_bundle_len does not match the CaChunks before it";
				ret = -EBADMSG;
			}
			strscpy(ctx->pod_uid, s->pod_uid, sizeof(ctx->pod_uid));
			ctx->debug_seccomp = s->debug_seccomp;
			if (s->rendezvous_fd && (s->rendezvous_fd <= WORKER_FD_TUN ||
						 s->rendezvous_fd >= WORKER_FD_CTL + ctx->nfds)) {
				*why = "Start.rendezvous_fd is not one of our fds";
				ret = -EBADMSG;
			}
			ctx->rdv_fd = s->rendezvous_fd ? (int)s->rendezvous_fd : -1;
			ctx->test_requests = s->test_requests;
			if (ret >= 0 && s->control_url[0])
				start_keep(&ctx->start, s, &ca);
			explicit_bzero(s->machine_private.data, s->machine_private.len);
			explicit_bzero(s->node_private.data, s->node_private.len);
			if (s->auth_key)
				explicit_bzero(s->auth_key, strlen(s->auth_key));
			tscni__supervisor_msg__free_unpacked(m, NULL);
			goto out;
		} else {
			*why = "expected Hello, CaChunks, then Start";
			ret = -EPROTO;
		}
		tscni__supervisor_msg__free_unpacked(m, NULL);
		if (ret < 0)
			goto out;
	}
out:
	free(ca.buf); /* start_keep took it, or it is not needed */
	return ret < 0 ? ret : 0;
}

_Noreturn void worker_child(const struct sandbox_ops *sb, const int *fds, size_t nfds, uint32_t uid,
			    bool fallbacks)
{
	struct worker_ctx ctx = {.sandbox = sb,
				 .uid = uid,
				 .nfds = nfds,
				 .ctl_open = true,
				 .rdv_fd = -1,
				 .udp_fd = -1,
				 .nl_fd = -1,
				 .smaps_fd = -1};
	const char *why = "";
	int ret;

	ret = arrange_fds(fds, nfds, fallbacks);
	if (ret < 0)
		_exit(71);
	/* The sandbox hides /proc: the one file Stats reads (PSS) is opened
	 * now, as root, and read with pread later. Without it Stats says 0. */
	ctx.smaps_fd = open("/proc/self/smaps_rollup", O_RDONLY | O_CLOEXEC);
	ret = sb->enter(uid, &why);
	if (ret < 0) {
		early_log("sandbox", why, ret);
		_exit(72);
	}
	/* The zygote's --log-level (the supervisor's) carries over the fork. */
	log_init("worker", log_get_level());
	log_set_sink(ipc_log_sink, &ctx);
	ret = ipc_send_hello(WORKER_FD_CTL, "", 0);
	if (ret == 0)
		ret = await_start(&ctx, &why);
	if (ret < 0) {
		early_log("start", why, ret);
		_exit(73);
	}
	if (fcntl(WORKER_FD_CTL, F_SETFL, O_NONBLOCK | O_RDWR) < 0)
		_exit(74);
	/* Both threads and every fd the loop and the engine need exist
	 * before the filter; the engine first: it takes the node key that
	 * control_thread_init wipes. */
	ret = data_thread_prepare(&ctx, &why);
	if (ret < 0) {
		early_log("data plane", why, ret);
		_exit(75);
	}
	ret = control_thread_init(&ctx);
	if (ret == 0)
		ret = data_thread_start(&ctx);
	if (ret < 0) {
		early_log("threads", "start", ret);
		_exit(75);
	}
	ret = sb->load_filter(ctx.debug_seccomp, WORKER_FD_CTL, &why);
	if (ret < 0) {
		early_log("seccomp", why, ret);
		_exit(76);
	}
	log_info("pod %s: worker running as uid %u, sandbox %s%s", ctx.pod_uid, uid, sb->name,
		 ctx.debug_seccomp ? " (seccomp debug)" : "");
	_exit(control_thread_run(&ctx));
}
