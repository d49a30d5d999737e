/* The CNI verbs. */
#include "cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "frame.h"
#include "ip.h"
#include "log.h"
#include "mem.h"
#include "netlink.h"
#include "netns.h"
#include "result.h"
#include "tombstone.h"
#include "validate.h"

void cmd_init(struct cmd *c, const struct cni_env *env, unsigned long long start_ms)
{
	*c = (struct cmd){.env = *env, .start_ms = start_ms};
}

int cmd_prepare(struct cmd *c, const char *buf, size_t len)
{
	if (args_env_validate(&c->env, &c->err) < 0)
		return -EINVAL;
	if (conf_parse(buf, len, c->env.verb, c->env.ifname, &c->conf, &c->err) < 0)
		return -EINVAL;
	if (args_parse(c->env.args, &c->args) < 0)
		return error_set(&c->err, CNI_ERR_ENV,
				 "missing or invalid environment variables: "
				 "CNI_ARGS",
				 "CNI_ARGS is longer than %d bytes", ARGS_MAX_LEN);
	if (c->args.malformed)
		log_warn("CNI_ARGS: ignored %u malformed pair(s)", c->args.malformed);
	return 0;
}

unsigned int cmd_budget_ms(const struct cmd *c)
{
	switch (c->env.verb) {
	case CNI_VERB_ADD:
		return c->conf.add_timeout_ms;
	case CNI_VERB_DEL:
		return c->conf.del_timeout_ms;
	case CNI_VERB_CHECK:
		return c->conf.check_timeout_ms;
	case CNI_VERB_GC:
		return c->conf.gc_timeout_ms;
	case CNI_VERB_STATUS:
		return c->conf.status_timeout_ms;
	default:
		return CONF_MAX_TIMEOUT_MS;
	}
}

const char *cmd_version(const struct cmd *c)
{
	return c->conf.cni_version ? c->conf.cni_version : "1.1.0";
}

static unsigned long long deadline(const struct cmd *c)
{
	return c->start_ms + cmd_budget_ms(c);
}

static unsigned long long elapsed(const struct cmd *c)
{
	return now_ms() - c->start_ms;
}

static void set_key(const struct cmd *c, Tscni__AttachmentKey *key)
{
	key->network = (char *)c->conf.name;
	key->container_id = (char *)c->env.container_id;
	key->ifname = (char *)c->env.ifname;
}

/* The supervisor could not be reached or did not answer (code 11, or 50 for
 * STATUS). */
static int unavailable(struct cmd *c, unsigned int code, int ret, const char *why)
{
	if (ret == -EPERM) /* client_call refused the socket: why says how */
		return error_set(&c->err, code, "tailscale-cni supervisor socket not trusted",
				 "%s: %s", c->conf.socket_path, why);
	return error_set(&c->err, code, "tailscale-cni supervisor unavailable",
			 "%s %s: %s (after %llu ms)", why, c->conf.socket_path, strerror(-ret),
			 elapsed(c));
}

/* Our own request failed validation: a value the supervisor would refuse. */
static int invalid_request(struct cmd *c, const char *why)
{
	return error_set(&c->err, CNI_ERR_CONFIG, "invalid request for the supervisor", "%s", why);
}

static int protocol_error(struct cmd *c, const char *why)
{
	return error_set(&c->err, CNI_ERR_PROTOCOL, "tailscale-cni supervisor protocol error", "%s",
			 why);
}

/* The supervisor's structured error, printed as it came. */
static int reply_error(struct cmd *c, const Tscni__Error *e)
{
	unsigned int code = e->cni_code ? e->cni_code : CNI_ERR_INTERNAL;

	return error_set(&c->err, code,
			 e->msg && *e->msg ? e->msg : "tailscale-cni supervisor error", "%s",
			 e->details ? e->details : "");
}

/* A failed client_call(): our own request was invalid (-EINVAL), the
 * supervisor broke the protocol (-EPROTO), or it could not be reached. */
static int call_failed(struct cmd *c, int ret, const char *why)
{
	if (ret == -EINVAL)
		return invalid_request(c, why);
	if (ret == -EPROTO)
		return protocol_error(c, why);
	return unavailable(c, CNI_ERR_TRY_AGAIN, ret, why);
}

/* 0 when the reply carries the body this verb expects; otherwise the
 * supervisor's error as it came, or a protocol error. */
static int reply_expect(struct cmd *c, const Tscni__CniReply *reply, Tscni__CniReply__BodyCase want)
{
	if (reply->body_case == want)
		return 0;
	if (reply->body_case == TSCNI__CNI_REPLY__BODY_ERROR)
		return reply_error(c, reply->error);
	return error_set(&c->err, CNI_ERR_PROTOCOL, "tailscale-cni supervisor protocol error",
			 "reply of the wrong type for %s", args_verb_name(c->env.verb));
}

/* Opens CNI_NETNS to validate it and learn its identity; the fd is closed
 * again at once (a netns fd must not be held longer than needed). */
static int check_netns(struct cmd *c, dev_t *dev, ino_t *ino)
{
	const char *path = c->env.netns;
	int fd, ret;

	ret = netns_open(path, &fd, dev, ino);
	if (ret == -ENOENT)
		return error_set(&c->err, CNI_ERR_UNKNOWN_CONTAINER,
				 "network namespace does not exist", "CNI_NETNS %s: %s", path,
				 strerror(-ret));
	if (ret == -ENOTNAM)
		return error_set(&c->err, CNI_ERR_UNKNOWN_CONTAINER,
				 "CNI_NETNS is not a network namespace",
				 "%s exists but is not a network namespace (an unmounted netns "
				 "placeholder?)",
				 path);
	if (ret < 0)
		return error_set(&c->err, CNI_ERR_UNKNOWN_CONTAINER,
				 "cannot open the network namespace", "CNI_NETNS %s: %s", path,
				 strerror(-ret));
	close(fd);
	if (!c->env.netns_override && netns_is_self(*dev, *ino))
		return error_set(&c->err, CNI_ERR_NETNS, "CNI_NETNS is the plugin's own namespace",
				 "%s is the host network namespace tailscale-cni runs in; refusing "
				 "to touch it",
				 path);
	return 0;
}

/* The result without our entries, converted to the request version. */
static int pass_through(struct cmd *c)
{
	json_t *r = result_build(c->conf.prev_result, c->conf.version, NULL);

	c->out = result_dump(r, &c->out_len);
	json_decref(r);
	return 0;
}

static bool plain_key(const char *s)
{
	for (; *s; s++) {
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	}
	return true;
}

/* The annotations the supervisor may read: string values under keys with
 * our prefix, within the message bounds. Fills anns/ptrs (ANNOTATION_MAX
 * slots) and returns how many. */
static size_t collect_annotations(const struct cmd *c, Tscni__Annotation *anns,
				  Tscni__Annotation **ptrs)
{
	const size_t plen = strlen(CONF_ANNOTATION_PREFIX);
	const char *key;
	size_t n = 0;
	json_t *v;

	json_object_foreach(c->conf.annotations, key, v)
	{
		if (strncmp(key, CONF_ANNOTATION_PREFIX, plen) != 0)
			continue;
		if (!json_is_string(v) || !plain_key(key) || strlen(key) > ANNOTATION_KEY_MAX_LEN ||
		    json_string_length(v) > ANNOTATION_VALUE_MAX_LEN || n == ANNOTATION_MAX) {
			log_warn("pod annotation %.80s ignored (not a string, too long, or more "
				 "than %d annotations)",
				 key, ANNOTATION_MAX);
			continue;
		}
		tscni__annotation__init(&anns[n]);
		anns[n].key = (char *)key;
		anns[n].value = (char *)json_string_value(v);
		ptrs[n] = &anns[n];
		n++;
	}
	return n;
}

/* CNI_NETNS as DEL passes it on: "" when unset or not an absolute path
 * (DEL accepts anything there; it all means "namespace gone"). */
static const char *del_netns(const struct cmd *c)
{
	return c->env.netns && valid_abs_path(c->env.netns) ? c->env.netns : "";
}

/* Sends the DEL for our attachment (DEL proper, or the release of an ADD). */
static int call_del(struct cmd *c, unsigned long long deadline_ms, Tscni__CniReply **reply,
		    const char **why)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__DelRequest del = TSCNI__DEL_REQUEST__INIT;
	Tscni__AttachmentKey key = TSCNI__ATTACHMENT_KEY__INIT;

	set_key(c, &key);
	del.key = &key;
	del.netns_path = (char *)del_netns(c);
	del.interface_name = (char *)c->conf.interface_name;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_DEL;
	req.del = &del;
	return client_call(c->conf.socket_path, &req, deadline_ms, reply, why);
}

static void send_release(struct cmd *c, unsigned long long deadline_ms)
{
	Tscni__CniReply *reply = NULL;
	const char *why = NULL;
	int ret = call_del(c, deadline_ms, &reply, &why);

	if (ret < 0)
		log_warn_r(ret, "release after a failed ADD: %s", why);
	if (reply)
		tscni__cni_reply__free_unpacked(reply, NULL);
}

void cmd_rollback(struct cmd *c)
{
	if (c->added)
		send_release(c, now_ms() + 1000);
	c->added = false;
}

/* Turns the AddReply into our result entries, checking what a supervisor
 * must never send: another interface name, an address outside the Tailscale
 * ranges, or a default route. */
static int add_reply_entries(struct cmd *c, const Tscni__AddReply *a, struct ip_prefix *addrs,
			     size_t *n_addrs, struct ip_prefix *routes, size_t *n_routes)
{
	if (a->interface_name && *a->interface_name &&
	    strcmp(a->interface_name, c->conf.interface_name) != 0)
		return protocol_error(c, "reply names another interface");
	if (a->n_addresses > PREFIX_MAX || a->n_routes > PREFIX_MAX)
		return protocol_error(c, "reply holds too many addresses or routes");
	for (size_t i = 0; i < a->n_addresses; i++) {
		if (ip_prefix_from_pb(a->addresses[i], &addrs[i]) < 0)
			return protocol_error(c, "reply holds a malformed address");
		if (!ip_prefix_contains(&ip_tailscale_v4, &addrs[i]) &&
		    !ip_prefix_contains(&ip_tailscale_v6, &addrs[i]))
			return protocol_error(c, "reply holds an address outside the Tailscale "
						 "ranges");
	}
	for (size_t i = 0; i < a->n_routes; i++) {
		if (ip_prefix_from_pb(a->routes[i], &routes[i]) < 0)
			return protocol_error(c, "reply holds a malformed route");
		if (routes[i].len == 0)
			return protocol_error(c, "reply holds a default route");
	}
	*n_addrs = a->n_addresses;
	*n_routes = a->n_routes;
	return 0;
}

static int add_result(struct cmd *c, const Tscni__AddReply *a)
{
	struct ip_prefix addrs[PREFIX_MAX], routes[PREFIX_MAX];
	size_t n_addrs = 0, n_routes = 0;
	struct result_ours ours;
	char buf[IP_PREFIX_STRLEN];
	json_t *r;

	if (add_reply_entries(c, a, addrs, &n_addrs, routes, &n_routes) < 0)
		return -EINVAL;
	/* With allowOverlap the primary may already use one of our exact
	 * addresses: refuse rather than hand out a duplicate. */
	if (result_clashes(c->conf.prev_result, addrs, n_addrs)) {
		for (size_t i = 0; i < n_addrs; i++) {
			if (result_clashes(c->conf.prev_result, &addrs[i], 1))
				ip_prefix_format(&addrs[i], buf, sizeof(buf));
		}
		return error_set(&c->err, CNI_ERR_CONFIG, "address range overlap",
				 "the supervisor assigned %s, which prevResult already uses", buf);
	}
	if (a->addresses_pending)
		log_info("addresses pending: %s has no Tailscale addresses yet",
			 c->conf.interface_name);
	ours = (struct result_ours){
		.ifname = c->conf.interface_name,
		.sandbox = c->env.netns,
		.mtu = a->mtu,
		.addrs = addrs,
		.n_addrs = n_addrs,
		.routes = routes,
		.n_routes = n_routes,
		.report_ips = c->conf.report_ips,
	};
	r = result_build(c->conf.prev_result, c->conf.version, &ours);
	c->out = result_dump(r, &c->out_len);
	json_decref(r);
	return 0;
}

static int cmd_add(struct cmd *c)
{
	Tscni__Annotation anns[ANNOTATION_MAX], *ann_ptrs[ANNOTATION_MAX];
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__AddRequest add = TSCNI__ADD_REQUEST__INIT;
	Tscni__AttachmentKey key = TSCNI__ATTACHMENT_KEY__INIT;
	Tscni__PodMeta pod = TSCNI__POD_META__INIT;
	Tscni__CniReply *reply = NULL;
	const char *why = NULL;
	dev_t dev;
	ino_t ino;
	int ret;

	if (!c->conf.prev_result)
		return error_set(&c->err, CNI_ERR_CONFIG,
				 "tailscale-cni must be chained after a primary plugin",
				 "prevResult is missing: list tailscale-cni after the primary "
				 "plugin (last) in the conflist's plugins");
	if (result_check_prev(c->conf.prev_result, c->env.ifname, c->conf.interface_name,
			      c->conf.allow_overlap, &c->err) < 0)
		return -EINVAL;
	if (check_netns(c, &dev, &ino) < 0)
		return -EINVAL;
	if (!conf_pod_selected(&c->conf)) {
		log_info("pod not selected (selection \"%s\", annotation %s): passing "
			 "prevResult through",
			 c->conf.select_annotation ? "annotation" : "all", CONF_ENABLED_KEY);
		return pass_through(c);
	}

	set_key(c, &key);
	pod.namespace_ = c->args.pod_namespace ? c->args.pod_namespace : "";
	pod.name = c->args.pod_name ? c->args.pod_name : "";
	pod.uid = c->args.pod_uid ? c->args.pod_uid : "";
	pod.infra_container_id = c->args.infra_container_id ? c->args.infra_container_id : "";
	add.key = &key;
	add.netns_path = (char *)c->env.netns;
	add.netns_dev = (uint64_t)dev;
	add.netns_ino = (uint64_t)ino;
	add.interface_name = (char *)c->conf.interface_name;
	add.pod = &pod;
	add.cni_version = (char *)c->conf.cni_version;
	add.sync_timeout_ms = c->conf.sync_timeout_ms;
	add.n_annotations = collect_annotations(c, anns, ann_ptrs);
	add.annotations = ann_ptrs;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_ADD;
	req.add = &add;

	ret = client_call(c->conf.socket_path, &req, deadline(c), &reply, &why);
	/* failurePolicy "ignore" covers an unreachable supervisor, never a
	 * request or reply that is wrong. */
	if (ret == -EINVAL || ret == -EPROTO || (ret < 0 && !c->conf.fail_open))
		return call_failed(c, ret, why);
	if (ret < 0) {
		log_warn_r(ret,
			   "supervisor unavailable (%s %s); failurePolicy \"ignore\": pod "
			   "started without %s",
			   why, c->conf.socket_path, c->conf.interface_name);
		/* A request that was sent may still complete: release it so
		 * the pod holds exactly what the result says. */
		if (ret == -ETIMEDOUT && strcmp(why, "connect") != 0)
			send_release(c, now_ms() + 1000);
		return pass_through(c);
	}
	if (reply->body_case == TSCNI__CNI_REPLY__BODY_ERROR &&
	    reply->error->cni_code == CNI_ERR_TRY_AGAIN && c->conf.fail_open) {
		log_warn("supervisor not ready (%s); failurePolicy \"ignore\": pod started "
			 "without %s",
			 reply->error->msg, c->conf.interface_name);
		ret = pass_through(c);
	} else {
		ret = reply_expect(c, reply, TSCNI__CNI_REPLY__BODY_ADD);
		if (ret == 0) {
			c->added = true;
			ret = add_result(c, reply->add);
			if (ret < 0)
				cmd_rollback(c);
		}
	}
	tscni__cni_reply__free_unpacked(reply, NULL);
	return ret;
}

/* DEL step 3: delete interfaceName inside CNI_NETNS when that is a live
 * namespace other than our own and the interface is provably this
 * attachment's: a TUN carrying the alias of this key, set when the
 * supervisor made it. A foreign interface of that name, or the one of
 * another network in the same pod, is left alone (docs/cni-contract.md 4.2).
 * Everything else counts as already gone. */
static void delete_local(struct cmd *c)
{
	char alias[NETLINK_ALIAS_LEN];
	struct netlink_owned o = {.ifname = c->conf.interface_name, .alias = alias};
	dev_t dev;
	ino_t ino;
	int fd, ret;

	if (!c->env.netns)
		return;
	if (netns_open(c->env.netns, &fd, &dev, &ino) < 0)
		return;
	if (netns_is_self(dev, ino)) {
		log_warn("CNI_NETNS %s is the plugin's own namespace: not deleting %s",
			 c->env.netns, c->conf.interface_name);
		close(fd);
		return;
	}
	netlink_owner_alias(c->conf.name, c->env.container_id, c->env.ifname, alias, sizeof(alias));
	ret = netlink_link_delete_owned(fd, &o);
	if (ret == -EEXIST)
		log_info("%s in %s was not made for %s/%s/%s: left alone", c->conf.interface_name,
			 c->env.netns, c->conf.name, c->env.container_id, c->env.ifname);
	else if (ret < 0)
		log_warn_r(ret, "delete %s in %s", c->conf.interface_name, c->env.netns);
	close(fd);
}

static int cmd_del(struct cmd *c)
{
	Tscni__CniReply *reply = NULL;
	const char *why = NULL;
	int ret = call_del(c, deadline(c), &reply, &why);

	if (ret == -EINVAL)
		return invalid_request(c, why);
	if (ret < 0) {
		/* Unreachable, timed out or talking nonsense: leave a
		 * tombstone for the supervisor's next start and succeed. */
		int tret = tombstone_write(c->conf.state_dir, c->conf.name, c->env.container_id,
					   c->env.ifname, del_netns(c), c->conf.interface_name);

		if (tret < 0)
			log_err_r(tret,
				  "supervisor unavailable (%s: %s) and the tombstone in %s/"
				  "tombstones could not be written; the supervisor's "
				  "reconciler must release %s/%s/%s",
				  why, strerror(-ret), c->conf.state_dir, c->conf.name,
				  c->env.container_id, c->env.ifname);
		else
			log_warn("supervisor unavailable (%s: %s): tombstone written for %s/%s/%s",
				 why, strerror(-ret), c->conf.name, c->env.container_id,
				 c->env.ifname);
		delete_local(c);
		return 0;
	}
	ret = reply_expect(c, reply, TSCNI__CNI_REPLY__BODY_DEL);
	tscni__cni_reply__free_unpacked(reply, NULL);
	delete_local(c);
	return ret;
}

static bool retryable(int ret)
{
	return ret == -ENOENT || ret == -ECONNREFUSED || ret == -ECONNRESET || ret == -EAGAIN;
}

static int cmd_check(struct cmd *c)
{
	struct ip_prefix addrs[PREFIX_MAX];
	Tscni__IpPrefix pbs[PREFIX_MAX], *pb_ptrs[PREFIX_MAX];
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__CheckRequest chk = TSCNI__CHECK_REQUEST__INIT;
	Tscni__AttachmentKey key = TSCNI__ATTACHMENT_KEY__INIT;
	Tscni__CniReply *reply = NULL;
	const char *why = NULL;
	size_t n = 0;
	bool found;
	dev_t dev;
	ino_t ino;
	int ret;

	if (!c->conf.prev_result)
		return error_set(&c->err, CNI_ERR_CONFIG, "required prevResult missing",
				 "CHECK needs the chain's ADD result in prevResult");
	if (check_netns(c, &dev, &ino) < 0)
		return -EINVAL;
	if (result_find_ours(c->conf.prev_result, c->conf.interface_name, c->env.netns, &found,
			     addrs, PREFIX_MAX, &n, &c->err) < 0)
		return -EINVAL;
	if (!found)
		return 0; /* never given ts0: exactly the state ADD produced */

	for (size_t i = 0; i < n; i++) {
		tscni__ip_prefix__init(&pbs[i]);
		ip_prefix_to_pb(&addrs[i], &pbs[i]);
		pb_ptrs[i] = &pbs[i];
	}
	set_key(c, &key);
	chk.key = &key;
	chk.netns_path = (char *)c->env.netns;
	chk.interface_name = (char *)c->conf.interface_name;
	chk.n_expected_addresses = n;
	chk.expected_addresses = pb_ptrs;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_CHECK;
	req.check = &chk;

	/* The supervisor may be restarting: retry within the window. */
	for (;;) {
		struct timespec ts = {.tv_nsec = 200 * 1000 * 1000};

		ret = client_call(c->conf.socket_path, &req, deadline(c), &reply, &why);
		if (!retryable(ret) || now_ms() + 300 >= deadline(c))
			break;
		nanosleep(&ts, NULL);
	}
	if (ret < 0)
		return call_failed(c, ret, why);
	ret = reply_expect(c, reply, TSCNI__CNI_REPLY__BODY_CHECK);
	tscni__cni_reply__free_unpacked(reply, NULL);
	return ret;
}

static int gc_result(struct cmd *c, const Tscni__GcReply *g)
{
	char list[CNI_ERR_DETAILS_LEN - 64] = "";
	size_t off = 0;

	if (g->n_failed == 0)
		return 0;
	for (size_t i = 0; i < g->n_failed && off < sizeof(list) - 1; i++) {
		int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
				 g->failed[i]);

		if (w < 0)
			break;
		off += (size_t)w;
	}
	return error_set(&c->err, CNI_ERR_INTERNAL, "GC could not release every attachment",
			 "released %u; failed: %s", g->released, list);
}

static int cmd_gc(struct cmd *c)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__GcRequest gc = TSCNI__GC_REQUEST__INIT;
	Tscni__GcAttachment *atts = NULL, **ptrs = NULL;
	Tscni__CniReply *reply = NULL;
	json_t *list = c->conf.gc_attachments, *e;
	const char *why = NULL;
	size_t n, i;
	int ret;

	if (!list) {
		/* "No information", not "nothing is valid". */
		log_info("GC for network %s without cni.dev/valid-attachments: nothing to do",
			 c->conf.name);
		return 0;
	}
	n = json_array_size(list);
	if (n == 0)
		log_warn("GC for network %s with an empty attachment list: the supervisor "
			 "releases every attachment of this network",
			 c->conf.name);
	/* n is capped at GC_MAX_ATTACHMENTS by conf_parse. */
	atts = xcalloc(n, sizeof(*atts));
	ptrs = xcalloc(n, sizeof(*ptrs));
	json_array_foreach(list, i, e)
	{
		tscni__gc_attachment__init(&atts[i]);
		atts[i].container_id = (char *)json_string_value(json_object_get(e, "containerID"));
		atts[i].ifname = (char *)json_string_value(json_object_get(e, "ifname"));
		ptrs[i] = &atts[i];
	}
	gc.network = (char *)c->conf.name;
	gc.n_valid = n;
	gc.valid = ptrs;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_GC;
	req.gc = &gc;

	ret = client_call(c->conf.socket_path, &req, deadline(c), &reply, &why);
	if (ret < 0) {
		ret = call_failed(c, ret, why);
		goto out;
	}
	ret = reply_expect(c, reply, TSCNI__CNI_REPLY__BODY_GC);
	if (ret == 0)
		ret = gc_result(c, reply->gc);
	tscni__cni_reply__free_unpacked(reply, NULL);
out:
	free(ptrs);
	free(atts);
	return ret;
}

static int cmd_status(struct cmd *c)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__StatusRequest st = TSCNI__STATUS_REQUEST__INIT;
	Tscni__CniReply *reply = NULL;
	const char *why = NULL;
	int ret;

	/* failurePolicy "ignore": a secondary network never makes the node
	 * NotReady, so there is nothing to ask. */
	if (c->conf.fail_open)
		return 0;
	st.verbose = false;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_STATUS;
	req.status = &st;
	ret = client_call(c->conf.socket_path, &req, deadline(c), &reply, &why);
	if (ret == -EPROTO)
		return error_set(&c->err, CNI_ERR_NOT_READY, "tailscale-cni supervisor not ready",
				 "protocol error: %s", why);
	if (ret < 0)
		return unavailable(c, CNI_ERR_NOT_READY, ret, why);
	switch (reply->body_case) {
	case TSCNI__CNI_REPLY__BODY_STATUS:
		switch (reply->status->health) {
		case TSCNI__HEALTH__HEALTH_READY:
			ret = 0;
			break;
		case TSCNI__HEALTH__HEALTH_DEGRADED:
			ret = error_set(&c->err, CNI_ERR_DEGRADED,
					"tailscale-cni degraded: existing pods may lose "
					"connectivity",
					"%s", reply->status->reason ? reply->status->reason : "");
			break;
		default:
			ret = error_set(&c->err, CNI_ERR_NOT_READY,
					"tailscale-cni supervisor not ready", "%s",
					reply->status->reason ? reply->status->reason : "");
			break;
		}
		break;
	case TSCNI__CNI_REPLY__BODY_ERROR:
		ret = error_set(&c->err, CNI_ERR_NOT_READY, "tailscale-cni supervisor not ready",
				"%s: %s", reply->error->msg ? reply->error->msg : "",
				reply->error->details ? reply->error->details : "");
		break;
	default:
		ret = error_set(&c->err, CNI_ERR_NOT_READY, "tailscale-cni supervisor not ready",
				"protocol error: reply of the wrong type for STATUS");
		break;
	}
	tscni__cni_reply__free_unpacked(reply, NULL);
	return ret;
}

int cmd_exec(struct cmd *c)
{
	switch (c->env.verb) {
	case CNI_VERB_ADD:
		return cmd_add(c);
	case CNI_VERB_DEL:
		return cmd_del(c);
	case CNI_VERB_CHECK:
		return cmd_check(c);
	case CNI_VERB_GC:
		return cmd_gc(c);
	case CNI_VERB_STATUS:
		return cmd_status(c);
	default:
		return error_set(&c->err, CNI_ERR_INTERNAL, "internal error",
				 "cmd_exec called for %s", args_verb_name(c->env.verb));
	}
}

void cmd_destroy(struct cmd *c)
{
	args_destroy(&c->args);
	conf_destroy(&c->conf);
	free(c->out);
	c->out = NULL;
}
