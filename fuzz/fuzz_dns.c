/* Fuzz target for the MagicDNS responder: every input is answered from a
 * fixed table over UDP into 512 bytes, over TCP into 64 KiB, and into a
 * buffer smaller than a reply may need. Every reply must fit its buffer,
 * carry QR and the query's ID, and read back as a well-formed message whose
 * records end exactly at its end; a query one table forwards the table
 * without upstream must refuse. The two tables are built on the first call
 * and kept for the process (reachable, so not a leak). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "worker/dns/magicdns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MANY = 80 };

static struct magicdns *with_upstream, *without_upstream;

static struct ip_prefix v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	return (struct ip_prefix){.family = AF_INET, .len = 32, .addr = {a, b, c, d}};
}

static struct ip_prefix v6(uint8_t last)
{
	return (struct ip_prefix){
		.family = AF_INET6,
		.len = 128,
		.addr = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = last},
	};
}

static struct magicdns *build(bool upstream)
{
	static struct ip_prefix peer1[2], peer2[1], many[MANY];
	static const struct magicdns_extra_record extra[] = {
		{.name = "svc.example.internal.", .type = "", .value = "100.90.1.1"},
		{.name = "svc.example.internal.", .type = "AAAA", .value = "fd7a:115c:a1e0::99"},
		{.name = "bad.example.internal.", .type = "MX", .value = "x"},
	};
	static const char *const domains[] = {"tail1234.ts.net.", "example.internal."};
	struct magicdns_host hosts[3] = {
		{.name = "peer1.tail1234.ts.net.", .addrs = peer1, .n_addrs = 2},
		{.name = "Peer2.Tail1234.TS.net", .addrs = peer2, .n_addrs = 1},
		{.name = "many.tail1234.ts.net.", .addrs = many, .n_addrs = MANY},
	};
	struct magicdns_config cfg = {
		.hosts = hosts,
		.n_hosts = 3,
		.extra = extra,
		.n_extra = 3,
		.local_domains = domains,
		.n_local_domains = 2,
		.have_upstream = upstream,
	};
	struct magicdns *m;
	const char *why = NULL;

	peer1[0] = v4(100, 101, 102, 103);
	peer1[1] = v6(1);
	peer2[0] = v4(100, 64, 0, 2);
	for (size_t i = 0; i < MANY; i++)
		many[i] = v4(100, 70, 0, (uint8_t)i);
	if (magicdns_new(&cfg, &m, NULL, &why) != 0)
		abort();
	return m;
}

/* Steps over a name of a reply: in the question plain labels, elsewhere
 * labels that may end in a pointer back to an earlier offset. */
static bool skip_name(const uint8_t *p, size_t len, size_t *pos, bool pointer_ok)
{
	size_t at = *pos, start = at;

	for (;;) {
		if (at >= len)
			return false;
		if ((p[at] & 0xc0) == 0xc0) {
			if (!pointer_ok || len - at < 2)
				return false;
			if ((size_t)((p[at] & 0x3f) << 8 | p[at + 1]) >= start)
				return false;
			*pos = at + 2;
			return true;
		}
		if (p[at] > 63 || len - at - 1 < p[at] || at - start + 1 + p[at] > 255)
			return false;
		if (p[at] == 0)
			break;
		at += 1 + p[at];
	}
	*pos = at + 1;
	return true;
}

static void check_reply(const uint8_t *q, size_t qlen, const uint8_t *r, size_t rlen)
{
	size_t pos = 12, records;

	if (rlen < 12 || !(r[2] & 0x80) || memcmp(r, q, 2) != 0)
		abort();
	if ((r[4] << 8 | r[5]) > 1)
		abort();
	if (r[4] << 8 | r[5]) {
		size_t qpos = 12;

		/* The question is the query's, byte for byte. */
		if (!skip_name(r, rlen, &pos, false) || rlen - pos < 4)
			abort();
		pos += 4;
		if (!skip_name(q, qlen, &qpos, false) || qlen - qpos < 4 || qpos + 4 != pos ||
		    memcmp(q + 12, r + 12, pos - 12) != 0)
			abort();
	}
	records = (size_t)(r[6] << 8 | r[7]) + (size_t)(r[8] << 8 | r[9]) +
		  (size_t)(r[10] << 8 | r[11]);
	for (size_t i = 0; i < records; i++) {
		size_t rdlen;

		if (!skip_name(r, rlen, &pos, true) || rlen - pos < 10)
			abort();
		rdlen = (size_t)(r[pos + 8] << 8 | r[pos + 9]);
		pos += 10;
		if (rlen - pos < rdlen)
			abort();
		pos += rdlen;
	}
	if (pos != rlen)
		abort();
}

static void answer(const uint8_t *data, size_t size, unsigned int flags, size_t cap)
{
	static uint8_t out[65536 + 1], again[65536 + 1];
	size_t n = 0, n2 = 0;
	enum magicdns_verdict v;

	/* One byte past cap must never be written. */
	out[cap] = 0xa5;
	v = magicdns_answer(with_upstream, data, size, flags, out, cap, &n);
	if (out[cap] != 0xa5 || n > cap)
		abort();
	switch (v) {
	case MAGICDNS_DROP:
		if (n != 0)
			abort();
		break;
	case MAGICDNS_FORWARD:
		if (n != 0 || size < 12 || (data[2] & 0x80))
			abort();
		/* Without upstream, the same query is refused. */
		if (magicdns_answer(without_upstream, data, size, flags, again, cap, &n2) ==
			    MAGICDNS_ANSWER &&
		    (again[3] & 0xf) != 5)
			abort();
		break;
	case MAGICDNS_ANSWER:
		check_reply(data, size, out, n);
		if (!(flags & MAGICDNS_TCP) && n > 1232)
			abort();
		/* A pure function of table and query. */
		if (magicdns_answer(with_upstream, data, size, flags, again, cap, &n2) != v ||
		    n2 != n || memcmp(out, again, n) != 0)
			abort();
		break;
	default:
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!with_upstream) {
		with_upstream = build(true);
		without_upstream = build(false);
	}
	answer(data, size, 0, 512);
	answer(data, size, MAGICDNS_TCP, 65535);
	answer(data, size, 0, 4096);
	/* A caller's buffer below 512: truncation, or nothing at all. */
	answer(data, size, 0, size > 0 ? data[size - 1] % 64 : 0);
	return 0;
}
