/* The data-plane thread: reads the pod's TUN fd. At this stage it counts what
 * the pod sends (packets, bytes); WireGuard encryption joins it later. It
 * never allocates per packet and never logs: it only touches atomics the
 * control thread reads. */
#include "worker.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>

enum tun_rx_limits {
	TUN_RX_BUF = 65536, /* the largest packet a TUN can hand us */
	TUN_RX_BATCH = 64,  /* reads per poll wake-up before polling again */
};

static void *tun_rx_main(void *arg)
{
	struct worker_ctx *ctx = arg;
	static _Thread_local uint8_t buf[TUN_RX_BUF];
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
		 * POLLERR and reads fail with EBADFD (machine-notes.md). */
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

int tun_rx_start(struct worker_ctx *ctx)
{
	pthread_attr_t attr;
	int ret;

	ret = pthread_attr_init(&attr);
	if (ret)
		return -ret;
	/* A small stack: the packet buffer is thread-local, not on the stack. */
	pthread_attr_setstacksize(&attr, WORKER_DATA_STACK);
	ret = pthread_create(&ctx->data_thread, &attr, tun_rx_main, ctx);
	pthread_attr_destroy(&attr);
	return -ret;
}
