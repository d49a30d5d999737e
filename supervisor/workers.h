/* The supervisor's side of the workers: the zygote, spawning, pidfds, fd
 * custody, the per-state dispatch table for worker messages, respawn.
 *
 * A worker is hostile (OpenSSH's monitor is the model): its messages are
 * received without a control buffer (no fds), each must be allowed in the
 * worker's current state by the dispatch table, Ready is accepted once, every
 * field is validated (validate_worker_msg), strings are escaped before they
 * reach a log line, and a per-worker token bucket bounds the message rate.
 * Anything else ends that worker: worker_fail logs, SIGKILLs it through its
 * pidfd and lets the respawn logic take over.
 *
 * How pods.c uses it (everything on the supervisor's loop thread):
 *
 *   struct workers_config wc = { .worker_path = "/usr/bin/tailscale-cni-worker",
 *                                .netop = pods_on_netop, .netop_arg = pods };
 *   workers_new(&sup->loop, &wc, &pods->workers);   // after taking env secrets, before files
 *   ...
 *   struct worker_spec spec = { .pod_uid = uid, .tun_fd = tun_fd, .slot = slot,
 *                               .mtu = 1280, ... keys ... };
 *   workers_spawn(pods->workers, &spec, pods_on_worker, pod, &pod->worker);
 *     -> pods_on_worker(w, WORKER_EV_READY, &report, pod)     once per process
 *     -> pods_on_worker(w, WORKER_EV_EXIT, ...)               it died; respawn follows
 *     -> pods_on_worker(w, WORKER_EV_GONE, ...)               final; w is freed after
 *   workers_request_stats(pod->worker);  -> WORKER_EV_STATS
 *   workers_stop(pod->worker, true);     -> ... WORKER_EV_GONE
 *   pods_on_netop(w, id, WORKER_NETOP_ROUTE_ADD, &prefix, pods) (already validated)
 *     -> later workers_netop_reply(w, id, err, why);
 *   workers_close(pods->workers);        // at exit: workers keep running
 */
#ifndef TSCNI_SUPERVISOR_WORKERS_H
#define TSCNI_SUPERVISOR_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#include "ip.h"
#include "validate.h"

struct tag_set; /* annotations.h */

struct workers;
struct worker;
struct netops_policy;

enum workers_defaults {
	WORKERS_UID_BASE = 2000000000, /* worker uid = base + slot */
	WORKERS_UID_COUNT = 65536,
	WORKERS_ZYGOTE_MAX_FORKS = 1000,
	WORKERS_RATE_PER_S = 200,  /* messages a worker may send per second ... */
	WORKERS_RATE_BURST = 1000, /* ... after a burst of this many */
	WORKERS_OUTQ_MAX = 32,	   /* queued messages to one worker */
	/* A StatsRequest unanswered this long may be asked again. */
	WORKERS_STATS_RETRY_MS = 5000,
	WORKERS_READY_TIMEOUT_MS = 60000,
	WORKERS_STOP_GRACE_MS = 2000,
	WORKERS_RESPAWN_MIN_MS = 10, /* first respawn; doubles per quick death */
	WORKERS_RESPAWN_MAX_MS = 30000,
	WORKERS_STABLE_MS = 10000,	 /* a worker that lived this long resets the backoff */
	WORKERS_EXTRA_FDS_MAX = 5,	 /* besides the socket, the TUN and the rendezvous */
	WORKERS_ADOPT_TIMEOUT_MS = 1000, /* the whole handshake with one worker */
	WORKERS_BOOT_ID_LEN = 36,	 /* /proc/sys/kernel/random/boot_id, a UUID */
	WORKERS_KEY_LEN = 32,
};

enum worker_netop {
	WORKER_NETOP_ADDR_ADD = 1,
	WORKER_NETOP_ADDR_DEL = 2,
	WORKER_NETOP_ROUTE_ADD = 3,
	WORKER_NETOP_ROUTE_DEL = 4,
};

/* A NetopRequest that passed netops_validate_addr/route. The callee answers,
 * now or later, with workers_netop_reply(w, id, ...), as long as w has not
 * been reported GONE. */
typedef void worker_netop_fn(struct worker *w, uint32_t id, enum worker_netop op,
			     const struct ip_prefix *p, void *arg);
/* A whole RouteSet (protocol 2; every part validated, at most
 * ROUTE_SET_TOTAL_MAX prefixes): ts0's routes are to be exactly what routes
 * reach. The callee owns routes (free()) and answers, now or later, with
 * workers_routes_reply(w, id, ...), as long as w has not been reported GONE;
 * until then a further RouteSet from w is refused with -EBUSY. */
typedef void worker_routes_fn(struct worker *w, uint32_t id, struct ip_prefix *routes, size_t n,
			      void *arg);
/* A ResolveRequest (host: a validated name). The callee answers, now or
 * later, with workers_resolve_reply(w, id, ...), as long as w has not been
 * reported GONE. */
typedef void worker_resolve_fn(struct worker *w, uint32_t id, const char *host, void *arg);
/* A DerpMapReport (validated: common/validate.c): the STUN targets of the
 * worker's DERP map, for the node-wide netcheck (netcheck.h). The callee
 * answers, now or later, with workers_netcheck_report(w, ...), as long as w
 * has not been reported GONE. */
struct Tscni__DerpMapReport;
typedef void worker_derpmap_fn(struct worker *w, const struct Tscni__DerpMapReport *m, void *arg);

struct workers_config {
	/* Absolute path of tailscale-cni-worker, as seen in host_mntns when
	 * that is set (the binary installed on the host), else in ours. Copied. */
	const char *worker_path;
	/* NULL: the zygote is exec'd in our own mount namespace. Else a mount
	 * namespace file such as "/proc/1/ns/mnt" (with hostPID: the host's):
	 * opened by workers_new and entered (setns) by the forked child before
	 * it execs worker_path, so that the zygote runs the host's binary and
	 * sees the host's /sys/fs/cgroup, not the container's. Copied. When it
	 * ends in "/ns/mnt", the cgroup namespace beside it ("/ns/cgroup") is
	 * entered too, so that the zygote can leave the container's cgroup
	 * from a container with a cgroup namespace of its own. */
	const char *host_mntns;
	const char *cgroup_parent;     /* NULL: "tailscale-cni"; "": no placement; copied */
	const char *sandbox;	       /* NULL: "seccomp"; "none" only for tests; copied */
	unsigned int zygote_max_forks; /* 0: WORKERS_ZYGOTE_MAX_FORKS */
	uint32_t uid_base;	       /* 0: WORKERS_UID_BASE */
	uint32_t uid_count;	       /* 0: WORKERS_UID_COUNT */
	/* NULL: no rendezvous sockets (no re-adoption). Else each worker gets a
	 * listening socket <run_dir>/workers/<pod uid>.sock (directory 0700),
	 * kept in custody like its TUN fd. Copied. */
	const char *run_dir;
	const struct netops_policy *policy; /* borrowed, lives as long as workers */
	worker_netop_fn *netop;		    /* NULL: requests answered -EOPNOTSUPP */
	bool force_fallbacks; /* tests: the zygote forks + pidfd_open, no close_range */
	void *netop_arg;
	worker_routes_fn *routes;   /* NULL: RouteSets answered -EOPNOTSUPP; arg: netop_arg */
	worker_resolve_fn *resolve; /* NULL: requests answered "no resolver configured" */
	void *resolve_arg;
	worker_derpmap_fn *derpmap; /* NULL: DerpMapReports are ignored */
	void *derpmap_arg;
	/* PEM CA certificates for the control plane, sent in Start.ca_bundle
	 * (at most CA_BUNDLE_MAX_LEN). Borrowed, lives as long as workers. */
	const char *ca_pem;
	size_t ca_pem_len;
	unsigned int control_test_flags; /* tests only: Start.control_test_flags */
	/* Start.endpoint_deny_iface: borrowed, lives as long as workers; at
	 * most ENDPOINT_DENY_MAX valid_iface_glob strings. */
	const char *const *endpoint_deny;
	size_t n_endpoint_deny;
	/* Tests only: Start.wg_timers in ms (rekey after, reject after, rekey
	 * attempt, rekey timeout, keepalive, jitter); all 0: not sent. */
	uint32_t wg_timers_ms[6];
	/* This boot's id (the supervisor passes its state_origin's): records
	 * of another boot are never adopted. NULL: state_boot_id(). Copied. */
	const char *boot_id;
	/* Tests only: the protocol versions we accept; 0: ours. */
	uint32_t proto_min, proto_max;
};

struct worker_spec {
	const char *pod_uid;  /* valid_name(POD_FIELD_MAX_LEN); copied */
	const char *hostname; /* NULL or a name; copied */
	/* NULL or the tags the node asks for (Start.tags), each valid_tag;
	 * copied. */
	const struct tag_set *tags;
	uint8_t machine_private[WORKERS_KEY_LEN]; /* copied, wiped when w is freed */
	uint8_t node_private[WORKERS_KEY_LEN];
	/* NULL, or a key rotation the pod's identity records as under way:
	 * the node key registered before node_private (Start.old_node_public,
	 * sent until Ready). Copied. */
	const uint8_t *old_node_public;
	const char *auth_key;		   /* NULL or a one-use key; copied, wiped after Ready */
	const char *control_url;	   /* NULL or a URL; copied */
	const struct ip_prefix *addresses; /* copied, at most PREFIX_MAX */
	size_t n_addresses;
	/* Borrowed: workers_spawn keeps its own dup of each (custody) and hands
	 * the same dups to every respawn of this worker. */
	int tun_fd;
	const int *extra_fds;
	size_t n_extra_fds; /* <= WORKERS_EXTRA_FDS_MAX */
	/* Adoption: how many of the last extra fds a worker spawned by an
	 * older supervisor may not hold (its custody is then shorter). */
	size_t n_extra_fds_optional;
	uint32_t slot; /* uid = uid_base + slot; slot < uid_count */
	unsigned int mtu;
	bool debug_seccomp; /* trap and report denied syscalls instead of killing */
	bool test_requests; /* the worker honours TestRequest (tests only) */
};

enum worker_event {
	WORKER_EV_READY = 1,  /* Ready: once per process; r->stable_node_id */
	WORKER_EV_STATS,      /* a Stats reply: r->stats */
	WORKER_EV_EVENT,      /* an Event: r->event_kind, r->detail (escaped) */
	WORKER_EV_TEST_REPLY, /* r->test_id, r->err, r->detail (escaped) */
	WORKER_EV_EXIT,	      /* the process died; r->status, r->respawn_ms */
	WORKER_EV_GONE,	      /* final, no respawn: r->why. w is freed after the callback */
	/* A spawned process's Hello: it runs (workers_identity names it) and
	 * may be adopted from now on, Ready or not. */
	WORKER_EV_STARTED,
	/* A ReauthRequest (a hint, never trusted): r->reauth_expired,
	 * r->key_expiry_unix. */
	WORKER_EV_REAUTH,
};

struct worker_stats {
	uint64_t tun_rx_packets, tun_tx_packets, udp_rx_packets, udp_tx_packets, drops;
	uint64_t tun_rx_bytes, tun_tx_bytes;
	uint64_t handshakes, filter_drops;
	uint32_t peers;
	bool configured;
	uint64_t disco_unknown_sender, disco_bad_box, stun_bad_txid, stun_malformed;
	uint64_t derp_bad_frames;
	uint64_t dns_queries, dns_answers, dns_forwarded; /* quad-100 */
	uint64_t pss_bytes; /* 0: not known (a worker that does not report it) */
};

/* The worker's control client as it last told us (worker.proto's
 * ControlStatus, from its Stats and control Events; checked by
 * validate_worker_msg, so reason is printable ASCII). Zero (unknown) for a
 * process that has said nothing yet. */
struct worker_control {
	int state; /* Tscni__ControlState */
	char reason[CONTROL_REASON_MAX_LEN + 1];
	uint64_t since_unix; /* 0: not known */
	uint64_t retry_unix; /* RETRYING: the next attempt; 0: under way */
};

/* One peer of a worker's last Stats.peer, checked (validate_worker_msg) and
 * copied: what the status command shows of it (cni.proto's PeerStatus). */
struct worker_peer {
	char node_key[PEER_KEY_SHORT_LEN + 1];
	char host_name[PEER_HOST_MAX_LEN + 1]; /* "" unknown */
	bool has_ipv4;
	uint8_t ipv4[4];
	int path;	       /* Tscni__PeerPath */
	uint8_t direct_ip_len; /* PEER_PATH_DIRECT: 4 or 16 */
	uint8_t direct_ip[16];
	uint16_t direct_port;	      /* PEER_PATH_DIRECT */
	uint16_t derp_region;	      /* PEER_PATH_DERP */
	uint64_t last_handshake_unix; /* 0: never */
	uint64_t rx_bytes, tx_bytes;
};

struct worker_report {
	pid_t pid;
	/* EXIT: a waitid si_code (CLD_EXITED, CLD_KILLED, CLD_DUMPED) and
	 * si_status, or code 0 when the status is unknown (not our child). */
	int code, status;
	unsigned int respawn_ms;
	const char *why; /* GONE: a static sentence */
	int event_kind;	 /* Tscni__EventKind */
	uint32_t test_id;
	int err;
	const char *detail;		   /* escaped; valid during the callback only */
	const char *stable_node_id;	   /* escaped */
	const struct ip_prefix *addresses; /* READY: the node's (validated), */
	size_t n_addresses;		   /* valid during the callback only */
	bool reauth_expired;		   /* REAUTH: what the worker claims */
	uint64_t key_expiry_unix;
	/* READY: when the worker says control accepted its registration and
	 * it applied its first netmap (CLOCK_MONOTONIC ns as uv_hrtime, 0:
	 * not said). Unchecked: for the ADD spans' log line only. */
	uint64_t registered_ns, netmap_ns;
	struct worker_stats stats;
};

/* What pods.c records to find a worker again after a supervisor restart:
 * never a bare pid. */
struct worker_identity {
	pid_t pid;
	uint64_t start_time; /* /proc/PID/stat field 22, clock ticks after boot */
	char boot_id[WORKERS_BOOT_ID_LEN + 1];
	uint32_t version; /* the protocol version agreed on (workers_identity only) */
};

typedef void worker_event_fn(struct worker *w, enum worker_event ev, const struct worker_report *r,
			     void *arg);

/* Workers must outlive the supervisor: a supervisor in a private pid
 * namespace (no hostPID) would take them down with it. 0 when the caller is
 * in the initial pid namespace, -EPERM with *why otherwise, or -errno. The
 * supervisor's main() calls it before workers_new and refuses to start. */
int workers_check_host_pidns(const char **why);

/* Starts the zygote (fork, setns into cfg->host_mntns and the cgroup
 * namespace beside it if set, exec of
 * cfg->worker_path --zygote): call before reading any secret. Returns 0 with
 * *out set, or a negative errno (each failure logged: the host_mntns open,
 * the setns, the exec). The zygote is restarted whenever it dies (into the
 * same host_mntns, kept open); running workers are not touched. */
int workers_new(uv_loop_t *loop, const struct workers_config *cfg, struct workers **out);

/* Closes every handle and lets the zygote go (EOF on its socket); workers
 * keep running (they survive the supervisor). No callback runs afterwards.
 * Memory is released by the loop's close callbacks: run the loop once more. */
void workers_close(struct workers *ws);

/* Spawns a worker for one pod. Returns 0 with *out set (owned by workers;
 * valid until WORKER_EV_GONE returns), or -EINVAL (bad spec) / -errno, and
 * then cb never runs. */
int workers_spawn(struct workers *ws, const struct worker_spec *spec, worker_event_fn *cb,
		  void *arg, struct worker **out);

/* Re-adoption after a supervisor restart (call at start-up, before serving:
 * it blocks up to WORKERS_ADOPT_TIMEOUT_MS). Connects to the worker's
 * rendezvous socket and accepts it only when all of these hold: the record's
 * boot id is this boot's (-ESTALE otherwise); the peer, identified by
 * SO_PEERPIDFD (else SO_PEERCRED + pidfd_open), is the recorded pid with the
 * recorded start time (-ESRCH); its Hello names spec->pod_uid and a version
 * range that overlaps ours (-EPERM, -EPROTONOSUPPORT); and it hands back fd
 * custody: its TUN fd, its rendezvous listener and spec->n_extra_fds more
 * (-EBADMSG). spec gives the keys and settings for later respawns;
 * spec->tun_fd and spec->extra_fds are ignored (custody comes from the
 * worker). On success *out is set and cb runs as for workers_spawn (no
 * WORKER_EV_READY: it is running already). Each refusal is logged. */
/* After the adoptions, before any spawn: every rendezvous socket under
 * <run_dir>/workers that belongs to no worker of ws (its record is damaged,
 * missing, or refused) is an orphan. One nobody listens on is removed; a
 * process listening on one, when its uid is one of our worker uids, is
 * killed (each logged) and waited for up to WORKERS_ADOPT_TIMEOUT_MS, so
 * that no live worker goes unseen and its uid is free again. Returns how
 * many processes were killed. */
unsigned int workers_sweep_orphans(struct workers *ws);

int workers_adopt(struct workers *ws, const struct worker_spec *spec,
		  const struct worker_identity *id, worker_event_fn *cb, void *arg,
		  struct worker **out);
/* The identity of the running process: 0, or -ENOTCONN without one. */
int workers_identity(const struct worker *w, struct worker_identity *out);
/* Whether the running process has sent Ready (to us or, adopted, to an
 * earlier supervisor). */
bool workers_is_ready(const struct worker *w);

/* Asks the worker to stop (logout: log the node out first) and SIGKILLs it
 * after WORKERS_STOP_GRACE_MS. WORKER_EV_GONE follows, never synchronously. */
void workers_stop(struct worker *w, bool logout);
/* The auth key every logout carries: control checks it on each register
 * request, the logout included, as genuine `tailscale logout` sends it.
 * Borrowed until workers_close (NULL: none). Set after workers_new, so that
 * the zygote never holds it. */
void workers_set_auth_key(struct workers *ws, const char *auth_key);

/* Key rotation (docs/design.md "Key expiry"): from the next process on,
 * the worker runs with node_private, registers with old_node_public as
 * OldNodeKey and with auth_key (copied; wiped after Ready, as a spawn's),
 * until its Ready; then the running process is replaced (workers_roll).
 * Call only for a rotation the supervisor confirmed itself. 0, or
 * -ENOTCONN when no process runs (nothing changed then). */
int workers_rekey(struct worker *w, const uint8_t node_private[WORKERS_KEY_LEN],
		  const uint8_t old_node_public[WORKERS_KEY_LEN], const char *auth_key);

/* roll-workers: ends the running process (SIGKILL through its pidfd) and
 * spawns a fresh one at once, from the zygote's binary, with the same keys
 * and custody fds: EXIT then READY follow. -ENOTCONN when no process runs. */
int workers_roll(struct worker *w);
/* Restarts the zygote (SIGKILL through its pidfd) so that later spawns come
 * from the worker binary installed now; workers are not touched. 0, or
 * -ENOTCONN while it is already being restarted. */
int workers_zygote_reexec(struct workers *ws);

/* Asks for Stats; the reply arrives as WORKER_EV_STATS. At most one request
 * is in flight per worker (its answer serves every caller meanwhile) and
 * none is sent while earlier messages still wait in the outgoing queue, so
 * however often the supervisor asks, asking never fills that queue (which
 * would end the worker). 0 when asked or already asked, or -errno (-ENOTCONN
 * while no worker process is up). */
int workers_request_stats(struct worker *w);
/* Tests: asks the worker (spawned with test_requests) to try action. */
int workers_test_request(struct worker *w, uint32_t id, const char *action, const char *arg);
/* Answers a NetopRequest: err 0 or a negative errno, why NULL or static. */
int workers_netop_reply(struct worker *w, uint32_t id, int err, const char *why);
/* The answer to a RouteSet: err and why as workers_netop_reply, with what
 * became of it (netops.h's struct netops_routes_result). Frees w to send its
 * next set. */
int workers_routes_reply(struct worker *w, uint32_t id, int err, const char *why, uint32_t routes,
			 uint32_t refused, uint32_t not_accepted);
/* Answers a ResolveRequest: n addresses (sockaddr_in/in6, at most
 * PREFIX_MAX used), or n == 0 and error (a short sentence). */
/* Sends a NetcheckReport (the caller's message, not kept). 0, -ENOTCONN
 * when w has no process or is not past its Hello, or workers__send's error. */
struct Tscni__NetcheckReport;
int workers_netcheck_report(struct worker *w, const struct Tscni__NetcheckReport *r);
int workers_resolve_reply(struct worker *w, uint32_t id, const struct sockaddr_storage *addrs,
			  size_t n, const char *error);

/* The last Stats received (zeros before any). */
void workers_get_stats(const struct worker *w, struct worker_stats *out);
/* The control client's state (state 0, unknown, before the process said
 * anything) and the hostname the worker was started with (NULL: none). */
void workers_get_control(const struct worker *w, struct worker_control *out);
const char *workers_hostname(const struct worker *w);
/* The tags the worker was started with (NULL: none). */
const struct tag_set *workers_tags(const struct worker *w);
/* The peers of the last Stats (at most PEER_STATUS_MAX; *n 0 before any)
 * and in *left_off how many that Stats left out. The array is owned by w
 * and valid until its next Stats or its end. */
const struct worker_peer *workers_get_peers(const struct worker *w, size_t *n, uint32_t *left_off);
/* The running process: its pid and pidfd (owned by workers), or 0 / -1. */
pid_t workers_pid(const struct worker *w);
int workers_pidfd(const struct worker *w);
const char *workers_pod_uid(const struct worker *w);
/* How many times this worker was respawned. */
unsigned int workers_respawns(const struct worker *w);
/* The custody dup of the TUN fd (owned by workers). */
int workers_tun_fd(const struct worker *w);
/* How many fds w's custody holds: the TUN, the rendezvous listener (if
 * any) and the extra fds. */
size_t workers_custody_count(const struct worker *w);
/* Adds a dup of fd (borrowed) to w's custody, after the others: the
 * running process does not get it, its respawns do (an adopted worker
 * spawned by a supervisor that handed it fewer extra fds). 0, -ENOSPC
 * when custody is full, or -errno. */
int workers_custody_add(struct worker *w, int fd);
/* The zygote's pid (0 while it is being restarted) and how often it was. */
pid_t workers_zygote_pid(const struct workers *ws);
unsigned int workers_zygote_restarts(const struct workers *ws);
/* How long the zygote has been down (dead, its restart pending or
 * failing): milliseconds, 0 while one runs. */
uint64_t workers_zygote_down_ms(const struct workers *ws);

/* Unit tests and the fuzz target only: a worker with no process, zygote or
 * loop behind it, in one state of the dispatch table; the dispatcher itself
 * (0, or a negative errno with *why set: the caller then ends the worker). */
enum workers_test_state {
	WORKERS_TS_SPAWNING = 1U << 0,
	WORKERS_TS_HELLO = 1U << 1,
	WORKERS_TS_STARTING = 1U << 2,
	WORKERS_TS_READY = 1U << 3,
	WORKERS_TS_DEAD = 1U << 4,
};
struct worker *workers__test_new(unsigned int state, bool test_requests);
unsigned int workers__test_state(const struct worker *w);
void workers__test_free(struct worker *w);
int workers__dispatch(struct worker *w, const uint8_t *buf, size_t len, const char **why);

#endif
