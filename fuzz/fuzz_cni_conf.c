/* Fuzz target: CNI stdin as the plugin reads it. The bytes go through the
 * config parser for ADD, CHECK and GC, then prevResult's checks, the search
 * for our entries, and the result build and dump for every version. No I/O. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "conf.h"
#include "error.h"
#include "log.h"
#include "result.h"
#include "validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void build_all(const struct conf *c)
{
	struct ip_prefix addrs[2], routes[2];
	struct result_ours o = {
		.ifname = c->interface_name,
		.sandbox = "/var/run/netns/fuzz",
		.mtu = 1280,
		.addrs = addrs,
		.n_addrs = 2,
		.routes = routes,
		.n_routes = 2,
		.report_ips = c->report_ips,
	};

	addrs[0] = routes[0] = ip_tailscale_v4;
	addrs[0].len = 32;
	addrs[1] = routes[1] = ip_tailscale_v6;
	addrs[1].len = 128;
	for (int v = 0; v < CNI_V_COUNT; v++) {
		json_t *r = result_build(c->prev_result, (enum cni_version)v, &o);
		size_t len;
		char *text = result_dump(r, &len);

		free(text);
		json_decref(r);
		r = result_build(c->prev_result, (enum cni_version)v, NULL);
		text = result_dump(r, &len);
		free(text);
		json_decref(r);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum cni_verb verbs[] = {CNI_VERB_ADD, CNI_VERB_CHECK, CNI_VERB_GC};
	struct ip_prefix found_addrs[PREFIX_MAX];
	struct cni_error err;
	struct conf c;

	if (size > CONF_MAX_STDIN)
		return 0;
	log_set_level(LOG_ERR);
	(void)conf_peek_version((const char *)data, size);
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		const char *ifname = verbs[i] == CNI_VERB_GC ? NULL : "eth0";
		size_t n, len;
		bool found;
		char *text;

		if (conf_parse((const char *)data, size, verbs[i], ifname, &c, &err) < 0) {
			text = error_format(&err, c.cni_version, &len);
			free(text);
			continue;
		}
		(void)conf_pod_selected(&c);
		if (c.prev_result) {
			if (result_check_prev(c.prev_result, "eth0", c.interface_name,
					      c.allow_overlap, &err) == 0) {
				(void)result_clashes(c.prev_result, found_addrs, 0);
				build_all(&c);
			}
			(void)result_find_ours(c.prev_result, c.interface_name,
					       "/var/run/netns/fuzz", &found, found_addrs,
					       PREFIX_MAX, &n, &err);
		}
		conf_destroy(&c);
	}
	return 0;
}
