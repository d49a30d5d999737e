/* IP prefixes: parsing, printing, containment, the Tailscale ranges. */
#include "ip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cni.pb-c.h"

const struct ip_prefix ip_tailscale_v4 = {.family = AF_INET, .len = 10, .addr = {100, 64}};
const struct ip_prefix ip_tailscale_v6 = {
	.family = AF_INET6,
	.len = 48,
	.addr = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0},
};
const struct ip_prefix ip_quad100_v4 = {
	.family = AF_INET,
	.len = 32,
	.addr = {100, 100, 100, 100},
};
const struct ip_prefix ip_quad100_v6 = {
	.family = AF_INET6,
	.len = 128,
	.addr = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = 0x53},
};

static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

int ip_prefix_parse(const char *s, bool allow_bare, struct ip_prefix *out)
{
	char buf[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	unsigned long plen;
	char *end;

	memset(out, 0, sizeof(*out));
	if (alen == 0 || alen >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
		out->family = AF_INET6;
	else
		return -EINVAL;
	if (!slash) {
		if (!allow_bare)
			return -EINVAL;
		out->len = out->family == AF_INET ? 32 : 128;
		return 0;
	}
	/* Digits only: strtoul would accept " 1", "+1" and "-0". */
	if (slash[1] < '0' || slash[1] > '9')
		return -EINVAL;
	errno = 0;
	plen = strtoul(slash + 1, &end, 10);
	if (errno || *end != '\0' || plen > (out->family == AF_INET ? 32UL : 128UL) ||
	    end - (slash + 1) > 3)
		return -EINVAL;
	out->len = (uint8_t)plen;
	return 0;
}

char *ip_prefix_format(const struct ip_prefix *p, char *buf, size_t n)
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(p->family, p->addr, a, sizeof(a)))
		strcpy(a, "?");
	snprintf(buf, n, "%s/%u", a, p->len);
	return buf;
}

/* True when the first bits of a and b are equal. */
static bool bits_equal(const uint8_t *a, const uint8_t *b, unsigned int bits)
{
	unsigned int full = bits / 8, rest = bits % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ b[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool ip_prefix_contains(const struct ip_prefix *outer, const struct ip_prefix *inner)
{
	return outer->family == inner->family && inner->len >= outer->len &&
	       bits_equal(outer->addr, inner->addr, outer->len);
}

bool ip_prefix_overlaps(const struct ip_prefix *a, const struct ip_prefix *b)
{
	return ip_prefix_contains(a, b) || ip_prefix_contains(b, a);
}

bool ip_prefix_equal(const struct ip_prefix *a, const struct ip_prefix *b)
{
	return a->family == b->family && a->len == b->len &&
	       memcmp(a->addr, b->addr, addr_len(a->family)) == 0;
}

void ip_prefix_mask(struct ip_prefix *p)
{
	size_t alen = addr_len(p->family);

	for (size_t i = 0; i < alen; i++) {
		unsigned int bit = (unsigned int)i * 8;

		if (bit >= p->len)
			p->addr[i] = 0;
		else if (bit + 8 > p->len)
			p->addr[i] &= (uint8_t)(0xff << (8 - (p->len - bit)));
	}
	if (alen < sizeof(p->addr))
		memset(p->addr + alen, 0, sizeof(p->addr) - alen);
}

int ip_prefix_cmp(const void *a, const void *b)
{
	const struct ip_prefix *x = a, *y = b;
	int d;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	d = memcmp(x->addr, y->addr, sizeof(x->addr));
	if (d)
		return d;
	return (int)x->len - (int)y->len;
}

int ip_prefix_from_pb(const struct Tscni__IpPrefix *m, struct ip_prefix *out)
{
	memset(out, 0, sizeof(*out));
	if (!m || (m->addr.len != 4 && m->addr.len != 16))
		return -EINVAL;
	out->family = m->addr.len == 4 ? AF_INET : AF_INET6;
	if (m->prefix_len > (out->family == AF_INET ? 32U : 128U))
		return -EINVAL;
	memcpy(out->addr, m->addr.data, m->addr.len);
	out->len = (uint8_t)m->prefix_len;
	return 0;
}

void ip_prefix_to_pb(const struct ip_prefix *p, struct Tscni__IpPrefix *m)
{
	m->addr.data = (uint8_t *)p->addr;
	m->addr.len = addr_len(p->family);
	m->prefix_len = p->len;
}
