/* The hashed timer wheel of wg_timers.h. */
#include "wg_timers.h"

#include <string.h>

void wg_timers_init(struct wg_timer_wheel *w, uint64_t tick_ns, uint64_t now_ns)
{
	memset(w, 0, sizeof(*w));
	w->tick_ns = tick_ns ? tick_ns : 1;
	w->last_tick = now_ns / w->tick_ns;
}

void wg_timers_setup(struct wg_timer *t, wg_timer_fn *fn)
{
	t->next = NULL;
	t->pprev = NULL;
	t->expires_tick = 0;
	t->fn = fn;
}

static void unlink_timer(struct wg_timer_wheel *w, struct wg_timer *t)
{
	if (t->next)
		t->next->pprev = t->pprev;
	*t->pprev = t->next;
	t->next = NULL;
	t->pprev = NULL;
	w->pending--;
}

void wg_timers_del(struct wg_timer_wheel *w, struct wg_timer *t)
{
	if (t->pprev)
		unlink_timer(w, t);
}

void wg_timers_mod(struct wg_timer_wheel *w, struct wg_timer *t, uint64_t expires_ns)
{
	/* Round up: a timer never fires before its time. */
	uint64_t tick = expires_ns / w->tick_ns + (expires_ns % w->tick_ns != 0);
	struct wg_timer **head;

	wg_timers_del(w, t);
	/* Every tick up to last_tick was visited already: a due timer goes in
	 * the next slot the wheel will visit. */
	if (tick <= w->last_tick)
		tick = w->last_tick + 1;
	t->expires_tick = tick;
	head = &w->slot[tick % WG_TIMERS_SLOTS];
	t->next = *head;
	if (t->next)
		t->next->pprev = &t->next;
	*head = t;
	t->pprev = head;
	w->pending++;
}

/* Fires the due timers of one slot. A callback may re-arm its own timer
 * (into any slot, this one included, for a later tick) or cancel others, so
 * the list is rescanned from its head after each firing; already-seen
 * timers not yet due are skipped quickly since firing removes them. */
static size_t run_slot(struct wg_timer_wheel *w, size_t idx, uint64_t tick, void *ctx)
{
	size_t fired = 0;
	struct wg_timer *t;

again:
	for (t = w->slot[idx]; t; t = t->next) {
		if (t->expires_tick > tick)
			continue;
		unlink_timer(w, t);
		t->fn(t, ctx);
		fired++;
		goto again;
	}
	return fired;
}

size_t wg_timers_run(struct wg_timer_wheel *w, uint64_t now_ns, void *ctx)
{
	uint64_t now_tick = now_ns / w->tick_ns;
	uint64_t first = w->last_tick + 1;
	size_t fired = 0;

	if (now_tick < first)
		return 0;
	/* After a long pause one turn visits every slot; each timer is then
	 * compared with now_tick itself, so nothing due is missed. */
	if (now_tick - first >= WG_TIMERS_SLOTS)
		first = now_tick - WG_TIMERS_SLOTS + 1;
	for (uint64_t tick = first; tick <= now_tick; tick++) {
		/* Set before the callbacks run so a timer re-armed "now" lands
		 * in a later tick instead of looping in this one. */
		w->last_tick = tick;
		fired += run_slot(w, tick % WG_TIMERS_SLOTS, now_tick, ctx);
	}
	return fired;
}
