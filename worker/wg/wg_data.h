/* Transport data messages (WireGuard paper §5.4.6): type 4, receiver index,
 * 64-bit little-endian counter, then ChaCha20-Poly1305 IETF of the plaintext
 * zero-padded to a multiple of 16, under the nonce 0^4 || counter LE, with
 * empty associated data. An empty plaintext is a keepalive.
 *
 * Both directions work in place on the caller's buffer and allocate nothing
 * but each thread's first cipher context (wg_aead.h), so a batch of packets is sealed or opened
 * where it was read: a TUN read lands at buf + WG_DATA_HEADER_LEN and leaves room for padding and
 * tag (wg_data_message_len); a UDP datagram is opened where it arrived. */
#ifndef TSCNI_WORKER_WG_WG_DATA_H
#define TSCNI_WORKER_WG_WG_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wg_messages.h"
#include "wg_noise.h"

/* Zero bytes appended to plain_len bytes of plaintext: up to a multiple of
 * 16, but never past mtu (wireguard-go calculatePaddingSize; mtu 0 = no
 * cap). */
size_t wg_data_padding(size_t plain_len, size_t mtu);
/* Bytes of the whole data message that carries plain_len bytes. */
size_t wg_data_message_len(size_t plain_len, size_t mtu);

/* Seals in place. buf holds plain_len bytes of plaintext at
 * buf + WG_DATA_HEADER_LEN and has room for buf_cap bytes in all. Writes the
 * header, the padding and the tag, takes the next send counter of kp and
 * sets *msg_len to the message length. Returns 0; -EMSGSIZE if plain_len >
 * WG_DATA_MAX_PLAINTEXT_LEN or buf_cap < wg_data_message_len(); -ESTALE if
 * kp may no longer send (REJECT_AFTER_TIME or REJECT_AFTER_MESSAGES reached:
 * a new handshake is needed); -ENOMEM or -EIO if the AEAD failed (wg_aead.h;
 * that counter is spent). On error *msg_len is 0; no counter is used but
 * after an AEAD failure. */
int wg_data_encrypt(struct wg_keypair *kp, uint64_t now_ns, uint8_t *buf, size_t buf_cap,
		    size_t plain_len, size_t mtu, size_t *msg_len);

/* Opens in place the whole data message msg/len (classified by
 * wg_messages_parse, receiver index already matched to kp). On success the
 * padded plaintext is at msg + WG_DATA_HEADER_LEN, *plain_len bytes long
 * (0 = keepalive; the inner IP header gives the true length), the counter is
 * marked in kp's replay window, and 0 is returned. Errors, with *why set and
 * *plain_len 0: -ENOMEM (no cipher context, wg_aead.h), -EBADMSG (not a data message, or it does
 * not authenticate; the buffer may then hold garbage), -EALREADY (counter replayed, too old for the
 * window, or past REJECT_AFTER_MESSAGES), -ESTALE (kp older than REJECT_AFTER_TIME). */
int wg_data_decrypt(struct wg_keypair *kp, uint64_t now_ns, uint8_t *msg, size_t len,
		    size_t *plain_len, const char **why);

/* Paper §6.2 from the sender's side: the initiator rekeys once the session is
 * REKEY_AFTER_TIME old, either side once REKEY_AFTER_MESSAGES were sent. */
bool wg_data_wants_rekey(const struct wg_keypair *kp, uint64_t now_ns);
/* wireguard-go's receive-side trigger: the initiator, on receiving data on a
 * session older than REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT,
 * rekeys before the session dies. */
bool wg_data_wants_rekey_on_receive(const struct wg_keypair *kp, uint64_t now_ns);

#endif
