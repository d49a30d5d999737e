/* The channel between a worker's two threads for packets that travel
 * through DERP. The data-plane thread (the engine) owns the UDP socket, the
 * WireGuard device and the disco path state; the control thread owns the
 * DERP connections (TLS on its libuv loop). So:
 *
 *   engine  --chan_send_push--> to_derp   --chan_send_pop-->  control thread
 *           (WireGuard or disco for peer K via region R)      derp_conn_send
 *   control --chan_recv_push--> from_derp --chan_recv_pop-->  engine
 *           (RecvPacket from K on region R)                   disco or WireGuard
 *
 * Each direction is a single-producer single-consumer ring of fixed slots:
 * no lock, no allocation after chan_new(), bounded memory. A full ring drops
 * the packet (counted): DERP is the slow path and WireGuard and disco retry.
 * Each push tells the consumer through the wake function its side
 * registered (an eventfd write for the engine, uv_async_send for the
 * control thread); both coalesce, and the consumer drains until empty. */
#ifndef TSCNI_WORKER_MAGICSOCK_CHAN_H
#define TSCNI_WORKER_MAGICSOCK_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum chan_limits {
	CHAN_KEY_LEN = 32,
	/* A DERP packet we carry: a WireGuard datagram of our MTU (1280 +
	 * 32 bytes of header and tag, 16-byte padded) or a disco message, with
	 * room to spare; anything larger is refused, not cut. */
	CHAN_PKT_MAX = 1500,
	CHAN_SLOTS = 64, /* per direction, a power of two */
};

struct chan_pkt {
	uint8_t key[CHAN_KEY_LEN]; /* to_derp: the destination; from_derp: the source */
	uint16_t region;	   /* DERP region id */
	uint16_t len;
	uint8_t data[CHAN_PKT_MAX];
};

struct chan_stats {
	uint64_t to_derp, to_derp_dropped; /* pushed / dropped because full or too big */
	uint64_t from_derp, from_derp_dropped;
};

typedef void chan_wake_fn(void *arg);

struct chan;

/* Both rings, empty. Returns NULL only when memory is exhausted (xcalloc
 * aborts first). */
struct chan *chan_new(void);
void chan_free(struct chan *c);

/* Who to wake when a ring gets its first packet: each side sets its own
 * before the other thread starts pushing. */
void chan_set_wake_engine(struct chan *c, chan_wake_fn *fn, void *arg);
void chan_set_wake_control(struct chan *c, chan_wake_fn *fn, void *arg);

/* Engine thread only. Returns 0, -EMSGSIZE or -ENOBUFS (dropped, counted). */
int chan_send_push(struct chan *c, const uint8_t key[static CHAN_KEY_LEN], uint16_t region,
		   const uint8_t *data, size_t len);
/* Control thread only: the oldest packet for DERP, or NULL when none. The
 * pointer is valid until chan_send_done(). */
const struct chan_pkt *chan_send_peek(struct chan *c);
void chan_send_done(struct chan *c);

/* Control thread only. Returns 0, -EMSGSIZE or -ENOBUFS (dropped, counted). */
int chan_recv_push(struct chan *c, const uint8_t key[static CHAN_KEY_LEN], uint16_t region,
		   const uint8_t *data, size_t len);
/* Engine thread only, as chan_send_peek/chan_send_done. */
const struct chan_pkt *chan_recv_peek(struct chan *c);
void chan_recv_done(struct chan *c);

/* From any thread: counters (each read atomically, not as one snapshot). */
void chan_stats(const struct chan *c, struct chan_stats *out);

#endif
