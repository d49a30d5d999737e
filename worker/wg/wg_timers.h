/* A hashed timer wheel for the data-plane thread (the shape of the kernel's
 * timer_list as wgk timers.c uses it): O(1) schedule and cancel, expiry
 * driven by the caller's monotonic clock, nothing allocated.
 *
 * Time is cut into ticks of tick_ns. A timer sits in slot
 * (expiry tick % WG_TIMERS_SLOTS) on an intrusive doubly linked list; one
 * that lies more than a turn of the wheel ahead stays in its slot and is
 * passed over until its turn comes. wg_timers_run() visits the slots of
 * every tick since the last run (at most one full turn) and fires what is
 * due. A timer fires at the first run at or after its expiry, rounded up to
 * the tick, never before.
 *
 * The owner embeds each struct wg_timer in its own object (a peer has
 * five) and must wg_timers_del() it before freeing that object. */
#ifndef TSCNI_WORKER_WG_WG_TIMERS_H
#define TSCNI_WORKER_WG_WG_TIMERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wg_timers_limits { WG_TIMERS_SLOTS = 1024 };

struct wg_timer;
/* Called from wg_timers_run() once the timer is due; the timer is no longer
 * pending then and may be re-armed (or freed) from inside the callback. ctx
 * is what the caller passed to wg_timers_run(). */
typedef void wg_timer_fn(struct wg_timer *t, void *ctx);

struct wg_timer {
	struct wg_timer *next, **pprev; /* pprev NULL = not pending */
	uint64_t expires_tick;
	wg_timer_fn *fn;
};

struct wg_timer_wheel {
	struct wg_timer *slot[WG_TIMERS_SLOTS];
	uint64_t tick_ns;
	uint64_t last_tick; /* every tick up to this one has been run */
	size_t pending;
};

/* tick_ns > 0 (1 ms suits WireGuard's timers); now_ns is the current
 * monotonic time. */
void wg_timers_init(struct wg_timer_wheel *w, uint64_t tick_ns, uint64_t now_ns);
void wg_timers_setup(struct wg_timer *t, wg_timer_fn *fn);

/* Arms t to fire at expires_ns (moves it if pending; a time in the past
 * fires at the next run). */
void wg_timers_mod(struct wg_timer_wheel *w, struct wg_timer *t, uint64_t expires_ns);
/* Disarms t; nothing happens if it is not pending. */
void wg_timers_del(struct wg_timer_wheel *w, struct wg_timer *t);

static inline bool wg_timers_pending(const struct wg_timer *t)
{
	return t->pprev != NULL;
}

/* Fires every timer due at now_ns (roughly in slot order). Returns how many
 * fired. */
size_t wg_timers_run(struct wg_timer_wheel *w, uint64_t now_ns, void *ctx);

#endif
