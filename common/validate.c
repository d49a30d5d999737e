/* Checks run after every protobuf unpack. protobuf-c hands back whatever the
 * peer sent: strings of any length and content (cut short at an embedded
 * NUL), bytes fields of any size, enum values outside the schema, repeated
 * fields of any count, missing submessages and an unset oneof. Everything the
 * rest of the code assumes about a message is checked here, once.
 *
 * Conventions: an enum whose zero value is *_UNSPECIFIED must be set (zero
 * means the sender forgot it); names that end up in paths or interface names
 * are restricted to the characters of valid_name()/valid_ifname(); free text
 * (messages, details) is only bounded, and is escaped when logged. */
#include "validate.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "frame.h"
#include "log.h"

/* Local bounds for fields validate.h leaves unnamed. */
enum validate_local_limits {
	CNI_VERSION_MAX_LEN = 32,
	ID_MAX_LEN = 63, /* machine id, boot id: 32 hex or a UUID */
	NODE_NAME_MAX_LEN = 253,
	STATE_NAME_MAX_LEN = 64,
	VERSION_MAX_LEN = 128,
	MTU_MAX = 65535,
	ERRNO_MAX = 4095,
	ROLL_FAILED_MAX = 64, /* RollWorkersReply.failed */
};

static bool is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

static bool is_name_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool valid_name(const char *s, size_t max)
{
	size_t i;

	if (!s || !is_name_start((unsigned char)s[0]))
		return false;
	for (i = 1; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i >= max)
			return false;
		if (!is_name_start(c) && c != '_' && c != '.' && c != '-')
			return false;
	}
	return i <= max;
}

bool valid_ifname(const char *s)
{
	size_t i;

	if (!s || !s[0] || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (i = 0; s[i]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (i >= IFNAME_MAX_LEN)
			return false;
		/* The kernel's dev_valid_name() rules, plus no control bytes. */
		if (c == '/' || c == ':' || c == ' ' || is_ctl(c))
			return false;
	}
	return true;
}

bool valid_abs_path(const char *s)
{
	size_t i;

	if (!s || s[0] != '/')
		return false;
	for (i = 0; s[i]; i++) {
		if (i >= PATH_MAX_LEN)
			return false;
		if (is_ctl((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* Free text: present and at most max bytes. */
static bool valid_text(const char *s, size_t max)
{
	return s && strnlen(s, max + 1) <= max;
}

/* Text without control bytes (URLs, keys): they are never meant to hold any. */
static bool valid_plain(const char *s, size_t max)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; s[i]; i++)
		if (i >= max || is_ctl((unsigned char)s[i]))
			return false;
	return true;
}

bool valid_printable(const char *s, size_t max)
{
	size_t i;

	if (!s)
		return false;
	for (i = 0; s[i]; i++)
		if (i >= max || s[i] < 0x20 || s[i] > 0x7e)
			return false;
	return true;
}

void printable_copy(char *dst, size_t size, const char *src)
{
	size_t i = 0, n = src ? strlen(src) : 0;

	if (!size)
		return;
	for (; i < n && i + 1 < size; i++)
		dst[i] = src[i] >= 0x20 && src[i] <= 0x7e ? src[i] : '?';
	dst[i] = '\0';
	if (i < n && size > 4)
		memcpy(dst + size - 4, "...", 4);
}

bool valid_iface_glob(const char *s)
{
	size_t i;

	if (!s || !s[0])
		return false;
	for (i = 0; s[i]; i++)
		if (i >= ENDPOINT_DENY_GLOB_MAX_LEN || s[i] <= ' ' || s[i] > '~' || s[i] == '/')
			return false;
	return true;
}

static bool is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool valid_tag(const char *s, const char **why)
{
	const char *name;
	const char *unused;

	if (!why)
		why = &unused;
	if (!s || strncmp(s, "tag:", 4) != 0) {
		*why = "tags must start with 'tag:'";
		return false;
	}
	name = s + 4;
	if (!*name) {
		*why = "tag names must not be empty";
		return false;
	}
	if (strnlen(s, TAG_MAX_LEN + 1) > TAG_MAX_LEN) {
		*why = "tags are at most 128 bytes";
		return false;
	}
	if (!is_alpha((unsigned char)*name)) {
		*why = "tag names must start with a letter, after 'tag:'";
		return false;
	}
	for (; *name; name++) {
		unsigned char c = (unsigned char)*name;

		if (!is_alpha(c) && !(c >= '0' && c <= '9') && c != '-') {
			*why = "tag names can only contain numbers, letters, or dashes";
			return false;
		}
	}
	return true;
}

/* At most POD_TAGS_MAX valid tags, none twice. */
static bool valid_tags(char *const *tags, size_t n)
{
	if (n > POD_TAGS_MAX || (n && !tags))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!valid_tag(tags[i], NULL))
			return false;
		for (size_t j = 0; j < i; j++)
			if (strcmp(tags[i], tags[j]) == 0)
				return false;
	}
	return true;
}

static bool empty(const char *s)
{
	return !s || !s[0];
}

static bool opt_name(const char *s, size_t max)
{
	return empty(s) || valid_name(s, max);
}

static int bad(const char **why, const char *what)
{
	*why = what;
	return -EBADMSG;
}

int validate_ip_prefix(const Tscni__IpPrefix *m, const char **why)
{
	if (!m)
		return bad(why, "prefix missing");
	if (m->addr.len == 4) {
		if (m->prefix_len > 32)
			return bad(why, "IPv4 prefix length over 32");
	} else if (m->addr.len == 16) {
		if (m->prefix_len > 128)
			return bad(why, "IPv6 prefix length over 128");
	} else {
		return bad(why, "prefix address not 4 or 16 bytes");
	}
	if (!m->addr.data)
		return bad(why, "prefix address missing");
	return 0;
}

static int prefixes(Tscni__IpPrefix *const *v, size_t n, const char *too_many, const char **why)
{
	if (n > PREFIX_MAX)
		return bad(why, too_many);
	for (size_t i = 0; i < n; i++) {
		int ret = validate_ip_prefix(v[i], why);

		if (ret < 0)
			return ret;
	}
	return 0;
}

int validate_attachment_key(const Tscni__AttachmentKey *m, const char **why)
{
	if (!m)
		return bad(why, "attachment key missing");
	if (!valid_name(m->network, NAME_MAX_LEN))
		return bad(why, "key.network invalid");
	if (!valid_name(m->container_id, CONTAINER_ID_MAX_LEN))
		return bad(why, "key.container_id invalid");
	if (!valid_ifname(m->ifname))
		return bad(why, "key.ifname invalid");
	return 0;
}

/* Every field may be empty (a runtime without K8S_POD_* args). */
static int pod_meta(const Tscni__PodMeta *m, const char **why)
{
	if (!m)
		return 0;
	if (!opt_name(m->namespace_, POD_FIELD_MAX_LEN))
		return bad(why, "pod.namespace invalid");
	if (!opt_name(m->name, POD_FIELD_MAX_LEN))
		return bad(why, "pod.name invalid");
	if (!opt_name(m->uid, POD_FIELD_MAX_LEN))
		return bad(why, "pod.uid invalid");
	if (!opt_name(m->infra_container_id, CONTAINER_ID_MAX_LEN))
		return bad(why, "pod.infra_container_id invalid");
	return 0;
}

static int add_request(const Tscni__AddRequest *m, const char **why)
{
	int ret;

	ret = validate_attachment_key(m->key, why);
	if (ret < 0)
		return ret;
	if (!valid_abs_path(m->netns_path))
		return bad(why, "add.netns_path invalid");
	if (!valid_ifname(m->interface_name))
		return bad(why, "add.interface_name invalid");
	ret = pod_meta(m->pod, why);
	if (ret < 0)
		return ret;
	if (!valid_name(m->cni_version, CNI_VERSION_MAX_LEN))
		return bad(why, "add.cni_version invalid");
	if (m->n_annotations > ANNOTATION_MAX)
		return bad(why, "add.annotations: too many");
	for (size_t i = 0; i < m->n_annotations; i++) {
		const Tscni__Annotation *a = m->annotations[i];

		if (!a || empty(a->key) || !valid_plain(a->key, ANNOTATION_KEY_MAX_LEN))
			return bad(why, "add.annotations: key invalid");
		if (!valid_text(a->value, ANNOTATION_VALUE_MAX_LEN))
			return bad(why, "add.annotations: value too long");
	}
	return 0;
}

/* DEL must succeed with what the runtime still knows: containerd's second DEL
 * has no netns, so netns_path and interface_name may be empty. */
static int del_request(const Tscni__DelRequest *m, const char **why)
{
	int ret = validate_attachment_key(m->key, why);

	if (ret < 0)
		return ret;
	if (!empty(m->netns_path) && !valid_abs_path(m->netns_path))
		return bad(why, "del.netns_path invalid");
	if (!empty(m->interface_name) && !valid_ifname(m->interface_name))
		return bad(why, "del.interface_name invalid");
	return 0;
}

static int check_request(const Tscni__CheckRequest *m, const char **why)
{
	int ret = validate_attachment_key(m->key, why);

	if (ret < 0)
		return ret;
	if (!valid_abs_path(m->netns_path))
		return bad(why, "check.netns_path invalid");
	if (!valid_ifname(m->interface_name))
		return bad(why, "check.interface_name invalid");
	return prefixes(m->expected_addresses, m->n_expected_addresses,
			"check.expected_addresses: too many", why);
}

static int gc_request(const Tscni__GcRequest *m, const char **why)
{
	if (!valid_name(m->network, NAME_MAX_LEN))
		return bad(why, "gc.network invalid");
	if (m->n_valid > GC_MAX_ATTACHMENTS)
		return bad(why, "gc.valid: too many");
	for (size_t i = 0; i < m->n_valid; i++) {
		const Tscni__GcAttachment *a = m->valid[i];

		if (!a || !valid_name(a->container_id, CONTAINER_ID_MAX_LEN))
			return bad(why, "gc.valid: container_id invalid");
		if (!valid_ifname(a->ifname))
			return bad(why, "gc.valid: ifname invalid");
	}
	return 0;
}

int validate_cni_request(const Tscni__CniRequest *m, const char **why)
{
	if (!m)
		return bad(why, "request missing");
	if (m->protocol_version == 0)
		return bad(why, "protocol_version missing");
	switch (m->body_case) {
	case TSCNI__CNI_REQUEST__BODY_ADD:
		return m->add ? add_request(m->add, why) : bad(why, "add body missing");
	case TSCNI__CNI_REQUEST__BODY_DEL:
		return m->del ? del_request(m->del, why) : bad(why, "del body missing");
	case TSCNI__CNI_REQUEST__BODY_CHECK:
		return m->check ? check_request(m->check, why) : bad(why, "check body missing");
	case TSCNI__CNI_REQUEST__BODY_GC:
		return m->gc ? gc_request(m->gc, why) : bad(why, "gc body missing");
	case TSCNI__CNI_REQUEST__BODY_STATUS:
		return m->status ? 0 : bad(why, "status body missing");
	case TSCNI__CNI_REQUEST__BODY_ROLL_WORKERS:
		return m->roll_workers ? 0 : bad(why, "roll_workers body missing");
	default:
		return bad(why, "request body not set");
	}
}

static int cni_error(const Tscni__Error *m, const char **why)
{
	if (m->cni_code == 0)
		return bad(why, "error.cni_code missing");
	if (!valid_text(m->msg, MSG_MAX_LEN))
		return bad(why, "error.msg too long");
	if (!valid_text(m->details, MSG_MAX_LEN))
		return bad(why, "error.details too long");
	return 0;
}

static int add_reply(const Tscni__AddReply *m, const char **why)
{
	int ret;

	if (!valid_ifname(m->interface_name))
		return bad(why, "add.interface_name invalid");
	if (m->mtu > MTU_MAX)
		return bad(why, "add.mtu out of range");
	ret = prefixes(m->addresses, m->n_addresses, "add.addresses: too many", why);
	if (ret < 0)
		return ret;
	return prefixes(m->routes, m->n_routes, "add.routes: too many", why);
}

static int gc_reply(const Tscni__GcReply *m, const char **why)
{
	if (m->n_failed > GC_MAX_ATTACHMENTS)
		return bad(why, "gc.failed: too many");
	for (size_t i = 0; i < m->n_failed; i++)
		if (!valid_text(m->failed[i], MSG_MAX_LEN))
			return bad(why, "gc.failed: entry too long");
	return 0;
}

/* "[" + 5 characters of standard base64 + "]". */
static bool valid_key_short(const char *s)
{
	if (!s || strlen(s) != PEER_KEY_SHORT_LEN || s[0] != '[' ||
	    s[PEER_KEY_SHORT_LEN - 1] != ']')
		return false;
	for (size_t i = 1; i < PEER_KEY_SHORT_LEN - 1; i++)
		if (!is_name_start((unsigned char)s[i]) && s[i] != '+' && s[i] != '/')
			return false;
	return true;
}

/* One PeerStatus: the path's fields are set exactly when its kind uses them,
 * so a reader never guesses which apply. */
static int peer_status(const Tscni__PeerStatus *m, const char **why)
{
	bool direct, derp;

	if (!m)
		return bad(why, "peer entry missing");
	if (!valid_key_short(m->node_key))
		return bad(why, "peer.node_key invalid");
	if (m->tailnet_ipv4.len != 0 && m->tailnet_ipv4.len != 4)
		return bad(why, "peer.tailnet_ipv4 not 4 bytes");
	if (!opt_name(m->host_name, PEER_HOST_MAX_LEN))
		return bad(why, "peer.host_name invalid");
	if (m->path < TSCNI__PEER_PATH__PEER_PATH_NONE ||
	    m->path > TSCNI__PEER_PATH__PEER_PATH_DERP)
		return bad(why, "peer.path not a known value");
	direct = m->path == TSCNI__PEER_PATH__PEER_PATH_DIRECT;
	derp = m->path == TSCNI__PEER_PATH__PEER_PATH_DERP;
	if (direct != (m->direct_ip.len == 4 || m->direct_ip.len == 16) ||
	    (!direct && m->direct_ip.len))
		return bad(why, "peer.direct_ip does not match the path");
	if (direct != (m->direct_port >= 1 && m->direct_port <= 65535) ||
	    (!direct && m->direct_port))
		return bad(why, "peer.direct_port does not match the path");
	if (derp != (m->derp_region >= 1 && m->derp_region <= 65535) || (!derp && m->derp_region))
		return bad(why, "peer.derp_region does not match the path");
	return 0;
}

static int peers(Tscni__PeerStatus *const *v, size_t n, const char **why)
{
	if (n > PEER_STATUS_MAX)
		return bad(why, "peer: too many");
	for (size_t i = 0; i < n; i++) {
		int ret = peer_status(v[i], why);

		if (ret < 0)
			return ret;
	}
	return 0;
}

static int pod_status(const Tscni__PodStatus *m, const char **why)
{
	int ret;

	if (!m)
		return bad(why, "status.pod entry missing");
	ret = validate_attachment_key(m->key, why);
	if (ret < 0)
		return ret;
	ret = pod_meta(m->pod, why);
	if (ret < 0)
		return ret;
	if (!empty(m->netns_path) && !valid_abs_path(m->netns_path))
		return bad(why, "status.pod.netns_path invalid");
	if (!empty(m->interface_name) && !valid_ifname(m->interface_name))
		return bad(why, "status.pod.interface_name invalid");
	if (!opt_name(m->state, STATE_NAME_MAX_LEN))
		return bad(why, "status.pod.state invalid");
	if (m->worker_pid < 0)
		return bad(why, "status.pod.worker_pid negative");
	if (!opt_name(m->worker_state, STATE_NAME_MAX_LEN))
		return bad(why, "status.pod.worker_state invalid");
	if (!opt_name(m->hostname, HOST_MAX_LEN))
		return bad(why, "status.pod.hostname invalid");
	if (!opt_name(m->control_state, STATE_NAME_MAX_LEN))
		return bad(why, "status.pod.control_state invalid");
	if (!valid_printable(m->control_reason, CONTROL_REASON_MAX_LEN))
		return bad(why, "status.pod.control_reason not printable ASCII of at most 160 "
				"bytes");
	ret = peers(m->peer, m->n_peer, why);
	if (ret < 0)
		return ret;
	return prefixes(m->addresses, m->n_addresses, "status.pod.addresses: too many", why);
}

static int status_reply(const Tscni__StatusReply *m, const char **why)
{
	if (m->health < TSCNI__HEALTH__HEALTH_READY || m->health > TSCNI__HEALTH__HEALTH_DEGRADED)
		return bad(why, "status.health not a known value");
	if (!valid_text(m->reason, MSG_MAX_LEN))
		return bad(why, "status.reason too long");
	if (!valid_plain(m->version, VERSION_MAX_LEN))
		return bad(why, "status.version invalid");
	if (m->n_pod > STATUS_MAX_PODS)
		return bad(why, "status.pod: too many");
	if (m->zygote_pid < 0)
		return bad(why, "status.zygote_pid negative");
	for (size_t i = 0; i < m->n_pod; i++) {
		int ret = pod_status(m->pod[i], why);

		if (ret < 0)
			return ret;
	}
	return 0;
}

static int roll_workers_reply(const Tscni__RollWorkersReply *m, const char **why)
{
	if (m->n_failed > ROLL_FAILED_MAX)
		return bad(why, "roll_workers.failed: too many");
	for (size_t i = 0; i < m->n_failed; i++)
		if (!valid_text(m->failed[i], MSG_MAX_LEN))
			return bad(why, "roll_workers.failed: entry too long");
	return 0;
}

int validate_cni_reply(const Tscni__CniReply *m, const char **why)
{
	if (!m)
		return bad(why, "reply missing");
	if (m->protocol_version == 0)
		return bad(why, "protocol_version missing");
	switch (m->body_case) {
	case TSCNI__CNI_REPLY__BODY_ERROR:
		return m->error ? cni_error(m->error, why) : bad(why, "error body missing");
	case TSCNI__CNI_REPLY__BODY_ADD:
		return m->add ? add_reply(m->add, why) : bad(why, "add body missing");
	case TSCNI__CNI_REPLY__BODY_DEL:
		return m->del ? 0 : bad(why, "del body missing");
	case TSCNI__CNI_REPLY__BODY_CHECK:
		return m->check ? prefixes(m->check->addresses, m->check->n_addresses,
					   "check.addresses: too many", why)
				: bad(why, "check body missing");
	case TSCNI__CNI_REPLY__BODY_GC:
		return m->gc ? gc_reply(m->gc, why) : bad(why, "gc body missing");
	case TSCNI__CNI_REPLY__BODY_STATUS:
		return m->status ? status_reply(m->status, why) : bad(why, "status body missing");
	case TSCNI__CNI_REPLY__BODY_ROLL_WORKERS:
		return m->roll_workers ? roll_workers_reply(m->roll_workers, why)
				       : bad(why, "roll_workers body missing");
	default:
		return bad(why, "reply body not set");
	}
}

/* machine_id and node_name say where a record was written: both required,
 * since state_load() compares them with this node's. */
static int origin(const char *machine_id, const char *node_name, const char **why)
{
	if (!valid_name(machine_id, ID_MAX_LEN))
		return bad(why, "machine_id invalid");
	if (!valid_name(node_name, NODE_NAME_MAX_LEN))
		return bad(why, "node_name invalid");
	return 0;
}

int validate_identity(const Tscni__Identity *m, const char **why)
{
	int ret;

	if (!m)
		return bad(why, "identity missing");
	if (!valid_name(m->pod_uid, POD_FIELD_MAX_LEN))
		return bad(why, "identity.pod_uid invalid");
	if (m->machine_private.len != 32 || !m->machine_private.data)
		return bad(why, "identity.machine_private not 32 bytes");
	if (m->node_private.len != 32 || !m->node_private.data)
		return bad(why, "identity.node_private not 32 bytes");
	if (!opt_name(m->hostname, HOST_MAX_LEN))
		return bad(why, "identity.hostname invalid");
	ret = prefixes(m->addresses, m->n_addresses, "identity.addresses: too many", why);
	if (ret < 0)
		return ret;
	ret = origin(m->machine_id, m->node_name, why);
	if (ret < 0)
		return ret;
	if (!opt_name(m->stable_node_id, HOST_MAX_LEN))
		return bad(why, "identity.stable_node_id invalid");
	if (!valid_tags(m->tags, m->n_tags))
		return bad(why, "identity.tags: too many, repeated or not tags");
	if (m->old_node_public.len != 0 && m->old_node_public.len != 32)
		return bad(why, "identity.old_node_public not 32 bytes");
	return pod_meta(m->pod, why);
}

int validate_attachment(const Tscni__Attachment *m, const char **why)
{
	int ret;

	if (!m)
		return bad(why, "attachment missing");
	ret = validate_attachment_key(m->key, why);
	if (ret < 0)
		return ret;
	if (!valid_name(m->pod_uid, POD_FIELD_MAX_LEN))
		return bad(why, "attachment.pod_uid invalid");
	ret = pod_meta(m->pod, why);
	if (ret < 0)
		return ret;
	if (!valid_abs_path(m->netns_path))
		return bad(why, "attachment.netns_path invalid");
	if (!valid_ifname(m->interface_name))
		return bad(why, "attachment.interface_name invalid");
	if (m->state < TSCNI__ATTACHMENT_STATE__ATTACHMENT_INTENT ||
	    m->state > TSCNI__ATTACHMENT_STATE__ATTACHMENT_RELEASING)
		return bad(why, "attachment.state not a known value");
	if (!valid_name(m->boot_id, ID_MAX_LEN))
		return bad(why, "attachment.boot_id invalid");
	ret = origin(m->machine_id, m->node_name, why);
	if (ret < 0)
		return ret;
	if (!opt_name(m->cni_version, CNI_VERSION_MAX_LEN))
		return bad(why, "attachment.cni_version invalid");
	ret = prefixes(m->addresses, m->n_addresses, "attachment.addresses: too many", why);
	if (ret < 0)
		return ret;
	if (m->worker && m->worker->pid < 0)
		return bad(why, "attachment.worker.pid negative");
	return 0;
}

int validate_tombstone(const Tscni__Tombstone *m, const char **why)
{
	int ret;

	if (!m)
		return bad(why, "tombstone missing");
	ret = validate_attachment_key(m->key, why);
	if (ret < 0)
		return ret;
	if (!empty(m->netns_path) && !valid_abs_path(m->netns_path))
		return bad(why, "tombstone.netns_path invalid");
	if (!empty(m->interface_name) && !valid_ifname(m->interface_name))
		return bad(why, "tombstone.interface_name invalid");
	return 0;
}

int validate_job(const Tscni__Job *m, const char **why)
{
	if (!m)
		return bad(why, "job missing");
	if (!valid_name(m->id, NAME_MAX_LEN))
		return bad(why, "job.id invalid");
	if (m->kind != TSCNI__JOB_KIND__JOB_DELETE_DEVICE)
		return bad(why, "job.kind not a known value");
	/* The one kind deletes a device. */
	if (!valid_name(m->pod_uid, POD_FIELD_MAX_LEN))
		return bad(why, "job.pod_uid invalid");
	/* The node's stable id is known once it registered; the node key
	 * always is, and is what a device is confirmed by. */
	if (*m->stable_node_id && !valid_name(m->stable_node_id, HOST_MAX_LEN))
		return bad(why, "job.stable_node_id invalid");
	if (m->node_public.len != 32)
		return bad(why, "job.node_public is not 32 bytes");
	return 0;
}

static int hello(const Tscni__Hello *m, const char **why)
{
	if (m->min_version == 0 || m->max_version < m->min_version)
		return bad(why, "hello: version range invalid");
	if (!opt_name(m->pod_uid, POD_FIELD_MAX_LEN))
		return bad(why, "hello.pod_uid invalid");
	if (!opt_name(m->boot_id, ID_MAX_LEN))
		return bad(why, "hello.boot_id invalid");
	if (m->pid < 0)
		return bad(why, "hello.pid negative");
	return 0;
}

static int start(const Tscni__Start *m, const char **why)
{
	if (!valid_name(m->pod_uid, POD_FIELD_MAX_LEN))
		return bad(why, "start.pod_uid invalid");
	if (!opt_name(m->hostname, HOST_MAX_LEN))
		return bad(why, "start.hostname invalid");
	if (m->machine_private.len != 32 || !m->machine_private.data)
		return bad(why, "start.machine_private not 32 bytes");
	if (m->node_private.len != 32 || !m->node_private.data)
		return bad(why, "start.node_private not 32 bytes");
	if (!valid_plain(m->auth_key, AUTHKEY_MAX_LEN))
		return bad(why, "start.auth_key invalid");
	if (!valid_plain(m->control_url, URL_MAX_LEN))
		return bad(why, "start.control_url invalid");
	if (m->fd_count > WMSG_MAX_FDS)
		return bad(why, "start.fd_count too large");
	if (m->mtu > MTU_MAX)
		return bad(why, "start.mtu out of range");
	if (m->ca_bundle.len > CA_CHUNK_MAX_LEN)
		return bad(why, "start.ca_bundle too large");
	if (m->ca_bundle_len > CA_BUNDLE_MAX_LEN)
		return bad(why, "start.ca_bundle_len too large");
	if (m->ca_bundle.len && m->ca_bundle_len)
		return bad(why, "start: both ca_bundle and ca_bundle_len");
	if (m->control_test_flags & ~(uint32_t)START_TEST_NO_LITE)
		return bad(why, "start.control_test_flags has unknown bits");
	if (m->n_endpoint_deny_iface > ENDPOINT_DENY_MAX)
		return bad(why, "start.endpoint_deny_iface: too many");
	for (size_t i = 0; i < m->n_endpoint_deny_iface; i++)
		if (!valid_iface_glob(m->endpoint_deny_iface[i]))
			return bad(why, "start.endpoint_deny_iface: not a bounded glob");
	if (!valid_tags(m->tags, m->n_tags))
		return bad(why, "start.tags: too many, repeated or not tags");
	if (m->old_node_public.len != 0 && m->old_node_public.len != 32)
		return bad(why, "start.old_node_public not 32 bytes");
	return prefixes(m->addresses, m->n_addresses, "start.addresses: too many", why);
}

static int resolve_reply(const Tscni__ResolveReply *m, const char **why)
{
	if (m->n_addrs > PREFIX_MAX)
		return bad(why, "resolve_reply.addrs: too many");
	for (size_t i = 0; i < m->n_addrs; i++)
		if ((m->addrs[i].len != 4 && m->addrs[i].len != 16) || !m->addrs[i].data)
			return bad(why, "resolve_reply.addrs: not 4 or 16 bytes");
	if (!valid_text(m->error, MSG_MAX_LEN))
		return bad(why, "resolve_reply.error too long");
	return 0;
}

static int netcheck_report(const Tscni__NetcheckReport *m, const char **why)
{
	uint32_t last = 0;

	if (m->n_regions > NETCHECK_REGIONS_MAX)
		return bad(why, "netcheck_report.regions: too many");
	for (size_t i = 0; i < m->n_regions; i++) {
		const Tscni__RegionLatency *r = m->regions[i];

		if (!r || r->region_id <= last || r->region_id > UINT16_MAX)
			return bad(why, "netcheck_report.regions: ids not increasing in 1..65535");
		if (r->latency_ms > NETCHECK_LATENCY_MAX_MS)
			return bad(why, "netcheck_report.regions: latency out of range");
		last = r->region_id;
	}
	if (m->preferred_region > UINT16_MAX)
		return bad(why, "netcheck_report.preferred_region out of range");
	if ((m->global_v4.len != 0 && m->global_v4.len != 4) ||
	    (m->global_v6.len != 0 && m->global_v6.len != 16))
		return bad(why, "netcheck_report: global address not 4 / 16 bytes");
	return 0;
}

static bool valid_neg_errno(int32_t err)
{
	return err <= 0 && err >= -ERRNO_MAX;
}

int validate_supervisor_msg(const Tscni__SupervisorMsg *m, const char **why)
{
	if (!m)
		return bad(why, "message missing");
	switch (m->body_case) {
	case TSCNI__SUPERVISOR_MSG__BODY_HELLO:
		return m->hello ? hello(m->hello, why) : bad(why, "hello body missing");
	case TSCNI__SUPERVISOR_MSG__BODY_START:
		return m->start ? start(m->start, why) : bad(why, "start body missing");
	case TSCNI__SUPERVISOR_MSG__BODY_STOP:
		if (!m->stop)
			return bad(why, "stop body missing");
		return valid_plain(m->stop->auth_key, AUTHKEY_MAX_LEN)
			       ? 0
			       : bad(why, "stop.auth_key invalid");
	case TSCNI__SUPERVISOR_MSG__BODY_STATS_REQUEST:
		return m->stats_request ? 0 : bad(why, "stats_request body missing");
	case TSCNI__SUPERVISOR_MSG__BODY_RESOLVE_REPLY:
		return m->resolve_reply ? resolve_reply(m->resolve_reply, why)
					: bad(why, "resolve_reply body missing");
	case TSCNI__SUPERVISOR_MSG__BODY_NETOP_REPLY:
		if (!m->netop_reply)
			return bad(why, "netop_reply body missing");
		if (!valid_neg_errno(m->netop_reply->err))
			return bad(why, "netop_reply.err not a negative errno");
		if (!valid_text(m->netop_reply->why, MSG_MAX_LEN))
			return bad(why, "netop_reply.why too long");
		return 0;
	case TSCNI__SUPERVISOR_MSG__BODY_NETCHECK_REPORT:
		return m->netcheck_report ? netcheck_report(m->netcheck_report, why)
					  : bad(why, "netcheck_report body missing");
	case TSCNI__SUPERVISOR_MSG__BODY_CA_CHUNK:
		if (!m->ca_chunk)
			return bad(why, "ca_chunk body missing");
		if (!m->ca_chunk->data.len || m->ca_chunk->data.len > CA_CHUNK_MAX_LEN)
			return bad(why, "ca_chunk.data empty or too large");
		return 0;
	case TSCNI__SUPERVISOR_MSG__BODY_TEST_REQUEST:
		if (!m->test_request)
			return bad(why, "test_request body missing");
		if (!valid_name(m->test_request->action, STATE_NAME_MAX_LEN))
			return bad(why, "test_request.action invalid");
		if (!valid_text(m->test_request->arg, MSG_MAX_LEN))
			return bad(why, "test_request.arg too long");
		return 0;
	default:
		return bad(why, "message body not set");
	}
}

static int ready(const Tscni__Ready *m, const char **why)
{
	if (!opt_name(m->stable_node_id, HOST_MAX_LEN))
		return bad(why, "ready.stable_node_id invalid");
	return prefixes(m->addresses, m->n_addresses, "ready.addresses: too many", why);
}

/* A missing ControlStatus is fine (an older worker); a present one is
 * exact: a known state, a short printable reason, a retry time only while
 * retrying. */
static int control_status(const Tscni__ControlStatus *m, const char **why)
{
	if (!m)
		return 0;
	if (m->state < TSCNI__CONTROL_STATE__CONTROL_UNKNOWN ||
	    m->state > TSCNI__CONTROL_STATE__CONTROL_LOGGED_OUT)
		return bad(why, "control.state not a known value");
	if (!valid_printable(m->reason, CONTROL_REASON_MAX_LEN))
		return bad(why, "control.reason not printable ASCII of at most 160 bytes");
	if (m->retry_unix && m->state != TSCNI__CONTROL_STATE__CONTROL_RETRYING)
		return bad(why, "control.retry_unix set while not retrying");
	return 0;
}

static int event(const Tscni__Event *m, const char **why)
{
	if (m->kind < TSCNI__EVENT_KIND__EVENT_TUN_GONE ||
	    m->kind > TSCNI__EVENT_KIND__EVENT_SECCOMP_TRAP)
		return bad(why, "event.kind not a known value");
	if (!valid_text(m->detail, MSG_MAX_LEN))
		return bad(why, "event.detail too long");
	return control_status(m->control, why);
}

static int stats(const Tscni__Stats *m, const char **why)
{
	int ret = peers(m->peer, m->n_peer, why);

	return ret < 0 ? ret : control_status(m->control, why);
}

static int netop_request(const Tscni__NetopRequest *m, const char **why)
{
	if (m->kind < TSCNI__NETOP_KIND__NETOP_ADDR_ADD ||
	    m->kind > TSCNI__NETOP_KIND__NETOP_ROUTE_DEL)
		return bad(why, "netop_request.kind not a known value");
	if (!m->prefix)
		return bad(why, "netop_request.prefix missing");
	return validate_ip_prefix(m->prefix, why);
}

bool valid_stun_target(const uint8_t *ip, size_t len, uint32_t port)
{
	static const uint8_t zero[16];

	if (!ip || (len != 4 && len != 16) || port == 0 || port > UINT16_MAX)
		return false;
	if (memcmp(ip, zero, len) == 0)
		return false;
	if (len == 4)
		return ip[0] < 224; /* neither multicast nor broadcast */
	return ip[0] != 0xff;
}

static int derp_map_report(const Tscni__DerpMapReport *m, const char **why)
{
	uint32_t last = 0;

	if (m->n_regions > NETCHECK_REGIONS_MAX)
		return bad(why, "derp_map_report.regions: too many");
	for (size_t i = 0; i < m->n_regions; i++) {
		const Tscni__DerpRegionTargets *r = m->regions[i];

		if (!r || r->region_id <= last || r->region_id > UINT16_MAX)
			return bad(why, "derp_map_report.regions: ids not increasing in 1..65535");
		if (r->n_targets == 0 || r->n_targets > NETCHECK_TARGETS_MAX)
			return bad(why, "derp_map_report.regions: 1 to 4 targets each");
		for (size_t k = 0; k < r->n_targets; k++)
			if (!r->targets[k] ||
			    !valid_stun_target(r->targets[k]->ip.data, r->targets[k]->ip.len,
					       r->targets[k]->port))
				return bad(why,
					   "derp_map_report: a target is not a unicast ip:port");
		last = r->region_id;
	}
	return 0;
}

int validate_worker_msg(const Tscni__WorkerMsg *m, const char **why)
{
	if (!m)
		return bad(why, "message missing");
	switch (m->body_case) {
	case TSCNI__WORKER_MSG__BODY_HELLO:
		return m->hello ? hello(m->hello, why) : bad(why, "hello body missing");
	case TSCNI__WORKER_MSG__BODY_READY:
		return m->ready ? ready(m->ready, why) : bad(why, "ready body missing");
	case TSCNI__WORKER_MSG__BODY_STATS:
		return m->stats ? stats(m->stats, why) : bad(why, "stats body missing");
	case TSCNI__WORKER_MSG__BODY_EVENT:
		return m->event ? event(m->event, why) : bad(why, "event body missing");
	case TSCNI__WORKER_MSG__BODY_LOG:
		if (!m->log)
			return bad(why, "log body missing");
		if (m->log->level > LOG_DEBUG)
			return bad(why, "log.level not a known value");
		if (!valid_text(m->log->msg, MSG_MAX_LEN))
			return bad(why, "log.msg too long");
		return 0;
	case TSCNI__WORKER_MSG__BODY_RESOLVE_REQUEST:
		if (!m->resolve_request)
			return bad(why, "resolve_request body missing");
		if (!valid_name(m->resolve_request->host, HOST_MAX_LEN))
			return bad(why, "resolve_request.host invalid");
		return 0;
	case TSCNI__WORKER_MSG__BODY_NETOP_REQUEST:
		return m->netop_request ? netop_request(m->netop_request, why)
					: bad(why, "netop_request body missing");
	case TSCNI__WORKER_MSG__BODY_ROUTE_SET:
		if (!m->route_set)
			return bad(why, "route_set body missing");
		if (m->route_set->n_routes > ROUTE_SET_MAX)
			return bad(why, "route_set.routes: too many");
		for (size_t i = 0; i < m->route_set->n_routes; i++)
			if (!m->route_set->routes[i] ||
			    validate_ip_prefix(m->route_set->routes[i], why) < 0)
				return bad(why, "route_set.routes: not a prefix");
		return 0;
	case TSCNI__WORKER_MSG__BODY_CUSTODY:
		return bad(why, "custody only on an adoption connection");
	case TSCNI__WORKER_MSG__BODY_DERP_MAP_REPORT:
		return m->derp_map_report ? derp_map_report(m->derp_map_report, why)
					  : bad(why, "derp_map_report body missing");
	case TSCNI__WORKER_MSG__BODY_REAUTH_REQUEST:
		/* Two plain numbers, both only hints: the supervisor decides. */
		return m->reauth_request ? 0 : bad(why, "reauth_request body missing");
	case TSCNI__WORKER_MSG__BODY_TEST_REPLY:
		if (!m->test_reply)
			return bad(why, "test_reply body missing");
		if (!valid_neg_errno(m->test_reply->err))
			return bad(why, "test_reply.err not a negative errno");
		if (!valid_text(m->test_reply->detail, MSG_MAX_LEN))
			return bad(why, "test_reply.detail too long");
		return 0;
	default:
		return bad(why, "message body not set");
	}
}
