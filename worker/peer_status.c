/* Stats.peer: the engine's per-peer report (dataplane_peers) as the status
 * command shows it, with what the netmap says of each peer (its tailnet
 * IPv4 and its name), like `tailscale status` lists a tailscaled's peers.
 *
 * The supervisor kills a worker whose Stats fails its checks
 * (common/validate.c), and names come from control, which the worker does
 * not trust either: so every string is cleaned here into the shape those
 * checks accept, and the count is bounded by PEER_STATUS_MAX, which also
 * keeps a Stats within WMSG_MAX_LEN. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "dataplane.h"
#include "frame.h"
#include "mem.h"
#include "netmap.h"

enum {
	NS_PER_S = 1000000000,
	/* A packed PeerStatus at most: tags and lengths, the strings and
	 * bytes at their bounds, three uint64 and two uint32 varints, and
	 * its own tag and length inside Stats. */
	PEER_STATUS_PACKED_MAX = 2 + PEER_KEY_SHORT_LEN + 2 + 4 + 2 + PEER_HOST_MAX_LEN + 2 + 2 +
				 16 + 2 * 6 + 3 * 11 + 4,
};

/* The peers at their largest leave the rest of Stats (counters: about 200
 * bytes) 16 KiB of the datagram. */
_Static_assert(PEER_STATUS_MAX *PEER_STATUS_PACKED_MAX + 16 * 1024 <= WMSG_MAX_LEN,
	       "Stats.peer fits a worker message");
_Static_assert((int)DATAPLANE_PEERS_REPORTED <= (int)PEER_STATUS_MAX,
	       "the engine reports what fits");

struct peer_entry {
	Tscni__PeerStatus m;
	char key[PEER_KEY_SHORT_LEN + 1];
	char host[PEER_HOST_MAX_LEN + 1];
	uint8_t ipv4[4];
	uint8_t ip[16];
};

struct peer_status_buf {
	Tscni__PeerStatus **ptrs;
	struct peer_entry *e;
};

/* Upstream's ShortString: "[" + the first 5 characters of the key's
 * standard base64 + "]" (the first 6 bytes give the first 8 characters). */
static void key_short(const uint8_t key[static KEY_LEN], char out[static PEER_KEY_SHORT_LEN + 1])
{
	char b64[sodium_base64_ENCODED_LEN(6, sodium_base64_VARIANT_ORIGINAL)];

	sodium_bin2base64(b64, sizeof(b64), key, 6, sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, PEER_KEY_SHORT_LEN + 1, "[%.5s]", b64);
}

static bool host_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

/* The first label of n's MagicDNS name, else its Hostinfo.Hostname, cut to
 * PEER_HOST_MAX_LEN with every other byte made '-'; "" when that is not a
 * valid_name (it must start with a letter or digit). */
static void host_name(const struct netmap_node *n, char out[static PEER_HOST_MAX_LEN + 1])
{
	const char *s = n->name[0] && n->name[0] != '.' ? n->name : n->hostname;
	size_t len = s == n->name ? strcspn(s, ".") : strlen(s);

	if (len > PEER_HOST_MAX_LEN)
		len = PEER_HOST_MAX_LEN;
	for (size_t i = 0; i < len; i++)
		out[i] = host_char((unsigned char)s[i]) ? s[i] : '-';
	out[len] = '\0';
	if (!valid_name(out, PEER_HOST_MAX_LEN))
		out[0] = '\0';
}

/* What the netmap knows of the peer with `key`: its first IPv4 /32 and its
 * name. */
static void node_fill(struct peer_entry *e, const struct netmap *nm,
		      const uint8_t key[static KEY_LEN])
{
	const struct netmap_node *n = nm ? netmap_peer_by_key(nm, key) : NULL;

	if (!n)
		return;
	host_name(n, e->host);
	for (size_t i = 0; i < n->n_addresses; i++) {
		if (n->addresses[i].family == AF_INET && n->addresses[i].len == 32) {
			memcpy(e->ipv4, n->addresses[i].addr, 4);
			e->m.tailnet_ipv4 = (ProtobufCBinaryData){.len = 4, .data = e->ipv4};
			break;
		}
	}
}

/* A monotonic time as Unix seconds (0 stays 0: never). */
static uint64_t unix_of(uint64_t mono_ns, int64_t now_unix, uint64_t now_mono_ns)
{
	uint64_t age;

	if (!mono_ns || now_unix <= 0)
		return 0;
	age = mono_ns < now_mono_ns ? (now_mono_ns - mono_ns) / NS_PER_S : 0;
	return age < (uint64_t)now_unix ? (uint64_t)now_unix - age : 1;
}

static void path_fill(struct peer_entry *e, const struct dataplane_peer_info *v)
{
	switch (v->path) {
	case DATAPLANE_PATH_DIRECT:
		if (!disco_addr_is_valid(&v->direct) || !v->direct.port)
			return;
		e->m.path = TSCNI__PEER_PATH__PEER_PATH_DIRECT;
		if (disco_addr_is4(&v->direct)) {
			memcpy(e->ip, v->direct.ip + 12, 4);
			e->m.direct_ip.len = 4;
		} else {
			memcpy(e->ip, v->direct.ip, 16);
			e->m.direct_ip.len = 16;
		}
		e->m.direct_ip.data = e->ip;
		e->m.direct_port = v->direct.port;
		break;
	case DATAPLANE_PATH_DERP:
		if (!v->derp_region)
			return;
		e->m.path = TSCNI__PEER_PATH__PEER_PATH_DERP;
		e->m.derp_region = v->derp_region;
		break;
	default:
		break;
	}
}

struct peer_status_buf *peer_status_fill(Tscni__Stats *s, const struct dataplane_peer_info *v,
					 size_t n, size_t total, const struct netmap *nm,
					 int64_t now_unix, uint64_t now_mono_ns)
{
	struct peer_status_buf *b;

	if (n > PEER_STATUS_MAX)
		n = PEER_STATUS_MAX;
	s->n_peer = 0;
	s->peer = NULL;
	s->peers_left_off = (uint32_t)(total > n ? total - n : 0);
	if (!n)
		return NULL;
	b = xcalloc(1, sizeof(*b));
	b->e = xcalloc(n, sizeof(*b->e));
	b->ptrs = xcalloc(n, sizeof(*b->ptrs));
	for (size_t i = 0; i < n; i++) {
		struct peer_entry *e = &b->e[i];

		tscni__peer_status__init(&e->m);
		key_short(v[i].key, e->key);
		e->m.node_key = e->key;
		e->m.host_name = e->host;
		node_fill(e, nm, v[i].key);
		path_fill(e, &v[i]);
		e->m.last_handshake_unix = unix_of(v[i].last_handshake_ns, now_unix, now_mono_ns);
		e->m.rx_bytes = v[i].rx_bytes;
		e->m.tx_bytes = v[i].tx_bytes;
		b->ptrs[i] = &e->m;
	}
	s->peer = b->ptrs;
	s->n_peer = n;
	return b;
}

void peer_status_free(struct peer_status_buf *b)
{
	if (!b)
		return;
	free(b->e);
	free(b->ptrs);
	free(b);
}
