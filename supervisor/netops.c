/* Every privileged network operation of the supervisor, through libnl-route-3.
 *
 * Threading: pods.c calls these on libuv threadpool threads, several pods at
 * once. Nothing here keeps state between calls: each call allocates its own
 * nl_sock and frees it before returning. A socket for a pod's namespace is
 * created inside that namespace (netns_run switches only the calling thread
 * and switches it back), and a netlink socket stays bound to the namespace it
 * was created in, so every later request on it acts there. */
#include "netops.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/ip.h>
#include <linux/rtnetlink.h>

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/inet.h>
#include <netlink/route/link/inet6.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>

#include "netlink.h"
#include "netns.h"
#include "tun.h"

enum netops_limits {
	NETOPS_MTU_MAX = 65535,	  /* the TUN driver's max_mtu */
	NETOPS_TMPNAME_TRIES = 4, /* random names that collide with a live device */
	NETOPS_RP_FILTER_LOOSE = 2,
	NETOPS_DUMP_TRIES = 3, /* a dump interrupted by a concurrent change is redone */
};

/* The kernel's dev_valid_name, plus '%' which the kernel would expand into a
 * different name ("eth%d" becomes "eth0"). */
static int check_ifname(const char *ifname, const char **why)
{
	size_t len = strnlen(ifname, IFNAMSIZ);

	if (len == 0) {
		*why = "interface name is empty";
		return -EINVAL;
	}
	if (len >= IFNAMSIZ) {
		*why = "interface name is longer than 15 bytes";
		return -EINVAL;
	}
	if (strcmp(ifname, ".") == 0 || strcmp(ifname, "..") == 0) {
		*why = "interface name is . or ..";
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)ifname[i];

		if (c == '/' || c == ':' || c == '%' || c <= ' ' || c == 0x7f) {
			*why = "interface name contains '/', ':', '%', a space or a control byte";
			return -EINVAL;
		}
	}
	return 0;
}

static struct nl_addr *addr_from_prefix(const struct ip_prefix *p, bool mask_host_bits)
{
	uint8_t bytes[16];
	size_t alen = p->family == AF_INET ? 4 : 16;
	struct nl_addr *a;

	memcpy(bytes, p->addr, alen);
	if (mask_host_bits) {
		for (size_t i = 0; i < alen; i++) {
			unsigned int bit = (unsigned int)i * 8;

			if (bit >= p->len)
				bytes[i] = 0;
			else if (bit + 8 > p->len)
				bytes[i] &= (uint8_t)(0xff << (8 - (p->len - bit)));
		}
	}
	a = nl_addr_build(p->family, bytes, alen);
	if (a)
		nl_addr_set_prefixlen(a, p->len);
	return a;
}

static bool prefix_ok(const struct ip_prefix *p)
{
	return (p->family == AF_INET && p->len <= 32) || (p->family == AF_INET6 && p->len <= 128);
}

/* ---- the TUN device ---- */

struct tun_build {
	int nsfd;
	const char *ifname;
	const char *alias; /* NULL: none */
	unsigned int mtu;
	char tmpname[IFNAMSIZ];
	struct nl_sock *host_sk;
	struct nl_sock *pod_sk;
	int fd;
	int pod_ifindex; /* > 0 once the device is in the pod's namespace */
};

/* Opens a fresh TUN device under a random name in the calling thread's
 * namespace. IFF_TUN_EXCL refuses to attach to a device that already has the
 * name, so we never take over somebody else's persistent TUN. */
static int tun_open_tmp(struct tun_build *b, const char **why)
{
	for (int i = 0; i < NETOPS_TMPNAME_TRIES; i++) {
		struct ifreq ifr = {0};
		uint32_t rnd;

		if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd)) {
			*why = "getrandom failed";
			return -EIO;
		}
		snprintf(b->tmpname, sizeof(b->tmpname), "tscni%08x", rnd);
		memcpy(ifr.ifr_name, b->tmpname, strlen(b->tmpname) + 1);
		b->fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
		if (b->fd < 0) {
			*why = "cannot open /dev/net/tun";
			return -errno;
		}
		/* IFF_VNET_HDR when the kernel has it: the worker's TUN offloads. */
		ifr.ifr_flags = (short)(tun_iff_flags(b->fd, false) | IFF_TUN_EXCL);
		if (ioctl(b->fd, TUNSETIFF, &ifr) == 0)
			return 0;
		int ret = -errno;

		close(b->fd);
		b->fd = -1;
		if (ret != -EBUSY) {
			*why = "TUNSETIFF failed";
			return ret;
		}
	}
	*why = "no free temporary TUN name";
	return -EBUSY;
}

/* Applies changes to the link with ifindex on sk. */
static int link_change(struct nl_sock *sk, int ifindex, struct rtnl_link *changes)
{
	struct rtnl_link *orig = rtnl_link_alloc();
	int ret;

	if (!orig)
		return -ENOMEM;
	rtnl_link_set_ifindex(orig, ifindex);
	ret = netlink_errno(rtnl_link_change(sk, orig, changes, 0));
	rtnl_link_put(orig);
	return ret;
}

/* Moves the device from the host namespace into the pod's. */
static int tun_move(struct tun_build *b, const char **why)
{
	struct rtnl_link *link = NULL, *changes = NULL;
	int ret;

	ret = rtnl_link_get_kernel(b->host_sk, 0, b->tmpname, &link);
	if (ret < 0) {
		*why = "new TUN device not found in the host namespace";
		ret = netlink_errno(ret);
		goto out;
	}
	changes = rtnl_link_alloc();
	if (!changes) {
		*why = "out of memory";
		ret = -ENOMEM;
		goto out;
	}
	rtnl_link_set_ns_fd(changes, b->nsfd);
	ret = link_change(b->host_sk, rtnl_link_get_ifindex(link), changes);
	if (ret < 0) {
		*why = "cannot move the TUN device into the pod's namespace";
		/* A clash of the random temporary name must not read as
		 * "ifname exists" to the caller. */
		if (ret == -EEXIST)
			ret = -EBUSY;
		goto out;
	}
	/* Its index may change on the way in: ask the pod's namespace. */
	rtnl_link_put(link);
	link = NULL;
	ret = rtnl_link_get_kernel(b->pod_sk, 0, b->tmpname, &link);
	if (ret < 0) {
		*why = "moved TUN device not found in the pod's namespace";
		ret = netlink_errno(ret);
		goto out;
	}
	b->pod_ifindex = rtnl_link_get_ifindex(link);
	ret = 0;
out:
	rtnl_link_put(changes);
	rtnl_link_put(link);
	return ret;
}

/* IPv6 on one device, as seen from inside its namespace. */
struct ipv6_conf {
	const char *ifname;
	bool absent; /* the kernel runs without IPv6 (ipv6.disable=1) */
	bool enable; /* second pass: make disable_ipv6 read 0 */
};

static int ipv6_conf_here(void *arg)
{
	struct ipv6_conf *c = arg;
	char path[sizeof("/proc/sys/net/ipv6/conf//disable_ipv6") + IFNAMSIZ], val[4];
	ssize_t n;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/disable_ipv6", c->ifname);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno != ENOENT || c->enable)
			return -errno;
		c->absent = true;
		return 0;
	}
	n = read(fd, val, sizeof(val));
	close(fd);
	if (n < 1)
		return n < 0 ? -errno : -EIO;
	if (!c->enable || val[0] == '0')
		return 0;
	/* Written only when needed: a supervisor in a container may see a
	 * read-only /proc/sys, and most namespaces have IPv6 on already. */
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, "0", 1) != 1)
		ret = -errno;
	close(fd);
	return ret;
}

/* In the pod's namespace: the final name and MTU, then addr_gen_mode none and
 * rp_filter loose, then IPv6 switched on, then up. Up comes last: with
 * addr_gen_mode still eui64 the kernel would give ts0 a link-local address
 * the moment IPv6 starts on it. Each step is its own request because the
 * kernel applies IFLA_AF_SPEC after the flags within one request. */
static int tun_configure(struct tun_build *b, const char **why)
{
	struct rtnl_link *names = rtnl_link_alloc(), *af = rtnl_link_alloc(),
			 *up = rtnl_link_alloc();
	struct ipv6_conf v6 = {.ifname = b->ifname};
	int ret;

	if (!names || !af || !up) {
		*why = "out of memory";
		ret = -ENOMEM;
		goto out;
	}
	rtnl_link_set_name(names, b->ifname);
	rtnl_link_set_mtu(names, b->mtu);
	if (b->alias)
		rtnl_link_set_ifalias(names, b->alias);
	ret = link_change(b->pod_sk, b->pod_ifindex, names);
	if (ret < 0) {
		*why = ret == -EEXIST ? "interface name already exists in the pod's namespace"
				      : "cannot rename the TUN device or set its MTU and alias";
		goto out;
	}

	/* /proc/sys/net resolves against the calling thread's namespace, so
	 * the device's IPv6 settings are read and written from inside. */
	ret = netns_run(b->nsfd, ipv6_conf_here, &v6);
	if (ret < 0) {
		*why = "cannot read the interface's IPv6 settings (disable_ipv6)";
		goto out;
	}
	ret = rtnl_link_inet_set_conf(af, IPV4_DEVCONF_RP_FILTER, NETOPS_RP_FILTER_LOOSE);
	/* A kernel without IPv6 still gets a working IPv4-only ts0. */
	if (ret == 0 && !v6.absent)
		ret = rtnl_link_inet6_set_addr_gen_mode(af, IN6_ADDR_GEN_MODE_NONE);
	if (ret < 0) {
		*why = "cannot build the IPv4/IPv6 settings request";
		ret = netlink_errno(ret);
		goto out;
	}
	ret = link_change(b->pod_sk, b->pod_ifindex, af);
	if (ret < 0) {
		*why = "cannot set addr_gen_mode none and rp_filter 2";
		goto out;
	}

	/* The device took conf/default of the pod's namespace, where
	 * disable_ipv6 may be 1; netlink cannot change that, the sysctl can. */
	if (!v6.absent) {
		v6.enable = true;
		ret = netns_run(b->nsfd, ipv6_conf_here, &v6);
		if (ret < 0) {
			*why = "cannot enable IPv6 on the interface (disable_ipv6)";
			goto out;
		}
	}

	rtnl_link_set_flags(up, IFF_UP);
	ret = link_change(b->pod_sk, b->pod_ifindex, up);
	if (ret < 0)
		*why = "cannot bring the interface up";
out:
	rtnl_link_put(up);
	rtnl_link_put(af);
	rtnl_link_put(names);
	return ret;
}

int netops_tun_create(int nsfd, const char *ifname, const char *alias, unsigned int mtu,
		      int *tun_fd, int *ifindex, const char **why)
{
	struct tun_build b = {.nsfd = nsfd, .ifname = ifname, .alias = alias, .mtu = mtu, .fd = -1};
	int ret;

	*tun_fd = -1;
	*ifindex = 0;
	ret = check_ifname(ifname, why);
	if (ret < 0)
		return ret;
	if (mtu < NETOPS_MTU || mtu > NETOPS_MTU_MAX) {
		*why = "MTU outside 1280..65535 (IPv6 needs at least 1280)";
		return -EINVAL;
	}
	ret = netlink_socket_open(-1, &b.host_sk);
	if (ret < 0) {
		*why = "cannot open a netlink socket";
		goto out;
	}
	ret = netlink_socket_open(nsfd, &b.pod_sk);
	if (ret < 0) {
		*why = "cannot open a netlink socket in the pod's namespace";
		goto out;
	}
	/* No look-before-create for ifname: the rename in tun_configure fails
	 * with EEXIST when it exists, atomically, and the cleanup below then
	 * removes only our device. */
	ret = tun_open_tmp(&b, why);
	if (ret < 0)
		goto out;
	ret = tun_move(&b, why);
	if (ret < 0)
		goto out;
	ret = tun_configure(&b, why);
	if (ret < 0)
		goto out;
	*tun_fd = b.fd;
	*ifindex = b.pod_ifindex;
	b.fd = -1;
out:
	if (b.fd >= 0) {
		/* The device is not persistent, so closing its only fd destroys
		 * it wherever it is now. Deleting it first in the pod's
		 * namespace makes that explicit and does not depend on the
		 * driver's release path. */
		if (b.pod_ifindex > 0) {
			struct rtnl_link *link = rtnl_link_alloc();

			if (link) {
				rtnl_link_set_ifindex(link, b.pod_ifindex);
				rtnl_link_delete(b.pod_sk, link);
				rtnl_link_put(link);
			}
		}
		close(b.fd);
	}
	nl_socket_free(b.pod_sk);
	nl_socket_free(b.host_sk);
	return ret;
}

int netops_link_delete(int nsfd, const char *ifname, int ifindex)
{
	struct netlink_owned o = {.ifname = ifname, .ifindex = ifindex};

	return netlink_link_delete_owned(nsfd, &o);
}

/* ---- CHECK ---- */

static void ns_name(int nsfd, char *buf, size_t n)
{
	char path[sizeof("/proc/self/fd/") + 12];
	ssize_t len;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", nsfd);
	len = readlink(path, buf, n - 1);
	if (len <= 0)
		snprintf(buf, n, "fd %d", nsfd);
	else
		buf[len] = '\0';
}

static bool addr_matches(struct rtnl_addr *a, int ifindex, const struct ip_prefix *p)
{
	struct nl_addr *local = rtnl_addr_get_local(a);
	size_t alen = p->family == AF_INET ? 4 : 16;

	return local && rtnl_addr_get_ifindex(a) == ifindex &&
	       rtnl_addr_get_family(a) == p->family && rtnl_addr_get_prefixlen(a) == p->len &&
	       nl_addr_get_len(local) == alen &&
	       memcmp(nl_addr_get_binary_addr(local), p->addr, alen) == 0;
}

static int addr_cache(struct nl_sock *sk, struct nl_cache **out)
{
	int ret = 0;

	for (int i = 0; i < NETOPS_DUMP_TRIES; i++) {
		ret = rtnl_addr_alloc_cache(sk, out);
		if (ret != -NLE_DUMP_INTR)
			break;
	}
	return netlink_errno(ret);
}

int netops_link_check(int nsfd, const char *ifname, unsigned int mtu, const struct ip_prefix *addrs,
		      size_t naddrs, char *detail, size_t dlen)
{
	struct rtnl_link *link = NULL;
	struct nl_cache *cache = NULL;
	struct nl_sock *sk = NULL;
	const char *why;
	char ns[64];
	int ret, ifindex;

	if (dlen > 0)
		detail[0] = '\0';
	ret = check_ifname(ifname, &why);
	if (ret < 0) {
		snprintf(detail, dlen, "%s", why);
		return ret;
	}
	ret = netlink_socket_open(nsfd, &sk);
	if (ret < 0) {
		snprintf(detail, dlen, "cannot open a netlink socket in the pod's namespace");
		goto out;
	}
	ret = rtnl_link_get_kernel(sk, 0, ifname, &link);
	if (ret < 0) {
		ret = netlink_errno(ret);
		ns_name(nsfd, ns, sizeof(ns));
		if (ret == -ENODEV || ret == -ENOENT) {
			ret = -ENOENT;
			snprintf(detail, dlen, "%s not found in network namespace %s", ifname, ns);
		} else {
			snprintf(detail, dlen, "cannot look up %s in network namespace %s", ifname,
				 ns);
		}
		goto out;
	}
	ifindex = rtnl_link_get_ifindex(link);
	if (!(rtnl_link_get_flags(link) & IFF_UP)) {
		ret = -ENETDOWN;
		snprintf(detail, dlen, "%s is down", ifname);
		goto out;
	}
	if (mtu != 0 && rtnl_link_get_mtu(link) != mtu) {
		ret = -EMSGSIZE;
		snprintf(detail, dlen, "%s has MTU %u, expected %u", ifname,
			 rtnl_link_get_mtu(link), mtu);
		goto out;
	}
	if (naddrs == 0)
		goto out;
	ret = addr_cache(sk, &cache);
	if (ret < 0) {
		snprintf(detail, dlen, "cannot list the addresses of %s", ifname);
		goto out;
	}
	for (size_t i = 0; i < naddrs; i++) {
		bool found = false;

		for (struct nl_object *o = nl_cache_get_first(cache); o && !found;
		     o = nl_cache_get_next(o))
			found = addr_matches((struct rtnl_addr *)o, ifindex, &addrs[i]);
		if (!found) {
			char text[IP_PREFIX_STRLEN];

			ret = -EADDRNOTAVAIL;
			snprintf(detail, dlen, "address %s missing on %s",
				 ip_prefix_format(&addrs[i], text, sizeof(text)), ifname);
			goto out;
		}
	}
out:
	nl_cache_free(cache);
	rtnl_link_put(link);
	nl_socket_free(sk);
	return ret;
}

/* ---- addresses and routes ---- */

static int addr_request(int nsfd, int ifindex, const struct ip_prefix *p, bool add)
{
	struct rtnl_addr *addr = NULL;
	struct nl_addr *local = NULL;
	struct nl_sock *sk = NULL;
	int ret;

	if (!prefix_ok(p) || ifindex <= 0)
		return -EINVAL;
	addr = rtnl_addr_alloc();
	local = addr_from_prefix(p, false);
	if (!addr || !local) {
		ret = -ENOMEM;
		goto out;
	}
	rtnl_addr_set_ifindex(addr, ifindex);
	rtnl_addr_set_family(addr, p->family);
	ret = rtnl_addr_set_local(addr, local);
	if (ret < 0) {
		ret = netlink_errno(ret);
		goto out;
	}
	rtnl_addr_set_prefixlen(addr, p->len);
	/* No duplicate address detection: the address is ours by the control
	 * plane's word, and a tentative address could not be used for the
	 * first second of the pod's life. No prefix route either: the /128
	 * needs none (the local table delivers to it), and ts0's main-table
	 * routes are then exactly the peers' (netops_routes_sync). */
	if (p->family == AF_INET6)
		rtnl_addr_set_flags(addr, IFA_F_NODAD | IFA_F_NOPREFIXROUTE);
	ret = netlink_socket_open(nsfd, &sk);
	if (ret < 0)
		goto out;
	if (add) {
		/* REPLACE makes adding an existing address succeed and refreshes
		 * its flags. */
		ret = netlink_errno(rtnl_addr_add(sk, addr, NLM_F_CREATE | NLM_F_REPLACE));
	} else {
		ret = netlink_errno(rtnl_addr_delete(sk, addr, 0));
		if (ret == -EADDRNOTAVAIL)
			ret = 0;
	}
out:
	nl_socket_free(sk);
	nl_addr_put(local);
	rtnl_addr_put(addr);
	return ret;
}

int netops_addr_add(int nsfd, int ifindex, const struct ip_prefix *p)
{
	return addr_request(nsfd, ifindex, p, true);
}

int netops_addr_del(int nsfd, int ifindex, const struct ip_prefix *p)
{
	return addr_request(nsfd, ifindex, p, false);
}

static int route_request(int nsfd, int ifindex, const struct ip_prefix *dst, bool add)
{
	struct rtnl_nexthop *nh = NULL;
	struct rtnl_route *route = NULL;
	struct nl_addr *addr = NULL;
	struct nl_sock *sk = NULL;
	int ret;

	if (!prefix_ok(dst) || ifindex <= 0)
		return -EINVAL;
	route = rtnl_route_alloc();
	nh = rtnl_route_nh_alloc();
	/* The kernel refuses a destination with host bits set. */
	addr = addr_from_prefix(dst, true);
	if (!route || !nh || !addr) {
		ret = -ENOMEM;
		goto out;
	}
	ret = rtnl_route_set_family(route, (uint8_t)dst->family);
	if (ret == 0)
		ret = rtnl_route_set_dst(route, addr);
	if (ret == 0)
		ret = rtnl_route_set_type(route, RTN_UNICAST);
	if (ret < 0) {
		ret = netlink_errno(ret);
		goto out;
	}
	rtnl_route_set_table(route, RT_TABLE_MAIN);
	rtnl_route_set_protocol(route, RTPROT_STATIC);
	rtnl_route_set_scope(route, RT_SCOPE_LINK);
	rtnl_route_nh_set_ifindex(nh, ifindex);
	rtnl_route_add_nexthop(route, nh);
	nh = NULL; /* the route owns it now */
	ret = netlink_socket_open(nsfd, &sk);
	if (ret < 0)
		goto out;
	if (add) {
		/* REPLACE: adding what exists succeeds, and a route to the same
		 * prefix elsewhere is taken over by ts0. */
		ret = netlink_errno(rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_REPLACE));
	} else {
		ret = netlink_errno(rtnl_route_delete(sk, route, 0));
		/* ESRCH from the kernel arrives as -ENOENT. */
		if (ret == -ENOENT)
			ret = 0;
	}
out:
	nl_socket_free(sk);
	if (nh) /* not NULL-safe in libnl */
		rtnl_route_nh_free(nh);
	nl_addr_put(addr);
	rtnl_route_put(route);
	return ret;
}

int netops_route_add(int nsfd, int ifindex, const struct ip_prefix *dst)
{
	return route_request(nsfd, ifindex, dst, true);
}

int netops_route_del(int nsfd, int ifindex, const struct ip_prefix *dst)
{
	return route_request(nsfd, ifindex, dst, false);
}

/* ---- validation of workers' requests (docs/design.md §1) ---- */

int netops_validate_addr(const struct ip_prefix *p, const char **why)
{
	if (p->family == AF_INET) {
		if (p->len != 32) {
			*why = "an IPv4 address must be a /32";
			return -EPERM;
		}
		if (!ip_prefix_contains(&ip_tailscale_v4, p)) {
			*why = "IPv4 address outside 100.64.0.0/10";
			return -EPERM;
		}
		if (ip_prefix_equal(p, &ip_quad100_v4)) {
			*why = "100.100.100.100 is Tailscale's service address, not a node's";
			return -EPERM;
		}
		return 0;
	}
	if (p->family == AF_INET6) {
		if (p->len != 128) {
			*why = "an IPv6 address must be a /128";
			return -EPERM;
		}
		if (!ip_prefix_contains(&ip_tailscale_v6, p)) {
			*why = "IPv6 address outside fd7a:115c:a1e0::/48";
			return -EPERM;
		}
		if (ip_prefix_equal(p, &ip_quad100_v6)) {
			*why = "fd7a:115c:a1e0::53 is Tailscale's service address, not a node's";
			return -EPERM;
		}
		return 0;
	}
	*why = "address family is neither IPv4 nor IPv6";
	return -EPERM;
}

int netops_validate_route(const struct ip_prefix *p, const struct netops_policy *policy,
			  const char **why)
{
	if (!prefix_ok(p)) {
		*why = p->family == AF_INET || p->family == AF_INET6
			       ? "route prefix length out of range"
			       : "route family is neither IPv4 nor IPv6";
		return -EPERM;
	}
	if (ip_prefix_contains(&ip_tailscale_v4, p) || ip_prefix_contains(&ip_tailscale_v6, p) ||
	    ip_prefix_equal(p, &ip_quad100_v4) || ip_prefix_equal(p, &ip_quad100_v6))
		return 0;
	for (size_t i = 0; policy && i < policy->n_extra_routes; i++) {
		if (ip_prefix_contains(&policy->extra_routes[i], p))
			return 0;
	}
	*why = "route outside the Tailscale ranges and the operator's allowed prefixes";
	return -EPERM;
}
