/* Small rtnetlink helpers (libnl-route-3) shared by the CNI plugin (DEL when
 * the supervisor is unreachable) and the supervisor's netops. Each call opens
 * its own netlink socket inside the namespace nsfd (netns_run), so they are
 * safe on any thread and leave the calling thread in its own namespace. */
#ifndef TSCNI_COMMON_NETLINK_H
#define TSCNI_COMMON_NETLINK_H

/* Looks up ifname in the namespace nsfd. Returns 0 with *ifindex set,
 * -ENODEV when absent, another negative errno on failure. */
int netlink_link_index(int nsfd, const char *ifname, int *ifindex);

/* Deletes ifname in the namespace nsfd. Returns 1 when deleted, 0 when it did
 * not exist, a negative errno on failure. */
int netlink_link_delete(int nsfd, const char *ifname);

#endif
