/* The node's tailnet-lock ("network lock") key, announced as
 * RegisterRequest.NLKey ("nlpub:" + hex of an Ed25519 public key), as
 * tailscaled announces the key it keeps in its state.
 *
 * We keep no such state: the key pair is derived from the node private key,
 * so a pod announces the same NLKey on every start and after a supervisor
 * restart, and a new node key gives a new NLKey (control never sees one
 * NLKey on two nodes). The seed is a keyed BLAKE2b hash of a fixed context
 * string under the node private key, so the NLKey reveals nothing of that
 * key. The private half is never kept: this node signs nothing with it
 * (tailnet lock is refused, docs/tailscale-protocol.md). */
#ifndef TSCNI_WORKER_CONTROL_NLKEY_H
#define TSCNI_WORKER_CONTROL_NLKEY_H

#include <stdint.h>

#include "keys.h"

/* Writes the NLKey public key of the node whose private key is node_priv.
 * The seed and the private half are wiped before returning. */
void nlkey_derive(const uint8_t node_priv[static KEY_LEN], uint8_t nl_pub[static KEY_LEN]);

#endif
