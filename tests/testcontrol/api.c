/* The API listener (--api, plain HTTP/1.1, one request per connection):
 *
 *   /api/v2  the Tailscale API subset a supervisor uses
 *            (docs/tailscale-protocol.md §10): the OAuth client-credentials
 *            token, auth keys, devices. Errors are {"message": "…"}; the token
 *            endpoint answers RFC 6749 {"error": "…", "error_description"}.
 *   /api/v1  a Headscale API fake: pre-auth keys and nodes, in Headscale's
 *            protojson field names; Bearer API keys; errors in Huma's
 *            {"title", "status", "detail"}.
 *
 * OAuth clients, Headscale API keys and users are made through the admin API
 * (api_admin), as are the failure switches. Keys minted here are ordinary
 * pre-auth keys of the control plane (struct tc_key); nodes are its nodes.
 * Every body is bounded (TC_API_BODY_MAX) and every table a client can grow
 * is capped. Clients, tokens, API keys and users live in memory only. */
#include "tc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "keys.h"
#include "log.h"
#include "mem.h"

enum api_limits {
	API_CLIENTS_MAX = 64,
	API_TOKENS_MAX = 1024,
	API_HSKEYS_MAX = 64,
	API_USERS_MAX = 64,
	API_LIST_MAX = 16,				   /* scopes or tags of one client or key */
	API_NAME_MAX = 64,				   /* bytes of a tag, scope or user name */
	API_TAGS_TEXT = API_LIST_MAX * (API_NAME_MAX + 1), /* a key's tags, spaced */
	API_DESC_MAX = 50,				   /* bytes of a key's description */
	API_FORM_FIELDS_MAX = 16,			   /* fields of the token request's form */
	API_FIELD_MAX = 256,				   /* bytes of one decoded form value */
	API_EXPIRY_DEFAULT = 90 * 86400,		   /* expirySeconds 0 or absent */
	API_EXPIRY_MAX = 90 * 86400,
	API_TOKEN_LIFETIME = 3600, /* upstream's: one hour */
	API_TOKEN_LIFETIME_MAX = 86400,
	API_SLOW_MS = 2000,
	API_DELAY_MAX_MS = 60 * 1000,
	API_RETRY_AFTER_MAX = 3600,
};

enum api_fault {
	FAULT_NONE,
	FAULT_500,
	FAULT_429,
	FAULT_SLOW,
	FAULT_MALFORMED,
	FAULT_EXPIRED,
	FAULT_KEYS_EXPIRED,
};

static const char *const fault_names[] = {"none",      "500",		"429",	       "slow",
					  "malformed", "expired-token", "expired-keys"};

struct api_client {
	char id[24];
	char secret[80];
	json_t *scopes, *tags; /* arrays of strings, owned */
	int lifetime;	       /* seconds a token lasts */
};

struct api_token {
	char token[64];
	long long expires; /* unix seconds; 0 = free slot */
	int client;	   /* index into clients */
	json_t *scopes;	   /* owned */
};

struct api_user {
	long long id;
	char name[API_NAME_MAX];
	long long created;
};

struct tc_api {
	struct api_client clients[API_CLIENTS_MAX];
	int nclients;
	struct api_token tokens[API_TOKENS_MAX];
	char hskeys[API_HSKEYS_MAX][64];
	int nhskeys;
	struct api_user users[API_USERS_MAX];
	int nusers;
	struct {
		enum api_fault mode;
		long long count;	     /* requests left, 0 = no count */
		unsigned long long until_ms; /* monotonic, 0 = no end time */
		int retry_after;	     /* seconds, for 429 */
		int delay_ms;		     /* for slow */
	} fault;
};

/* What one request has been given by the fault switch. */
struct api_ctx {
	struct tc_conn *c;
	struct tc_server *s;
	struct tc_api *a;
	bool malformed, expired;
	bool keys_expired; /* a key minted now is born expired */
};

struct tc_api *api_new(void)
{
	return xcalloc(1, sizeof(struct tc_api));
}

void api_free(struct tc_api *a)
{
	if (!a)
		return;
	for (int i = 0; i < a->nclients; i++) {
		json_decref(a->clients[i].scopes);
		json_decref(a->clients[i].tags);
	}
	for (int i = 0; i < API_TOKENS_MAX; i++)
		json_decref(a->tokens[i].scopes);
	sodium_memzero(a, sizeof(*a));
	free(a);
}

size_t api_count_keys(const struct tc_server *s)
{
	size_t n = 0;

	for (const struct tc_key *k = s->keys; k; k = k->next)
		n++;
	return n;
}

/* ---- replies ---- */

static void send_json(struct api_ctx *x, int status, json_t *o, const char *headers)
{
	char *text = json_dumps(o, JSON_COMPACT);
	size_t n = strlen(text);

	/* The malformed switch: a success cut in half is not JSON. */
	if (x->malformed && status < 300) {
		n = n / 2;
		log_info("api fault malformed: answer cut to %zu bytes", n);
	}
	net_http_reply_ex(x->c, status, "application/json", headers, text, n);
	sodium_memzero(text, strlen(text)); /* it may hold a key or a token */
	free(text);
	json_decref(o);
}

/* Tailscale's error form. */
static void ts_fail(struct api_ctx *x, int status, const char *message)
{
	send_json(x, status, json_pack("{s:s}", "message", message), NULL);
}

/* Headscale's (Huma's RFC 9457) error form. */
static void hs_fail(struct api_ctx *x, int status, const char *detail)
{
	static const char *const titles[][2] = {
		{"400", "Bad Request"},	       {"401", "Unauthorized"}, {"404", "Not Found"},
		{"405", "Method Not Allowed"}, {"409", "Conflict"},
	};
	const char *title = "Error";
	char st[8];

	snprintf(st, sizeof(st), "%d", status);
	for (size_t i = 0; i < sizeof(titles) / sizeof(titles[0]); i++)
		if (strcmp(titles[i][0], st) == 0)
			title = titles[i][1];
	send_json(x, status,
		  json_pack("{s:s, s:i, s:s}", "title", title, "status", status, "detail", detail),
		  NULL);
}

/* RFC 6749 §5.2. */
static void oauth_fail(struct api_ctx *x, int status, const char *error, const char *desc)
{
	send_json(x, status, json_pack("{s:s, s:s}", "error", error, "error_description", desc),
		  NULL);
}

static void random_hex(char *out, size_t bytes)
{
	uint8_t rnd[32];

	randombytes_buf(rnd, bytes);
	sodium_bin2hex(out, bytes * 2 + 1, rnd, bytes);
	sodium_memzero(rnd, sizeof(rnd));
}

static json_t *time_json(long long t)
{
	char when[40];

	if (!t)
		return json_string("0001-01-01T00:00:00Z"); /* Go's zero time */
	tc_time_format(when, t);
	return json_string(when);
}

/* Parses RFC 3339 with seconds precision, "Z" or a numeric offset, and
 * optional fractional seconds. 0 with *out (0 for a year before 1970), or
 * -EINVAL. */
static int parse_time(const char *t, long long *out)
{
	struct tm tm = {0};
	int y, mo, d, h, mi, sec, used = 0, oh, om;
	const char *p;

	*out = 0;
	if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &used) != 6 ||
	    used != 19 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	p = t + used;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	if (strcmp(p, "Z") == 0) {
		*out = y < 1970 ? 0 : (long long)timegm(&tm);
		return 0;
	}
	if ((p[0] == '+' || p[0] == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &used) == 2 &&
	    used == 5 && !p[6]) {
		long long off = (oh * 60LL + om) * 60;

		*out = y < 1970 ? 0 : (long long)timegm(&tm) - (p[0] == '+' ? off : -off);
		return 0;
	}
	return -EINVAL;
}

/* "tag:" and 1 to 59 of [A-Za-z0-9-]. */
static bool tag_valid(const char *t)
{
	size_t n = t ? strlen(t) : 0;

	if (n < 5 || n >= API_NAME_MAX || strncmp(t, "tag:", 4) != 0)
		return false;
	for (size_t i = 4; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
		      (t[i] >= '0' && t[i] <= '9') || t[i] == '-'))
			return false;
	return true;
}

/* An array of at most API_LIST_MAX strings each passing ok(). */
static bool list_valid(json_t *v, bool (*ok)(const char *))
{
	json_t *e;
	size_t i;

	if (!json_is_array(v) || json_array_size(v) > API_LIST_MAX)
		return false;
	json_array_foreach(v, i, e)
	{
		if (!json_is_string(e) || !ok(json_string_value(e)))
			return false;
	}
	return true;
}

static bool list_has(json_t *list, const char *s)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e)
	{
		if (strcmp(json_string_value(e), s) == 0)
			return true;
	}
	return false;
}

/* ---- faults ---- */

/* Takes this request's share of the fault switch. 1 when the request was
 * answered (500, 429), else 0 with x's flags set. */
static int fault_take(struct api_ctx *x, bool headscale)
{
	struct tc_api *a = x->a;
	enum api_fault mode = a->fault.mode;
	char hdr[64];

	if (mode == FAULT_NONE)
		return 0;
	if (a->fault.until_ms && now_ms() >= a->fault.until_ms) {
		a->fault.mode = FAULT_NONE;
		log_info("api fault %s over (duration)", fault_names[mode]);
		return 0;
	}
	if (a->fault.count && --a->fault.count == 0) {
		a->fault.mode = FAULT_NONE;
		log_info("api fault %s over (count) after this request", fault_names[mode]);
	}
	switch (mode) {
	case FAULT_500:
		if (headscale)
			hs_fail(x, 500, "internal error (testcontrol fault)");
		else
			ts_fail(x, 500, "internal error (testcontrol fault)");
		return 1;
	case FAULT_429:
		snprintf(hdr, sizeof(hdr), "Retry-After: %d\r\n", a->fault.retry_after);
		send_json(x, 429,
			  json_pack("{s:s}", "message", "rate limit exceeded (testcontrol fault)"),
			  hdr);
		return 1;
	case FAULT_SLOW:
		x->c->hold_until_ms = now_ms() + (unsigned long long)a->fault.delay_ms;
		return 0;
	case FAULT_MALFORMED:
		x->malformed = true;
		return 0;
	case FAULT_EXPIRED:
		x->expired = true;
		return 0;
	case FAULT_KEYS_EXPIRED:
		x->keys_expired = true;
		return 0;
	default:
		return 0;
	}
}

/* POST /api-faults {"mode", "count", "duration", "retry_after", "delay_ms"}.
 * 0, or -EINVAL after answering 400. */
static int set_faults(struct api_ctx *x, json_t *req)
{
	struct tc_api *a = x->a;
	const char *mode = json_string_value(json_object_get(req, "mode"));
	json_t *count = json_object_get(req, "count"), *dur = json_object_get(req, "duration");
	json_t *ra = json_object_get(req, "retry_after"), *delay = json_object_get(req, "delay_ms");
	size_t m;

	for (m = 0; mode && m < sizeof(fault_names) / sizeof(fault_names[0]); m++)
		if (strcmp(mode, fault_names[m]) == 0)
			break;
	if (!mode || m == sizeof(fault_names) / sizeof(fault_names[0])) {
		send_json(x, 400,
			  json_pack("{s:s}", "error",
				    "mode must be one of none, 500, 429, slow, malformed, "
				    "expired-token, expired-keys"),
			  NULL);
		return -EINVAL;
	}
	if ((count && (!json_is_integer(count) || json_integer_value(count) < 1 ||
		       json_integer_value(count) > 1000000)) ||
	    (dur && (!json_is_integer(dur) || json_integer_value(dur) < 1 ||
		     json_integer_value(dur) > 86400)) ||
	    (ra && (!json_is_integer(ra) || json_integer_value(ra) < 0 ||
		    json_integer_value(ra) > API_RETRY_AFTER_MAX)) ||
	    (delay && (!json_is_integer(delay) || json_integer_value(delay) < 0 ||
		       json_integer_value(delay) > API_DELAY_MAX_MS))) {
		send_json(x, 400,
			  json_pack("{s:s}", "error",
				    "count (1..1000000), duration (s, 1..86400), retry_after "
				    "(s, 0..3600) and delay_ms (0..60000) are integers"),
			  NULL);
		return -EINVAL;
	}
	a->fault.mode = (enum api_fault)m;
	a->fault.count = count ? json_integer_value(count) : 0;
	a->fault.until_ms =
		dur ? now_ms() + 1000ULL * (unsigned long long)json_integer_value(dur) : 0;
	a->fault.retry_after = ra ? (int)json_integer_value(ra) : 1;
	a->fault.delay_ms = delay ? (int)json_integer_value(delay) : API_SLOW_MS;
	log_info("api fault %s (count %lld, duration %lld s)", fault_names[m], a->fault.count,
		 dur ? (long long)json_integer_value(dur) : 0LL);
	return 0;
}

static json_t *faults_json(struct tc_api *a)
{
	unsigned long long now = now_ms();

	return json_pack("{s:s, s:I, s:I, s:i, s:i}", "mode", fault_names[a->fault.mode], "count",
			 (json_int_t)a->fault.count, "ms_left",
			 (json_int_t)(a->fault.until_ms > now ? a->fault.until_ms - now : 0),
			 "retry_after", a->fault.retry_after, "delay_ms", a->fault.delay_ms);
}

/* ---- OAuth ---- */

static bool scope_name_valid(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n >= API_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || t[i] == '_' || t[i] == ':'))
			return false;
	return true;
}

/* Whether a granted scope covers a needed one: itself, "all", or the write
 * scope for its ":read" form. */
static bool scope_covers(const char *have, const char *need)
{
	size_t n = strlen(have);

	return strcmp(have, need) == 0 || strcmp(have, "all") == 0 ||
	       (strncmp(need, have, n) == 0 && strcmp(need + n, ":read") == 0);
}

static bool scopes_cover(json_t *scopes, const char *need)
{
	json_t *e;
	size_t i;

	json_array_foreach(scopes, i, e)
	{
		if (scope_covers(json_string_value(e), need))
			return true;
	}
	return false;
}

/* POST /oauth-clients {"scopes": [...], "tags": [...], "token_lifetime": s}. */
static void new_client(struct api_ctx *x, json_t *req)
{
	struct tc_api *a = x->a;
	json_t *scopes = json_object_get(req, "scopes"), *tags = json_object_get(req, "tags");
	json_t *life = json_object_get(req, "token_lifetime");
	struct api_client *cl;
	char hex[65], id_hex[13];

	if (!list_valid(scopes, scope_name_valid) || !json_array_size(scopes)) {
		send_json(x, 400,
			  json_pack("{s:s}", "error",
				    "scopes must be a list of 1 to 16 scope names "
				    "(e.g. auth_keys, devices:core)"),
			  NULL);
		return;
	}
	if (tags && !list_valid(tags, tag_valid)) {
		send_json(x, 400,
			  json_pack("{s:s}", "error",
				    "tags must be a list of at most 16 \"tag:<name>\" strings"),
			  NULL);
		return;
	}
	if (life && (!json_is_integer(life) || json_integer_value(life) < 1 ||
		     json_integer_value(life) > API_TOKEN_LIFETIME_MAX)) {
		send_json(x, 400,
			  json_pack("{s:s}", "error", "token_lifetime must be 1..86400 seconds"),
			  NULL);
		return;
	}
	if (a->nclients == API_CLIENTS_MAX) {
		send_json(x, 409, json_pack("{s:s}", "error", "too many OAuth clients (64)"), NULL);
		return;
	}
	cl = &a->clients[a->nclients++];
	random_hex(id_hex, 6);
	snprintf(cl->id, sizeof(cl->id), "k%.12sCNTRL", id_hex);
	random_hex(hex, 16);
	snprintf(cl->secret, sizeof(cl->secret), "tskey-client-k%.12sCNTRL-%.32s", id_hex, hex);
	sodium_memzero(hex, sizeof(hex));
	cl->scopes = json_deep_copy(scopes);
	cl->tags = tags ? json_deep_copy(tags) : json_array();
	cl->lifetime = life ? (int)json_integer_value(life) : API_TOKEN_LIFETIME;
	log_info("OAuth client %s made (%zu scopes, %zu tags, tokens last %d s)", cl->id,
		 json_array_size(cl->scopes), json_array_size(cl->tags), cl->lifetime);
	send_json(x, 200,
		  json_pack("{s:s, s:s, s:O, s:O, s:i}", "id", cl->id, "secret", cl->secret,
			    "scopes", cl->scopes, "tags", cl->tags, "token_lifetime", cl->lifetime),
		  NULL);
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes one application/x-www-form-urlencoded component of n bytes into
 * out (API_FIELD_MAX). 0 or -EINVAL. */
static int form_decode(const char *p, size_t n, char out[static API_FIELD_MAX])
{
	size_t j = 0;

	for (size_t i = 0; i < n; i++) {
		int ch = (unsigned char)p[i];

		if (j == API_FIELD_MAX - 1)
			return -EINVAL;
		if (ch == '+') {
			ch = ' ';
		} else if (ch == '%') {
			int hi = i + 2 < n ? hexval(p[i + 1]) : -1,
			    lo = hi >= 0 ? hexval(p[i + 2]) : -1;

			if (lo < 0)
				return -EINVAL;
			ch = hi << 4 | lo;
			i += 2;
		}
		if (ch == 0)
			return -EINVAL;
		out[j++] = (char)ch;
	}
	out[j] = '\0';
	return 0;
}

struct token_form {
	char grant_type[API_FIELD_MAX], client_id[API_FIELD_MAX], client_secret[API_FIELD_MAX],
		scope[API_FIELD_MAX];
};

/* Parses the token request's form; *why names what was wrong. */
static int form_parse(const uint8_t *body, size_t len, struct token_form *f, const char **why)
{
	const char *p = (const char *)body, *end = p + len;
	int fields = 0;

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p)), *eq;
		char name[API_FIELD_MAX], *dst = NULL;

		if (!amp)
			amp = end;
		if (++fields > API_FORM_FIELDS_MAX) {
			*why = "too many form fields";
			return -EINVAL;
		}
		eq = memchr(p, '=', (size_t)(amp - p));
		if (!eq) {
			eq = amp;
		}
		if (form_decode(p, (size_t)(eq - p), name) < 0) {
			*why = "a form field name is not valid form encoding or too long";
			return -EINVAL;
		}
		if (strcmp(name, "grant_type") == 0)
			dst = f->grant_type;
		else if (strcmp(name, "client_id") == 0)
			dst = f->client_id;
		else if (strcmp(name, "client_secret") == 0)
			dst = f->client_secret;
		else if (strcmp(name, "scope") == 0)
			dst = f->scope;
		if (dst && form_decode(eq < amp ? eq + 1 : amp,
				       eq < amp ? (size_t)(amp - eq - 1) : 0, dst) < 0) {
			*why = "a form value is not valid form encoding or over 255 bytes";
			return -EINVAL;
		}
		p = amp < end ? amp + 1 : end;
	}
	return 0;
}

/* "Basic base64(id:secret)" into the form's fields. */
static int basic_auth(const char *auth, struct token_form *f)
{
	char raw[2 * API_FIELD_MAX], *colon;
	size_t n;

	if (strncasecmp(auth, "Basic ", 6) != 0)
		return -EINVAL;
	if (sodium_base642bin((uint8_t *)raw, sizeof(raw) - 1, auth + 6, strlen(auth + 6), NULL, &n,
			      NULL, sodium_base64_VARIANT_ORIGINAL) < 0)
		return -EINVAL;
	raw[n] = '\0';
	colon = strchr(raw, ':');
	if (!colon || strlen(raw) != n || (size_t)(colon - raw) >= API_FIELD_MAX ||
	    strlen(colon + 1) >= API_FIELD_MAX) {
		sodium_memzero(raw, sizeof(raw));
		return -EINVAL;
	}
	*colon = '\0';
	strscpy(f->client_id, raw, API_FIELD_MAX);
	strscpy(f->client_secret, colon + 1, API_FIELD_MAX);
	sodium_memzero(raw, sizeof(raw));
	return 0;
}

static bool str_eq_ct(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && sodium_memcmp(a, b, n) == 0;
}

static struct api_token *token_slot(struct tc_api *a)
{
	struct api_token *oldest = &a->tokens[0];
	long long now = tc_now();

	for (int i = 0; i < API_TOKENS_MAX; i++) {
		struct api_token *t = &a->tokens[i];

		if (t->expires <= now)
			return t; /* free or expired */
		if (t->expires < oldest->expires)
			oldest = t;
	}
	/* Full of live tokens: the one that would expire first goes. */
	return oldest;
}

/* POST /api/v2/oauth/token */
static void oauth_token(struct api_ctx *x, const struct tc_api_req *r)
{
	struct tc_api *a = x->a;
	struct token_form *f = xcalloc(1, sizeof(*f));
	struct api_client *cl = NULL;
	struct api_token *t;
	json_t *scopes;
	const char *why = NULL;
	char hex[49], *scope_text;

	if (form_parse(r->body, r->len, f, &why) < 0) {
		oauth_fail(x, 400, "invalid_request", why);
		goto out;
	}
	if (r->authorization[0] && basic_auth(r->authorization, f) < 0) {
		oauth_fail(x, 401, "invalid_client",
			   "Authorization is not Basic base64(id:secret)");
		goto out;
	}
	if (strcmp(f->grant_type, "client_credentials") != 0) {
		oauth_fail(x, 400, "unsupported_grant_type",
			   "grant_type must be client_credentials");
		goto out;
	}
	for (int i = 0; i < a->nclients; i++)
		if (str_eq_ct(a->clients[i].secret, f->client_secret) &&
		    strcmp(a->clients[i].id, f->client_id) == 0)
			cl = &a->clients[i];
	if (!cl) {
		oauth_fail(x, 401, "invalid_client", "unknown client_id or wrong client_secret");
		goto out;
	}
	if (f->scope[0]) {
		/* Space-separated scope names, each granted to the client. */
		scopes = json_array();
		for (char *word = f->scope, *end; *word; word = end) {
			while (*word == ' ')
				word++;
			end = word + strcspn(word, " ");
			if (end == word)
				break;
			if (*end)
				*end++ = '\0';
			if (!scopes_cover(cl->scopes, word) ||
			    json_array_size(scopes) == API_LIST_MAX) {
				char text[160];

				snprintf(text, sizeof(text),
					 "scope %.64s is not granted to this client", word);
				json_decref(scopes);
				oauth_fail(x, 400, "invalid_scope", text);
				goto out;
			}
			json_array_append_new(scopes, json_string(word));
		}
	} else {
		scopes = json_deep_copy(cl->scopes);
	}
	t = token_slot(a);
	json_decref(t->scopes);
	random_hex(hex, 24);
	snprintf(t->token, sizeof(t->token), "tctoken-%s", hex);
	sodium_memzero(hex, sizeof(hex));
	t->expires = tc_now() + cl->lifetime;
	t->client = (int)(cl - a->clients);
	t->scopes = scopes;
	{
		json_t *e;
		size_t i, n = 0;

		scope_text = xcalloc(1, API_LIST_MAX * API_NAME_MAX + 1);
		json_array_foreach(scopes, i, e)
		{
			n += (size_t)snprintf(scope_text + n, API_LIST_MAX * API_NAME_MAX + 1 - n,
					      "%s%s", i ? " " : "", json_string_value(e));
		}
	}
	log_info("OAuth token for client %s (%s), %d s", cl->id, scope_text, cl->lifetime);
	send_json(x, 200,
		  json_pack("{s:s, s:s, s:i, s:s}", "access_token", t->token, "token_type",
			    "Bearer", "expires_in", cl->lifetime, "scope", scope_text),
		  NULL);
	free(scope_text);
out:
	sodium_memzero(f, sizeof(*f));
	free(f);
}

/* The live token of "Authorization: Bearer …", or NULL after a 401. */
static struct api_token *bearer(struct api_ctx *x, const struct tc_api_req *r)
{
	const char *auth = r->authorization;
	struct tc_api *a = x->a;

	if (strncasecmp(auth, "Bearer ", 7) != 0) {
		ts_fail(x, 401, "missing Authorization: Bearer <access token>");
		return NULL;
	}
	for (int i = 0; i < API_TOKENS_MAX; i++) {
		struct api_token *t = &a->tokens[i];

		if (!t->expires || !str_eq_ct(t->token, auth + 7))
			continue;
		if (t->expires <= tc_now() || x->expired) {
			ts_fail(x, 401, "API token expired");
			return NULL;
		}
		return t;
	}
	ts_fail(x, 401, "API token invalid");
	return NULL;
}

static bool need_scope(struct api_ctx *x, struct api_token *t, const char *need)
{
	char text[160];

	if (scopes_cover(t->scopes, need))
		return true;
	snprintf(text, sizeof(text),
		 "calling actor does not have enough permissions to perform this function "
		 "(needs scope %s)",
		 need);
	ts_fail(x, 403, text);
	return false;
}

/* ---- Tailscale: keys and devices ---- */

static bool tailnet_ok(struct api_ctx *x, const char *name, size_t n)
{
	if ((n == 1 && name[0] == '-') ||
	    (n == strlen(x->s->domain) && strncmp(name, x->s->domain, n) == 0))
		return true;
	ts_fail(x, 404, "tailnet not found");
	return false;
}

/* POST /api/v2/tailnet/{tailnet}/keys */
static void create_key(struct api_ctx *x, struct api_token *t, const struct tc_api_req *r)
{
	struct tc_server *s = x->s;
	struct api_client *cl = &x->a->clients[t->client];
	json_error_t jerr;
	json_t *req = json_loadb((const char *)r->body, r->len, 0, &jerr);
	json_t *caps = json_object_get(req, "capabilities"), *create, *v, *tags;
	json_t *exp = json_object_get(req, "expirySeconds"),
	       *desc = json_object_get(req, "description");
	const char *bools[] = {"reusable", "ephemeral", "preauthorized"};
	char text[300], hex[33];
	struct tc_key *k;
	size_t i, n = 0;

	if (!json_is_object(req)) {
		snprintf(text, sizeof(text), "body is not a JSON object: %s", jerr.text);
		ts_fail(x, 400, text);
		goto out;
	}
	create = json_object_get(json_object_get(caps, "devices"), "create");
	if (!json_is_object(create)) {
		ts_fail(x, 400, "capabilities.devices.create must be an object");
		goto out;
	}
	for (i = 0; i < 3; i++) {
		v = json_object_get(create, bools[i]);
		if (v && !json_is_boolean(v)) {
			snprintf(text, sizeof(text),
				 "capabilities.devices.create.%s must be a boolean", bools[i]);
			ts_fail(x, 400, text);
			goto out;
		}
	}
	tags = json_object_get(create, "tags");
	if (tags && !list_valid(tags, tag_valid)) {
		ts_fail(x, 400,
			"capabilities.devices.create.tags must be a list of at most 16 "
			"\"tag:<name>\" strings");
		goto out;
	}
	if (!json_array_size(tags)) {
		ts_fail(x, 400, "auth keys made with an OAuth access token must be tagged");
		goto out;
	}
	/* Tag ownership: every tag must be one of the client's. Upstream's
	 * words and status (400). */
	n = (size_t)snprintf(text, sizeof(text), "requested tags [");
	{
		bool bad = false;

		json_array_foreach(tags, i, v)
		{
			if (list_has(cl->tags, json_string_value(v)))
				continue;
			n += (size_t)snprintf(text + n, sizeof(text) - n, "%s%s", bad ? " " : "",
					      json_string_value(v));
			bad = true;
			if (n >= sizeof(text) - 40)
				break;
		}
		if (bad) {
			snprintf(text + n, sizeof(text) - n, "] are invalid or not permitted");
			log_info("api: key refused for client %s: %s", cl->id, text);
			ts_fail(x, 400, text);
			goto out;
		}
	}
	if (exp && (!json_is_integer(exp) || json_integer_value(exp) < 0 ||
		    json_integer_value(exp) > API_EXPIRY_MAX)) {
		ts_fail(x, 400, "expirySeconds must be an integer from 0 to 7776000 (90 days)");
		goto out;
	}
	if (desc && (!json_is_string(desc) || strlen(json_string_value(desc)) > API_DESC_MAX)) {
		ts_fail(x, 400, "description must be a string of at most 50 characters");
		goto out;
	}
	if (api_count_keys(s) >= TC_KEYS_MAX) {
		ts_fail(x, 409, "too many auth keys in this tailnet (4096)");
		goto out;
	}
	k = xcalloc(1, sizeof(*k));
	random_hex(hex, 6);
	snprintf(k->id, sizeof(k->id), "k%.12sCNTRL", hex);
	random_hex(hex, 16);
	snprintf(k->key, sizeof(k->key), "tskey-auth-k%.12sCNTRL-%.32s", k->id + 1, hex);
	sodium_memzero(hex, sizeof(hex));
	k->reusable = json_is_true(json_object_get(create, "reusable"));
	k->ephemeral = json_is_true(json_object_get(create, "ephemeral"));
	k->preauthorized = json_is_true(json_object_get(create, "preauthorized"));
	k->tags = json_deep_copy(tags);
	k->created = tc_now();
	k->expires = k->created + (exp && json_integer_value(exp) ? json_integer_value(exp)
								  : API_EXPIRY_DEFAULT);
	if (x->keys_expired)
		k->expires = k->created - 1; /* as if the pod took too long to register */
	if (desc)
		strscpy(k->desc, json_string_value(desc), sizeof(k->desc));
	k->next = s->keys;
	s->keys = k;
	store_save(s);
	{
		char list[API_TAGS_TEXT];
		size_t m = 0;

		list[0] = '\0';
		json_array_foreach(k->tags, i, v)
		{
			if (m < sizeof(list))
				m += (size_t)snprintf(list + m, sizeof(list) - m, "%s%s",
						      m ? " " : "", json_string_value(v));
		}
		log_info("api: key %s minted by client %s (reusable %d, ephemeral %d, "
			 "preauthorized %d, %zu tags, %lld s) tags [%s]",
			 k->id, cl->id, k->reusable, k->ephemeral, k->preauthorized,
			 json_array_size(k->tags), k->expires - k->created, list);
	}
	send_json(x, 200,
		  json_pack("{s:s, s:s, s:o, s:o, s:b, s:b, s:{s:{s:{s:b, s:b, s:b, s:O}}}, s:s}",
			    "id", k->id, "key", k->key, "created", time_json(k->created), "expires",
			    time_json(k->expires), "revoked", 0, "invalid", 0, "capabilities",
			    "devices", "create", "reusable", k->reusable, "ephemeral", k->ephemeral,
			    "preauthorized", k->preauthorized, "tags", k->tags, "description",
			    k->desc),
		  NULL);
out:
	json_decref(req);
}

/* "100.64.0.1/32" -> "100.64.0.1". */
static json_t *bare_addresses(const struct tc_node *n)
{
	json_t *with = control_addresses(n), *out = json_array(), *v;
	size_t i;

	json_array_foreach(with, i, v)
	{
		const char *a = json_string_value(v);
		const char *slash = a ? strchr(a, '/') : NULL;

		if (a)
			json_array_append_new(out, slash ? json_stringn(a, (size_t)(slash - a))
							 : json_string(a));
	}
	json_decref(with);
	return out;
}

static const char *hostinfo_str(const struct tc_node *n, const char *field)
{
	const char *v = json_string_value(json_object_get(n->hostinfo, field));

	return v ? v : "";
}

static json_t *device_json(struct tc_server *s, const struct tc_node *n)
{
	char id[24], sid[24], nk[80], mk[80], *name = xasprintf("%s.%s", n->hostname, s->domain);
	json_t *o;

	snprintf(id, sizeof(id), "%lld", n->id);
	o = json_pack(
		"{s:s, s:s, s:s, s:s, s:o, s:O, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:o, "
		"s:b, s:b, s:b, s:b, s:b, s:b, s:b}",
		"id", id, "nodeId", control_stable_id(n, sid, sizeof(sid)), "name", name,
		"hostname", n->hostname, "addresses", bare_addresses(n), "tags", n->tags, "nodeKey",
		keys_to_text("nodekey", n->node_key, nk, sizeof(nk)), "machineKey",
		n->has_machine ? keys_to_text("mkey", n->machine, mk, sizeof(mk)) : "", "user",
		json_array_size(n->tags) ? "tagged-devices" : "user-1@fake-control.example.net",
		"os", hostinfo_str(n, "OS"), "clientVersion", hostinfo_str(n, "IPNVersion"),
		"created", time_json(n->created), "lastSeen", time_json(n->last_seen), "expires",
		time_json(n->api_hides_expiry ? 0 : n->key_expiry), "keyExpiryDisabled",
		n->key_expiry == 0 || n->api_hides_expiry, "authorized", n->authorized,
		"isExternal", n->external, "isEphemeral", n->ephemeral, "connectedToControl",
		n->online > 0, "updateAvailable", 0, "blocksIncomingConnections", 0);
	free(name);
	return o;
}

/* The node named by a device id: the legacy numeric id or the nodeId. */
static struct tc_node *device_find(struct tc_server *s, const char *id)
{
	char sid[24], num[24];

	for (struct tc_node *n = s->nodes; n; n = n->next) {
		snprintf(num, sizeof(num), "%lld", n->id);
		if (strcmp(id, num) == 0 || strcmp(id, control_stable_id(n, sid, sizeof(sid))) == 0)
			return n;
	}
	return NULL;
}

static void device_delete(struct tc_server *s, struct tc_node *n, const char *via)
{
	log_info("node %lld (%s) deleted through the %s API", n->id, n->hostname, via);
	control_node_remove(s, n);
	store_save(s);
}

/* ---- Headscale ---- */

static struct api_user *user_by_id(struct tc_api *a, long long id)
{
	for (int i = 0; i < a->nusers; i++)
		if (a->users[i].id == id)
			return &a->users[i];
	return NULL;
}

static struct api_user *user_by_name(struct tc_api *a, const char *name)
{
	for (int i = 0; i < a->nusers; i++)
		if (strcmp(a->users[i].name, name) == 0)
			return &a->users[i];
	return NULL;
}

static json_t *user_json(const struct api_user *u)
{
	char id[24];

	if (!u)
		return json_null();
	snprintf(id, sizeof(id), "%lld", u->id);
	return json_pack("{s:s, s:s, s:o, s:s, s:s, s:s, s:s, s:s}", "id", id, "name", u->name,
			 "createdAt", time_json(u->created), "displayName", "", "email", "",
			 "providerId", "", "provider", "", "profilePicUrl", "");
}

static bool user_name_valid(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n >= API_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') ||
		      strchr("-_.@", t[i])))
			return false;
	return true;
}

static void new_user(struct api_ctx *x, json_t *req)
{
	struct tc_api *a = x->a;
	const char *name = json_string_value(json_object_get(req, "name"));
	struct api_user *u;

	if (!name || !user_name_valid(name)) {
		send_json(x, 400,
			  json_pack("{s:s}", "error", "name must be 1 to 63 of [a-z0-9-_.@]"),
			  NULL);
		return;
	}
	if (user_by_name(a, name)) {
		send_json(x, 409, json_pack("{s:s}", "error", "a user with that name exists"),
			  NULL);
		return;
	}
	if (a->nusers == API_USERS_MAX) {
		send_json(x, 409, json_pack("{s:s}", "error", "too many users (64)"), NULL);
		return;
	}
	u = &a->users[a->nusers++];
	u->id = a->nusers;
	strscpy(u->name, name, sizeof(u->name));
	u->created = tc_now();
	log_info("headscale user %lld (%s) made", u->id, u->name);
	send_json(x, 200, user_json(u), NULL);
}

static void new_hskey(struct api_ctx *x)
{
	struct tc_api *a = x->a;
	char hex1[13], hex2[33];

	if (a->nhskeys == API_HSKEYS_MAX) {
		send_json(x, 409, json_pack("{s:s}", "error", "too many API keys (64)"), NULL);
		return;
	}
	random_hex(hex1, 6);
	random_hex(hex2, 16);
	snprintf(a->hskeys[a->nhskeys], sizeof(a->hskeys[0]), "hskey-api-%s-%s", hex1, hex2);
	sodium_memzero(hex2, sizeof(hex2));
	log_info("headscale API key hskey-api-%s-… made", hex1);
	send_json(x, 200, json_pack("{s:s}", "key", a->hskeys[a->nhskeys++]), NULL);
}

static bool hs_auth(struct api_ctx *x, const struct tc_api_req *r)
{
	struct tc_api *a = x->a;

	if (strncasecmp(r->authorization, "Bearer ", 7) == 0 && !x->expired)
		for (int i = 0; i < a->nhskeys; i++)
			if (str_eq_ct(a->hskeys[i], r->authorization + 7))
				return true;
	hs_fail(x, 401, "Unauthorized");
	return false;
}

/* A uint64 in protojson: a decimal string or a JSON integer. 0 or -EINVAL. */
static int pj_uint64(json_t *v, long long *out)
{
	const char *t = json_string_value(v);
	char *end;

	*out = 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = json_integer_value(v);
		return 0;
	}
	if (!t || !*t || *t < '0' || *t > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoll(t, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

static json_t *hs_key_json(struct tc_api *a, const struct tc_key *k)
{
	return json_pack("{s:o, s:s, s:s, s:b, s:b, s:b, s:o, s:o, s:O}", "user",
			 user_json(user_by_id(a, k->user_id)), "id", k->id, "key", k->key,
			 "reusable", k->reusable, "ephemeral", k->ephemeral, "used", k->used,
			 "expiration", time_json(k->expires), "createdAt", time_json(k->created),
			 "aclTags", k->tags);
}

/* POST /api/v1/preauthkey {user, reusable, ephemeral, expiration, aclTags} */
static void hs_preauthkey(struct api_ctx *x, const struct tc_api_req *r)
{
	struct tc_server *s = x->s;
	struct tc_api *a = x->a;
	json_error_t jerr;
	json_t *req = json_loadb((const char *)r->body, r->len, 0, &jerr);
	json_t *user = json_object_get(req, "user"), *tags = json_object_get(req, "aclTags");
	const char *exp = json_string_value(json_object_get(req, "expiration"));
	const char *bools[] = {"reusable", "ephemeral"};
	struct api_user *u = NULL;
	long long uid = 0, expires = 0, max_id = 0;
	char text[200], hex1[13], hex2[33];
	struct tc_key *k;

	if (!json_is_object(req)) {
		snprintf(text, sizeof(text), "body is not a JSON object: %s", jerr.text);
		hs_fail(x, 400, text);
		goto out;
	}
	for (size_t i = 0; i < 2; i++) {
		json_t *v = json_object_get(req, bools[i]);

		if (v && !json_is_boolean(v)) {
			snprintf(text, sizeof(text), "%s must be a boolean", bools[i]);
			hs_fail(x, 400, text);
			goto out;
		}
	}
	if (user && !(json_is_string(user) && !json_string_length(user))) {
		/* The user's id (protojson uint64); a name as older Headscale took it. */
		if (pj_uint64(user, &uid) == 0)
			u = user_by_id(a, uid);
		else if (json_is_string(user))
			u = user_by_name(a, json_string_value(user));
		else {
			hs_fail(x, 400, "invalid user id");
			goto out;
		}
		if (!u) {
			hs_fail(x, 404, "creating pre-auth key: user not found");
			goto out;
		}
	}
	if (tags && !list_valid(tags, tag_valid)) {
		hs_fail(x, 400, "invalid tag");
		goto out;
	}
	if (!u && !json_array_size(tags)) {
		hs_fail(x, 400,
			"creating pre-auth key: pre-auth key must be tagged or owned by a user");
		goto out;
	}
	if (json_object_get(req, "expiration") && (!exp || parse_time(exp, &expires) < 0)) {
		hs_fail(x, 400, "expiration must be an RFC 3339 time");
		goto out;
	}
	if (api_count_keys(s) >= TC_KEYS_MAX) {
		hs_fail(x, 409, "too many pre-auth keys (4096)");
		goto out;
	}
	for (k = s->keys; k; k = k->next) {
		char *end;
		long long v = strtoll(k->id, &end, 10);

		if (k->id[0] && !*end && v > max_id)
			max_id = v;
	}
	k = xcalloc(1, sizeof(*k));
	snprintf(k->id, sizeof(k->id), "%lld", max_id + 1);
	random_hex(hex1, 6);
	random_hex(hex2, 16);
	snprintf(k->key, sizeof(k->key), "hskey-auth-%s-%s", hex1, hex2);
	sodium_memzero(hex2, sizeof(hex2));
	k->reusable = json_is_true(json_object_get(req, "reusable"));
	k->ephemeral = json_is_true(json_object_get(req, "ephemeral"));
	k->preauthorized = true;
	k->tags = tags ? json_deep_copy(tags) : json_array();
	k->created = tc_now();
	/* Go's zero time (or none): no expiry. A past time: expired already. */
	k->expires = expires ? expires : 0;
	if (exp && !expires && strncmp(exp, "0001-", 5) != 0)
		k->expires = 1; /* before 1970: long expired */
	if (x->keys_expired)
		k->expires = 1;
	k->user_id = u ? u->id : 0;
	k->next = s->keys;
	s->keys = k;
	store_save(s);
	log_info("headscale pre-auth key %s made (user %lld, reusable %d, ephemeral %d, %zu tags)",
		 k->id, k->user_id, k->reusable, k->ephemeral, json_array_size(k->tags));
	send_json(x, 200, json_pack("{s:o}", "preAuthKey", hs_key_json(a, k)), NULL);
out:
	json_decref(req);
}

static json_t *hs_node_json(struct tc_server *s, const struct tc_node *n)
{
	char id[24], nk[80], mk[80], dk[80];
	json_t *tags = n->tags, *routes = n->routes;
	json_t *o;

	snprintf(id, sizeof(id), "%lld", n->id);
	o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:o, s:o, s:o, s:n, s:o, s:s, s:s, s:b, "
		      "s:o, s:o, s:o, s:O, s:O, s:O, s:[]}",
		      "id", id, "machineKey",
		      n->has_machine ? keys_to_text("mkey", n->machine, mk, sizeof(mk)) : "",
		      "nodeKey", keys_to_text("nodekey", n->node_key, nk, sizeof(nk)), "discoKey",
		      n->has_disco ? keys_to_text("discokey", n->disco, dk, sizeof(dk)) : "",
		      "ipAddresses", bare_addresses(n), "name", n->hostname, "user",
		      user_json(user_by_id(s->api, n->user_id)), "lastSeen",
		      n->last_seen ? time_json(n->last_seen) : json_null(), "expiry",
		      n->key_expiry && !n->api_hides_expiry ? time_json(n->key_expiry)
							    : json_null(),
		      "preAuthKey", "createdAt", time_json(n->created), "registerMethod",
		      n->external ? "REGISTER_METHOD_CLI" : "REGISTER_METHOD_AUTH_KEY", "givenName",
		      n->hostname, "online", n->online > 0, "approvedRoutes",
		      routes ? json_deep_copy(routes) : json_array(), "availableRoutes",
		      routes ? json_deep_copy(routes) : json_array(), "subnetRoutes",
		      routes ? json_deep_copy(routes) : json_array(), "tags", tags,
		      /* Headscale before 0.27 named them so. */
		      "forcedTags", tags, "validTags", tags, "invalidTags");
	return o;
}

/* "/api/v1/node/<decimal>" -> the id; -EINVAL when it is not one. */
static int path_id(const char *rest, long long *id)
{
	char *end;

	*id = 0;
	if (*rest < '0' || *rest > '9')
		return -EINVAL;
	errno = 0;
	*id = strtoll(rest, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

/* GET /api/v1/node?user=NAME */
static void hs_list(struct api_ctx *x, const char *query)
{
	struct tc_server *s = x->s;
	struct api_user *u = NULL;
	json_t *list = json_array();

	if (query && strncmp(query, "user=", 5) == 0 && query[5]) {
		char name[API_FIELD_MAX];
		size_t n = strcspn(query + 5, "&");

		if (form_decode(query + 5, n, name) < 0 || !(u = user_by_name(x->a, name))) {
			json_decref(list);
			hs_fail(x, 404, "looking up user: user not found");
			return;
		}
	}
	for (struct tc_node *n = s->nodes; n; n = n->next)
		if (!u || n->user_id == u->id)
			json_array_append_new(list, hs_node_json(s, n));
	send_json(x, 200, json_pack("{s:o}", "nodes", list), NULL);
}

static void headscale(struct api_ctx *x, const struct tc_api_req *r, const char *path,
		      const char *query)
{
	struct tc_server *s = x->s;
	bool get = strcmp(r->method, "GET") == 0, del = strcmp(r->method, "DELETE") == 0;
	struct tc_node *n;
	long long id;

	if (!hs_auth(x, r))
		return;
	if (strcmp(r->method, "POST") == 0 && strcmp(path, "/api/v1/preauthkey") == 0) {
		hs_preauthkey(x, r);
	} else if (get && strcmp(path, "/api/v1/node") == 0) {
		hs_list(x, query);
	} else if ((get || del) && strncmp(path, "/api/v1/node/", 13) == 0) {
		if (path_id(path + 13, &id) < 0) {
			hs_fail(x, 400, "invalid node id");
			return;
		}
		n = control_find_id(s, id);
		if (!n) {
			hs_fail(x, 404,
				get ? "getting node: node not found"
				    : "deleting node: node not found");
		} else if (get) {
			send_json(x, 200, json_pack("{s:o}", "node", hs_node_json(s, n)), NULL);
		} else {
			device_delete(s, n, "Headscale");
			send_json(x, 200, json_object(), NULL);
		}
	} else {
		hs_fail(x, 404, "no such route");
	}
}

/* ---- dispatch ---- */

static void tailscale(struct api_ctx *x, const struct tc_api_req *r, const char *path)
{
	struct tc_server *s = x->s;
	bool get = strcmp(r->method, "GET") == 0, del = strcmp(r->method, "DELETE") == 0;
	bool post = strcmp(r->method, "POST") == 0;
	struct api_token *t;
	const char *rest;

	if (post && strcmp(path, "/api/v2/oauth/token") == 0) {
		oauth_token(x, r);
		return;
	}
	if (strncmp(path, "/api/v2/tailnet/", 16) == 0) {
		const char *slash = strchr(path + 16, '/');

		rest = slash;
		if (!slash || (strcmp(rest, "/keys") != 0 && strcmp(rest, "/devices") != 0)) {
			ts_fail(x, 404, "not found");
			return;
		}
		if ((strcmp(rest, "/keys") == 0 && !post) ||
		    (strcmp(rest, "/devices") == 0 && !get)) {
			ts_fail(x, 405, "method not allowed");
			return;
		}
		if (!(t = bearer(x, r)) || !tailnet_ok(x, path + 16, (size_t)(slash - path - 16)))
			return;
		if (strcmp(rest, "/keys") == 0) {
			if (need_scope(x, t, "auth_keys"))
				create_key(x, t, r);
		} else if (need_scope(x, t, "devices:core:read")) {
			json_t *list = json_array();

			for (struct tc_node *n = s->nodes; n; n = n->next)
				json_array_append_new(list, device_json(s, n));
			send_json(x, 200, json_pack("{s:o}", "devices", list), NULL);
		}
		return;
	}
	if (strncmp(path, "/api/v2/device/", 15) == 0 && !strchr(path + 15, '/') && path[15]) {
		struct tc_node *n;

		if (!get && !del) {
			ts_fail(x, 405, "method not allowed");
			return;
		}
		if (!(t = bearer(x, r)) ||
		    !need_scope(x, t, get ? "devices:core:read" : "devices:core"))
			return;
		n = device_find(s, path + 15);
		if (!n) {
			ts_fail(x, 404, "device not found");
		} else if (get) {
			send_json(x, 200, device_json(s, n), NULL);
		} else {
			device_delete(s, n, "Tailscale");
			net_http_reply_ex(x->c, 200, "application/json", NULL, "", 0);
		}
		return;
	}
	ts_fail(x, 404, "not found");
}

void api_handle(struct tc_conn *c, const struct tc_api_req *r)
{
	struct api_ctx x = {.c = c, .s = c->srv, .a = c->srv->api};
	const char *q = strchr(r->path, '?');
	char path[256];
	bool hs = strncmp(r->path, "/api/v1/", 8) == 0;

	/* The path without its query (r->path is at most 255 bytes). */
	strscpy(path, r->path, sizeof(path));
	if (q)
		path[q - r->path] = '\0';
	if (fault_take(&x, hs))
		return;
	if (hs)
		headscale(&x, r, path, q ? q + 1 : NULL);
	else
		tailscale(&x, r, path);
}

bool api_admin(struct tc_conn *c, const char *method, const char *path, json_t *req)
{
	struct api_ctx x = {.c = c, .s = c->srv, .a = c->srv->api};
	bool post = strcmp(method, "POST") == 0;

	if (post && strcmp(path, "/oauth-clients") == 0) {
		new_client(&x, req);
	} else if (post && strcmp(path, "/headscale/apikeys") == 0) {
		new_hskey(&x);
	} else if (post && strcmp(path, "/headscale/users") == 0) {
		new_user(&x, req);
	} else if (post && strcmp(path, "/api-faults") == 0) {
		if (set_faults(&x, req) == 0)
			send_json(&x, 200, faults_json(x.a), NULL);
	} else if (strcmp(method, "GET") == 0 && strcmp(path, "/api-faults") == 0) {
		send_json(&x, 200, faults_json(x.a), NULL);
	} else {
		return false;
	}
	return true;
}
