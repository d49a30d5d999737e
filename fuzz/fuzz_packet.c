/* Fuzz target for the IPv4/IPv6 parser the packet filter uses (options,
 * extension header chains, fragments, truncation) and for the filter itself
 * on a fixed rule set: each input is one packet as the TUN or WireGuard
 * would hand it over, run outbound (recording a flow) and then inbound.
 * The parser's own invariants are checked on every input. Everything is
 * built and freed per input. */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "worker/dataplane/filter.h"
#include "worker/dataplane/packet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char RULES[] =
	"[{\"SrcIPs\":[\"100.64.0.0/10\",\"fd7a:115c:a1e0::/48\"],\"DstPorts\":[{\"IP\":\"*\","
	"\"Ports\":{\"First\":22,\"Last\":443}}]},"
	"{\"SrcIPs\":[\"*\"],\"DstPorts\":[{\"IP\":\"100.64.0.1\",\"Ports\":{\"First\":53,"
	"\"Last\":53}}],\"IPProto\":[17,132]},"
	"{\"SrcIPs\":[\"10.0.0.1-10.0.0.9\",\"cap:c\"],\"DstPorts\":[{\"IP\":\"fd7a:115c:a1e0::1\","
	"\"Ports\":{\"First\":0,\"Last\":65535}}],\"IPProto\":[47,6,58]}]";

static void check_packet(const struct packet *p, int ret, const char *why, size_t size)
{
	char text[160];

	if (ret < 0 && (!why || ret != -EBADMSG || p->proto != PACKET_PROTO_UNKNOWN))
		abort();
	if (ret == 0 && (p->len > size || p->l4_off > p->len || p->payload_off > p->len ||
			 p->payload_off < p->l4_off || (p->version != 4 && p->version != 6)))
		abort();
	if (p->buf_len != size || p->n_ext > PACKET_MAX_EXT_HDRS)
		abort();
	packet_format(p, text, sizeof(text));
	if (strlen(text) >= sizeof(text))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct ip_prefix local[3] = {
		{.family = AF_INET, .len = 32, .addr = {100, 64, 0, 1}},
		{.family = AF_INET6,
		 .len = 128,
		 .addr = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0, [15] = 1}},
		{.family = AF_INET, .len = 24, .addr = {10, 98, 2}},
	};
	const struct filter_cap_holder caps[1] = {
		{.cap = "c",
		 .addr = {.family = AF_INET6, .len = 128, .addr = {0xfd, 0x7a, [15] = 7}}},
	};
	struct filter_rules *rules = NULL;
	struct filter_state *st = NULL;
	struct filter *f = NULL;
	enum filter_reason reason;
	const char *warn, *why = NULL;
	struct packet p;
	json_t *j;
	uint8_t *copy;
	int ret;

	/* An exact-size copy: the sanitizer sees every read past the end. */
	copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	ret = packet_parse(&p, copy, size, &why);
	check_packet(&p, ret, why, size);

	j = json_loads(RULES, 0, NULL);
	if (!j || filter_rules_from_json(j, &rules, &warn, &why) != 0 || warn)
		abort();
	st = filter_state_new();
	if (filter_new(&(struct filter_config){.rules = rules,
					       .local = local,
					       .n_local = 3,
					       .caps = caps,
					       .n_caps = 1},
		       st, &f, &why) != 0)
		abort();
	if (filter_run_in(f, &p, &reason) == FILTER_ACCEPT && reason != FILTER_REASON_NONE)
		abort();
	if (filter_run_out(f, &p, &reason) == FILTER_DROP && reason == FILTER_REASON_NONE)
		abort();
	filter_run_in(f, &p, &reason);

	filter_free(f);
	filter_state_free(st);
	filter_rules_free(rules);
	json_decref(j);
	free(copy);
	return 0;
}
