/* allowedips.c against a brute-force reference: tens of thousands of random,
 * overlapping prefixes (/0, /32, /128 included) and lookups, IPv4 and IPv6,
 * then removal by peer. Deterministic seeds, printed on failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/wg/allowedips.c"

enum {
	N_PEERS = 64,
	N_BASES = 24,
	N_PREFIXES = 10000, /* per family */
	N_LOOKUPS = 10000,  /* per family, and again after removals */
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

struct ref_entry {
	struct ip_prefix p; /* host bits cleared */
	int *peer;
	bool removed;
	bool superseded; /* an equal prefix was inserted after it */
};

static const struct ref_entry *sort_ref;

static bool same_prefix(const struct ip_prefix *a, const struct ip_prefix *b)
{
	return a->len == b->len && !memcmp(a->addr, b->addr, 16);
}

/* By prefix, then by insertion order. */
static int cmp_idx(const void *x, const void *y)
{
	size_t i = *(const size_t *)x, k = *(const size_t *)y;
	const struct ip_prefix *a = &sort_ref[i].p, *b = &sort_ref[k].p;
	int c = memcmp(a->addr, b->addr, 16);

	if (c)
		return c;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return i < k ? -1 : (i > k);
}

static bool ref_contains(const struct ip_prefix *p, const uint8_t *addr)
{
	unsigned int full = p->len / 8, rest = p->len % 8;

	if (memcmp(p->addr, addr, full))
		return false;
	return rest == 0 || ((p->addr[full] ^ addr[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* Longest prefix wins; among equal prefixes the later insert replaced the
 * earlier one. */
static int *ref_lookup(const struct ref_entry *r, size_t n, int family, const uint8_t *addr)
{
	int best_len = -1;
	int *best = NULL;

	for (size_t i = 0; i < n; i++) {
		if (r[i].removed || r[i].superseded || r[i].p.family != family ||
		    (int)r[i].p.len < best_len)
			continue;
		if (ref_contains(&r[i].p, addr)) {
			best_len = r[i].p.len;
			best = r[i].peer;
		}
	}
	return best;
}

/* An address near one of the bases (so prefixes overlap), or random. */
static void random_addr(uint8_t bases[N_BASES][16], size_t nbytes, uint8_t *out)
{
	uint64_t r = rnd();

	memset(out, 0, 16);
	if (r % 8 == 0) {
		for (size_t i = 0; i < nbytes; i++)
			out[i] = (uint8_t)rnd();
		return;
	}
	memcpy(out, bases[(r >> 8) % N_BASES], nbytes);
	/* Flip a few bits, more often near the end. */
	for (int k = (int)(rnd() % 4); k > 0; k--) {
		size_t bit = nbytes * 8 - 1 - (size_t)(rnd() % (rnd() % 2 ? 12 : nbytes * 8));

		out[bit / 8] ^= (uint8_t)(0x80 >> (bit % 8));
	}
}

static void check_family(int family, uint64_t seed)
{
	size_t nbytes = family == AF_INET ? 4 : 16, bits = nbytes * 8;
	uint8_t bases[N_BASES][16];
	static int peers[N_PEERS];
	struct ref_entry *ref = calloc(N_PREFIXES + 4, sizeof(*ref));
	struct allowedips t;
	size_t n = 0, mismatches = 0, removed_ref = 0, removed_trie = 0, hits = 0;

	rng_state = seed;
	for (size_t i = 0; i < N_BASES; i++)
		for (size_t k = 0; k < 16; k++)
			bases[i][k] = k < nbytes ? (uint8_t)rnd() : 0;
	allowedips_init(&t);
	/* The edges, always: /0, /1, full length - 1, full length. */
	{
		const size_t lens[4] = {0, 1, bits - 1, bits};

		for (size_t i = 0; i < 4; i++) {
			struct ref_entry *e = &ref[n++];

			e->p.family = family;
			e->p.len = (uint8_t)lens[i];
			memcpy(e->p.addr, bases[i], nbytes);
			e->peer = &peers[i];
		}
	}
	while (n < N_PREFIXES + 4) {
		struct ref_entry *e = &ref[n++];
		uint64_t r = rnd();

		e->p.family = family;
		random_addr(bases, nbytes, e->p.addr);
		/* Favour long prefixes and the full length. */
		e->p.len = (uint8_t)(r % 5 == 0 ? bits : (r >> 8) % (bits + 1));
		e->peer = &peers[(r >> 20) % N_PEERS];
	}
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(allowedips_insert(&t, &ref[i].p, ref[i].peer), 0);
		mask_key(ref[i].p.addr, ref[i].p.len); /* the reference compares masked */
	}
	/* An equal prefix inserted later replaced the earlier one: keep only
	 * the last of each group in the reference. */
	{
		size_t *idx = calloc(n, sizeof(*idx));

		for (size_t i = 0; i < n; i++)
			idx[i] = i;
		sort_ref = ref;
		qsort(idx, n, sizeof(*idx), cmp_idx);
		for (size_t i = 0; i + 1 < n; i++)
			if (same_prefix(&ref[idx[i]].p, &ref[idx[i + 1]].p))
				ref[idx[i]].superseded = true;
		free(idx);
	}
	for (size_t i = 0; i < N_LOOKUPS; i++) {
		uint8_t a[16];
		int *want, *got;

		random_addr(bases, nbytes, a);
		want = ref_lookup(ref, n, family, a);
		got = allowedips_lookup(&t, family, a);
		hits += want != NULL;
		if (want != got && mismatches++ < 5)
			print_error("family %d seed %llu lookup %zu: peer %td, reference %td\n",
				    family, (unsigned long long)seed, i, got ? got - peers : -1,
				    want ? want - peers : -1);
	}
	/* Every third inserted prefix's own (masked) address. */
	for (size_t i = 0; i < n; i += 3) {
		if (ref_lookup(ref, n, family, ref[i].p.addr) !=
		    allowedips_lookup(&t, family, ref[i].p.addr))
			mismatches++;
	}
	/* Remove a quarter of the peers, then compare again. */
	for (size_t pi = 0; pi < N_PEERS; pi += 4) {
		removed_trie += allowedips_remove_by_peer(&t, &peers[pi]);
	}
	for (size_t i = 0; i < n; i++) {
		if ((ref[i].peer - peers) % 4 == 0)
			ref[i].removed = true;
	}
	for (size_t i = 0; i < n; i++)
		removed_ref += ref[i].removed && !ref[i].superseded;
	assert_int_equal(removed_trie, removed_ref);
	for (size_t i = 0; i < N_LOOKUPS; i++) {
		uint8_t a[16];

		random_addr(bases, nbytes, a);
		if (ref_lookup(ref, n, family, a) != allowedips_lookup(&t, family, a))
			mismatches++;
	}
	if (mismatches)
		fail_msg("family %d seed %llu: %zu mismatches", family, (unsigned long long)seed,
			 mismatches);
	assert_true(hits > N_LOOKUPS / 4); /* the lookups exercised real matches */
	/* Removing everything leaves no node. */
	for (size_t pi = 0; pi < N_PEERS; pi++)
		allowedips_remove_by_peer(&t, &peers[pi]);
	assert_int_equal(t.n_nodes, 0);
	assert_null(family == AF_INET ? t.root4 : t.root6);
	allowedips_destroy(&t);
	free(ref);
}

static void test_random_v4(void **state)
{
	check_family(AF_INET, 0x5eed0004ULL);
}

static void test_random_v6(void **state)
{
	check_family(AF_INET6, 0x5eed0006ULL);
}

static void test_edges(void **state)
{
	struct allowedips t;
	int a, b, c;
	struct ip_prefix p;
	const uint8_t addr4[4] = {10, 1, 2, 3}, other4[4] = {192, 168, 0, 1};
	uint8_t addr6[16] = {0xfd, 0x7a, [15] = 1};

	allowedips_init(&t);
	assert_null(allowedips_lookup(&t, AF_INET, addr4));
	assert_int_equal(ip_prefix_parse("0.0.0.0/0", false, &p), 0);
	assert_int_equal(allowedips_insert(&t, &p, &a), 0);
	assert_int_equal(ip_prefix_parse("10.1.2.3/32", false, &p), 0);
	assert_int_equal(allowedips_insert(&t, &p, &b), 0);
	/* Host bits are ignored: 10.1.2.99/24 is 10.1.2.0/24. */
	assert_int_equal(ip_prefix_parse("10.1.2.99/24", false, &p), 0);
	assert_int_equal(allowedips_insert(&t, &p, &c), 0);
	assert_ptr_equal(allowedips_lookup(&t, AF_INET, addr4), &b);
	assert_ptr_equal(allowedips_lookup(&t, AF_INET, (const uint8_t[]){10, 1, 2, 4}), &c);
	assert_ptr_equal(allowedips_lookup(&t, AF_INET, other4), &a);
	/* The families are separate: ::/0 is not 0.0.0.0/0. */
	assert_null(allowedips_lookup(&t, AF_INET6, addr6));
	assert_int_equal(ip_prefix_parse("::/0", false, &p), 0);
	assert_int_equal(allowedips_insert(&t, &p, &c), 0);
	assert_int_equal(ip_prefix_parse("fd7a::1/128", false, &p), 0);
	assert_int_equal(allowedips_insert(&t, &p, &a), 0);
	assert_ptr_equal(allowedips_lookup(&t, AF_INET6, addr6), &a);
	addr6[15] = 2;
	assert_ptr_equal(allowedips_lookup(&t, AF_INET6, addr6), &c);
	/* Replacing a prefix's peer; removing it leaves the shorter match. */
	assert_int_equal(ip_prefix_parse("10.1.2.3/32", false, &p), 0);
	assert_int_equal(allowedips_insert(&t, &p, &c), 0);
	assert_ptr_equal(allowedips_lookup(&t, AF_INET, addr4), &c);
	assert_int_equal(allowedips_remove_by_peer(&t, &c), 3); /* /32, /24, ::/0 */
	assert_ptr_equal(allowedips_lookup(&t, AF_INET, addr4), &a);
	assert_int_equal(allowedips_remove_by_peer(&t, &b), 0);
	/* Bad input. */
	p.family = AF_INET;
	p.len = 33;
	assert_int_equal(allowedips_insert(&t, &p, &a), -EINVAL);
	p.len = 8;
	assert_int_equal(allowedips_insert(&t, &p, NULL), -EINVAL);
	p.family = 12345;
	assert_int_equal(allowedips_insert(&t, &p, &a), -EINVAL);
	assert_null(allowedips_lookup(&t, 12345, addr4));
	allowedips_destroy(&t);
	assert_null(t.root4);
	allowedips_destroy(&t); /* twice is fine */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_edges),
		cmocka_unit_test(test_random_v4),
		cmocka_unit_test(test_random_v6),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
