/* The DERP client on arbitrary server bytes: the HTTP upgrade answer's
 * parser, the frame reader and the client state machine, fed in chunks so
 * that frame boundaries fall anywhere, answering every event as the
 * transport would (sending packets back, pings, preferences).
 *
 * Byte 0 holds flags: bit 0 = the stream starts with the HTTP answer,
 * bit 1 = use node key B instead of A, bit 2 = fast start (the server key is
 * known up front). Byte 1 + 1 is the chunk size. The keys are those of
 * tests/vectors/tailscale/derp.json, so the seeds' ServerInfo boxes open and
 * the fuzzer reaches the connected state. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/magicsock/derp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t node_priv[2][DERP_KEY_LEN] = {
	{0x28, 0xfc, 0xda, 0x49, 0xaf, 0xd4, 0x36, 0x80, 0xcf, 0x1d, 0x44,
	 0xb4, 0x9f, 0x6f, 0xe6, 0xff, 0x7a, 0x5a, 0xda, 0x0f, 0x7b, 0x9e,
	 0x9d, 0xc5, 0x96, 0xf7, 0x9c, 0x0b, 0xcd, 0x23, 0xd5, 0x79},
	{0xb8, 0xcd, 0x53, 0xdd, 0x51, 0x7c, 0xaf, 0xb8, 0x28, 0x6b, 0x65,
	 0x26, 0x46, 0xaa, 0xeb, 0x8b, 0x00, 0xbd, 0xa2, 0x91, 0x54, 0x02,
	 0xac, 0x25, 0x9b, 0xba, 0xca, 0x1e, 0x9c, 0xf6, 0xb6, 0x57},
};
static const uint8_t server_pub[DERP_KEY_LEN] = {
	0xcb, 0xc0, 0x71, 0x28, 0x76, 0x03, 0xea, 0x59, 0x81, 0x7c, 0x91,
	0x56, 0x0c, 0x33, 0xe6, 0x16, 0xcd, 0x5f, 0xab, 0x59, 0xa9, 0x4d,
	0xeb, 0x23, 0xcc, 0x00, 0x7e, 0xf8, 0xd3, 0xb0, 0x8b, 0x70,
};

static void fixed_nonce(uint8_t nonce[static DERP_NONCE_LEN], void *arg)
{
	(void)arg;
	memset(nonce, 0x11, DERP_NONCE_LEN);
}

/* Reacts to one event; returns false when the client is done. */
static bool answer(struct derp_client *c, const struct derp_event *ev, uint64_t *now)
{
	uint8_t sum = 0;

	switch (ev->type) {
	case DERP_EV_PACKET:
		/* Touch every byte so the sanitizers check the span. */
		for (size_t i = 0; i < ev->len; i++)
			sum ^= ev->data[i];
		return derp_client_send_packet(c, (*now)++, ev->key, &sum, 1) != -ENOTCONN;
	case DERP_EV_HEALTH:
		for (size_t i = 0; i < ev->len; i++)
			sum ^= ev->data[i];
		return derp_client_note_preferred(c, sum & 1) == 0;
	case DERP_EV_PEER_GONE:
	case DERP_EV_PEER_PRESENT:
		return derp_client_send_packet(c, (*now)++, ev->key, ev->key, DERP_KEY_LEN) !=
		       -ENOTCONN;
	case DERP_EV_PONG:
		return derp_client_send_ping(c, ev->ping) == 0;
	default:
		return true;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct derp_client_opts opts = {.nonce_fn = fixed_nonce};
	struct derp_client c;
	struct derp_event ev;
	const char *why = NULL;
	uint64_t now = 1;
	size_t chunk;
	uint8_t flags;

	if (size < 2)
		return 0;
	flags = data[0];
	chunk = (size_t)data[1] + 1;
	data += 2;
	size -= 2;
	if (flags & 1) {
		struct derp_http_reply r;
		ssize_t n = derp_http_parse_reply((const char *)data, size, &r, &why);

		if (n <= 0)
			return 0;
		data += n;
		size -= (size_t)n;
	}
	if (derp_client_init(&c, node_priv[(flags >> 1) & 1], (flags & 4) ? server_pub : NULL,
			     &opts) < 0)
		abort();
	while (size) {
		size_t len = size < chunk ? size : chunk;
		const uint8_t *out;
		int ret;

		if (derp_client_feed(&c, data, len) < 0)
			break;
		data += len;
		size -= len;
		why = NULL;
		while ((ret = derp_client_next(&c, &ev, &why)) > 0)
			if (!answer(&c, &ev, &now))
				break;
		if (ret < 0 && !why)
			abort(); /* every failure says why */
		/* The transport drains what is queued between reads. */
		derp_client_sent(&c, derp_client_pending(&c, &out));
		if (ret < 0)
			break;
	}
	derp_client_destroy(&c);
	return 0;
}
