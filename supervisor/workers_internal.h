/* Private to supervisor/workers*.c: the objects behind workers.h and the
 * helpers its files share (named workers__*). Nothing outside this folder
 * includes it; the unit test reaches it through the .c files it includes.
 *
 * The files, one concern each:
 *   workers.c           lifecycle of a worker (death, respawn, stop, free),
 *                       its process handles and the custody of its fds
 *   workers_dispatch.c  the hostile-worker link: the per-state dispatch table,
 *                       the rate limit, the bounded outgoing queue
 *   workers_spawn.c     a spawn request to the zygote and what its reply makes
 *   workers_zygote.c    the zygote process: start, watch, restart
 *   workers_adopt.c     re-adoption of a running worker after a restart
 *
 * Objects and their owners:
 *   struct workers  one per supervisor; owns the zygote and every worker.
 *   struct zyg      one zygote incarnation: its socket, pidfd and two polls.
 *                   Freed in the polls' close callback; a dead zygote is
 *                   replaced by a new struct zyg.
 *   struct worker   one pod's worker across respawns: the custody fds (TUN,
 *                   extra sockets), keys, the callback, the respawn timer.
 *   struct wproc    one worker process: its socket, pidfd and two polls.
 *                   Freed in the close callback, so a dying process never
 *                   leaves a half-closed handle behind the next one.
 */
#ifndef TSCNI_SUPERVISOR_WORKERS_INTERNAL_H
#define TSCNI_SUPERVISOR_WORKERS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>
#include <uv.h>

#include "annotations.h"
#include "frame.h"
#include "validate.h"
#include "worker.pb-c.h"
#include "workers.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

enum workers_proto {
	WORKERS_PROTO_MIN = 1,	 /* the supervisor <-> worker versions we speak */
	WORKERS_PROTO_MAX = 3,	 /* 2: RouteSet; 3: ReauthRequest */
	WORKERS_RECV_BATCH = 32, /* messages per poll wake-up: one worker cannot starve others */
	WORKERS_ZYGOTE_RESTART_MS = 100,
	WORKERS_ZYGOTE_REPLY_MAX = 128,
	WORKERS_ESCAPED = 4 * MSG_MAX_LEN + 4,
	/* Custody per worker: TUN, rendezvous listener, extra sockets. */
	WORKERS_CUSTODY_MAX = 2 + WORKERS_EXTRA_FDS_MAX,
	/* In the worker: fd 3 its link, fd 4 the TUN, fd 5 the rendezvous. */
	WORKERS_WORKER_RDV_FD = 5,
};
_Static_assert(1 + WORKERS_CUSTODY_MAX <= WMSG_MAX_FDS, "a spawn request carries every fd");

/* States of a worker process, as bits for the dispatch table (workers.h
 * names the same bits for tests). */
enum worker_state {
	WS_SPAWNING = WORKERS_TS_SPAWNING, /* asked the zygote; no process yet */
	WS_HELLO = WORKERS_TS_HELLO,	   /* process up, Hello + Start sent; its Hello expected */
	WS_STARTING = WORKERS_TS_STARTING, /* Hello received; Ready expected */
	WS_READY = WORKERS_TS_READY,	   /* Ready received (once) */
	WS_DEAD = WORKERS_TS_DEAD, /* no process (respawn pending), or failed: nothing accepted */
};

struct zyg {
	struct workers *ws;
	uv_poll_t sock_poll;
	uv_poll_t pid_poll;
	int sock;
	int pidfd;
	pid_t pid;
	int handles_open;
};

struct wproc {
	struct worker *w; /* NULL once the process is dead or detached */
	uv_poll_t sock_poll;
	uv_poll_t pid_poll;
	int sock;
	int pidfd;
	pid_t pid;
	bool clone_parent; /* our child: waitid(P_PIDFD) tells how it died */
	bool sock_open;	   /* sock_poll started and not at EOF */
	int handles_open;
};

struct outmsg {
	uint8_t *buf;
	size_t len;
};

/* A pod's keys, for every (re)spawn of its worker: sodium_malloc'ed, so
 * kept out of core dumps (MADV_DONTDUMP) and fenced by guard pages. */
struct worker_keys {
	uint8_t machine_private[WORKERS_KEY_LEN];
	uint8_t node_private[WORKERS_KEY_LEN];
};
_Static_assert(sizeof(struct worker_keys) <= 64, "one secret_slab slot (SECRET_SLAB_SLOT)");

struct worker {
	struct workers *ws;
	struct worker *prev, *next;
	char pod_uid[POD_FIELD_MAX_LEN + 1];
	char *hostname, *auth_key, *control_url;
	/* A key rotation until the next Ready (workers_rekey): the node key
	 * registered before, sent as Start.old_node_public (public: not in
	 * the secret slab with keys). */
	uint8_t old_node_public[WORKERS_KEY_LEN];
	bool has_old_node;
	struct tag_set *tags; /* NULL: none; owned */
	struct worker_keys *keys;
	struct ip_prefix addresses[PREFIX_MAX];
	size_t n_addresses;
	int fds[WORKERS_CUSTODY_MAX]; /* custody: TUN, rendezvous (if any), extras */
	size_t nfds;
	bool has_rdv;	 /* fds[1] is the rendezvous listener */
	bool unlink_rdv; /* GONE: the worker is dead for good, its path goes */
	struct worker_identity id;
	uint32_t uid;
	unsigned int mtu;
	bool debug_seccomp, test_requests;
	worker_event_fn *cb;
	void *arg;

	unsigned int state;
	struct wproc *proc;
	uint64_t cookie;  /* of the spawn request in flight, 0 if none */
	int child_sock;	  /* our end of the socketpair while SPAWNING */
	uv_timer_t timer; /* respawn, Ready deadline, stop grace, deferred GONE */
	bool stopping, tun_gone, gone_pending, freed;
	/* Respawned once with the auth key after control refused the node
	 * without it (workers_dispatch.c on_event); cleared by Ready. */
	bool auth_retried;
	const char *gone_why;
	unsigned int respawns;
	unsigned int backoff_ms;
	unsigned long long started_ms;

	unsigned long long tokens; /* rate limit, in thousandths of a message */
	unsigned long long tokens_ms;
	struct outmsg outq[WORKERS_OUTQ_MAX];
	size_t outq_head, outq_len;
	unsigned long long stats_asked_ms; /* the StatsRequest in flight, or 0 */
	struct worker_stats stats;
	struct worker_control control; /* reset for each new process */
	/* The last Stats.peer, copied (workers_get_peers). */
	struct worker_peer *peers;
	size_t n_peers;
	uint32_t peers_left_off;
	/* The RouteSet being received in parts (rs, rs_n, rs_id), or handed
	 * to ws->routes and not answered yet (rs_busy): one at a time. */
	struct ip_prefix *rs;
	size_t rs_n;
	uint32_t rs_id;
	bool rs_busy;
};

struct workers {
	uv_loop_t *loop;
	char *worker_path, *cgroup_parent, *sandbox, *run_dir, *host_mntns;
	int mntns_fd; /* host_mntns, open for every zygote start; -1: ours */
	/* The cgroup namespace beside host_mntns (.../ns/cgroup), entered with
	 * it; -1: ours (workers_new says why). */
	int cgroupns_fd;
	char boot_id[WORKERS_BOOT_ID_LEN + 1];
	uint32_t proto_min, proto_max;
	bool force_fallbacks;
	unsigned int max_forks;
	uint32_t uid_base, uid_count;
	const struct netops_policy *policy;
	worker_netop_fn *netop;
	void *netop_arg;
	worker_routes_fn *routes;
	worker_resolve_fn *resolve;
	void *resolve_arg;
	worker_derpmap_fn *derpmap;
	void *derpmap_arg;
	const char *ca_pem; /* borrowed (workers_config) */
	size_t ca_pem_len;
	const char *auth_key; /* borrowed (workers_set_auth_key), sent with logouts */
	unsigned int control_test_flags;
	const char *const *endpoint_deny; /* Start.endpoint_deny_iface, borrowed */
	size_t n_endpoint_deny;
	uint32_t wg_timers_ms[6];

	struct zyg *zyg;
	uv_timer_t zyg_timer;
	unsigned int zyg_restarts;
	unsigned long long zyg_down_ms; /* now_ms() when the zygote died; 0 while up */
	bool closing;
	int handles_open;
	uint64_t next_cookie;
	struct worker *head;
	uint8_t rbuf[WMSG_MAX_LEN];
};

/* ---- workers.c: lifecycle and custody ---------------------------------- */

/* SIGKILL through a pidfd: 0, -EBADF for -1, or -errno. */
int workers__pidfd_kill(int pidfd);
/* Closes *fd if open and sets it to -1. */
void workers__close_fd(int *fd);
/* Wipes a NUL-terminated secret, then frees it; NULL is fine. */
void workers__free_wiped(char *s);
/* Calls w's event callback, if it still has one. */
void workers__emit(struct worker *w, enum worker_event ev, const struct worker_report *r);
/* Logs why, marks w dead and SIGKILLs its process (if any): the pidfd then
 * reports the death and the respawn logic takes over. */
void workers__fail(struct worker *w, int ret, const char *why);
/* The process of w is gone (pid 0: it never started): EXIT, then a respawn
 * after the backoff, or GONE when w is stopping or its netns is gone. */
void workers__died(struct worker *w, pid_t pid, int code, int status);
/* (Re)arms w's one timer (respawn, Ready deadline, stop grace). */
void workers__schedule(struct worker *w, unsigned int ms);
/* /proc/PID/stat field 22 into *out (0 on failure): 0 or -errno. */
int workers__proc_start_time(pid_t pid, uint64_t *out);
/* Attaches a running process to w: sock (made non-blocking) and pidfd are
 * owned by the returned struct wproc, which w->proc now points to. */
struct wproc *workers__proc_attach(struct worker *w, int sock, int pidfd, pid_t pid,
				   bool clone_parent);
/* Whether spec is one workers_spawn and workers_adopt can take. */
bool workers__spec_ok(const struct workers *ws, const struct worker_spec *spec);
/* A new struct worker from spec, with no fds and not yet on ws's list. */
struct worker *workers__alloc(struct workers *ws, const struct worker_spec *spec,
			      worker_event_fn *cb, void *arg);
/* Puts w on ws's list and starts its timer handle. */
void workers__link(struct worker *w);
/* Unlinks w, closes its handles and custody fds, wipes its keys. Memory goes
 * in the timer's close callback (at once when w has no ws). */
void workers__free(struct worker *w);

/* ---- workers_dispatch.c: the link to a hostile worker ------------------- */

/* Queues or sends one message to w's process: 0, -ENOTCONN without one,
 * -EMSGSIZE, or -ENOBUFS after failing w (its queue is full), or -errno. */
int workers__send(struct worker *w, const Tscni__SupervisorMsg *m);
/* One message from a worker, unpacked and checked by validate_worker_msg:
 * 0 with *out set (the caller frees it with tscni__worker_msg__free_unpacked),
 * or a negative errno with *out NULL and *why set (to undecodable when it
 * does not unpack). */
int workers__unpack(const uint8_t *buf, size_t len, const char *undecodable, Tscni__WorkerMsg **out,
		    const char **why);
/* Drops (and wipes) every queued message. */
void workers__outq_clear(struct worker *w);
/* Polls p's socket for reading, and for writing while messages wait. */
void workers__poll_update(struct wproc *p);

/* ---- workers_spawn.c ---------------------------------------------------- */

/* Asks the zygote for a process for w (WS_SPAWNING until its reply); without
 * a zygote the request waits for workers__zygote_start. */
void workers__request_spawn(struct worker *w);
/* One ZygoteReply (fds: the pidfd it passed, if any; always taken). */
void workers__spawn_reply(struct workers *ws, const uint8_t *buf, size_t len, int *fds,
			  size_t nfds);
/* <run_dir>/workers/<pod uid>.sock, or a hashed name when that is too long:
 * 0 or -ENAMETOOLONG. */
int workers__rdv_path(const struct workers *ws, const char *pod_uid, struct sockaddr_un *sun);

/* ---- workers_zygote.c --------------------------------------------------- */

/* Starts a zygote and sends the spawn requests waiting for one: 0 or -errno
 * (each failure logged). */
int workers__zygote_start(struct workers *ws);
/* Closes the current zygote's handles (it dies of EOF); NULL-safe. */
void workers__zygote_close(struct workers *ws);

#endif
