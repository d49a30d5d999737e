/* rtnetlink link and address messages, and the table of endpoint
 * candidates built from a dump (ifaddr.h). */
#include "ifaddr.h"

#include <errno.h>
#include <fnmatch.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

enum ifaddr_wire {
	NLHDR_LEN = 16,	  /* struct nlmsghdr */
	IFINFO_LEN = 16,  /* struct ifinfomsg */
	IFADDRM_LEN = 8,  /* struct ifaddrmsg */
	RTA_HDR_LEN = 4,  /* struct rtattr */
	NL_ERR_MIN = 4,	  /* struct nlmsgerr's error; the echoed header may be cut */
	ERRNO_MAX = 4095, /* the kernel's MAX_ERRNO */
};
_Static_assert(sizeof(struct nlmsghdr) == NLHDR_LEN, "nlmsghdr");
_Static_assert(sizeof(struct ifinfomsg) == IFINFO_LEN, "ifinfomsg");
_Static_assert(sizeof(struct ifaddrmsg) == IFADDRM_LEN, "ifaddrmsg");
_Static_assert(sizeof(struct rtattr) == RTA_HDR_LEN, "rtattr");

/* Interfaces no peer outside the node reaches the pod through: loopback,
 * kube-proxy's IPVS dummy, the bridges and veths of CNI plugins and
 * container runtimes, and overlay devices (their addresses are the
 * cluster's, not the node's). docs/design.md §"Endpoints" lists them. */
static const char *const builtin_deny[] = {
	"lo", "kube-ipvs0", "cni0", "docker0", "veth*", "flannel*", "cilium_*", "cali*",
};

static uint16_t load16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static uint32_t load32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static size_t align4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

/* Walks the attributes in a[0..len): calls take(m, type, payload, plen) for
 * each. Attributes that overrun are the message's end: the kernel never
 * sends them, and nothing after one can be located. */
static void attrs(const uint8_t *a, size_t len, struct ifaddr_msg *m,
		  void (*take)(struct ifaddr_msg *, uint16_t, const uint8_t *, size_t))
{
	size_t off = 0;

	while (len - off >= RTA_HDR_LEN) {
		size_t alen = load16(a + off);
		uint16_t type = load16(a + off + 2) & NLA_TYPE_MASK;

		if (alen < RTA_HDR_LEN || alen > len - off)
			return;
		take(m, type, a + off + RTA_HDR_LEN, alen - RTA_HDR_LEN);
		off += align4(alen);
		if (off > len)
			return;
	}
}

static void link_attr(struct ifaddr_msg *m, uint16_t type, const uint8_t *p, size_t plen)
{
	size_t n;

	if (type != IFLA_IFNAME)
		return;
	/* A name is 1..IF_NAMESIZE-1 bytes and its NUL: anything else is
	 * no name at all (never a truncated one, which might match a glob
	 * the real name does not). */
	n = strnlen((const char *)p, plen);
	if (n == 0 || n >= plen || n >= sizeof(m->name))
		return;
	memcpy(m->name, p, n + 1);
}

static void addr_attr(struct ifaddr_msg *m, uint16_t type, const uint8_t *p, size_t plen)
{
	size_t want = m->family == AF_INET ? 4 : 16;

	if (type == IFA_FLAGS && plen == 4) {
		m->addr_flags = load32(p);
		return;
	}
	/* IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's
	 * on a point-to-point link, so it counts only without IFA_LOCAL. */
	if ((type != IFA_LOCAL && type != IFA_ADDRESS) || plen != want)
		return;
	if (type == IFA_ADDRESS && m->has_local)
		return;
	memcpy(m->addr, p, want);
	m->has_addr = true;
	m->has_local = type == IFA_LOCAL;
}

static int parse_link(struct ifaddr_msg *m, const uint8_t *body, size_t blen, const char **why)
{
	int32_t index;

	if (blen < IFINFO_LEN) {
		*why = "link message shorter than ifinfomsg";
		return -EBADMSG;
	}
	memcpy(&index, body + 4, sizeof(index));
	m->index = index > 0 ? index : 0;
	m->link_flags = load32(body + 8);
	attrs(body + IFINFO_LEN, blen - IFINFO_LEN, m, link_attr);
	return 0;
}

static int parse_addr(struct ifaddr_msg *m, const uint8_t *body, size_t blen, const char **why)
{
	uint32_t index;
	int family;

	if (blen < IFADDRM_LEN) {
		*why = "address message shorter than ifaddrmsg";
		return -EBADMSG;
	}
	family = body[0];
	index = load32(body + 4);
	if ((family != AF_INET && family != AF_INET6) || index == 0 || index > INT32_MAX)
		return 0; /* not ours to use: family 0 */
	m->family = family;
	m->prefixlen = body[1];
	m->addr_flags = body[2];
	m->index = (int)index;
	memset(m->addr, 0, sizeof(m->addr));
	attrs(body + IFADDRM_LEN, blen - IFADDRM_LEN, m, addr_attr);
	if (!m->has_addr)
		m->family = 0; /* neither attribute: no address to use */
	return 0;
}

int ifaddr_next(const uint8_t *buf, size_t len, size_t *off, struct ifaddr_msg *m, const char **why)
{
	const uint8_t *p, *body;
	uint32_t mlen;
	size_t blen;
	int32_t err;

	memset(m, 0, sizeof(*m));
	if (*off >= len)
		return 0;
	if (len - *off < NLHDR_LEN) {
		*why = "truncated netlink header";
		return -EBADMSG;
	}
	p = buf + *off;
	mlen = load32(p);
	if (mlen < NLHDR_LEN || mlen > len - *off) {
		*why = "netlink message length out of range";
		return -EBADMSG;
	}
	m->type = load16(p + 4);
	m->nl_flags = load16(p + 6);
	m->seq = load32(p + 8);
	body = p + NLHDR_LEN;
	blen = mlen - NLHDR_LEN;
	/* The last message of a datagram may lack its padding. */
	*off += align4(mlen) <= len - *off ? align4(mlen) : mlen;

	switch (m->type) {
	case NLMSG_ERROR:
		if (blen < NL_ERR_MIN) {
			*why = "netlink error shorter than its code";
			return -EBADMSG;
		}
		memcpy(&err, body, sizeof(err));
		if (err > 0 || err < -ERRNO_MAX) {
			*why = "netlink error code out of range";
			return -EBADMSG;
		}
		m->error = err;
		return 1;
	case RTM_NEWLINK:
	case RTM_DELLINK:
		return parse_link(m, body, blen, why) < 0 ? -EBADMSG : 1;
	case RTM_NEWADDR:
	case RTM_DELADDR:
		return parse_addr(m, body, blen, why) < 0 ? -EBADMSG : 1;
	default:
		return 1; /* NLMSG_DONE, NLMSG_NOOP, anything else: the header */
	}
}

int ifaddr_deny_add(struct ifaddr_deny *d, const char *glob)
{
	if (!valid_iface_glob(glob))
		return -EINVAL;
	if (d->n >= IFADDR_DENY_MAX)
		return -ENOSPC;
	memcpy(d->globs[d->n++], glob, strlen(glob) + 1);
	return 0;
}

bool ifaddr_denied(const struct ifaddr_deny *d, const char *name)
{
	for (size_t i = 0; i < sizeof(builtin_deny) / sizeof(builtin_deny[0]); i++)
		if (fnmatch(builtin_deny[i], name, 0) == 0)
			return true;
	for (size_t i = 0; d && i < d->n; i++)
		if (fnmatch(d->globs[i], name, 0) == 0)
			return true;
	return false;
}

bool ifaddr_reachable(int family, const uint8_t *a)
{
	static const uint8_t tailnet6[6] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0};
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (family == AF_INET) {
		return a[0] != 0 && a[0] != 127 && (a[0] & 0xf0) != 0xe0 && a[0] != 255 &&
		       !(a[0] == 169 && a[1] == 254) && !(a[0] == 100 && (a[1] & 0xc0) == 64);
	}
	if (family != AF_INET6)
		return false;
	if (a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
		return false; /* multicast, link-local */
	if (!memcmp(a, tailnet6, sizeof(tailnet6)) || !memcmp(a, v4mapped, sizeof(v4mapped)))
		return false;
	for (int i = 0; i < 15; i++)
		if (a[i])
			return true;
	return a[15] > 1; /* :: and ::1 */
}

bool ifaddr_table_has_link(const struct ifaddr_table *t, int index)
{
	for (size_t i = 0; i < t->n_links; i++)
		if (t->links[i].index == index)
			return true;
	return false;
}

void ifaddr_table_add(struct ifaddr_table *t, const struct ifaddr_msg *m,
		      const struct ifaddr_deny *deny)
{
	const uint32_t unusable = IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_DEPRECATED;

	if (m->type == RTM_NEWLINK) {
		if (!m->index || !m->name[0] || !(m->link_flags & IFF_UP) ||
		    (m->link_flags & IFF_LOOPBACK) || ifaddr_denied(deny, m->name) ||
		    ifaddr_table_has_link(t, m->index))
			return;
		if (t->n_links == IFADDR_LINKS_MAX) {
			t->dropped++;
			return;
		}
		t->links[t->n_links].index = m->index;
		memcpy(t->links[t->n_links++].name, m->name, sizeof(m->name));
		return;
	}
	if (m->type != RTM_NEWADDR || !m->family || (m->addr_flags & unusable) ||
	    !ifaddr_table_has_link(t, m->index) || !ifaddr_reachable(m->family, m->addr))
		return;
	for (size_t i = 0; i < t->n_addrs; i++)
		if (t->addrs[i].family == m->family && !memcmp(t->addrs[i].addr, m->addr, 16))
			return; /* the same address on two links: one endpoint */
	if (t->n_addrs == IFADDR_ADDRS_MAX) {
		t->dropped++;
		return;
	}
	t->addrs[t->n_addrs] = (struct ifaddr_addr){.index = m->index, .family = m->family};
	memcpy(t->addrs[t->n_addrs++].addr, m->addr, sizeof(m->addr));
}
