/* Fuzz target for STUN on the shared UDP socket: the classification the
 * receive path makes first, a DERP server's reading of a binding request,
 * a client's reading of a binding response. Every request that reads must
 * name the TxID our own request for it would; every response that reads
 * must give the same address once rebuilt by stun_response() and read
 * again, and be refused for any other transaction. Nothing is allocated. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "worker/magicsock/disco.h"
#include "common/stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool addr_equal(const struct stun_addr *a, const struct stun_addr *b)
{
	return a->port == b->port && memcmp(a->ip, b->ip, sizeof(a->ip)) == 0;
}

static void check_request(const uint8_t *data, size_t size)
{
	uint8_t txid[STUN_TXID_LEN], again[STUN_TXID_LEN], req[STUN_REQUEST_LEN];
	const char *why = NULL;

	if (stun_parse_binding_request(data, size, txid, &why) != 0) {
		if (!why)
			abort();
		return;
	}
	stun_request(txid, req);
	if (stun_parse_binding_request(req, sizeof(req), again, &why) != 0 ||
	    memcmp(txid, again, STUN_TXID_LEN) != 0)
		abort();
}

static void check_response(const uint8_t *data, size_t size)
{
	uint8_t txid[STUN_TXID_LEN], again[STUN_TXID_LEN], resp[STUN_RESPONSE_MAX];
	struct stun_addr addr, addr2;
	const char *why = NULL;
	size_t n;

	if (stun_parse_response(data, size, txid, &addr, &why) != 0) {
		if (!why)
			abort();
		return;
	}
	if (stun_check_response(data, size, txid, &addr2, &why) != 0 || !addr_equal(&addr, &addr2))
		abort();
	n = stun_response(txid, &addr, resp);
	if (n > sizeof(resp) || stun_parse_response(resp, n, again, &addr2, &why) != 0 ||
	    memcmp(txid, again, STUN_TXID_LEN) != 0 || !addr_equal(&addr, &addr2))
		abort();
	txid[0] ^= 1;
	if (stun_check_response(data, size, txid, &addr2, &why) == 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool is = stun_is(data, size);

	/* STUN is tested first on the socket: whatever it claims is its. */
	if (is != (disco_classify(data, size) == DISCO_KIND_STUN))
		abort();
	check_request(data, size);
	check_response(data, size);
	return 0;
}
