/* RFC 6479 anti-replay window. The ring holds WG_REPLAY_BLOCKS blocks of 64
 * bits; bit (counter % 64) of block (counter / 64) % WG_REPLAY_BLOCKS stands
 * for `counter`. Sliding forward only zeroes the blocks the window enters,
 * so a far jump costs at most one pass over the ring. One block of the ring
 * is always partly ahead of `last`, which is why the usable window is one
 * block smaller than the ring. */
#include "wg_replay.h"

#include <string.h>

enum replay_bits {
	BLOCK_SHIFT = 6,
	BLOCK_MASK = WG_REPLAY_BLOCKS - 1,
	BIT_MASK = WG_REPLAY_BLOCK_BITS - 1,
};

_Static_assert((WG_REPLAY_BLOCKS & (WG_REPLAY_BLOCKS - 1)) == 0, "ring is a power of two");
_Static_assert(WG_REPLAY_WINDOW_SIZE >= 2048, "window of at least 2048 counters");
_Static_assert(1 << BLOCK_SHIFT == WG_REPLAY_BLOCK_BITS, "block shift");

void wg_replay_init(struct wg_replay *r)
{
	memset(r, 0, sizeof(*r));
}

static bool seen(const struct wg_replay *r, uint64_t counter)
{
	uint64_t block = (counter >> BLOCK_SHIFT) & BLOCK_MASK;

	return (r->ring[block] >> (counter & BIT_MASK)) & 1;
}

bool wg_replay_check(const struct wg_replay *r, uint64_t counter)
{
	if (counter >= REJECT_AFTER_MESSAGES)
		return false;
	if (counter > r->last)
		return true;
	if (r->last - counter > WG_REPLAY_WINDOW_SIZE)
		return false;
	return !seen(r, counter);
}

bool wg_replay_update(struct wg_replay *r, uint64_t counter)
{
	uint64_t block = counter >> BLOCK_SHIFT;

	if (!wg_replay_check(r, counter))
		return false;
	if (counter > r->last) {
		uint64_t current = r->last >> BLOCK_SHIFT;
		uint64_t diff = block - current;

		/* Clear the blocks between the old and the new top; past a whole
		 * ring's worth everything is stale anyway. */
		if (diff > WG_REPLAY_BLOCKS)
			diff = WG_REPLAY_BLOCKS;
		for (uint64_t i = 1; i <= diff; i++)
			r->ring[(current + i) & BLOCK_MASK] = 0;
		r->last = counter;
	}
	r->ring[block & BLOCK_MASK] |= UINT64_C(1) << (counter & BIT_MASK);
	return true;
}
