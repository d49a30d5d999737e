/* The home DERP region after a netcheck, with upstream's stickiness
 * (docs/tailscale-protocol.md §6.5, net/netcheck's
 * addReportHistoryAndSetPreferredDERP): a node keeps its current home
 * unless that region is unreachable or the measured best one is both at
 * least HOME_SWITCH_MIN_MS faster and at most two thirds of its latency, so
 * that two regions a few milliseconds apart do not make it flap. No I/O. */
#ifndef TSCNI_WORKER_MAGICSOCK_HOME_H
#define TSCNI_WORKER_MAGICSOCK_HOME_H

#include <stdbool.h>
#include <stdint.h>

enum home_limits {
	HOME_SWITCH_MIN_MS = 10,     /* upstream's preferredDERPAbsoluteDiff */
	HOME_HEARD_RECENT_MS = 8000, /* upstream's PreferredDERPFrameTime */
};

struct home_choice {
	uint16_t cur;	  /* the current home; 0: none yet */
	uint32_t cur_ms;  /* its measured latency; 0: no STUN answer */
	bool cur_heard;	  /* a packet came through its DERP connection lately */
	uint16_t best;	  /* the region with the lowest latency; 0: none answered */
	uint32_t best_ms; /* its latency */
};

/* The region to be home: c->best, or c->cur when stickiness keeps it (also
 * when nothing answered). */
uint16_t home_pick(const struct home_choice *c);

#endif
