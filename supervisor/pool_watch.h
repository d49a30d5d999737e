/* The threadpool watch: the supervisor's blocking work (netns and netlink
 * operations, state files, tombstone scans) runs on libuv's threadpool,
 * and ADD and DEL wait for a free thread. When every thread is stuck (a
 * filesystem or a netns path that blocks), the supervisor still answers
 * STATUS from its loop; this makes its health say so.
 *
 * Every POOL_WATCH_INTERVAL_MS a no-op job is queued behind whatever the
 * pool holds (one at a time). One not run within POOL_WATCH_STUCK_MS turns
 * a READY health into NOT_READY with the reason (CNI STATUS code 50: ADD
 * cannot be served; the pods that run are not affected, their workers do
 * not need the pool), with one log line; once it runs, health is READY
 * again and the stall's length is logged. The same timer gives the
 * supervisor's free heap pages back (malloc_trim) every 10 s. */
#ifndef TSCNI_SUPERVISOR_POOL_WATCH_H
#define TSCNI_SUPERVISOR_POOL_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "supervisor.h"

enum {
	POOL_WATCH_INTERVAL_MS = 1000,
	POOL_WATCH_STUCK_MS = 5000,
	/* Free heap pages are given back every this many intervals. */
	POOL_WATCH_TRIM_TICKS = 10,
};

struct pool_watch;

/* Starts the watch on sup's loop. 0, or a negative errno from libuv. */
int pool_watch_start(struct supervisor *sup, struct pool_watch **out);
/* Whether the watch found the pool stuck (health NOT_READY by it), and in
 * *wait_ms how long its probe has waited so far (0: none waits). pw may
 * be NULL (no watch): false. */
bool pool_watch_stuck(const struct pool_watch *pw, uint64_t *wait_ms);
/* Stops it: its timer closes; a probe still queued is cancelled, one
 * stuck in the pool is left to finish (the memory goes with it). */
void pool_watch_stop(struct pool_watch *pw);

#endif
