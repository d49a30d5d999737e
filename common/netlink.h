/* Small rtnetlink helpers (libnl-route-3) shared by the CNI plugin (DEL when
 * the supervisor is unreachable) and the supervisor's netops. Each call opens
 * its own netlink socket inside the namespace nsfd (netns_run), so they are
 * safe on any thread and leave the calling thread in its own namespace. */
#ifndef TSCNI_COMMON_NETLINK_H
#define TSCNI_COMMON_NETLINK_H

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

/* Deletes ifname in the namespace nsfd. Returns 1 when deleted, 0 when it did
 * not exist, a negative errno on failure. */
int netlink_link_delete(int nsfd, const char *ifname);

#endif
