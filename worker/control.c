/* The control thread: the worker's own libuv loop (created after fork, never
 * inherited from the zygote), fd 3 and a housekeeping timer. When fd 3 reads
 * EOF (the supervisor is gone) the worker keeps running and forwarding. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sandbox.h"

static void send_stats(struct worker_ctx *ctx)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Stats s = TSCNI__STATS__INIT;

	s.tun_rx_packets = atomic_load(&ctx->tun_rx_packets);
	s.tun_tx_packets = atomic_load(&ctx->tun_tx_packets);
	s.drops = atomic_load(&ctx->drops);
	m.body_case = TSCNI__WORKER_MSG__BODY_STATS;
	m.stats = &s;
	ipc_send(WORKER_FD_CTL, &m);
}

/* Test-only actions (Start.test_requests): each tries something the sandbox
 * must refuse. Returns 0 when the action succeeded (a sandbox hole) or the
 * negative errno it was refused with; an action the filter kills never
 * returns. */
static int test_action(const char *action, const char *arg, char *detail, size_t dlen)
{
	long r = -1;
	int fd;

	if (!strcmp(action, "open_read")) {
		r = open(arg, O_RDONLY | O_CLOEXEC);
	} else if (!strcmp(action, "open_write")) {
		r = open(arg, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	} else if (!strcmp(action, "execve")) {
		char *const argv[] = {(char *)arg, NULL};

		r = execve(arg, argv, argv + 1);
	} else if (!strcmp(action, "socket_netlink")) {
		r = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0);
	} else if (!strcmp(action, "socket_unix")) {
		r = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	} else if (!strcmp(action, "socket_packet")) {
		r = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
	} else if (!strcmp(action, "socket_udp")) {
		r = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	} else if (!strcmp(action, "ioctl_siocaddrt") || !strcmp(action, "setsockopt_ipt")) {
		fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto out;
		if (action[0] == 'i') {
			struct rtentry rt;

			memset(&rt, 0, sizeof(rt));
			r = ioctl(fd, SIOCADDRT, &rt);
		} else {
			char blob[sizeof(struct ipt_replace)];

			memset(blob, 0, sizeof(blob));
			r = setsockopt(fd, IPPROTO_IP, IPT_SO_SET_REPLACE, blob, sizeof(blob));
		}
		int saved = errno;
		close(fd);
		errno = saved;
	} else if (!strcmp(action, "ptrace")) {
		r = ptrace(PTRACE_ATTACH, (pid_t)strtol(arg, NULL, 10), NULL, NULL);
	} else if (!strcmp(action, "proc_mem")) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%ld/mem", strtol(arg, NULL, 10));
		r = open(path, O_RDONLY | O_CLOEXEC);
	} else if (!strcmp(action, "connect_unix")) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto out;
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", arg);
		r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
		int saved = errno;
		close(fd);
		errno = saved;
	} else if (!strcmp(action, "fork")) {
		r = fork();
		if (r == 0)
			_exit(0);
	} else if (!strcmp(action, "bpf")) {
		r = syscall(SYS_bpf, 0, NULL, 0);
	} else if (!strcmp(action, "io_uring_setup")) {
		r = syscall(SYS_io_uring_setup, 1, NULL);
	} else if (!strcmp(action, "userfaultfd")) {
		r = syscall(SYS_userfaultfd, 0);
	} else if (!strcmp(action, "keyctl")) {
		r = syscall(SYS_keyctl, 0, 0, 0, 0, 0);
	} else if (!strcmp(action, "syscall")) {
		r = syscall(strtol(arg, NULL, 10), 0, 0, 0, 0, 0, 0);
	} else {
		snprintf(detail, dlen, "unknown action");
		return -EINVAL;
	}
out:
	if (r < 0) {
		int err = errno;

		snprintf(detail, dlen, "refused: %s", strerror(err));
		return -err;
	}
	snprintf(detail, dlen, "allowed (returned %ld)", r);
	/* Actions that made an fd: do not keep it. */
	if (!strncmp(action, "socket_", 7) || !strncmp(action, "open_", 5))
		close((int)r);
	return 0;
}

static void handle_test(struct worker_ctx *ctx, const Tscni__TestRequest *t)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__TestReply rep = TSCNI__TEST_REPLY__INIT;
	char detail[128];

	if (!ctx->test_requests) {
		log_warn("pod %s: TestRequest without Start.test_requests: ignored", ctx->pod_uid);
		return;
	}
	rep.id = t->id;
	rep.err = test_action(t->action, t->arg, detail, sizeof(detail));
	rep.detail = detail;
	m.body_case = TSCNI__WORKER_MSG__BODY_TEST_REPLY;
	m.test_reply = &rep;
	ipc_send(WORKER_FD_CTL, &m);
}

static void ctl_closed(struct worker_ctx *ctx)
{
	/* The supervisor is gone (killed, upgraded, its container removed):
	 * keep forwarding. Re-adoption comes through the rendezvous socket. */
	ctx->ctl_open = false;
	uv_poll_stop(&ctx->ctl_poll[ctx->ctl_idx]);
}

/* A supervisor's Hello on an adoption connection: check its versions, then
 * hand back the custody of every fd we were spawned with after fd 3. */
static void adopted(struct worker_ctx *ctx, const Tscni__Hello *h)
{
	int fds[WORKER_FD_MAX];
	size_t n = ctx->nfds - 1;

	ctx->adopting = false;
	if (h->max_version < WORKER_PROTO_MIN || h->min_version > WORKER_PROTO_MAX) {
		/* It cannot speak to us: drop the link, keep forwarding, wait
		 * for a supervisor that can. */
		ctl_closed(ctx);
		return;
	}
	for (size_t i = 0; i < n; i++)
		fds[i] = WORKER_FD_TUN + (int)i;
	ipc_send_custody(WORKER_FD_CTL, fds, n);
	log_info("pod %s: adopted by supervisor %d", ctx->pod_uid, (int)h->pid);
}

static void on_ctl(uv_poll_t *h, int status, int events)
{
	struct worker_ctx *ctx = h->data;

	(void)events;
	if (status < 0) {
		ctl_closed(ctx);
		return;
	}
	for (int i = 0; i < 16; i++) {
		Tscni__SupervisorMsg *m;
		const char *why = "";
		int ret = ipc_recv(WORKER_FD_CTL, &m, &why);

		if (ret == -EAGAIN)
			return;
		if (ret == 0 || ret == -ECONNRESET) {
			ctl_closed(ctx);
			return;
		}
		if (ret < 0) {
			/* Our own supervisor sent garbage: say so and go on. */
			log_err_r(ret, "pod %s: bad message from supervisor: %s", ctx->pod_uid,
				  why);
			continue;
		}
		switch (m->body_case) {
		case TSCNI__SUPERVISOR_MSG__BODY_STATS_REQUEST:
			send_stats(ctx);
			break;
		case TSCNI__SUPERVISOR_MSG__BODY_STOP:
			log_info("pod %s: stopping", ctx->pod_uid);
			tscni__supervisor_msg__free_unpacked(m, NULL);
			uv_stop(&ctx->loop);
			return;
		case TSCNI__SUPERVISOR_MSG__BODY_TEST_REQUEST:
			handle_test(ctx, m->test_request);
			break;
		case TSCNI__SUPERVISOR_MSG__BODY_HELLO:
			if (ctx->adopting)
				adopted(ctx, m->hello);
			break;
		case TSCNI__SUPERVISOR_MSG__BODY_NETOP_REPLY:
			log_debug("pod %s: netop %u: %d", ctx->pod_uid, m->netop_reply->id,
				  m->netop_reply->err);
			break;
		default:
			log_debug("pod %s: message %d ignored", ctx->pod_uid, (int)m->body_case);
			break;
		}
		tscni__supervisor_msg__free_unpacked(m, NULL);
	}
}

static void on_ctl_poll_closed(uv_handle_t *h)
{
	struct worker_ctx *ctx = h->data;

	ctx->ctl_closing[h == (uv_handle_t *)&ctx->ctl_poll[1]] = false;
}

/* A supervisor connected to our rendezvous socket (the previous one died or
 * was replaced). Only root can reach the socket: its directory is 0700. The
 * new connection replaces fd 3 (dup3), so everything that writes to fd 3,
 * the SIGSYS reporter included, follows. */
static void on_rdv(uv_poll_t *h, int status, int events)
{
	struct worker_ctx *ctx = h->data;
	int next = 1 - ctx->ctl_idx, fd;

	(void)events;
	if (status < 0)
		return;
	/* Only the newest of the pending connections counts: the others are
	 * attempts their supervisor gave up on. */
	fd = -1;
	for (;;) {
		int c = accept4(ctx->rdv_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (c < 0)
			break;
		if (fd >= 0)
			close(fd);
		fd = c;
	}
	if (fd < 0)
		return;
	if (ctx->ctl_closing[next]) {
		close(fd); /* two supervisors within one loop turn: the first wins */
		return;
	}
	ctx->ctl_closing[ctx->ctl_idx] = true;
	uv_close((uv_handle_t *)&ctx->ctl_poll[ctx->ctl_idx], on_ctl_poll_closed);
	if (dup3(fd, WORKER_FD_CTL, O_CLOEXEC) < 0) {
		close(fd);
		ctx->ctl_open = false;
		return;
	}
	close(fd);
	ctx->ctl_idx = next;
	if (uv_poll_init(&ctx->loop, &ctx->ctl_poll[next], WORKER_FD_CTL) < 0) {
		ctx->ctl_open = false;
		return;
	}
	ctx->ctl_poll[next].data = ctx;
	uv_poll_start(&ctx->ctl_poll[next], UV_READABLE | UV_DISCONNECT, on_ctl);
	ctx->ctl_open = true;
	ctx->adopting = true;
	ipc_send_hello(WORKER_FD_CTL, ctx->pod_uid);
}

static void on_timer(uv_timer_t *t)
{
	struct worker_ctx *ctx = t->data;

	if (atomic_load(&ctx->tun_gone) && !ctx->tun_gone_sent) {
		char detail[64];

		ctx->tun_gone_sent = true;
		snprintf(detail, sizeof(detail), "TUN read failed: %s",
			 strerror(atomic_load(&ctx->tun_errno)));
		if (ctx->ctl_open)
			ipc_send_event(WORKER_FD_CTL, TSCNI__EVENT_KIND__EVENT_TUN_GONE, detail);
		/* The pod is gone: nothing left to forward. */
		uv_stop(&ctx->loop);
	}
}

int control_init(struct worker_ctx *ctx)
{
	int ret;

	ret = uv_loop_init(&ctx->loop);
	if (ret < 0)
		return ret;
	ret = uv_poll_init(&ctx->loop, &ctx->ctl_poll[0], WORKER_FD_CTL);
	if (ret < 0)
		return ret;
	ctx->ctl_poll[0].data = ctx;
	if (ctx->rdv_fd >= 0) {
		/* We listen, not the supervisor that bound it: the kernel gives
		 * connecting supervisors the listener's credentials, ours. A
		 * respawned worker listens again and so takes them over. */
		if (listen(ctx->rdv_fd, 8) < 0)
			return -errno;
		ret = uv_poll_init(&ctx->loop, &ctx->rdv_poll, ctx->rdv_fd);
		if (ret < 0)
			return ret;
		ctx->rdv_poll.data = ctx;
		ret = uv_poll_start(&ctx->rdv_poll, UV_READABLE, on_rdv);
		if (ret < 0)
			return ret;
	}
	ret = uv_timer_init(&ctx->loop, &ctx->timer);
	if (ret < 0)
		return ret;
	ctx->timer.data = ctx;
	/* Start the handles now: epoll_ctl ADD is allowed later, but this way
	 * every fd the loop needs exists before the filter loads. */
	ret = uv_poll_start(&ctx->ctl_poll[0], UV_READABLE | UV_DISCONNECT, on_ctl);
	if (ret < 0)
		return ret;
	return uv_timer_start(&ctx->timer, on_timer, WORKER_TIMER_MS, WORKER_TIMER_MS);
}

int control_run(struct worker_ctx *ctx)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Ready r = TSCNI__READY__INIT;

	/* At this stage there is no control plane: the worker is ready as soon
	 * as its data path runs. */
	m.body_case = TSCNI__WORKER_MSG__BODY_READY;
	m.ready = &r;
	ipc_send(WORKER_FD_CTL, &m);
	uv_run(&ctx->loop, UV_RUN_DEFAULT);
	return 0;
}
