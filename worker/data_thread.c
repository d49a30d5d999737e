/* The data-plane thread. With a control plane and the pod's UDP socket it
 * runs the engine (worker/dataplane.h: TUN <-> WireGuard <-> UDP;
 * control_thread.c publishes each netmap's configuration to it). Without, it reads the pod's
 * TUN fd and counts what the pod sends (packets, bytes) for the drills. The
 * counting loop never allocates per packet and never logs: it only touches
 * atomics the control thread reads. */
#include "worker.h"

#include <errno.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "chan.h"
#include "dataplane.h"
#include "keys.h"

enum data_thread_limits {
	TUN_RX_BUF = 65536, /* the largest packet a TUN can hand us */
	TUN_RX_BATCH = 64,  /* reads per poll wake-up before polling again */
};

static void *count_main(void *arg)
{
	struct worker_ctx *ctx = arg;
	/* In .bss, touched only when this loop reads: one data thread per
	 * worker. Not _Thread_local: a TLS block is in every thread (the
	 * engine's and the control thread's too), and glibc zeroes it when
	 * the thread starts, 64 KiB touched in each. */
	static uint8_t buf[TUN_RX_BUF];
	struct pollfd pfd = {.fd = WORKER_FD_TUN, .events = POLLIN};

	for (;;) {
		int n = poll(&pfd, 1, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			atomic_store(&ctx->tun_errno, errno);
			break;
		}
		/* The pod's netns is gone: the device went with it, the fd polls
		 * POLLERR and reads fail with EBADFD (docs/machine-notes.md). */
		if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) {
			atomic_store(&ctx->tun_errno, EBADFD);
			break;
		}
		for (int i = 0; i < TUN_RX_BATCH; i++) {
			ssize_t r = read(WORKER_FD_TUN, buf, sizeof(buf));

			if (r > 0) {
				atomic_fetch_add(&ctx->tun_rx_packets, 1);
				atomic_fetch_add(&ctx->tun_rx_bytes, (uint_fast64_t)r);
				continue;
			}
			if (r < 0 && (errno == EAGAIN || errno == EINTR))
				break;
			atomic_store(&ctx->tun_errno, r < 0 ? errno : EBADFD);
			goto gone;
		}
	}
gone:
	atomic_store(&ctx->tun_gone, true);
	return NULL;
}

/* The engine until it stops: a fatal TUN error (the pod's netns is gone)
 * ends the worker like the counting loop's does. */
static void *engine_main(void *arg)
{
	struct worker_ctx *ctx = arg;
	int ret = dataplane_run(ctx->dp);

	if (ret < 0) {
		atomic_store(&ctx->tun_errno, -ret);
		atomic_store(&ctx->tun_gone, true);
	}
	return NULL;
}

int data_thread_prepare(struct worker_ctx *ctx, const char **why)
{
	struct dataplane_params p = {.tun_fd = WORKER_FD_TUN, .n_udp = 1};
	int ret;

	/* A fresh disco key for every worker start, as tailscaled makes one
	 * per process: peers learn the public half from control. */
	keys_generate(p.disco_private);
	if (keys_public(ctx->disco_public, p.disco_private) < 0) {
		explicit_bzero(p.disco_private, sizeof(p.disco_private));
		*why = "cannot derive the disco public key";
		return -EINVAL;
	}

	/* The UDP socket is the one datagram socket among the extra fds; the
	 * host's NETLINK_ROUTE socket (endpoints.c) the one netlink socket. */
	for (int fd = WORKER_FD_TUN + 1; fd < WORKER_FD_CTL + (int)ctx->nfds; fd++) {
		int type = 0, domain = 0, proto = 0;
		socklen_t tl = sizeof(type), dl = sizeof(domain), pl = sizeof(proto);

		if (fd == ctx->rdv_fd || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dl) < 0 ||
		    getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &pl) < 0)
			continue;
		if (type == SOCK_DGRAM && (domain == AF_INET || domain == AF_INET6) &&
		    ctx->udp_fd < 0)
			ctx->udp_fd = fd;
		else if (domain == AF_NETLINK && proto == NETLINK_ROUTE && ctx->nl_fd < 0)
			ctx->nl_fd = fd;
	}
	if (!ctx->start.control_url || ctx->udp_fd < 0) {
		explicit_bzero(p.disco_private, sizeof(p.disco_private));
		return 0;
	}
	p.udp_fds[0] = ctx->udp_fd;
	p.mtu = ctx->start.mtu;
	if (ctx->start.has_timers)
		p.timers = &ctx->start.timers;
	memcpy(p.private_key, ctx->start.node_private, sizeof(p.private_key));
	ret = dataplane_new(&p, &ctx->dp, why);
	explicit_bzero(p.private_key, sizeof(p.private_key));
	explicit_bzero(p.disco_private, sizeof(p.disco_private));
	if (ret < 0)
		return ret;
	ctx->chan = chan_new();
	dataplane_set_derp(ctx->dp, ctx->chan);
	return 0;
}

int data_thread_start(struct worker_ctx *ctx)
{
	pthread_attr_t attr;
	int ret;

	ret = pthread_attr_init(&attr);
	if (ret)
		return -ret;
	/* The counting loop's packet buffer is thread-local, not on the
	 * stack; the engine's buffers are on the heap. */
	pthread_attr_setstacksize(&attr, ctx->dp ? WORKER_ENGINE_STACK : WORKER_DATA_STACK);
	ret = pthread_create(&ctx->data_thread, &attr, ctx->dp ? engine_main : count_main, ctx);
	pthread_attr_destroy(&attr);
	return -ret;
}
