/* Fuzz target for disco as it arrives on the shared UDP socket or in a
 * DERP packet. An input that claims disco is opened with the receiver key
 * of disco.json (so the seeds, that file's packets, open and go the whole
 * way); any other input is taken as an already opened payload, so the
 * message parser is fuzzed directly as well. Every message that parses is
 * marshalled, sealed, opened and parsed again and must come back the
 * same, then goes to a peer's path state as the receive path would hand
 * it over (Ping, Pong, CallMeMaybe). Everything is on the stack or freed. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "worker/magicsock/disco.h"
#include "worker/magicsock/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t RECEIVER_PRIVATE[DISCO_KEY_LEN] = {
	0x20, 0xd9, 0xed, 0x9f, 0x64, 0x1c, 0xf0, 0x7e, 0x57, 0x3f, 0x9e,
	0x07, 0xd8, 0xc1, 0x40, 0x5b, 0x0e, 0xc7, 0x31, 0x32, 0x8b, 0xf7,
	0x46, 0x92, 0x09, 0x05, 0xef, 0x76, 0xeb, 0x0a, 0xae, 0x63,
};
static const uint8_t RECEIVER_PUBLIC[DISCO_KEY_LEN] = {
	0xc2, 0xdb, 0xc2, 0x8b, 0x48, 0x5b, 0x02, 0x87, 0xe9, 0x43, 0x66,
	0x18, 0xed, 0x29, 0xbc, 0xe7, 0x86, 0x4b, 0x20, 0x0a, 0x91, 0x05,
	0x79, 0xda, 0x03, 0x47, 0x6f, 0xd9, 0xf8, 0x7c, 0x5b, 0x64,
};
static const uint64_t NOW = 1000000;

/* The box key of our own key pair, which stands in for the sender's in
 * the round trip: computed once, an X25519 per input being most of the
 * target's time. */
static const struct disco_shared *own_pair(void)
{
	static struct disco_shared s;
	static bool ready;

	if (!ready && disco_shared_init(&s, RECEIVER_PUBLIC, RECEIVER_PRIVATE) != 0)
		abort();
	ready = true;
	return &s;
}

/* Marshal, seal, open, parse: what a peer sends is what we read back.
 * Marshalling never makes a message longer than the payload it was
 * parsed from (payload_len). */
static void round_trip(const struct disco_msg *m, size_t payload_len, const struct disco_shared *s)
{
	static const uint8_t nonce[DISCO_NONCE_LEN];
	uint8_t *pkt, *plain;
	struct disco_msg again;
	const char *why = NULL;
	size_t cap = DISCO_HEADER_LEN + DISCO_BOX_TAG_LEN + payload_len;
	int n, p;

	pkt = malloc(cap);
	plain = malloc(cap);
	if (!pkt || !plain)
		abort();
	n = disco_encode(s, RECEIVER_PUBLIC, nonce, m, pkt, cap);
	if (n < 0)
		abort(); /* a parsed message always fits a packet */
	p = disco_open(s, pkt, (size_t)n, plain, cap, &why);
	if (p < 0 || disco_parse(plain, (size_t)p, &again, &why) != 0 || again.type != m->type)
		abort();
	switch (m->type) {
	case DISCO_PING:
		/* Upstream leaves a zero node key out when sending, so zeros in
		 * its place read back as padding: only the TxID must survive. */
		if (memcmp(again.ping.txid, m->ping.txid, DISCO_TXID_LEN) != 0 ||
		    (!sodium_is_zero(m->ping.node_key, DISCO_NODE_KEY_LEN) &&
		     memcmp(&again.ping, &m->ping, sizeof(m->ping)) != 0))
			abort();
		break;
	case DISCO_PONG:
		if (memcmp(&again.pong, &m->pong, sizeof(m->pong)) != 0)
			abort();
		break;
	case DISCO_CALL_ME_MAYBE:
		if (again.cmm.n != m->cmm.n ||
		    (m->cmm.n &&
		     memcmp(again.cmm.raw, m->cmm.raw, m->cmm.n * DISCO_ADDR_WIRE_LEN) != 0))
			abort();
		break;
	}
	free(pkt);
	free(plain);
}

/* The message as the receive path hands it to the sender's path state. */
static void to_path(const struct disco_msg *m, bool via_derp)
{
	struct path *p = malloc(sizeof(*p));
	struct path_out *out = malloc(sizeof(*out));
	struct disco_addr src, eps[PATH_MAX_ENDPOINTS];
	uint8_t ip4[4] = {198, 51, 100, 7};
	size_t n;

	if (!p || !out)
		abort();
	path_init(p);
	path_set_derp(p, 1);
	if (via_derp)
		disco_addr_derp(1, &src);
	else
		disco_addr_from4(ip4, 41641, &src);
	path_set_endpoints(p, NOW, &src, 1);
	if (path_on_send(p, NOW, out) != 0 || out->n == 0)
		abort();
	switch (m->type) {
	case DISCO_PING:
		path_on_ping(p, NOW + 1, &src, m->ping.txid, true, out);
		break;
	case DISCO_PONG:
		/* Answer our own ping, then the message's TxID. */
		if (!path_on_pong(p, NOW + 2, out->actions[0].txid, &m->pong.src))
			abort();
		path_on_pong(p, NOW + 3, m->pong.txid, &m->pong.src);
		break;
	case DISCO_CALL_ME_MAYBE:
		n = m->cmm.n < PATH_MAX_ENDPOINTS ? m->cmm.n : PATH_MAX_ENDPOINTS;
		for (size_t i = 0; i < n; i++)
			disco_call_me_maybe_at(&m->cmm, i, &eps[i]);
		path_on_call_me_maybe(p, NOW + 4, eps, n, out);
		if (out->n > PATH_MAX_ACTIONS)
			abort();
		break;
	}
	path_tick(p, path_next_deadline(p), out);
	path_destroy(p);
	free(out);
	free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct disco_shared s;
	struct disco_msg m;
	const uint8_t *sender, *payload = data;
	uint8_t *plain = NULL;
	const char *why = NULL;
	size_t len = size;
	bool via_derp = size % 2; /* either path, decided by the input */
	int n;

	if (sodium_init() < 0)
		abort();
	if (disco_classify(data, size) == DISCO_KIND_DISCO) {
		sender = disco_sender(data, size);
		if (!sender || disco_shared_init(&s, sender, RECEIVER_PRIVATE) != 0)
			return 0;
		plain = malloc(size + 1);
		if (!plain)
			abort();
		n = disco_open(&s, data, size, plain, size, &why);
		disco_shared_destroy(&s);
		if (n < 0) {
			if (!why)
				abort();
			free(plain);
			return 0;
		}
		payload = plain;
		len = (size_t)n;
	}
	why = NULL;
	if (disco_parse(payload, len, &m, &why) == 0) {
		round_trip(&m, len, own_pair());
		to_path(&m, via_derp);
	} else if (!why) {
		abort();
	}
	free(plain);
	return 0;
}
