/* URLs: control's ("http(s)://host[:port]"), the proxies' (from the
 * environment, credentials allowed), NO_PROXY, the ports the ts2021 dial
 * tries, and the path of a PingRequest URL. */
#include "client_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <strings.h>

bool client__is_literal(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

/* Loopback, private (RFC 1918, ULA, link-local) or "localhost": upstream
 * skips the 443 attempt for http:// URLs on such hosts. */
static bool is_private_host(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (!strcasecmp(host, "localhost"))
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1) {
		uint32_t a = ntohl(a4.s_addr);

		return (a >> 24) == 127 || (a >> 24) == 10 || (a >> 20) == (172 << 4 | 1) ||
		       (a >> 16) == (192 << 8 | 168) || (a >> 16) == (169 << 8 | 254);
	}
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) || IN6_IS_ADDR_LINKLOCAL(&a6) ||
		       (a6.s6_addr[0] & 0xfe) == 0xfc;
	return false;
}

static int parse_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (len == 0 || len > 5)
		return -EINVAL;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -EINVAL;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v == 0 || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

/* "scheme://host[:port][/]" with host a name, an IPv4 address or [IPv6].
 * *port is 0 when absent. Credentials ("user:pass@") are skipped. */
int client__parse_url(const char *url, bool *https, char host[static HOST_MAX], uint16_t *port,
		      bool allow_userinfo, bool allow_no_scheme)
{
	const char *p = url, *end, *at, *h, *he;
	size_t hl;

	*port = 0;
	if (!strncasecmp(p, "https://", 8)) {
		*https = true;
		p += 8;
	} else if (!strncasecmp(p, "http://", 7)) {
		*https = false;
		p += 7;
	} else if (allow_no_scheme && !strstr(p, "://")) {
		*https = false;
	} else {
		return -EINVAL;
	}
	end = p + strcspn(p, "/?#");
	if (*end && strcmp(end, "/"))
		return -EINVAL; /* a path */
	at = memchr(p, '@', (size_t)(end - p));
	if (at) {
		if (!allow_userinfo)
			return -EINVAL;
		p = at + 1;
	}
	if (*p == '[') {
		h = p + 1;
		he = memchr(h, ']', (size_t)(end - h));
		if (!he)
			return -EINVAL;
		p = he + 1;
	} else {
		h = p;
		he = memchr(p, ':', (size_t)(end - p));
		if (!he)
			he = end;
		p = he;
	}
	hl = (size_t)(he - h);
	if (hl == 0 || hl >= HOST_MAX)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:") != hl)
		return -EINVAL;
	if (p < end) {
		if (*p != ':' || parse_port(p + 1, (size_t)(end - p - 1), port) < 0)
			return -EINVAL;
	}
	return 0;
}

/* NO_PROXY: comma or space separated; "*" matches all; an entry matches the
 * host itself or (with or without a leading dot) any name below it. */
static bool no_proxy_match(const char *no_proxy, const char *host)
{
	const char *p = no_proxy;
	size_t hl = strlen(host);

	while (p && *p) {
		size_t l;
		const char *e;

		p += strspn(p, ", ");
		l = strcspn(p, ", ");
		e = p;
		if (l == 0)
			break;
		if (l == 1 && *e == '*')
			return true;
		if (*e == '.') {
			e++;
			l--;
		}
		if (l == hl && !strncasecmp(e, host, l))
			return true;
		if (hl > l && host[hl - l - 1] == '.' && !strncasecmp(host + hl - l, e, l))
			return true;
		p += (e - p) + l;
	}
	return false;
}

bool client__proxy_for(const struct client *c, bool tls)
{
	const char *p = tls ? c->srv.https_proxy : c->srv.http_proxy;

	return p && p[0] && !(c->srv.no_proxy && no_proxy_match(c->srv.no_proxy, c->srv.host));
}

void client_config_proxy_from_env(struct client_config *cfg)
{
	const char *v;

	v = getenv("HTTPS_PROXY");
	cfg->https_proxy = v && *v ? v : getenv("https_proxy");
	v = getenv("HTTP_PROXY");
	cfg->http_proxy = v && *v ? v : getenv("http_proxy");
	v = getenv("NO_PROXY");
	cfg->no_proxy = v && *v ? v : getenv("no_proxy");
}

/* "https://host/path?q" -> "/path?q"; a bare path stays. NULL if none. */
const char *client__url_path(const char *url)
{
	const char *p = strstr(url, "://");

	if (!p)
		return url[0] == '/' ? url : NULL;
	p = strchr(p + 3, '/');
	return p;
}

void client__server_ports(struct client_server *srv, uint16_t port, const struct client_config *cfg)
{
	/* Port rules (docs/tailscale-protocol.md §2.2). */
	if (srv->https && !port) {
		srv->plain_port = 80;
		srv->tls_port = 443;
	} else if (srv->https) {
		srv->tls_port = port;
	} else {
		srv->plain_port = srv->url_port;
		srv->tls_port = is_private_host(srv->host) ? 0 : 443;
	}
	if (cfg->http_port)
		srv->plain_port = cfg->http_port;
	if (cfg->https_port)
		srv->tls_port = cfg->https_port;
	if (!cfg->ca_pem)
		srv->tls_port = 0;
}
