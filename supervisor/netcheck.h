/* The node-wide netcheck (docs/tailscale-protocol.md §6.5, docs/design.md
 * §2): one measurement of DERP latencies per node, not per pod. Each worker
 * reports the STUN targets of its DERP map (DerpMapReport); the supervisor
 * keys measurements by a hash of that target set, so a worker only ever
 * receives measurements of exactly the map it reported itself and a hostile
 * worker cannot steer what other pods are told. For each set in use it
 * sends NETCHECK_PROBES STUN binding requests per region from one UDP
 * socket in the host's netns, on the supervisor's loop, takes the best RTT
 * of each region, and sends a NetcheckReport to every worker of that set;
 * it measures again every NETCHECK_REFRESH_MIN_MS..MAX_MS (jittered) while
 * any worker uses the set, and stops when none does.
 *
 * netcheck_request is a worker_derpmap_fn (workers.h): set it as
 * workers_config.derpmap with the netcheck as derpmap_arg. A worker reported
 * GONE must be forgotten (netcheck_forget) before it is freed. Everything
 * runs on the supervisor's loop. */
#ifndef TSCNI_SUPERVISOR_NETCHECK_H
#define TSCNI_SUPERVISOR_NETCHECK_H

#include <stdint.h>
#include <uv.h>

#include "workers.h"

struct netcheck;

enum netcheck_limits {
	NETCHECK_MAPS = 8,	     /* distinct target sets measured at once */
	NETCHECK_PROBES = 3,	     /* per region and round */
	NETCHECK_INFLIGHT = 1024,    /* probes awaiting an answer, all sets together */
	NETCHECK_PROBE_GAP_MS = 100, /* between a region's probes */
	NETCHECK_ROUND_MS = 3000,    /* a round's last answer, after its first probe */
	NETCHECK_REFRESH_MIN_MS = 20000,
	NETCHECK_REFRESH_MAX_MS = 30000,
	/* A worker chooses where the probes go: a new target set's first
	 * round waits for a credit (one per NETCHECK_START_EVERY_MS, at most
	 * NETCHECK_START_BURST saved), so changing maps fast cannot turn the
	 * supervisor into a packet source at the worker's command. */
	NETCHECK_START_EVERY_MS = 2500,
	NETCHECK_START_BURST = 16,
};

/* A worker's measurement goes out through send (workers_netcheck_report in
 * the supervisor, a recorder in tests). */
typedef int netcheck_send_fn(struct worker *w, const struct Tscni__NetcheckReport *r);

/* Binds the probing socket (dual-stack [::]:0, else 0.0.0.0:0). 0 with *out
 * set, or a libuv error. */
int netcheck_new(uv_loop_t *loop, netcheck_send_fn *send, struct netcheck **out);
/* Stops every measurement and closes the socket; the memory goes in the
 * close callbacks, so run the loop afterwards. NULL-safe. */
void netcheck_free(struct netcheck *nc);

void netcheck_request(struct worker *w, const struct Tscni__DerpMapReport *m, void *arg);
/* w is going away: it no longer counts as a user of its target set. */
void netcheck_forget(struct netcheck *nc, const struct worker *w);

#endif
