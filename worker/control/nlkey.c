/* See nlkey.h. */
#include "nlkey.h"

#include <stdlib.h>

#include <sodium.h>

/* Changing it changes every pod's NLKey. */
static const char nlkey_context[] = "tailscale-cni network-lock key v1";

void nlkey_derive(const uint8_t node_priv[static KEY_LEN], uint8_t nl_pub[static KEY_LEN])
{
	uint8_t seed[crypto_sign_SEEDBYTES];
	uint8_t sk[crypto_sign_SECRETKEYBYTES];

	_Static_assert(crypto_sign_PUBLICKEYBYTES == KEY_LEN, "an NLKey is KEY_LEN bytes");
	/* Both calls fail only on out-of-range lengths, fixed here. */
	if (crypto_generichash(seed, sizeof(seed), (const uint8_t *)nlkey_context,
			       sizeof(nlkey_context) - 1, node_priv, KEY_LEN) != 0 ||
	    crypto_sign_seed_keypair(nl_pub, sk, seed) != 0)
		abort();
	sodium_memzero(seed, sizeof(seed));
	sodium_memzero(sk, sizeof(sk));
}
