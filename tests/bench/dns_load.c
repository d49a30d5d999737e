/* dns_load: a DNS load generator for tests/bench/dns.sh. One UDP socket, a
 * window of queries in flight kept full for a number of seconds, every
 * answer matched to its query by ID (and question), every query without an
 * answer after 1 s counted lost and its slot given to a new one.
 *
 *   dns_load ADDR PORT NAME QTYPE SECONDS INFLIGHT
 *
 * ADDR is IPv4 or IPv6 (brackets allowed); QTYPE is A, AAAA, PTR, TXT, MX,
 * NS, SOA, CNAME, SRV, ANY or a number; SECONDS how long new queries are
 * sent (then up to 1 s more for the last answers); INFLIGHT 1..4096.
 *
 * One report line on stdout:
 *
 *   sent=N answers=N lost=N stray=N errors=N seconds=S rate=N p50_us=N
 *   p99_us=N max_us=N noerror=N empty=N nxdomain=N other_rcode=N
 *
 * rate is answers per second counted while sending; latencies are from
 * send() to recv() of each answer; empty counts NOERROR answers without
 * records; stray counts datagrams that match no query in flight (a late
 * answer to a query already counted lost, or garbage); errors counts send
 * and receive errors (an ICMP unreachable shows here). An ID whose query
 * was counted lost may be reused after it, so a very late answer can be
 * taken for the new query's: with a 1 s timeout and 65536 IDs that needs
 * a loss and an answer later than the ID space wrapping.
 *
 * Exit status: 0 when the report was written, 2 on a usage or system error. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

enum dns_load_limits {
	DNS_HDR_LEN = 12,
	DNS_QUERY_MAX = DNS_HDR_LEN + 256 + 4,
	DNS_RECV_MAX = 4096,
	IDS = 65536,
	/* Queries sent and not yet popped from the timeout queue: answered
	 * ones stay queued until they reach its head, so this bounds the
	 * queries sent within one timeout (262144 a second). */
	QUEUE_LEN = 1 << 18,
	INFLIGHT_MAX = 4096,
	RECV_BURST = 256,
	RCVBUF = 1 << 20,
};

static const uint64_t TIMEOUT_NS = 1000000000ULL;

struct slot {
	uint64_t sent_ns;
	uint32_t seq;
	bool busy;
};

struct queued {
	uint32_t seq;
	uint16_t id;
};

struct load {
	int fd;
	uint8_t query[DNS_QUERY_MAX];
	size_t query_len;
	struct slot slots[IDS];
	struct queued *queue;
	size_t q_head, q_len;
	uint32_t seq;
	uint16_t next_id;
	unsigned int outstanding, inflight;
	uint64_t send_end_ns;
	/* Results. */
	uint64_t sent, answers, answers_in_window, lost, stray, errors;
	uint64_t noerror, empty, nxdomain, other_rcode;
	uint32_t *lat_us;
	size_t n_lat, cap_lat;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
	fprintf(stderr, "usage: dns_load ADDR PORT NAME QTYPE SECONDS INFLIGHT\n");
	exit(2);
}

/* parse_ulong S MAX OUT: a decimal number 0..MAX, the whole string. */
static int parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_qtype(const char *s, uint16_t *out)
{
	static const struct {
		const char *name;
		uint16_t type;
	} types[] = {
		{"A", 1},   {"NS", 2},	 {"CNAME", 5}, {"SOA", 6},  {"PTR", 12},
		{"MX", 15}, {"TXT", 16}, {"AAAA", 28}, {"SRV", 33}, {"ANY", 255},
	};
	unsigned long v;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcasecmp(s, types[i].name) == 0) {
			*out = types[i].type;
			return 0;
		}
	}
	if (parse_ulong(s, 65535, &v) < 0 || v == 0)
		return -EINVAL;
	*out = (uint16_t)v;
	return 0;
}

/* parse_addr S PORT SS LEN: an IPv4 or IPv6 address (IPv6 may be bracketed). */
static int parse_addr(const char *s, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(s);

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*len = sizeof(*in4);
		return 0;
	}
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']' && n - 2 < sizeof(buf)) {
		memcpy(buf, s + 1, n - 2);
		buf[n - 2] = '\0';
		s = buf;
	}
	if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

/* build_query L NAME QTYPE: the query with ID 0 (set per send), RD set, one
 * question NAME QTYPE IN. -EINVAL for a name that is not one. */
static int build_query(struct load *l, const char *name, uint16_t qtype)
{
	uint8_t *q = l->query;
	size_t off = DNS_HDR_LEN, n = strlen(name);

	if (n && name[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -EINVAL;
	memset(q, 0, DNS_HDR_LEN);
	q[2] = 0x01; /* RD */
	q[5] = 1;    /* QDCOUNT */
	for (size_t i = 0; i < n;) {
		size_t j = i;

		while (j < n && name[j] != '.')
			j++;
		if (j == i || j - i > 63)
			return -EINVAL;
		q[off++] = (uint8_t)(j - i);
		memcpy(q + off, name + i, j - i);
		off += j - i;
		i = j + 1;
	}
	q[off++] = 0;
	q[off++] = (uint8_t)(qtype >> 8);
	q[off++] = (uint8_t)qtype;
	q[off++] = 0;
	q[off++] = 1; /* IN */
	l->query_len = off;
	return 0;
}

static void record_latency(struct load *l, uint64_t ns)
{
	uint64_t us = ns / 1000;

	if (l->n_lat == l->cap_lat) {
		size_t cap = l->cap_lat ? l->cap_lat * 2 : 65536;
		uint32_t *p = realloc(l->lat_us, cap * sizeof(*p));

		if (!p) {
			fprintf(stderr, "dns_load: out of memory\n");
			exit(2);
		}
		l->lat_us = p;
		l->cap_lat = cap;
	}
	l->lat_us[l->n_lat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* expire L NOW: pops the queue's head while it is answered or 1 s old;
 * the old ones are lost and free their slot. */
static void expire(struct load *l, uint64_t now)
{
	while (l->q_len) {
		struct queued *e = &l->queue[l->q_head];
		struct slot *s = &l->slots[e->id];

		if (s->busy && s->seq == e->seq) {
			if (now - s->sent_ns < TIMEOUT_NS)
				return;
			s->busy = false;
			l->outstanding--;
			l->lost++;
		}
		l->q_head = (l->q_head + 1) % QUEUE_LEN;
		l->q_len--;
	}
}

enum fill_result { FILL_FULL, FILL_BLOCKED, FILL_ERROR };

/* fill L NOW: sends until the window is full. FILL_BLOCKED: the socket would
 * block (wait for POLLOUT); FILL_ERROR: send failed (try again soon). */
static enum fill_result fill(struct load *l, uint64_t now)
{
	while (l->outstanding < l->inflight && l->q_len < QUEUE_LEN) {
		uint16_t id = l->next_id;
		ssize_t n;

		while (l->slots[id].busy)
			id++;
		l->query[0] = (uint8_t)(id >> 8);
		l->query[1] = (uint8_t)id;
		n = send(l->fd, l->query, l->query_len, 0);
		if (n < 0) {
			if (errno == EAGAIN || errno == ENOBUFS)
				return FILL_BLOCKED;
			if (errno == EINTR)
				continue;
			/* ECONNREFUSED and the like: an ICMP error of an
			 * earlier datagram. Try again at the next round. */
			l->errors++;
			return FILL_ERROR;
		}
		l->next_id = (uint16_t)(id + 1);
		l->slots[id] = (struct slot){.sent_ns = now, .seq = ++l->seq, .busy = true};
		l->queue[(l->q_head + l->q_len) % QUEUE_LEN] =
			(struct queued){.seq = l->seq, .id = id};
		l->q_len++;
		l->outstanding++;
		l->sent++;
	}
	return FILL_FULL;
}

/* answer L R N NOW: one datagram: matched to its query or counted stray. */
static void answer(struct load *l, const uint8_t *r, size_t n, uint64_t now)
{
	uint16_t id, ancount;
	struct slot *s;

	/* A response (QR) to our question, echoed byte for byte. */
	if (n < l->query_len || !(r[2] & 0x80) ||
	    memcmp(r + DNS_HDR_LEN, l->query + DNS_HDR_LEN, l->query_len - DNS_HDR_LEN) != 0) {
		l->stray++;
		return;
	}
	id = (uint16_t)(r[0] << 8 | r[1]);
	s = &l->slots[id];
	if (!s->busy) {
		l->stray++;
		return;
	}
	s->busy = false;
	l->outstanding--;
	l->answers++;
	if (now < l->send_end_ns)
		l->answers_in_window++;
	record_latency(l, now - s->sent_ns);
	ancount = (uint16_t)(r[6] << 8 | r[7]);
	switch (r[3] & 0x0f) {
	case 0:
		if (ancount)
			l->noerror++;
		else
			l->empty++;
		break;
	case 3:
		l->nxdomain++;
		break;
	default:
		l->other_rcode++;
		break;
	}
}

static void drain(struct load *l)
{
	uint8_t r[DNS_RECV_MAX];

	for (int i = 0; i < RECV_BURST; i++) {
		ssize_t n = recv(l->fd, r, sizeof(r), 0);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			l->errors++; /* an ICMP error: keep reading */
			continue;
		}
		answer(l, r, (size_t)n, mono_ns());
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* The nearest-rank percentile P of the sorted latencies. */
static uint32_t percentile(const struct load *l, unsigned int p)
{
	size_t k;

	if (!l->n_lat)
		return 0;
	k = (l->n_lat * p + 99) / 100;
	if (k < 1)
		k = 1;
	return l->lat_us[k - 1];
}

int main(int argc, char **argv)
{
	static struct load l;
	struct sockaddr_storage ss;
	unsigned long port, inflight;
	uint64_t start, now, stop_ns;
	double seconds;
	socklen_t sl;
	uint16_t qtype;
	char *end;
	int buf = RCVBUF;

	if (argc != 7)
		usage();
	errno = 0;
	seconds = strtod(argv[5], &end);
	if (parse_ulong(argv[2], 65535, &port) < 0 || port == 0 ||
	    parse_addr(argv[1], (uint16_t)port, &ss, &sl) < 0 || parse_qtype(argv[4], &qtype) < 0 ||
	    errno || end == argv[5] || *end || !(seconds > 0 && seconds <= 3600) ||
	    parse_ulong(argv[6], INFLIGHT_MAX, &inflight) < 0 || inflight == 0)
		usage();
	if (build_query(&l, argv[3], qtype) < 0) {
		fprintf(stderr, "dns_load: '%s' is not a DNS name\n", argv[3]);
		return 2;
	}
	l.inflight = (unsigned int)inflight;
	l.queue = calloc(QUEUE_LEN, sizeof(*l.queue));
	if (!l.queue) {
		fprintf(stderr, "dns_load: out of memory\n");
		return 2;
	}
	l.fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (l.fd < 0 || connect(l.fd, (struct sockaddr *)&ss, sl) < 0) {
		fprintf(stderr, "dns_load: socket/connect %s:%lu: %s\n", argv[1], port,
			strerror(errno));
		return 2;
	}
	/* A full window answered at once must not overflow the socket. */
	(void)setsockopt(l.fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));

	start = mono_ns();
	l.send_end_ns = start + (uint64_t)(seconds * 1e9);
	/* After the last send every query is answered or lost within 1 s. */
	stop_ns = l.send_end_ns + TIMEOUT_NS + 10000000ULL;
	for (;;) {
		struct pollfd pfd = {.fd = l.fd, .events = POLLIN};
		enum fill_result f = FILL_FULL;
		uint64_t wake;
		int ms;

		now = mono_ns();
		expire(&l, now);
		if (now < l.send_end_ns) {
			f = fill(&l, now);
			if (f == FILL_BLOCKED)
				pfd.events |= POLLOUT;
		} else if (!l.outstanding || now >= stop_ns) {
			break;
		}
		/* Sleep until an answer, the head's timeout (after expire()
		 * the head is a query in flight) or the end of the sending
		 * phase, whichever comes first; 1 ms after a send error. */
		wake = now < l.send_end_ns ? l.send_end_ns : stop_ns;
		if (l.q_len) {
			uint64_t t = l.slots[l.queue[l.q_head].id].sent_ns + TIMEOUT_NS;

			if (t < wake)
				wake = t;
		}
		if (f == FILL_ERROR && now + 1000000 < wake)
			wake = now + 1000000;
		ms = wake > now ? (int)((wake - now + 999999) / 1000000) : 0;
		if (poll(&pfd, 1, ms) < 0 && errno != EINTR) {
			fprintf(stderr, "dns_load: poll: %s\n", strerror(errno));
			return 2;
		}
		if (pfd.revents & (POLLIN | POLLERR))
			drain(&l);
	}
	l.lost += l.outstanding; /* none left unless the clock misbehaved */
	qsort(l.lat_us, l.n_lat, sizeof(*l.lat_us), cmp_u32);
	printf("sent=%llu answers=%llu lost=%llu stray=%llu errors=%llu seconds=%.3f rate=%.0f "
	       "p50_us=%u p99_us=%u max_us=%u noerror=%llu empty=%llu nxdomain=%llu "
	       "other_rcode=%llu\n",
	       (unsigned long long)l.sent, (unsigned long long)l.answers,
	       (unsigned long long)l.lost, (unsigned long long)l.stray,
	       (unsigned long long)l.errors, seconds, (double)l.answers_in_window / seconds,
	       percentile(&l, 50), percentile(&l, 99), l.n_lat ? l.lat_us[l.n_lat - 1] : 0,
	       (unsigned long long)l.noerror, (unsigned long long)l.empty,
	       (unsigned long long)l.nxdomain, (unsigned long long)l.other_rcode);
	free(l.lat_us);
	free(l.queue);
	close(l.fd);
	return 0;
}
