/* MagicDNS as quad-100 answers it, against a table of three nodes, extra
 * records and two local domains: A, AAAA and ANY for known names in any
 * case and as bare single labels; NOERROR with no answer for other types;
 * NXDOMAIN inside the local domains; PTR for IPv4, IPv6 and 4-to-6
 * addresses, NXDOMAIN for the rest of the Tailscale ranges; FORWARD with an
 * upstream and REFUSED without one; FORMERR for each malformation the
 * reader refuses (checked to be refused for that reason), NOTIMP for other
 * opcodes, DROP for what is no query; TC when a reply does not fit 512
 * bytes, the EDNS size or the caller's buffer; the OPT record and BADVERS;
 * ID and RD echoed. Queries come from a tiny encoder, plus the bytes glibc
 * 2.36 sends, answered byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "worker/dns/magicdns.c"

enum {
	MANY = 40,  /* 40 A records: over 512 bytes, under 1232 */
	LOTS = 100, /* over 1232 */
	NO_EDNS = -1,
	MAX_RR = 128,
};

static struct magicdns *table, *table_no_upstream;

static struct ip_prefix v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	return (struct ip_prefix){.family = AF_INET, .len = 32, .addr = {a, b, c, d}};
}

/* fd7a:115c:a1e0::<last> */
static struct ip_prefix v6(uint8_t last)
{
	return (struct ip_prefix){
		.family = AF_INET6,
		.len = 128,
		.addr = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = last},
	};
}

static int setup(void **state)
{
	static struct ip_prefix peer1[2], peer2[1], many[MANY], lots[LOTS];
	static const struct magicdns_extra_record extra[] = {
		{.name = "svc.example.internal.", .type = "", .value = "100.90.1.1"},
		{.name = "svc.example.internal.", .type = "AAAA", .value = "fd7a:115c:a1e0::99"},
		/* Repeated: one answer. */
		{.name = "SVC.example.internal", .type = "A", .value = "100.90.1.1"},
		{.name = "svc.example.internal.", .type = "A", .value = "100.90.1.2"},
		/* Shares peer1's address: PTR still names peer1. */
		{.name = "alias.example.internal.", .type = "", .value = "100.101.102.103"},
	};
	static const char *const domains[] = {"tail1234.ts.net.", "example.internal"};
	struct magicdns_host hosts[] = {
		{.name = "peer1.tail1234.ts.net.", .addrs = peer1, .n_addrs = 2},
		{.name = "Peer2.Tail1234.TS.net", .addrs = peer2, .n_addrs = 1},
		{.name = "many.tail1234.ts.net.", .addrs = many, .n_addrs = MANY},
		{.name = "lots.tail1234.ts.net.", .addrs = lots, .n_addrs = LOTS},
	};
	struct magicdns_config cfg = {
		.hosts = hosts,
		.n_hosts = 4,
		.extra = extra,
		.n_extra = 5,
		.local_domains = domains,
		.n_local_domains = 2,
		.have_upstream = true,
	};
	const char *why = NULL;
	size_t skipped = 99;

	peer1[0] = v4(100, 101, 102, 103);
	peer1[1] = v6(1);
	peer2[0] = v4(100, 64, 0, 2);
	for (size_t i = 0; i < MANY; i++)
		many[i] = v4(100, 70, 0, (uint8_t)i);
	for (size_t i = 0; i < LOTS; i++)
		lots[i] = v4(100, 71, 0, (uint8_t)i);
	assert_int_equal(magicdns_new(&cfg, &table, &skipped, &why), 0);
	assert_int_equal(skipped, 0);
	cfg.have_upstream = false;
	assert_int_equal(magicdns_new(&cfg, &table_no_upstream, NULL, &why), 0);
	*state = NULL;
	return 0;
}

static int teardown(void **state)
{
	magicdns_free(table);
	magicdns_free(table_no_upstream);
	return 0;
}

/* The encoder: a query for name (text, as given, no escapes) with the
 * given header flags, QDCOUNT 1 and, unless edns_size is NO_EDNS, an OPT
 * record with that size and TTL field. Returns its length. */
static size_t put_name(uint8_t *buf, const char *name)
{
	size_t o = 0, start = 0, n = strlen(name);

	if (n && name[n - 1] == '.')
		n--;
	for (size_t i = 0; i <= n && n; i++) {
		if (i < n && name[i] != '.')
			continue;
		buf[o++] = (uint8_t)(i - start);
		memcpy(buf + o, name + start, i - start);
		o += i - start;
		start = i + 1;
	}
	buf[o++] = 0;
	return o;
}

static size_t put16(uint8_t *buf, uint16_t v)
{
	buf[0] = (uint8_t)(v >> 8);
	buf[1] = (uint8_t)v;
	return 2;
}

static size_t header(uint8_t *buf, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
		     uint16_t ns, uint16_t ar)
{
	size_t o = 0;

	o += put16(buf + o, id);
	o += put16(buf + o, flags);
	o += put16(buf + o, qd);
	o += put16(buf + o, an);
	o += put16(buf + o, ns);
	o += put16(buf + o, ar);
	return o;
}

static size_t put_opt(uint8_t *buf, uint16_t size, uint32_t ttl)
{
	size_t o = 0;

	buf[o++] = 0;
	o += put16(buf + o, DNS_TYPE_OPT);
	o += put16(buf + o, size);
	o += put16(buf + o, (uint16_t)(ttl >> 16));
	o += put16(buf + o, (uint16_t)ttl);
	o += put16(buf + o, 0);
	return o;
}

static size_t encode_full(uint8_t *buf, uint16_t id, uint16_t flags, const char *name,
			  uint16_t type, uint16_t class, int edns_size, uint32_t edns_ttl)
{
	size_t o = header(buf, id, flags, 1, 0, 0, edns_size == NO_EDNS ? 0 : 1);

	o += put_name(buf + o, name);
	o += put16(buf + o, type);
	o += put16(buf + o, class);
	if (edns_size != NO_EDNS)
		o += put_opt(buf + o, (uint16_t)edns_size, edns_ttl);
	return o;
}

static size_t encode(uint8_t *buf, const char *name, uint16_t type, int edns_size)
{
	return encode_full(buf, 0xbeef, DNS_FLAG_RD, name, type, DNS_CLASS_IN, edns_size, 0);
}

/* A query for a name of n labels of 'x', of the lengths given. */
static size_t encode_labels(uint8_t *buf, const uint8_t *lens, size_t n)
{
	size_t o = header(buf, 0x5150, DNS_FLAG_RD, 1, 0, 0, 0);

	for (size_t i = 0; i < n; i++) {
		buf[o++] = lens[i];
		memset(buf + o, 'x', lens[i]);
		o += lens[i];
	}
	buf[o++] = 0;
	o += put16(buf + o, DNS_TYPE_A);
	o += put16(buf + o, DNS_CLASS_IN);
	return o;
}

/* The decoder: an independent reader of replies that fails the test on
 * anything out of shape. */
struct rr {
	size_t name_off; /* of the record in the reply */
	uint16_t name_ptr;
	uint16_t type, class, rdlen;
	uint32_t ttl;
	const uint8_t *rdata;
};

struct reply {
	const uint8_t *buf;
	size_t len;
	uint16_t id, flags, qd, an, ns, ar;
	size_t question_end;
	struct rr rr[MAX_RR];
	size_t n_rr;
};

static size_t skip_plain_name(const uint8_t *b, size_t len, size_t o)
{
	while (o < len && b[o] != 0) {
		assert_true(b[o] <= 63);
		o += 1 + b[o];
	}
	assert_true(o < len);
	return o + 1;
}

static void parse_reply(const uint8_t *b, size_t len, struct reply *r)
{
	size_t o = 12;

	memset(r, 0, sizeof(*r));
	assert_true(len >= 12);
	r->buf = b;
	r->len = len;
	r->id = dns_load16(b);
	r->flags = dns_load16(b + 2);
	r->qd = dns_load16(b + 4);
	r->an = dns_load16(b + 6);
	r->ns = dns_load16(b + 8);
	r->ar = dns_load16(b + 10);
	assert_true(r->flags & DNS_FLAG_QR);
	assert_true(r->qd <= 1);
	if (r->qd) {
		o = skip_plain_name(b, len, o);
		assert_true(len - o >= 4);
		o += 4;
	}
	r->question_end = o;
	assert_true((size_t)r->an + r->ns + r->ar <= MAX_RR);
	for (size_t i = 0; i < (size_t)r->an + r->ns + r->ar; i++) {
		struct rr *rr = &r->rr[r->n_rr++];

		rr->name_off = o;
		assert_true(o < len);
		if ((b[o] & 0xc0) == 0xc0) {
			assert_true(len - o >= 2);
			rr->name_ptr = dns_load16(b + o);
			o += 2;
		} else {
			o = skip_plain_name(b, len, o);
		}
		assert_true(len - o >= 10);
		rr->type = dns_load16(b + o);
		rr->class = dns_load16(b + o + 2);
		rr->ttl = dns_load32(b + o + 4);
		rr->rdlen = dns_load16(b + o + 8);
		o += 10;
		assert_true(len - o >= rr->rdlen);
		rr->rdata = b + o;
		o += rr->rdlen;
	}
	assert_int_equal(o, len);
}

static uint8_t reply_buf[65536];

/* Answers q with m into a buffer of cap bytes and, on ANSWER, reads the
 * reply into *r. */
static enum magicdns_verdict ask_raw(const struct magicdns *m, const uint8_t *q, size_t qlen,
				     unsigned int flags, size_t cap, struct reply *r)
{
	size_t n = 12345;
	enum magicdns_verdict v;

	assert_true(cap <= sizeof(reply_buf));
	memset(reply_buf, 0xa5, sizeof(reply_buf));
	v = magicdns_answer(m, q, qlen, flags, reply_buf, cap, &n);
	assert_true(n <= cap);
	/* Never a byte past cap. */
	if (cap < sizeof(reply_buf))
		assert_int_equal(reply_buf[cap], 0xa5);
	memset(r, 0, sizeof(*r));
	if (v == MAGICDNS_ANSWER) {
		parse_reply(reply_buf, n, r);
		/* The question, when echoed, is the query's byte for byte. */
		if (r->qd)
			assert_memory_equal(reply_buf + 12, q + 12, r->question_end - 12);
	} else {
		/* Nothing to send, and nothing written. */
		assert_int_equal(n, 0);
		for (size_t i = 0; i < cap; i++)
			assert_int_equal(reply_buf[i], 0xa5);
	}
	return v;
}

/* What the table does with a query for name of type, without EDNS. */
static enum magicdns_verdict verdict(const char *name, uint16_t type)
{
	uint8_t q[512];
	struct reply r;

	return ask_raw(table, q, encode(q, name, type, NO_EDNS), 0, 512, &r);
}

static struct reply ask(const char *name, uint16_t type)
{
	uint8_t q[512];
	struct reply r;

	assert_int_equal(ask_raw(table, q, encode(q, name, type, NO_EDNS), 0, 512, &r),
			 MAGICDNS_ANSWER);
	assert_int_equal(r.id, 0xbeef);
	return r;
}

static unsigned int rcode(const struct reply *r)
{
	return r->flags & DNS_FLAG_RCODE;
}

static void assert_addr_rr(const struct rr *rr, const struct ip_prefix *want)
{
	assert_int_equal(rr->name_ptr, 0xc00c);
	assert_int_equal(rr->class, DNS_CLASS_IN);
	assert_int_equal(rr->ttl, 600);
	if (want->family == AF_INET) {
		assert_int_equal(rr->type, DNS_TYPE_A);
		assert_int_equal(rr->rdlen, 4);
		assert_memory_equal(rr->rdata, want->addr, 4);
	} else {
		assert_int_equal(rr->type, DNS_TYPE_AAAA);
		assert_int_equal(rr->rdlen, 16);
		assert_memory_equal(rr->rdata, want->addr, 16);
	}
}

/* A local answer: NOERROR (or rcode), AA, RA since RD was asked, one
 * question, n answers, nothing else. */
static void assert_local(const struct reply *r, unsigned int want_rcode, uint16_t an)
{
	assert_int_equal(rcode(r), want_rcode);
	assert_true(r->flags & DNS_FLAG_AA);
	assert_true(r->flags & DNS_FLAG_RD);
	assert_true(r->flags & DNS_FLAG_RA);
	assert_false(r->flags & DNS_FLAG_TC);
	assert_int_equal(r->flags & DNS_FLAG_OPCODE, 0);
	assert_int_equal(r->qd, 1);
	assert_int_equal(r->an, an);
	assert_int_equal(r->ns, 0);
	assert_int_equal(r->ar, 0);
}

static void test_a_aaaa(void **state)
{
	struct reply r = ask("peer1.tail1234.ts.net.", DNS_TYPE_A);
	struct ip_prefix want4 = v4(100, 101, 102, 103), want6 = v6(1);

	assert_local(&r, DNS_RCODE_NOERROR, 1);
	assert_addr_rr(&r.rr[0], &want4);
	r = ask("peer1.tail1234.ts.net.", DNS_TYPE_AAAA);
	assert_local(&r, DNS_RCODE_NOERROR, 1);
	assert_addr_rr(&r.rr[0], &want6);
	/* ANY: every address, A first as given. */
	r = ask("peer1.tail1234.ts.net.", DNS_TYPE_ANY);
	assert_local(&r, DNS_RCODE_NOERROR, 2);
	assert_addr_rr(&r.rr[0], &want4);
	assert_addr_rr(&r.rr[1], &want6);
	/* Extra records: repeats dropped, order kept, both families. */
	r = ask("svc.example.internal.", DNS_TYPE_A);
	assert_local(&r, DNS_RCODE_NOERROR, 2);
	want4 = v4(100, 90, 1, 1);
	assert_addr_rr(&r.rr[0], &want4);
	want4 = v4(100, 90, 1, 2);
	assert_addr_rr(&r.rr[1], &want4);
	r = ask("svc.example.internal.", DNS_TYPE_AAAA);
	assert_local(&r, DNS_RCODE_NOERROR, 1);
	want6 = v6(0x99);
	assert_addr_rr(&r.rr[0], &want6);
	/* Quad-100's own name. */
	r = ask("magicdns.localhost-tailscale-daemon.", DNS_TYPE_A);
	assert_local(&r, DNS_RCODE_NOERROR, 1);
	want4 = v4(100, 100, 100, 100);
	assert_addr_rr(&r.rr[0], &want4);
}

static void test_case_insensitive(void **state)
{
	struct ip_prefix want = v4(100, 101, 102, 103), want2 = v4(100, 64, 0, 2);
	struct reply r = ask("PEER1.Tail1234.TS.NET.", DNS_TYPE_A);

	assert_local(&r, DNS_RCODE_NOERROR, 1);
	assert_addr_rr(&r.rr[0], &want);
	/* The answer's name is the question's, in the case it was asked. */
	assert_memory_equal(r.buf + 13, "PEER1", 5);
	/* A table name given in mixed case, asked in lower case. */
	r = ask("peer2.tail1234.ts.net", DNS_TYPE_A);
	assert_local(&r, DNS_RCODE_NOERROR, 1);
	assert_addr_rr(&r.rr[0], &want2);
}

static void test_bare_names(void **state)
{
	struct ip_prefix want = v4(100, 101, 102, 103), svc = v4(100, 90, 1, 1);
	struct reply r = ask("peer1.", DNS_TYPE_A);

	assert_local(&r, DNS_RCODE_NOERROR, 1);
	assert_addr_rr(&r.rr[0], &want);
	r = ask("Peer2", DNS_TYPE_AAAA);
	assert_local(&r, DNS_RCODE_NOERROR, 0);
	/* Under the second local domain. */
	r = ask("svc.", DNS_TYPE_A);
	assert_local(&r, DNS_RCODE_NOERROR, 2);
	assert_addr_rr(&r.rr[0], &svc);
	/* An unknown single label is not ours. */
	assert_int_equal(verdict("unknown.", DNS_TYPE_A), MAGICDNS_FORWARD);
	/* Two labels are not a bare name: "peer1.tail1234." is no name of
	 * ours and lies in no local domain. */
	assert_int_equal(verdict("peer1.tail1234.", DNS_TYPE_A), MAGICDNS_FORWARD);
}

static void test_no_such_name_or_type(void **state)
{
	struct reply r = ask("nope.tail1234.ts.net.", DNS_TYPE_A);

	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	r = ask("deep.nope.example.internal.", DNS_TYPE_AAAA);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	/* The domain itself, as tailscaled. */
	r = ask("tail1234.ts.net.", DNS_TYPE_A);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	/* RFC 7686. */
	r = ask("hidden.onion.", DNS_TYPE_A);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	/* A known name, another type or family: NOERROR, no answer. */
	r = ask("peer2.tail1234.ts.net.", DNS_TYPE_AAAA);
	assert_local(&r, DNS_RCODE_NOERROR, 0);
	r = ask("peer1.tail1234.ts.net.", DNS_TYPE_MX);
	assert_local(&r, DNS_RCODE_NOERROR, 0);
	r = ask("peer1.tail1234.ts.net.", DNS_TYPE_TXT);
	assert_local(&r, DNS_RCODE_NOERROR, 0);
	r = ask("peer1.tail1234.ts.net.", DNS_TYPE_PTR);
	assert_local(&r, DNS_RCODE_NOERROR, 0);
	r = ask("peer1.tail1234.ts.net.", 9824);
	assert_local(&r, DNS_RCODE_NOERROR, 0);
	/* NS, SOA, AXFR, HINFO: NOTIMP, as tailscaled. */
	r = ask("peer1.tail1234.ts.net.", DNS_TYPE_NS);
	assert_local(&r, DNS_RCODE_NOTIMP, 0);
	r = ask("peer1.tail1234.ts.net.", DNS_TYPE_SOA);
	assert_local(&r, DNS_RCODE_NOTIMP, 0);
}

static void test_class(void **state)
{
	uint8_t q[128];
	struct reply r;
	size_t n =
		encode_full(q, 7, DNS_FLAG_RD, "peer1.tail1234.ts.net.", DNS_TYPE_A, 3, NO_EDNS, 0);

	/* Class CH: the name exists, no IN record answers. */
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_local(&r, DNS_RCODE_NOERROR, 0);
	n = encode_full(q, 7, DNS_FLAG_RD, "peer1.tail1234.ts.net.", DNS_TYPE_A, DNS_CLASS_ANY,
			NO_EDNS, 0);
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_local(&r, DNS_RCODE_NOERROR, 1);
}

static void test_forward_refused(void **state)
{
	uint8_t q[128];
	struct reply r;
	size_t n = encode(q, "example.com.", DNS_TYPE_A, NO_EDNS);

	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_FORWARD);
	assert_int_equal(ask_raw(table, q, n, MAGICDNS_TCP, 512, &r), MAGICDNS_FORWARD);
	/* No upstream: REFUSED, not authoritative, question echoed. */
	assert_int_equal(ask_raw(table_no_upstream, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(rcode(&r), DNS_RCODE_REFUSED);
	assert_false(r.flags & DNS_FLAG_AA);
	assert_int_equal(r.qd, 1);
	assert_int_equal(r.an, 0);
	assert_int_equal(r.id, 0xbeef);
	/* No table at all: the same. */
	assert_int_equal(ask_raw(NULL, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(rcode(&r), DNS_RCODE_REFUSED);
	/* The root, and a name that merely ends like a local domain. */
	n = encode(q, ".", DNS_TYPE_NS, NO_EDNS);
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_FORWARD);
	n = encode(q, "xtail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_FORWARD);
	/* Local names stay local with or without upstream. */
	n = encode(q, "nope.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(ask_raw(table_no_upstream, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
}

/* Split DNS: a name under a split domain is forwarded to that domain's
 * resolvers (the longest suffix wins) even with no default resolvers;
 * other outside names are then refused; local names stay local. */
static void test_split(void **state)
{
	static const char *const domains[] = {"tail1234.ts.net."};
	static const char *const split[] = {"corp.example.", "eu.corp.example", "BAD..name"};
	struct magicdns_config cfg = {
		.local_domains = domains,
		.n_local_domains = 1,
		.split = split,
		.n_split = 3,
	};
	struct magicdns *m = NULL;
	const char *why = NULL;
	size_t skipped = 0;
	uint8_t q[128];
	struct reply r;
	size_t n;

	(void)state;
	assert_int_equal(magicdns_new(&cfg, &m, &skipped, &why), 0);
	assert_int_equal(skipped, 1);
	n = encode(q, "db.corp.example.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(ask_raw(m, q, n, 0, 512, &r), MAGICDNS_FORWARD);
	assert_int_equal(magicdns_upstream(m, q, n), 0);
	n = encode(q, "DB.EU.corp.example.", DNS_TYPE_AAAA, NO_EDNS);
	assert_int_equal(ask_raw(m, q, n, 0, 512, &r), MAGICDNS_FORWARD);
	assert_int_equal(magicdns_upstream(m, q, n), 1);
	n = encode(q, "corp.example.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(magicdns_upstream(m, q, n), 0);
	n = encode(q, "xcorp.example.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(ask_raw(m, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(rcode(&r), DNS_RCODE_REFUSED);
	assert_int_equal(magicdns_upstream(m, q, n), -1);
	n = encode(q, "nope.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(ask_raw(m, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(rcode(&r), DNS_RCODE_NXDOMAIN);
	/* The default resolvers take what no split domain claims. */
	n = encode(q, "example.com.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(magicdns_upstream(table, q, n), MAGICDNS_UPSTREAM_DEFAULT);
	assert_int_equal(magicdns_upstream(table_no_upstream, q, n), -1);
	assert_int_equal(magicdns_upstream(m, q, 5), -1);
	magicdns_free(m);
}

/* The ip6.arpa. name of a into buf. */
static const char *rev6(const uint8_t a[16], bool upper, char *buf)
{
	const char *hex = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	size_t o = 0;

	for (int i = 15; i >= 0; i--) {
		buf[o++] = hex[a[i] & 0xf];
		buf[o++] = '.';
		buf[o++] = hex[a[i] >> 4];
		buf[o++] = '.';
	}
	strcpy(buf + o, "ip6.arpa.");
	return buf;
}

static void assert_ptr(const struct reply *r, const char *want)
{
	uint8_t wire[DNS_NAME_MAX];
	size_t n = put_name(wire, want);

	assert_local(r, DNS_RCODE_NOERROR, 1);
	assert_int_equal(r->rr[0].name_ptr, 0xc00c);
	assert_int_equal(r->rr[0].type, DNS_TYPE_PTR);
	assert_int_equal(r->rr[0].class, DNS_CLASS_IN);
	assert_int_equal(r->rr[0].ttl, 600);
	assert_int_equal(r->rr[0].rdlen, n);
	assert_memory_equal(r->rr[0].rdata, wire, n);
}

static void test_ptr_v4(void **state)
{
	struct reply r = ask("103.102.101.100.in-addr.arpa.", DNS_TYPE_PTR);

	/* peer1's address is also alias.example.internal's: the host wins. */
	assert_ptr(&r, "peer1.tail1234.ts.net.");
	r = ask("2.0.64.100.IN-ADDR.ARPA.", DNS_TYPE_PTR);
	assert_ptr(&r, "Peer2.Tail1234.TS.net.");
	r = ask("2.1.90.100.in-addr.arpa.", DNS_TYPE_PTR);
	assert_ptr(&r, "svc.example.internal.");
	r = ask("100.100.100.100.in-addr.arpa.", DNS_TYPE_PTR);
	assert_ptr(&r, "magicdns.localhost-tailscale-daemon.");
	/* In 100.64.0.0/10 without a node; 100.127.255.255 is its last. */
	r = ask("9.9.64.100.in-addr.arpa.", DNS_TYPE_PTR);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	r = ask("255.255.127.100.in-addr.arpa.", DNS_TYPE_PTR);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	/* Outside it, or not an address (a leading zero, three octets, a
	 * Bonjour browsing name): upstream's. */
	assert_int_equal(verdict("0.0.128.100.in-addr.arpa.", DNS_TYPE_PTR), MAGICDNS_FORWARD);
	assert_int_equal(verdict("8.8.8.8.in-addr.arpa.", DNS_TYPE_PTR), MAGICDNS_FORWARD);
	assert_int_equal(verdict("02.0.64.100.in-addr.arpa.", DNS_TYPE_PTR), MAGICDNS_FORWARD);
	assert_int_equal(verdict("0.64.100.in-addr.arpa.", DNS_TYPE_PTR), MAGICDNS_FORWARD);
	assert_int_equal(verdict("256.0.64.100.in-addr.arpa.", DNS_TYPE_PTR), MAGICDNS_FORWARD);
	assert_int_equal(verdict("b._dns-sd._udp.0.64.100.in-addr.arpa.", DNS_TYPE_PTR),
			 MAGICDNS_FORWARD);
	/* Bonjour browsing names go upstream even inside a local domain,
	 * where any other unknown name is NXDOMAIN. */
	assert_int_equal(verdict("lb._dns-sd._udp.tail1234.ts.net.", DNS_TYPE_PTR),
			 MAGICDNS_FORWARD);
	r = ask("x._dns-sd._udp.tail1234.ts.net.", DNS_TYPE_PTR);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	r = ask("lb._dns-sd._udp.tail1234.ts.net.", DNS_TYPE_A);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	/* An A query for a reverse name is no PTR lookup. */
	assert_int_equal(verdict("103.102.101.100.in-addr.arpa.", DNS_TYPE_A), MAGICDNS_FORWARD);
}

static void test_ptr_v6(void **state)
{
	struct ip_prefix a = v6(1);
	char name[80];
	struct reply r = ask(rev6(a.addr, false, name), DNS_TYPE_PTR);

	assert_ptr(&r, "peer1.tail1234.ts.net.");
	r = ask(rev6(a.addr, true, name), DNS_TYPE_PTR);
	assert_ptr(&r, "peer1.tail1234.ts.net.");
	a = v6(0x53);
	r = ask(rev6(a.addr, false, name), DNS_TYPE_PTR);
	assert_ptr(&r, "magicdns.localhost-tailscale-daemon.");
	/* 4-to-6: fd7a:115c:a1e0:ab12:4843:cd96:6240:2 is 100.64.0.2. */
	const uint8_t via4to6[16] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0xab, 0x12,
				     0x48, 0x43, 0xcd, 0x96, 0x62, 0x40, 0x00, 0x02};
	r = ask(rev6(via4to6, false, name), DNS_TYPE_PTR);
	assert_ptr(&r, "Peer2.Tail1234.TS.net.");
	/* In fd7a:115c:a1e0::/48 without a node. */
	a = v6(0x77);
	a.addr[6] = 0xff;
	r = ask(rev6(a.addr, false, name), DNS_TYPE_PTR);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	/* Outside it. */
	const uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	assert_int_equal(verdict(rev6(doc, false, name), DNS_TYPE_PTR), MAGICDNS_FORWARD);
	/* A nibble that is not hex, and a short name, are no address. */
	a = v6(1);
	rev6(a.addr, false, name);
	name[0] = 'g';
	assert_int_equal(verdict(name, DNS_TYPE_PTR), MAGICDNS_FORWARD);
	assert_int_equal(verdict("0.e.1.a.c.5.1.1.a.7.d.f.ip6.arpa.", DNS_TYPE_PTR),
			 MAGICDNS_FORWARD);
}

/* Each malformation, answered FORMERR with the header alone, and read by
 * dns_wire_parse_query() as the malformation it is. */
static void assert_formerr(const uint8_t *q, size_t n, const char *why_want)
{
	struct dns_query dq;
	const char *why = NULL;
	struct reply r;

	assert_int_equal(dns_wire_parse_query(q, n, &dq, &why), DNS_PARSE_FORMERR);
	assert_string_equal(why, why_want);
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(r.len, 12);
	assert_int_equal(rcode(&r), DNS_RCODE_FORMERR);
	assert_int_equal(r.id, dns_load16(q));
	assert_false(r.flags & DNS_FLAG_AA);
	assert_int_equal(r.qd + r.an + r.ns + r.ar, 0);
	assert_int_equal(r.flags & DNS_FLAG_RD, dns_load16(q + 2) & DNS_FLAG_RD);
}

static void test_formerr(void **state)
{
	uint8_t q[600];
	size_t n, o;

	/* QDCOUNT 0 and 2. */
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	q[5] = 0;
	assert_formerr(q, n, "QDCOUNT is not 1");
	q[5] = 2;
	assert_formerr(q, n, "QDCOUNT is not 1");
	/* Truncated: in a label, before the root, in QTYPE/QCLASS. */
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	assert_formerr(q, 12 + 3, "truncated label");
	assert_formerr(q, 12, "truncated name");
	assert_formerr(q, n - 4 - 1, "truncated name");
	assert_formerr(q, n - 1, "truncated question");
	/* Compression pointers: to itself (a loop), forward, to the header. */
	o = header(q, 0x4242, DNS_FLAG_RD, 1, 0, 0, 0);
	q[o++] = 0xc0;
	q[o++] = 0x0c;
	o += put16(q + o, DNS_TYPE_A);
	o += put16(q + o, DNS_CLASS_IN);
	assert_formerr(q, o, "compression pointer in the question");
	q[13] = 0x14;
	assert_formerr(q, o, "compression pointer in the question");
	o = header(q, 0x4242, DNS_FLAG_RD, 1, 0, 0, 0);
	o += put_name(q + o, "peer1");
	o -= 1; /* peer1's root byte becomes a pointer to the header */
	q[o++] = 0xc0;
	q[o++] = 0x02;
	o += put16(q + o, DNS_TYPE_A);
	o += put16(q + o, DNS_CLASS_IN);
	assert_formerr(q, o, "compression pointer in the question");
	/* A length byte over 63 (0x40, 0x7f) and the reserved types 0x80
	 * and 0xbf, with the bytes such a label would cover present. */
	static const uint8_t bad_lengths[] = {0x40, 0x7f, 0x80, 0xbf};
	for (size_t i = 0; i < sizeof(bad_lengths); i++) {
		o = header(q, 1, 0, 1, 0, 0, 0);
		q[o] = bad_lengths[i];
		memset(q + o + 1, 'a', 200);
		o += 201;
		q[o++] = 0;
		o += put16(q + o, DNS_TYPE_A);
		o += put16(q + o, DNS_CLASS_IN);
		assert_formerr(q, o, "label longer than 63 bytes");
	}
	/* Long names: 4 labels of 63 make 257 bytes with the root; 63, 63,
	 * 63, 61 make 255, the longest legal; 63, 63, 63, 62 make 256. */
	static const uint8_t l257[] = {63, 63, 63, 63}, l255[] = {63, 63, 63, 61},
			     l256[] = {63, 63, 63, 62};
	assert_formerr(q, encode_labels(q, l257, 4), "name longer than 255 bytes");
	assert_formerr(q, encode_labels(q, l256, 4), "name longer than 255 bytes");
	{
		struct dns_query dq;
		const char *why = NULL;
		struct reply r;

		o = encode_labels(q, l255, 4);
		assert_int_equal(dns_wire_parse_query(q, o, &dq, &why), DNS_PARSE_OK);
		assert_int_equal(dq.qname_len, 255);
		assert_int_equal(ask_raw(table, q, o, 0, 512, &r), MAGICDNS_FORWARD);
	}

	/* The records after the question. */
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, 1232);
	assert_formerr(q, n - 1, "truncated record");
	assert_formerr(q, n - 11, "truncated name");
	q[n - 1] = 4; /* RDLENGTH 4, no RDATA */
	assert_formerr(q, n, "truncated record data");
	q[n - 1] = 4;
	memcpy(q + n, "\x00\x0a\x00\x08", 4); /* a cookie of 8 bytes in 4 */
	assert_formerr(q, n + 4, "EDNS option overruns its OPT record");
	q[n - 1] = 3;
	assert_formerr(q, n + 3, "truncated EDNS option");
	/* Two OPTs; an OPT on a name; an OPT in the answer section. */
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, 1232);
	n += put_opt(q + n, 1232, 0);
	q[11] = 2;
	assert_formerr(q, n, "more than one OPT record");
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	q[11] = 1;
	n += put_name(q + n, "x");
	n += put16(q + n, DNS_TYPE_OPT);
	n += put16(q + n, 1232);
	n += put16(q + n, 0);
	n += put16(q + n, 0);
	n += put16(q + n, 0);
	assert_formerr(q, n, "OPT record not on the root name");
	/* Another record after the question may be named by a pointer (not
	 * followed, so never a loop); a pointer cut short is truncated. */
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	q[11] = 1;
	memcpy(q + n, "\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04", 16);
	{
		struct reply r;

		assert_int_equal(ask_raw(table, q, n + 16, 0, 512, &r), MAGICDNS_ANSWER);
		assert_local(&r, DNS_RCODE_NOERROR, 1);
	}
	assert_formerr(q, n + 1, "truncated compression pointer");
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, 1232);
	q[7] = 1; /* the OPT counted as an answer */
	q[11] = 0;
	assert_formerr(q, n, "OPT record outside the additional section");
}

static void test_notimp_drop(void **state)
{
	uint8_t q[128];
	struct reply r;
	size_t n;

	/* NOTIFY (4) and UPDATE (5): NOTIMP, the opcode copied. */
	for (uint16_t op = 1; op <= 5; op++) {
		n = encode_full(q, 0x0102, (uint16_t)(op << 11 | DNS_FLAG_RD),
				"peer1.tail1234.ts.net.", DNS_TYPE_A, DNS_CLASS_IN, NO_EDNS, 0);
		assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
		assert_int_equal(rcode(&r), DNS_RCODE_NOTIMP);
		assert_int_equal((r.flags & DNS_FLAG_OPCODE) >> 11, op);
		assert_int_equal(r.id, 0x0102);
		assert_int_equal(r.len, 12);
	}
	/* A response, a short header, nothing: nothing to send. */
	n = encode_full(q, 0x0102, DNS_FLAG_QR, "peer1.tail1234.ts.net.", DNS_TYPE_A, DNS_CLASS_IN,
			NO_EDNS, 0);
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_DROP);
	assert_int_equal(ask_raw(table, q, 11, 0, 512, &r), MAGICDNS_DROP);
	assert_int_equal(ask_raw(table, q, 0, 0, 512, &r), MAGICDNS_DROP);
	/* Bytes after the last record are ignored. */
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	memcpy(q + n, "junk", 4);
	assert_int_equal(ask_raw(table, q, n + 4, 0, 512, &r), MAGICDNS_ANSWER);
	assert_local(&r, DNS_RCODE_NOERROR, 1);
}

static void test_truncation(void **state)
{
	uint8_t q[128];
	struct reply r;
	size_t n = encode(q, "many.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	size_t question = n - 12;

	/* 40 answers need 12 + 26 + 40 x 16 = 678 > 512: TC, header and
	 * question only. */
	assert_int_equal(ask_raw(table, q, n, 0, 4096, &r), MAGICDNS_ANSWER);
	assert_true(r.flags & DNS_FLAG_TC);
	assert_true(r.flags & DNS_FLAG_AA);
	assert_int_equal(rcode(&r), DNS_RCODE_NOERROR);
	assert_int_equal(r.qd, 1);
	assert_int_equal(r.an, 0);
	assert_int_equal(r.len, 12 + question);
	/* Over TCP all of them. */
	assert_int_equal(ask_raw(table, q, n, MAGICDNS_TCP, 4096, &r), MAGICDNS_ANSWER);
	assert_false(r.flags & DNS_FLAG_TC);
	assert_int_equal(r.an, MANY);
	for (size_t i = 0; i < MANY; i++) {
		struct ip_prefix want = v4(100, 70, 0, (uint8_t)i);

		assert_addr_rr(&r.rr[i], &want);
	}
	/* With EDNS 1232 they fit (and an OPT comes back). */
	n = encode(q, "many.tail1234.ts.net.", DNS_TYPE_A, 1232);
	assert_int_equal(ask_raw(table, q, n, 0, 4096, &r), MAGICDNS_ANSWER);
	assert_false(r.flags & DNS_FLAG_TC);
	assert_int_equal(r.an, MANY);
	assert_int_equal(r.ar, 1);
	/* An advertised 4096 is held to 1232 over UDP: 100 answers do not
	 * fit; TC with question and OPT. Over TCP they do. */
	n = encode(q, "lots.tail1234.ts.net.", DNS_TYPE_A, 4096);
	assert_int_equal(ask_raw(table, q, n, 0, 4096, &r), MAGICDNS_ANSWER);
	assert_true(r.flags & DNS_FLAG_TC);
	assert_int_equal(r.an, 0);
	assert_int_equal(r.ar, 1);
	assert_int_equal(r.rr[0].type, DNS_TYPE_OPT);
	assert_int_equal(ask_raw(table, q, n, MAGICDNS_TCP, 4096, &r), MAGICDNS_ANSWER);
	assert_int_equal(r.an, LOTS);
	assert_true(r.len > 1232);
	/* An advertised size under 512 counts as 512: 40 answers still do
	 * not fit, and 1 does. */
	n = encode(q, "many.tail1234.ts.net.", DNS_TYPE_A, 100);
	assert_int_equal(ask_raw(table, q, n, 0, 4096, &r), MAGICDNS_ANSWER);
	assert_true(r.flags & DNS_FLAG_TC);
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, 100);
	assert_int_equal(ask_raw(table, q, n, 0, 4096, &r), MAGICDNS_ANSWER);
	assert_false(r.flags & DNS_FLAG_TC);
	assert_int_equal(r.an, 1);
	/* The caller's buffer: the answer fits 12 + 27 + 16 = 55 ... */
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(ask_raw(table, q, n, 0, 55, &r), MAGICDNS_ANSWER);
	assert_false(r.flags & DNS_FLAG_TC);
	assert_int_equal(r.len, 55);
	/* ... not 54: TC with the question; not 38: the header alone; not
	 * 11: nothing. */
	assert_int_equal(ask_raw(table, q, n, 0, 54, &r), MAGICDNS_ANSWER);
	assert_true(r.flags & DNS_FLAG_TC);
	assert_int_equal(r.len, 39);
	assert_int_equal(ask_raw(table, q, n, 0, 38, &r), MAGICDNS_ANSWER);
	assert_true(r.flags & DNS_FLAG_TC);
	assert_int_equal(r.qd, 0);
	assert_int_equal(r.len, 12);
	assert_int_equal(ask_raw(table, q, n, 0, 11, &r), MAGICDNS_DROP);
	/* Also over TCP, and for header-only replies. */
	assert_int_equal(ask_raw(table, q, n, MAGICDNS_TCP, 54, &r), MAGICDNS_ANSWER);
	assert_true(r.flags & DNS_FLAG_TC);
	q[5] = 0;
	assert_int_equal(ask_raw(table, q, n, 0, 11, &r), MAGICDNS_DROP);
}

static void test_edns(void **state)
{
	uint8_t q[128];
	struct reply r;
	size_t n = encode_full(q, 0x77, DNS_FLAG_RD, "peer1.tail1234.ts.net.", DNS_TYPE_A,
			       DNS_CLASS_IN, 4096, 0x8000 /* DO */);

	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(r.an, 1);
	assert_int_equal(r.ar, 1);
	assert_int_equal(r.rr[1].type, DNS_TYPE_OPT);
	assert_int_equal(r.rr[1].class, MAGICDNS_EDNS_SIZE);
	assert_int_equal(r.rr[1].ttl, 0x8000); /* DO copied, version 0 */
	assert_int_equal(r.rr[1].rdlen, 0);
	assert_int_equal(r.buf[r.rr[1].name_off], 0); /* on the root */
	/* Options are allowed and not echoed. */
	q[n - 1] = 12;
	memcpy(q + n,
	       "\x00\x0a\x00\x08"
	       "cookie!!",
	       12);
	assert_int_equal(ask_raw(table, q, n + 12, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(r.rr[1].rdlen, 0);
	/* Errors carry the OPT too. */
	n = encode(q, "nope.tail1234.ts.net.", DNS_TYPE_A, 1232);
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(rcode(&r), DNS_RCODE_NXDOMAIN);
	assert_int_equal(r.ar, 1);
	assert_int_equal(r.rr[0].ttl, 0);
	/* Version 1: BADVERS (16: 0 in the header, 1 in the OPT). */
	n = encode_full(q, 0x78, 0, "peer1.tail1234.ts.net.", DNS_TYPE_A, DNS_CLASS_IN, 1232,
			0x00010000);
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(rcode(&r), 0);
	assert_int_equal(r.an, 0);
	assert_int_equal(r.ar, 1);
	assert_int_equal(r.rr[0].ttl >> 24, 1);
	assert_false(r.flags & DNS_FLAG_AA);
	/* RD clear: RA clear. */
	assert_false(r.flags & DNS_FLAG_RD);
	assert_false(r.flags & DNS_FLAG_RA);
	/* No OPT, no OPT back. */
	n = encode(q, "peer1.tail1234.ts.net.", DNS_TYPE_A, NO_EDNS);
	assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(r.ar, 0);
}

static void test_id_rd(void **state)
{
	uint8_t q[128];
	struct reply r;
	const uint16_t ids[] = {0, 1, 0x8000, 0xffff};

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		for (int rd = 0; rd <= 1; rd++) {
			size_t n = encode_full(q, ids[i], rd ? DNS_FLAG_RD : 0,
					       "peer1.tail1234.ts.net.", DNS_TYPE_A, DNS_CLASS_IN,
					       NO_EDNS, 0);

			assert_int_equal(ask_raw(table, q, n, 0, 512, &r), MAGICDNS_ANSWER);
			assert_int_equal(r.id, ids[i]);
			assert_int_equal(!!(r.flags & DNS_FLAG_RD), rd);
			assert_int_equal(!!(r.flags & DNS_FLAG_RA), rd);
			assert_true(r.flags & DNS_FLAG_AA);
		}
	}
}

/* Captured from glibc 2.36 (Debian 12): `getent ahosts
 * peer1.tail1234.ts.net` and `getent hosts 100.101.102.103` run under
 * `unshare -n -m` with a bind-mounted /etc/resolv.conf of
 * "nameserver 127.0.0.1 / options edns0" and a UDP listener on
 * 127.0.0.1:53 that saved each datagram. glibc sends the A and AAAA
 * queries together, each with an OPT advertising 1200 bytes. */
static const uint8_t glibc_a[] = {
	0x22, 0x55, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x05,
	0x70, 0x65, 0x65, 0x72, 0x31, 0x08, 0x74, 0x61, 0x69, 0x6c, 0x31, 0x32, 0x33,
	0x34, 0x02, 0x74, 0x73, 0x03, 0x6e, 0x65, 0x74, 0x00, 0x00, 0x01, 0x00, 0x01,
	0x00, 0x00, 0x29, 0x04, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t glibc_aaaa[] = {
	0x1d, 0x50, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x05,
	0x70, 0x65, 0x65, 0x72, 0x31, 0x08, 0x74, 0x61, 0x69, 0x6c, 0x31, 0x32, 0x33,
	0x34, 0x02, 0x74, 0x73, 0x03, 0x6e, 0x65, 0x74, 0x00, 0x00, 0x1c, 0x00, 0x01,
	0x00, 0x00, 0x29, 0x04, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};
static const uint8_t glibc_ptr[] = {
	0xe0, 0xe2, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x31, 0x30,
	0x33, 0x03, 0x31, 0x30, 0x32, 0x03, 0x31, 0x30, 0x31, 0x03, 0x31, 0x30, 0x30, 0x07, 0x69,
	0x6e, 0x2d, 0x61, 0x64, 0x64, 0x72, 0x04, 0x61, 0x72, 0x70, 0x61, 0x00, 0x00, 0x0c, 0x00,
	0x01, 0x00, 0x00, 0x29, 0x04, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

static void test_glibc(void **state)
{
	/* The replies, byte for byte: ID, QR AA RD RA, one answer with TTL
	 * 600 on a pointer to the question, our OPT advertising 1232. */
	static const uint8_t want_a_tail[] = {
		0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x58, 0x00, 0x04, 100,  101,
		102,  103,  0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	static const uint8_t want_aaaa_tail[] = {
		0xc0, 0x0c, 0x00, 0x1c, 0x00, 0x01, 0x00, 0x00, 0x02, 0x58, 0x00, 0x10, 0xfd,
		0x7a, 0x11, 0x5c, 0xa1, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x01, 0x00, 0x00, 0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	const size_t question = sizeof(glibc_a) - 12 - 11;
	struct reply r;

	assert_int_equal(ask_raw(table, glibc_a, sizeof(glibc_a), 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(r.len, 12 + question + sizeof(want_a_tail));
	assert_memory_equal(r.buf, "\x22\x55\x85\x80\x00\x01\x00\x01\x00\x00\x00\x01", 12);
	assert_memory_equal(r.buf + 12, glibc_a + 12, question);
	assert_memory_equal(r.buf + 12 + question, want_a_tail, sizeof(want_a_tail));

	assert_int_equal(ask_raw(table, glibc_aaaa, sizeof(glibc_aaaa), 0, 512, &r),
			 MAGICDNS_ANSWER);
	assert_int_equal(r.len, 12 + question + sizeof(want_aaaa_tail));
	assert_memory_equal(r.buf, "\x1d\x50\x85\x80\x00\x01\x00\x01\x00\x00\x00\x01", 12);
	assert_memory_equal(r.buf + 12 + question, want_aaaa_tail, sizeof(want_aaaa_tail));

	assert_int_equal(ask_raw(table, glibc_ptr, sizeof(glibc_ptr), 0, 512, &r), MAGICDNS_ANSWER);
	assert_int_equal(r.id, 0xe0e2);
	assert_int_equal(r.flags, 0x8580);
	assert_int_equal(r.an, 1);
	assert_int_equal(r.ar, 1);
	assert_int_equal(r.rr[0].type, DNS_TYPE_PTR);
	assert_int_equal(r.rr[0].rdlen, 23);
	assert_memory_equal(r.rr[0].rdata, glibc_a + 12, 23); /* peer1.tail1234.ts.net. */
	assert_int_equal(r.rr[1].type, DNS_TYPE_OPT);
}

static void test_builder(void **state)
{
	struct ip_prefix good = v4(100, 64, 1, 1), net = {.family = AF_INET, .len = 24};
	struct ip_prefix mixed[] = {good, net};
	char long_label[80], long_name[300];
	struct magicdns_host hosts[] = {
		{.name = "a..b.ts.net.", .addrs = &good, .n_addrs = 1},
		{.name = long_label, .addrs = &good, .n_addrs = 1},
		{.name = long_name, .addrs = &good, .n_addrs = 1},
		{.name = "", .addrs = &good, .n_addrs = 1},
		{.name = ".", .addrs = &good, .n_addrs = 1},
		{.name = NULL, .addrs = &good, .n_addrs = 1},
		{.name = "nil.ts.net.", .addrs = NULL, .n_addrs = 0}, /* no records: not bad */
		{.name = "ok.ts.net.", .addrs = mixed, .n_addrs = 2}, /* the /24 is bad */
	};
	static const struct magicdns_extra_record extra[] = {
		{.name = "mx.ts.net.", .type = "MX", .value = "100.64.1.2"},
		{.name = "cidr.ts.net.", .type = "A", .value = "100.64.1.0/24"},
		{.name = "word.ts.net.", .type = "", .value = "localhost"},
		{.name = "zone.ts.net.", .type = "", .value = "fe80::1%eth0"},
		{.name = "ok.ts.net.", .type = NULL, .value = "100.64.1.3"},
	};
	static const char *const domains[] = {"ts.net", "", "bad..domain.", "."};
	struct magicdns_config cfg = {
		.hosts = hosts,
		.n_hosts = sizeof(hosts) / sizeof(hosts[0]),
		.extra = extra,
		.n_extra = sizeof(extra) / sizeof(extra[0]),
		.local_domains = domains,
		.n_local_domains = 4,
	};
	struct magicdns *m = (struct magicdns *)1;
	const char *why = NULL;
	size_t skipped = 0;
	uint8_t q[128];
	struct reply r;

	memset(long_label, 'l', 64);
	strcpy(long_label + 64, ".ts.net");
	for (size_t i = 0; i < 254; i += 2)
		memcpy(long_name + i, "a.", 2);
	strcpy(long_name + 254, "b");
	assert_int_equal(magicdns_new(&cfg, &m, &skipped, &why), 0);
	/* 6 bad host names, a /24, 4 extra records, 2 domains. */
	assert_int_equal(skipped, 6 + 1 + 4 + 2);
	assert_int_equal(m->n_names, 1);
	assert_int_equal(m->n_domains, 2);
	/* ok.ts.net. kept its good address and the extra one. */
	assert_int_equal(ask_raw(m, q, encode(q, "ok.ts.net.", DNS_TYPE_A, NO_EDNS), 0, 512, &r),
			 MAGICDNS_ANSWER);
	assert_local(&r, DNS_RCODE_NOERROR, 2);
	/* The root is a local domain: everything is ours. */
	assert_int_equal(ask_raw(m, q, encode(q, "example.com.", DNS_TYPE_A, NO_EDNS), 0, 512, &r),
			 MAGICDNS_ANSWER);
	assert_local(&r, DNS_RCODE_NXDOMAIN, 0);
	magicdns_free(m);

	/* Bounds are checked before anything is read or allocated. */
	struct magicdns_host huge[2] = {
		{.name = "a.", .addrs = NULL, .n_addrs = MAGICDNS_MAX_RECORDS},
		{.name = "b.", .addrs = NULL, .n_addrs = 1},
	};
	cfg = (struct magicdns_config){.hosts = huge, .n_hosts = 2};
	m = (struct magicdns *)1;
	assert_int_equal(magicdns_new(&cfg, &m, NULL, &why), -E2BIG);
	assert_null(m);
	assert_non_null(why);
	huge[0].n_addrs = SIZE_MAX;
	assert_int_equal(magicdns_new(&cfg, &m, NULL, &why), -E2BIG);
	cfg = (struct magicdns_config){.n_extra = MAGICDNS_MAX_RECORDS + 1};
	assert_int_equal(magicdns_new(&cfg, &m, NULL, &why), -E2BIG);
	cfg = (struct magicdns_config){.n_local_domains = MAGICDNS_MAX_DOMAINS + 1};
	assert_int_equal(magicdns_new(&cfg, &m, NULL, &why), -E2BIG);
	/* An empty table answers nothing but quad-100's own name. */
	cfg = (struct magicdns_config){0};
	assert_int_equal(magicdns_new(&cfg, &m, NULL, &why), 0);
	assert_int_equal(ask_raw(m, q, encode(q, "peer1.", DNS_TYPE_A, NO_EDNS), 0, 512, &r),
			 MAGICDNS_ANSWER);
	assert_int_equal(rcode(&r), DNS_RCODE_REFUSED);
	magicdns_free(m);
	magicdns_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_aaaa),	    cmocka_unit_test(test_case_insensitive),
		cmocka_unit_test(test_bare_names),  cmocka_unit_test(test_no_such_name_or_type),
		cmocka_unit_test(test_class),	    cmocka_unit_test(test_forward_refused),
		cmocka_unit_test(test_split),	    cmocka_unit_test(test_ptr_v4),
		cmocka_unit_test(test_ptr_v6),	    cmocka_unit_test(test_formerr),
		cmocka_unit_test(test_notimp_drop), cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_edns),	    cmocka_unit_test(test_id_rd),
		cmocka_unit_test(test_glibc),	    cmocka_unit_test(test_builder),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
