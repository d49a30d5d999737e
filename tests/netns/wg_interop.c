/* Our WireGuard device against Debian's wireguard-go (root).
 *
 *   netns wgi<pid>a                              netns wgi<pid>b
 *   ---------------------------------------      ------------------------------
 *   wgt0 (TUN, MTU 1420)                  wgi<pid> (wireguard-go -f, wg set)
 *     100.64.0.1/32  fd7a:115c:a1e0::1/128         100.64.0.2/32  fd7a:115c:a1e0::2/128
 *   device child: poll loop                      |
 *     TUN -> wg_device_tun_rx -> sendto          |
 *     recvfrom -> wg_device_udp_rx -> TUN        |
 *   UDP 10.77.0.1:51820 -- vethA ====== vethB -- UDP 10.77.0.2:51820
 *
 * This binary is every process of the test: the device child (setns into
 * A), the TCP sender and receiver children (setns into A or B), and the
 * cmocka runner. A fresh pair of namespaces per case; wireguard-go and
 * every child are stopped by pid; the namespaces and the key directory are
 * removed in teardown. The device runs with shortened timers (rekey after
 * 5 s, keepalive 2 s, rekey timeout 1 s) so the recovery paths show within
 * seconds.
 *
 * Cases: handshake with us initiating and with wireguard-go initiating,
 * ping v4 and v6 both ways; 10 MB of TCP each way with a rekey forced in
 * the middle, BLAKE2b of the stream compared; wireguard-go restarted in
 * the middle of a TCP stream, recovered within one handshake; a wrong key
 * on wireguard-go's side: no session, no crash. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/keys.h"
#include "common/log.h"
#include "worker/wg/wg_device.h"
#include "fixture.h"

enum {
	SLOTS = 64,
	BUF_LEN = 2048,
	TUN_MTU = 1420,
	TCP_PORT = 5001,
	TRANSFER = 10 * 1024 * 1024,
};

#define V4_A "100.64.0.1"
#define V4_B "100.64.0.2"
#define V6_A "fd7a:115c:a1e0::1"
#define V6_B "fd7a:115c:a1e0::2"

/* Shared between the runner and its children (MAP_SHARED). */
struct shared {
	int ready, quit;
	uint64_t rekey_at_bytes; /* device child: force a rekey there (0 = off) */
	uint64_t forced_rekeys;
	struct wg_device_stats stats;
	struct wg_peer_status peer;
	/* TCP receiver's result. */
	int tcp_done;
	uint64_t tcp_bytes;
	uint8_t tcp_hash[32];
};

static struct fixture {
	char nsa[32], nsb[32], dir[64];
	pid_t dev_pid, wg_pid;
	struct shared *sh;
	uint8_t our_priv[WG_KEY_LEN], our_pub[WG_KEY_LEN], wg_pub[WG_KEY_LEN];
	bool wrong_key;
} fx;

static uint8_t *payload;
static uint8_t payload_hash[32];

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * WG_NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- the device child ------------------------------------------------ */

struct loop {
	struct wg_device *dev;
	int tun, udp;
	struct wg_batch tun_in, udp_in, tun_out, udp_out;
	struct wg_packet slots[4][SLOTS];
};

static void batch_init(struct wg_batch *b, struct wg_packet *slots, uint8_t *bufs)
{
	b->pkt = slots;
	b->n = 0;
	b->cap = SLOTS;
	for (size_t i = 0; i < SLOTS; i++) {
		slots[i].buf = bufs + i * BUF_LEN;
		slots[i].cap = BUF_LEN;
	}
}

static void flush_udp(struct loop *l)
{
	for (size_t i = 0; i < l->udp_out.n; i++) {
		const struct wg_packet *p = &l->udp_out.pkt[i];
		socklen_t alen = p->addr.ss_family == AF_INET ? sizeof(struct sockaddr_in)
							      : sizeof(struct sockaddr_in6);

		(void)sendto(l->udp, p->buf + p->off, p->len, 0, (const struct sockaddr *)&p->addr,
			     alen);
	}
	l->udp_out.n = 0;
}

static void flush_tun(struct loop *l)
{
	for (size_t i = 0; i < l->tun_out.n; i++) {
		const struct wg_packet *p = &l->tun_out.pkt[i];

		(void)write(l->tun, p->buf + p->off, p->len);
	}
	l->tun_out.n = 0;
}

static int open_tun(const char *name)
{
	struct ifreq ifr = {.ifr_flags = IFF_TUN | IFF_NO_PI};
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void device_child(void)
{
	static uint8_t bufs[4][SLOTS * BUF_LEN];
	static struct loop l;
	struct sockaddr_in bind_addr = {.sin_family = AF_INET, .sin_port = htons(51820)};
	struct sockaddr_storage ep;
	struct sockaddr_in *ep4 = (struct sockaddr_in *)&ep;
	struct ip_prefix pfx[2];
	struct wg_device_config cfg;
	struct wg_peer_config pc;
	const char *why = NULL;
	struct shared *s = fx.sh;

	enter_netns(fx.nsa);
	log_set_level(LOG_WARN);
	l.tun = open_tun("wgt0");
	l.udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l.tun < 0 || l.udp < 0 ||
	    bind(l.udp, (struct sockaddr *)&bind_addr, sizeof(bind_addr)) < 0)
		_exit(91);
	wg_device_config_default(&cfg);
	cfg.timers.rekey_after_ns = 5 * WG_NSEC_PER_SEC;
	cfg.timers.reject_after_ns = 20 * WG_NSEC_PER_SEC;
	cfg.timers.keepalive_ns = 2 * WG_NSEC_PER_SEC;
	cfg.timers.rekey_timeout_ns = 1 * WG_NSEC_PER_SEC;
	cfg.timers.rekey_attempt_ns = 30 * WG_NSEC_PER_SEC;
	cfg.mtu = TUN_MTU;
	memcpy(cfg.private_key, fx.our_priv, WG_KEY_LEN);
	if (wg_device_new(&cfg, mono_ns(), &l.dev, &why) < 0)
		_exit(92);
	sodium_memzero(cfg.private_key, sizeof(cfg.private_key));

	memset(&pc, 0, sizeof(pc));
	memcpy(pc.public_key, fx.wg_pub, WG_KEY_LEN);
	if (ip_prefix_parse(V4_B "/32", false, &pfx[0]) < 0 ||
	    ip_prefix_parse(V6_B "/128", false, &pfx[1]) < 0)
		_exit(93);
	pc.allowed_ips = pfx;
	pc.n_allowed_ips = 2;
	memset(&ep, 0, sizeof(ep));
	ep4->sin_family = AF_INET;
	ep4->sin_port = htons(51820);
	inet_pton(AF_INET, "10.77.0.2", &ep4->sin_addr);
	pc.endpoints = &ep;
	pc.n_endpoints = 1;
	if (wg_device_set_peers(l.dev, &pc, 1, mono_ns(), &why) < 0)
		_exit(94);

	batch_init(&l.tun_in, l.slots[0], bufs[0]);
	batch_init(&l.udp_in, l.slots[1], bufs[1]);
	batch_init(&l.tun_out, l.slots[2], bufs[2]);
	batch_init(&l.udp_out, l.slots[3], bufs[3]);
	__atomic_store_n(&s->ready, 1, __ATOMIC_SEQ_CST);

	while (!__atomic_load_n(&s->quit, __ATOMIC_SEQ_CST)) {
		struct pollfd pfd[2] = {{.fd = l.tun, .events = POLLIN},
					{.fd = l.udp, .events = POLLIN}};
		const struct wg_device_stats *st;
		uint64_t now, at;

		(void)poll(pfd, 2, 5);
		now = mono_ns();
		while (l.tun_in.n < l.tun_in.cap) {
			struct wg_packet *p = &l.tun_in.pkt[l.tun_in.n];
			ssize_t r = read(l.tun, p->buf + WG_DEVICE_HEADROOM,
					 p->cap - WG_DEVICE_HEADROOM - WG_DEVICE_TAILROOM);

			if (r <= 0)
				break;
			p->off = WG_DEVICE_HEADROOM;
			p->len = (size_t)r;
			l.tun_in.n++;
		}
		if (l.tun_in.n) {
			wg_device_tun_rx(l.dev, &l.tun_in, &l.udp_out, now);
			flush_udp(&l);
		}
		while (l.udp_in.n < l.udp_in.cap) {
			struct wg_packet *p = &l.udp_in.pkt[l.udp_in.n];
			socklen_t alen = sizeof(p->addr);
			ssize_t r = recvfrom(l.udp, p->buf, p->cap, 0, (struct sockaddr *)&p->addr,
					     &alen);

			if (r <= 0)
				break;
			p->off = 0;
			p->len = (size_t)r;
			l.udp_in.n++;
		}
		if (l.udp_in.n) {
			wg_device_udp_rx(l.dev, &l.udp_in, &l.tun_out, &l.udp_out, now);
			flush_tun(&l);
			flush_udp(&l);
		}
		wg_device_timers(l.dev, now, &l.udp_out);
		flush_udp(&l);

		st = wg_device_stats(l.dev);
		at = __atomic_load_n(&s->rekey_at_bytes, __ATOMIC_SEQ_CST);
		if (at && st->tx_bytes + st->rx_bytes >= at) {
			wg_device_initiate(l.dev, fx.wg_pub, now, &l.udp_out);
			flush_udp(&l);
			__atomic_store_n(&s->rekey_at_bytes, 0, __ATOMIC_SEQ_CST);
			__atomic_add_fetch(&s->forced_rekeys, 1, __ATOMIC_SEQ_CST);
		}
		s->stats = *st;
		wg_device_peer_status(l.dev, fx.wg_pub, now, &s->peer);
	}
	wg_device_free(l.dev);
	_exit(0);
}

/* ---- TCP children ---------------------------------------------------- */

static void tcp_receiver(const char *ns, int family)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(TCP_PORT)};
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(TCP_PORT)};
	int one = 1, ls, st;
	uint64_t total;

	enter_netns(ns);
	ls = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ls < 0 ||
	    (family == AF_INET ? bind(ls, (struct sockaddr *)&a4, sizeof(a4))
			       : bind(ls, (struct sockaddr *)&a6, sizeof(a6))) < 0 ||
	    listen(ls, 1) < 0)
		_exit(95);
	__atomic_store_n(&fx.sh->ready, 2, __ATOMIC_SEQ_CST);
	st = accept_and_hash(ls, fx.sh->tcp_hash, &total);
	if (st == 96 || st == 97)
		_exit(st);
	fx.sh->tcp_bytes = total;
	__atomic_store_n(&fx.sh->tcp_done, 1, __ATOMIC_SEQ_CST);
	_exit(st);
}

/* Sends the payload; pace_ms > 0 sends it in 100 chunks that far apart. */
static void tcp_sender(const char *ns, int family, const char *dst, unsigned pace_ms)
{
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_port = htons(TCP_PORT)};
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(TCP_PORT)};
	size_t off = 0, chunk = pace_ms ? TRANSFER / 100 : TRANSFER;
	int s;

	enter_netns(ns);
	s = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (family == AF_INET)
		inet_pton(AF_INET, dst, &a4.sin_addr);
	else
		inet_pton(AF_INET6, dst, &a6.sin6_addr);
	if (s < 0 || (family == AF_INET ? connect(s, (struct sockaddr *)&a4, sizeof(a4))
					: connect(s, (struct sockaddr *)&a6, sizeof(a6))) < 0)
		_exit(99);
	while (off < TRANSFER) {
		size_t end = off + chunk < TRANSFER ? off + chunk : TRANSFER;

		while (off < end) {
			ssize_t w = write(s, payload + off, end - off);

			if (w <= 0)
				_exit(100);
			off += (size_t)w;
		}
		if (pace_ms)
			sleep_ms(pace_ms);
	}
	close(s);
	_exit(0);
}

static pid_t spawn(void (*fn)(void))
{
	pid_t pid = fork();

	if (pid == 0)
		fn();
	return pid;
}

/* Waits for pid up to ms; kills it (by pid) on timeout. Returns its exit
 * status or -1. */
static int reap(pid_t pid, unsigned ms)
{
	int st;

	for (unsigned t = 0; t < ms; t += 10) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		sleep_ms(10);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

/* ---- wireguard-go ---------------------------------------------------- */

/* wireguard-go's UAPI socket, /var/run/wireguard/<name>.sock, is shared by
 * every network namespace: a name of our own keeps parallel runs apart. */
static const char *wg_name(void)
{
	static char name[16];

	if (!name[0])
		snprintf(name, sizeof(name), "wgi%d", (int)getpid() % 1000000);
	return name;
}

static int start_wireguard_go(void)
{
	char our_b64[sodium_base64_ENCODED_LEN(WG_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
	uint8_t peer_key[WG_KEY_LEN];
	const char *name = wg_name(); /* before fork: it caches our pid */
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

		dup2(null, 1);
		dup2(null, 2);
		setenv("WG_PROCESS_FOREGROUND", "1", 1);
		execlp("ip", "ip", "netns", "exec", fx.nsb, "wireguard-go", "-f", name,
		       (char *)NULL);
		_exit(127);
	}
	fx.wg_pid = pid;
	/* Ready once its UAPI socket answers: the link alone appears earlier,
	 * and a restarted wireguard-go's old link may still be there. */
	for (int i = 0;
	     i < 300 && sh("ip netns exec %s wg show %s >/dev/null 2>&1", fx.nsb, wg_name()) != 0;
	     i++)
		sleep_ms(10);
	if (fx.wrong_key)
		keys_public(peer_key, (const uint8_t[32]){1, 2, 3, 4, 5, 6, 7, 8});
	else
		memcpy(peer_key, fx.our_pub, WG_KEY_LEN);
	sodium_bin2base64(our_b64, sizeof(our_b64), peer_key, WG_KEY_LEN,
			  sodium_base64_VARIANT_ORIGINAL);
	if (sh("ip netns exec %s wg set %s listen-port 51820 private-key %s/wg.key peer %s "
	       "allowed-ips " V4_A "/32," V6_A "/128 endpoint 10.77.0.1:51820",
	       fx.nsb, wg_name(), fx.dir, our_b64) != 0)
		return -1;
	if (sh("ip -n %s addr add " V4_B "/32 dev %s && "
	       "ip -n %s addr add " V6_B "/128 dev %s nodad && "
	       "ip -n %s link set %s up && ip -n %s route add " V4_A "/32 dev %s && "
	       "ip -n %s route add " V6_A "/128 dev %s",
	       fx.nsb, wg_name(), fx.nsb, wg_name(), fx.nsb, wg_name(), fx.nsb, wg_name(), fx.nsb,
	       wg_name()) != 0)
		return -1;
	return 0;
}

static void stop_wireguard_go(void)
{
	int st;

	if (fx.wg_pid <= 0)
		return;
	kill(fx.wg_pid, SIGTERM);
	for (int i = 0; i < 300; i++) {
		if (waitpid(fx.wg_pid, &st, WNOHANG) == fx.wg_pid) {
			fx.wg_pid = 0;
			return;
		}
		sleep_ms(10);
	}
	kill(fx.wg_pid, SIGKILL);
	waitpid(fx.wg_pid, &st, 0);
	fx.wg_pid = 0;
}

/* ---- fixture --------------------------------------------------------- */

static void read_wg_pub(void)
{
	char cmd[256], line[128];
	size_t bin_len = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "wg pubkey < %s/wg.key", fx.dir);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(line, sizeof(line), f));
	pclose(f);
	line[strcspn(line, "\n")] = 0;
	assert_int_equal(sodium_base642bin(fx.wg_pub, WG_KEY_LEN, line, strlen(line), NULL,
					   &bin_len, NULL, sodium_base64_VARIANT_ORIGINAL),
			 0);
	assert_int_equal(bin_len, WG_KEY_LEN);
}

static void device_child_entry(void)
{
	device_child();
}

static int setup_common(bool wrong_key)
{
	int pid = (int)getpid();

	memset(&fx, 0, sizeof(fx));
	fx.wrong_key = wrong_key;
	snprintf(fx.nsa, sizeof(fx.nsa), "wgi%da", pid);
	snprintf(fx.nsb, sizeof(fx.nsb), "wgi%db", pid);
	snprintf(fx.dir, sizeof(fx.dir), "/tmp/wgi.XXXXXX");
	if (!mkdtemp(fx.dir))
		return -1;
	fx.sh = mmap(NULL, sizeof(*fx.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
		     0);
	if (fx.sh == MAP_FAILED)
		return -1;
	memset(fx.sh, 0, sizeof(*fx.sh));
	if (sh("ip netns add %s && ip netns add %s", fx.nsa, fx.nsb) != 0 ||
	    sh("ip link add wgia%d netns %s type veth peer name wgib%d netns %s", pid, fx.nsa, pid,
	       fx.nsb) != 0 ||
	    sh("ip -n %s link set lo up && ip -n %s link set lo up", fx.nsa, fx.nsb) != 0 ||
	    sh("ip -n %s addr add 10.77.0.1/24 dev wgia%d && ip -n %s link set wgia%d up", fx.nsa,
	       pid, fx.nsa, pid) != 0 ||
	    sh("ip -n %s addr add 10.77.0.2/24 dev wgib%d && ip -n %s link set wgib%d up", fx.nsb,
	       pid, fx.nsb, pid) != 0)
		return -1;
	/* wireguard-go's key: made by wg, kept in a 0700 directory. */
	if (sh("umask 077 && wg genkey > %s/wg.key", fx.dir) != 0)
		return -1;
	read_wg_pub();
	keys_generate(fx.our_priv);
	if (keys_public(fx.our_pub, fx.our_priv) < 0)
		return -1;

	fx.dev_pid = spawn(device_child_entry);
	for (int i = 0; i < 500 && !__atomic_load_n(&fx.sh->ready, __ATOMIC_SEQ_CST); i++)
		sleep_ms(10);
	if (!fx.sh->ready)
		return -1;
	if (sh("ip -n %s link set wgt0 mtu %d up && ip -n %s addr add " V4_A "/32 dev wgt0 && "
	       "ip -n %s addr add " V6_A "/128 dev wgt0 nodad && "
	       "ip -n %s route add " V4_B "/32 dev wgt0 && ip -n %s route add " V6_B
	       "/128 dev wgt0",
	       fx.nsa, TUN_MTU, fx.nsa, fx.nsa, fx.nsa, fx.nsa) != 0)
		return -1;
	return start_wireguard_go();
}

static int setup(void **state)
{
	(void)state;
	return setup_common(false);
}

static int setup_wrong_key(void **state)
{
	(void)state;
	return setup_common(true);
}

static int teardown(void **state)
{
	(void)state;
	stop_wireguard_go();
	if (fx.dev_pid > 0) {
		__atomic_store_n(&fx.sh->quit, 1, __ATOMIC_SEQ_CST);
		reap(fx.dev_pid, 3000);
		fx.dev_pid = 0;
	}
	sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", fx.nsa, fx.nsb);
	sh("rm -rf %s", fx.dir);
	if (fx.sh && fx.sh != MAP_FAILED)
		munmap(fx.sh, sizeof(*fx.sh));
	fx.sh = NULL;
	sodium_memzero(fx.our_priv, sizeof(fx.our_priv));
	return 0;
}

/* ---- checks ---------------------------------------------------------- */

/* What the device saw, for a failing case's log. */
static void dump(void)
{
	const struct wg_device_stats *s = &fx.sh->stats;

	print_message("device: init sent %llu, resp sent %llu, completed %llu, tx %llu, rx %llu, "
		      "keepalives %llu/%llu, drops: no peer %llu, no path %llu, bad handshake "
		      "%llu, unknown index %llu, bad data %llu, source %llu, bad packet %llu; "
		      "session %d\n",
		      (unsigned long long)s->handshake_initiations_sent,
		      (unsigned long long)s->handshake_responses_sent,
		      (unsigned long long)s->handshakes_completed, (unsigned long long)s->tx_data,
		      (unsigned long long)s->rx_data, (unsigned long long)s->tx_keepalives,
		      (unsigned long long)s->rx_keepalives, (unsigned long long)s->drop_no_peer,
		      (unsigned long long)s->drop_no_path,
		      (unsigned long long)s->drop_bad_handshake,
		      (unsigned long long)s->drop_unknown_index,
		      (unsigned long long)s->drop_bad_data, (unsigned long long)s->drop_source,
		      (unsigned long long)s->drop_bad_packet, fx.sh->peer.has_session);
	sh("ip netns exec %s wg show %s | grep -v 'private key' >&2", fx.nsb, wg_name());
}

/* One ping from ns to addr; up to `tries` attempts, 1 s each. */
static bool ping(const char *ns, const char *addr, int tries)
{
	for (int i = 0; i < tries; i++) {
		if (sh("ip netns exec %s busybox ping -c 1 -W 1 %s >/dev/null 2>&1", ns, addr) == 0)
			return true;
	}
	dump();
	return false;
}

static void device_alive(void)
{
	int st;

	assert_int_equal(waitpid(fx.dev_pid, &st, WNOHANG), 0);
}

static void ping_all_ways(void)
{
	assert_true(ping(fx.nsa, V4_B, 3));
	assert_true(ping(fx.nsa, V6_B, 3));
	assert_true(ping(fx.nsb, V4_A, 3));
	assert_true(ping(fx.nsb, V6_A, 3));
}

static void test_we_initiate(void **state)
{
	(void)state;
	assert_true(ping(fx.nsa, V4_B, 5));
	assert_true(fx.sh->stats.handshake_initiations_sent >= 1);
	assert_int_equal(fx.sh->stats.handshake_responses_sent, 0);
	assert_true(fx.sh->stats.handshakes_completed >= 1);
	ping_all_ways();
	print_message("we initiated: %llu initiation(s), %llu data in, %llu data out\n",
		      (unsigned long long)fx.sh->stats.handshake_initiations_sent,
		      (unsigned long long)fx.sh->stats.rx_data,
		      (unsigned long long)fx.sh->stats.tx_data);
	assert_int_equal(sh("ip netns exec %s wg show %s latest-handshakes | "
			    "awk '{ exit !($2 > 0) }'",
			    fx.nsb, wg_name()),
			 0);
	device_alive();
}

static void test_wireguard_go_initiates(void **state)
{
	(void)state;
	assert_true(ping(fx.nsb, V4_A, 5));
	assert_int_equal(fx.sh->stats.handshake_initiations_sent, 0);
	assert_true(fx.sh->stats.handshake_responses_sent >= 1);
	ping_all_ways();
	print_message("wireguard-go initiated: %llu response(s) from us\n",
		      (unsigned long long)fx.sh->stats.handshake_responses_sent);
	device_alive();
}

static void receiver_b4(void)
{
	tcp_receiver(fx.nsb, AF_INET);
}
static void receiver_a6(void)
{
	tcp_receiver(fx.nsa, AF_INET6);
}
static void sender_a_to_b4(void)
{
	tcp_sender(fx.nsa, AF_INET, V4_B, 0);
}
static void sender_a_to_b4_paced(void)
{
	tcp_sender(fx.nsa, AF_INET, V4_B, 50);
}
static void sender_b_to_a6(void)
{
	tcp_sender(fx.nsb, AF_INET6, V6_A, 0);
}

/* One 10 MB TCP stream; during_ms > 0 calls during() that long after the
 * start. Returns the seconds it took. */
static double transfer(void (*receiver)(void), void (*sender)(void), unsigned during_ms,
		       void (*during)(void))
{
	uint64_t t0;
	pid_t r, s;
	int rs, ss;

	fx.sh->ready = 0;
	fx.sh->tcp_done = 0;
	r = spawn(receiver);
	for (int i = 0; i < 300 && __atomic_load_n(&fx.sh->ready, __ATOMIC_SEQ_CST) != 2; i++)
		sleep_ms(10);
	t0 = mono_ns();
	s = spawn(sender);
	if (during) {
		sleep_ms(during_ms);
		during();
	}
	ss = reap(s, 90000);
	rs = reap(r, 10000);
	assert_int_equal(ss, 0);
	assert_int_equal(rs, 0);
	assert_int_equal(fx.sh->tcp_bytes, TRANSFER);
	assert_memory_equal(fx.sh->tcp_hash, payload_hash, 32);
	return (double)(mono_ns() - t0) / 1e9;
}

static void test_tcp_10mb_with_rekey(void **state)
{
	uint64_t h0, h1, h2, base;
	double secs;

	(void)state;
	assert_true(ping(fx.nsa, V4_B, 5));
	h0 = fx.sh->stats.handshakes_completed;
	base = fx.sh->stats.tx_bytes + fx.sh->stats.rx_bytes;
	__atomic_store_n(&fx.sh->rekey_at_bytes, base + 3 * 1024 * 1024, __ATOMIC_SEQ_CST);
	secs = transfer(receiver_b4, sender_a_to_b4, 0, NULL);
	h1 = fx.sh->stats.handshakes_completed;
	print_message("A->B 10 MB over v4: %.2f s (%.0f Mbit/s), handshakes during: %llu\n", secs,
		      TRANSFER * 8 / secs / 1e6, (unsigned long long)(h1 - h0));
	assert_int_equal(fx.sh->forced_rekeys, 1);
	assert_true(h1 > h0);

	base = fx.sh->stats.tx_bytes + fx.sh->stats.rx_bytes;
	__atomic_store_n(&fx.sh->rekey_at_bytes, base + 3 * 1024 * 1024, __ATOMIC_SEQ_CST);
	secs = transfer(receiver_a6, sender_b_to_a6, 0, NULL);
	h2 = fx.sh->stats.handshakes_completed;
	print_message("B->A 10 MB over v6: %.2f s (%.0f Mbit/s), handshakes during: %llu\n", secs,
		      TRANSFER * 8 / secs / 1e6, (unsigned long long)(h2 - h1));
	assert_int_equal(fx.sh->forced_rekeys, 2);
	assert_true(h2 > h1);
	print_message("drops: bad data %llu, staged %llu, batch full %llu\n",
		      (unsigned long long)fx.sh->stats.drop_bad_data,
		      (unsigned long long)fx.sh->stats.drop_staged,
		      (unsigned long long)fx.sh->stats.drop_batch_full);
	device_alive();
}

static struct {
	uint64_t at_ns, recovered_ns;
	uint64_t completed, initiations, responses; /* before the restart */
	uint64_t d_initiations, d_responses;	    /* until the first new session */
} restart;

/* Restarts wireguard-go, then watches the device until its first new
 * session and notes how many handshake messages that took. */
static void restart_wireguard_go(void)
{
	restart.completed = fx.sh->stats.handshakes_completed;
	restart.initiations = fx.sh->stats.handshake_initiations_sent;
	restart.responses = fx.sh->stats.handshake_responses_sent;
	stop_wireguard_go();
	restart.at_ns = mono_ns();
	assert_int_equal(start_wireguard_go(), 0);
	for (int i = 0; i < 3000; i++) {
		if (fx.sh->stats.handshakes_completed > restart.completed)
			break;
		sleep_ms(5);
	}
	restart.recovered_ns = mono_ns();
	restart.d_initiations = fx.sh->stats.handshake_initiations_sent - restart.initiations;
	restart.d_responses = fx.sh->stats.handshake_responses_sent - restart.responses;
}

/* wireguard-go dies and comes back 1.5 s into a paced 10 MB stream: the
 * stream completes intact, after exactly one new handshake. */
static void test_wireguard_go_restart(void **state)
{
	double secs;

	(void)state;
	assert_true(ping(fx.nsa, V4_B, 5));
	secs = transfer(receiver_b4, sender_a_to_b4_paced, 1500, restart_wireguard_go);
	print_message("stream across a wireguard-go restart: %.2f s in all; new session %.2f s "
		      "after the restart, after %llu initiation(s) and %llu response(s) from us\n",
		      secs, (double)(restart.recovered_ns - restart.at_ns) / 1e9,
		      (unsigned long long)restart.d_initiations,
		      (unsigned long long)restart.d_responses);
	/* One handshake: a single initiation (ours, or wireguard-go's that we
	 * answered once), within KEEPALIVE + REKEY_TIMEOUT + jitter. */
	assert_int_equal(restart.d_initiations + restart.d_responses, 1);
	assert_true(restart.recovered_ns - restart.at_ns < 5 * WG_NSEC_PER_SEC);
	assert_true(ping(fx.nsb, V4_A, 3));
	device_alive();
}

static void test_wrong_key(void **state)
{
	(void)state;
	assert_false(ping(fx.nsa, V4_B, 2));
	assert_false(ping(fx.nsb, V4_A, 2));
	assert_false(fx.sh->peer.has_session);
	assert_int_equal(fx.sh->stats.handshakes_completed, 0);
	assert_true(fx.sh->stats.drop_bad_handshake >= 1);
	assert_true(fx.sh->stats.handshake_initiations_sent >= 1);
	print_message("wrong key: %llu initiations unanswered, %llu handshakes dropped\n",
		      (unsigned long long)fx.sh->stats.handshake_initiations_sent,
		      (unsigned long long)fx.sh->stats.drop_bad_handshake);
	device_alive();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_we_initiate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wireguard_go_initiates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tcp_10mb_with_rekey, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wireguard_go_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key, setup_wrong_key, teardown),
	};
	int ret;

	if (geteuid() != 0 || access("/usr/bin/wireguard-go", X_OK) != 0 ||
	    access("/dev/net/tun", R_OK | W_OK) != 0) {
		fprintf(stderr, "wg_interop: needs root, /dev/net/tun and wireguard-go\n");
		return 77;
	}
	if (sodium_init() < 0)
		return 1;
	payload = malloc(TRANSFER);
	if (!payload)
		return 1;
	randombytes_buf_deterministic(payload, TRANSFER,
				      (const uint8_t[randombytes_SEEDBYTES]){0x77, 0x67});
	crypto_generichash(payload_hash, 32, payload, TRANSFER, NULL, 0);
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	free(payload);
	return ret;
}
