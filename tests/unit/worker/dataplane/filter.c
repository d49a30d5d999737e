/* filter.c against tests/vectors/tailscale/filter.json (upstream
 * wgengine/filter verdicts, in and out, processed in order against one
 * filter), upstream's MatchesFromFilterRules on single rules, the flow cache
 * bound (512, LRU), deny-all and policy swaps that keep flows (bad JSON and
 * address ranges: filter_rules.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "worker/wg/allowedips.h"
#include "worker/dataplane/filter.c"
#include "tests/unit/vectors.h"

/* Counting allocator: the per-packet path must not allocate. Plain builds
 * replace malloc; ASan builds count through the sanitizer's malloc hook. */
static size_t alloc_count;
#if defined(__SANITIZE_ADDRESS__)
#define ALLOC_VIA_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALLOC_VIA_SANITIZER 1
#endif
#endif
#ifdef ALLOC_VIA_SANITIZER
/* From <sanitizer/allocator_interface.h>, which GCC does not install. */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
					      void (*free_hook)(const volatile void *));

static void count_malloc(const volatile void *p, size_t n)
{
	(void)p;
	(void)n;
	alloc_count++;
}

static void count_free(const volatile void *p)
{
	(void)p;
}

static void alloc_counting_start(void)
{
	__sanitizer_install_malloc_and_free_hooks(count_malloc, count_free);
}
#else
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);

void *malloc(size_t n)
{
	alloc_count++;
	return __libc_malloc(n);
}

void *calloc(size_t a, size_t b)
{
	alloc_count++;
	return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
	alloc_count++;
	return __libc_realloc(p, n);
}

static void alloc_counting_start(void)
{
}
#endif

static struct filter_rules *rules_of(const json_t *arr)
{
	struct filter_rules *r;
	const char *warn, *why;

	if (filter_rules_from_json(arr, &r, &warn, &why) != 0)
		fail_msg("rules rejected: %s", why);
	if (warn)
		fail_msg("rules warned: %s", warn);
	return r;
}

/* Builds the vectors' filter: rules, local_nets, cap_holders. */
static struct filter *vector_filter(const json_t *root, struct filter_state *st,
				    struct filter_rules **rules_out)
{
	const json_t *locals = json_object_get(root, "local_nets"), *v, *holders;
	struct ip_prefix local[16];
	struct filter_cap_holder caps[16];
	size_t n_local = 0, n_caps = 0, i;
	struct filter *f;
	const char *key, *why;

	*rules_out = rules_of(json_object_get(root, "rules"));
	json_array_foreach(locals, i, v)
	{
		assert_true(n_local < 16);
		assert_int_equal(ip_prefix_parse(json_string_value(v), false, &local[n_local++]),
				 0);
	}
	holders = json_object_get(root, "cap_holders");
	assert_true(json_object_size(holders) > 0);
	json_object_foreach((json_t *)holders, key, v)
	{
		const json_t *a;
		size_t k;

		json_array_foreach(v, k, a)
		{
			assert_true(n_caps < 16);
			caps[n_caps].cap = key;
			assert_int_equal(
				ip_prefix_parse(json_string_value(a), true, &caps[n_caps].addr), 0);
			n_caps++;
		}
	}
	assert_int_equal(filter_new(&(struct filter_config){.rules = *rules_out,
							    .local = local,
							    .n_local = n_local,
							    .caps = caps,
							    .n_caps = n_caps},
				    st, &f, &why),
			 0);
	return f;
}

/* Every vector packet, parsed and filtered in and out, and an AllowedIPs
 * lookup of its destination: not one allocation. */
static void test_packet_path_does_not_allocate(void **state)
{
	json_t *root = vectors_load("tailscale/filter.json");
	const json_t *pkts = json_object_get(root, "packets"), *v;
	struct filter_state *st = filter_state_new();
	struct filter_rules *rules;
	struct filter *f = vector_filter(root, st, &rules);
	static uint8_t bufs[80][128];
	size_t lens[80], n = 0, i, before;
	struct allowedips t;
	struct ip_prefix pfx;
	int peer;

	alloc_counting_start();
	allowedips_init(&t);
	assert_int_equal(ip_prefix_parse("100.64.0.0/10", false, &pfx), 0);
	assert_int_equal(allowedips_insert(&t, &pfx, &peer), 0);
	json_array_foreach(pkts, i, v)
	{
		assert_true(n < 80);
		lens[n] = vectors_hex_var(v, "packet", bufs[n], sizeof(bufs[n]));
		n++;
	}
	before = alloc_count;
	assert_true(before > 0); /* the hook is live: building the filter allocated */
	for (int round = 0; round < 3; round++) {
		for (i = 0; i < n; i++) {
			struct packet p;
			enum filter_reason reason;
			const char *why;

			packet_parse(&p, bufs[i], lens[i], &why);
			filter_run_out(f, &p, &reason);
			filter_run_in(f, &p, &reason);
			allowedips_lookup(&t, p.version == 6 ? AF_INET6 : AF_INET, p.dst);
		}
	}
	assert_int_equal(alloc_count - before, 0);
	allowedips_destroy(&t);
	filter_free(f);
	filter_rules_free(rules);
	filter_state_free(st);
	json_decref(root);
}

static void test_vectors_in_order(void **state)
{
	json_t *root = vectors_load("tailscale/filter.json");
	const json_t *pkts = json_object_get(root, "packets"), *v;
	struct filter_state *st = filter_state_new();
	struct filter_rules *rules;
	struct filter *f = vector_filter(root, st, &rules);
	size_t i, n_in = 0, n_out = 0, failures = 0;
	struct filter_stats stats;

	assert_true(json_array_size(pkts) >= 60);
	json_array_foreach(pkts, i, v)
	{
		const char *name = json_string_value(json_object_get(v, "name"));
		const char *dir = json_string_value(json_object_get(v, "direction"));
		const char *want = json_string_value(json_object_get(v, "verdict"));
		const char *want_parsed = json_string_value(json_object_get(v, "parsed"));
		const json_t *dr = json_object_get(v, "drop_reason");
		json_int_t want_proto = json_integer_value(json_object_get(v, "ip_proto"));
		uint8_t *buf, tmp[2048];
		size_t len = vectors_hex_var(v, "packet", tmp, sizeof(tmp));
		struct packet p;
		enum filter_reason reason;
		enum filter_verdict verdict;
		const char *why;
		char parsed[128];

		/* Exact-size copy so that ASan sees any read past the end. */
		buf = malloc(len ? len : 1);
		memcpy(buf, tmp, len);
		packet_parse(&p, buf, len, &why);
		packet_format(&p, parsed, sizeof(parsed));
		if (strcmp(parsed, want_parsed)) {
			print_error("case %zu %s: parsed %s, upstream %s\n", i, name, parsed,
				    want_parsed);
			failures++;
		}
		if (p.proto != want_proto) {
			print_error("case %zu %s: proto %u, upstream %lld\n", i, name, p.proto,
				    (long long)want_proto);
			failures++;
		}
		if (!strcmp(dir, "in")) {
			verdict = filter_run_in(f, &p, &reason);
			n_in++;
		} else {
			assert_string_equal(dir, "out");
			verdict = filter_run_out(f, &p, &reason);
			n_out++;
			if (json_is_string(dr) &&
			    strcmp(filter_reason_name(reason), json_string_value(dr))) {
				print_error("case %zu %s: drop reason %s, upstream %s\n", i, name,
					    filter_reason_name(reason), json_string_value(dr));
				failures++;
			}
		}
		if (strcmp(verdict == FILTER_ACCEPT ? "Accept" : "Drop", want)) {
			print_error("case %zu %s (%s): verdict %s (%s), upstream %s\n", i, name,
				    dir, verdict == FILTER_ACCEPT ? "Accept" : "Drop",
				    filter_reason_name(reason), want);
			failures++;
		}
		if ((verdict == FILTER_ACCEPT) != (reason == FILTER_REASON_NONE)) {
			print_error("case %zu %s: reason %s with verdict %d\n", i, name,
				    filter_reason_name(reason), verdict);
			failures++;
		}
		free(buf);
	}
	if (failures)
		fail_msg("%zu mismatches against upstream", failures);
	assert_true(n_in > 0 && n_out > 0);
	filter_state_stats(st, &stats);
	{
		uint64_t total = stats.in_accept + stats.out_accept;

		for (size_t r = 0; r < FILTER_REASON_COUNT; r++)
			total += stats.in_drop[r] + stats.out_drop[r];
		assert_int_equal(total, json_array_size(pkts));
		assert_true(stats.in_drop[FILTER_REASON_ACL] > 0);
		assert_true(stats.in_drop[FILTER_REASON_NOT_LOCAL] > 0);
		assert_int_equal(stats.out_drop[FILTER_REASON_MULTICAST], 1);
	}
	filter_free(f);
	filter_rules_free(rules);
	filter_state_free(st);
	json_decref(root);
}

static bool proto_named(const uint32_t protos[8], const char *name)
{
	static const struct {
		const char *name;
		uint8_t num;
	} names[] = {
		{"TCP", 6}, {"UDP", 17}, {"ICMPv4", 1}, {"ICMPv6", 58}, {"SCTP", 132}, {"GRE", 47},
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(names[i].name, name))
			return proto_in(protos, names[i].num);
	fail_msg("protocol name %s not in the test's table", name);
	return false;
}

static size_t proto_count(const uint32_t protos[8])
{
	size_t n = 0;

	for (int i = 0; i < 8; i++)
		n += (size_t)__builtin_popcount(protos[i]);
	return n;
}

static void dst_text(const struct filter_dst *d, char *buf, size_t n)
{
	char pfx[IP_PREFIX_STRLEN];

	ip_prefix_format(&d->net, pfx, sizeof(pfx));
	if (d->first == 0 && d->last == 65535)
		snprintf(buf, n, "%s:*", pfx);
	else if (d->first == d->last)
		snprintf(buf, n, "%s:%u", pfx, d->first);
	else
		snprintf(buf, n, "%s:%u-%u", pfx, d->first, d->last);
}

static void test_rule_parse_cases(void **state)
{
	json_t *root = vectors_load("tailscale/filter.json");
	const json_t *cases = json_object_get(root, "rule_parse_cases"), *c;
	size_t i;

	assert_true(json_array_size(cases) >= 8);
	json_array_foreach(cases, i, c)
	{
		json_t *list = json_array();
		const json_t *matches = json_object_get(c, "matches"), *m, *x;
		struct filter_rules *r;
		const char *warn, *why, *rule_text;
		char *txt = json_dumps(json_object_get(c, "rule"), JSON_COMPACT);
		bool ok = json_is_true(json_object_get(c, "ok"));
		size_t k;

		rule_text = txt;
		json_array_append(list, json_object_get(c, "rule"));
		if (filter_rules_from_json(list, &r, &warn, &why) != 0)
			fail_msg("case %zu %s: rejected: %s", i, rule_text, why);
		if (ok != (warn == NULL))
			fail_msg("case %zu %s: upstream ok=%d, warning %s", i, rule_text, ok,
				 warn ? warn : "(none)");
		if (json_is_null(matches)) {
			if (r->n_rules != 0)
				fail_msg("case %zu %s: upstream keeps no match, we keep %zu", i,
					 rule_text, r->n_rules);
			goto next;
		}
		if (r->n_rules != json_array_size(matches))
			fail_msg("case %zu %s: %zu rules, upstream %zu", i, rule_text, r->n_rules,
				 json_array_size(matches));
		m = json_array_get(matches, 0);
		{
			const struct filter_rule *fr = &r->rules[0];
			const json_t *srcs = json_object_get(m, "srcs"),
				     *dsts = json_object_get(m, "dsts");
			const json_t *protos = json_object_get(m, "ip_proto");

			if (fr->n_srcs != json_array_size(srcs))
				fail_msg("case %zu %s: %zu srcs, upstream %zu", i, rule_text,
					 fr->n_srcs, json_array_size(srcs));
			json_array_foreach(srcs, k, x)
			{
				char buf[IP_PREFIX_STRLEN];

				ip_prefix_format(&fr->srcs[k], buf, sizeof(buf));
				if (strcmp(buf, json_string_value(x)))
					fail_msg("case %zu %s: src %zu %s, upstream %s", i,
						 rule_text, k, buf, json_string_value(x));
			}
			if (fr->n_dsts != json_array_size(dsts))
				fail_msg("case %zu %s: %zu dsts, upstream %zu", i, rule_text,
					 fr->n_dsts, json_array_size(dsts));
			json_array_foreach(dsts, k, x)
			{
				char buf[96];

				dst_text(&fr->dsts[k], buf, sizeof(buf));
				if (strcmp(buf, json_string_value(x)))
					fail_msg("case %zu %s: dst %zu %s, upstream %s", i,
						 rule_text, k, buf, json_string_value(x));
			}
			if (proto_count(fr->protos) != json_array_size(protos))
				fail_msg("case %zu %s: %zu protocols, upstream %zu", i, rule_text,
					 proto_count(fr->protos), json_array_size(protos));
			json_array_foreach(protos, k, x)
			{
				if (!proto_named(fr->protos, json_string_value(x)))
					fail_msg("case %zu %s: protocol %s missing", i, rule_text,
						 json_string_value(x));
			}
			if ((json_int_t)fr->n_cap_grants !=
			    json_integer_value(json_object_get(m, "cap_grants")))
				fail_msg("case %zu %s: %zu cap grants", i, rule_text,
					 fr->n_cap_grants);
		}
	next:
		filter_rules_free(r);
		json_decref(list);
		free(txt);
	}
	json_decref(root);
}

/* ---- Hand-built packets ------------------------------------------------- */

static size_t udp4(uint8_t *b, const uint8_t src[4], uint16_t sport, const uint8_t dst[4],
		   uint16_t dport)
{
	memset(b, 0, 28);
	b[0] = 0x45;
	b[3] = 28;
	b[8] = 64;
	b[9] = PACKET_PROTO_UDP;
	memcpy(b + 12, src, 4);
	memcpy(b + 16, dst, 4);
	b[20] = (uint8_t)(sport >> 8);
	b[21] = (uint8_t)sport;
	b[22] = (uint8_t)(dport >> 8);
	b[23] = (uint8_t)dport;
	b[25] = 8;
	return 28;
}

static size_t tcp4(uint8_t *b, const uint8_t src[4], const uint8_t dst[4], uint16_t dport,
		   uint8_t flags)
{
	memset(b, 0, 40);
	b[0] = 0x45;
	b[3] = 40;
	b[9] = PACKET_PROTO_TCP;
	memcpy(b + 12, src, 4);
	memcpy(b + 16, dst, 4);
	b[20] = 0x9c;
	b[22] = (uint8_t)(dport >> 8);
	b[23] = (uint8_t)dport;
	b[32] = 0x50;
	b[33] = flags;
	return 40;
}

static const uint8_t ME[4] = {100, 64, 0, 1}, PEER[4] = {100, 64, 0, 9};
static const struct ip_prefix ME_PFX = {.family = AF_INET, .len = 32, .addr = {100, 64, 0, 1}};

static enum filter_verdict run(const struct filter *f, bool in, const uint8_t *b, size_t len)
{
	struct packet p;
	enum filter_reason reason;
	const char *why;

	packet_parse(&p, b, len, &why);
	return in ? filter_run_in(f, &p, &reason) : filter_run_out(f, &p, &reason);
}

/* Outbound from ME:sport to PEER:9999 (records the reverse flow). */
static void send_out(const struct filter *f, uint16_t sport)
{
	uint8_t b[64];

	assert_int_equal(run(f, false, b, udp4(b, ME, sport, PEER, 9999)), FILTER_ACCEPT);
}

static enum filter_verdict reply_in(const struct filter *f, uint16_t dport)
{
	uint8_t b[64];

	return run(f, true, b, udp4(b, PEER, 9999, ME, dport));
}

/* An IPv4 packet of protocol proto with the given transport bytes. */
static size_t ip4(uint8_t *b, uint8_t proto, const uint8_t src[4], const uint8_t dst[4],
		  const uint8_t *l4, size_t l4len)
{
	memset(b, 0, 20);
	b[0] = 0x45;
	b[2] = (uint8_t)((20 + l4len) >> 8);
	b[3] = (uint8_t)(20 + l4len);
	b[9] = proto;
	memcpy(b + 12, src, 4);
	memcpy(b + 16, dst, 4);
	memcpy(b + 20, l4, l4len);
	return 20 + l4len;
}

/* Upstream semantics the vectors do not isolate (read from match.go and
 * filter.go): cap: sources open ICMP to any local destination but not other
 * protocols; other protocols need the full port range; TCP SYN via cap. */
static void test_semantics_beyond_vectors(void **state)
{
	json_t *j = json_loads(
		"[{\"SrcIPs\":[\"cap:x\"],\"DstPorts\":[{\"IP\":\"100.64.0.1\",\"Ports\":"
		"{\"First\":22,\"Last\":22}}]},"
		"{\"SrcIPs\":[\"100.64.0.3\"],\"DstPorts\":[{\"IP\":\"100.64.0.1\",\"Ports\":"
		"{\"First\":0,\"Last\":1000}}],\"IPProto\":[47]},"
		"{\"SrcIPs\":[\"100.64.0.4\"],\"DstPorts\":[{\"IP\":\"100.64.0.1\",\"Ports\":"
		"{\"First\":0,\"Last\":65535}}],\"IPProto\":[47]}]",
		0, NULL);
	static const uint8_t echo[8] = {8, 0}, gre[4] = {0}, h3[4] = {100, 64, 0, 3},
			     h4[4] = {100, 64, 0, 4}, h7[4] = {100, 64, 0, 7},
			     h8[4] = {100, 64, 0, 8}, sub[4] = {10, 1, 2, 3},
			     mc[4] = {239, 1, 1, 1};
	const struct ip_prefix local[2] = {ME_PFX, {.family = AF_INET, .len = 16, .addr = {10, 1}}};
	const struct filter_cap_holder caps[1] = {
		{.cap = "x", .addr = {.family = AF_INET, .len = 32, .addr = {100, 64, 0, 7}}}};
	struct filter_state *st = filter_state_new();
	struct filter_rules *rules;
	struct filter *f;
	const char *why;
	uint8_t b[64];

	assert_non_null(j);
	rules = rules_of(j);
	assert_int_equal(filter_new(&(struct filter_config){.rules = rules,
							    .local = local,
							    .n_local = 2,
							    .caps = caps,
							    .n_caps = 1},
				    st, &f, &why),
			 0);
	assert_int_equal(run(f, true, b, ip4(b, 1, h7, sub, echo, 8)), FILTER_ACCEPT);
	assert_int_equal(run(f, true, b, ip4(b, 1, h8, ME, echo, 8)), FILTER_DROP);
	assert_int_equal(run(f, true, b, tcp4(b, h7, ME, 22, PACKET_TCP_SYN)), FILTER_ACCEPT);
	assert_int_equal(run(f, true, b, tcp4(b, h7, ME, 23, PACKET_TCP_SYN)), FILTER_DROP);
	assert_int_equal(run(f, true, b, tcp4(b, h8, ME, 22, PACKET_TCP_SYN)), FILTER_DROP);
	assert_int_equal(run(f, true, b, ip4(b, 47, h3, ME, gre, 4)), FILTER_DROP);
	assert_int_equal(run(f, true, b, ip4(b, 47, h4, ME, gre, 4)), FILTER_ACCEPT);
	assert_int_equal(run(f, true, b, ip4(b, 47, h7, ME, gre, 4)), FILTER_DROP);
	/* Outbound multicast is dropped; outbound unicast of any kind passes. */
	assert_int_equal(run(f, false, b, ip4(b, 47, ME, mc, gre, 4)), FILTER_DROP);
	assert_int_equal(run(f, false, b, ip4(b, 47, ME, h3, gre, 4)), FILTER_ACCEPT);
	filter_free(f);
	filter_rules_free(rules);
	filter_state_free(st);
	json_decref(j);
}

static void test_flow_cache_bound(void **state)
{
	struct filter_state *st = filter_state_new();
	struct filter_config cfg = {.local = &ME_PFX, .n_local = 1}; /* no rules */
	struct filter *f;
	struct filter_stats stats;
	const char *why;

	assert_int_equal(filter_new(&cfg, st, &f, &why), 0);
	/* Unsolicited: dropped. */
	assert_int_equal(reply_in(f, 41000), FILTER_DROP);
	/* A reply after our packet, then after 511 other flows: still there. */
	send_out(f, 41000);
	assert_int_equal(reply_in(f, 41000), FILTER_ACCEPT);
	filter_state_flush(st);
	send_out(f, 41000);
	for (uint16_t i = 0; i < FILTER_FLOW_MAX - 1; i++)
		send_out(f, (uint16_t)(50000 + i));
	filter_state_stats(st, &stats);
	assert_int_equal(stats.flows, FILTER_FLOW_MAX);
	assert_int_equal(reply_in(f, 41000), FILTER_ACCEPT);
	/* After 512 other flows it is gone. */
	filter_state_flush(st);
	send_out(f, 41000);
	for (uint16_t i = 0; i < FILTER_FLOW_MAX; i++)
		send_out(f, (uint16_t)(50000 + i));
	filter_state_stats(st, &stats);
	assert_int_equal(stats.flows, FILTER_FLOW_MAX);
	assert_int_equal(reply_in(f, 41000), FILTER_DROP);
	/* The newest 512 are all there; the one before them is not. */
	for (uint16_t i = 0; i < FILTER_FLOW_MAX; i++)
		assert_int_equal(reply_in(f, (uint16_t)(50000 + i)), FILTER_ACCEPT);
	/* LRU, not FIFO: a flow seen again (a reply) becomes the newest. */
	filter_state_flush(st);
	send_out(f, 41000);
	send_out(f, 41001);
	for (uint16_t i = 0; i < FILTER_FLOW_MAX - 2; i++)
		send_out(f, (uint16_t)(50000 + i));
	assert_int_equal(reply_in(f, 41000), FILTER_ACCEPT); /* refreshes 41000 */
	send_out(f, 60000);				     /* evicts 41001, the oldest */
	assert_int_equal(reply_in(f, 41001), FILTER_DROP);
	assert_int_equal(reply_in(f, 41000), FILTER_ACCEPT);
	filter_free(f);
	filter_state_free(st);
}

static void test_swap_keeps_flows_and_policy_applies(void **state)
{
	struct filter_state *st = filter_state_new();
	json_t *allow22 = json_loads("[{\"SrcIPs\":[\"100.64.0.9\"],\"DstPorts\":[{\"IP\":"
				     "\"100.64.0.1\",\"Ports\":{\"First\":22,\"Last\":22}}]}]",
				     0, NULL);
	struct filter_rules *rules = rules_of(allow22);
	struct filter *f1, *f2;
	const char *why;
	uint8_t b[64];

	assert_int_equal(
		filter_new(&(struct filter_config){.local = &ME_PFX, .n_local = 1}, st, &f1, &why),
		0);
	assert_int_equal(run(f1, true, b, tcp4(b, PEER, ME, 22, PACKET_TCP_SYN)), FILTER_DROP);
	send_out(f1, 41000);
	assert_int_equal(
		filter_new(&(struct filter_config){.rules = rules, .local = &ME_PFX, .n_local = 1},
			   st, &f2, &why),
		0);
	/* The new policy allows 22, not 23; the old flow still gets its reply. */
	assert_int_equal(run(f2, true, b, tcp4(b, PEER, ME, 22, PACKET_TCP_SYN)), FILTER_ACCEPT);
	assert_int_equal(run(f2, true, b, tcp4(b, PEER, ME, 23, PACKET_TCP_SYN)), FILTER_DROP);
	assert_int_equal(reply_in(f2, 41000), FILTER_ACCEPT);
	filter_free(f1);
	/* Shields up ignores the rules. */
	assert_int_equal(filter_new(&(struct filter_config){.rules = rules,
							    .local = &ME_PFX,
							    .n_local = 1,
							    .shields_up = true},
				    st, &f1, &why),
			 0);
	assert_int_equal(run(f1, true, b, tcp4(b, PEER, ME, 22, PACKET_TCP_SYN)), FILTER_DROP);
	assert_int_equal(run(f1, true, b, tcp4(b, PEER, ME, 22, PACKET_TCP_ACK)), FILTER_ACCEPT);
	filter_free(f1);
	filter_free(f2);
	filter_rules_free(rules);
	json_decref(allow22);
	filter_state_free(st);
}

static void test_deny_all_before_netmap(void **state)
{
	struct filter_state *st = filter_state_new();
	struct filter *f;
	struct filter_stats stats;
	const char *why;
	uint8_t b[64];

	assert_int_equal(filter_new(&(struct filter_config){0}, st, &f, &why), 0);
	assert_int_equal(run(f, true, b, tcp4(b, PEER, ME, 22, PACKET_TCP_SYN)), FILTER_DROP);
	assert_int_equal(run(f, true, b, tcp4(b, PEER, ME, 22, PACKET_TCP_ACK)), FILTER_DROP);
	assert_int_equal(reply_in(f, 41000), FILTER_DROP);
	assert_int_equal(run(f, true, b, 0), FILTER_ACCEPT); /* keepalive */
	filter_state_stats(st, &stats);
	assert_int_equal(stats.in_drop[FILTER_REASON_NOT_LOCAL], 3);
	assert_int_equal(stats.in_accept, 1);
	filter_free(f);
	filter_state_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_in_order),
		cmocka_unit_test(test_rule_parse_cases),
		cmocka_unit_test(test_packet_path_does_not_allocate),
		cmocka_unit_test(test_semantics_beyond_vectors),
		cmocka_unit_test(test_flow_cache_bound),
		cmocka_unit_test(test_swap_keeps_flows_and_policy_applies),
		cmocka_unit_test(test_deny_all_before_netmap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
