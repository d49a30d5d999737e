/* The threadpool watch (pool_watch.h). */
#include "pool_watch.h"

#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "mem.h"

static const char stuck_reason[] = "every threadpool thread has been busy for 5 s or more "
				   "(a blocking netns path or filesystem?): ADD and DEL wait";

struct pool_watch {
	struct supervisor *sup;
	uv_timer_t timer;
	uv_work_t probe;
	bool in_flight;	 /* the probe is queued or running */
	bool stopping;	 /* pool_watch_stop ran: the last callback frees */
	bool timer_open; /* until its close callback */
	bool stuck;	 /* we made the health NOT_READY */
	uint64_t queued_ms;
	unsigned ticks;
};

static void maybe_free(struct pool_watch *pw)
{
	if (pw->stopping && !pw->in_flight && !pw->timer_open)
		free(pw);
}

static void probe_work(uv_work_t *w)
{
	(void)w;
}

static void probe_done(uv_work_t *w, int status)
{
	struct pool_watch *pw = w->data;
	struct supervisor *sup = pw->sup;

	(void)status;
	pw->in_flight = false;
	if (pw->stuck) {
		pw->stuck = false;
		log_info("threadpool free again after %llu ms",
			 (unsigned long long)(uv_now(&sup->loop) - pw->queued_ms));
		if (sup->health == TSCNI__HEALTH__HEALTH_NOT_READY &&
		    sup->health_reason == stuck_reason) {
			sup->health = TSCNI__HEALTH__HEALTH_READY;
			sup->health_reason = NULL;
		}
	}
	maybe_free(pw);
}

static void on_timer(uv_timer_t *t)
{
	struct pool_watch *pw = t->data;
	struct supervisor *sup = pw->sup;
	uint64_t now = uv_now(&sup->loop);

	/* The pool's bursts (route syncs of many peers, many ADDs at once)
	 * leave megabytes free in the threads' malloc arenas, which glibc
	 * gives back only from the top of each: one supervisor on this
	 * machine went from 15.6 to 8.2 MiB of Pss_Anon with a malloc_trim.
	 * A trim of an already trimmed heap only walks its free lists. */
	if (++pw->ticks % POOL_WATCH_TRIM_TICKS == 0)
		malloc_trim(0);

	if (!pw->in_flight) {
		pw->probe.data = pw;
		if (uv_queue_work(&sup->loop, &pw->probe, probe_work, probe_done) == 0) {
			pw->in_flight = true;
			pw->queued_ms = now;
		}
		return;
	}
	if (pw->stuck || now - pw->queued_ms < POOL_WATCH_STUCK_MS ||
	    sup->health != TSCNI__HEALTH__HEALTH_READY)
		return;
	pw->stuck = true;
	sup->health = TSCNI__HEALTH__HEALTH_NOT_READY;
	sup->health_reason = stuck_reason;
	log_warn("not ready: %s", stuck_reason);
}

int pool_watch_start(struct supervisor *sup, struct pool_watch **out)
{
	struct pool_watch *pw = xcalloc(1, sizeof(*pw));
	int ret;

	pw->sup = sup;
	ret = uv_timer_init(&sup->loop, &pw->timer);
	if (ret < 0) {
		free(pw);
		return ret;
	}
	pw->timer.data = pw;
	pw->timer_open = true;
	ret = uv_timer_start(&pw->timer, on_timer, POOL_WATCH_INTERVAL_MS, POOL_WATCH_INTERVAL_MS);
	if (ret < 0) {
		pool_watch_stop(pw);
		return ret;
	}
	*out = pw;
	return 0;
}

static void timer_closed(uv_handle_t *h)
{
	struct pool_watch *pw = h->data;

	pw->timer_open = false;
	maybe_free(pw);
}

bool pool_watch_stuck(const struct pool_watch *pw, uint64_t *wait_ms)
{
	*wait_ms = 0;
	if (!pw || pw->stopping)
		return false;
	if (pw->in_flight)
		*wait_ms = uv_now(&pw->sup->loop) - pw->queued_ms;
	return pw->stuck;
}

void pool_watch_stop(struct pool_watch *pw)
{
	if (!pw || pw->stopping)
		return;
	pw->stopping = true;
	if (pw->in_flight)
		(void)uv_cancel((uv_req_t *)&pw->probe); /* probe_done(UV_ECANCELED) */
	uv_close((uv_handle_t *)&pw->timer, timer_closed);
}
