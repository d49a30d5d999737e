/* The one bounded reader of WireGuard datagrams: every message that arrives on
 * the UDP socket (or inside a DERP RecvPacket) goes through
 * wg_messages_parse() before anything else looks at it. */
#include "wg_messages.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

int wg_messages_parse(struct wg_message *m, const uint8_t *buf, size_t len, const char **why)
{
	uint32_t type;

	memset(m, 0, sizeof(*m));
	if (len < sizeof(uint32_t)) {
		*why = "wireguard message shorter than its type field";
		return -EBADMSG;
	}
	if (len > WG_MESSAGE_MAX_LEN) {
		*why = "wireguard message longer than 65535 bytes";
		return -EBADMSG;
	}
	memcpy(&type, buf, sizeof(type));
	type = le32toh(type);
	switch (type) {
	case WG_MESSAGE_INITIATION:
		if (len != WG_MESSAGE_INITIATION_LEN) {
			*why = "wireguard initiation is not 148 bytes";
			return -EBADMSG;
		}
		memcpy(&m->initiation, buf, len);
		break;
	case WG_MESSAGE_RESPONSE:
		if (len != WG_MESSAGE_RESPONSE_LEN) {
			*why = "wireguard response is not 92 bytes";
			return -EBADMSG;
		}
		memcpy(&m->response, buf, len);
		break;
	case WG_MESSAGE_COOKIE_REPLY:
		if (len != WG_MESSAGE_COOKIE_REPLY_LEN) {
			*why = "wireguard cookie reply is not 64 bytes";
			return -EBADMSG;
		}
		memcpy(&m->cookie_reply, buf, len);
		break;
	case WG_MESSAGE_DATA: {
		struct wg_message_data hdr;

		if (len < WG_DATA_MIN_LEN) {
			*why = "wireguard data message shorter than 32 bytes";
			return -EBADMSG;
		}
		memcpy(&hdr, buf, sizeof(hdr));
		m->receiver_index = le32toh(hdr.receiver_index);
		m->counter = le64toh(hdr.counter);
		m->data = buf;
		m->data_len = len;
		break;
	}
	default:
		/* Includes types 5/6 of the experimental ML-KEM handshake, which
		 * Tailscale never uses. */
		*why = "unknown wireguard message type";
		return -EBADMSG;
	}
	m->type = (enum wg_message_type)type;
	return (int)type;
}
