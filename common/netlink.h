/* Small rtnetlink helpers (libnl-route-3) shared by the CNI plugin (DEL when
 * the supervisor is unreachable) and the supervisor's netops. Each call opens
 * its own netlink socket inside the namespace nsfd (netns_run), so they are
 * safe on any thread and leave the calling thread in its own namespace. */
#ifndef TSCNI_COMMON_NETLINK_H
#define TSCNI_COMMON_NETLINK_H

#include <stddef.h>

struct nl_sock;

/* A NETLINK_ROUTE socket created inside nsfd (the calling thread's own
 * namespace when nsfd < 0); it stays bound to that namespace. The caller frees
 * it with nl_socket_free(). Returns 0 or a negative errno; *out is NULL on
 * failure. */
int netlink_socket_open(int nsfd, struct nl_sock **out);

/* libnl's -NLE_* code as the closest negative errno (libnl folds ENOENT and
 * ESRCH into one code: both come back as -ENOENT). */
int netlink_errno(int nlerr);

/* Looks up ifname in the namespace nsfd. Returns 0 with *ifindex set,
 * -ENODEV when absent, another negative errno on failure. */
int netlink_link_index(int nsfd, const char *ifname, int *ifindex);

/* The alias tailscale-cni gives the interface it makes for the attachment
 * (network, container_id, ifname): "tailscale-cni " and the record's key
 * name. It is the mark DEL checks before deleting anything, so that an
 * interface of that name made by someone else, or by another attachment,
 * is left alone (docs/cni-contract.md 4.2). buf needs NETLINK_ALIAS_LEN
 * bytes (the kernel's IFALIASZ). */
#define NETLINK_ALIAS_PREFIX "tailscale-cni "
enum { NETLINK_ALIAS_LEN = 256 };
void netlink_owner_alias(const char *network, const char *container_id, const char *ifname,
			 char *buf, size_t n);

/* What proves an interface ours: its name, and the ifindex it had when it
 * was made (when ifindex > 0), and the alias it was given then, on a TUN
 * device (when alias is not NULL). At least one of the two. */
struct netlink_owned {
	const char *ifname;
	int ifindex;
	const char *alias;
};

/* Deletes the device o describes in the namespace nsfd, and never another.
 * Returns 1 when deleted, 0 when no device has that name, -EEXIST when the
 * device of that name is not provably ours (left alone), another negative
 * errno on failure. */
int netlink_link_delete_owned(int nsfd, const struct netlink_owned *o);

#endif
