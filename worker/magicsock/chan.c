/* Two single-producer single-consumer rings of DERP packets between the
 * worker's threads (see chan.h). The producer owns `head`, the consumer
 * `tail`; each publishes its index with release ordering after touching a
 * slot and reads the other's with acquire ordering, so a slot is never read
 * while written nor reused while read. */
#include "chan.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

_Static_assert((CHAN_SLOTS & (CHAN_SLOTS - 1)) == 0, "CHAN_SLOTS is a power of two");

struct ring {
	_Atomic uint32_t head; /* next slot the producer fills */
	_Atomic uint32_t tail; /* next slot the consumer reads */
	_Atomic uint64_t pushed, dropped;
	chan_wake_fn *wake; /* the consumer's */
	void *wake_arg;
	struct chan_pkt slot[CHAN_SLOTS];
};

struct chan {
	struct ring to_derp, from_derp;
};

struct chan *chan_new(void)
{
	return xcalloc(1, sizeof(struct chan));
}

void chan_free(struct chan *c)
{
	free(c);
}

void chan_set_wake_engine(struct chan *c, chan_wake_fn *fn, void *arg)
{
	c->from_derp.wake = fn;
	c->from_derp.wake_arg = arg;
}

void chan_set_wake_control(struct chan *c, chan_wake_fn *fn, void *arg)
{
	c->to_derp.wake = fn;
	c->to_derp.wake_arg = arg;
}

static int push(struct ring *r, const uint8_t *key, uint16_t region, const uint8_t *data,
		size_t len)
{
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
	struct chan_pkt *p;

	if (len > CHAN_PKT_MAX || head - tail == CHAN_SLOTS) {
		atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
		return len > CHAN_PKT_MAX ? -EMSGSIZE : -ENOBUFS;
	}
	p = &r->slot[head & (CHAN_SLOTS - 1)];
	memcpy(p->key, key, CHAN_KEY_LEN);
	p->region = region;
	p->len = (uint16_t)len;
	memcpy(p->data, data, len);
	atomic_store_explicit(&r->head, head + 1, memory_order_release);
	atomic_fetch_add_explicit(&r->pushed, 1, memory_order_relaxed);
	/* Every push wakes: waking only on empty -> non-empty would race with
	 * a consumer that drains and sleeps between our two loads. The wake
	 * functions coalesce (an eventfd counter, uv_async_send). */
	if (r->wake)
		r->wake(r->wake_arg);
	return 0;
}

static const struct chan_pkt *peek(struct ring *r)
{
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	uint32_t head = atomic_load_explicit(&r->head, memory_order_acquire);

	return head == tail ? NULL : &r->slot[tail & (CHAN_SLOTS - 1)];
}

static void done(struct ring *r)
{
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);

	atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
}

int chan_send_push(struct chan *c, const uint8_t key[static CHAN_KEY_LEN], uint16_t region,
		   const uint8_t *data, size_t len)
{
	return push(&c->to_derp, key, region, data, len);
}

const struct chan_pkt *chan_send_peek(struct chan *c)
{
	return peek(&c->to_derp);
}

void chan_send_done(struct chan *c)
{
	done(&c->to_derp);
}

int chan_recv_push(struct chan *c, const uint8_t key[static CHAN_KEY_LEN], uint16_t region,
		   const uint8_t *data, size_t len)
{
	return push(&c->from_derp, key, region, data, len);
}

const struct chan_pkt *chan_recv_peek(struct chan *c)
{
	return peek(&c->from_derp);
}

void chan_recv_done(struct chan *c)
{
	done(&c->from_derp);
}

void chan_stats(const struct chan *c, struct chan_stats *out)
{
	out->to_derp = atomic_load_explicit(&c->to_derp.pushed, memory_order_relaxed);
	out->to_derp_dropped = atomic_load_explicit(&c->to_derp.dropped, memory_order_relaxed);
	out->from_derp = atomic_load_explicit(&c->from_derp.pushed, memory_order_relaxed);
	out->from_derp_dropped = atomic_load_explicit(&c->from_derp.dropped, memory_order_relaxed);
}
