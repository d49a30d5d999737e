/* peer_sizes: what one peer costs the worker in its main per-peer structs,
 * as compiled from the same headers as the worker (sizeof, nothing
 * measured at run time). One line per struct, "name bytes what", for
 * tests/bench/routes.sh to print beside the worker's PSS. Parts allocated
 * only while in use are printed apart: an idle peer of a large tailnet
 * has none of them. */
#include <stdio.h>

#include "dataplane_internal.h"
#include "netmap.h"
#include "path.h"
#include "wg_device_internal.h"

int main(void)
{
	static const struct {
		const char *name;
		size_t size;
		const char *what;
	} rows[] = {
		{"wg_peer", sizeof(struct wg_peer), "every peer (WireGuard)"},
		{"wg_keypairs", sizeof(struct wg_keypairs), "while it has a session"},
		{"wg_staging_ring", WG_DEVICE_STAGED_PER_PEER * sizeof(struct wg_staged *),
		 "while packets wait for a session"},
		{"wg_endpoint", sizeof(struct sockaddr_storage), "per netmap endpoint"},
		{"dp_magic_peer", sizeof(struct dp_magic_peer),
		 "every peer with a disco key (struct path inside)"},
		{"path", sizeof(struct path), "inside dp_magic_peer"},
		{"path_endpoint_chunk", PATH_EP_CHUNK * sizeof(struct path_endpoint),
		 "per 4 endpoints in use"},
		{"path_ping_chunk", PATH_PING_CHUNK * sizeof(struct path_ping),
		 "per 8 pings in flight"},
		{"path_confirmed_chunk", PATH_CONFIRMED_CHUNK * sizeof(struct path_confirmed),
		 "per 4 confirmed sources"},
		{"netmap_node", sizeof(struct netmap_node),
		 "every peer (netmap; plus its strings)"},
		{"wg_peer_config", sizeof(struct wg_peer_config), "every peer (configuration)"},
		{"dataplane_disco_peer", sizeof(struct dataplane_disco_peer),
		 "every peer (configuration)"},
		{"dataplane_peer_info", sizeof(struct dataplane_peer_info),
		 "every peer (status report)"},
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		printf("%s %zu %s\n", rows[i].name, rows[i].size, rows[i].what);
	return 0;
}
