/* Transport data: one AEAD call per packet, in place. The replay window is
 * asked before the AEAD (cheap refusal of replays) and updated only after the
 * tag verified, so a forged counter never moves the window. */
#include "wg_data.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "wg_aead.h"

_Static_assert((int)WG_AUTHTAG_LEN == (int)WG_AEAD_TAG_LEN, "Poly1305 tag");

static bool expired(const struct wg_keypair *kp, uint64_t now_ns)
{
	return now_ns - kp->created_ns >= REJECT_AFTER_TIME * WG_NSEC_PER_SEC;
}

size_t wg_data_padding(size_t plain_len, size_t mtu)
{
	size_t last = plain_len, padded;

	if (mtu && last > mtu)
		last %= mtu;
	padded = (last + WG_DATA_PADDING_MULTIPLE - 1) & ~(size_t)(WG_DATA_PADDING_MULTIPLE - 1);
	if (mtu && padded > mtu)
		padded = mtu;
	return padded - last;
}

size_t wg_data_message_len(size_t plain_len, size_t mtu)
{
	return WG_DATA_HEADER_LEN + plain_len + wg_data_padding(plain_len, mtu) + WG_AUTHTAG_LEN;
}

int wg_data_encrypt(struct wg_keypair *kp, uint64_t now_ns, uint8_t *buf, size_t buf_cap,
		    size_t plain_len, size_t mtu, size_t *msg_len)
{
	struct wg_message_data hdr;
	size_t pad, body;
	uint64_t counter;
	int ret;

	*msg_len = 0;
	if (plain_len > WG_DATA_MAX_PLAINTEXT_LEN)
		return -EMSGSIZE;
	pad = wg_data_padding(plain_len, mtu);
	body = plain_len + pad;
	if (buf_cap < WG_DATA_HEADER_LEN + body + WG_AUTHTAG_LEN)
		return -EMSGSIZE;
	if (kp->send_counter >= REJECT_AFTER_MESSAGES || expired(kp, now_ns))
		return -ESTALE;
	counter = kp->send_counter++;

	hdr.type = htole32(WG_MESSAGE_DATA);
	hdr.receiver_index = htole32(kp->remote_index);
	hdr.counter = htole64(counter);
	memcpy(buf, &hdr, sizeof(hdr));
	memset(buf + WG_DATA_HEADER_LEN + plain_len, 0, pad);
	ret = wg_aead_seal(kp->send_key, counter, buf + WG_DATA_HEADER_LEN, body,
			   buf + WG_DATA_HEADER_LEN + body);
	if (ret < 0)
		return ret; /* the counter is spent: never reused */
	*msg_len = WG_DATA_HEADER_LEN + body + WG_AUTHTAG_LEN;
	return 0;
}

int wg_data_decrypt(struct wg_keypair *kp, uint64_t now_ns, uint8_t *msg, size_t len,
		    size_t *plain_len, const char **why)
{
	struct wg_message_data hdr;
	size_t body;
	uint64_t counter;
	int ret;

	*plain_len = 0;
	if (len < WG_DATA_MIN_LEN || len > WG_MESSAGE_MAX_LEN) {
		*why = "data message length out of range";
		return -EBADMSG;
	}
	memcpy(&hdr, msg, sizeof(hdr));
	if (le32toh(hdr.type) != WG_MESSAGE_DATA) {
		*why = "not a data message";
		return -EBADMSG;
	}
	if (le32toh(hdr.receiver_index) != kp->local_index) {
		*why = "data message for another session";
		return -EBADMSG;
	}
	if (expired(kp, now_ns)) {
		*why = "session older than REJECT_AFTER_TIME";
		return -ESTALE;
	}
	counter = le64toh(hdr.counter);
	if (!wg_replay_check(&kp->replay, counter)) {
		*why = "data counter replayed or outside the window";
		return -EALREADY;
	}
	body = len - WG_DATA_MIN_LEN;
	ret = wg_aead_open(kp->recv_key, counter, msg + WG_DATA_HEADER_LEN, body,
			   msg + WG_DATA_HEADER_LEN + body);
	if (ret < 0) {
		*why = ret == -EBADMSG ? "data message does not authenticate"
				       : "no cipher context for this thread";
		return ret;
	}
	/* Checked above, but a batch may hold the same counter twice. */
	if (!wg_replay_update(&kp->replay, counter)) {
		*why = "data counter replayed";
		return -EALREADY;
	}
	*plain_len = body;
	return 0;
}

bool wg_data_wants_rekey(const struct wg_keypair *kp, uint64_t now_ns)
{
	if (kp->send_counter >= REKEY_AFTER_MESSAGES)
		return true;
	return kp->initiator && now_ns - kp->created_ns >= REKEY_AFTER_TIME * WG_NSEC_PER_SEC;
}

bool wg_data_wants_rekey_on_receive(const struct wg_keypair *kp, uint64_t now_ns)
{
	uint64_t limit = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT;

	return kp->initiator && now_ns - kp->created_ns >= limit * WG_NSEC_PER_SEC;
}
