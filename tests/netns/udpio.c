/* udpio against the kernel (root): UDP GSO sends and GRO receives across a
 * veth pair between two namespaces this test makes, and every fallback.
 *
 *   tscni-udpio-<pid>-<n>a                    tscni-udpio-<pid>-<n>b
 *   ua<pid> 10.202.0.1/24 fd10:202::1/64 <==> ub<pid> 10.202.0.2/24 fd10:202::2/64
 *   [::]:51820 dual-stack, udpio_send         [::]:51820 dual-stack, udpio_recv
 *
 * Each round sends one batch made of runs to alternating destinations (the
 * receiver's v4-mapped and IPv6 addresses), runs of equal sizes ending in a
 * shorter one, and checks at the other end that every datagram arrived
 * once and intact. Then a bulk transfer prints throughput and datagrams per
 * syscall. Each configuration makes its namespaces afresh and removes them. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include "udpio.h"
#include "fixture.h"

enum { PORT = 51820, ROUNDS = 40, BULK_MIB = 64 };

struct pair {
	char ns[2][64];
	int nsfd[2];
	int fd[2]; /* a: sender, b: receiver */
	struct udpio *io[2];
};

static int pair_counter;
static uint8_t bufs[2][PKTBUF_BATCH_MAX][PKTBUF_SIZE];

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int make_socket(void *arg)
{
	int *fd = arg, zero = 0, big = 16 << 20;
	struct sockaddr_in6 any = {.sin6_family = AF_INET6, .sin6_port = htons(PORT)};

	*fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return -errno;
	/* As the supervisor does: dual-stack, forced buffer sizes. */
	if (setsockopt(*fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
	    setsockopt(*fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big)) < 0 ||
	    setsockopt(*fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0 ||
	    bind(*fd, (struct sockaddr *)&any, sizeof(any)) < 0)
		return -errno;
	return 0;
}

static void pair_free(struct pair *p)
{
	for (int i = 0; i < 2; i++) {
		udpio_free(p->io[i]);
		if (p->fd[i] >= 0)
			close(p->fd[i]);
		if (p->nsfd[i] >= 0)
			close(p->nsfd[i]);
		if (p->ns[i][0] && sh("ip netns del %s 2>/dev/null", p->ns[i]) != 0) {
			/* Already gone. */
		}
	}
	free(p);
}

static struct pair *pair_new(const struct udpio_config *cfg_a, const struct udpio_config *cfg_b)
{
	struct pair *p = calloc(1, sizeof(*p));
	int pid = (int)getpid();
	char path[128];

	assert_non_null(p);
	p->nsfd[0] = p->nsfd[1] = p->fd[0] = p->fd[1] = -1;
	pair_counter++;
	for (int i = 0; i < 2; i++) {
		snprintf(p->ns[i], sizeof(p->ns[i]), "tscni-udpio-%d-%d%c", pid, pair_counter,
			 'a' + i);
		if (sh("ip netns add %s", p->ns[i]) != 0)
			goto fail;
		snprintf(path, sizeof(path), "/run/netns/%s", p->ns[i]);
		p->nsfd[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (p->nsfd[i] < 0)
			goto fail;
	}
	if (sh("ip -n %s link add ua%d type veth peer name ub%d netns %s", p->ns[0], pid, pid,
	       p->ns[1]) != 0)
		goto fail;
	for (int i = 0; i < 2; i++)
		if (sh("ip -n %s link set lo up && ip -n %s link set u%c%d up && "
		       "ip -n %s addr add 10.202.0.%d/24 dev u%c%d && "
		       "ip -n %s addr add fd10:202::%d/64 dev u%c%d nodad",
		       p->ns[i], p->ns[i], 'a' + i, pid, p->ns[i], i + 1, 'a' + i, pid, p->ns[i],
		       i + 1, 'a' + i, pid) != 0)
			goto fail;
	for (int i = 0; i < 2; i++) {
		if (netns_run(p->nsfd[i], make_socket, &p->fd[i]) != 0)
			goto fail;
		if (udpio_new(p->fd[i], i == 0 ? cfg_a : cfg_b, &p->io[i]) != 0)
			goto fail;
	}
	return p;
fail:
	pair_free(p);
	fail_msg("could not build the veth pair");
	return NULL;
}

static void batch_init(struct pktbuf_batch *b, int which, uint32_t off)
{
	memset(b, 0, sizeof(*b));
	b->cap = PKTBUF_BATCH_MAX;
	for (unsigned i = 0; i < PKTBUF_BATCH_MAX; i++) {
		b->pkt[i].head = bufs[which][i];
		b->pkt[i].size = PKTBUF_SIZE;
		b->pkt[i].off = off;
	}
}

static void dest(struct pktbuf *p, bool v6)
{
	struct sockaddr_in6 *s = (void *)&p->addr;

	memset(&p->addr, 0, sizeof(p->addr));
	s->sin6_family = AF_INET6;
	s->sin6_port = htons(PORT);
	inet_pton(AF_INET6, v6 ? "fd10:202::2" : "::ffff:10.202.0.2", &s->sin6_addr);
	p->addr_len = sizeof(*s);
}

/* Datagram id's content: the id, then bytes derived from it. */
static void fill(uint8_t *d, uint32_t id, size_t len)
{
	memcpy(d, &id, 4);
	for (size_t j = 4; j < len; j++)
		d[j] = (uint8_t)(id * 7 + j);
}

static bool intact(const uint8_t *d, size_t len, uint32_t *id)
{
	if (len < 4)
		return false;
	memcpy(id, d, 4);
	for (size_t j = 4; j < len; j++)
		if (d[j] != (uint8_t)(*id * 7 + j))
			return false;
	return true;
}

/* The size of datagram i of a round: runs of 30 equal sizes, the last of
 * each run shorter, the destination changing with each run. */
static size_t size_of(unsigned round, unsigned i, bool *v6)
{
	unsigned run = i / 30, pos = i % 30;
	size_t base = 200 + (size_t)((round * 5 + run) % 8) * 170; /* 200 .. 1390 */

	*v6 = (run + round) & 1;
	return pos == 29 ? base / 2 : base;
}

/* Receives until every datagram of round came, or 2 s passed without any.
 * A late datagram of an earlier round counts for its own round. */
static void receive_round(struct pair *p, struct pktbuf_batch *rb, unsigned round, unsigned want,
			  uint8_t (*seen)[1000], unsigned *got, unsigned *bad)
{
	while (*got < (round + 1) * want) {
		struct pollfd pfd = {.fd = p->fd[1], .events = POLLIN};
		int n;

		rb->n = 0;
		n = udpio_recv(p->io[1], rb);
		if (n == -EAGAIN) {
			if (poll(&pfd, 1, 2000) <= 0)
				return;
			continue;
		}
		assert_true(n > 0);
		for (unsigned k = 0; k < rb->n; k++) {
			const struct pktbuf *q = &rb->pkt[k];
			uint32_t id = 0, r, i;
			bool v6;

			if (!intact(pktbuf_data(q), q->len, &id) || id / 1000 > round ||
			    id % 1000 >= want || seen[id / 1000][id % 1000] ||
			    q->len != size_of(id / 1000, id % 1000, &v6)) {
				(*bad)++;
				continue;
			}
			r = id / 1000;
			i = id % 1000;
			/* The sender's address: v4-mapped for v4 traffic. */
			const struct sockaddr_in6 *s = (const void *)&q->addr;

			assert_int_equal(s->sin6_family, AF_INET6);
			assert_int_equal(IN6_IS_ADDR_V4MAPPED(&s->sin6_addr), !v6);
			seen[r][i] = 1;
			(*got)++;
		}
	}
}

static void rounds(const char *name, struct pair *p)
{
	struct pktbuf_batch *sb = malloc(sizeof(*sb)), *rb = malloc(sizeof(*rb));
	unsigned got_all = 0, bad_all = 0, want = 120;
	uint8_t(*seen)[1000] = calloc(ROUNDS, sizeof(*seen));

	batch_init(rb, 1, 0);
	for (unsigned round = 0; round < ROUNDS; round++) {
		int sent;

		batch_init(sb, 0, PKTBUF_HEADROOM);
		for (unsigned i = 0; i < want; i++) {
			struct pktbuf *q = &sb->pkt[i];
			bool v6;

			q->len = (uint32_t)size_of(round, i, &v6);
			fill(pktbuf_data(q), round * 1000 + i, q->len);
			dest(q, v6);
		}
		sb->n = want;
		sent = udpio_send(p->io[0], sb);
		assert_int_equal(sent, (int)want);
		receive_round(p, rb, round, want, seen, &got_all, &bad_all);
	}
	const struct udpio_stats *a = udpio_stats(p->io[0]), *b = udpio_stats(p->io[1]);

	printf("udpio %-24s offloads a=%#x b=%#x: %u/%u intact, %u bad; send: %.1f dgrams/call "
	       "(%llu GSO msgs), recv: %.1f dgrams/call (%llu GRO msgs), drops %llu/%llu\n",
	       name, udpio_offloads(p->io[0]), udpio_offloads(p->io[1]), got_all, ROUNDS * want,
	       bad_all, (double)a->dgrams_out / (double)(a->send_calls ? a->send_calls : 1),
	       (unsigned long long)a->gso_msgs,
	       (double)b->dgrams_in / (double)(b->recv_calls ? b->recv_calls : 1),
	       (unsigned long long)b->gro_msgs, (unsigned long long)a->drops_out,
	       (unsigned long long)b->drops_in);
	fflush(stdout);
	assert_int_equal(bad_all, 0);
	assert_int_equal(got_all, ROUNDS * want);
	/* Runs of 30 with alternating destinations: GSO makes 4 messages
	 * of each 120-datagram batch, all in one sendmmsg. */
	if (udpio_offloads(p->io[0]) & UDPIO_OFFLOAD_GSO) {
		assert_int_equal(a->gso_msgs, ROUNDS * 4);
		assert_int_equal(a->send_calls, ROUNDS);
	} else {
		assert_int_equal(a->gso_msgs, 0);
	}
	if ((udpio_offloads(p->io[0]) & UDPIO_OFFLOAD_GSO) &&
	    (udpio_offloads(p->io[1]) & UDPIO_OFFLOAD_GRO))
		assert_true(b->gro_msgs > 0);
	else
		assert_int_equal(b->gro_msgs, 0);
	free(seen);
	free(sb);
	free(rb);
}

struct bulk {
	struct pair *p;
	atomic_bool stop;
	uint64_t bytes, dgrams, bad;
};

static void *bulk_recv(void *arg)
{
	struct bulk *k = arg;
	struct pktbuf_batch *rb = malloc(sizeof(*rb));

	batch_init(rb, 1, 0);
	while (!atomic_load(&k->stop)) {
		struct pollfd pfd = {.fd = k->p->fd[1], .events = POLLIN};
		int n;

		rb->n = 0;
		n = udpio_recv(k->p->io[1], rb);
		if (n == -EAGAIN) {
			poll(&pfd, 1, 50);
			continue;
		}
		if (n < 0)
			break;
		for (unsigned i = 0; i < rb->n; i++) {
			uint32_t id;

			const uint8_t *d = pktbuf_data(&rb->pkt[i]);

			/* Every byte of every 64th datagram, the ends of the others:
			 * a full check of each would measure the check. */
			memcpy(&id, d, 4);
			if (rb->pkt[i].len != 1400 || d[1399] != (uint8_t)(id * 7 + 1399) ||
			    ((k->dgrams + i) % 64 == 0 && !intact(d, 1400, &id)))
				k->bad++;
			k->bytes += rb->pkt[i].len;
		}
		k->dgrams += rb->n;
	}
	free(rb);
	return NULL;
}

/* As fast as it goes: 1400-byte datagrams (a WireGuard packet of a
 * 1360-byte inner packet) in batches of 128; prints what arrived. */
static void bulk(const char *name, struct pair *p)
{
	struct pktbuf_batch *sb = malloc(sizeof(*sb));
	struct bulk k = {.p = p};
	pthread_t th;
	uint64_t total = (uint64_t)BULK_MIB << 20, sent = 0;
	double t0, t1;

	batch_init(sb, 0, PKTBUF_HEADROOM);
	for (unsigned i = 0; i < PKTBUF_BATCH_MAX; i++) {
		sb->pkt[i].len = 1400;
		fill(pktbuf_data(&sb->pkt[i]), i, 1400);
		dest(&sb->pkt[i], false);
	}
	assert_int_equal(pthread_create(&th, NULL, bulk_recv, &k), 0);
	const struct udpio_stats *a = udpio_stats(p->io[0]), *b = udpio_stats(p->io[1]);
	uint64_t a_calls0 = a->send_calls, b_calls0 = b->recv_calls, b_in0 = b->dgrams_in;

	t0 = now_s();
	while (sent < total) {
		sb->n = PKTBUF_BATCH_MAX;
		int n = udpio_send(p->io[0], sb);

		if (n == -EAGAIN) {
			struct pollfd pfd = {.fd = p->fd[0], .events = POLLOUT};

			poll(&pfd, 1, 100);
			continue;
		}
		assert_true(n > 0);
		sent += (uint64_t)n * 1400;
	}
	t1 = now_s();
	/* Let the receiver drain. */
	for (uint64_t last = ~0ULL; last != k.dgrams;) {
		last = k.dgrams;
		struct timespec ts = {.tv_nsec = 100 * 1000000L};

		nanosleep(&ts, NULL);
	}
	atomic_store(&k.stop, true);
	pthread_join(th, NULL);
	double t2 = now_s();

	printf("udpio bulk %-19s offloads a=%#x b=%#x: sent %.0f Mbit/s, received %.0f Mbit/s "
	       "(%.1f%%), %.1f dgrams/sendmmsg, %.1f dgrams/recvmmsg\n",
	       name, udpio_offloads(p->io[0]), udpio_offloads(p->io[1]),
	       (double)sent * 8 / (t1 - t0) / 1e6, (double)k.bytes * 8 / (t2 - t0) / 1e6,
	       100.0 * (double)k.bytes / (double)sent,
	       (double)(sent / 1400) / (double)(a->send_calls - a_calls0),
	       (double)(b->dgrams_in - b_in0) / (double)(b->recv_calls - b_calls0));
	fflush(stdout);
	assert_int_equal(k.bad, 0);
	assert_true(k.dgrams > 0);
	free(sb);
}

static void run_cfg(const char *name, struct udpio_config ca, struct udpio_config cb,
		    unsigned want_a, unsigned want_b)
{
	struct pair *p = pair_new(&ca, &cb);

	/* CI's TSCNI_FORCE_FALLBACK=all run: the fallbacks, whatever asked. */
	if (kfeat_fallback_forced("udp_gso"))
		want_a = 0;
	if (kfeat_fallback_forced("udp_gro"))
		want_b = 0;

	assert_int_equal(udpio_offloads(p->io[0]) & UDPIO_OFFLOAD_GSO, want_a & UDPIO_OFFLOAD_GSO);
	assert_int_equal(udpio_offloads(p->io[1]) & UDPIO_OFFLOAD_GRO, want_b & UDPIO_OFFLOAD_GRO);
	rounds(name, p);
	bulk(name, p);
	pair_free(p);
}

static void test_gso_gro(void **state)
{
	(void)state;
	run_cfg("GSO+GRO", (struct udpio_config){0}, (struct udpio_config){0}, UDPIO_OFFLOAD_GSO,
		UDPIO_OFFLOAD_GRO);
}

static void test_gso_only(void **state)
{
	(void)state;
	run_cfg("GSO, no GRO", (struct udpio_config){0}, (struct udpio_config){.no_gro = true},
		UDPIO_OFFLOAD_GSO, 0);
}

static void test_gro_only(void **state)
{
	(void)state;
	run_cfg("no GSO, GRO", (struct udpio_config){.no_gso = true}, (struct udpio_config){0}, 0,
		UDPIO_OFFLOAD_GRO);
}

static void test_forced_fallback(void **state)
{
	(void)state;
	const char *old = getenv("TSCNI_FORCE_FALLBACK");
	char *saved = old ? strdup(old) : NULL;

	setenv("TSCNI_FORCE_FALLBACK", "udp_gso,udp_gro", 1);
	struct pair *p = pair_new(&(struct udpio_config){0}, &(struct udpio_config){0});

	if (saved)
		setenv("TSCNI_FORCE_FALLBACK", saved, 1);
	else
		unsetenv("TSCNI_FORCE_FALLBACK");
	free(saved);
	assert_int_equal(udpio_offloads(p->io[0]), 0);
	assert_int_equal(udpio_offloads(p->io[1]), 0);
	rounds("forced fallback", p);
	bulk("forced fallback", p);
	pair_free(p);
}

/* Bad packets in a batch are dropped and counted; the rest go. A datagram
 * larger than the receiver's buffer is dropped and counted, both ways. */
static void test_bad_packets(void **state)
{
	struct pair *p;
	struct pktbuf_batch *sb = malloc(sizeof(*sb)), *rb = malloc(sizeof(*rb));
	unsigned got = 0;

	(void)state;
	for (int gro = 0; gro < 2; gro++) {
		p = pair_new(&(struct udpio_config){0}, &(struct udpio_config){.no_gro = !gro});
		batch_init(sb, 0, PKTBUF_HEADROOM);
		for (unsigned i = 0; i < 6; i++) {
			sb->pkt[i].len = 1000;
			fill(pktbuf_data(&sb->pkt[i]), i, 1000);
			dest(&sb->pkt[i], false);
		}
		sb->pkt[1].addr_len = 0;      /* no address */
		sb->pkt[3].len = PKTBUF_SIZE; /* past the end of its buffer */
		sb->pkt[4].len = 1300;	      /* larger than the receiver's room */
		fill(pktbuf_data(&sb->pkt[4]), 4, 1300);
		sb->n = 6;
		assert_int_equal(udpio_send(p->io[0], sb), 6);
		assert_int_equal(udpio_stats(p->io[0])->drops_out, 2);
		batch_init(rb, 1, 0);
		for (unsigned i = 0; i < PKTBUF_BATCH_MAX; i++)
			rb->pkt[i].size = 1200 + PKTBUF_TAILROOM; /* room 1200 */
		got = 0;
		for (int tries = 0; tries < 20 && got < 3; tries++) {
			struct pollfd pfd = {.fd = p->fd[1], .events = POLLIN};
			int n;

			rb->n = 0;
			n = udpio_recv(p->io[1], rb);
			if (n == -EAGAIN) {
				poll(&pfd, 1, 100);
				continue;
			}
			assert_true(n > 0);
			for (unsigned k = 0; k < rb->n; k++) {
				uint32_t id = ~0U;

				assert_true(intact(pktbuf_data(&rb->pkt[k]), rb->pkt[k].len, &id));
				assert_true(id == 0 || id == 2 || id == 5);
				got++;
			}
		}
		assert_int_equal(got, 3);
		assert_int_equal(udpio_stats(p->io[1])->drops_in, 1);
		pair_free(p);
	}
	free(sb);
	free(rb);
}

/* A failed assertion skips pair_free(): remove what this process made. */
static void cleanup_all(void)
{
	for (int n = 1; n <= pair_counter; n++)
		if (sh("ip netns del tscni-udpio-%d-%da 2>/dev/null; "
		       "ip netns del tscni-udpio-%d-%db 2>/dev/null",
		       (int)getpid(), n, (int)getpid(), n) != 0) {
			/* Already gone. */
		}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gso_gro),	    cmocka_unit_test(test_gso_only),
		cmocka_unit_test(test_gro_only),    cmocka_unit_test(test_forced_fallback),
		cmocka_unit_test(test_bad_packets),
	};

	if (geteuid() != 0) {
		fprintf(stderr, "netns.udpio needs root\n");
		return 77;
	}
	atexit(cleanup_all);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
