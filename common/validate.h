/* Checks run after every protobuf unpack (protobuf-c accepts missing fields,
 * silently shortens strings at an embedded NUL and checks no bounds). Each
 * returns 0 or -EBADMSG with *why set to a static string naming the field. */
#ifndef TSCNI_COMMON_VALIDATE_H
#define TSCNI_COMMON_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "cni.pb-c.h"
#include "state.pb-c.h"
#include "worker.pb-c.h"

enum validate_limits {
	NAME_MAX_LEN = 253,	     /* network name */
	CONTAINER_ID_MAX_LEN = 4096, /* docs/cni-contract.md 2.1 */
	IFNAME_MAX_LEN = 15,
	PATH_MAX_LEN = 4095,
	POD_FIELD_MAX_LEN = 253, /* namespace, name, uid */
	ANNOTATION_MAX = 64,
	ANNOTATION_KEY_MAX_LEN = 317,
	ANNOTATION_VALUE_MAX_LEN = 4096,
	GC_MAX_ATTACHMENTS = 65536,
	PREFIX_MAX = 16, /* addresses or routes in one message */
	STATUS_MAX_PODS = 16384,
	MSG_MAX_LEN = 1024, /* error messages, reasons, details */
	HOST_MAX_LEN = 253,
	AUTHKEY_MAX_LEN = 512,
	URL_MAX_LEN = 2048,
	/* The PEM CA bundle workers trust (a full system bundle is ~220 KB)
	 * and the piece of it one CaChunk message carries. */
	CA_BUNDLE_MAX_LEN = 1 << 20,
	CA_CHUNK_MAX_LEN = 60 * 1024,
	ENDPOINT_DENY_MAX = 32, /* --endpoint-deny-iface globs */
	ENDPOINT_DENY_GLOB_MAX_LEN = 64,
	/* PeerStatus (cni.proto): entries in one Stats or PodStatus, the
	 * node key's short form "[" + 5 base64 characters + "]", the host
	 * name (one DNS label). */
	PEER_STATUS_MAX = 256,
	PEER_KEY_SHORT_LEN = 7,
	PEER_HOST_MAX_LEN = 63,
	/* DerpMapReport / NetcheckReport (docs/tailscale-protocol.md §6.5). */
	NETCHECK_REGIONS_MAX = 64,
	NETCHECK_TARGETS_MAX = 4, /* STUN targets of one region */
	NETCHECK_LATENCY_MAX_MS = 60 * 1000,
	/* RouteSet: prefixes in one part, and in one set (parts together). */
	ROUTE_SET_MAX = 4096,
	ROUTE_SET_TOTAL_MAX = 65536,
	/* ControlStatus.reason (worker.proto) and PodStatus.control_reason:
	 * printable ASCII only (valid_printable). */
	CONTROL_REASON_MAX_LEN = 160,
	/* A pod's Tailscale tags (Start.tags, Identity.tags, --allowed-tags):
	 * at most POD_TAGS_MAX, each at most TAG_MAX_LEN bytes ("tag:" and
	 * the name). Upstream sets no length; 128 is far past any in use. */
	POD_TAGS_MAX = 64,
	TAG_MAX_LEN = 128,
	/* Key expiry (docs/design.md "Key expiry"): a worker asks for
	 * re-authentication once its node key expires within this margin
	 * (by control's clock); the supervisor confirms an expiry within it,
	 * plus REAUTH_SLACK_S for the clocks' difference. */
	REAUTH_MARGIN_S = 3600,
	REAUTH_SLACK_S = 300,
};

/* Test knobs a Start message may carry. The supervisor checks its options
 * against these at start-up, so a bad one is named once rather than by every
 * worker; validate_supervisor_msg checks them again on the worker's side. */
enum start_test_knobs {
	START_TEST_NO_LITE = 1U << 0, /* control never sends lite updates */
	/* Each WireGuard timer override is at most the protocol's
	 * REJECT_AFTER_TIME (180 s; worker/wg/wg_messages.h). */
	START_WG_TIMER_MAX_MS = 180 * 1000,
};

/* ^[A-Za-z0-9][A-Za-z0-9_.-]*$, bounded by max. */
bool valid_name(const char *s, size_t max);
/* 1..15 bytes, not "." or "..", no '/', ':' or whitespace. */
bool valid_ifname(const char *s);
/* An interface-name glob (fnmatch): 1..ENDPOINT_DENY_GLOB_MAX_LEN printable
 * ASCII bytes, no whitespace or '/'. */
bool valid_iface_glob(const char *s);
/* Absolute, no NUL, bounded by PATH_MAX_LEN. */
bool valid_abs_path(const char *s);
/* 0..max bytes, each printable ASCII (0x20..0x7e): text a terminal shows
 * as it is. */
bool valid_printable(const char *s, size_t max);
/* Copies src into dst (size > 0) as valid_printable text of at most
 * size - 1 bytes: every other byte becomes '?'; a cut ends in "...". What
 * a worker does to text before sending it where valid_printable checks. */
void printable_copy(char *dst, size_t size, const char *src);
/* A Tailscale tag as upstream's tailcfg.CheckTag accepts it: "tag:", then a
 * letter, then letters, digits and '-'; at most TAG_MAX_LEN bytes. Sets
 * *why (static) to upstream's reason when not. */
bool valid_tag(const char *s, const char **why);

/* A STUN target a worker may name for the supervisor's netcheck: a 4- or
 * 16-byte unicast address (loopback included: tests), not the unspecified
 * one, and a port in 1..65535. The worker filters its DERP map with it. */
bool valid_stun_target(const uint8_t *ip, size_t len, uint32_t port);
int validate_ip_prefix(const Tscni__IpPrefix *m, const char **why);
int validate_attachment_key(const Tscni__AttachmentKey *m, const char **why);
int validate_cni_request(const Tscni__CniRequest *m, const char **why);
int validate_cni_reply(const Tscni__CniReply *m, const char **why);
int validate_identity(const Tscni__Identity *m, const char **why);
int validate_attachment(const Tscni__Attachment *m, const char **why);
int validate_tombstone(const Tscni__Tombstone *m, const char **why);
int validate_job(const Tscni__Job *m, const char **why);
int validate_supervisor_msg(const Tscni__SupervisorMsg *m, const char **why);
int validate_worker_msg(const Tscni__WorkerMsg *m, const char **why);

#endif
