/* Fuzz target for every WireGuard message read from the UDP socket (or a
 * DERP RecvPacket): wg_messages_parse() classifies it, then it goes where the
 * receive path would send it, against fixed keys that make the seeds valid:
 *   type 1 -> MAC1/MAC2 check, consume_initiation, response, keypair
 *   type 2 -> consume_response of the initiation in flight, keypair
 *   type 3 -> consume_reply of the cookie generator that sent that initiation
 *   type 4 -> decrypt in place with the session whose index it names, and
 *             the plaintext sealed again.
 * The fixed keys, ephemerals, indices and timestamp are wireguard.json's, so
 * the seeds (that file's captured messages) pass every check and the fuzzer
 * starts from the deepest paths. Everything lives on the stack or is freed. */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "worker/wg/wg_cookie.h"
#include "worker/wg/wg_data.h"
#include "worker/wg/wg_messages.h"
#include "worker/wg/wg_noise.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t INITIATOR_PRIVATE[WG_KEY_LEN] = {
	0x90, 0x26, 0xa8, 0xfc, 0x22, 0xa4, 0xbf, 0xe6, 0x5b, 0x20, 0xab,
	0x79, 0xe7, 0xe1, 0x6d, 0x38, 0xd4, 0x56, 0x4f, 0x06, 0x9c, 0x51,
	0x49, 0xe7, 0x29, 0x62, 0x63, 0x92, 0x75, 0xa7, 0x74, 0x64,
};
static const uint8_t RESPONDER_PRIVATE[WG_KEY_LEN] = {
	0x48, 0x74, 0x89, 0xa5, 0x69, 0x37, 0x54, 0xb2, 0x4b, 0xdb, 0xf3,
	0x50, 0x87, 0xcb, 0xe0, 0xb7, 0x4c, 0x13, 0xe5, 0xff, 0x5b, 0xa6,
	0xc8, 0xb1, 0x67, 0xca, 0x6e, 0x06, 0x84, 0xf3, 0xc6, 0x48,
};
static const uint8_t INITIATOR_EPHEMERAL[WG_KEY_LEN] = {
	0xb0, 0x17, 0x6f, 0xe5, 0x70, 0x36, 0xd3, 0xdd, 0xb2, 0x51, 0x3c,
	0x76, 0xc7, 0xa6, 0xeb, 0xe4, 0x3f, 0xea, 0x3b, 0x7c, 0x00, 0x75,
	0xeb, 0x3d, 0x4d, 0x89, 0x54, 0xba, 0xe2, 0x91, 0x3e, 0x4a,
};
static const uint8_t RESPONDER_EPHEMERAL[WG_KEY_LEN] = {
	0x98, 0x97, 0x45, 0x3e, 0x8d, 0xce, 0x54, 0xee, 0x60, 0x26, 0x93,
	0x9b, 0xbe, 0x63, 0x26, 0x7b, 0xde, 0x06, 0x04, 0x0b, 0x30, 0x66,
	0x36, 0xd8, 0x6e, 0x93, 0x15, 0x23, 0xa6, 0xb7, 0xc2, 0x50,
};
/* TAI64N of 2000-01-01T00:00:00Z, the vectors' fake clock. */
static const uint8_t TIMESTAMP[WG_TIMESTAMP_LEN] = {
	0x40, 0x00, 0x00, 0x00, 0x38, 0x6d, 0x43, 0x8a, 0x00, 0x00, 0x00, 0x00,
};
static const uint32_t INITIATOR_INDEX = 0x44332211;
static const uint32_t RESPONDER_INDEX = 0x88776655;
/* 198.51.100.7:41641 as wireguard-go encodes an endpoint. */
static const uint8_t SRC[] = {0xc6, 0x33, 0x64, 0x07, 0xa9, 0xa2};
static const uint64_t NOW = 1000 * UINT64_C(1000000000);

struct world {
	struct wg_noise_static initiator, responder;
	struct wg_handshake at_initiator; /* the initiator's view of the responder */
	struct wg_handshake at_responder; /* the responder's view of the initiator */
	struct wg_cookie_checker checker; /* the responder's */
	struct wg_cookie_generator gen;	  /* the initiator's */
	struct wg_keypair kp_initiator, kp_responder;
};

static struct wg_handshake *lookup(void *ctx, const uint8_t public_key[WG_KEY_LEN])
{
	struct world *w = ctx;

	if (memcmp(public_key, w->at_responder.remote_static, WG_KEY_LEN) != 0)
		return NULL;
	return &w->at_responder;
}

/* The state both sides have right after the vector handshake: the initiator
 * sent its initiation (MACs added), the responder answered, both hold the
 * session; and a second initiation is in flight for type 2 to answer. */
static void world_init(struct world *w)
{
	struct wg_message_initiation init;
	struct wg_message_response resp;
	struct wg_handshake *hs;
	const char *why;

	if (wg_noise_static_init(&w->initiator, INITIATOR_PRIVATE) ||
	    wg_noise_static_init(&w->responder, RESPONDER_PRIVATE) ||
	    wg_noise_handshake_init(&w->at_initiator, &w->initiator, w->responder.public_key,
				    NULL) ||
	    wg_noise_handshake_init(&w->at_responder, &w->responder, w->initiator.public_key, NULL))
		abort();
	wg_cookie_checker_init(&w->checker, w->responder.public_key);
	wg_cookie_generator_init(&w->gen, w->responder.public_key);

	if (wg_noise_create_initiation(&w->at_initiator, &w->initiator, INITIATOR_EPHEMERAL,
				       INITIATOR_INDEX, TIMESTAMP, &init) ||
	    wg_cookie_add_macs(&w->gen, (uint8_t *)&init, sizeof(init), NOW) ||
	    wg_noise_consume_initiation(&w->responder, &init, lookup, w, NOW, &hs, &why) ||
	    wg_noise_create_response(hs, RESPONDER_EPHEMERAL, RESPONDER_INDEX, &resp) ||
	    wg_noise_consume_response(&w->at_initiator, &w->initiator, &resp, &why) ||
	    wg_noise_derive_keypair(&w->at_initiator, &w->kp_initiator, NOW) ||
	    wg_noise_derive_keypair(&w->at_responder, &w->kp_responder, NOW))
		abort();
	/* The responder has seen this timestamp; the seed initiation is then a
	 * replay, so forget it to let the seed go the whole way. */
	memset(w->at_responder.latest_timestamp, 0, WG_TIMESTAMP_LEN);
	w->at_responder.consumed_any_initiation = false;
	/* The same initiation in flight again, for a response to answer. */
	if (wg_noise_create_initiation(&w->at_initiator, &w->initiator, INITIATOR_EPHEMERAL,
				       INITIATOR_INDEX, TIMESTAMP, &init) ||
	    wg_cookie_add_macs(&w->gen, (uint8_t *)&init, sizeof(init), NOW))
		abort();
}

static void world_destroy(struct world *w)
{
	wg_noise_static_destroy(&w->initiator);
	wg_noise_static_destroy(&w->responder);
	wg_noise_handshake_destroy(&w->at_initiator);
	wg_noise_handshake_destroy(&w->at_responder);
	wg_cookie_checker_destroy(&w->checker);
	wg_cookie_generator_destroy(&w->gen);
	wg_noise_keypair_destroy(&w->kp_initiator);
	wg_noise_keypair_destroy(&w->kp_responder);
}

static void on_initiation(struct world *w, const struct wg_message *m, const uint8_t *data,
			  size_t size)
{
	static const uint8_t nonce[WG_COOKIE_NONCE_LEN];
	struct wg_message_cookie_reply reply;
	struct wg_message_response resp;
	struct wg_handshake *hs;
	struct wg_keypair kp;
	const char *why;

	if (wg_cookie_validate(&w->checker, data, size, SRC, sizeof(SRC), false, NOW, &why) != 0)
		return;
	/* Under load without a cookie: the reply, and the reply read back. */
	if (wg_cookie_validate(&w->checker, data, size, SRC, sizeof(SRC), true, NOW, &why) ==
	    -EAGAIN) {
		if (wg_cookie_create_reply(&w->checker, data, size, SRC, sizeof(SRC), NOW, nonce,
					   &reply) != 0)
			abort();
	}
	if (wg_noise_consume_initiation(&w->responder, &m->initiation, lookup, w, NOW, &hs, &why))
		return;
	if (hs != &w->at_responder)
		abort();
	if (wg_noise_create_response(hs, RESPONDER_EPHEMERAL, RESPONDER_INDEX + 1, &resp) ||
	    wg_noise_derive_keypair(hs, &kp, NOW))
		abort();
	wg_noise_keypair_destroy(&kp);
}

static void on_response(struct world *w, const struct wg_message *m, const uint8_t *data,
			size_t size)
{
	struct wg_cookie_checker initiator_checker;
	struct wg_keypair kp;
	const char *why;
	int ret;

	wg_cookie_checker_init(&initiator_checker, w->initiator.public_key);
	ret = wg_cookie_validate(&initiator_checker, data, size, SRC, sizeof(SRC), false, NOW,
				 &why);
	wg_cookie_checker_destroy(&initiator_checker);
	if (ret)
		return;
	if (wg_noise_consume_response(&w->at_initiator, &w->initiator, &m->response, &why))
		return;
	if (wg_noise_derive_keypair(&w->at_initiator, &kp, NOW))
		abort();
	wg_noise_keypair_destroy(&kp);
}

static void on_cookie_reply(struct world *w, const struct wg_message *m)
{
	struct wg_message_initiation init;
	const char *why;

	if (wg_cookie_consume_reply(&w->gen, &m->cookie_reply, NOW, &why))
		return;
	/* With a cookie the next initiation carries a MAC2. */
	if (wg_noise_create_initiation(&w->at_initiator, &w->initiator, INITIATOR_EPHEMERAL,
				       INITIATOR_INDEX, TIMESTAMP, &init) ||
	    wg_cookie_add_macs(&w->gen, (uint8_t *)&init, sizeof(init), NOW) ||
	    sodium_is_zero(init.mac2, WG_MAC_LEN))
		abort();
}

static void on_data(struct world *w, const struct wg_message *m)
{
	struct wg_keypair *kp;
	uint8_t *buf;
	size_t plain_len, cap, msg_len;
	const char *why;

	if (m->receiver_index == w->kp_responder.local_index)
		kp = &w->kp_responder;
	else if (m->receiver_index == w->kp_initiator.local_index)
		kp = &w->kp_initiator;
	else
		return;
	/* Opened in place, as the receive path does with its datagram buffer;
	 * room for sealing the plaintext again with padding to 16. */
	cap = m->data_len + WG_DATA_PADDING_MULTIPLE;
	buf = malloc(cap);
	if (!buf)
		abort();
	memcpy(buf, m->data, m->data_len);
	if (wg_data_decrypt(kp, NOW, buf, m->data_len, &plain_len, &why) == 0) {
		if (plain_len != m->data_len - WG_DATA_MIN_LEN)
			abort();
		/* A replay of what was just accepted is refused. */
		memcpy(buf, m->data, m->data_len);
		if (wg_data_decrypt(kp, NOW, buf, m->data_len, &plain_len, &why) != -EALREADY)
			abort();
		/* The plaintext sealed again fits the same buffer. */
		if (wg_data_encrypt(kp, NOW, buf, cap, m->data_len - WG_DATA_MIN_LEN, 1420,
				    &msg_len) != 0 ||
		    msg_len > cap)
			abort();
	}
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wg_message m;
	struct world w;
	const char *why = NULL;
	int type;

	type = wg_messages_parse(&m, data, size, &why);
	if (type < 0) {
		if (!why)
			abort();
		return 0;
	}
	world_init(&w);
	switch (type) {
	case WG_MESSAGE_INITIATION:
		on_initiation(&w, &m, data, size);
		break;
	case WG_MESSAGE_RESPONSE:
		on_response(&w, &m, data, size);
		break;
	case WG_MESSAGE_COOKIE_REPLY:
		on_cookie_reply(&w, &m);
		break;
	case WG_MESSAGE_DATA:
		on_data(&w, &m);
		break;
	default:
		abort();
	}
	world_destroy(&w);
	return 0;
}
