/* tailcfg.DNSConfig: resolvers, routes, domains and extra records. */
#include "mapjson_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

/* [{"Addr": "..."}] into Addr strings. */
static int resolvers_from(const json_t *arr, char ***out, size_t *n, const char *bad,
			  const char **why)
{
	size_t cnt = json_array_size(arr);
	char **v;

	*out = NULL;
	*n = 0;
	if (!cnt)
		return 0;
	v = xcalloc(cnt, sizeof(*v));
	for (size_t i = 0; i < cnt; i++) {
		const json_t *e = json_array_get(arr, i);
		int ret;

		if (!json_is_object(e)) {
			mapjson__free_strv(v, i);
			*why = bad;
			return -EBADMSG;
		}
		ret = mapjson__get_string(e, "Addr", &v[i], bad, why);
		if (ret < 0) {
			mapjson__free_strv(v, i);
			return ret;
		}
	}
	*out = v;
	*n = cnt;
	return 0;
}

static int get_resolvers(const json_t *o, const char *field, char ***out, size_t *n,
			 const char *bad, const char **why)
{
	const json_t *arr;
	int ret;

	*out = NULL;
	*n = 0;
	ret = mapjson__get_array(o, field, NETMAP_MAX_DNS_ITEMS, &arr, bad, why);
	if (ret < 0 || !arr)
		return ret;
	return resolvers_from(arr, out, n, bad, why);
}

int mapjson__parse_dns(const json_t *o, struct netmap_dns **out, const char **why)
{
	struct netmap_dns *d = netmap_dns_new();
	const json_t *routes, *records, *v;
	const char *k;
	int ret;

	*out = NULL;
	if (!json_is_object(o)) {
		*why = "DNSConfig is not an object";
		ret = -EBADMSG;
		goto err;
	}
	if ((ret = get_resolvers(o, "Resolvers", &d->resolvers, &d->n_resolvers,
				 "bad DNSConfig Resolvers", why)) < 0 ||
	    (ret = get_resolvers(o, "FallbackResolvers", &d->fallback_resolvers,
				 &d->n_fallback_resolvers, "bad DNSConfig FallbackResolvers",
				 why)) < 0 ||
	    (ret = mapjson__get_strings(o, "Domains", NETMAP_MAX_DNS_ITEMS, &d->domains,
					&d->n_domains, "bad DNSConfig Domains", why)) < 0 ||
	    (ret = mapjson__get_strings(o, "CertDomains", NETMAP_MAX_DNS_ITEMS, &d->cert_domains,
					&d->n_cert_domains, "bad DNSConfig CertDomains", why)) <
		    0 ||
	    (ret = mapjson__get_bool(o, "Proxied", &d->proxied, "bad DNSConfig Proxied", why)) <
		    0 ||
	    (ret = mapjson__get_object(o, "Routes", NETMAP_MAX_DNS_ITEMS, &routes,
				       "bad DNSConfig Routes", why)) < 0 ||
	    (ret = mapjson__get_array(o, "ExtraRecords", NETMAP_MAX_DNS_ITEMS, &records,
				      "bad DNSConfig ExtraRecords", why)) < 0)
		goto err;
	if (json_object_size(routes))
		d->routes = xcalloc(json_object_size(routes), sizeof(*d->routes));
	json_object_foreach((json_t *)routes, k, v)
	{
		struct netmap_dns_route *r = &d->routes[d->n_routes];

		if (strlen(k) > NETMAP_MAX_STR || (!json_is_array(v) && !json_is_null(v)) ||
		    json_array_size(v) > NETMAP_MAX_DNS_ITEMS) {
			*why = "bad DNSConfig route";
			ret = -EBADMSG;
			goto err;
		}
		r->suffix = xstrdup(k);
		d->n_routes++;
		ret = resolvers_from(v, &r->resolvers, &r->n_resolvers, "bad DNSConfig route", why);
		if (ret < 0)
			goto err;
	}
	if (json_array_size(records))
		d->extra_records = xcalloc(json_array_size(records), sizeof(*d->extra_records));
	for (size_t i = 0; i < json_array_size(records); i++) {
		struct netmap_dns_record *r = &d->extra_records[i];
		const json_t *e = json_array_get(records, i);

		d->n_extra_records = i + 1;
		if (!json_is_object(e)) {
			*why = "bad DNSConfig ExtraRecords entry";
			ret = -EBADMSG;
			goto err;
		}
		if ((ret = mapjson__get_string(e, "Name", &r->name, "bad DNSConfig record Name",
					       why)) < 0 ||
		    (ret = mapjson__get_string(e, "Type", &r->type, "bad DNSConfig record Type",
					       why)) < 0 ||
		    (ret = mapjson__get_string(e, "Value", &r->value, "bad DNSConfig record Value",
					       why)) < 0)
			goto err;
	}
	*out = d;
	return 0;
err:
	netmap_dns_put(d);
	return ret;
}
