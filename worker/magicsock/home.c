/* The home region choice: see home.h. */
#include "home.h"

uint16_t home_pick(const struct home_choice *c)
{
	int64_t cur = c->cur_ms, best = c->best_ms;

	if (!c->best || !c->cur || c->best == c->cur)
		return c->best ? c->best : c->cur;
	/* An old home we still hear from (a STUN answer, or packets through
	 * its relay) stays unless the other is clearly better. Without a
	 * STUN answer cur is 0, so the difference is below the threshold:
	 * upstream keeps such a home too. */
	if (cur != 0 || c->cur_heard) {
		if (cur - best < HOME_SWITCH_MIN_MS)
			return c->cur;
		if (best > cur / 3 * 2)
			return c->cur;
	}
	return c->best;
}
