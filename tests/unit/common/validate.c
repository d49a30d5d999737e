/* Unit tests for common/validate.c: the name/ifname/path rules, every limit
 * of enum validate_limits at and one over its bound, exact key lengths,
 * prefixes, enum ranges, required submessages and unset oneofs. Messages
 * also go through pack + unpack once, since protobuf-c's unpacked form
 * (empty strings, not NULL) is what the validators really see. */
#include "common/validate.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "mem.h"

/* A string of n copies of c (caller frees). */
static char *rep(char c, size_t n)
{
	char *s = xmalloc(n + 1);

	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* ---- names ---- */

static const struct {
	const char *s;
	bool name, ifname, path;
} name_vectors[] = {
	/* s               valid_name  valid_ifname  valid_abs_path */
	{"a", true, true, false},
	{"A0_.-", true, true, false},
	{"eth0", true, true, false},
	{"", false, false, false},
	{".a", false, true, false},
	{"-a", false, true, false},
	{"_a", false, true, false},
	{".", false, false, false},
	{"..", false, false, false},
	{"a/b", false, false, false},
	{"a:b", false, false, false},
	{"a b", false, false, false},
	{"a\tb", false, false, false},
	{"a\nb", false, false, false},
	{"a\x7f", false, false, false},
	{"a\x01", false, false, false},
	{"caf\xc3\xa9", false, true, false},
	{"/", false, false, true},
	{"/var/run/netns/cni-1", false, false, true},
	{"/proc/1/ns/net", false, false, true},
	{"/a\nb", false, false, false},
	{"/a\x1b[0m", false, false, false},
	{"relative/path", false, false, false},
};

static void test_name_vectors(void **state)
{
	for (size_t i = 0; i < sizeof(name_vectors) / sizeof(name_vectors[0]); i++) {
		const char *s = name_vectors[i].s;

		if (valid_name(s, 64) != name_vectors[i].name)
			fail_msg("vector %zu: valid_name(\"%s\")", i, s);
		if (valid_ifname(s) != name_vectors[i].ifname)
			fail_msg("vector %zu: valid_ifname(\"%s\")", i, s);
		if (valid_abs_path(s) != name_vectors[i].path)
			fail_msg("vector %zu: valid_abs_path(\"%s\")", i, s);
	}
	assert_false(valid_name(NULL, 10));
	assert_false(valid_ifname(NULL));
	assert_false(valid_abs_path(NULL));
}

static void test_name_bounds(void **state)
{
	char *s = rep('a', 254), *p;

	assert_true(valid_name(s + 1, 253));
	assert_false(valid_name(s, 253));
	assert_true(valid_name("abc", 3));
	assert_false(valid_name("abcd", 3));
	assert_false(valid_name("a", 0));
	assert_true(valid_ifname(s + 254 - 15));
	assert_false(valid_ifname(s + 254 - 16));
	free(s);
	p = rep('a', PATH_MAX_LEN + 1);
	p[0] = '/';
	assert_false(valid_abs_path(p));
	p[PATH_MAX_LEN] = '\0';
	assert_true(valid_abs_path(p));
	free(p);
}

/* ---- a valid CNI ADD request, mutated per case ---- */

static uint8_t v4[4] = {100, 64, 0, 1};
static uint8_t v6[16] = {0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0};

struct add {
	Tscni__CniRequest req;
	Tscni__AddRequest add;
	Tscni__AttachmentKey key;
	Tscni__PodMeta pod;
};

static void add_init(struct add *a)
{
	tscni__cni_request__init(&a->req);
	tscni__add_request__init(&a->add);
	tscni__attachment_key__init(&a->key);
	tscni__pod_meta__init(&a->pod);
	a->key.network = "tsnet";
	a->key.container_id = "c0ffee";
	a->key.ifname = "eth0";
	a->pod.namespace_ = "default";
	a->pod.name = "web-0";
	a->pod.uid = "3f2a0c5e-1111";
	a->add.key = &a->key;
	a->add.pod = &a->pod;
	a->add.netns_path = "/var/run/netns/x";
	a->add.interface_name = "ts0";
	a->add.cni_version = "1.1.0";
	a->req.protocol_version = 1;
	a->req.body_case = TSCNI__CNI_REQUEST__BODY_ADD;
	a->req.add = &a->add;
}

/* Validates m as sent, and again after a pack/unpack round trip. */
static int check_req(const Tscni__CniRequest *m)
{
	const char *why = NULL;
	int ret = validate_cni_request(m, &why), ret2;
	size_t len = tscni__cni_request__get_packed_size(m);
	uint8_t *buf = xmalloc(len + 1);
	Tscni__CniRequest *u;

	if (ret < 0)
		assert_non_null(why);
	tscni__cni_request__pack(m, buf);
	u = tscni__cni_request__unpack(NULL, len, buf);
	assert_non_null(u);
	why = NULL;
	ret2 = validate_cni_request(u, &why);
	if (ret2 < 0)
		assert_non_null(why);
	tscni__cni_request__free_unpacked(u, NULL);
	free(buf);
	assert_int_equal(ret, ret2);
	return ret;
}

/* ---- one string field of an otherwise valid message set ---- */

enum field {
	/* in the ADD request */
	FIELD_NETWORK,
	FIELD_CONTAINER_ID,
	FIELD_IFNAME,
	FIELD_NETNS_PATH,
	FIELD_INTERFACE_NAME,
	FIELD_CNI_VERSION,
	FIELD_POD_NAME,
	FIELD_POD_UID,
	/* in other messages */
	FIELD_ANNOTATION_KEY,
	FIELD_ANNOTATION_VALUE,
	FIELD_STATUS_REASON,
	FIELD_START_HOSTNAME,
	FIELD_START_AUTH_KEY,
	FIELD_START_URL,
	FIELD_STOP_AUTH_KEY,
	FIELD_RESOLVE_HOST,
};

/* Validates an ADD whose field f (one of the ADD's) is s. */
static int add_with(enum field f, char *s)
{
	struct add a;

	add_init(&a);
	switch (f) {
	case FIELD_NETWORK:
		a.key.network = s;
		break;
	case FIELD_CONTAINER_ID:
		a.key.container_id = s;
		break;
	case FIELD_IFNAME:
		a.key.ifname = s;
		break;
	case FIELD_NETNS_PATH:
		a.add.netns_path = s;
		break;
	case FIELD_INTERFACE_NAME:
		a.add.interface_name = s;
		break;
	case FIELD_CNI_VERSION:
		a.add.cni_version = s;
		break;
	case FIELD_POD_NAME:
		a.pod.name = s;
		break;
	case FIELD_POD_UID:
		a.pod.uid = s;
		break;
	default:
		fail_msg("field %d is not in the ADD request", (int)f);
	}
	return check_req(&a.req);
}

/* An ADD with one annotation. */
static int annotation(const char *key, const char *value)
{
	struct add a;
	Tscni__Annotation an, *v[1] = {&an};

	tscni__annotation__init(&an);
	an.key = (char *)key;
	an.value = (char *)value;
	add_init(&a);
	a.add.n_annotations = 1;
	a.add.annotations = v;
	return check_req(&a.req);
}

static int status_reply_with(size_t pods, const char *reason)
{
	Tscni__CniReply rep_ = TSCNI__CNI_REPLY__INIT;
	Tscni__StatusReply st = TSCNI__STATUS_REPLY__INIT;
	Tscni__PodStatus ps = TSCNI__POD_STATUS__INIT, **v = xcalloc(pods + 1, sizeof(*v));
	Tscni__AttachmentKey key = {PROTOBUF_C_MESSAGE_INIT(&tscni__attachment_key__descriptor),
				    "tsnet", "c0ffee", "eth0"};
	const char *why;
	int ret;

	ps.key = &key;
	ps.state = "ready";
	for (size_t i = 0; i < pods; i++)
		v[i] = &ps;
	st.health = TSCNI__HEALTH__HEALTH_READY;
	st.reason = (char *)reason;
	st.n_pod = pods;
	st.pod = v;
	rep_.protocol_version = 1;
	rep_.body_case = TSCNI__CNI_REPLY__BODY_STATUS;
	rep_.status = &st;
	ret = validate_cni_reply(&rep_, &why);
	free(v);
	return ret;
}

static int start_full(const char *hostname, const char *auth_key, const char *url, size_t ca_len,
		      size_t key_len, char **deny, size_t n_deny)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__Start s = TSCNI__START__INIT;
	uint8_t *ca = xcalloc(ca_len + 1, 1), key[40] = {0};
	const char *why;
	int ret;

	s.pod_uid = "3f2a";
	s.hostname = (char *)hostname;
	s.machine_private.data = key;
	s.machine_private.len = key_len;
	s.node_private.data = key;
	s.node_private.len = 32;
	s.auth_key = (char *)auth_key;
	s.control_url = (char *)url;
	s.ca_bundle.data = ca;
	s.ca_bundle.len = ca_len;
	s.fd_count = 2;
	s.mtu = 1280;
	s.endpoint_deny_iface = deny;
	s.n_endpoint_deny_iface = n_deny;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_START;
	m.start = &s;
	ret = validate_supervisor_msg(&m, &why);
	/* Start.old_node_public (a key rotation): none, or exactly 32 bytes. */
	for (size_t len = 1; ret == 0 && len <= 33; len++) {
		s.old_node_public.data = key;
		s.old_node_public.len = len;
		if (validate_supervisor_msg(&m, &why) != (len == 32 ? 0 : -EBADMSG))
			fail_msg("Start.old_node_public of %zu bytes", len);
	}
	free(ca);
	return ret;
}

static int start_with(const char *hostname, const char *auth_key, const char *url, size_t ca_len,
		      size_t key_len)
{
	return start_full(hostname, auth_key, url, ca_len, key_len, NULL, 0);
}

/* Start.endpoint_deny_iface: at most ENDPOINT_DENY_MAX globs, each
 * valid_iface_glob (1..ENDPOINT_DENY_GLOB_MAX_LEN printable bytes, no space
 * or '/'). */
static void test_start_deny(void **state)
{
	char *globs[ENDPOINT_DENY_MAX + 1], longest[ENDPOINT_DENY_GLOB_MAX_LEN + 2];
	static const char *const bad[] = {"", "a b", "eth/0", "a\x7f", "\t", "\xc3\xa9"};

	(void)state;
	for (size_t i = 0; i <= ENDPOINT_DENY_MAX; i++)
		globs[i] = "ens*";
	assert_int_equal(start_full("h", "", "", 0, 32, globs, ENDPOINT_DENY_MAX), 0);
	assert_int_equal(start_full("h", "", "", 0, 32, globs, ENDPOINT_DENY_MAX + 1), -EBADMSG);
	memset(longest, 'a', sizeof(longest));
	longest[ENDPOINT_DENY_GLOB_MAX_LEN] = '\0';
	globs[0] = longest;
	assert_int_equal(start_full("h", "", "", 0, 32, globs, 1), 0);
	longest[ENDPOINT_DENY_GLOB_MAX_LEN] = 'a';
	longest[ENDPOINT_DENY_GLOB_MAX_LEN + 1] = '\0';
	assert_int_equal(start_full("h", "", "", 0, 32, globs, 1), -EBADMSG);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		globs[1] = (char *)bad[i];
		if (start_full("h", "", "", 0, 32, globs + 1, 1) != -EBADMSG)
			fail_msg("glob %zu accepted", i);
	}
	assert_true(valid_iface_glob("cali*"));
	assert_true(valid_iface_glob("br-[0-9]?"));
}

/* Start.tags and Identity.tags: at most POD_TAGS_MAX valid tags, none twice
 * (the supervisor checked them; a record from disk is checked again). */
static int tags_in(char **tags, size_t n, bool identity)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__Start s = TSCNI__START__INIT;
	Tscni__Identity id = TSCNI__IDENTITY__INIT;
	uint8_t key[32] = {0};
	const char *why;

	s.pod_uid = id.pod_uid = "3f2a";
	s.machine_private.data = s.node_private.data = key;
	s.machine_private.len = s.node_private.len = 32;
	s.tags = tags;
	s.n_tags = n;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_START;
	m.start = &s;
	if (!identity)
		return validate_supervisor_msg(&m, &why);
	id.machine_id = "0123abcd";
	id.node_name = "node-1";
	id.machine_private.data = id.node_private.data = key;
	id.machine_private.len = id.node_private.len = 32;
	id.tags = tags;
	id.n_tags = n;
	return validate_identity(&id, &why);
}

static void test_tags(void **state)
{
	static char names[POD_TAGS_MAX + 1][16];
	char *tags[POD_TAGS_MAX + 1];

	(void)state;
	for (size_t i = 0; i <= POD_TAGS_MAX; i++) {
		snprintf(names[i], sizeof(names[i]), "tag:t%zu", i);
		tags[i] = names[i];
	}
	for (int identity = 0; identity < 2; identity++) {
		assert_int_equal(tags_in(tags, 0, identity), 0);
		assert_int_equal(tags_in(tags, POD_TAGS_MAX, identity), 0);
		assert_int_equal(tags_in(tags, POD_TAGS_MAX + 1, identity), -EBADMSG);
		tags[1] = names[0]; /* a repeat */
		assert_int_equal(tags_in(tags, 2, identity), -EBADMSG);
		tags[1] = "tag:";
		assert_int_equal(tags_in(tags, 2, identity), -EBADMSG);
		tags[1] = "web";
		assert_int_equal(tags_in(tags, 2, identity), -EBADMSG);
		tags[1] = names[1];
	}
}

static int stop_with(char *auth_key)
{
	Tscni__SupervisorMsg m = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__Stop s = TSCNI__STOP__INIT;
	const char *why;

	s.logout = true;
	s.auth_key = auth_key;
	m.body_case = TSCNI__SUPERVISOR_MSG__BODY_STOP;
	m.stop = &s;
	return validate_supervisor_msg(&m, &why);
}

static int resolve_with(char *host)
{
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__ResolveRequest r = TSCNI__RESOLVE_REQUEST__INIT;
	const char *why;

	r.host = host;
	m.body_case = TSCNI__WORKER_MSG__BODY_RESOLVE_REQUEST;
	m.resolve_request = &r;
	return validate_worker_msg(&m, &why);
}

/* Validates a valid message whose field f is s. */
static int message_with(enum field f, char *s)
{
	switch (f) {
	case FIELD_ANNOTATION_KEY:
		return annotation(s, "v");
	case FIELD_ANNOTATION_VALUE:
		return annotation("k", s);
	case FIELD_STATUS_REASON:
		return status_reply_with(0, s);
	case FIELD_START_HOSTNAME:
		return start_with(s, "", "", 0, 32);
	case FIELD_START_AUTH_KEY:
		return start_with("h", s, "", 0, 32);
	case FIELD_START_URL:
		return start_with("h", "", s, 0, 32);
	case FIELD_STOP_AUTH_KEY:
		return stop_with(s);
	case FIELD_RESOLVE_HOST:
		return resolve_with(s);
	default:
		return add_with(f, s);
	}
}

/* Validates a valid message whose field f is n bytes long (a path
 * starts with '/'). */
static int field_of_len(enum field f, size_t n)
{
	char *s = rep('x', n);
	int ret;

	if (f == FIELD_NETNS_PATH && n > 0)
		s[0] = '/';
	ret = message_with(f, s);
	free(s);
	return ret;
}

/* ---- the ADD request ---- */

static void test_add_valid_and_required(void **state)
{
	static const struct {
		enum field field;
		char *value;
		int want;
	} cases[] = {
		/* Pod metadata is optional, empty fields too. */
		{FIELD_POD_UID, "", 0},
		{FIELD_POD_UID, "../../etc", -EBADMSG},
		{FIELD_NETNS_PATH, "", -EBADMSG},
		{FIELD_NETNS_PATH, "relative", -EBADMSG},
		{FIELD_INTERFACE_NAME, "", -EBADMSG},
		{FIELD_CNI_VERSION, "", -EBADMSG},
		{FIELD_CONTAINER_ID, "c0ffee\n", -EBADMSG},
	};
	struct add a;
	const char *why = NULL;

	add_init(&a);
	assert_int_equal(check_req(&a.req), 0);

	a.req.protocol_version = 0;
	assert_int_equal(validate_cni_request(&a.req, &why), -EBADMSG);
	assert_string_equal(why, "protocol_version missing");

	add_init(&a);
	a.add.key = NULL;
	assert_int_equal(check_req(&a.req), -EBADMSG);
	validate_cni_request(&a.req, &why);
	assert_string_equal(why, "attachment key missing");

	add_init(&a);
	a.req.body_case = TSCNI__CNI_REQUEST__BODY__NOT_SET;
	a.req.add = NULL;
	assert_int_equal(check_req(&a.req), -EBADMSG);
	validate_cni_request(&a.req, &why);
	assert_string_equal(why, "request body not set");

	/* A oneof case with no message behind it (only a buggy sender). */
	add_init(&a);
	a.req.add = NULL;
	assert_int_equal(validate_cni_request(&a.req, &why), -EBADMSG);
	assert_string_equal(why, "add body missing");

	add_init(&a);
	a.add.pod = NULL;
	assert_int_equal(check_req(&a.req), 0);

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (add_with(cases[i].field, cases[i].value) != cases[i].want)
			fail_msg("case %zu: field %d = \"%s\": want %d", i, (int)cases[i].field,
				 cases[i].value, cases[i].want);
}

/* ---- limits: at the bound accepted, one over refused ---- */

/* Each builds a message whose limited part has size n and validates it. */
typedef int limit_fn(size_t n);

static int lim_annotations(size_t n)
{
	struct add a;
	Tscni__Annotation an, **v = xcalloc(n + 1, sizeof(*v));
	int ret;

	tscni__annotation__init(&an);
	an.key = "tailscale.com/tags";
	an.value = "tag:k8s";
	for (size_t i = 0; i < n; i++)
		v[i] = &an;
	add_init(&a);
	a.add.n_annotations = n;
	a.add.annotations = v;
	ret = check_req(&a.req);
	free(v);
	return ret;
}

static int lim_gc(size_t n)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__GcRequest gc = TSCNI__GC_REQUEST__INIT;
	Tscni__GcAttachment ga = TSCNI__GC_ATTACHMENT__INIT, **v = xcalloc(n + 1, sizeof(*v));
	const char *why;
	int ret;

	ga.container_id = "c0ffee";
	ga.ifname = "eth0";
	for (size_t i = 0; i < n; i++)
		v[i] = &ga;
	gc.network = "tsnet";
	gc.n_valid = n;
	gc.valid = v;
	req.protocol_version = 1;
	req.body_case = TSCNI__CNI_REQUEST__BODY_GC;
	req.gc = &gc;
	ret = validate_cni_request(&req, &why);
	free(v);
	return ret;
}

static int lim_check_prefixes(size_t n)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__CheckRequest chk = TSCNI__CHECK_REQUEST__INIT;
	Tscni__AttachmentKey key = {PROTOBUF_C_MESSAGE_INIT(&tscni__attachment_key__descriptor),
				    "tsnet", "c0ffee", "eth0"};
	Tscni__IpPrefix p = TSCNI__IP_PREFIX__INIT, **v = xcalloc(n + 1, sizeof(*v));
	int ret;

	p.addr.data = v4;
	p.addr.len = 4;
	p.prefix_len = 32;
	for (size_t i = 0; i < n; i++)
		v[i] = &p;
	chk.key = &key;
	chk.netns_path = "/proc/1/ns/net";
	chk.interface_name = "ts0";
	chk.n_expected_addresses = n;
	chk.expected_addresses = v;
	req.protocol_version = 1;
	req.body_case = TSCNI__CNI_REQUEST__BODY_CHECK;
	req.check = &chk;
	ret = check_req(&req);
	free(v);
	return ret;
}

static int lim_status_pods(size_t n)
{
	return status_reply_with(n, "");
}

static int lim_ca(size_t n)
{
	return start_with("h", "", "", n, 32);
}

static const struct {
	const char *name;
	enum field field;
	size_t max;
} string_limits[] = {
	{"network", FIELD_NETWORK, NAME_MAX_LEN},
	{"container_id", FIELD_CONTAINER_ID, CONTAINER_ID_MAX_LEN},
	{"ifname", FIELD_IFNAME, IFNAME_MAX_LEN},
	{"netns_path", FIELD_NETNS_PATH, PATH_MAX_LEN},
	{"pod.name", FIELD_POD_NAME, POD_FIELD_MAX_LEN},
	{"annotation key", FIELD_ANNOTATION_KEY, ANNOTATION_KEY_MAX_LEN},
	{"annotation value", FIELD_ANNOTATION_VALUE, ANNOTATION_VALUE_MAX_LEN},
	{"status reason", FIELD_STATUS_REASON, MSG_MAX_LEN},
	{"start hostname", FIELD_START_HOSTNAME, HOST_MAX_LEN},
	{"start auth_key", FIELD_START_AUTH_KEY, AUTHKEY_MAX_LEN},
	{"start control_url", FIELD_START_URL, URL_MAX_LEN},
	{"stop auth_key", FIELD_STOP_AUTH_KEY, AUTHKEY_MAX_LEN},
	{"resolve host", FIELD_RESOLVE_HOST, HOST_MAX_LEN},
};

static const struct {
	const char *name;
	limit_fn *fn;
	size_t max;
} size_limits[] = {
	{"annotations", lim_annotations, ANNOTATION_MAX},
	{"gc.valid", lim_gc, GC_MAX_ATTACHMENTS},
	{"check prefixes", lim_check_prefixes, PREFIX_MAX},
	{"status pods", lim_status_pods, STATUS_MAX_PODS},
	{"start ca_bundle", lim_ca, CA_CHUNK_MAX_LEN},
};

/* at and over are what validating max and max + 1 returned. */
static void limit_is(const char *name, size_t max, int at, int over)
{
	if (at != 0)
		fail_msg("%s: %zu rejected", name, max);
	if (over != -EBADMSG)
		fail_msg("%s: %zu accepted", name, max + 1);
}

static void test_limits(void **state)
{
	for (size_t i = 0; i < sizeof(string_limits) / sizeof(string_limits[0]); i++)
		limit_is(string_limits[i].name, string_limits[i].max,
			 field_of_len(string_limits[i].field, string_limits[i].max),
			 field_of_len(string_limits[i].field, string_limits[i].max + 1));
	for (size_t i = 0; i < sizeof(size_limits) / sizeof(size_limits[0]); i++)
		limit_is(size_limits[i].name, size_limits[i].max,
			 size_limits[i].fn(size_limits[i].max),
			 size_limits[i].fn(size_limits[i].max + 1));
}

static void test_keys_exact(void **state)
{
	assert_int_equal(start_with("h", "", "", 0, 31), -EBADMSG);
	assert_int_equal(start_with("h", "", "", 0, 32), 0);
	assert_int_equal(start_with("h", "", "", 0, 33), -EBADMSG);
	assert_int_equal(start_with("h", "", "", 0, 0), -EBADMSG);
	assert_int_equal(start_with("h", "tskey-\n", "", 0, 32), -EBADMSG);
	assert_int_equal(stop_with("tskey-\n"), -EBADMSG);
	assert_int_equal(stop_with(""), 0);

	uint8_t key[33] = {0};
	Tscni__Identity id = TSCNI__IDENTITY__INIT;
	const char *why;

	id.pod_uid = "3f2a";
	id.machine_id = "0123abcd";
	id.node_name = "node-1";
	id.node_private.data = key;
	id.node_private.len = 32;
	id.machine_private.data = key;
	for (size_t len = 31; len <= 33; len++) {
		id.machine_private.len = len;
		assert_int_equal(validate_identity(&id, &why), len == 32 ? 0 : -EBADMSG);
	}
	id.machine_private.len = 32;
	for (size_t len = 31; len <= 33; len++) {
		id.node_private.len = len;
		assert_int_equal(validate_identity(&id, &why), len == 32 ? 0 : -EBADMSG);
	}
	id.node_private.len = 32;
	/* A key rotation's old public key: none, or exactly 32 bytes. */
	id.old_node_public.data = key;
	for (size_t len = 0; len <= 33; len++) {
		id.old_node_public.len = len;
		assert_int_equal(validate_identity(&id, &why),
				 len == 0 || len == 32 ? 0 : -EBADMSG);
	}
	id.old_node_public.len = 0;
	id.machine_id = "";
	assert_int_equal(validate_identity(&id, &why), -EBADMSG);
	assert_string_equal(why, "machine_id invalid");
	id.machine_id = "0123abcd";
	id.node_name = "";
	assert_int_equal(validate_identity(&id, &why), -EBADMSG);
	assert_string_equal(why, "node_name invalid");
}

static const struct {
	size_t len;
	uint32_t prefix_len;
	int want;
} prefix_vectors[] = {
	{4, 0, 0},	  {4, 32, 0},	       {4, 33, -EBADMSG},
	{16, 128, 0},	  {16, 129, -EBADMSG}, {0, 0, -EBADMSG},
	{5, 8, -EBADMSG}, {15, 8, -EBADMSG},   {17, 8, -EBADMSG},
};

static void test_prefixes(void **state)
{
	uint8_t buf[17] = {0};

	for (size_t i = 0; i < sizeof(prefix_vectors) / sizeof(prefix_vectors[0]); i++) {
		Tscni__IpPrefix p = TSCNI__IP_PREFIX__INIT;
		const char *why = NULL;

		p.addr.data = prefix_vectors[i].len ? buf : NULL;
		p.addr.len = prefix_vectors[i].len;
		p.prefix_len = prefix_vectors[i].prefix_len;
		if (validate_ip_prefix(&p, &why) != prefix_vectors[i].want)
			fail_msg("prefix vector %zu", i);
		if (prefix_vectors[i].want)
			assert_non_null(why);
	}
}

static void test_enums(void **state)
{
	Tscni__WorkerMsg w = TSCNI__WORKER_MSG__INIT;
	Tscni__Event ev = TSCNI__EVENT__INIT;
	Tscni__NetopRequest nr = TSCNI__NETOP_REQUEST__INIT;
	Tscni__IpPrefix p = TSCNI__IP_PREFIX__INIT;
	Tscni__Log lg = TSCNI__LOG__INIT;
	Tscni__Job job = TSCNI__JOB__INIT;
	uint8_t job_np[32] = {1};
	Tscni__Attachment att = TSCNI__ATTACHMENT__INIT;
	Tscni__AttachmentKey key = {PROTOBUF_C_MESSAGE_INIT(&tscni__attachment_key__descriptor),
				    "tsnet", "c0ffee", "eth0"};
	const char *why;

	w.body_case = TSCNI__WORKER_MSG__BODY_EVENT;
	w.event = &ev;
	for (int k = 0; k <= 6; k++) {
		ev.kind = (Tscni__EventKind)k;
		assert_int_equal(validate_worker_msg(&w, &why), k >= 1 && k <= 5 ? 0 : -EBADMSG);
	}
	ev.kind = (Tscni__EventKind)-1;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);

	p.addr.data = v6;
	p.addr.len = 16;
	p.prefix_len = 64;
	nr.prefix = &p;
	w.body_case = TSCNI__WORKER_MSG__BODY_NETOP_REQUEST;
	w.netop_request = &nr;
	for (int k = 0; k <= 5; k++) {
		nr.kind = (Tscni__NetopKind)k;
		assert_int_equal(validate_worker_msg(&w, &why), k >= 1 && k <= 4 ? 0 : -EBADMSG);
	}
	nr.kind = TSCNI__NETOP_KIND__NETOP_ROUTE_ADD;
	nr.prefix = NULL;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
	assert_string_equal(why, "netop_request.prefix missing");

	w.body_case = TSCNI__WORKER_MSG__BODY_LOG;
	w.log = &lg;
	lg.msg = "hello";
	lg.level = 3;
	assert_int_equal(validate_worker_msg(&w, &why), 0);
	lg.level = 4;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);

	job.id = "j1";
	job.pod_uid = "3f2a";
	job.stable_node_id = "nX";
	job.node_public.data = job_np;
	job.node_public.len = 32;
	for (int k = 0; k <= 2; k++) {
		job.kind = (Tscni__JobKind)k;
		assert_int_equal(validate_job(&job, &why), k == 1 ? 0 : -EBADMSG);
	}
	job.kind = TSCNI__JOB_KIND__JOB_DELETE_DEVICE;
	job.stable_node_id = ""; /* a node that never registered */
	assert_int_equal(validate_job(&job, &why), 0);
	job.node_public.len = 31;
	assert_int_equal(validate_job(&job, &why), -EBADMSG);
	assert_string_equal(why, "job.node_public is not 32 bytes");
	job.node_public.len = 32;

	att.key = &key;
	att.pod_uid = "3f2a";
	att.netns_path = "/proc/1/ns/net";
	att.interface_name = "ts0";
	att.boot_id = "003f0e07-03b8";
	att.machine_id = "0123abcd";
	att.node_name = "node-1";
	for (int k = 0; k <= 4; k++) {
		att.state = (Tscni__AttachmentState)k;
		assert_int_equal(validate_attachment(&att, &why), k >= 1 && k <= 3 ? 0 : -EBADMSG);
	}

	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__StatusReply st = TSCNI__STATUS_REPLY__INIT;

	r.protocol_version = 1;
	r.body_case = TSCNI__CNI_REPLY__BODY_STATUS;
	r.status = &st;
	for (int k = 0; k <= 4; k++) {
		st.health = (Tscni__Health)k;
		assert_int_equal(validate_cni_reply(&r, &why), k >= 1 && k <= 3 ? 0 : -EBADMSG);
	}
}

static void test_oneofs_unset(void **state)
{
	Tscni__WorkerMsg w = TSCNI__WORKER_MSG__INIT;
	Tscni__SupervisorMsg s = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	const char *why;

	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
	assert_string_equal(why, "message body not set");
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	r.protocol_version = 1;
	assert_int_equal(validate_cni_reply(&r, &why), -EBADMSG);
	assert_string_equal(why, "reply body not set");
	/* A body number from a newer schema. */
	w.body_case = (Tscni__WorkerMsg__BodyCase)99;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
}

static void test_worker_messages(void **state)
{
	Tscni__WorkerMsg w = TSCNI__WORKER_MSG__INIT;
	Tscni__Hello h = TSCNI__HELLO__INIT;
	Tscni__Ready rd = TSCNI__READY__INIT;
	Tscni__TestReply tr = TSCNI__TEST_REPLY__INIT;
	const char *why;

	w.body_case = TSCNI__WORKER_MSG__BODY_HELLO;
	w.hello = &h;
	h.min_version = 1;
	h.max_version = 2;
	h.pod_uid = "3f2a";
	h.boot_id = "";
	h.pid = 7;
	assert_int_equal(validate_worker_msg(&w, &why), 0);
	h.max_version = 0;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
	h.max_version = 2;
	h.min_version = 0;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
	h.min_version = 1;
	h.pid = -1;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
	h.pid = 7;
	h.pod_uid = "../x";
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);

	w.body_case = TSCNI__WORKER_MSG__BODY_READY;
	w.ready = &rd;
	rd.stable_node_id = "nX1";
	assert_int_equal(validate_worker_msg(&w, &why), 0);
	rd.stable_node_id = "n X";
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);

	w.body_case = TSCNI__WORKER_MSG__BODY_TEST_REPLY;
	w.test_reply = &tr;
	tr.detail = "";
	tr.err = -EPERM;
	assert_int_equal(validate_worker_msg(&w, &why), 0);
	tr.err = 1;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
	tr.err = -5000;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);

	/* Supervisor side: a resolve reply with a 5-byte address. */
	Tscni__SupervisorMsg s = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__ResolveReply rr = TSCNI__RESOLVE_REPLY__INIT;
	ProtobufCBinaryData addrs[2] = {{4, v4}, {16, v6}};

	s.body_case = TSCNI__SUPERVISOR_MSG__BODY_RESOLVE_REPLY;
	s.resolve_reply = &rr;
	rr.n_addrs = 2;
	rr.addrs = addrs;
	rr.error = "";
	assert_int_equal(validate_supervisor_msg(&s, &why), 0);
	addrs[1].len = 5;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
}

/* roll-workers on the CNI socket: the request's empty body must
 * still be there, the reply's failure list is bounded. */
static void test_roll_workers(void **state)
{
	Tscni__CniRequest q = TSCNI__CNI_REQUEST__INIT;
	Tscni__RollWorkersRequest rq = TSCNI__ROLL_WORKERS_REQUEST__INIT;
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__RollWorkersReply rr = TSCNI__ROLL_WORKERS_REPLY__INIT;
	char *failed[ROLL_FAILED_MAX + 1];
	char *long_entry = rep('x', MSG_MAX_LEN + 1);
	const char *why;

	q.protocol_version = 1;
	q.body_case = TSCNI__CNI_REQUEST__BODY_ROLL_WORKERS;
	q.roll_workers = &rq;
	assert_int_equal(validate_cni_request(&q, &why), 0);
	q.roll_workers = NULL;
	assert_int_equal(validate_cni_request(&q, &why), -EBADMSG);
	assert_string_equal(why, "roll_workers body missing");

	for (size_t i = 0; i < ROLL_FAILED_MAX + 1; i++)
		failed[i] = "pod-1: respawn refused";
	r.protocol_version = 1;
	r.body_case = TSCNI__CNI_REPLY__BODY_ROLL_WORKERS;
	r.roll_workers = &rr;
	rr.rolled = 3;
	rr.failed = failed;
	rr.n_failed = ROLL_FAILED_MAX;
	assert_int_equal(validate_cni_reply(&r, &why), 0);
	rr.n_failed = ROLL_FAILED_MAX + 1;
	assert_int_equal(validate_cni_reply(&r, &why), -EBADMSG);
	assert_string_equal(why, "roll_workers.failed: too many");
	rr.n_failed = 1;
	failed[0] = long_entry;
	assert_int_equal(validate_cni_reply(&r, &why), -EBADMSG);
	assert_string_equal(why, "roll_workers.failed: entry too long");
	r.roll_workers = NULL;
	assert_int_equal(validate_cni_reply(&r, &why), -EBADMSG);
	assert_string_equal(why, "roll_workers body missing");
	free(long_entry);
}

/* The status reply carries the zygote's pid: never negative. */
static void test_status_zygote_pid(void **state)
{
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__StatusReply st = TSCNI__STATUS_REPLY__INIT;
	const char *why;

	r.protocol_version = 1;
	r.body_case = TSCNI__CNI_REPLY__BODY_STATUS;
	r.status = &st;
	st.health = TSCNI__HEALTH__HEALTH_READY;
	st.reason = "";
	st.zygote_pid = 0; /* being restarted */
	assert_int_equal(validate_cni_reply(&r, &why), 0);
	st.zygote_pid = 4242;
	assert_int_equal(validate_cni_reply(&r, &why), 0);
	st.zygote_pid = -1;
	assert_int_equal(validate_cni_reply(&r, &why), -EBADMSG);
	assert_string_equal(why, "status.zygote_pid negative");
}

/* A worker's Stats.peer and a status reply's PodStatus.peer: a bounded
 * count; the short key exactly "[" + 5 base64 characters + "]"; the IPv4
 * exactly 4 bytes or none; the host name a name of at most 63; the path a
 * known kind whose fields (and only those) are set. */
static int stats_with(Tscni__PeerStatus *p, size_t n)
{
	Tscni__WorkerMsg w = TSCNI__WORKER_MSG__INIT;
	Tscni__Stats s = TSCNI__STATS__INIT;
	Tscni__PeerStatus **v = xcalloc(n + 1, sizeof(*v));
	const char *why;
	int ret;

	for (size_t i = 0; i < n; i++)
		v[i] = p;
	s.peer = v;
	s.n_peer = n;
	w.body_case = TSCNI__WORKER_MSG__BODY_STATS;
	w.stats = &s;
	ret = validate_worker_msg(&w, &why);
	free(v);
	return ret;
}

static int pod_status_with(Tscni__PeerStatus *p)
{
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__StatusReply st = TSCNI__STATUS_REPLY__INIT;
	Tscni__PodStatus ps = TSCNI__POD_STATUS__INIT, *pv[1] = {&ps};
	Tscni__AttachmentKey key = {PROTOBUF_C_MESSAGE_INIT(&tscni__attachment_key__descriptor),
				    "tsnet", "c0ffee", "eth0"};
	Tscni__PeerStatus *v[1] = {p};
	const char *why;

	ps.key = &key;
	ps.state = "ready";
	ps.peer = v;
	ps.n_peer = 1;
	st.health = TSCNI__HEALTH__HEALTH_READY;
	st.reason = "";
	st.pod = pv;
	st.n_pod = 1;
	r.protocol_version = 1;
	r.body_case = TSCNI__CNI_REPLY__BODY_STATUS;
	r.status = &st;
	return validate_cni_reply(&r, &why);
}

static void test_peer_status(void **state)
{
	Tscni__PeerStatus p = TSCNI__PEER_STATUS__INIT;
	char *host = rep('h', PEER_HOST_MAX_LEN + 1);

	p.node_key = "[Ab+/9]";
	p.host_name = "web-1";
	p.tailnet_ipv4 = (ProtobufCBinaryData){4, v4};
	p.path = TSCNI__PEER_PATH__PEER_PATH_DIRECT;
	p.direct_ip = (ProtobufCBinaryData){16, v6};
	p.direct_port = 41641;
	assert_int_equal(stats_with(&p, 1), 0);
	assert_int_equal(pod_status_with(&p), 0);
	assert_int_equal(stats_with(&p, PEER_STATUS_MAX), 0);
	assert_int_equal(stats_with(&p, PEER_STATUS_MAX + 1), -EBADMSG);
	assert_int_equal(stats_with(NULL, 1), -EBADMSG);

	const char *bad_keys[] = {"", "[Ab+/]", "[Ab+/9", "Ab+/9]x", "[Ab-/9]", "[Ab+/99]", NULL};

	for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
		p.node_key = (char *)bad_keys[i];
		assert_int_equal(stats_with(&p, 1), -EBADMSG);
		assert_int_equal(pod_status_with(&p), -EBADMSG);
	}
	p.node_key = "[Ab+/9]";
	p.tailnet_ipv4.len = 16;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	p.tailnet_ipv4.len = 0;
	assert_int_equal(stats_with(&p, 1), 0);
	host[PEER_HOST_MAX_LEN] = '\0';
	p.host_name = host;
	assert_int_equal(stats_with(&p, 1), 0);
	host[PEER_HOST_MAX_LEN] = 'h';
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	p.host_name = "Bob's phone";
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	assert_int_equal(pod_status_with(&p), -EBADMSG);
	p.host_name = "";
	assert_int_equal(stats_with(&p, 1), 0);

	/* DIRECT: an address of 4 or 16 bytes and a port, no region. */
	p.direct_ip.len = 5;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	p.direct_ip.len = 4;
	p.direct_port = 0;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	p.direct_port = 65536;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	p.direct_port = 1;
	p.derp_region = 900;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	/* DERP: a region, no address. */
	p.path = TSCNI__PEER_PATH__PEER_PATH_DERP;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	p.direct_ip.len = 0;
	p.direct_port = 0;
	assert_int_equal(stats_with(&p, 1), 0);
	p.derp_region = 0;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	p.derp_region = 65536;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	/* NONE: nothing else. */
	p.path = TSCNI__PEER_PATH__PEER_PATH_NONE;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	p.derp_region = 0;
	assert_int_equal(stats_with(&p, 1), 0);
	p.path = 3;
	assert_int_equal(stats_with(&p, 1), -EBADMSG);
	assert_int_equal(pod_status_with(&p), -EBADMSG);
	free(host);
}

/* Custody (fds handed back) belongs to the adoption handshake only, which
 * reads it itself: on the ordinary worker channel it is refused, whatever
 * it says. */
/* ControlStatus in a Stats or an Event: absent is fine (an older worker);
 * present, a known state, a reason of at most 160 printable ASCII bytes, a
 * retry time only while retrying. PodStatus.control_reason likewise. */
static int control_with(Tscni__ControlStatus *c, bool in_event, const char **why)
{
	Tscni__WorkerMsg w = TSCNI__WORKER_MSG__INIT;
	Tscni__Stats s = TSCNI__STATS__INIT;
	Tscni__Event e = TSCNI__EVENT__INIT;

	if (in_event) {
		e.kind = TSCNI__EVENT_KIND__EVENT_CONTROL_DOWN;
		e.detail = "x";
		e.control = c;
		w.body_case = TSCNI__WORKER_MSG__BODY_EVENT;
		w.event = &e;
	} else {
		s.control = c;
		w.body_case = TSCNI__WORKER_MSG__BODY_STATS;
		w.stats = &s;
	}
	return validate_worker_msg(&w, why);
}

static void test_control_status(void **state)
{
	Tscni__ControlStatus c = TSCNI__CONTROL_STATUS__INIT;
	char *at = rep('a', CONTROL_REASON_MAX_LEN), *over = rep('a', CONTROL_REASON_MAX_LEN + 1);
	const char *why = NULL;

	(void)state;
	for (int ev = 0; ev < 2; ev++) {
		assert_int_equal(control_with(NULL, ev, &why), 0);
		c.state = TSCNI__CONTROL_STATE__CONTROL_RETRYING;
		c.reason = at;
		c.since_unix = 1796640000;
		c.retry_unix = 1796640008;
		assert_int_equal(control_with(&c, ev, &why), 0);
		c.reason = over;
		assert_int_equal(control_with(&c, ev, &why), -EBADMSG);
		assert_string_equal(why, "control.reason not printable ASCII of at most 160 bytes");
		c.reason = "tab\there";
		assert_int_equal(control_with(&c, ev, &why), -EBADMSG);
		c.reason = "caf\xc3\xa9";
		assert_int_equal(control_with(&c, ev, &why), -EBADMSG);
		c.reason = "\x1b[2J";
		assert_int_equal(control_with(&c, ev, &why), -EBADMSG);
		c.reason = "";
		c.state = TSCNI__CONTROL_STATE__CONTROL_CONNECTED;
		assert_int_equal(control_with(&c, ev, &why), -EBADMSG);
		assert_string_equal(why, "control.retry_unix set while not retrying");
		c.retry_unix = 0;
		assert_int_equal(control_with(&c, ev, &why), 0);
		c.state = TSCNI__CONTROL_STATE__CONTROL_LOGGED_OUT + 1;
		assert_int_equal(control_with(&c, ev, &why), -EBADMSG);
		assert_string_equal(why, "control.state not a known value");
		c.state = (Tscni__ControlState)-1;
		assert_int_equal(control_with(&c, ev, &why), -EBADMSG);
	}
	free(at);
	free(over);
}

/* printable_copy: what a worker sends passes valid_printable, whatever it
 * was given; a cut ends in "...". */
static void test_printable_copy(void **state)
{
	static const struct {
		const char *in;
		size_t size;
		const char *out;
	} v[] = {
		/* 1 */ {"plain text", 32, "plain text"},
		/* 2 */ {"caf\xc3\xa9\t\x1b", 32, "caf????"},
		/* 3 */ {"0123456789", 8, "0123..."},
		/* 4 */ {"0123456", 8, "0123456"},
		/* 5 */ {"", 8, ""},
		/* 6 */ {NULL, 8, ""},
		/* 7 */ {"abc", 1, ""},
	};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		printable_copy(buf, v[i].size, v[i].in);
		assert_string_equal(buf, v[i].out);
		assert_true(valid_printable(buf, v[i].size - 1));
	}
	assert_false(valid_printable(NULL, 8));
	assert_false(valid_printable("abc", 2));
	assert_true(valid_printable("abc", 3));
}

static void test_worker_custody_refused(void **state)
{
	Tscni__WorkerMsg w = TSCNI__WORKER_MSG__INIT;
	Tscni__Custody c = TSCNI__CUSTODY__INIT;
	const char *why;

	w.body_case = TSCNI__WORKER_MSG__BODY_CUSTODY;
	w.custody = &c;
	c.fd_count = 2;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
	assert_string_equal(why, "custody only on an adoption connection");
	w.custody = NULL;
	assert_int_equal(validate_worker_msg(&w, &why), -EBADMSG);
}

/* The netcheck's messages: a STUN target is a unicast address and a port;
 * a NetcheckReport has increasing region ids, bounded latencies and global
 * addresses of exact lengths. */
static void test_netcheck(void **state)
{
	static const uint8_t lo[4] = {127, 0, 0, 1}, zero[16], bcast[4] = {255, 255, 255, 255};
	static const uint8_t mc6[16] = {0xff, 0x02, [15] = 1}, uni6[16] = {0x20, 0x01, [15] = 1};
	Tscni__SupervisorMsg s = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__NetcheckReport r = TSCNI__NETCHECK_REPORT__INIT;
	Tscni__RegionLatency lat[NETCHECK_REGIONS_MAX + 1], *lp[NETCHECK_REGIONS_MAX + 1];
	uint8_t four[4] = {198, 51, 100, 7};
	const char *why = NULL;

	(void)state;
	assert_true(valid_stun_target(lo, 4, 3478));
	assert_true(valid_stun_target(uni6, 16, 65535));
	assert_false(valid_stun_target(lo, 4, 0));
	assert_false(valid_stun_target(lo, 4, 65536));
	assert_false(valid_stun_target(lo, 3, 3478));
	assert_false(valid_stun_target(zero, 4, 3478));
	assert_false(valid_stun_target(zero, 16, 3478));
	assert_false(valid_stun_target(bcast, 4, 3478));
	assert_false(valid_stun_target(mc6, 16, 3478));
	assert_false(valid_stun_target(NULL, 4, 3478));

	for (size_t i = 0; i <= NETCHECK_REGIONS_MAX; i++) {
		tscni__region_latency__init(&lat[i]);
		lat[i].region_id = 900 + (uint32_t)i;
		lat[i].latency_ms = (uint32_t)i;
		lp[i] = &lat[i];
	}
	r.regions = lp;
	r.n_regions = NETCHECK_REGIONS_MAX;
	r.preferred_region = 901;
	r.global_v4 = (ProtobufCBinaryData){.len = 4, .data = four};
	s.body_case = TSCNI__SUPERVISOR_MSG__BODY_NETCHECK_REPORT;
	s.netcheck_report = &r;
	assert_int_equal(validate_supervisor_msg(&s, &why), 0);
	r.n_regions = NETCHECK_REGIONS_MAX + 1;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	r.n_regions = 2;
	lat[1].region_id = 900;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	lat[1].region_id = 901;
	lat[1].latency_ms = NETCHECK_LATENCY_MAX_MS + 1;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	lat[1].latency_ms = 1;
	r.global_v4.len = 3;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	r.global_v4.len = 4;
	r.preferred_region = 65536;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	r.preferred_region = 0;
	assert_int_equal(validate_supervisor_msg(&s, &why), 0);
	s.netcheck_report = NULL;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
}

/* The CA bundle in pieces: a CaChunk carries 1 to CA_CHUNK_MAX_LEN bytes;
 * Start's ca_bundle_len is at most CA_BUNDLE_MAX_LEN and never set with
 * ca_bundle itself. */
static void test_ca_chunk(void **state)
{
	static uint8_t piece[CA_CHUNK_MAX_LEN + 1];
	Tscni__SupervisorMsg s = TSCNI__SUPERVISOR_MSG__INIT;
	Tscni__CaChunk c = TSCNI__CA_CHUNK__INIT;
	Tscni__Start st = TSCNI__START__INIT;
	uint8_t key[32] = {0}, ca[4] = "PEM";
	const char *why = NULL;

	(void)state;
	s.body_case = TSCNI__SUPERVISOR_MSG__BODY_CA_CHUNK;
	s.ca_chunk = &c;
	c.data = (ProtobufCBinaryData){.len = CA_CHUNK_MAX_LEN, .data = piece};
	assert_int_equal(validate_supervisor_msg(&s, &why), 0);
	c.data.len = CA_CHUNK_MAX_LEN + 1;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	assert_string_equal(why, "ca_chunk.data empty or too large");
	c.data.len = 0;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	s.ca_chunk = NULL;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);

	st.pod_uid = "3f2a";
	st.hostname = "h";
	st.machine_private = (ProtobufCBinaryData){.len = 32, .data = key};
	st.node_private = (ProtobufCBinaryData){.len = 32, .data = key};
	st.auth_key = "";
	st.control_url = "";
	s.body_case = TSCNI__SUPERVISOR_MSG__BODY_START;
	s.start = &st;
	st.ca_bundle_len = CA_BUNDLE_MAX_LEN;
	assert_int_equal(validate_supervisor_msg(&s, &why), 0);
	st.ca_bundle_len = CA_BUNDLE_MAX_LEN + 1;
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	assert_string_equal(why, "start.ca_bundle_len too large");
	st.ca_bundle_len = 3;
	st.ca_bundle = (ProtobufCBinaryData){.len = 3, .data = ca};
	assert_int_equal(validate_supervisor_msg(&s, &why), -EBADMSG);
	assert_string_equal(why, "start: both ca_bundle and ca_bundle_len");
}

static void test_del_tombstone_optional_fields(void **state)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__DelRequest del = TSCNI__DEL_REQUEST__INIT;
	Tscni__AttachmentKey key = {PROTOBUF_C_MESSAGE_INIT(&tscni__attachment_key__descriptor),
				    "tsnet", "c0ffee", "eth0"};
	Tscni__Tombstone t = TSCNI__TOMBSTONE__INIT;
	const char *why;

	/* containerd's second DEL: no netns. */
	del.key = &key;
	req.protocol_version = 1;
	req.body_case = TSCNI__CNI_REQUEST__BODY_DEL;
	req.del = &del;
	assert_int_equal(check_req(&req), 0);
	del.netns_path = "not/absolute";
	assert_int_equal(check_req(&req), -EBADMSG);
	del.netns_path = "";
	del.key = NULL;
	assert_int_equal(check_req(&req), -EBADMSG);

	t.key = &key;
	assert_int_equal(validate_tombstone(&t, &why), 0);
	t.interface_name = "a:b";
	assert_int_equal(validate_tombstone(&t, &why), -EBADMSG);
	assert_string_equal(why, "tombstone.interface_name invalid");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_vectors),
		cmocka_unit_test(test_name_bounds),
		cmocka_unit_test(test_add_valid_and_required),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_keys_exact),
		cmocka_unit_test(test_start_deny),
		cmocka_unit_test(test_tags),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_enums),
		cmocka_unit_test(test_oneofs_unset),
		cmocka_unit_test(test_worker_messages),
		cmocka_unit_test(test_del_tombstone_optional_fields),
		cmocka_unit_test(test_roll_workers),
		cmocka_unit_test(test_status_zygote_pid),
		cmocka_unit_test(test_worker_custody_refused),
		cmocka_unit_test(test_control_status),
		cmocka_unit_test(test_printable_copy),
		cmocka_unit_test(test_peer_status),
		cmocka_unit_test(test_netcheck),
		cmocka_unit_test(test_ca_chunk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
