/* The ADD result: prevResult kept as a JSON tree, our entries appended, and
 * the whole converted to the request's version (docs/cni-contract.md 3, 5). */
#ifndef TSCNI_CNI_RESULT_H
#define TSCNI_CNI_RESULT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "conf.h"
#include "ip.h"

struct cni_error;

/* The "mac" written for our TUN interface, which has no L2 address. */
#define RESULT_TUN_MAC "00:00:00:00:00:00"

/* What tailscale-cni adds to a result. Pointers are borrowed for the call. */
struct result_ours {
	const char *ifname;  /* interfaceName */
	const char *sandbox; /* CNI_NETNS exactly as received */
	unsigned int mtu;    /* 0: left out; only ever written for 1.x */
	const struct ip_prefix *addrs;
	size_t n_addrs;
	const struct ip_prefix *routes;
	size_t n_routes;
	bool report_ips; /* false: addrs are left out of "ips" */
};

/* Checks prevResult's shape, parsing by shape and not by its declared version:
 * "interfaces", "ips" and "routes" are absent, null or arrays of objects;
 * each interface has a string "name" and at most a string "sandbox"; each IP
 * has an "address" in CIDR form and at most a non-negative integer
 * "interface"; each route a CIDR "dst". A mismatch is code 6. *n_ifaces gets
 * the number of interfaces. Returns 0 or -EINVAL with err filled. */
int result_check_shape(const json_t *prev, size_t *n_ifaces, struct cni_error *err);

/* Everything ADD checks before changing anything (4.1 step 4): the shape; no
 * IP's "interface" index dangles (7); our_ifname is neither runtime_ifname
 * nor already an interface name in prevResult (7); unless allow_overlap, no
 * prevResult IP and no non-default route overlaps 100.64.0.0/10 or
 * fd7a:115c:a1e0::/48 (7). Returns 0 or -EINVAL with err filled. */
int result_check_prev(const json_t *prev, const char *runtime_ifname, const char *our_ifname,
		      bool allow_overlap, struct cni_error *err);

/* True when one of addrs overlaps an IP already in prevResult. */
bool result_clashes(const json_t *prev, const struct ip_prefix *addrs, size_t n);

/* Finds our entries for CHECK: the interface named ifname whose "sandbox" is
 * sandbox, and the IPs pointing at it (at most max, in addrs). *found is
 * false when there is no such interface. Returns 0, or -EINVAL with err
 * filled when prevResult's shape is wrong or it holds more than max of our
 * IPs. */
int result_find_ours(const json_t *prev, const char *ifname, const char *sandbox, bool *found,
		     struct ip_prefix *addrs, size_t max, size_t *n, struct cni_error *err);

/* Builds the output: a deep copy of prev (or {} when prev is NULL), with
 * cniVersion set to version, our interface ({"name", "mac": RESULT_TUN_MAC,
 * "mtu" for 1.x only, "sandbox"}) appended to "interfaces" (its index is the
 * array's old length), our IPs with "interface" set to that
 * index appended to "ips", our routes (dst only) appended to "routes"; ours
 * may be NULL (pass-through). Then every "ips" entry is converted: 0.x gets
 * "version" "4" or "6" from its address, 1.x loses "version". Nothing of
 * prev is reordered or removed. Returns a new reference (caller decrefs). */
json_t *result_build(const json_t *prev, enum cni_version version, const struct result_ours *ours);

/* Compact JSON text plus "\n", malloc'd (caller frees), *len set. */
char *result_dump(const json_t *r, size_t *len);

#endif
