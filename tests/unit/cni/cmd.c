/* Unit tests for cni/cmd.c: every verb against a scripted supervisor. The
 * namespace is the test's own (/proc/self/ns/net) with the CNI_NETNS_OVERRIDE
 * test hook, so no root and no network are needed; DEL never deletes in
 * our own namespace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cni/cmd.c"
#include "record.h"
#include "fake_supervisor.h"

#include <fcntl.h>
#include <signal.h>

#define NETNS "/proc/self/ns/net"
/* A socket nobody listens on: contacting it fails at once. */
#define NO_SOCKET "/nonexistent-tscni/cni.sock"

static const char prev_53[] =
	"{\"cniVersion\":\"1.1.0\",\"interfaces\":["
	"{\"name\":\"cni0\",\"mac\":\"aa:bb:cc:00:00:01\"},"
	"{\"name\":\"veth1a2b3c4d\",\"mac\":\"aa:bb:cc:00:00:02\"},"
	"{\"name\":\"eth0\",\"mac\":\"aa:bb:cc:00:00:03\",\"sandbox\":\"" NETNS "\"}],"
	"\"ips\":[{\"address\":\"10.244.1.5/24\",\"gateway\":\"10.244.1.1\",\"interface\":2}],"
	"\"routes\":[{\"dst\":\"10.244.0.0/16\",\"gw\":\"10.244.1.1\"},"
	"{\"dst\":\"0.0.0.0/0\",\"gw\":\"10.244.1.1\"}],\"dns\":{}}";

/* Runs verb with config text (printf format; %s is the socket path). */
static int run_cmd(struct cmd *c, enum cni_verb verb, const char *socket, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int run_cmd(struct cmd *c, enum cni_verb verb, const char *socket, const char *fmt, ...)
{
	struct cni_env env = {
		.verb = verb,
		.command = args_verb_name(verb),
		.container_id = "c1",
		.netns = NETNS,
		.ifname = "eth0",
		.args = "K8S_POD_UID=u-1;IgnoreUnknown=1;K8S_POD_NAME=p;FOO=bar;K8S_POD_NAMESPACE="
			"ns",
		.netns_override = true,
	};
	char *body, *text;
	va_list ap;
	int ret;

	if (verb == CNI_VERB_GC || verb == CNI_VERB_STATUS)
		env.container_id = env.netns = env.ifname = env.args = NULL;
	va_start(ap, fmt);
	if (vasprintf(&body, fmt, ap) < 0)
		abort();
	va_end(ap);
	text = xasprintf("{\"type\":\"tailscale-cni\",\"name\":\"n1\",\"socketPath\":\"%s\",%s}",
			 socket, body);
	cmd_init(c, &env, now_ms());
	ret = cmd_prepare(c, text, strlen(text));
	if (ret == 0)
		ret = cmd_exec(c);
	free(text);
	free(body);
	return ret;
}

static json_t *out_json(const struct cmd *c)
{
	json_error_t jerr;

	assert_non_null(c->out);
	assert_int_equal(c->out[c->out_len - 1], '\n');
	return json_loadb(c->out, c->out_len - 1, 0, &jerr);
}

static bool key_is(const Tscni__AttachmentKey *k)
{
	return k && strcmp(k->network, "n1") == 0 && strcmp(k->container_id, "c1") == 0 &&
	       strcmp(k->ifname, "eth0") == 0;
}

/* The output is prevResult unchanged: the pod started without ts0. */
static void assert_passed_through(const struct cmd *c)
{
	json_t *r = out_json(c), *prev = json_loads(prev_53, 0, NULL);

	assert_non_null(prev);
	assert_true(json_equal(r, prev));
	json_decref(prev);
	json_decref(r);
}

static void pb_prefix(Tscni__IpPrefix *m, const char *s, struct ip_prefix *store)
{
	tscni__ip_prefix__init(m);
	if (ip_prefix_parse(s, false, store) < 0)
		abort();
	ip_prefix_to_pb(store, m);
}

static void send_del_reply(int conn)
{
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__DelReply d = TSCNI__DEL_REPLY__INIT;

	r.protocol_version = CNI_PROTOCOL_VERSION;
	r.body_case = TSCNI__CNI_REPLY__BODY_DEL;
	r.del = &d;
	fake_send(conn, &r);
}

/* The release of an ADD: req must be a DEL for the same key. Frees req,
 * answers, and returns 0, or 3 when req was anything else. */
static int serve_release(int conn, Tscni__CniRequest *req)
{
	int ret = req->body_case == TSCNI__CNI_REQUEST__BODY_DEL && key_is(req->del->key) ? 0 : 3;

	tscni__cni_request__free_unpacked(req, NULL);
	send_del_reply(conn);
	return ret;
}

/* ADD: checks the request, answers with addresses (or what arg says). */
enum add_mode { ADD_OK, ADD_PENDING, ADD_REFUSED, ADD_OUTSIDE, ADD_NOT_READY };

static int serve_add(int conn, int index, void *arg)
{
	enum add_mode m = *(enum add_mode *)arg;
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__AddReply a = TSCNI__ADD_REPLY__INIT;
	Tscni__Error e = TSCNI__ERROR__INIT;
	Tscni__IpPrefix p[4], *addr_ptrs[2] = {&p[0], &p[1]}, *route_ptrs[2] = {&p[2], &p[3]};
	struct ip_prefix store[4];
	Tscni__CniRequest *req = fake_read(conn);
	Tscni__AddRequest *q;
	int ret = 0;

	if (!req)
		return 1;
	if (index == 1) /* the rollback after a bad reply */
		return serve_release(conn, req);
	if (req->body_case != TSCNI__CNI_REQUEST__BODY_ADD)
		return 2;
	q = req->add;
	if (!key_is(q->key) || strcmp(q->netns_path, NETNS) != 0 || q->netns_ino == 0 ||
	    strcmp(q->interface_name, "ts0") != 0 || strcmp(q->cni_version, "1.1.0") != 0 ||
	    q->sync_timeout_ms != 1500)
		ret = 4;
	if (!q->pod || strcmp(q->pod->namespace_, "ns") != 0 || strcmp(q->pod->name, "p") != 0 ||
	    strcmp(q->pod->uid, "u-1") != 0)
		ret = 5;
	/* Only our prefix's annotations travel. */
	if (q->n_annotations != 2 || strcmp(q->annotations[0]->key, "tailscale-cni.io/enabled") ||
	    strcmp(q->annotations[1]->key, "tailscale-cni.io/hostname") ||
	    strcmp(q->annotations[1]->value, "web-1"))
		ret = 6;
	tscni__cni_request__free_unpacked(req, NULL);

	r.protocol_version = CNI_PROTOCOL_VERSION;
	r.body_case = TSCNI__CNI_REPLY__BODY_ADD;
	r.add = &a;
	a.interface_name = "ts0";
	a.mtu = 1280;
	pb_prefix(&p[0], "100.101.102.103/32", &store[0]);
	pb_prefix(&p[1], "fd7a:115c:a1e0::6501:6667/128", &store[1]);
	pb_prefix(&p[2], "100.64.0.0/10", &store[2]);
	pb_prefix(&p[3], "fd7a:115c:a1e0::/48", &store[3]);
	a.n_addresses = 2;
	a.addresses = addr_ptrs;
	a.n_routes = 2;
	a.routes = route_ptrs;
	switch (m) {
	case ADD_OK:
		break;
	case ADD_PENDING:
		a.n_addresses = 0;
		a.addresses_pending = true;
		break;
	case ADD_OUTSIDE:
		pb_prefix(&p[0], "10.1.2.3/32", &store[0]);
		break;
	case ADD_REFUSED:
	case ADD_NOT_READY:
		r.body_case = TSCNI__CNI_REPLY__BODY_ERROR;
		r.error = &e;
		e.cni_code = m == ADD_REFUSED ? 102 : 11;
		e.msg = "tailnet refused the node";
		e.details = "quota exceeded";
		break;
	}
	fake_send(conn, &r);
	return ret;
}

#define ADD_CONF                                                                                  \
	"\"cniVersion\":\"1.1.0\",\"syncTimeout\":1.5,\"prevResult\":%s,"                         \
	"\"runtimeConfig\":{\"io.kubernetes.cri.pod-annotations\":{\"tailscale-cni.io/enabled\":" \
	"\"true\",\"other.io/x\":\"y\",\"tailscale-cni.io/hostname\":\"web-1\"}}"

static void test_add_ok(void **state)
{
	enum add_mode m = ADD_OK;
	struct fake s;
	struct cmd c;
	json_t *r, *ts0, *ips;

	fake_start(&s, 1, serve_add, &m);
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, s.path, ADD_CONF, prev_53), 0);
	assert_int_equal(fake_wait(&s), 0);
	assert_true(c.added);
	r = out_json(&c);
	assert_non_null(r);
	assert_string_equal(json_string_value(json_object_get(r, "cniVersion")), "1.1.0");
	ts0 = json_array_get(json_object_get(r, "interfaces"), 3);
	assert_string_equal(json_string_value(json_object_get(ts0, "name")), "ts0");
	assert_string_equal(json_string_value(json_object_get(ts0, "sandbox")), NETNS);
	assert_int_equal(json_integer_value(json_object_get(ts0, "mtu")), 1280);
	ips = json_object_get(r, "ips");
	assert_int_equal(json_array_size(ips), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(ips, 1), "address")),
			    "100.101.102.103/32");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(ips, 2), "interface")),
			 3);
	assert_int_equal(json_array_size(json_object_get(r, "routes")), 4);
	json_decref(r);
	cmd_destroy(&c);
}

static void test_add_pending(void **state)
{
	enum add_mode m = ADD_PENDING;
	struct fake s;
	struct cmd c;
	json_t *r;

	fake_start(&s, 1, serve_add, &m);
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, s.path, ADD_CONF, prev_53), 0);
	assert_int_equal(fake_wait(&s), 0);
	r = out_json(&c);
	assert_int_equal(json_array_size(json_object_get(r, "interfaces")), 4);
	assert_int_equal(json_array_size(json_object_get(r, "ips")), 1);
	json_decref(r);
	cmd_destroy(&c);
}

static void test_add_refused(void **state)
{
	enum add_mode m = ADD_REFUSED;
	struct fake s;
	struct cmd c;

	fake_start(&s, 1, serve_add, &m);
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, s.path, ADD_CONF, prev_53), -EINVAL);
	assert_int_equal(fake_wait(&s), 0);
	assert_int_equal(c.err.code, 102);
	assert_string_equal(c.err.msg, "tailnet refused the node");
	assert_string_equal(c.err.details, "quota exceeded");
	assert_null(c.out);
	cmd_destroy(&c);
}

static void test_add_not_ready_ignore(void **state)
{
	enum add_mode m = ADD_NOT_READY;
	struct fake s;
	struct cmd c;

	fake_start(&s, 1, serve_add, &m);
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, s.path, ADD_CONF ",\"failurePolicy\":\"ignore\"",
				 prev_53),
			 0);
	assert_int_equal(fake_wait(&s), 0);
	assert_passed_through(&c);
	cmd_destroy(&c);
}

static void test_add_outside_range_rolls_back(void **state)
{
	enum add_mode m = ADD_OUTSIDE;
	struct fake s;
	struct cmd c;

	fake_start(&s, 2, serve_add, &m);
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, s.path, ADD_CONF, prev_53), -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_PROTOCOL);
	assert_false(c.added);
	/* The fake supervisor saw the ADD and then the release DEL. */
	assert_int_equal(fake_wait(&s), 0);
	cmd_destroy(&c);
}

/* Accepts the ADD and never answers; the second connection must be the
 * release DEL for the same key. */
static int serve_silent_add(int conn, int index, void *arg)
{
	Tscni__CniRequest *req = fake_read(conn);
	int ret;

	if (!req)
		return 1;
	if (index == 1)
		return serve_release(conn, req);
	ret = req->body_case == TSCNI__CNI_REQUEST__BODY_ADD ? 0 : 2;
	tscni__cni_request__free_unpacked(req, NULL);
	fake_drain(conn);
	return ret;
}

static void test_add_timeout(void **state)
{
	unsigned long long t0 = now_ms(), dt;
	struct fake s;
	struct cmd c;

	/* failurePolicy fail: code 11 once addTimeoutMs is spent. */
	fake_start(&s, 1, serve_silent_add, NULL);
	assert_int_equal(
		run_cmd(&c, CNI_VERB_ADD, s.path, ADD_CONF ",\"addTimeoutMs\":2000", prev_53),
		-EINVAL);
	dt = now_ms() - t0;
	assert_int_equal(c.err.code, CNI_ERR_TRY_AGAIN);
	assert_true(dt >= 1990 && dt < 2900);
	cmd_destroy(&c);
	/* The fake supervisor saw the ADD, then the plugin hang up. */
	assert_int_equal(fake_wait(&s), 0);

	/* failurePolicy ignore: prevResult back, and the ADD released. */
	fake_start(&s, 2, serve_silent_add, NULL);
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, s.path,
				 ADD_CONF ",\"addTimeoutMs\":2000,\"failurePolicy\":\"ignore\"",
				 prev_53),
			 0);
	assert_passed_through(&c);
	cmd_destroy(&c);
	assert_int_equal(fake_wait(&s), 0);
}

static void test_add_unreachable(void **state)
{
	unsigned long long t0 = now_ms();
	struct cmd c;

	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, NO_SOCKET, ADD_CONF, prev_53), -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_TRY_AGAIN);
	assert_non_null(strstr(c.err.details, NO_SOCKET));
	assert_true(now_ms() - t0 < 1000);
	cmd_destroy(&c);

	/* failurePolicy ignore: prevResult unchanged, exit 0. */
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, NO_SOCKET,
				 ADD_CONF ",\"failurePolicy\":\"ignore\"", prev_53),
			 0);
	assert_passed_through(&c);
	cmd_destroy(&c);
}

static void test_add_refusals_before_contact(void **state)
{
	static const char dangling[] =
		"{\"interfaces\":[{\"name\":\"eth0\"}],\"ips\":[{\"address\":"
		"\"10.0.0.5/24\",\"interface\":5}]}";
	struct cmd c;

	/* A socket that does not exist: contacting it would give code 11. */
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, NO_SOCKET, "\"cniVersion\":\"1.0.0\""), -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_CONFIG);
	assert_non_null(strstr(c.err.msg, "chained"));
	cmd_destroy(&c);
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, NO_SOCKET,
				 "\"cniVersion\":\"1.0.0\",\"prevResult\":%s", dangling),
			 -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_CONFIG);
	cmd_destroy(&c);
	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, NO_SOCKET,
				 "\"cniVersion\":\"1.0.0\",\"interfaceName\":\"eth0\","
				 "\"prevResult\":{}"),
			 -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_CONFIG);
	cmd_destroy(&c);
}

static void test_add_unselected_pass_through(void **state)
{
	struct cmd c;
	json_t *r;

	assert_int_equal(run_cmd(&c, CNI_VERB_ADD, NO_SOCKET,
				 "\"cniVersion\":\"0.4.0\",\"selection\":\"annotation\","
				 "\"prevResult\":%s",
				 prev_53),
			 0);
	r = out_json(&c);
	assert_string_equal(json_string_value(json_object_get(r, "cniVersion")), "0.4.0");
	assert_int_equal(json_array_size(json_object_get(r, "interfaces")), 3);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(r, "ips"), 0), "version")),
			    "4");
	json_decref(r);
	cmd_destroy(&c);
}

static void test_add_own_netns_refused(void **state)
{
	struct cni_env env = {.verb = CNI_VERB_ADD,
			      .command = "ADD",
			      .container_id = "c1",
			      .netns = NETNS,
			      .ifname = "eth0"};
	char *text = xasprintf("{\"cniVersion\":\"1.0.0\",\"name\":\"n1\",\"socketPath\":"
			       "\"" NO_SOCKET "\",\"prevResult\":%s}",
			       prev_53);
	struct cmd c;

	/* Without the test hook the plugin's own namespace is code 8. */
	cmd_init(&c, &env, now_ms());
	assert_int_equal(cmd_prepare(&c, text, strlen(text)), 0);
	assert_int_equal(cmd_exec(&c), -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_NETNS);
	cmd_destroy(&c);
	env.netns = "/var/run/netns/tscni-does-not-exist";
	cmd_init(&c, &env, now_ms());
	assert_int_equal(cmd_prepare(&c, text, strlen(text)), 0);
	assert_int_equal(cmd_exec(&c), -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_UNKNOWN_CONTAINER);
	cmd_destroy(&c);
	free(text);
}

static int serve_del(int conn, int index, void *arg)
{
	Tscni__CniRequest *req = fake_read(conn);
	int ret = 0;

	if (!req)
		return 1;
	if (req->body_case != TSCNI__CNI_REQUEST__BODY_DEL || !key_is(req->del->key) ||
	    strcmp(req->del->interface_name, "ts0") != 0 ||
	    strcmp(req->del->netns_path, arg ? (const char *)arg : NETNS) != 0)
		ret = 2;
	tscni__cni_request__free_unpacked(req, NULL);
	send_del_reply(conn);
	return ret;
}

static void test_del_ok(void **state)
{
	struct fake s;
	struct cmd c;

	fake_start(&s, 1, serve_del, NULL);
	assert_int_equal(run_cmd(&c, CNI_VERB_DEL, s.path, "\"cniVersion\":\"0.3.1\""), 0);
	assert_int_equal(fake_wait(&s), 0);
	assert_null(c.out);
	cmd_destroy(&c);
}

static void test_del_odd_netns(void **state)
{
	struct cni_env env = {.verb = CNI_VERB_DEL,
			      .command = "DEL",
			      .container_id = "c1",
			      .netns = "dummy",
			      .ifname = "eth0"};
	struct fake s;
	struct cmd c;
	char *text;

	/* A CNI_NETNS that is no absolute path reaches the supervisor as "". */
	fake_start(&s, 1, serve_del, "");
	text = xasprintf("{\"cniVersion\":\"1.0.0\",\"name\":\"n1\",\"socketPath\":\"%s\"}",
			 s.path);
	cmd_init(&c, &env, now_ms());
	assert_int_equal(cmd_prepare(&c, text, strlen(text)), 0);
	assert_int_equal(cmd_exec(&c), 0);
	assert_int_equal(fake_wait(&s), 0);
	cmd_destroy(&c);
	free(text);
}

static void test_del_unreachable_tombstone(void **state)
{
	char dir[64];
	char tdir[128], name[RECORD_KEYNAME_LEN];
	Tscni__Tombstone *t;
	const char *why = NULL;
	int dfd, err = 0;
	struct cmd c;

	fake_tmpdir(dir, sizeof(dir), "/tmp/tscni-cni-state.");
	assert_int_equal(run_cmd(&c, CNI_VERB_DEL, NO_SOCKET,
				 "\"cniVersion\":\"1.1.0\",\"stateDir\":\"%s/sub\"", dir),
			 0);
	cmd_destroy(&c);
	snprintf(tdir, sizeof(tdir), "%s/sub/tombstones", dir);
	dfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	record_key_filename("n1", "c1", "eth0", name, sizeof(name));
	assert_string_equal(name, "n1_c1_eth0");
	t = record_read_tombstone(dfd, name, &err, &why);
	assert_non_null(t);
	assert_true(key_is(t->key));
	assert_string_equal(t->netns_path, NETNS);
	assert_string_equal(t->interface_name, "ts0");
	assert_true(t->created_unix > 0);
	tscni__tombstone__free_unpacked(t, NULL);
	/* A second DEL succeeds too and rewrites the same tombstone. */
	assert_int_equal(run_cmd(&c, CNI_VERB_DEL, NO_SOCKET,
				 "\"cniVersion\":\"1.1.0\",\"stateDir\":\"%s/sub\"", dir),
			 0);
	cmd_destroy(&c);
	assert_int_equal(unlinkat(dfd, name, 0), 0);
	close(dfd);
	assert_int_equal(rmdir(tdir), 0);
	snprintf(tdir, sizeof(tdir), "%s/sub", dir);
	assert_int_equal(rmdir(tdir), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void test_del_tombstone_fails_still_ok(void **state)
{
	struct cmd c;

	/* /proc cannot hold a tombstone: logged, and DEL still succeeds. */
	assert_int_equal(run_cmd(&c, CNI_VERB_DEL, NO_SOCKET,
				 "\"cniVersion\":\"1.1.0\",\"stateDir\":\"/proc/tscni\""),
			 0);
	cmd_destroy(&c);
}

static int serve_check(int conn, int index, void *arg)
{
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__Error e = TSCNI__ERROR__INIT;
	Tscni__CniRequest *req = fake_read(conn);
	struct ip_prefix p;
	int ret = 0;

	if (!req)
		return 1;
	if (req->body_case != TSCNI__CNI_REQUEST__BODY_CHECK || !key_is(req->check->key) ||
	    req->check->n_expected_addresses != 2)
		ret = 2;
	else if (ip_prefix_from_pb(req->check->expected_addresses[0], &p) < 0 || p.len != 32)
		ret = 3;
	tscni__cni_request__free_unpacked(req, NULL);
	r.protocol_version = CNI_PROTOCOL_VERSION;
	r.body_case = TSCNI__CNI_REPLY__BODY_ERROR;
	r.error = &e;
	e.cni_code = 103;
	e.msg = "ts0 does not match";
	e.details = "ts0 is missing";
	fake_send(conn, &r);
	return ret;
}

static void test_check(void **state)
{
	static const char ours[] =
		"{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\",\"sandbox\":\"" NETNS
		"\"},{\"name\":\"ts0\",\"sandbox\":\"" NETNS "\"}],\"ips\":[{\"address\":"
		"\"10.0.0.5/24\",\"interface\":0},{\"address\":\"100.64.0.7/32\",\"interface\":1},"
		"{\"address\":\"fd7a:115c:a1e0::7/128\",\"interface\":1}]}";
	struct fake s;
	struct cmd c;

	/* No ts0 in prevResult: ok without asking anyone. */
	assert_int_equal(run_cmd(&c, CNI_VERB_CHECK, NO_SOCKET,
				 "\"cniVersion\":\"1.0.0\",\"prevResult\":%s", prev_53),
			 0);
	assert_null(c.out);
	cmd_destroy(&c);
	/* No prevResult: 7. */
	assert_int_equal(run_cmd(&c, CNI_VERB_CHECK, NO_SOCKET, "\"cniVersion\":\"1.0.0\""),
			 -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_CONFIG);
	cmd_destroy(&c);
	/* Below 0.4.0: 1. */
	assert_int_equal(run_cmd(&c, CNI_VERB_CHECK, NO_SOCKET,
				 "\"cniVersion\":\"0.3.1\",\"prevResult\":%s", prev_53),
			 -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_VERSION);
	cmd_destroy(&c);
	/* Ours present: the supervisor's 103 comes through. */
	fake_start(&s, 1, serve_check, NULL);
	assert_int_equal(run_cmd(&c, CNI_VERB_CHECK, s.path,
				 "\"cniVersion\":\"1.0.0\",\"prevResult\":%s", ours),
			 -EINVAL);
	assert_int_equal(fake_wait(&s), 0);
	assert_int_equal(c.err.code, CNI_ERR_CHECK);
	assert_non_null(strstr(c.err.details, "ts0"));
	cmd_destroy(&c);
	/* Supervisor missing: 11 within checkTimeoutMs. */
	unsigned long long t0 = now_ms();

	assert_int_equal(
		run_cmd(&c, CNI_VERB_CHECK, NO_SOCKET,
			"\"cniVersion\":\"1.0.0\",\"checkTimeoutMs\":800,\"prevResult\":%s", ours),
		-EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_TRY_AGAIN);
	assert_true(now_ms() - t0 < 1000);
	cmd_destroy(&c);
}

static int serve_gc(int conn, int index, void *arg)
{
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__GcReply g = TSCNI__GC_REPLY__INIT;
	Tscni__CniRequest *req = fake_read(conn);
	char *failed[] = {"n1/B/eth0"};
	int ret = 0;

	if (!req)
		return 1;
	if (req->body_case != TSCNI__CNI_REQUEST__BODY_GC || strcmp(req->gc->network, "n1") != 0 ||
	    req->gc->n_valid != 1 || strcmp(req->gc->valid[0]->container_id, "A") != 0 ||
	    strcmp(req->gc->valid[0]->ifname, "eth0") != 0)
		ret = 2;
	tscni__cni_request__free_unpacked(req, NULL);
	r.protocol_version = CNI_PROTOCOL_VERSION;
	r.body_case = TSCNI__CNI_REPLY__BODY_GC;
	r.gc = &g;
	g.released = 1;
	if (arg) {
		g.n_failed = 1;
		g.failed = failed;
	}
	fake_send(conn, &r);
	return ret;
}

static void test_gc(void **state)
{
	static const char list[] = "\"cni.dev/valid-attachments\":[{\"containerID\":\"A\","
				   "\"ifname\":\"eth0\"}]";
	struct fake s;
	struct cmd c;

	/* No list: nothing to do, nobody asked. */
	assert_int_equal(run_cmd(&c, CNI_VERB_GC, NO_SOCKET, "\"cniVersion\":\"1.1.0\""), 0);
	cmd_destroy(&c);
	fake_start(&s, 1, serve_gc, NULL);
	assert_int_equal(run_cmd(&c, CNI_VERB_GC, s.path, "\"cniVersion\":\"1.1.0\",%s", list), 0);
	assert_int_equal(fake_wait(&s), 0);
	cmd_destroy(&c);
	fake_start(&s, 1, serve_gc, "fail");
	assert_int_equal(run_cmd(&c, CNI_VERB_GC, s.path, "\"cniVersion\":\"1.1.0\",%s", list),
			 -EINVAL);
	assert_int_equal(fake_wait(&s), 0);
	assert_int_equal(c.err.code, CNI_ERR_INTERNAL);
	assert_non_null(strstr(c.err.details, "n1/B/eth0"));
	cmd_destroy(&c);
	assert_int_equal(run_cmd(&c, CNI_VERB_GC, NO_SOCKET, "\"cniVersion\":\"1.1.0\",%s", list),
			 -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_TRY_AGAIN);
	cmd_destroy(&c);
	assert_int_equal(run_cmd(&c, CNI_VERB_GC, NO_SOCKET, "\"cniVersion\":\"1.0.0\",%s", list),
			 -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_VERSION);
	cmd_destroy(&c);
}

static int serve_status(int conn, int index, void *arg)
{
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__StatusReply st = TSCNI__STATUS_REPLY__INIT;
	Tscni__CniRequest *req = fake_read(conn);
	int ret = 0;

	if (!req)
		return 1;
	if (req->body_case != TSCNI__CNI_REQUEST__BODY_STATUS || req->status->verbose)
		ret = 2;
	tscni__cni_request__free_unpacked(req, NULL);
	r.protocol_version = CNI_PROTOCOL_VERSION;
	r.body_case = TSCNI__CNI_REPLY__BODY_STATUS;
	r.status = &st;
	st.health = *(Tscni__Health *)arg;
	st.reason = "control plane lost";
	fake_send(conn, &r);
	return ret;
}

static void test_status(void **state)
{
	static const struct {
		Tscni__Health h;
		unsigned int code;
	} cases[] = {
		{TSCNI__HEALTH__HEALTH_READY, 0},
		{TSCNI__HEALTH__HEALTH_NOT_READY, 50},
		{TSCNI__HEALTH__HEALTH_DEGRADED, 51},
	};
	struct fake s;
	struct cmd c;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Tscni__Health h = cases[i].h;

		fake_start(&s, 1, serve_status, &h);
		assert_int_equal(run_cmd(&c, CNI_VERB_STATUS, s.path, "\"cniVersion\":\"1.1.0\""),
				 cases[i].code ? -EINVAL : 0);
		assert_int_equal(fake_wait(&s), 0);
		if (cases[i].code) {
			assert_int_equal(c.err.code, cases[i].code);
			assert_non_null(strstr(c.err.details, "control plane lost"));
		}
		assert_null(c.out);
		cmd_destroy(&c);
	}
	assert_int_equal(run_cmd(&c, CNI_VERB_STATUS, NO_SOCKET, "\"cniVersion\":\"1.1.0\""),
			 -EINVAL);
	assert_int_equal(c.err.code, CNI_ERR_NOT_READY);
	cmd_destroy(&c);
	assert_int_equal(run_cmd(&c, CNI_VERB_STATUS, NO_SOCKET,
				 "\"cniVersion\":\"1.1.0\",\"failurePolicy\":\"ignore\""),
			 0);
	cmd_destroy(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_ok),
		cmocka_unit_test(test_add_pending),
		cmocka_unit_test(test_add_refused),
		cmocka_unit_test(test_add_not_ready_ignore),
		cmocka_unit_test(test_add_outside_range_rolls_back),
		cmocka_unit_test(test_add_timeout),
		cmocka_unit_test(test_add_unreachable),
		cmocka_unit_test(test_add_refusals_before_contact),
		cmocka_unit_test(test_add_unselected_pass_through),
		cmocka_unit_test(test_add_own_netns_refused),
		cmocka_unit_test(test_del_ok),
		cmocka_unit_test(test_del_odd_netns),
		cmocka_unit_test(test_del_unreachable_tombstone),
		cmocka_unit_test(test_del_tombstone_fails_still_ok),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_gc),
		cmocka_unit_test(test_status),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init("test", LOG_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
