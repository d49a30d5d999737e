/* testcontrol's API listener end to end, on 127.0.0.1 only:
 *
 *   this test --(fork/exec)--> testcontrol --api 127.0.0.1:0
 *       |  admin HTTP: /oauth-clients, /headscale/users, /headscale/apikeys,
 *       |              /api-faults, /nodes/{id}/expire
 *       |  libcurl: /api/v2 (OAuth token, keys, devices), /api/v1 (Headscale)
 *       '- ts2021 (client.c) -> register with the minted keys, map streams
 *
 * Every endpoint and every fault switch: tokens fetched once and reused,
 * scopes and tag ownership refused with upstream's status and words, keys
 * that register nodes with their tags (single use, ephemeral, expiry),
 * devices listed, read and deleted (peers see them go, 404 after), node key
 * expiry on demand seen by the node and cured by OldNodeKey and a fresh key
 * with the same addresses, and the Headscale fake's pre-auth keys and
 * nodes. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sodium.h>

#include "client.h"
#include "keys.h"
#include "mem.h"

enum { CAPVER = 130, WAIT_MS = 3000 };

static struct {
	char dir[64];
	pid_t pid;
	char http[64], https[64], admin[64], ca[4200], api[64];
	uint8_t pub[32];
	/* OAuth client "full": auth_keys + devices:core, tags k8s and web. */
	char full_id[64], full_secret[128];
	/* OAuth client "reader": devices:core:read only; tokens last 2 s. */
	char reader_id[64], reader_secret[128];
	char token[128]; /* full's token, fetched once */
	/* Every secret the test saw (client secrets, tokens, API keys, auth
	 * keys): none may appear in the server's log. */
	char secrets[32][128];
	int nsecrets;
} tc;

static void remember(const char *secret)
{
	assert_true(tc.nsecrets < 32 && strlen(secret) < sizeof(tc.secrets[0]));
	strcpy(tc.secrets[tc.nsecrets++], secret);
}

static int start_server(void)
{
	const char *bin = getenv("TESTCONTROL_BIN");
	char line[4400] = "";
	size_t have = 0;
	int pipefd[2];

	if (!bin)
		bin = "./testcontrol";
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	tc.pid = fork();
	if (tc.pid < 0)
		return -errno;
	if (tc.pid == 0) {
		char log[96];
		int fd;

		/* stderr into the state directory: test_no_secrets_in_log reads it. */
		snprintf(log, sizeof(log), "%s/server.log", tc.dir);
		fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0)
			dup2(fd, 2);
		dup2(pipefd[1], 1);
		execl(bin, bin, "--state-dir", tc.dir, "--http", "127.0.0.1:0", "--https",
		      "127.0.0.1:0", "--admin", "127.0.0.1:0", "--api", "127.0.0.1:0",
		      "--keepalive-ms", "1000", (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	while (!strchr(line, '\n') && have < sizeof(line) - 1) {
		struct pollfd pf = {.fd = pipefd[0], .events = POLLIN};
		ssize_t n;

		if (poll(&pf, 1, 5000) <= 0)
			break;
		n = read(pipefd[0], line + have, sizeof(line) - 1 - have);
		if (n <= 0)
			break;
		have += (size_t)n;
		line[have] = '\0';
	}
	close(pipefd[0]);
	if (sscanf(line, "listening http=%63s https=%63s admin=%63s ca=%4199s api=%63s", tc.http,
		   tc.https, tc.admin, tc.ca, tc.api) != 5) {
		fprintf(stderr, "testcontrol did not print its listening line: '%s'\n", line);
		return -EPROTO;
	}
	return 0;
}

static void stop_server(void)
{
	int status;

	if (tc.pid > 0) {
		kill(tc.pid, SIGTERM);
		waitpid(tc.pid, &status, 0);
		tc.pid = 0;
	}
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* ---- HTTP helpers ---- */

static json_t *admin(const char *method, const char *path, const char *body, int want)
{
	char *resp = NULL;
	int status = cl_http(tc.admin, method, path, body, &resp, WAIT_MS);
	json_t *o;

	if (status != want)
		fprintf(stderr, "admin %s %s: %d %s\n", method, path, status, resp);
	assert_int_equal(status, want);
	o = json_loads(resp, 0, NULL);
	free(resp);
	assert_non_null(o);
	return o;
}

struct resp {
	long status;
	char retry_after[32];
	char *body;
	size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;

	r->body = xrealloc(r->body, r->len + size * n + 1);
	memcpy(r->body + r->len, p, size * n);
	r->len += size * n;
	r->body[r->len] = '\0';
	return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	size_t len = size * n;

	if (len > 13 && strncasecmp(p, "Retry-After: ", 13) == 0) {
		size_t v = len - 13;

		while (v && (p[13 + v - 1] == '\r' || p[13 + v - 1] == '\n'))
			v--;
		if (v < sizeof(r->retry_after)) {
			memcpy(r->retry_after, p + 13, v);
			r->retry_after[v] = '\0';
		}
	}
	return len;
}

/* One request to the API listener; auth is the whole Authorization value
 * or NULL; ctype NULL means JSON. Returns the status; *out the body. */
static long api(const char *method, const char *path, const char *auth, const char *ctype,
		const char *body, struct resp *out)
{
	CURL *e = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	char url[512], line[400];

	memset(out, 0, sizeof(*out));
	out->body = xstrdup("");
	snprintf(url, sizeof(url), "http://%s%s", tc.api, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, out);
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	snprintf(line, sizeof(line), "Content-Type: %s", ctype ? ctype : "application/json");
	hdrs = curl_slist_append(hdrs, line);
	if (auth) {
		snprintf(line, sizeof(line), "Authorization: %s", auth);
		hdrs = curl_slist_append(hdrs, line);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	assert_int_equal(curl_easy_perform(e), CURLE_OK);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(e);
	return out->status;
}

/* The same, wanting status want and a JSON body, which it returns. */
static json_t *api_json(const char *method, const char *path, const char *auth, const char *body,
			long want)
{
	struct resp r;
	json_t *o;

	api(method, path, auth, NULL, body, &r);
	if (r.status != want)
		fprintf(stderr, "%s %s: %ld %s\n", method, path, r.status, r.body);
	assert_int_equal(r.status, want);
	o = json_loads(r.body, 0, NULL);
	free(r.body);
	assert_non_null(o);
	return o;
}

static void bearer(char out[static 200], const char *token)
{
	snprintf(out, 200, "Bearer %s", token);
}

/* client_credentials token for (id, secret) with scope (or NULL). */
static json_t *get_token(const char *id, const char *secret, const char *scope, long want)
{
	char form[600];
	struct resp r;
	json_t *o;

	snprintf(form, sizeof(form),
		 "grant_type=client_credentials&client_id=%s&client_secret=%s%s%s", id, secret,
		 scope ? "&scope=" : "", scope ? scope : "");
	api("POST", "/api/v2/oauth/token", NULL, "application/x-www-form-urlencoded", form, &r);
	if (r.status != want)
		fprintf(stderr, "token: %ld %s\n", r.status, r.body);
	assert_int_equal(r.status, want);
	o = json_loads(r.body, 0, NULL);
	free(r.body);
	assert_non_null(o);
	return o;
}

static void set_fault(const char *body)
{
	json_decref(admin("POST", "/api-faults", body, 200));
}

/* A key from client "full" with the given create capabilities. */
static json_t *mint(const char *create, int expiry, long want)
{
	char body[600], auth[200];

	if (expiry)
		snprintf(body, sizeof(body),
			 "{\"capabilities\":{\"devices\":{\"create\":%s}},\"expirySeconds\":%d}",
			 create, expiry);
	else
		snprintf(body, sizeof(body), "{\"capabilities\":{\"devices\":{\"create\":%s}}}",
			 create);
	bearer(auth, tc.token);
	return api_json("POST", "/api/v2/tailnet/-/keys", auth, body, want);
}

/* ---- nodes (client.c) ---- */

struct node {
	uint8_t machine[32], node_priv[32], node_pub[32];
	char nodekey[80];
	struct cl *cl;
	int map;
};

static void node_init(struct node *n)
{
	keys_generate(n->machine);
	keys_generate(n->node_priv);
	assert_int_equal(keys_public(n->node_pub, n->node_priv), 0);
	keys_to_text("nodekey", n->node_pub, n->nodekey, sizeof(n->nodekey));
	n->cl = NULL;
	n->map = -1;
	assert_int_equal(cl_connect(tc.http, false, NULL, tc.pub, n->machine, CAPVER, &n->cl), 0);
}

static void node_free(struct node *n)
{
	cl_free(n->cl);
	n->cl = NULL;
}

static json_t *post_json(struct node *n, const char *path, json_t *req)
{
	const uint8_t *body;
	size_t len;
	int slot = cl_post(n->cl, path, req);
	json_t *o;

	json_decref(req);
	assert_true(slot >= 0);
	assert_int_equal(cl_wait(n->cl, slot, &body, &len, WAIT_MS), 200);
	o = json_loadb((const char *)body, len, 0, NULL);
	assert_non_null(o);
	return o;
}

/* RegisterRequest with NodeKey, OldNodeKey (or zero) and an auth key (or
 * none). */
static json_t *do_register(struct node *n, const char *oldkey, const char *authkey,
			   const char *hostname)
{
	json_t *req = json_pack(
		"{s:i, s:s, s:s, s:s, s:{s:s, s:s}}", "Version", CAPVER, "NodeKey", n->nodekey,
		"OldNodeKey",
		oldkey ? oldkey
		       : "nodekey:0000000000000000000000000000000000000000000000000000000000000000",
		"Expiry", "0001-01-01T00:00:00Z", "Hostinfo", "Hostname", hostname, "OS", "linux");

	if (authkey)
		json_object_set_new(req, "Auth", json_pack("{s:s}", "AuthKey", authkey));
	return post_json(n, "/machine/register", req);
}

static json_t *open_map(struct node *n)
{
	json_t *msg, *req = json_pack("{s:i, s:s, s:b, s:s, s:b}", "Version", CAPVER, "Compress",
				      "zstd", "KeepAlive", 1, "NodeKey", n->nodekey, "Stream", 1);

	n->map = cl_post(n->cl, "/machine/map", req);
	json_decref(req);
	assert_true(n->map >= 0);
	assert_int_equal(cl_map_next(n->cl, n->map, true, &msg, WAIT_MS), 1);
	return msg;
}

static json_t *map_until(struct node *n, bool (*pred)(json_t *, const void *), const void *arg)
{
	unsigned long long deadline = now_ms() + WAIT_MS;
	json_t *msg;

	while (now_ms() < deadline) {
		int r = cl_map_next(n->cl, n->map, true, &msg, (int)(deadline - now_ms()));

		assert_true(r == 1 || r == -ETIMEDOUT);
		if (r != 1)
			break;
		if (pred(msg, arg))
			return msg;
		json_decref(msg);
	}
	fail_msg("no map message matched in %d ms", WAIT_MS);
	return NULL;
}

static bool has_peer(json_t *msg, const void *nodekey)
{
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(msg, "PeersChanged"), i, v)
	{
		if (strcmp(json_string_value(json_object_get(v, "Key")), nodekey) == 0)
			return true;
	}
	return false;
}

static bool has_removed(json_t *msg, const void *id)
{
	json_t *v;
	size_t i;

	json_array_foreach(json_object_get(msg, "PeersRemoved"), i, v)
	{
		if (json_integer_value(v) == *(const json_int_t *)id)
			return true;
	}
	return false;
}

static bool self_expired(json_t *msg, const void *unused)
{
	return json_is_true(json_object_get(json_object_get(msg, "Node"), "Expired"));
}

static bool contains(json_t *list, const char *s)
{
	json_t *v;
	size_t i;

	json_array_foreach(list, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
			return true;
	}
	return false;
}

/* The device whose nodeKey is nodekey in GET /devices, or NULL. */
static json_t *find_device(const char *nodekey)
{
	char auth[200];
	json_t *o, *v, *out = NULL;
	size_t i;

	bearer(auth, tc.token);
	o = api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 200);
	json_array_foreach(json_object_get(o, "devices"), i, v)
	{
		if (strcmp(json_string_value(json_object_get(v, "nodeKey")), nodekey) == 0)
			out = json_incref(v);
	}
	json_decref(o);
	return out;
}

/* ---- setup ---- */

static void copy_str(char *dst, size_t n, json_t *o, const char *field)
{
	const char *v = json_string_value(json_object_get(o, field));

	assert_non_null(v);
	assert_true(strlen(v) < n);
	strcpy(dst, v);
}

static int group_setup(void **state)
{
	size_t n = strlen("/tmp/tcapi.");

	memcpy(tc.dir, "/tmp/tcapi.", n);
	memset(tc.dir + n, 'X', 6);
	tc.dir[n + 6] = '\0';
	if (!mkdtemp(tc.dir) || start_server() < 0)
		return -1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cl_get_key(tc.http, false, NULL, tc.pub) < 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
	stop_server();
	curl_global_cleanup();
	nftw(tc.dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static int send_raw(const char *hostport, const char *request);

/* ---- tests ---- */

static void test_oauth_token(void **state)
{
	json_t *o;
	char basic[420], raw[300], b64[400];
	struct resp r;

	o = admin("POST", "/oauth-clients",
		  "{\"scopes\": [\"auth_keys\", \"devices:core\"], \"tags\": [\"tag:k8s\", "
		  "\"tag:web\"]}",
		  200);
	copy_str(tc.full_id, sizeof(tc.full_id), o, "id");
	copy_str(tc.full_secret, sizeof(tc.full_secret), o, "secret");
	remember(tc.full_secret);
	assert_int_equal(strncmp(tc.full_secret, "tskey-client-", 13), 0);
	json_decref(o);
	o = admin("POST", "/oauth-clients",
		  "{\"scopes\": [\"devices:core:read\"], \"token_lifetime\": 2}", 200);
	copy_str(tc.reader_id, sizeof(tc.reader_id), o, "id");
	copy_str(tc.reader_secret, sizeof(tc.reader_secret), o, "secret");
	remember(tc.reader_secret);
	json_decref(o);
	json_decref(admin("POST", "/oauth-clients", "{\"scopes\": []}", 400));
	json_decref(
		admin("POST", "/oauth-clients", "{\"scopes\": [\"a\"], \"tags\": [\"k8s\"]}", 400));

	/* The token, fetched once here and reused by every test after. */
	o = get_token(tc.full_id, tc.full_secret, NULL, 200);
	copy_str(tc.token, sizeof(tc.token), o, "access_token");
	remember(tc.token);
	assert_string_equal(json_string_value(json_object_get(o, "token_type")), "Bearer");
	assert_int_equal(json_integer_value(json_object_get(o, "expires_in")), 3600);
	assert_string_equal(json_string_value(json_object_get(o, "scope")),
			    "auth_keys devices:core");
	json_decref(o);

	/* RFC 6749 errors. */
	o = get_token(tc.full_id, "tskey-client-wrong", NULL, 401);
	assert_string_equal(json_string_value(json_object_get(o, "error")), "invalid_client");
	json_decref(o);
	o = get_token(tc.reader_id, tc.reader_secret, "auth_keys", 400);
	assert_string_equal(json_string_value(json_object_get(o, "error")), "invalid_scope");
	json_decref(o);
	api("POST", "/api/v2/oauth/token", NULL, "application/x-www-form-urlencoded",
	    "grant_type=password&client_id=x&client_secret=y", &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "unsupported_grant_type"));
	free(r.body);
	api("POST", "/api/v2/oauth/token", NULL, "application/x-www-form-urlencoded",
	    "grant_type=client_credentials&client_id=%zz", &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "invalid_request"));
	free(r.body);

	/* Basic auth instead of form fields; a narrower scope than granted. */
	snprintf(raw, sizeof(raw), "%s:%s", tc.full_id, tc.full_secret);
	sodium_bin2base64(b64, sizeof(b64), (const uint8_t *)raw, strlen(raw),
			  sodium_base64_VARIANT_ORIGINAL);
	snprintf(basic, sizeof(basic), "Basic %s", b64);
	api("POST", "/api/v2/oauth/token", basic, "application/x-www-form-urlencoded",
	    "grant_type=client_credentials&scope=devices%3Acore%3Aread", &r);
	assert_int_equal(r.status, 200);
	o = json_loads(r.body, 0, NULL);
	free(r.body);
	assert_string_equal(json_string_value(json_object_get(o, "scope")), "devices:core:read");
	json_decref(o);
}

static void test_scopes_tags_and_bad_input(void **state)
{
	char auth[200];
	json_t *o, *t;

	/* The reader's token: listing works, minting and deleting do not. */
	t = get_token(tc.reader_id, tc.reader_secret, NULL, 200);
	bearer(auth, json_string_value(json_object_get(t, "access_token")));
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 200));
	o = api_json("POST", "/api/v2/tailnet/-/keys", auth,
		     "{\"capabilities\":{\"devices\":{\"create\":{\"tags\":[\"tag:k8s\"]}}}}", 403);
	assert_non_null(strstr(json_string_value(json_object_get(o, "message")), "auth_keys"));
	json_decref(o);
	o = api_json("DELETE", "/api/v2/device/12345", auth, NULL, 403);
	assert_non_null(strstr(json_string_value(json_object_get(o, "message")), "devices:core"));
	json_decref(o);
	/* Its tokens last 2 s. */
	sleep(3);
	o = api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 401);
	assert_string_equal(json_string_value(json_object_get(o, "message")), "API token expired");
	json_decref(o);
	json_decref(t);

	/* Tag ownership, in upstream's words: the tag not owned is named. */
	o = mint("{\"tags\":[\"tag:k8s\",\"tag:db\"]}", 0, 400);
	assert_string_equal(json_string_value(json_object_get(o, "message")),
			    "requested tags [tag:db] are invalid or not permitted");
	json_decref(o);
	o = mint("{\"reusable\":true}", 0, 400); /* OAuth keys must be tagged */
	assert_non_null(strstr(json_string_value(json_object_get(o, "message")), "tagged"));
	json_decref(o);
	json_decref(mint("{\"tags\":[\"k8s\"]}", 0, 400));
	json_decref(mint("{\"tags\":[\"tag:k8s\"],\"ephemeral\":\"yes\"}", 0, 400));
	json_decref(mint("{\"tags\":[\"tag:k8s\"]}", -5, 400));
	json_decref(mint("{\"tags\":[\"tag:k8s\"]}", 99999999, 400));
	bearer(auth, tc.token);
	json_decref(api_json("POST", "/api/v2/tailnet/-/keys", auth, "{not json", 400));
	json_decref(api_json("POST", "/api/v2/tailnet/-/keys", auth, "{}", 400));
	json_decref(api_json(
		"POST", "/api/v2/tailnet/other.example/keys", auth,
		"{\"capabilities\":{\"devices\":{\"create\":{\"tags\":[\"tag:k8s\"]}}}}", 404));
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", NULL, NULL, 401));
	json_decref(
		api_json("GET", "/api/v2/tailnet/-/devices", "Bearer tctoken-nonsense", NULL, 401));
	json_decref(api_json("GET", "/api/v2/nothing", auth, NULL, 404));
	/* Bodies over 64 KiB are refused from the head alone. */
	{
		char head[600], buf[512];
		struct pollfd pf;
		ssize_t got;
		int fd;

		snprintf(head, sizeof(head),
			 "POST /api/v2/tailnet/-/keys HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n"
			 "Content-Length: 70000\r\n\r\n",
			 auth);
		fd = send_raw(tc.api, head);
		pf = (struct pollfd){.fd = fd, .events = POLLIN};
		assert_int_equal(poll(&pf, 1, WAIT_MS), 1);
		got = read(fd, buf, sizeof(buf) - 1);
		assert_true(got > 12);
		buf[got] = '\0';
		assert_int_equal(strncmp(buf, "HTTP/1.1 413", 12), 0);
		close(fd);
	}
}

static void test_key_register_list_delete(void **state)
{
	struct node n, again, watcher;
	json_t *k, *o, *dev;
	const char *key;
	char auth[200], path[128], id[32], node_id[32];
	json_int_t num_id;

	/* A watcher registered with a reusable key sees the new device come
	 * and go. */
	k = mint("{\"reusable\":true,\"preauthorized\":true,\"tags\":[\"tag:web\"]}", 0, 200);
	node_init(&watcher);
	o = do_register(&watcher, NULL, json_string_value(json_object_get(k, "key")), "watcher");
	assert_true(json_is_true(json_object_get(o, "MachineAuthorized")));
	json_decref(o);
	json_decref(k);
	json_decref(open_map(&watcher));

	k = mint("{\"reusable\":false,\"ephemeral\":true,\"preauthorized\":true,"
		 "\"tags\":[\"tag:k8s\"]}",
		 300, 200);
	key = json_string_value(json_object_get(k, "key"));
	assert_int_equal(strncmp(key, "tskey-auth-", 11), 0);
	remember(key);
	assert_non_null(json_string_value(json_object_get(k, "id")));
	o = json_object_get(json_object_get(json_object_get(k, "capabilities"), "devices"),
			    "create");
	assert_true(json_is_true(json_object_get(o, "ephemeral")));
	assert_false(json_is_true(json_object_get(o, "reusable")));
	assert_true(contains(json_object_get(o, "tags"), "tag:k8s"));
	assert_non_null(json_string_value(json_object_get(k, "expires")));

	node_init(&n);
	o = do_register(&n, NULL, key, "pod-a");
	assert_string_equal(json_string_value(json_object_get(o, "Error")), "");
	assert_true(json_is_true(json_object_get(o, "MachineAuthorized")));
	json_decref(o);
	json_decref(map_until(&watcher, has_peer, n.nodekey));

	/* Single use: a second registration with it is refused. */
	node_init(&again);
	o = do_register(&again, NULL, key, "pod-b");
	assert_string_equal(json_string_value(json_object_get(o, "Error")), "authkey already used");
	json_decref(o);
	node_free(&again);
	assert_null(find_device(again.nodekey));

	/* Listed with its tags, its node key and its addresses. */
	dev = find_device(n.nodekey);
	assert_non_null(dev);
	assert_true(contains(json_object_get(dev, "tags"), "tag:k8s"));
	assert_int_equal(json_array_size(json_object_get(dev, "tags")), 1);
	assert_true(json_is_true(json_object_get(dev, "isEphemeral")));
	assert_string_equal(json_string_value(json_object_get(dev, "hostname")), "pod-a");
	assert_int_equal(
		strncmp(json_string_value(json_array_get(json_object_get(dev, "addresses"), 0)),
			"100.64.", 7),
		0);
	assert_null(strchr(json_string_value(json_array_get(json_object_get(dev, "addresses"), 0)),
			   '/'));
	assert_non_null(json_string_value(json_object_get(dev, "lastSeen")));
	strcpy(id, json_string_value(json_object_get(dev, "id")));
	strcpy(node_id, json_string_value(json_object_get(dev, "nodeId")));
	num_id = strtoll(id, NULL, 10);
	json_decref(dev);

	/* GET by nodeId and by the legacy id: the caller can confirm the key. */
	bearer(auth, tc.token);
	snprintf(path, sizeof(path), "/api/v2/device/%s", node_id);
	o = api_json("GET", path, auth, NULL, 200);
	assert_string_equal(json_string_value(json_object_get(o, "nodeKey")), n.nodekey);
	json_decref(o);
	snprintf(path, sizeof(path), "/api/v2/device/%s", id);
	o = api_json("GET", path, auth, NULL, 200);
	assert_string_equal(json_string_value(json_object_get(o, "nodeId")), node_id);
	json_decref(o);

	/* DELETE: gone for the peers and the API; 404 after. */
	{
		struct resp r;

		snprintf(path, sizeof(path), "/api/v2/device/%s", node_id);
		assert_int_equal(api("DELETE", path, auth, NULL, NULL, &r), 200);
		free(r.body);
	}
	json_decref(map_until(&watcher, has_removed, &num_id));
	assert_null(find_device(n.nodekey));
	json_decref(api_json("GET", path, auth, NULL, 404));
	json_decref(api_json("DELETE", path, auth, NULL, 404));
	node_free(&n);
	node_free(&watcher);
	json_decref(k);
}

static void test_key_expiry_seconds(void **state)
{
	json_t *k = mint("{\"tags\":[\"tag:k8s\"]}", 1, 200), *o;
	struct node n;

	sleep(2);
	node_init(&n);
	o = do_register(&n, NULL, json_string_value(json_object_get(k, "key")), "late");
	assert_string_equal(json_string_value(json_object_get(o, "Error")), "authkey expired");
	json_decref(o);
	node_free(&n);
	json_decref(k);
}

static void test_node_key_expiry(void **state)
{
	json_t *k =
		mint("{\"reusable\":false,\"preauthorized\":true,\"tags\":[\"tag:k8s\"]}", 0, 200);
	json_t *o, *msg, *before, *dev;
	struct node n;
	char path[64], oldkey[80];

	node_init(&n);
	json_decref(
		do_register(&n, NULL, json_string_value(json_object_get(k, "key")), "expiring"));
	json_decref(k);
	msg = open_map(&n);
	before = json_incref(json_object_get(json_object_get(msg, "Node"), "Addresses"));
	snprintf(
		path, sizeof(path), "/nodes/%lld/expire",
		(long long)json_integer_value(json_object_get(json_object_get(msg, "Node"), "ID")));
	json_decref(msg);

	/* Expired on demand: the node's stream says so, with KeyExpiry past. */
	o = admin("POST", path, NULL, 200);
	assert_true(json_is_true(json_object_get(o, "expired")));
	json_decref(o);
	msg = map_until(&n, self_expired, NULL);
	assert_non_null(
		json_string_value(json_object_get(json_object_get(msg, "Node"), "KeyExpiry")));
	json_decref(msg);
	dev = find_device(n.nodekey);
	assert_false(json_is_true(json_object_get(dev, "keyExpiryDisabled")));
	json_decref(dev);
	/* Re-registering without an auth key: NodeKeyExpired. */
	o = do_register(&n, NULL, NULL, "expiring");
	assert_true(json_is_true(json_object_get(o, "NodeKeyExpired")));
	json_decref(o);
	node_free(&n);

	/* A new node key with OldNodeKey and a fresh key: same addresses. */
	strcpy(oldkey, n.nodekey);
	keys_generate(n.node_priv);
	assert_int_equal(keys_public(n.node_pub, n.node_priv), 0);
	keys_to_text("nodekey", n.node_pub, n.nodekey, sizeof(n.nodekey));
	assert_int_equal(cl_connect(tc.http, false, NULL, tc.pub, n.machine, CAPVER, &n.cl), 0);
	k = mint("{\"reusable\":false,\"preauthorized\":true,\"tags\":[\"tag:k8s\"]}", 0, 200);
	o = do_register(&n, oldkey, json_string_value(json_object_get(k, "key")), "expiring");
	assert_string_equal(json_string_value(json_object_get(o, "Error")), "");
	assert_false(json_is_true(json_object_get(o, "NodeKeyExpired")));
	json_decref(o);
	json_decref(k);
	msg = open_map(&n);
	assert_true(json_equal(before, json_object_get(json_object_get(msg, "Node"), "Addresses")));
	assert_null(json_object_get(json_object_get(msg, "Node"), "Expired"));
	json_decref(msg);
	assert_null(find_device(oldkey));
	json_decref(before);
	node_free(&n);
}

/* Sends one request on a raw socket and returns it, unread. */
static int send_raw(const char *hostport, const char *request)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char host[64];
	const char *colon = strrchr(hostport, ':');
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	inet_pton(AF_INET, host, &sa.sin_addr);
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, request, strlen(request)), (ssize_t)strlen(request));
	return fd;
}

static void test_faults(void **state)
{
	char auth[200], req[400];
	unsigned long long t0, t1;
	struct resp r;
	json_t *o;
	int fd;

	bearer(auth, tc.token);
	set_fault("{\"mode\": \"500\", \"count\": 1}");
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 500));
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 200));

	set_fault("{\"mode\": \"429\", \"count\": 2, \"retry_after\": 7}");
	assert_int_equal(api("GET", "/api/v2/tailnet/-/devices", auth, NULL, NULL, &r), 429);
	assert_string_equal(r.retry_after, "7");
	free(r.body);
	/* The token endpoint is throttled too. */
	o = get_token(tc.full_id, tc.full_secret, NULL, 429);
	json_decref(o);
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 200));

	/* By duration: every request for 1 s. */
	set_fault("{\"mode\": \"429\", \"duration\": 1}");
	assert_int_equal(api("GET", "/api/v2/tailnet/-/devices", auth, NULL, NULL, &r), 429);
	assert_string_equal(r.retry_after, "1");
	free(r.body);
	assert_int_equal(api("GET", "/api/v2/tailnet/-/devices", auth, NULL, NULL, &r), 429);
	free(r.body);
	usleep(1200 * 1000);
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 200));

	/* Slow: the answer waits 1.5 s while the server serves others. */
	set_fault("{\"mode\": \"slow\", \"count\": 1, \"delay_ms\": 1500}");
	snprintf(req, sizeof(req),
		 "GET /api/v2/tailnet/-/devices HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\n\r\n",
		 auth);
	t0 = now_ms();
	fd = send_raw(tc.api, req);
	usleep(100 * 1000); /* taken by the server before the next request */
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 200));
	json_decref(admin("GET", "/info", NULL, 200));
	t1 = now_ms();
	assert_true(t1 - t0 < 1000);
	{
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		char buf[4096];
		ssize_t n;

		assert_int_equal(poll(&pf, 1, 5000), 1);
		assert_true(now_ms() - t0 >= 1400);
		n = read(fd, buf, sizeof(buf) - 1);
		assert_true(n > 12);
		buf[n] = '\0';
		assert_int_equal(strncmp(buf, "HTTP/1.1 200", 12), 0);
		close(fd);
	}

	/* Malformed: 200 with a body that is not JSON. */
	set_fault("{\"mode\": \"malformed\", \"count\": 1}");
	assert_int_equal(api("GET", "/api/v2/tailnet/-/devices", auth, NULL, NULL, &r), 200);
	o = json_loads(r.body, 0, NULL);
	assert_null(o);
	assert_true(r.len > 0);
	free(r.body);

	/* Expired token: a live token is refused with 401 while it lasts. */
	set_fault("{\"mode\": \"expired-token\", \"count\": 1}");
	o = api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 401);
	assert_string_equal(json_string_value(json_object_get(o, "message")), "API token expired");
	json_decref(o);
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 200));

	/* "none" ends a fault at once; bad switches are refused. */
	set_fault("{\"mode\": \"500\"}");
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 500));
	set_fault("{\"mode\": \"none\"}");
	json_decref(api_json("GET", "/api/v2/tailnet/-/devices", auth, NULL, 200));
	json_decref(admin("POST", "/api-faults", "{\"mode\": \"503\"}", 400));
	json_decref(
		admin("POST", "/api-faults", "{\"mode\": \"slow\", \"delay_ms\": 999999}", 400));
	json_decref(admin("POST", "/api-faults", "{\"mode\": \"429\", \"count\": 0}", 400));
}

static void test_headscale(void **state)
{
	char auth[200], path[96], nodekey[80];
	json_t *o, *key, *list, *v, *u;
	struct node n, again;
	const char *secret;
	size_t i;
	bool found = false;

	u = admin("POST", "/headscale/users", "{\"name\": \"alice\"}", 200);
	json_decref(admin("POST", "/headscale/users", "{\"name\": \"alice\"}", 409));
	json_decref(admin("POST", "/headscale/users", "{\"name\": \"Bad Name\"}", 400));
	o = admin("POST", "/headscale/apikeys", NULL, 200);
	remember(json_string_value(json_object_get(o, "key")));
	bearer(auth, json_string_value(json_object_get(o, "key")));
	json_decref(o);

	o = api_json("GET", "/api/v1/node", NULL, NULL, 401);
	assert_string_equal(json_string_value(json_object_get(o, "title")), "Unauthorized");
	json_decref(o);
	json_decref(api_json("GET", "/api/v1/node", "Bearer hskey-api-nonsense", NULL, 401));
	/* An OAuth token is not a Headscale API key. */
	{
		char ts[200];

		bearer(ts, tc.token);
		json_decref(api_json("GET", "/api/v1/node", ts, NULL, 401));
	}

	json_decref(api_json("POST", "/api/v1/preauthkey", auth, "{\"reusable\": false}", 400));
	json_decref(api_json("POST", "/api/v1/preauthkey", auth,
			     "{\"user\": \"1\", \"aclTags\": [\"nottag\"]}", 400));
	json_decref(api_json("POST", "/api/v1/preauthkey", auth, "{\"user\": \"99\"}", 404));
	json_decref(api_json("POST", "/api/v1/preauthkey", auth,
			     "{\"user\": \"1\", \"expiration\": \"tomorrow\"}", 400));
	o = api_json("POST", "/api/v1/preauthkey", auth,
		     "{\"user\": \"1\", \"reusable\": false, \"ephemeral\": true, "
		     "\"expiration\": \"2099-01-01T00:00:00Z\", \"aclTags\": [\"tag:hs\"]}",
		     200);
	key = json_object_get(o, "preAuthKey");
	secret = json_string_value(json_object_get(key, "key"));
	assert_non_null(secret);
	remember(secret);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(key, "user"), "name")), "alice");
	assert_true(json_is_true(json_object_get(key, "ephemeral")));
	assert_true(contains(json_object_get(key, "aclTags"), "tag:hs"));
	assert_string_equal(json_string_value(json_object_get(key, "expiration")),
			    "2099-01-01T00:00:00Z");

	node_init(&n);
	v = do_register(&n, NULL, secret, "hs-node");
	assert_string_equal(json_string_value(json_object_get(v, "Error")), "");
	json_decref(v);
	node_init(&again);
	v = do_register(&again, NULL, secret, "hs-again");
	assert_string_equal(json_string_value(json_object_get(v, "Error")), "authkey already used");
	json_decref(v);
	node_free(&again);
	json_decref(o);

	/* Listed for alice with Headscale's field names and key forms. */
	o = api_json("GET", "/api/v1/node?user=alice", auth, NULL, 200);
	list = json_object_get(o, "nodes");
	json_array_foreach(list, i, v)
	{
		assert_true(json_is_string(json_object_get(v, "id"))); /* protojson uint64 */
		assert_string_equal(
			json_string_value(json_object_get(json_object_get(v, "user"), "name")),
			"alice");
		if (strcmp(json_string_value(json_object_get(v, "nodeKey")), n.nodekey) != 0)
			continue;
		found = true;
		assert_string_equal(json_string_value(json_object_get(v, "givenName")), "hs-node");
		assert_true(contains(json_object_get(v, "tags"), "tag:hs"));
		assert_true(contains(json_object_get(v, "forcedTags"), "tag:hs"));
		assert_int_equal(
			strncmp(json_string_value(json_object_get(v, "machineKey")), "mkey:", 5),
			0);
		assert_int_equal(json_array_size(json_object_get(v, "ipAddresses")), 2);
		assert_string_equal(json_string_value(json_object_get(v, "registerMethod")),
				    "REGISTER_METHOD_AUTH_KEY");
		snprintf(path, sizeof(path), "/api/v1/node/%s",
			 json_string_value(json_object_get(v, "id")));
	}
	assert_true(found);
	json_decref(o);
	json_decref(u);
	json_decref(api_json("GET", "/api/v1/node?user=bob", auth, NULL, 404));

	o = api_json("GET", path, auth, NULL, 200);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(o, "node"), "nodeKey")),
		n.nodekey);
	json_decref(o);
	o = api_json("DELETE", path, auth, NULL, 200);
	assert_int_equal(json_object_size(o), 0);
	json_decref(o);
	json_decref(api_json("DELETE", path, auth, NULL, 404));
	json_decref(api_json("GET", path, auth, NULL, 404));
	json_decref(api_json("DELETE", "/api/v1/node/abc", auth, NULL, 400));
	strcpy(nodekey, n.nodekey);
	assert_null(find_device(nodekey));
	node_free(&n);

	/* A tagged key without a user is fine; the fault switch applies here too. */
	json_decref(
		api_json("POST", "/api/v1/preauthkey", auth, "{\"aclTags\": [\"tag:hs\"]}", 200));
	set_fault("{\"mode\": \"500\", \"count\": 1}");
	o = api_json("GET", "/api/v1/node", auth, NULL, 500);
	assert_int_equal(json_integer_value(json_object_get(o, "status")), 500);
	json_decref(o);
}

static void test_bounds(void **state)
{
	json_t *o;
	int made = 0;

	/* OAuth clients are capped (64 in all). */
	for (;;) {
		char *resp = NULL;
		int st = cl_http(tc.admin, "POST", "/oauth-clients", "{\"scopes\": [\"all\"]}",
				 &resp, WAIT_MS);

		free(resp);
		if (st != 200) {
			assert_int_equal(st, 409);
			break;
		}
		assert_true(++made <= 64);
	}
	/* Scopes lists over 16 are refused. */
	o = admin("POST", "/oauth-clients",
		  "{\"scopes\": [\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\","
		  "\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}",
		  400);
	json_decref(o);
}

static void test_no_secrets_in_log(void **state)
{
	char path[96], *text;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/server.log", tc.dir);
	f = fopen(path, "re");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	assert_true(n > 0 && n < (16 << 20));
	rewind(f);
	text = xcalloc(1, (size_t)n + 1);
	assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	assert_true(tc.nsecrets >= 6);
	for (int i = 0; i < tc.nsecrets; i++)
		if (strstr(text, tc.secrets[i]))
			fail_msg("secret %d found in the server's log", i);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_oauth_token),
		cmocka_unit_test(test_scopes_tags_and_bad_input),
		cmocka_unit_test(test_key_register_list_delete),
		cmocka_unit_test(test_key_expiry_seconds),
		cmocka_unit_test(test_node_key_expiry),
		cmocka_unit_test(test_faults),
		cmocka_unit_test(test_headscale),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_no_secrets_in_log),
	};

	signal(SIGPIPE, SIG_IGN);
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
