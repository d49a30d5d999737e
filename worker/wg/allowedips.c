/* AllowedIPs longest-prefix match: a path-compressed binary trie per family
 * (see allowedips.h). Node invariants:
 *  - key holds the node's prefix with every bit past cidr zero;
 *  - a child's prefix extends its parent's, and the child sits at index
 *    bit(child key, parent cidr);
 *  - a node without a peer has two children (it only marks a split), except
 *    transiently inside allowedips_remove_by_peer(). */
#include "allowedips.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "mem.h"

struct allowedips_node {
	struct allowedips_node *child[2];
	void *peer;
	uint8_t key[16];
	uint8_t cidr;
};

void allowedips_init(struct allowedips *t)
{
	memset(t, 0, sizeof(*t));
}

/* Iterative, so that depth never becomes stack depth. */
static void free_tree(struct allowedips_node *root)
{
	struct allowedips_node *stack[130];
	size_t sp = 0;

	if (root)
		stack[sp++] = root;
	while (sp) {
		struct allowedips_node *n = stack[--sp];

		/* Depth <= 129, and each pop pushes at most 2: bounded by 2 * 130. */
		for (int i = 0; i < 2; i++) {
			if (n->child[i]) {
				if (sp == sizeof(stack) / sizeof(stack[0])) {
					/* Cannot happen with depth <= 129; keep it safe anyway. */
					free_tree(n->child[i]);
				} else {
					stack[sp++] = n->child[i];
				}
			}
		}
		free(n);
	}
}

void allowedips_destroy(struct allowedips *t)
{
	free_tree(t->root4);
	free_tree(t->root6);
	allowedips_init(t);
}

static unsigned int bit_at(const uint8_t *key, unsigned int i)
{
	return (key[i / 8] >> (7 - i % 8)) & 1;
}

/* Number of leading bits key a and b share, at most max. */
static unsigned int common_bits(const uint8_t *a, const uint8_t *b, unsigned int max)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < 16 && n < max; i++) {
		uint8_t x = a[i] ^ b[i];

		if (x) {
			n += (unsigned int)__builtin_clz(x) - 24;
			break;
		}
		n += 8;
	}
	return n < max ? n : max;
}

static void mask_key(uint8_t *key, unsigned int cidr)
{
	for (unsigned int i = 0; i < 16; i++) {
		unsigned int first = i * 8;

		if (first >= cidr)
			key[i] = 0;
		else if (first + 8 > cidr)
			key[i] &= (uint8_t)(0xff << (8 - (cidr - first)));
	}
}

/* True when the first n->cidr bits of key equal n's prefix. */
static bool prefix_matches(const struct allowedips_node *n, const uint8_t *key)
{
	return common_bits(n->key, key, n->cidr) == n->cidr;
}

static struct allowedips_node *node_new(const uint8_t *key, unsigned int cidr, void *peer)
{
	struct allowedips_node *n = xcalloc(1, sizeof(*n));

	memcpy(n->key, key, sizeof(n->key));
	mask_key(n->key, cidr);
	n->cidr = (uint8_t)cidr;
	n->peer = peer;
	return n;
}

int allowedips_insert(struct allowedips *t, const struct ip_prefix *p, void *peer)
{
	struct allowedips_node **slot, *down, *nn, *split;
	unsigned int bits, cidr, cl;
	uint8_t key[16] = {0};

	if (!peer || (p->family != AF_INET && p->family != AF_INET6))
		return -EINVAL;
	bits = p->family == AF_INET ? 32 : 128;
	if (p->len > bits)
		return -EINVAL;
	cidr = p->len;
	memcpy(key, p->addr, bits / 8);
	mask_key(key, cidr);
	slot = p->family == AF_INET ? &t->root4 : &t->root6;
	/* Descend while the node is a prefix of the new one. */
	while (*slot && (*slot)->cidr <= cidr && prefix_matches(*slot, key)) {
		if ((*slot)->cidr == cidr) {
			(*slot)->peer = peer;
			return 0;
		}
		slot = &(*slot)->child[bit_at(key, (*slot)->cidr)];
	}
	nn = node_new(key, cidr, peer);
	t->n_nodes++;
	down = *slot;
	if (!down) {
		*slot = nn;
		return 0;
	}
	cl = common_bits(down->key, key, cidr < down->cidr ? cidr : down->cidr);
	if (cl == cidr) {
		/* The new prefix contains down: it goes above it. */
		nn->child[bit_at(down->key, cidr)] = down;
		*slot = nn;
		return 0;
	}
	/* They diverge at bit cl: a peerless node splits them. */
	split = node_new(key, cl, NULL);
	t->n_nodes++;
	split->child[bit_at(down->key, cl)] = down;
	split->child[bit_at(key, cl)] = nn;
	*slot = split;
	return 0;
}

/* Post-order: clears peer's entries and collapses nodes left without a peer
 * and with fewer than two children. Recursion depth <= 129. */
static size_t remove_peer(struct allowedips *t, struct allowedips_node **slot, const void *peer)
{
	struct allowedips_node *n = *slot;
	size_t removed = 0;

	if (!n)
		return 0;
	removed += remove_peer(t, &n->child[0], peer);
	removed += remove_peer(t, &n->child[1], peer);
	if (n->peer == peer) {
		n->peer = NULL;
		removed++;
	}
	if (!n->peer && !(n->child[0] && n->child[1])) {
		*slot = n->child[0] ? n->child[0] : n->child[1];
		free(n);
		t->n_nodes--;
	}
	return removed;
}

size_t allowedips_remove_by_peer(struct allowedips *t, const void *peer)
{
	if (!peer)
		return 0;
	return remove_peer(t, &t->root4, peer) + remove_peer(t, &t->root6, peer);
}

void *allowedips_lookup(const struct allowedips *t, int family, const uint8_t *addr)
{
	const struct allowedips_node *n;
	unsigned int bits;
	uint8_t key[16] = {0};
	void *best = NULL;

	if (family == AF_INET) {
		n = t->root4;
		bits = 32;
		memcpy(key, addr, 4);
	} else if (family == AF_INET6) {
		n = t->root6;
		bits = 128;
		memcpy(key, addr, 16);
	} else {
		return NULL;
	}
	while (n && prefix_matches(n, key)) {
		if (n->peer)
			best = n->peer;
		if (n->cidr >= bits)
			break;
		n = n->child[bit_at(key, n->cidr)];
	}
	return best;
}
