/* The pod table: one entry per attachment, keyed as the CNI spec keys it
 * (network, container id, ifname), and the CNI verbs that act on it.
 *
 * Everything here runs on the supervisor's loop thread, except the slow work
 * (netlink through netops, fsync through state, netns_open), which each
 * operation does on the libuv threadpool. Operations on one attachment key
 * run one at a time in arrival order; different keys run concurrently. */
#ifndef TSCNI_SUPERVISOR_PODS_H
#define TSCNI_SUPERVISOR_PODS_H

#include <stdbool.h>
#include <stddef.h>

#include "cni.pb-c.h"
#include "workers.h"

struct supervisor;
struct pods;
struct pods_request;
struct attachment;

/* Receives the one reply to a request. The reply and everything it points
 * to is valid only during the call: pack it, do not keep it. */
typedef void pods_reply_fn(void *arg, const Tscni__CniReply *reply);

/* Creates an empty table for sup (sup->st must be open). Returns 0. */
int pods_new(struct supervisor *sup, struct pods **out);

/* Frees the table. Closes the TUN fds pods itself holds (only attachments
 * without a worker of their own: see fd custody in pods.c); ts0 devices whose
 * workers hold them survive. The loop must have no operation in flight
 * (pods_stop, pods_detach_workers, workers_close, then uv_run until it
 * returns). pods_free(NULL) does nothing. */
void pods_free(struct pods *p);

/* At exit, before workers_close: forgets every worker (they keep running for
 * the next supervisor to adopt). */
void pods_detach_workers(struct pods *p);

/* Startup, before the loop runs and before the CNI socket exists, so it
 * blocks: loads the state directory into the table, performs the DEL each
 * tombstone stands for, releases attachments whose netns is gone or was
 * replaced and those a killed supervisor left half-made, then adopts each
 * remaining attachment's worker (workers_adopt, identity from the record) or
 * rebuilds its ts0 and spawns a new one with the pod's keys. sup->workers
 * must exist. Returns 0 or a negative errno when the state directory cannot
 * be read. */
int pods_startup(struct pods *p);

/* Starts the periodic reconciler (every sup->cfg.reconcile_interval_s).
 * Returns 0 or a negative errno from libuv. */
int pods_start(struct pods *p);

/* Stops the reconciler and ends every wait for a worker at once; operations
 * on the threadpool finish and reply. Closes every handle pods owns, so
 * uv_run returns once the last operation completes. */
void pods_stop(struct pods *p);

/* Starts ADD, DEL, CHECK, GC or ROLL_WORKERS for a request already checked by
 * validate_cni_request. fn runs exactly once on the loop, unless
 * pods_request_detach is called first; usually later, but a GC with nothing
 * to release replies before pods_submit returns. *out is set before fn can
 * run and identifies the request until fn runs: pass the address where the
 * caller keeps it and clear it in fn. pods_submit copies what it needs from
 * req. Returns 0, or -EINVAL for a STATUS or empty request or a bad
 * interface name (fn will not run, *out is NULL). */
int pods_submit(struct pods *p, const Tscni__CniRequest *req, pods_reply_fn *fn, void *arg,
		struct pods_request **out);

/* The client went away: the operation still completes (and rolls back or
 * records as it must) but fn will not run. r must not be used afterwards. */
void pods_request_detach(struct pods_request *r);

/* Number of attachments in the table. */
size_t pods_count(const struct pods *p);

/* Whether the pod has an attachment (or one being released). */
bool pods_pod_attached(const struct pods *p, const char *pod_uid);

/* Fills rep->pods and, when verbose, rep->pod with one PodStatus per
 * attachment. Runs on the loop without waiting for anything. Free what it
 * allocated with pods_status_clear. */
void pods_status_fill(struct pods *p, Tscni__StatusReply *rep, bool verbose);
void pods_status_clear(Tscni__StatusReply *rep);

/* pods_metrics.c: the pod table's families in the text format (metrics.h):
 * pods and attachments by state, the jobs pending, and per pod (labels
 * namespace and pod; at most METRICS_PODS_MAX pods) its worker's last
 * counters, handshake age, peers by path and control connection. Runs on
 * the loop without waiting for anything. */
struct metrics_text;
void pods_metrics_render(struct pods *p, struct metrics_text *t);
/* Asks every worker for fresh Stats (workers_request_stats). */
void pods_request_stats(struct pods *p);

/* workers_config.routes (arg: the struct supervisor): a worker's whole
 * route set, made ts0's routes under the operator's route policy
 * (netops_routes_sync) on the threadpool and answered with
 * workers_routes_reply. Takes routes (free()). */
void pods_on_route_set(struct worker *w, uint32_t id, struct ip_prefix *routes, size_t n,
		       void *arg);
/* workers_config.netop (arg: the struct supervisor): a worker's request
 * to add or remove an address or route on its pod's ts0, done inside the
 * pod's netns (re-opened by path and checked by inode) on the threadpool,
 * answered with workers_netop_reply. -EAGAIN before the pod table exists,
 * -ENODEV for a worker no attachment owns. */
void pods_on_netop(struct worker *w, uint32_t id, enum worker_netop op, const struct ip_prefix *p,
		   void *arg);

/* The attachment's worker reports Ready: an ADD waiting
 * on it for at most its syncTimeout replies now. Does nothing when no ADD
 * waits. */
void pods_attachment_ready(struct pods *p, struct attachment *att);

/* pods_sockets.c: --udp-port-range "LO-HI", 1 <= LO <= HI <= 65535, into
 * *lo and *hi. 0, or -EINVAL (both set to 0). */
int pods_port_range_parse(const char *s, uint16_t *lo, uint16_t *hi);

#endif
