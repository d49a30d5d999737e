/* What the files of the pod table share (supervisor/ only; the rest of the
 * supervisor sees pods.h). pods.c holds the table and its attachments,
 * pods_op.c the queue every operation goes through, pods_add.c, pods_del.c,
 * pods_check.c, pods_gc.c, pods_save.c and pods_reconcile.c one operation
 * kind each, pods_worker.c the pods' workers, pods_netop.c their netlink
 * requests, pods_roll.c roll-workers and pods_startup.c the start.
 *
 * Threads. The table (struct pods and every struct attachment in it) belongs
 * to the loop thread. Each operation (struct op) reads the attachment of its
 * key as it was when the operation started (op->cur) from a threadpool
 * thread, does its netlink and fsync work there, and leaves its outcome in
 * the op; the after-work callback applies that outcome to the table on the
 * loop. This is safe because operations on one key are serialised
 * (pods__op_enqueue starts an op only when no earlier op of the same key is
 * still active), the loop itself never changes an attachment outside those
 * callbacks, and the loop only ever reads the fields an op's thread may
 * write (tun_fd) after the op is over. */
#ifndef TSCNI_SUPERVISOR_PODS_INTERNAL_H
#define TSCNI_SUPERVISOR_PODS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "annotations.h"
#include "frame.h"
#include "ip.h"
#include "keys.h"
#include "record.h"
#include "validate.h"
#include "pods.h"
#include "workers.h"

enum pods_limits {
	SYNC_TIMEOUT_DEFAULT_MS = 3000,
	UDP_BUFFER_BYTES = 7 << 20, /* the pod's UDP socket, each way */
	SYNC_TIMEOUT_MAX_MS = 60000,
	TAG_LEN = 192,
	DETAIL_LEN = 512,
	GC_FAILED_MAX = 64,
	TOMBSTONE_SCAN_MAX = 4096,
	ROLL_FAILED_MAX = 64,
	ROLL_STEP_TIMEOUT_MS = 10000, /* one worker's replacement, until Ready */
};

/* CNI error codes the supervisor puts into its replies (docs/cni-contract.md 6.2). */
enum cni_code {
	CNI_ERR_NETNS = 3,
	CNI_ERR_ENV = 4,
	CNI_ERR_BAD_NETNS = 8,
	CNI_ERR_TRY_AGAIN = 11,
	CNI_ERR_IF_EXISTS = 100,
	CNI_ERR_REFUSED = 102, /* control refused the node for good */
	CNI_ERR_CHECK = 103,
	CNI_ERR_WORKER = 103, /* CHECK: the pod's worker is not running */
	CNI_ERR_INTERNAL = 999,
};

struct op;
struct op_add;
struct roll_run;
struct netop_job;

struct pod_meta {
	char *namespace_;
	char *name;
	char *uid;
	char *infra_container_id;
};

struct attachment {
	struct attachment *next; /* pods->atts */
	char keyname[RECORD_KEYNAME_LEN];
	char tag[TAG_LEN]; /* "pod <uid> <keyname>", escaped, for log lines */
	char *network;
	char *container_id;
	char ifname[IFNAME_MAX_LEN + 1]; /* the runtime's CNI_IFNAME */
	char *pod_uid;
	struct pod_meta meta;
	char *netns_path;
	uint64_t netns_dev;
	uint64_t netns_ino;
	char interface_name[IFNAME_MAX_LEN + 1]; /* ts0 */
	uint32_t ifindex;
	Tscni__AttachmentState state;
	char *cni_version;
	uint64_t created_unix;
	struct ip_prefix addrs[PREFIX_MAX];
	size_t naddrs;
	/* Our own TUN fd (O_CLOEXEC), -1 when none: between ts0's creation
	 * and workers_spawn, or for a second attachment of a pod whose worker
	 * belongs to another attachment. */
	int tun_fd;
	/* The ADD waiting for this attachment's worker to report Ready. */
	struct op_add *sync_op;

	struct pods *pods;
	uint64_t id;	       /* unique while the supervisor runs */
	struct worker *worker; /* the pod's worker, NULL when none */
	bool worker_ready;     /* its current process is up (Ready or adopted) */
	bool dying;	       /* off the table; freed on the worker's GONE */
	struct op *stop_op;    /* an op waiting for this worker's GONE */
	/* The worker as the record says: what pods_startup adopts, and what
	 * the next save writes (boot_id is the record's). */
	struct worker_identity wi;
	uint32_t worker_uid; /* 0 until a slot is allocated */
	/* The worker's control connection as its last event said
	 * (pods_worker.c): unknown until one arrives, again after each exit. */
	enum { CONTROL_UNKNOWN, CONTROL_UP, CONTROL_DOWN } control;
	/* Key expiry (pods_reauth.c): the worker's re-auth requests. */
	struct pod_reauth *reauth; /* NULL until the first one */
};

struct pods_request {
	pods_reply_fn *fn; /* NULL once detached */
	void *arg;
	/* For the metrics (metrics.h): the verb (METRICS_VERBS: none, as
	 * roll-workers) and when the request arrived (uv_hrtime). */
	int verb;
	uint64_t start_ns;
	struct metrics *metrics;
};

/* What an operation kind does at each step. Every hook but work may be
 * NULL. */
struct op_type {
	size_t size; /* of the kind's struct, which begins with its struct op */
	/* On the threadpool: the netlink and fsync work, outcome into the op. */
	void (*work)(struct op *op);
	/* Must the attachment's worker be GONE before work runs? NULL: no. */
	bool (*stops_worker)(const struct op *op);
	/* On the loop, once the table has the outcome: replies and finishes
	 * (or waits for more). NULL: pods__op_reply, then pods__op_finish. */
	void (*done)(struct op *op);
	/* Builds the success reply and sends it with pods__op_send. NULL:
	 * the kind answers no request. */
	void (*reply)(struct op *op);
	/* First thing pods__op_finish does (a GC counts its release). */
	void (*end)(struct op *op);
	/* Starts closing the kind's handles: true when their close callback
	 * calls pods__op_free, false when there was none to close. */
	bool (*close)(struct op *op, uv_close_cb closed);
	/* Frees what the kind's struct owns (not op itself). */
	void (*destroy)(struct op *op);
};

/* The common head of every operation: its place in the queue, its key, the
 * attachment it found, and the outcome the loop applies. */
struct op {
	struct op *next; /* pods->ops, in arrival order */
	struct pods *pods;
	const struct op_type *type;
	bool running;
	bool waiting_worker; /* running: for cur's worker to be GONE */
	/* DEL, GC, a replacing ADD: the worker was stopped with logout, so the
	 * identity's node must register again (with the auth key) next time. */
	bool logged_out;
	char keyname[RECORD_KEYNAME_LEN];
	char tag[TAG_LEN];
	struct pods_request *req; /* NULL for internal operations */
	uv_work_t work;
	/* The table's attachment for the key when the op started. */
	struct attachment *cur;
	/* Outcome, written by the threadpool, applied on the loop. */
	bool replace;	   /* cur leaves the table (an ADD's new one enters) */
	uint32_t cni_code; /* 0: success */
	const char *msg;   /* static */
	char detail[DETAIL_LEN];
};

/* A rewrite of an attachment's record with its worker's identity (SAVE, and
 * an ADD whose worker became Ready). */
struct save_args {
	uint64_t id; /* which attachment */
	struct worker_identity wi;
	uint32_t uid;
	/* The node's addresses and stable id into the pod's identity too,
	 * marked registered. */
	bool ident;
	struct ip_prefix addrs[PREFIX_MAX];
	size_t naddrs;
	char stable[HOST_MAX_LEN + 1];
};

struct tomb_entry {
	char *filename;
	char *network;
	char *container_id;
	char ifname[IFNAME_MAX_LEN + 1];
	char *netns_path;
	char interface_name[IFNAME_MAX_LEN + 1];
};

struct pods {
	struct supervisor *sup;
	struct state *st;
	struct attachment *atts;
	size_t natts;
	struct op *ops;
	uv_timer_t reconcile_timer;
	bool timer_open;
	bool stopping;
	bool tomb_scan_running;
	struct attachment *dying; /* released, waiting for their workers' GONE */
	uint64_t next_id;
	struct roll_run *roll;
	/* Two ADDs of one pod (two attachments) may race to create its
	 * identity; this makes the check-then-create atomic. */
	uv_mutex_t identity_lock;
	/* During pods__attachment_spawn_key only: the key minted for the pod
	 * (borrowed; workers copy it). */
	const char *spawn_key;
	/* Likewise: a key rotation's old node key (pods_reauth.c), or NULL. */
	const uint8_t *spawn_old;
	struct netop_job *netops; /* in flight */
	/* Pods with an identity and no attachment, since when (uv_now):
	 * their identities go after --identity-grace (pods_reconcile.c). */
	struct pod_gone *gone;
	size_t ngone, gone_cap;
	/* For the metrics: the tombstones (DELs the plugin recorded while
	 * the supervisor was unreachable) the last scan found, the start's or
	 * the reconciler's; and the job records found at start. */
	size_t tombs_pending;
	unsigned int api_jobs;
};

struct pod_gone {
	char *pod_uid;
	uint64_t since_ms;
};

/* Storage for a repeated IpPrefix field built from struct ip_prefix. */
struct pb_prefixes {
	Tscni__IpPrefix m[PREFIX_MAX];
	Tscni__IpPrefix *p[PREFIX_MAX];
};

/* pods.c: helpers, attachments and the table. */
void pods__meta_free(struct pod_meta *m);
char *pods__dup_or_empty(const char *s);
void pods__meta_from_pb(struct pod_meta *m, const Tscni__PodMeta *pb);
void pods__meta_to_pb(const struct pod_meta *m, Tscni__PodMeta *pb);
size_t pods__prefixes_to_pb(const struct ip_prefix *src, size_t n, struct pb_prefixes *out);
size_t pods__prefixes_from_pb(Tscni__IpPrefix *const *src, size_t n, struct ip_prefix *out);
void pods__make_tag(char *tag, const char *pod_uid, const char *keyname);
uint32_t pods__errno_cni_code(int ret);
void pods__attachment_free(struct attachment *a);
struct attachment *pods__attachment_from_pb(const Tscni__Attachment *m);
int pods__attachment_save(struct pods *p, const struct attachment *a);
/* state_attachment_put_cached: no fsync (an ADD's intent and ts0 records). */
int pods__attachment_save_cached(struct pods *p, const struct attachment *a);
int pods__attachment_save_worker(struct pods *p, const struct attachment *a,
				 const struct worker_identity *wi, uint32_t uid);
int pods__attachment_unrecord(struct pods *p, const struct attachment *a);
struct attachment *pods__table_find(struct pods *p, const char *keyname);
struct attachment *pods__table_find_id(struct pods *p, uint64_t id);
void pods__table_insert(struct pods *p, struct attachment *a);
/* The pod has an identity and (now) no attachment: its grace starts. */
void pods__gone_note(struct pods *p, const char *pod_uid);
/* pods_reconcile.c: identities of pods gone longer than the grace are
 * wiped and removed (with the pod's directory). */
void pods__identities_gc(struct pods *p);
void pods__table_remove(struct pods *p, struct attachment *a);
/* Opens the attachment's netns by path and checks it is still the one it
 * was created in. 1: *nsfd open (the caller closes it); 0: gone (missing,
 * not a namespace any more, or replaced by another one); < 0: error. */
int pods__netns_reopen(const char *path, uint64_t dev, uint64_t ino, int *nsfd);
struct ifindex_query {
	const char *name;
};

/* Runs inside the pod's namespace (netns_run) with a struct ifindex_query:
 * the interface's index, 0 when absent, or a negative errno. */
int pods__ifindex_in_ns(void *arg);
/* Creates a's interface in nsfd (netops_tun_create), marked with the alias
 * of a's key so that only a DEL of this key ever deletes it. */
int pods__tun_create(const struct attachment *a, int nsfd, int *tun_fd, int *ifindex,
		     const char **why);
/* Releases a: the TUN fd out of custody, ts0 deleted if its netns is still
 * the same one, the record removed. Runs on the threadpool (or at startup).
 * Returns 0, or a negative errno with nothing removed from disk (a later
 * DEL or reconcile round retries); *why names the failing step. */
int pods__release(struct pods *p, struct attachment *a, const char **why);

/* pods_op.c: the queue of operations and the replies. */
void pods__op_fail(struct op *op, uint32_t code, const char *msg, int ret, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
struct op *pods__op_new(struct pods *p, const struct op_type *type, const char *network,
			const char *container_id, const char *ifname);
/* An op on a's key, logging with a's tag. */
struct op *pods__op_new_for(struct pods *p, const struct op_type *type, const struct attachment *a);
/* Takes the tag of the table's attachment for op's key, when there is one. */
void pods__op_tag_from_table(struct op *op);
void pods__op_free(struct op *op);
void pods__op_enqueue(struct op *op);
bool pods__key_active(struct pods *p, const char *keyname);
/* Queues op's work on the threadpool. false when that failed: the op has
 * replied and finished. */
bool pods__op_queue_work(struct op *op);
/* a's worker is GONE (or forgotten): the op waiting for it goes on. */
void pods__op_resume(struct attachment *a);
void pods__op_reply(struct op *op);
void pods__op_send(struct op *op, Tscni__CniReply *rep);
void pods__op_finish(struct op *op);
/* Sends the one reply to r and frees r (r NULL: nothing). */
void pods__request_reply(struct pods_request *r, const Tscni__CniReply *rep);
void pods__reply_error(struct pods_request *r, uint32_t code, const char *msg, const char *detail);
bool pods__op_stops_always(const struct op *op);

/* The submitters, one per request kind. */
int pods__submit_add(struct pods *p, const Tscni__AddRequest *m, struct pods_request *r);
void pods__submit_del(struct pods *p, const Tscni__DelRequest *m, struct pods_request *r);
void pods__submit_check(struct pods *p, const Tscni__CheckRequest *m, struct pods_request *r);
void pods__submit_gc(struct pods *p, const Tscni__GcRequest *m, struct pods_request *r);
void pods__submit_roll(struct pods *p, struct pods_request *req);

/* pods_add.c: the ADD's wait for its worker. */
/* The worker is Ready: the waiting ADD (if any) records it before its
 * reply. true when that save started (it replies when done). */
bool pods__add_ready_save(struct attachment *a, bool changed, bool ident, const char *stable);
/* Control refused the node: the waiting ADD (if any) fails now. */
void pods__add_refused(struct attachment *a, const char *detail);
/* Shutdown: the waiting ADD (if any) replies now. */
void pods__add_stop_wait(struct attachment *a);

/* Where an ADD's time goes: the moments it passes (uv_hrtime), in the
 * order they come; the reply logs the spans between them (pods_add.c). */
enum add_mark {
	ADD_MARK_ARRIVED,   /* the request was read */
	ADD_MARK_WORK,	    /* its work began on the threadpool */
	ADD_MARK_TUN,	    /* identity, records and ts0 done */
	ADD_MARK_HELLO,	    /* its worker said Hello */
	ADD_MARK_REGISTER,  /* control accepted the registration (the worker's) */
	ADD_MARK_NETMAP,    /* the first netmap applied (the worker's) */
	ADD_MARK_ADDRESSES, /* ts0's addresses set */
	ADD_MARK_READY,	    /* the worker's Ready */
	ADD_MARK_REPLY,	    /* the reply */
	ADD_MARKS,
};
/* The ADD waiting for a's worker (if any) passed mark at ns (uv_hrtime);
 * the first time counts (the last for ADD_MARK_ADDRESSES). */
void pods__add_mark(struct attachment *a, enum add_mark mark, uint64_t ns);

/* pods_del.c: the DEL a tombstone stands for (the reconciler's find). */
void pods__del_tombstone(struct pods *p, const struct tomb_entry *t);
bool pods__tombstone_active(struct pods *p, const char *filename);

/* pods_save.c */
void pods__save_ident_set(struct save_args *s, const struct attachment *a, const char *stable);
/* Does s on op's cur, unless it was released or replaced (threadpool). */
void pods__save_work(struct op *op, const struct save_args *s);
/* Queues a rewrite of a's record with its worker's identity (and, with
 * ident, of the pod's identity with the node's addresses and stable id). */
void pods__record_worker(struct pods *p, struct attachment *a, bool ident, const char *stable);

/* pods_reconcile.c: the netns check of one attachment, queued. */
void pods__probe(struct pods *p, const struct attachment *a);

/* pods_roll.c: a's worker was replaced (ok) or failed, for a roll. */
void pods__roll_worker(struct pods *p, const struct attachment *a, bool ok, const char *why);
void pods__roll_stop(struct pods *p, const char *why);

/* pods_worker.c: the pods' workers and identities. */
struct attachment *pods__pod_worker_att(struct pods *p, const char *pod_uid);
bool pods__pod_worker_up(struct pods *p, const char *pod_uid);
int pods__slot_get(struct pods *p, struct attachment *a, uint32_t *slot);
void pods__attachment_retire(struct pods *p, struct attachment *a);
void pods__on_worker(struct worker *w, enum worker_event ev, const struct worker_report *r,
		     void *arg);
void pods__spec_fill(struct pods *p, struct attachment *a, struct worker_spec *spec, uint32_t slot,
		     const uint8_t *machine, const uint8_t *node, const char *hostname,
		     const struct tag_set *tags, bool registered);
int pods__attachment_spawn(struct pods *p, struct attachment *a, const uint8_t *machine,
			   const uint8_t *node, const char *hostname, const struct tag_set *tags,
			   bool registered);
/* As pods__attachment_spawn, with this auth key (NULL: none) instead of
 * the static one for an unregistered node: a key minted for the pod. */
int pods__attachment_spawn_key(struct pods *p, struct attachment *a, const uint8_t *machine,
			       const uint8_t *node, const char *hostname,
			       const struct tag_set *tags, const char *auth_key);

/* pods_sockets.c: the pod's UDP socket in our netns (bound as cfg's
 * --udp-port-range says) and its worker's read-only NETLINK_ROUTE socket.
 * 0 with *fd set, or a negative errno (-EADDRINUSE: the range is full)
 * with *fd = -1 and *why naming what failed. */
struct supervisor_config;
int pods__udp_socket_new(const struct supervisor_config *cfg, int *fd, const char **why);
int pods__netlink_socket_new(int *fd, const char **why);
void pods__identity_wipe_free(Tscni__Identity *id);
int pods__identity_record(struct pods *p, const char *pod_uid, bool registered,
			  const struct ip_prefix *addrs, size_t naddrs, const char *stable);
/* A DEL's or GC's work after its worker logged out: the identity says so. */
void pods__identity_logged_out(struct op *op, const char *pod_uid);
/* The pod's node logged out for good (DEL, GC) or its identity expires
 * (only_registered: then only when the node never logged out): a device
 * cleanup job (jobs.h) for its node key, when the key source has an API.
 * Any thread; reads the identity under identity_lock (pods_devices.c). */
void pods__device_cleanup(struct pods *p, const char *pod_uid, bool only_registered);
/* Key expiry (pods_reauth.c): a's worker asked for re-authentication (a
 * hint: checked here, rate-limited per pod). */
void pods__reauth_request(struct pods *p, struct attachment *a, const struct worker_report *r);
/* a leaves: its re-auth ends (a request in flight is cancelled). */
void pods__reauth_free(struct attachment *a);

/* Shutdown: ADDs waiting for a minted key fail now (pods_add.c). */
void pods__add_stop_mints(struct pods *p);

/* pods_netop.c: w is GONE (NULL: every worker): no reply for its netops. */
void pods__netops_forget(struct pods *p, const struct worker *w);

/* pods_startup.c */
void pods__tombs_add(struct tomb_entry **v, size_t *n, size_t *cap, const Tscni__Tombstone *t,
		     const char *filename);
void pods__tomb_entry_clear(struct tomb_entry *t);

#endif
