/* Sliding-window replay protection of the transport counter (RFC 6479 with a
 * ring of 64-bit blocks, as WireGuard paper §5.4.6 asks for).
 *
 * The window remembers the last WG_REPLAY_WINDOW_SIZE (8128) counters below
 * the highest one accepted. A counter is accepted once: a duplicate, one
 * older than the window, or one at or past REJECT_AFTER_MESSAGES is refused.
 * The struct is embedded in its keypair (1 KiB, no allocation). */
#ifndef TSCNI_WORKER_WG_WG_REPLAY_H
#define TSCNI_WORKER_WG_WG_REPLAY_H

#include <stdbool.h>
#include <stdint.h>

#include "wg_messages.h"

enum wg_replay_limits {
	WG_REPLAY_BLOCK_BITS = 64,
	WG_REPLAY_BLOCKS = WG_REPLAY_RING_BITS / WG_REPLAY_BLOCK_BITS,
};

struct wg_replay {
	uint64_t last; /* highest counter accepted so far */
	uint64_t ring[WG_REPLAY_BLOCKS];
};

/* Empties the window: every counter from 0 is acceptable again. */
void wg_replay_init(struct wg_replay *r);

/* Would `counter` be accepted? Changes nothing: the data path asks before it
 * spends a decryption, then calls wg_replay_update() once the tag verified. */
bool wg_replay_check(const struct wg_replay *r, uint64_t counter);

/* Marks `counter` as seen, sliding the window forward if it is the newest.
 * Returns true if it was acceptable (not seen, not too old, below
 * REJECT_AFTER_MESSAGES), false if it must be dropped (nothing changes). */
bool wg_replay_update(struct wg_replay *r, uint64_t counter);

#endif
