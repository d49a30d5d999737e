/* The worker's data-plane engine (see dataplane.h for the shape and the
 * configuration hand-over): its lifecycle, the state both directions share,
 * the hand-over, the counters and the loop. Each direction of the packet
 * path has its own file (tun_to_peers.c, peers_to_tun.c); configurations
 * are built in dataplane_config.c. */
#include "dataplane.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "dataplane_internal.h"
#include "keys.h"
#include "log.h"
#include "mem.h"

_Static_assert((int)PKTBUF_HEADROOM >= (int)WG_DEVICE_HEADROOM,
	       "TUN reads leave room for the header");
_Static_assert((int)PKTBUF_TAILROOM >= (int)WG_DEVICE_TAILROOM, "TUN reads leave room for the tag");

/* What woke the engine (epoll data). */
enum dataplane_tag {
	DP_TAG_TUN = 0,
	DP_TAG_UDP = 1, /* + socket index */
	DP_TAG_EVENT = 8,
	DP_TAG_TIMER = 9,
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * WG_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- the hand-over ------------------------------------------------------- */

static void retire(struct dataplane *dp, struct dataplane_config *cfg)
{
	struct dataplane_config *head = atomic_load(&dp->retired);

	do
		cfg->retired_next = head;
	while (!atomic_compare_exchange_weak(&dp->retired, &head, cfg));
}

void dataplane_reclaim(struct dataplane *dp)
{
	struct dataplane_config *c = atomic_exchange(&dp->retired, NULL);

	while (c) {
		struct dataplane_config *next = c->retired_next;

		dataplane_config_free(c);
		c = next;
	}
}

void dataplane__wake(void *arg)
{
	struct dataplane *dp = arg;
	uint64_t one = 1;

	(void)!write(dp->evfd, &one, sizeof(one));
}

static void wake(struct dataplane *dp)
{
	dataplane__wake(dp);
}

void dataplane_set_config(struct dataplane *dp, struct dataplane_config *cfg)
{
	/* A configuration still pending was never seen by the engine. */
	dataplane_config_free(atomic_exchange(&dp->pending, cfg));
	wake(dp);
	dataplane_reclaim(dp);
}

/* Peers that tried to handshake with us before this configuration made
 * them peers (a process that restarted, or a peer that heard of us first):
 * our handshake now rather than their retry in REKEY_TIMEOUT. */
static void early_initiators_answer(struct dataplane *dp, uint64_t now)
{
	uint8_t keys[WG_EARLY_INITIATORS][WG_KEY_LEN];
	size_t n = wg_device_take_early_initiators(dp->dev, now, keys, WG_EARLY_INITIATORS);

	for (size_t i = 0; i < n; i++)
		dataplane__handshake_owed(dp, keys[i], now);
}

static void config_apply(struct dataplane *dp, uint64_t now)
{
	struct dataplane_config *cfg = atomic_exchange(&dp->pending, NULL);
	const char *why = "";

	if (!cfg)
		return;
	if (wg_device_set_peers(dp->dev, cfg->peers, cfg->n_peers, now, &why) < 0) {
		log_warn("configuration refused: %s", why);
		dp->st.configs_refused++;
		retire(dp, cfg);
		return;
	}
	if (dp->cur)
		retire(dp, dp->cur);
	dp->cur = cfg;
	dataplane__magic_apply(dp, cfg);
	dp->st.configs_applied++;
	dp->peers_stale = true;
	dataplane__early_disco_run(dp, now);
	early_initiators_answer(dp, now);
}

/* ---- shared by both directions ------------------------------------------- */

void dataplane__pb_reset(struct pktbuf_batch *pb, const struct wg_batch *b, uint32_t off)
{
	pb->n = 0;
	pb->cap = DATAPLANE_BATCH;
	for (size_t i = 0; i < DATAPLANE_BATCH; i++) {
		pb->pkt[i].head = b->pkt[i].buf;
		pb->pkt[i].size = (uint32_t)b->pkt[i].cap;
		pb->pkt[i].off = off;
		pb->pkt[i].len = 0;
		pb->pkt[i].addr_len = 0;
	}
}

void dataplane__batch_keep(struct wg_batch *b, size_t i, size_t *kept)
{
	if (i != *kept) {
		struct wg_packet *a = &b->pkt[*kept], *c = &b->pkt[i];
		uint8_t *buf = a->buf;
		size_t cap = a->cap;

		a->buf = c->buf;
		a->cap = c->cap;
		a->off = c->off;
		a->len = c->len;
		a->peer = c->peer;
		a->addr = c->addr;
		c->buf = buf;
		c->cap = cap;
	}
	(*kept)++;
}

/* ---- counters, disco keys, rekeys ---------------------------------------- */

static unsigned offloads_of(const struct dataplane *dp);

static void stats_publish(struct dataplane *dp)
{
	const struct tunio_stats *ts = tunio_stats(dp->tio);

	dp->st.tun_read_calls = ts->read_calls;
	dp->st.tun_write_calls = ts->write_calls;
	dp->st.udp_send_calls = 0;
	dp->st.udp_recv_calls = 0;
	/* UDP GSO switches itself off for good when the kernel refuses it. */
	dp->st.offloads = offloads_of(dp);
	for (size_t k = 0; k < dp->n_udp; k++) {
		const struct udpio_stats *us = udpio_stats(dp->uio[k]);

		dp->st.udp_send_calls += us->send_calls;
		dp->st.udp_recv_calls += us->recv_calls;
	}
	dp->st.wg = *wg_device_stats(dp->dev);
	pthread_mutex_lock(&dp->lock);
	dp->pub = dp->st;
	pthread_mutex_unlock(&dp->lock);
}

/* The per-peer report, from the tick: gathered straight into the published
 * array under the lock (a reader waits for at most one pass over
 * DATAPLANE_PEERS_REPORTED peers, once a second), which grows outside it. */
static void peers_publish(struct dataplane *dp, uint64_t now)
{
	size_t total = dp->cur ? dp->cur->n_peers : 0;
	size_t n = total < DATAPLANE_PEERS_REPORTED ? total : DATAPLANE_PEERS_REPORTED;
	struct dataplane_peer_info *grown = NULL, *old = NULL;

	dp->peers_published_ms = dp->now_ms;
	dp->peers_stale = false;
	if (n > dp->peers_pub_cap)
		grown = xcalloc(n, sizeof(*grown));
	pthread_mutex_lock(&dp->lock);
	if (grown) {
		old = dp->peers_pub;
		dp->peers_pub = grown;
		dp->peers_pub_cap = n;
	}
	dp->n_peers_pub = dataplane__peers_gather(dp, now, dp->peers_pub, n);
	dp->peers_total = total;
	pthread_mutex_unlock(&dp->lock);
	free(old);
}

size_t dataplane_peers(const struct dataplane *dp, struct dataplane_peer_info *out, size_t cap,
		       size_t *total)
{
	struct dataplane *m = (struct dataplane *)dp;
	size_t n;

	pthread_mutex_lock(&m->lock);
	n = m->n_peers_pub < cap ? m->n_peers_pub : cap;
	if (n)
		memcpy(out, m->peers_pub, n * sizeof(*out));
	*total = m->peers_total;
	pthread_mutex_unlock(&m->lock);
	return n;
}

void dataplane_stats(const struct dataplane *dp, struct dataplane_stats *out)
{
	struct dataplane *m = (struct dataplane *)dp;

	pthread_mutex_lock(&m->lock);
	*out = m->pub;
	pthread_mutex_unlock(&m->lock);
}

int dataplane_disco_key(struct dataplane *dp, const uint8_t node_key[static WG_KEY_LEN],
			uint8_t disco[static WG_KEY_LEN])
{
	int ret = -ENOENT;

	pthread_mutex_lock(&dp->lock);
	for (size_t i = 0; i < dp->n_disco; i++) {
		if (memcmp(dp->disco[i].node, node_key, WG_KEY_LEN) == 0) {
			memcpy(disco, dp->disco[i].disco, WG_KEY_LEN);
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&dp->lock);
	return ret;
}

void dataplane__disco_store(struct dataplane *dp, const uint8_t *node, const uint8_t *disco)
{
	size_t i;

	pthread_mutex_lock(&dp->lock);
	for (i = 0; i < dp->n_disco; i++) {
		if (memcmp(dp->disco[i].node, node, WG_KEY_LEN) == 0)
			break;
	}
	if (i == dp->n_disco) {
		if (dp->n_disco < DATAPLANE_DISCO_MAX) {
			dp->n_disco++;
		} else {
			i = dp->disco_next;
			dp->disco_next = (dp->disco_next + 1) % DATAPLANE_DISCO_MAX;
		}
	}
	memcpy(dp->disco[i].node, node, WG_KEY_LEN);
	memcpy(dp->disco[i].disco, disco, WG_KEY_LEN);
	pthread_mutex_unlock(&dp->lock);
}

int dataplane_rekey(struct dataplane *dp, const uint8_t key[static WG_KEY_LEN])
{
	pthread_mutex_lock(&dp->lock);
	if (dp->n_rekeys < DP_MAX_REKEYS)
		memcpy(dp->rekeys[dp->n_rekeys++], key, WG_KEY_LEN);
	atomic_store(&dp->rekey_pending, true);
	pthread_mutex_unlock(&dp->lock);
	wake(dp);
	return 0;
}

/* ---- the loop ------------------------------------------------------------ */

static void timers_run(struct dataplane *dp, uint64_t now)
{
	dp->last_timers = now;
	dp->now_ms = now / 1000000;
	dataplane__udp_flush(dp);
	dataplane__magic_tick(dp, now);
	wg_device_timers(dp->dev, now, &dp->udp_out);
	dataplane__udp_flush(dp);
	stats_publish(dp);
	if (dp->peers_stale || dp->now_ms - dp->peers_published_ms >= DATAPLANE_PEERS_PUBLISH_MS)
		peers_publish(dp, now);
}

static void rekeys_run(struct dataplane *dp, uint64_t now)
{
	uint8_t keys[DP_MAX_REKEYS][WG_KEY_LEN];
	size_t n;

	pthread_mutex_lock(&dp->lock);
	n = dp->n_rekeys;
	memcpy(keys, dp->rekeys, n * WG_KEY_LEN);
	dp->n_rekeys = 0;
	atomic_store(&dp->rekey_pending, false);
	pthread_mutex_unlock(&dp->lock);
	for (size_t i = 0; i < n; i++) {
		dataplane__udp_flush(dp);
		(void)wg_device_initiate(dp->dev, keys[i], now, &dp->udp_out);
		dataplane__udp_flush(dp);
	}
}

/* Config, rekeys and stop: checked at each wakeup and each round. */
static bool control_poll(struct dataplane *dp, uint64_t now)
{
	dp->now_ms = now / 1000000; /* path.c's clock for this round */
	if (atomic_load_explicit(&dp->pending, memory_order_relaxed))
		config_apply(dp, now);
	if (atomic_load_explicit(&dp->rekey_pending, memory_order_relaxed))
		rekeys_run(dp, now);
	return atomic_load(&dp->stop);
}

/* Idle for DP_IDLE_RELEASE_NS after input: the pages of the batch
 * buffers, the TUN read buffer and the GRO buffers (~0.5 MiB, all touched
 * under load) go back to the kernel. They are scratch between rounds;
 * the next packets fault them in again. */
static void release_idle(struct dataplane *dp, uint64_t now)
{
	if (!dp->bufs_touched || now - dp->io_ns < DP_IDLE_RELEASE_NS)
		return;
	if (dp->tun_in.n || dp->udp_in.n || dp->tun_out.n || dp->udp_out.n || dp->local.n)
		return;
	pktbuf_release(dp->bufs, (4 * DATAPLANE_BATCH + DP_LOCAL_SLOTS) * (size_t)DP_BUF_LEN);
	tunio_release(dp->tio);
	for (size_t k = 0; k < dp->n_udp; k++)
		udpio_release(dp->uio[k]);
	dp->bufs_touched = false;
	dp->st.buf_releases++;
}

static int timer_set(struct dataplane *dp, uint64_t period)
{
	struct itimerspec its = {
		.it_interval = {.tv_sec = (time_t)(period / WG_NSEC_PER_SEC),
				.tv_nsec = (long)(period % WG_NSEC_PER_SEC)},
	};

	its.it_value = its.it_interval;
	if (timerfd_settime(dp->tfd, 0, &its, NULL) < 0)
		return -errno;
	dp->timer_period = period;
	dp->st.timer_period_ns = period;
	return 0;
}

/* The timer's period follows the pod's traffic: tick_ns while packets
 * crossed ts0 (either way) within DP_IDLE_RELEASE_NS, DATAPLANE_IDLE_TICK_NS
 * after that. Disco, handshakes and control's events do not count: a
 * tailnet's peers ping each other every few seconds, and their timers are
 * seconds long. Input wakes the loop whatever the period, and the loop runs
 * overdue timers at once (the tick_ns check in dataplane_run), so nothing
 * waits for the slow period once traffic is back. */
static void timer_adapt(struct dataplane *dp, uint64_t now)
{
	uint64_t want = dp->tick_ns;
	int ret;

	if (dp->st.tun_in_pkts != dp->active_in || dp->st.tun_out_pkts != dp->active_out) {
		dp->active_in = dp->st.tun_in_pkts;
		dp->active_out = dp->st.tun_out_pkts;
		dp->active_ns = now;
	}
	if (now - dp->active_ns >= DP_IDLE_RELEASE_NS && want < DATAPLANE_IDLE_TICK_NS)
		want = DATAPLANE_IDLE_TICK_NS;
	if (want == dp->timer_period || (ret = timer_set(dp, want)) == 0)
		return;
	if (log_ratelimit_hit(&dp->timer_log, now / 1000000, DP_BAD_PEER_LOG_MS))
		log_warn("data plane: timerfd_settime: %s (the tick stays at %llu ms)",
			 strerror(-ret), (unsigned long long)(dp->timer_period / 1000000));
}

int dataplane_run(struct dataplane *dp)
{
	int ret = 0;

	dp->st.tid = (int)syscall(SYS_gettid);
	dp->active_ns = mono_ns();
	ret = timer_set(dp, dp->tick_ns);
	if (ret < 0)
		return ret;
	stats_publish(dp);
	while (!control_poll(dp, mono_ns())) {
		struct epoll_event ev[DATAPLANE_MAX_UDP + 3];
		bool tun_more = false, udp_more[DATAPLANE_MAX_UDP] = {false}, busy;
		bool tick = false, input;
		uint64_t now;
		int n = epoll_wait(dp->ep, ev, (int)(sizeof(ev) / sizeof(ev[0])), -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			break;
		}
		dp->st.wakeups++;
		for (int i = 0; i < n; i++) {
			uint32_t tag = ev[i].data.u32;
			uint64_t v;

			if (tag == DP_TAG_TUN)
				tun_more = true;
			else if (tag >= DP_TAG_UDP && tag < DP_TAG_UDP + DATAPLANE_MAX_UDP)
				udp_more[tag - DP_TAG_UDP] = true;
			else if (tag == DP_TAG_EVENT)
				(void)!read(dp->evfd, &v, sizeof(v));
			else if (tag == DP_TAG_TIMER && read(dp->tfd, &v, sizeof(v)) > 0)
				tick = true;
		}
		now = mono_ns();
		input = tun_more;
		for (size_t k = 0; k < dp->n_udp; k++)
			input |= udp_more[k];
		if (input) {
			dp->io_ns = now;
			dp->bufs_touched = true;
		}
		do {
			if (control_poll(dp, now))
				goto out;
			busy = false;
			if (tun_more) {
				ret = dataplane__tun_to_peers(dp, now, &tun_more);
				if (ret < 0)
					goto out;
				busy |= tun_more;
			}
			for (size_t k = 0; k < dp->n_udp; k++) {
				if (!udp_more[k])
					continue;
				ret = dataplane__peers_to_tun(dp, k, now, &udp_more[k]);
				if (ret < 0)
					goto out;
				busy |= udp_more[k];
			}
			/* DERP's ring wakes the eventfd: drained every round. */
			ret = dataplane__derp_rx(dp, now);
			if (ret < 0)
				goto out;
			now = mono_ns();
			if (now - dp->last_timers >= dp->tick_ns)
				tick = true;
			if (tick) {
				timers_run(dp, now);
				tick = false;
			}
		} while (busy);
		release_idle(dp, now);
		timer_adapt(dp, now);
		stats_publish(dp);
	}
out:
	if (ret < 0) {
		log_err_r(ret, "data plane stopped");
		dp->st.error = ret;
	}
	stats_publish(dp);
	return ret;
}

static void *thread_main(void *arg)
{
	(void)dataplane_run(arg);
	return NULL;
}

int dataplane_start(struct dataplane *dp)
{
	int ret;

	if (dp->started)
		return -EALREADY;
	atomic_store(&dp->stop, false);
	ret = pthread_create(&dp->thread, NULL, thread_main, dp);
	if (ret)
		return -ret;
	dp->started = true;
	return 0;
}

void dataplane_stop(struct dataplane *dp)
{
	atomic_store(&dp->stop, true);
	wake(dp);
	if (dp->started) {
		pthread_join(dp->thread, NULL);
		dp->started = false;
	}
}

/* ---- creation ------------------------------------------------------------ */

static void batch_init(struct wg_batch *b, struct wg_packet *slots, size_t n, uint8_t *bufs)
{
	b->pkt = slots;
	b->n = 0;
	b->cap = n;
	for (size_t i = 0; i < n; i++) {
		slots[i].buf = bufs + i * DP_BUF_LEN;
		slots[i].cap = DP_BUF_LEN;
	}
}

static int epoll_add(int ep, int fd, uint32_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};

	return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int socket_family(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	return ss.ss_family;
}

static unsigned offloads_of(const struct dataplane *dp)
{
	unsigned t = tunio_offloads(dp->tio), o = 0, u = ~0U;

	if (t & TUNIO_OFFLOAD_VNET_HDR)
		o |= DATAPLANE_OFFLOAD_TUN_VNET;
	if (t & TUNIO_OFFLOAD_TSO)
		o |= DATAPLANE_OFFLOAD_TUN_TSO;
	if (t & TUNIO_OFFLOAD_USO)
		o |= DATAPLANE_OFFLOAD_TUN_USO;
	if (t & TUNIO_OFFLOAD_COALESCE)
		o |= DATAPLANE_OFFLOAD_TUN_COALESCE;
	for (size_t k = 0; k < dp->n_udp; k++)
		u &= udpio_offloads(dp->uio[k]);
	if (u & UDPIO_OFFLOAD_GSO)
		o |= DATAPLANE_OFFLOAD_UDP_GSO;
	if (u & UDPIO_OFFLOAD_GRO)
		o |= DATAPLANE_OFFLOAD_UDP_GRO;
	return o;
}

int dataplane_new(const struct dataplane_params *p, struct dataplane **out, const char **why)
{
	struct filter_config none = {0};
	struct wg_device_config wc;
	struct dataplane *dp;
	int ret;

	*out = NULL;
	if (p->tun_fd < 0 || p->n_udp < 1 || p->n_udp > DATAPLANE_MAX_UDP) {
		*why = "data plane needs a TUN fd and one or two UDP sockets";
		return -EINVAL;
	}
	dp = xcalloc(1, sizeof(*dp));
	dp->tun_fd = p->tun_fd;
	dp->n_udp = p->n_udp;
	dp->ep = dp->evfd = dp->tfd = -1;
	dp->tick_ns = p->tick_ns ? p->tick_ns : DATAPLANE_TICK_NS;
	pthread_mutex_init(&dp->lock, NULL);
	atomic_init(&dp->pending, NULL);
	atomic_init(&dp->retired, NULL);
	for (size_t k = 0; k < p->n_udp; k++) {
		dp->udp_fds[k] = p->udp_fds[k];
		dp->udp_family[k] = socket_family(p->udp_fds[k]);
		if (dp->udp_family[k] != AF_INET && dp->udp_family[k] != AF_INET6) {
			*why = "UDP fd is not an IPv4 or IPv6 socket";
			ret = -EAFNOSUPPORT;
			goto err;
		}
		ret = udpio_new(p->udp_fds[k], &p->udp, &dp->uio[k]);
		if (ret < 0) {
			*why = "cannot set up the UDP socket";
			goto err;
		}
	}
	ret = tunio_new(p->tun_fd, &p->tun, &dp->tio);
	if (ret < 0) {
		*why = "cannot set up the TUN fd";
		goto err;
	}
	memcpy(dp->disco_priv, p->disco_private, WG_KEY_LEN);
	if (keys_public(dp->disco_pub, dp->disco_priv) < 0 ||
	    keys_public(dp->node_pub, p->private_key) < 0) {
		*why = "unusable node or disco key";
		ret = -EINVAL;
		goto err;
	}
	wg_device_config_default(&wc);
	memcpy(wc.private_key, p->private_key, WG_KEY_LEN);
	if (p->timers)
		wc.timers = *p->timers;
	wc.mtu = p->mtu;
	wc.path = &dataplane__path_ops;
	wc.path_arg = dp;
	dataplane__magic_init(dp);
	ret = wg_device_new(&wc, mono_ns(), &dp->dev, why);
	sodium_memzero(wc.private_key, sizeof(wc.private_key));
	if (ret < 0)
		goto err;
	dp->fs = filter_state_new();
	ret = filter_new(&none, dp->fs, &dp->deny_all, why);
	if (ret < 0)
		goto err;

	dp->bufs = xcalloc(4 * DATAPLANE_BATCH + DP_LOCAL_SLOTS, DP_BUF_LEN);
	batch_init(&dp->tun_in, dp->slots[0], DATAPLANE_BATCH, dp->bufs);
	batch_init(&dp->udp_in, dp->slots[1], DATAPLANE_BATCH,
		   dp->bufs + 1 * DATAPLANE_BATCH * DP_BUF_LEN);
	batch_init(&dp->tun_out, dp->slots[2], DATAPLANE_BATCH,
		   dp->bufs + 2 * DATAPLANE_BATCH * DP_BUF_LEN);
	batch_init(&dp->udp_out, dp->slots[3], DATAPLANE_BATCH,
		   dp->bufs + 3 * DATAPLANE_BATCH * DP_BUF_LEN);
	batch_init(&dp->local, dp->local_slots, DP_LOCAL_SLOTS,
		   dp->bufs + 4 * DATAPLANE_BATCH * DP_BUF_LEN);

	dp->ep = epoll_create1(EPOLL_CLOEXEC);
	dp->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dp->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (dp->ep < 0 || dp->evfd < 0 || dp->tfd < 0) {
		ret = -errno;
		*why = "cannot create epoll, eventfd or timerfd";
		goto err;
	}
	ret = epoll_add(dp->ep, dp->tun_fd, DP_TAG_TUN);
	for (size_t k = 0; ret == 0 && k < dp->n_udp; k++)
		ret = epoll_add(dp->ep, dp->udp_fds[k], DP_TAG_UDP + (uint32_t)k);
	if (ret == 0)
		ret = epoll_add(dp->ep, dp->evfd, DP_TAG_EVENT);
	if (ret == 0)
		ret = epoll_add(dp->ep, dp->tfd, DP_TAG_TIMER);
	if (ret < 0) {
		*why = "cannot watch the TUN or UDP fds";
		goto err;
	}
	dp->st.offloads = offloads_of(dp);
	dp->pub = dp->st;
	*out = dp;
	return 0;
err:
	dataplane_free(dp);
	return ret;
}

struct filter_state *dataplane_filter_state(struct dataplane *dp)
{
	return dp->fs;
}

void dataplane_free(struct dataplane *dp)
{
	if (!dp)
		return;
	if (dp->evfd >= 0)
		dataplane_stop(dp);
	dataplane_config_free(atomic_exchange(&dp->pending, NULL));
	dataplane_reclaim(dp);
	dataplane_config_free(dp->cur);
	filter_free(dp->deny_all);
	wg_device_free(dp->dev);
	dataplane__magic_free(dp);
	dataplane__q100_free(dp);
	filter_state_free(dp->fs);
	tunio_free(dp->tio);
	for (size_t k = 0; k < DATAPLANE_MAX_UDP; k++)
		udpio_free(dp->uio[k]);
	if (dp->ep >= 0)
		close(dp->ep);
	if (dp->evfd >= 0)
		close(dp->evfd);
	if (dp->tfd >= 0)
		close(dp->tfd);
	free(dp->bufs);
	free(dp->peers_pub);
	pthread_mutex_destroy(&dp->lock);
	sodium_memzero(dp->disco, sizeof(dp->disco));
	sodium_memzero(dp->disco_priv, sizeof(dp->disco_priv));
	free(dp);
}
