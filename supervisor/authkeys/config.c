/* The key source's options, checked together (authkeys.h). */
#include "authkeys.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "authkeys_internal.h"

enum authkeys_kind authkeys_config_kind(const struct authkeys_config *c)
{
	if (c->oauth_client_id)
		return AUTHKEYS_OAUTH;
	if (c->hs_url)
		return AUTHKEYS_HEADSCALE;
	return AUTHKEYS_STATIC;
}

/* A tag as the API takes it: "tag:" then [A-Za-z0-9-], at most
 * AUTHKEYS_TAG_MAX bytes. */
static bool valid_tag(const char *s, size_t n)
{
	if (n <= 4 || n > AUTHKEYS_TAG_MAX || strncmp(s, "tag:", 4) != 0)
		return false;
	for (size_t i = 4; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-'))
			return false;
	}
	return true;
}

int authkeys__parse_tags(const char *list, char tags[][AUTHKEYS_TAG_MAX + 1], size_t *n,
			 const char **why)
{
	const char *p = list;

	*n = 0;
	if (!list || !*list)
		return 0;
	for (;;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (!valid_tag(p, len)) {
			*why = "each tag is tag:NAME (letters, digits, '-'), at most 128 bytes";
			return -EINVAL;
		}
		if (*n == AUTHKEYS_TAGS_MAX) {
			*why = "at most 16 tags";
			return -EINVAL;
		}
		memcpy(tags[*n], p, len);
		tags[*n][len] = '\0';
		(*n)++;
		if (!e)
			return 0;
		p = e + 1;
	}
}

int authkeys__parse_expiry(const char *s, unsigned int *out)
{
	unsigned long v;
	char *end;

	*out = AUTHKEYS_EXPIRY_DEFAULT_S;
	if (!s)
		return 0;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || *s == '-' || v < 1 || v > AUTHKEYS_EXPIRY_MAX_S)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

int authkeys__parse_bool(const char *s, bool dflt, bool *out)
{
	*out = dflt;
	if (!s)
		return 0;
	if (strcmp(s, "true") == 0)
		*out = true;
	else if (strcmp(s, "false") == 0)
		*out = false;
	else
		return -EINVAL;
	return 0;
}

/* http(s)://host[:port] with no path, query or credentials. */
static bool valid_base_url(const char *u)
{
	const char *h;

	if (strncmp(u, "https://", 8) == 0)
		h = u + 8;
	else if (strncmp(u, "http://", 7) == 0)
		h = u + 7;
	else
		return false;
	if (!*h || strlen(u) > 256)
		return false;
	for (; *h; h++) {
		if (*h == '/' && h[1] == '\0')
			break;
		if (*h == '/' || *h == '?' || *h == '#' || *h == '@' || *h <= ' ' || *h > '~')
			return false;
	}
	return true;
}

static bool valid_tailnet(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' || ch == '@'))
			return false;
	}
	return true;
}

__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "tailscale-cni-supervisor: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -EINVAL;
}

int authkeys_config_check(const struct authkeys_config *c, bool static_key)
{
	char tags[AUTHKEYS_TAGS_MAX][AUTHKEYS_TAG_MAX + 1];
	bool oauth_any = c->oauth_client_id || c->oauth_secret_file || c->oauth_secret_env ||
			 c->api_url || c->tailnet;
	bool hs_any = c->hs_url || c->hs_key_file || c->hs_key_env || c->hs_user;
	int sources = (static_key ? 1 : 0) + (oauth_any ? 1 : 0) + (hs_any ? 1 : 0);
	const char *why = "";
	unsigned int expiry;
	size_t n;
	bool eph;

	if (sources > 1)
		return bad("%s", "one key source only: --auth-key-file/--auth-key-env, the "
				 "Tailscale API (--oauth-client-*), or Headscale "
				 "(--headscale-*)");
	if (!oauth_any && !hs_any) {
		if (c->key_tags || c->key_ephemeral || c->key_expiry)
			return bad("%s", "--key-tags, --key-ephemeral and --key-expiry need "
					 "--oauth-client-id or --headscale-api-url");
		return 0;
	}
	if (authkeys__parse_tags(c->key_tags, tags, &n, &why) < 0)
		return bad("--key-tags: %s", why);
	if (authkeys__parse_bool(c->key_ephemeral, true, &eph) < 0)
		return bad("--key-ephemeral %s: true or false", c->key_ephemeral);
	if (authkeys__parse_expiry(c->key_expiry, &expiry) < 0)
		return bad("--key-expiry %s: seconds, 1..7776000", c->key_expiry);
	if (oauth_any) {
		if (!c->oauth_client_id || !*c->oauth_client_id || strlen(c->oauth_client_id) > 256)
			return bad("%s", "the Tailscale API needs --oauth-client-id ID");
		if (!c->oauth_secret_file == !c->oauth_secret_env)
			return bad("%s",
				   "--oauth-client-id needs one of "
				   "--oauth-client-secret-file and --oauth-client-secret-env");
		if (c->api_url && !valid_base_url(c->api_url))
			return bad("--api-url %s: http(s)://host[:port], nothing after",
				   c->api_url);
		if (c->tailnet && !valid_tailnet(c->tailnet))
			return bad("--tailnet %s: \"-\" or the tailnet's name", c->tailnet);
		if (n == 0)
			return bad("%s", "the Tailscale API mints tagged keys only: --key-tags "
					 "tag:NAME[,tag:NAME...] (tags the OAuth client owns)");
		return 0;
	}
	if (!valid_base_url(c->hs_url))
		return bad("--headscale-api-url %s: http(s)://host[:port], nothing after",
			   c->hs_url);
	if (!c->hs_key_file == !c->hs_key_env)
		return bad("%s", "--headscale-api-url needs one of --headscale-api-key-file and "
				 "--headscale-api-key-env");
	if (!c->hs_user || !*c->hs_user || strlen(c->hs_user) > 256)
		return bad("%s", "--headscale-api-url needs --headscale-user NAME");
	return 0;
}

void authkeys_config_secret(const struct authkeys_config *c, const char **flag_file,
			    const char **file, const char **flag_env, const char **env)
{
	if (authkeys_config_kind(c) == AUTHKEYS_HEADSCALE) {
		*flag_file = "--headscale-api-key-file";
		*file = c->hs_key_file;
		*flag_env = "--headscale-api-key-env";
		*env = c->hs_key_env;
	} else {
		*flag_file = "--oauth-client-secret-file";
		*file = c->oauth_secret_file;
		*flag_env = "--oauth-client-secret-env";
		*env = c->oauth_secret_env;
	}
}

/* jansson's allocations carry their size in front, so a free wipes them:
 * answers parsed here hold tokens and keys. */
static void *wipe_malloc(size_t n)
{
	size_t *p = malloc(n + sizeof(size_t) * 2);

	if (!p)
		return NULL;
	p[0] = n;
	return p + 2; /* 16-byte aligned like malloc's */
}

static void wipe_free(void *ptr)
{
	size_t *p = ptr;

	if (!p)
		return;
	p -= 2;
	sodium_memzero(p + 2, p[0]);
	free(p);
}

void authkeys_json_wipe_init(void)
{
	json_set_alloc_funcs(wipe_malloc, wipe_free);
}
