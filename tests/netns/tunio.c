/* tunio against the kernel (root): two TUN devices in two namespaces, this
 * process forwarding between their fds through tunio_read()/tunio_write():
 *
 *   tscni-tunio-<pid>-<n>a                     tscni-tunio-<pid>-<n>b
 *   ----------------------                     ----------------------
 *   tsio<pid>a 10.201.0.1/24 fd10:201::1/64    tsio<pid>b 10.201.0.2/24 fd10:201::2/64
 *   TCP/UDP sender                             TCP/UDP receiver
 *        |                                               ^
 *        v            this process (host netns)          |
 *      fd A ---> tunio_read --> tunio_write ---------> fd B
 *      fd A <--- tunio_write <-- tunio_read <--------- fd B  (ACKs)
 *
 * Each run makes both namespaces and devices afresh (the vnet header is
 * chosen at device creation) and removes them on every path. A TCP stream
 * (TSCNI_TUNIO_MB MiB, default 128) goes from a to b, v4 or v6; the byte
 * count and a hash of the stream must match. Each offload is then switched
 * off in turn, and TSCNI_FORCE_FALLBACK=all must give the plain path.
 * Printed: throughput, packets per read/write syscall, syscalls per MiB. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <cmocka.h>

#include "kfeat.h"
#include "netns.h"
#include "pktbuf.h"
#include "tunio.h"
#include "fixture.h"

enum { CHUNK = 64 * 1024, PORT = 5001 };

struct side {
	char ns[64];
	char dev[IFNAMSIZ];
	int nsfd, tunfd;
	struct tunio *io;
};

struct run {
	struct side a, b;
	struct tunio_config cfg;
	atomic_bool stop;
	uint64_t polls;
	int fwd_err;
};

static int run_counter;
static uint8_t bufs[2][PKTBUF_BATCH_MAX][PKTBUF_SIZE];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int side_up(struct side *s, const char *suffix, int host, const struct tunio_config *cfg)
{
	char path[128];
	int ret;

	snprintf(s->ns, sizeof(s->ns), "tscni-tunio-%d-%d%s", (int)getpid(), run_counter, suffix);
	snprintf(s->dev, sizeof(s->dev), "tsio%d%s", (int)getpid() % 100000, suffix);
	if (sh("ip netns add %s", s->ns) != 0)
		return -1;
	snprintf(path, sizeof(path), "/run/netns/%s", s->ns);
	s->nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->nsfd < 0)
		return -1;
	ret = tunio_create(s->dev, cfg, &s->tunfd);
	if (ret < 0) {
		fprintf(stderr, "tunio_create %s: %s\n", s->dev, strerror(-ret));
		return -1;
	}
	/* The fd keeps carrying the device's traffic after the move. */
	if (sh("ip link set %s netns %s", s->dev, s->ns) != 0 ||
	    sh("ip -n %s link set lo up", s->ns) != 0 ||
	    sh("ip -n %s link set %s mtu 1280 up", s->ns, s->dev) != 0 ||
	    sh("ip -n %s addr add 10.201.0.%d/24 dev %s", s->ns, host, s->dev) != 0 ||
	    sh("ip -n %s addr add fd10:201::%d/64 dev %s nodad", s->ns, host, s->dev) != 0)
		return -1;
	ret = tunio_new(s->tunfd, cfg, &s->io);
	if (ret < 0) {
		fprintf(stderr, "tunio_new: %s\n", strerror(-ret));
		return -1;
	}
	return 0;
}

static void side_down(struct side *s)
{
	tunio_free(s->io);
	s->io = NULL;
	if (s->tunfd >= 0)
		close(s->tunfd);
	s->tunfd = -1;
	if (s->nsfd >= 0)
		close(s->nsfd);
	s->nsfd = -1;
	if (s->ns[0] && sh("ip netns del %s 2>/dev/null", s->ns) != 0) {
		/* Already gone. */
	}
	s->ns[0] = '\0';
}

static struct run *run_new(const struct tunio_config *cfg)
{
	struct run *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->a.nsfd = r->a.tunfd = r->b.nsfd = r->b.tunfd = -1;
	r->cfg = *cfg;
	run_counter++;
	if (side_up(&r->a, "a", 1, cfg) < 0 || side_up(&r->b, "b", 2, cfg) < 0) {
		side_down(&r->a);
		side_down(&r->b);
		free(r);
		fail_msg("could not build the namespaces");
	}
	return r;
}

static void run_free(struct run *r)
{
	side_down(&r->a);
	side_down(&r->b);
	free(r);
}

static void batch_init(struct pktbuf_batch *b, int which)
{
	memset(b, 0, sizeof(*b));
	b->cap = PKTBUF_BATCH_MAX;
	for (unsigned i = 0; i < PKTBUF_BATCH_MAX; i++) {
		b->pkt[i].head = bufs[which][i];
		b->pkt[i].size = PKTBUF_SIZE;
		b->pkt[i].off = PKTBUF_HEADROOM;
	}
}

/* Moves everything readable from src to dst. */
static int pump(struct tunio *src, struct tunio *dst, struct pktbuf_batch *b)
{
	for (;;) {
		int n;

		b->n = 0;
		n = tunio_read(src, b);
		if (n == -EAGAIN)
			return 0;
		if (n < 0)
			return n;
		n = tunio_write(dst, b);
		if (n < 0)
			return n;
		if (b->n < b->cap)
			return 0; /* the read stopped at EAGAIN */
	}
}

static void *forward(void *arg)
{
	struct run *r = arg;
	struct pktbuf_batch *b = malloc(sizeof(*b));

	batch_init(b, 0);
	while (!atomic_load(&r->stop)) {
		struct pollfd p[2] = {{.fd = r->a.tunfd, .events = POLLIN},
				      {.fd = r->b.tunfd, .events = POLLIN}};
		int ret;

		if (poll(p, 2, 50) < 0)
			continue;
		r->polls++;
		ret = p[0].revents ? pump(r->a.io, r->b.io, b) : 0;
		if (ret == 0 && p[1].revents)
			ret = pump(r->b.io, r->a.io, b);
		if (ret < 0) {
			r->fwd_err = ret;
			break;
		}
	}
	free(b);
	return NULL;
}

/* ---- The TCP stream ---- */

struct sock_req {
	int family, type;
	int fd;
};

static int make_socket(void *arg)
{
	struct sock_req *q = arg;

	q->fd = socket(q->family, q->type | SOCK_CLOEXEC, 0);
	return q->fd < 0 ? -errno : 0;
}

static int socket_in(int nsfd, int family, int type)
{
	struct sock_req q = {.family = family, .type = type, .fd = -1};

	assert_int_equal(netns_run(nsfd, make_socket, &q), 0);
	return q.fd;
}

static void addr_of(int family, int host, uint16_t port, struct sockaddr_storage *ss,
		    socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (void *)ss;
		char a[32];

		snprintf(a, sizeof(a), "10.201.0.%d", host);
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		inet_pton(AF_INET, a, &s->sin_addr);
		*len = sizeof(*s);
	} else {
		struct sockaddr_in6 *s = (void *)ss;
		char a[64];

		snprintf(a, sizeof(a), "fd10:201::%d", host);
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		inet_pton(AF_INET6, a, &s->sin6_addr);
		*len = sizeof(*s);
	}
}

/* Order-dependent hash of a 64 KiB block sequence (the last may be short). */
static uint64_t hash_block(uint64_t h, const uint8_t *p, size_t n)
{
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ULL;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

struct sender {
	int fd;
	size_t bytes;
	const uint8_t *data; /* 1 MiB + CHUNK */
	uint64_t hash;
	int err;
};

static void *send_stream(void *arg)
{
	struct sender *s = arg;
	size_t sent = 0;
	unsigned k = 0;

	s->hash = 0xcbf29ce484222325ULL;
	while (sent < s->bytes) {
		size_t n = s->bytes - sent < CHUNK ? s->bytes - sent : CHUNK;
		const uint8_t *p = s->data + (k++ * 4099) % (1 << 20);

		s->hash = hash_block(s->hash, p, n);
		for (size_t off = 0; off < n;) {
			ssize_t w = send(s->fd, p + off, n - off, MSG_NOSIGNAL);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				s->err = -errno;
				return NULL;
			}
			off += (size_t)w;
		}
		sent += n;
	}
	shutdown(s->fd, SHUT_WR);
	return NULL;
}

static uint8_t *stream_data(void)
{
	uint8_t *d = malloc((1 << 20) + CHUNK);
	uint64_t x = 88172645463325252ULL;

	assert_non_null(d);
	for (size_t i = 0; i < (1 << 20) + CHUNK; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		d[i] = (uint8_t)x;
	}
	return d;
}

static size_t stream_mib(void)
{
	const char *e = getenv("TSCNI_TUNIO_MB");
	char *end;
	unsigned long v;

	if (!e || !*e)
		return 128;
	v = strtoul(e, &end, 10);
	if (*end || v == 0 || v > 4096)
		fail_msg("TSCNI_TUNIO_MB must be 1..4096, got '%s'", e);
	return v;
}

static void report(const char *name, struct run *r, double mib, double secs)
{
	const struct tunio_stats *a = tunio_stats(r->a.io), *b = tunio_stats(r->b.io);
	/* Data flows a -> b: read on a, written on b. */
	double rd = a->read_calls ? (double)a->pkts_in / (double)a->read_calls : 0;
	double wr = b->write_calls ? (double)b->pkts_out / (double)b->write_calls : 0;
	uint64_t calls = a->read_calls + a->write_calls + b->read_calls + b->write_calls + r->polls;

	printf("tunio %-28s offloads a=%#x b=%#x: %7.0f Mbit/s, data %.1f pkts/read "
	       "%.1f pkts/write, %.0f syscalls/MiB (reads %llu writes %llu polls %llu, "
	       "supers in %llu out %llu, drops %llu/%llu)\n",
	       name, tunio_offloads(r->a.io), tunio_offloads(r->b.io), mib * 8 * 1.048576 / secs,
	       rd, wr, (double)calls / mib, (unsigned long long)(a->read_calls + b->read_calls),
	       (unsigned long long)(a->write_calls + b->write_calls), (unsigned long long)r->polls,
	       (unsigned long long)a->supers_in, (unsigned long long)b->supers_out,
	       (unsigned long long)(a->drops_in + b->drops_in),
	       (unsigned long long)(a->drops_out + b->drops_out));
	fflush(stdout);
}

/* A TCP stream a -> b through the forwarder; checks count and hash. */
static void tcp_transfer(const char *name, const struct tunio_config *cfg, int family,
			 unsigned want, unsigned refuse)
{
	struct run *r = run_new(cfg);
	struct sockaddr_storage ss;
	socklen_t sl;
	pthread_t fwd, snd;
	struct sender s = {0};
	int one = 1, lfd, cfd, afd;
	size_t mib = stream_mib(), got = 0;
	uint64_t h = 0xcbf29ce484222325ULL;
	uint8_t *buf = malloc(CHUNK);
	double t0, t1;

	if (kfeat_fallback_forced("tun_vnet_hdr")) {
		/* CI's TSCNI_FORCE_FALLBACK=all run: the plain path, whatever
		 * the configuration asked for. */
		want = 0;
		refuse = TUNIO_OFFLOAD_VNET_HDR | TUNIO_OFFLOAD_TSO | TUNIO_OFFLOAD_USO |
			 TUNIO_OFFLOAD_COALESCE;
	}
	assert_int_equal(tunio_offloads(r->a.io) & want, want);
	assert_int_equal(tunio_offloads(r->a.io) & refuse, 0);
	lfd = socket_in(r->b.nsfd, family, SOCK_STREAM);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	addr_of(family, 2, PORT, &ss, &sl);
	assert_int_equal(bind(lfd, (struct sockaddr *)&ss, sl), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(pthread_create(&fwd, NULL, forward, r), 0);

	cfd = socket_in(r->a.nsfd, family, SOCK_STREAM);
	assert_int_equal(connect(cfd, (struct sockaddr *)&ss, sl), 0);
	afd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(afd >= 0);
	s.fd = cfd;
	s.bytes = mib << 20;
	s.data = stream_data();
	t0 = now_s();
	assert_int_equal(pthread_create(&snd, NULL, send_stream, &s), 0);
	for (;;) {
		ssize_t n = recv(afd, buf, CHUNK, MSG_WAITALL);

		if (n < 0 && errno == EINTR)
			continue;
		assert_true(n >= 0);
		if (n == 0)
			break;
		h = hash_block(h, buf, (size_t)n);
		got += (size_t)n;
	}
	t1 = now_s();
	pthread_join(snd, NULL);
	atomic_store(&r->stop, true);
	pthread_join(fwd, NULL);
	report(name, r, (double)mib, t1 - t0);
	assert_int_equal(s.err, 0);
	assert_int_equal(r->fwd_err, 0);
	assert_int_equal(got, s.bytes);
	assert_true(h == s.hash);
	close(afd);
	close(cfd);
	close(lfd);
	free(buf);
	free((void *)s.data);
	run_free(r);
}

static void test_tcp4_all(void **state)
{
	struct tunio_config cfg = {0};

	(void)state;
	tcp_transfer("tcp4 all offloads", &cfg, AF_INET,
		     TUNIO_OFFLOAD_VNET_HDR | TUNIO_OFFLOAD_TSO | TUNIO_OFFLOAD_COALESCE, 0);
}

static void test_tcp6_all(void **state)
{
	struct tunio_config cfg = {0};

	(void)state;
	tcp_transfer("tcp6 all offloads", &cfg, AF_INET6,
		     TUNIO_OFFLOAD_VNET_HDR | TUNIO_OFFLOAD_TSO | TUNIO_OFFLOAD_COALESCE, 0);
}

static void test_tcp4_no_coalesce(void **state)
{
	struct tunio_config cfg = {.no_coalesce = true};

	(void)state;
	tcp_transfer("tcp4 no coalescing", &cfg, AF_INET,
		     TUNIO_OFFLOAD_VNET_HDR | TUNIO_OFFLOAD_TSO, TUNIO_OFFLOAD_COALESCE);
}

static void test_tcp4_no_tso(void **state)
{
	struct tunio_config cfg = {.no_tso = true};

	(void)state;
	tcp_transfer("tcp4 no TSO (coalescing on)", &cfg, AF_INET,
		     TUNIO_OFFLOAD_VNET_HDR | TUNIO_OFFLOAD_COALESCE,
		     TUNIO_OFFLOAD_TSO | TUNIO_OFFLOAD_USO);
}

static void test_tcp4_no_vnet(void **state)
{
	struct tunio_config cfg = {.no_vnet_hdr = true};

	(void)state;
	tcp_transfer("tcp4 no vnet header", &cfg, AF_INET, 0,
		     TUNIO_OFFLOAD_VNET_HDR | TUNIO_OFFLOAD_TSO | TUNIO_OFFLOAD_COALESCE);
}

static void test_tcp6_forced_fallback(void **state)
{
	struct tunio_config cfg = {0};
	const char *old = getenv("TSCNI_FORCE_FALLBACK");
	char *saved = old ? strdup(old) : NULL;

	(void)state;
	setenv("TSCNI_FORCE_FALLBACK", "all", 1);
	tcp_transfer("tcp6 TSCNI_FORCE_FALLBACK=all", &cfg, AF_INET6, 0,
		     TUNIO_OFFLOAD_VNET_HDR | TUNIO_OFFLOAD_TSO | TUNIO_OFFLOAD_COALESCE);
	if (saved)
		setenv("TSCNI_FORCE_FALLBACK", saved, 1);
	else
		unsetenv("TSCNI_FORCE_FALLBACK");
	free(saved);
}

/* ---- UDP super-packets (USO) ---- */

/* A UDP_SEGMENT sender in a makes the kernel hand USO frames to the TUN;
 * each datagram carries its number and a pattern, checked at b. With
 * forced "tun_uso" the kernel segments before the TUN instead. */
static void udp_transfer(const char *name, bool force_uso_off)
{
	struct tunio_config cfg = {0};
	struct run *r;
	struct sockaddr_storage ss;
	socklen_t sl;
	pthread_t fwd;
	enum { SEG = 1200, SEGS = 20, SENDS = 300 };
	static uint8_t sbuf[SEG * SEGS], rbuf[2048];
	unsigned got = 0, bad = 0;
	int rcvbuf = 8 << 20;

	const char *old = getenv("TSCNI_FORCE_FALLBACK");
	char *saved = old ? strdup(old) : NULL;

	if (force_uso_off && !saved) {
		setenv("TSCNI_FORCE_FALLBACK", "tun_uso", 1);
	} else if (force_uso_off && strcmp(saved, "all") != 0) {
		char list[256];

		snprintf(list, sizeof(list), "tun_uso,%s", saved);
		setenv("TSCNI_FORCE_FALLBACK", list, 1);
	}
	r = run_new(&cfg);
	if (saved)
		setenv("TSCNI_FORCE_FALLBACK", saved, 1);
	else
		unsetenv("TSCNI_FORCE_FALLBACK");
	free(saved);
	if (force_uso_off)
		assert_int_equal(tunio_offloads(r->a.io) & TUNIO_OFFLOAD_USO, 0);
	else if (!(tunio_offloads(r->a.io) & TUNIO_OFFLOAD_USO))
		printf("tunio %s: kernel without TUN USO, testing the fallback\n", name);

	int rfd = socket_in(r->b.nsfd, AF_INET, SOCK_DGRAM);
	int sfd = socket_in(r->a.nsfd, AF_INET, SOCK_DGRAM);
	int seg = SEG;
	struct timeval tv = {.tv_sec = 1};

	setsockopt(rfd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));
	setsockopt(rfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	addr_of(AF_INET, 2, PORT, &ss, &sl);
	assert_int_equal(bind(rfd, (struct sockaddr *)&ss, sl), 0);
	assert_int_equal(connect(sfd, (struct sockaddr *)&ss, sl), 0);
	assert_int_equal(setsockopt(sfd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg)), 0);
	assert_int_equal(pthread_create(&fwd, NULL, forward, r), 0);
	for (unsigned k = 0; k < SENDS; k++) {
		for (unsigned i = 0; i < SEGS; i++) {
			uint32_t num = k * SEGS + i;
			uint8_t *d = sbuf + i * SEG;

			memcpy(d, &num, 4);
			for (unsigned j = 4; j < SEG; j++)
				d[j] = (uint8_t)(num + j);
		}
		assert_int_equal(send(sfd, sbuf, sizeof(sbuf), 0), (ssize_t)sizeof(sbuf));
		/* Pace the sender: this send's datagrams arrive (or 1 s
		 * passes, SO_RCVTIMEO) before the next goes. */
		while (got + bad < (k + 1) * SEGS) {
			ssize_t n = recv(rfd, rbuf, sizeof(rbuf), 0);
			uint32_t num;

			if (n < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			memcpy(&num, rbuf, 4);
			bool ok = n == SEG;

			for (unsigned j = 4; ok && j < SEG; j++)
				ok = rbuf[j] == (uint8_t)(num + j);
			if (ok)
				got++;
			else
				bad++;
		}
	}
	atomic_store(&r->stop, true);
	pthread_join(fwd, NULL);
	const struct tunio_stats *a = tunio_stats(r->a.io);

	printf("tunio %-28s offloads a=%#x: %u/%u datagrams intact, %u bad, %llu reads for "
	       "%llu packets (%llu super-packets)\n",
	       name, tunio_offloads(r->a.io), got, SENDS * SEGS, bad,
	       (unsigned long long)a->read_calls, (unsigned long long)a->pkts_in,
	       (unsigned long long)a->supers_in);
	fflush(stdout);
	assert_int_equal(bad, 0);
	assert_true(got >= SENDS * SEGS * 99 / 100);
	if (tunio_offloads(r->a.io) & TUNIO_OFFLOAD_USO)
		assert_true(a->supers_in > 0);
	else
		assert_int_equal(a->supers_in, 0); /* the kernel cut them before the TUN */
	close(rfd);
	close(sfd);
	run_free(r);
}

static void test_udp_uso(void **state)
{
	(void)state;
	udp_transfer("udp4 USO", false);
}

static void test_udp_uso_forced_off(void **state)
{
	(void)state;
	udp_transfer("udp4 tun_uso forced off", true);
}

/* A failed assertion skips run_free(): remove what this process made. */
static void cleanup_all(void)
{
	for (int n = 1; n <= run_counter; n++)
		if (sh("ip netns del tscni-tunio-%d-%da 2>/dev/null; "
		       "ip netns del tscni-tunio-%d-%db 2>/dev/null",
		       (int)getpid(), n, (int)getpid(), n) != 0) {
			/* Already gone. */
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp4_all),
		cmocka_unit_test(test_tcp6_all),
		cmocka_unit_test(test_tcp4_no_coalesce),
		cmocka_unit_test(test_tcp4_no_tso),
		cmocka_unit_test(test_tcp4_no_vnet),
		cmocka_unit_test(test_tcp6_forced_fallback),
		cmocka_unit_test(test_udp_uso),
		cmocka_unit_test(test_udp_uso_forced_off),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "netns.tunio needs root\n");
		return 77;
	}
	atexit(cleanup_all);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
