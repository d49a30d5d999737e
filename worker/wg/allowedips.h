/* AllowedIPs: a longest-prefix-match table from IPv4/IPv6 prefixes to an
 * opaque peer pointer, for the data path's "which peer gets this packet"
 * (TUN -> peer) and "may this peer send from that address" (peer -> TUN).
 *
 * A path-compressed binary trie per family (the shape of WireGuard's
 * allowedips.c: each node holds a prefix, an optional peer and two
 * children; nodes without a peer exist only where two branches split).
 * Depth is bounded by the address width (33 / 129 levels).
 *
 * Concurrency: the trie is built once per netmap snapshot by the control
 * thread and never modified after it is published; the data thread reads it
 * without locks (one pointer swap publishes a new one; the old one is freed
 * when no reader can still hold it). allowedips_lookup() does not allocate. */
#ifndef TSCNI_WORKER_WG_ALLOWEDIPS_H
#define TSCNI_WORKER_WG_ALLOWEDIPS_H

#include <stddef.h>
#include <stdint.h>

#include "ip.h"

struct allowedips_node;

struct allowedips {
	struct allowedips_node *root4, *root6;
	size_t n_nodes; /* all nodes, with and without a peer */
};

void allowedips_init(struct allowedips *t);
/* Frees every node; the peers are the caller's. t is empty afterwards. */
void allowedips_destroy(struct allowedips *t);

/* Maps prefix p (host bits are ignored) to peer, replacing the peer an equal
 * prefix had. Returns 0, or -EINVAL (peer NULL, unknown family, length
 * beyond the family's width). Aborts on OOM like xmalloc. */
int allowedips_insert(struct allowedips *t, const struct ip_prefix *p, void *peer);

/* Removes every prefix that maps to peer and the nodes left without use.
 * Returns how many prefixes were removed. */
size_t allowedips_remove_by_peer(struct allowedips *t, const void *peer);

/* The peer of the longest prefix containing addr (4 bytes for AF_INET, 16
 * for AF_INET6), or NULL. */
void *allowedips_lookup(const struct allowedips *t, int family, const uint8_t *addr);

#endif
