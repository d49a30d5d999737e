/* Every privileged network operation of the supervisor, through libnl-route-3,
 * and the validation of workers' requests for them (docs/design.md §1).
 * Functions are synchronous and thread-safe (each opens its own netlink
 * socket); pods.c runs them on the libuv threadpool. All return 0 or a
 * negative errno and, where given, set *why to a static string. */
#ifndef TSCNI_SUPERVISOR_NETOPS_H
#define TSCNI_SUPERVISOR_NETOPS_H

#include <stdbool.h>
#include <stddef.h>

#include "ip.h"

enum netops_defaults { NETOPS_MTU = 1280 };

/* Creates a TUN device in the host namespace under a temporary name, moves it
 * into the namespace nsfd, renames it to ifname there, sets MTU and the alias
 * (when not NULL: netlink_owner_alias(), the mark the plugin's DEL looks for),
 * IPv6 on with addr_gen_mode none, rp_filter loose (2), and brings it up. On success
 * *tun_fd (O_CLOEXEC|O_NONBLOCK, owned by the caller: fd custody) and
 * *ifindex (inside the pod's namespace) are set. The device is not
 * persistent: it disappears when the last copy of *tun_fd is closed, or with
 * the namespace (the fd then polls POLLERR and reads fail with EBADFD).
 * -EEXIST when ifname already exists in nsfd (left alone); -EINVAL for an
 * ifname the kernel would refuse or rewrite ('/', ':', '%', spaces, > 15
 * bytes) or an MTU outside 1280..65535. On any failure nothing is left
 * behind, *tun_fd is -1 and *why says which step failed. On a kernel booted
 * without IPv6 the device is configured for IPv4 only. */
int netops_tun_create(int nsfd, const char *ifname, const char *alias, unsigned int mtu,
		      int *tun_fd, int *ifindex, const char **why);

/* Deletes ifname in nsfd only when it still has the ifindex it was made
 * with: 1 deleted, 0 absent, -EEXIST another device holds the name (left
 * alone), another negative errno on failure. */
int netops_link_delete(int nsfd, const char *ifname, int ifindex);

/* CHECK: ifname exists in nsfd, is up, has mtu (when mtu != 0) and carries
 * each of addrs. Returns 0 (detail "") or, with a sentence naming the first
 * missing item written to detail (cut to dlen): -ENOENT "ts0 not found in
 * network namespace /run/netns/x", -ENETDOWN "ts0 is down", -EMSGSIZE "ts0
 * has MTU 1500, expected 1280", -EADDRNOTAVAIL "address 100.64.0.5/32
 * missing on ts0", or another negative errno when netlink itself failed. */
int netops_link_check(int nsfd, const char *ifname, unsigned int mtu, const struct ip_prefix *addrs,
		      size_t naddrs, char *detail, size_t dlen);

/* Addresses (/32, /128 with IFA_F_NODAD) and routes on ifindex inside nsfd.
 * Adding what exists and deleting what is absent succeed; an ifindex that does
 * not exist is an error. Routes are unicast, scope link, no gateway, in the
 * main table; host bits of dst are cleared; adding replaces a route to the
 * same prefix (and metric) on another device. */
int netops_addr_add(int nsfd, int ifindex, const struct ip_prefix *p);
int netops_addr_del(int nsfd, int ifindex, const struct ip_prefix *p);
int netops_route_add(int nsfd, int ifindex, const struct ip_prefix *dst);
int netops_route_del(int nsfd, int ifindex, const struct ip_prefix *dst);

/* What the operator allows workers to route beyond the Tailscale ranges. */
struct netops_policy {
	const struct ip_prefix *extra_routes;
	size_t n_extra_routes;
};

/* ---- ts0's routes as a whole (netops_routes.c) ---- */

enum netops_routes_limits_pub {
	NETOPS_ROUTES_MAX = 65536, /* prefixes in one route set */
	NETOPS_REFUSED_KEPT = 4,   /* refused routes named in a result (the rest counted) */
	NETOPS_OWN_MAX = 4096,	   /* the pod's own prefixes looked at (more: unchecked) */
};

/* The operator's route policy (--route-all, --accept-routes, --route-deny). */
struct netops_route_policy {
	/* 100.64.0.0/10 and fd7a:115c:a1e0::/48 on ts0 instead of one route
	 * per peer address (and quad-100). */
	bool route_all;
	/* Peers' subnet routes (anything outside the Tailscale ranges), like
	 * `tailscale up --accept-routes`; without it they are not routed. */
	bool accept_routes;
	/* Prefixes no subnet route may overlap. */
	const struct ip_prefix *deny;
	size_t n_deny;
};

struct netops_refused_route {
	struct ip_prefix prefix;
	struct ip_prefix over; /* the pod's network or deny entry in the way (family 0: none) */
	const char *why;       /* static */
};

struct netops_routes_result {
	unsigned int added, removed, kept, failed;
	unsigned int not_accepted; /* subnet routes left out: accept_routes is off */
	unsigned int refused;	   /* left out: over the pod's own networks or the deny list */
	struct netops_refused_route refused_kept[NETOPS_REFUSED_KEPT];
	size_t n_refused_kept;
	bool own_unchecked; /* the pod has more own prefixes than we look at */
	int first_err;	    /* the first netlink failure, with its prefix */
	struct ip_prefix failed_prefix;
	const char *why; /* static; set when the call failed */
};

/* The routes ts0 gets for want[] (what the worker's netmap reaches: peers'
 * addresses, quad-100, peers' subnet routes) under pol, given own[] (the
 * pod's other networks: prefixes of its other interfaces' addresses and of
 * main-table routes through them, default routes excluded). Pure; writes at
 * most n + 2 prefixes to out, sorted and unique, and returns their count.
 * - quad-100 (/32, /128): kept (covered by the wide routes with route_all);
 * - with route_all, anything inside the Tailscale ranges gives way to the
 *   two wide routes;
 * - a /32 or /128 inside the ranges (a node's address): kept unless an own
 *   prefix contains it;
 * - anything else is a subnet route: only with accept_routes, and only when
 *   it overlaps neither a deny entry nor an own prefix.
 * A wide route contained in an own prefix is refused; one that contains an
 * own prefix is kept (the longer prefix keeps the pod's traffic). */
size_t netops_routes_plan(const struct ip_prefix *want, size_t n,
			  const struct netops_route_policy *pol, const struct ip_prefix *own,
			  size_t n_own, struct ip_prefix *out, struct netops_routes_result *res);

/* Makes ts0's routes (main table, RTPROT_STATIC, single next hop ifindex)
 * in nsfd exactly netops_routes_plan(want): removes the others, adds the
 * missing, leaves the rest alone; nothing else in the pod's routing is
 * changed. n <= NETOPS_ROUTES_MAX. 0, or a negative errno with res->why
 * (the first failing route in res->failed_prefix; the other changes are
 * still made). res is always filled. */
int netops_routes_sync(int nsfd, int ifindex, const struct ip_prefix *want, size_t n,
		       const struct netops_route_policy *pol, struct netops_routes_result *res);

/* Worker requests (docs/design.md §1): an address must be exactly a /32 in
 * 100.64.0.0/10 or a /128 in fd7a:115c:a1e0::/48; a route must lie inside
 * those ranges, or be quad-100, or inside one of policy's extra prefixes.
 * 0 or -EPERM with *why. */
int netops_validate_addr(const struct ip_prefix *p, const char **why);
int netops_validate_route(const struct ip_prefix *p, const struct netops_policy *policy,
			  const char **why);

#endif
