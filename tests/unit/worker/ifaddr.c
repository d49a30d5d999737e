/* The rtnetlink reader of the host's addresses and the endpoint table:
 * links and addresses as the kernel sends them (point-to-point IFA_LOCAL
 * against IFA_ADDRESS in either order, IFA_FLAGS, names without their NUL),
 * every length bound, errors and dump ends; the built-in and configured
 * interface deny lists; which addresses are reachable; the table's rules
 * and bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "worker/ifaddr.c"

/* A datagram under construction. */
struct dgram {
	uint8_t b[4096];
	size_t len;
	size_t msg; /* where the open message starts */
};

static void put(struct dgram *d, const void *p, size_t n)
{
	assert_true(d->len + n <= sizeof(d->b));
	memcpy(d->b + d->len, p, n);
	d->len += n;
}

static void pad(struct dgram *d)
{
	static const uint8_t zero[4];

	put(d, zero, align4(d->len) - d->len);
}

static void msg_begin(struct dgram *d, uint16_t type, uint32_t seq)
{
	struct nlmsghdr h = {.nlmsg_type = type, .nlmsg_flags = NLM_F_MULTI, .nlmsg_seq = seq};

	pad(d);
	d->msg = d->len;
	put(d, &h, sizeof(h));
}

static void msg_end(struct dgram *d)
{
	uint32_t len = (uint32_t)(d->len - d->msg);

	memcpy(d->b + d->msg, &len, sizeof(len));
}

static void attr(struct dgram *d, uint16_t type, const void *p, size_t n)
{
	struct rtattr a = {.rta_len = (uint16_t)(RTA_HDR_LEN + n), .rta_type = type};

	pad(d);
	put(d, &a, sizeof(a));
	put(d, p, n);
}

static void add_link(struct dgram *d, int index, unsigned int flags, const char *name)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = index, .ifi_flags = flags};

	msg_begin(d, RTM_NEWLINK, 7);
	put(d, &ifi, sizeof(ifi));
	if (name)
		attr(d, IFLA_IFNAME, name, strlen(name) + 1);
	msg_end(d);
}

/* An address message: local and/or address (NULL: absent), IFA_FLAGS when
 * flags is not 0. */
static void add_addr(struct dgram *d, int family, int index, const uint8_t *local,
		     const uint8_t *address, uint32_t flags)
{
	struct ifaddrmsg ifa = {
		.ifa_family = (uint8_t)family, .ifa_prefixlen = 24, .ifa_index = (uint32_t)index};
	size_t n = family == AF_INET ? 4 : 16;

	msg_begin(d, RTM_NEWADDR, 7);
	put(d, &ifa, sizeof(ifa));
	if (address)
		attr(d, IFA_ADDRESS, address, n);
	if (local)
		attr(d, IFA_LOCAL, local, n);
	if (flags)
		attr(d, IFA_FLAGS, &flags, sizeof(flags));
	msg_end(d);
}

static void add_done(struct dgram *d)
{
	uint32_t zero = 0;

	msg_begin(d, NLMSG_DONE, 7);
	put(d, &zero, sizeof(zero));
	msg_end(d);
}

/* Every message of d into t; returns the last ifaddr_next result. */
static int feed(const struct dgram *d, struct ifaddr_table *t, const struct ifaddr_deny *deny)
{
	struct ifaddr_msg m;
	const char *why = NULL;
	size_t off = 0;
	int ret;

	while ((ret = ifaddr_next(d->b, d->len, &off, &m, &why)) > 0)
		ifaddr_table_add(t, &m, deny);
	if (ret < 0)
		assert_non_null(why);
	return ret;
}

static const uint8_t v4_a[4] = {10, 1, 2, 3}, v4_peer[4] = {10, 1, 2, 254};
static const uint8_t v6_a[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 5};

static void test_link_and_addresses(void **state)
{
	struct dgram d = {0};
	struct ifaddr_msg m;
	const char *why = NULL;
	size_t off = 0;

	(void)state;
	add_link(&d, 2, IFF_UP | IFF_RUNNING, "eth0");
	add_addr(&d, AF_INET, 2, v4_a, v4_peer, 0); /* ptp: IFA_ADDRESS first */
	add_addr(&d, AF_INET, 2, NULL, v4_peer, 0);
	add_addr(&d, AF_INET6, 2, NULL, v6_a, IFA_F_NODAD);
	add_done(&d);

	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.type, RTM_NEWLINK);
	assert_int_equal(m.seq, 7);
	assert_int_equal(m.index, 2);
	assert_string_equal(m.name, "eth0");
	assert_true(m.link_flags & IFF_UP);

	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.type, RTM_NEWADDR);
	assert_int_equal(m.family, AF_INET);
	assert_int_equal(m.index, 2);
	assert_memory_equal(m.addr, v4_a, 4); /* IFA_LOCAL wins whatever the order */

	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_memory_equal(m.addr, v4_peer, 4); /* IFA_ADDRESS alone counts */

	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.family, AF_INET6);
	assert_memory_equal(m.addr, v6_a, 16);
	assert_int_equal(m.addr_flags, IFA_F_NODAD);

	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.type, NLMSG_DONE);
	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 0);
	assert_int_equal(off, d.len);
}

static void test_errors(void **state)
{
	struct dgram d = {0};
	struct ifaddr_msg m;
	const char *why = NULL;
	size_t off = 0;
	int32_t code = -EPERM;

	(void)state;
	msg_begin(&d, NLMSG_ERROR, 9);
	put(&d, &code, sizeof(code)); /* the echoed request cut off: allowed */
	msg_end(&d);
	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.type, NLMSG_ERROR);
	assert_int_equal(m.error, -EPERM);
	assert_int_equal(m.seq, 9);

	/* A positive code, or one beyond MAX_ERRNO, is no errno. */
	static const int32_t bad_codes[] = {1, -4096, INT32_MIN};
	for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
		memcpy(d.b + NLHDR_LEN, &bad_codes[i], 4);
		off = 0;
		why = NULL;
		assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), -EBADMSG);
		assert_non_null(why);
	}
	/* An error message too short for its code. */
	d = (struct dgram){0};
	msg_begin(&d, NLMSG_ERROR, 9);
	msg_end(&d);
	off = 0;
	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), -EBADMSG);
}

/* Every length: the header's against the datagram and its own size; the
 * bodies' against their fixed headers; attributes against their message. */
static void test_bounds(void **state)
{
	struct dgram d = {0};
	struct ifaddr_msg m;
	const char *why = NULL;
	size_t off = 0;
	uint32_t len;

	(void)state;
	add_link(&d, 3, IFF_UP, "eth1");
	/* Every cut of the datagram: never a read past it. */
	for (size_t cut = 1; cut < d.len; cut++) {
		off = 0;
		why = NULL;
		assert_int_equal(ifaddr_next(d.b, cut, &off, &m, &why), -EBADMSG);
		assert_non_null(why);
		assert_int_equal(off, 0);
	}
	/* A message length below its header, or beyond the datagram. */
	static const uint32_t bad_lens[] = {0, 15, 4097, UINT32_MAX};
	for (size_t i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++) {
		memcpy(d.b, &bad_lens[i], 4);
		off = 0;
		assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), -EBADMSG);
	}
	/* A link message shorter than ifinfomsg, an address message shorter
	 * than ifaddrmsg. */
	for (int k = 0; k < 2; k++) {
		d = (struct dgram){0};
		if (k == 0)
			add_link(&d, 3, IFF_UP, "eth1");
		else
			add_addr(&d, AF_INET, 2, v4_a, NULL, 0);
		len = NLHDR_LEN + (k == 0 ? IFINFO_LEN : IFADDRM_LEN) - 1;
		memcpy(d.b, &len, 4);
		off = 0;
		assert_int_equal(ifaddr_next(d.b, len, &off, &m, &why), -EBADMSG);
	}

	/* An attribute whose length overruns its message: no address, and
	 * the message itself still reads. */
	d = (struct dgram){0};
	add_addr(&d, AF_INET, 2, v4_a, NULL, 0);
	uint16_t big = 200;
	memcpy(d.b + NLHDR_LEN + IFADDRM_LEN, &big, 2);
	off = 0;
	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.family, 0);
	/* An attribute shorter than its own header. */
	uint16_t tiny = 3;
	memcpy(d.b + NLHDR_LEN + IFADDRM_LEN, &tiny, 2);
	off = 0;
	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.family, 0);

	/* An IPv4 address of 16 bytes, an IPv6 one of 4: neither used. */
	d = (struct dgram){0};
	msg_begin(&d, RTM_NEWADDR, 1);
	put(&d, &(struct ifaddrmsg){.ifa_family = AF_INET, .ifa_index = 2}, IFADDRM_LEN);
	attr(&d, IFA_LOCAL, v6_a, 16);
	msg_end(&d);
	msg_begin(&d, RTM_NEWADDR, 1);
	put(&d, &(struct ifaddrmsg){.ifa_family = AF_INET6, .ifa_index = 2}, IFADDRM_LEN);
	attr(&d, IFA_ADDRESS, v4_a, 4);
	msg_end(&d);
	off = 0;
	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.family, 0);
	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(m.family, 0);

	/* The last message without its padding still reads. */
	d = (struct dgram){0};
	add_link(&d, 4, IFF_UP, "e"); /* 16 + 16 + 4 + 2 = 38 bytes */
	assert_int_equal(d.len % 4, 2);
	off = 0;
	assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
	assert_int_equal(off, d.len);
	assert_string_equal(m.name, "e");
}

/* A name is the bytes before its NUL, within the attribute, and shorter
 * than IF_NAMESIZE: anything else is no name (never a shortened one). */
static void test_names(void **state)
{
	static const struct {
		const char *bytes;
		size_t n;
		const char *want;
	} v[] = {
		{"eth0", 5, "eth0"},
		{"eth0", 4, ""}, /* no NUL in the attribute */
		{"", 1, ""},
		{"abcdefghijklmno", 16, "abcdefghijklmno"}, /* 15 bytes: the longest */
		{"abcdefghijklmnop", 17, ""},
		{"ab\0cd", 6, "ab"}, /* bytes after the NUL are padding */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct dgram d = {0};
		struct ifaddr_msg m;
		const char *why = NULL;
		size_t off = 0;

		msg_begin(&d, RTM_NEWLINK, 1);
		put(&d, &(struct ifinfomsg){.ifi_index = 5, .ifi_flags = IFF_UP}, IFINFO_LEN);
		attr(&d, IFLA_IFNAME, v[i].bytes, v[i].n);
		msg_end(&d);
		assert_int_equal(ifaddr_next(d.b, d.len, &off, &m, &why), 1);
		if (strcmp(m.name, v[i].want))
			fail_msg("vector %zu: name \"%s\", want \"%s\"", i, m.name, v[i].want);
	}
}

static void test_deny(void **state)
{
	static const struct {
		const char *name;
		bool builtin, configured; /* denied without, with "ens9*" and "br-?" */
	} v[] = {
		{"lo", true, true},	     {"kube-ipvs0", true, true},
		{"cni0", true, true},	     {"docker0", true, true},
		{"veth1a2b", true, true},    {"vethx", true, true},
		{"flannel.1", true, true},   {"flannel-wg", true, true},
		{"cilium_host", true, true}, {"cilium_vxlan", true, true},
		{"cali12ab", true, true},    {"eth0", false, false},
		{"ens5", false, false},	     {"ens9", false, true},
		{"ens9f1", false, true},     {"br-1", false, true},
		{"br-12", false, false},     {"cni1", false, false},
		{"lo0", false, false},	     {"cilium", false, false},
		{"xveth", false, false},
	};
	struct ifaddr_deny d = {0};

	(void)state;
	assert_int_equal(ifaddr_deny_add(&d, "ens9*"), 0);
	assert_int_equal(ifaddr_deny_add(&d, "br-?"), 0);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		if (ifaddr_denied(NULL, v[i].name) != v[i].builtin)
			fail_msg("vector %zu: %s built-in", i, v[i].name);
		if (ifaddr_denied(&d, v[i].name) != v[i].configured)
			fail_msg("vector %zu: %s configured", i, v[i].name);
	}
	/* Bounds: a glob of 64 bytes fits, 65 does not; no space, '/', or
	 * control byte; at most IFADDR_DENY_MAX. */
	char g[IFADDR_GLOB_MAX_LEN + 2];
	memset(g, 'a', sizeof(g));
	g[IFADDR_GLOB_MAX_LEN] = '\0';
	assert_int_equal(ifaddr_deny_add(&d, g), 0);
	g[IFADDR_GLOB_MAX_LEN] = 'a';
	g[IFADDR_GLOB_MAX_LEN + 1] = '\0';
	assert_int_equal(ifaddr_deny_add(&d, g), -EINVAL);
	assert_int_equal(ifaddr_deny_add(&d, ""), -EINVAL);
	assert_int_equal(ifaddr_deny_add(&d, "a b"), -EINVAL);
	assert_int_equal(ifaddr_deny_add(&d, "a/b"), -EINVAL);
	assert_int_equal(ifaddr_deny_add(&d, "a\tb"), -EINVAL);
	while (d.n < IFADDR_DENY_MAX)
		assert_int_equal(ifaddr_deny_add(&d, "x*"), 0);
	assert_int_equal(ifaddr_deny_add(&d, "y*"), -ENOSPC);
}

static void test_reachable(void **state)
{
	static const struct {
		int family;
		uint8_t a[16];
		bool want;
	} v[] = {
		{AF_INET, {10, 1, 2, 3}, true},
		{AF_INET, {192, 0, 2, 1}, true},
		{AF_INET, {100, 63, 255, 255}, true}, /* below 100.64/10 */
		{AF_INET, {100, 64, 0, 1}, false},
		{AF_INET, {100, 127, 255, 254}, false},
		{AF_INET, {100, 128, 0, 1}, true},
		{AF_INET, {127, 0, 0, 1}, false},
		{AF_INET, {169, 254, 1, 1}, false},
		{AF_INET, {224, 0, 0, 1}, false},
		{AF_INET, {0, 0, 0, 0}, false},
		{AF_INET, {255, 255, 255, 255}, false},
		{AF_INET6, {0x20, 0x01, 0x0d, 0xb8, [15] = 1}, true},
		{AF_INET6, {0xfd, 0x00, [15] = 1}, true}, /* other ULAs: a LAN's */
		{AF_INET6, {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = 1}, false},
		{AF_INET6, {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe1, [15] = 1}, true},
		{AF_INET6, {0xfe, 0x80, [15] = 1}, false},
		{AF_INET6, {0xfe, 0xbf, [15] = 1}, false},
		{AF_INET6, {0xfe, 0xc0, [15] = 1}, true},
		{AF_INET6, {0xff, 0x02, [15] = 1}, false},
		{AF_INET6, {[15] = 1}, false},
		{AF_INET6, {0}, false},
		{AF_INET6, {[10] = 0xff, [11] = 0xff, 10, 1, 2, 3}, false},
		{AF_UNSPEC, {10, 1, 2, 3}, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (ifaddr_reachable(v[i].family, v[i].a) != v[i].want)
			fail_msg("vector %zu", i);
}

static void test_table(void **state)
{
	static const uint8_t tailnet4[4] = {100, 100, 1, 1}, ll6[16] = {0xfe, 0x80, [15] = 9};
	static const uint8_t v4_b[4] = {192, 0, 2, 7}, v4_c[4] = {198, 51, 100, 1};
	struct ifaddr_table *t = calloc(1, sizeof(*t));
	struct ifaddr_deny deny = {0};
	struct dgram d = {0};

	(void)state;
	assert_int_equal(ifaddr_deny_add(&deny, "blk*"), 0);
	add_link(&d, 1, IFF_UP | IFF_LOOPBACK, "lo");
	add_link(&d, 2, IFF_UP, "eth0");
	add_link(&d, 3, IFF_UP, "cni0");
	add_link(&d, 4, IFF_UP, "blk0");
	add_link(&d, 5, 0, "eth1"); /* down */
	add_link(&d, 6, IFF_UP, NULL);
	add_link(&d, 7, IFF_UP, "eth2");
	add_addr(&d, AF_INET, 1, (const uint8_t[]){127, 0, 0, 1}, NULL, 0);
	add_addr(&d, AF_INET, 2, v4_a, NULL, 0);
	add_addr(&d, AF_INET, 2, tailnet4, NULL, 0);
	add_addr(&d, AF_INET6, 2, NULL, ll6, 0);
	add_addr(&d, AF_INET6, 2, NULL, v6_a, 0);
	add_addr(&d, AF_INET, 3, v4_b, NULL, 0);
	add_addr(&d, AF_INET, 4, v4_b, NULL, 0);
	add_addr(&d, AF_INET, 5, v4_b, NULL, 0);
	add_addr(&d, AF_INET, 6, v4_b, NULL, 0);
	add_addr(&d, AF_INET, 9, v4_b, NULL, 0); /* no such link */
	add_addr(&d, AF_INET, 7, v4_c, NULL, IFA_F_TENTATIVE);
	add_addr(&d, AF_INET, 7, v4_c, NULL, IFA_F_DEPRECATED);
	add_addr(&d, AF_INET, 7, v4_c, NULL, IFA_F_DADFAILED);
	add_addr(&d, AF_INET, 7, v4_a, NULL, 0); /* again, on another link */
	add_done(&d);
	assert_int_equal(feed(&d, t, &deny), 0);

	assert_int_equal(t->n_links, 2);
	assert_string_equal(t->links[0].name, "eth0");
	assert_string_equal(t->links[1].name, "eth2");
	assert_true(ifaddr_table_has_link(t, 2));
	assert_false(ifaddr_table_has_link(t, 3));
	assert_int_equal(t->n_addrs, 2);
	assert_int_equal(t->addrs[0].family, AF_INET);
	assert_memory_equal(t->addrs[0].addr, v4_a, 4);
	assert_int_equal(t->addrs[1].family, AF_INET6);
	assert_memory_equal(t->addrs[1].addr, v6_a, 16);
	assert_int_equal(t->dropped, 0);

	/* The bounds: links and addresses beyond them are counted, not kept. */
	memset(t, 0, sizeof(*t));
	for (int i = 0; i < IFADDR_LINKS_MAX + 3; i++) {
		char name[IF_NAMESIZE];

		d = (struct dgram){0};
		snprintf(name, sizeof(name), "en%d", i);
		add_link(&d, 10 + i, IFF_UP, name);
		assert_int_equal(feed(&d, t, NULL), 0);
	}
	assert_int_equal(t->n_links, IFADDR_LINKS_MAX);
	assert_int_equal(t->dropped, 3);
	for (int i = 0; i < IFADDR_ADDRS_MAX + 5; i++) {
		uint8_t a[4] = {10, 9, (uint8_t)(i >> 8), (uint8_t)(i + 1)};

		d = (struct dgram){0};
		add_addr(&d, AF_INET, 10, a, NULL, 0);
		assert_int_equal(feed(&d, t, NULL), 0);
	}
	assert_int_equal(t->n_addrs, IFADDR_ADDRS_MAX);
	assert_int_equal(t->dropped, 8);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_link_and_addresses),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_deny),
		cmocka_unit_test(test_reachable),
		cmocka_unit_test(test_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
