/* IP prefixes and the Tailscale ranges. */
#ifndef TSCNI_COMMON_IP_H
#define TSCNI_COMMON_IP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct Tscni__IpPrefix;

struct ip_prefix {
	int family; /* AF_INET or AF_INET6 */
	uint8_t len;
	uint8_t addr[16];
};

enum { IP_PREFIX_STRLEN = 48 };

/* "a.b.c.d/n" or "x::y/n"; with allow_bare, "a.b.c.d" means /32 and "x::y"
 * /128. Returns 0 or -EINVAL. */
int ip_prefix_parse(const char *s, bool allow_bare, struct ip_prefix *out);
/* Writes the text form into buf (IP_PREFIX_STRLEN bytes is always enough). */
char *ip_prefix_format(const struct ip_prefix *p, char *buf, size_t n);
bool ip_prefix_overlaps(const struct ip_prefix *a, const struct ip_prefix *b);
/* True when inner lies inside outer (same family, inner->len >= outer->len). */
bool ip_prefix_contains(const struct ip_prefix *outer, const struct ip_prefix *inner);
bool ip_prefix_equal(const struct ip_prefix *a, const struct ip_prefix *b);
/* Clears the host bits (and, for IPv4, bytes 4..15). */
void ip_prefix_mask(struct ip_prefix *p);
/* A total order (family, address bytes, length), for qsort and bsearch on
 * masked prefixes: 0 exactly when they are the same prefix. */
int ip_prefix_cmp(const void *a, const void *b);

/* 100.64.0.0/10 and fd7a:115c:a1e0::/48. */
extern const struct ip_prefix ip_tailscale_v4;
extern const struct ip_prefix ip_tailscale_v6;
/* 100.100.100.100/32 and fd7a:115c:a1e0::53/128. */
extern const struct ip_prefix ip_quad100_v4;
extern const struct ip_prefix ip_quad100_v6;

/* Conversions to and from the protobuf form. from_pb checks the exact
 * address length (4 or 16) and the prefix length bound: 0 or -EINVAL. */
int ip_prefix_from_pb(const struct Tscni__IpPrefix *m, struct ip_prefix *out);
/* Fills m (already initialised); m->addr.data points into p. */
void ip_prefix_to_pb(const struct ip_prefix *p, struct Tscni__IpPrefix *m);

#endif
