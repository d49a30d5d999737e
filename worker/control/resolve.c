/* The names the client connects to: control's host and the proxy's. The
 * caller resolves them (client_resolve_fn: the worker asks the supervisor);
 * answers are cached for CLIENT_RESOLVE_TTL_MS and a stale answer is kept
 * while the resolver fails, so reconnects work while the supervisor is away.
 * curl gets the addresses through CURLOPT_RESOLVE and never resolves. */
#include "client_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>

#include "log.h"

/* Whether a name must be resolved here: the control host unless every
 * connection goes through a proxy (which resolves it), the proxy host when
 * one is used. */
static bool slot_needed(const struct client *c, size_t slot)
{
	if (slot == SLOT_PROXY)
		return c->names.cache[SLOT_PROXY].host[0] != '\0';
	return !(c->names.use_proxy[0] && c->names.use_proxy[1]);
}

void client__resolve_start(struct client *c)
{
	struct client_resolve *asked[N_SLOTS];
	size_t i;

	/* One proxy name at most: the https one if TLS is used, else http. */
	c->names.use_proxy[0] = client__proxy_for(c, false);
	c->names.use_proxy[1] = client__proxy_for(c, true);
	c->names.cache[SLOT_PROXY].host[0] = '\0';
	if (c->names.use_proxy[0] || c->names.use_proxy[1]) {
		const char *p = c->names.use_proxy[1] ? c->srv.https_proxy : c->srv.http_proxy;
		bool https = false;
		struct rcache *rc = &c->names.cache[SLOT_PROXY];
		char host[HOST_MAX];
		uint16_t port = 0;

		if (client__parse_url(p, &https, host, &port, true, true) == 0) {
			if (strcmp(rc->host, host)) {
				*rc = (struct rcache){0};
				strscpy(rc->host, host, sizeof(rc->host));
			}
			rc->port = port ? port : 1080;
			rc->literal = client__is_literal(host);
		}
		if (c->names.use_proxy[0] && c->names.use_proxy[1] &&
		    strcmp(c->srv.http_proxy, c->srv.https_proxy))
			log_warn("HTTP_PROXY and HTTPS_PROXY differ: both ts2021 attempts use "
				 "%s's host for name resolution",
				 c->names.use_proxy[1] ? "HTTPS_PROXY" : "HTTP_PROXY");
	}
	/* Every request is registered before the first is asked, so that an
	 * answer given from inside the callback cannot start the next step
	 * while another name is still missing. */
	for (i = 0; i < N_SLOTS; i++) {
		struct rcache *rc = &c->names.cache[i];

		asked[i] = NULL;
		if (!slot_needed(c, i) || rc->literal || c->names.resolving[i])
			continue;
		if (rc->n && now_ms() - rc->fetched_ms < CLIENT_RESOLVE_TTL_MS)
			continue;
		if (!c->cfg.resolve) {
			rc->last_err = -ENOSYS;
			continue;
		}
		asked[i] = xcalloc(1, sizeof(*asked[i]));
		asked[i]->c = c;
		asked[i]->slot = (int)i;
		c->names.resolving[i] = asked[i];
	}
	for (i = 0; i < N_SLOTS; i++)
		if (asked[i])
			c->cfg.resolve(c->cfg.resolve_arg, c->names.cache[i].host, asked[i]);
}

int client__resolve_check(struct client *c)
{
	size_t i;

	for (i = 0; i < N_SLOTS; i++) {
		struct rcache *rc = &c->names.cache[i];
		int err = rc->last_err ? rc->last_err : -EHOSTUNREACH;

		if (!slot_needed(c, i) || rc->literal || rc->n)
			continue;
		client__fail(c, false, err, "cannot resolve %s: %s", rc->host, strerror(-err));
		return err;
	}
	return 0;
}

/* Adds "host:port:addr,addr" so that curl never resolves host itself. */
struct curl_slist *client__resolve_entry(const struct rcache *rc)
{
	char line[HOST_MAX + 16 + CLIENT_RESOLVE_MAX_ADDRS * (INET6_ADDRSTRLEN + 3)];
	size_t i, off;
	struct curl_slist *l;

	if (rc->literal || rc->n == 0)
		return NULL;
	off = (size_t)snprintf(line, sizeof(line), "%s:%u:", rc->host, rc->port);
	for (i = 0; i < rc->n && off < sizeof(line); i++) {
		char a[INET6_ADDRSTRLEN];
		const struct sockaddr_storage *ss = &rc->addrs[i];

		if (ss->ss_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, a,
				  sizeof(a));
		else
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, a,
				  sizeof(a));
		off += (size_t)snprintf(line + off, sizeof(line) - off, "%s%s%s%s", i ? "," : "",
					ss->ss_family == AF_INET6 ? "[" : "", a,
					ss->ss_family == AF_INET6 ? "]" : "");
	}
	l = curl_slist_append(NULL, line);
	if (!l)
		abort();
	return l;
}

void client_resolve_done(struct client_resolve *req, int status,
			 const struct sockaddr_storage *addrs, size_t n)
{
	struct client *c = req->c;
	struct rcache *rc;
	size_t i, k = 0;

	if (!c) {
		free(req);
		return;
	}
	rc = &c->names.cache[req->slot];
	c->names.resolving[req->slot] = NULL;
	free(req);
	if (status == 0) {
		for (i = 0; i < n && k < CLIENT_RESOLVE_MAX_ADDRS; i++) {
			if (addrs[i].ss_family != AF_INET && addrs[i].ss_family != AF_INET6)
				continue;
			rc->addrs[k++] = addrs[i];
		}
	}
	if (k) {
		rc->n = k;
		rc->fetched_ms = now_ms();
		rc->last_err = 0;
	} else {
		/* Keep serving a stale answer: the supervisor may be away. */
		rc->last_err = status < 0 ? status : -EHOSTUNREACH;
		if (rc->n)
			log_warn_r(rc->last_err, "resolve %s failed; using the cached answer",
				   rc->host);
	}
	client__settle(c);
}
