/* One pod's worker process, private to worker/. A worker is a child of the
 * zygote (worker/zygote.c) that never exec's: worker_child() runs in the
 * child right after clone, arranges its fds, enters the sandbox, starts the
 * data-plane thread (data_thread.c) and runs the control loop
 * (control_thread.c) on its main thread.
 *
 * fds of a worker: 0-2 /dev/null, 3 its SOCK_SEQPACKET link to the supervisor,
 * 4 the pod's TUN fd, 5.. the rendezvous listener (Start.rendezvous_fd) and
 * extra sockets handed over at spawn: with a control plane, the pod's UDP
 * socket, bound in the host's netns, and a NETLINK_ROUTE socket opened there
 * (each found by its type: data_thread.c). */
#ifndef TSCNI_WORKER_WORKER_H
#define TSCNI_WORKER_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "ifaddr.h"
#include "ip.h"
#include "keys.h"
#include "log.h"
#include "netmap.h"
#include "validate.h"
#include "wg_device.h"
#include "worker.pb-c.h"

struct sandbox_ops;
struct client;
struct dataplane;
struct client_resolve;
struct endpoints;

enum worker_fds {
	WORKER_FD_CTL = 3,
	WORKER_FD_TUN = 4,
	WORKER_FD_MIN = 2, /* the control socket and the TUN fd */
	WORKER_FD_MAX = 8, /* WMSG_MAX_FDS */
};

enum worker_proto {
	/* The supervisor <-> worker protocol versions this binary speaks. */
	WORKER_PROTO_MIN = 1,
	WORKER_PROTO_MAX = 3, /* 2: RouteSet; 3: ReauthRequest */
};

enum worker_limits {
	WORKER_START_TIMEOUT_MS = 30000, /* Hello + Start after spawn */
	WORKER_TIMER_MS = 100,		 /* control thread housekeeping */
	/* ... once the worker is Ready and nothing is paced by it (tick_busy). */
	WORKER_IDLE_TIMER_MS = 1000,
	WORKER_TRIM_DELAY_MS = 1000, /* a netmap to malloc_trim, at most one a second */
	/* Ready waits this long for the home DERP region at most. */
	WORKER_READY_DERP_WAIT_MS = 5000,
	/* The pod's TUN is gone: the supervisor's Stop{logout} is awaited
	 * this long before we log out on our own (without the auth key it
	 * holds), and the logout this long in all before we exit anyway. */
	WORKER_TUN_GONE_STOP_WAIT_MS = 1000,
	WORKER_TUN_GONE_LOGOUT_MS = 5000,
	WORKER_DATA_STACK = 128 * 1024,	  /* the data thread's stack (counting only) */
	WORKER_ENGINE_STACK = 512 * 1024, /* the data thread's stack (the engine) */
	WORKER_RESOLVES_MAX = 8,	  /* name look-ups in flight at the supervisor */
	WORKER_ROUTES = 2, /* 100.64.0.0/10 and fd7a:115c:a1e0::/48 (a protocol 1 supervisor) */
};

/* What Start said about the control plane, kept from Start until
 * control_thread_init() hands it to the control client (keys and the auth key are
 * wiped then). */
struct worker_start {
	char *control_url; /* NULL: no control plane, Ready at once */
	char *hostname;
	char *auth_key; /* NULL when the node registered before */
	char *ca_pem;
	size_t ca_pem_len;
	uint8_t machine_private[KEY_LEN];
	uint8_t node_private[KEY_LEN];
	/* Start.old_node_public: a key rotation, OldNodeKey of the register
	 * request that presents auth_key. */
	bool has_old_node;
	uint8_t old_node_public[KEY_LEN];
	unsigned int test_flags; /* client_config.test_flags */
	uint32_t mtu;		 /* ts0's MTU (0: not said) */
	/* Start.wg_timers (tests only): shortened WireGuard timers. */
	bool has_timers;
	struct wg_device_timers timers;
	/* Start.endpoint_deny_iface (validated). */
	struct ifaddr_deny deny;
	/* Start.tags (validated: at most POD_TAGS_MAX): Hostinfo.RequestTags. */
	char **tags;
	size_t n_tags;
};

struct worker_resolve {
	uint32_t id; /* 0: free */
	struct client_resolve *req;
};

/* Shared by both threads. The data thread writes only the atomics. */
struct worker_ctx {
	const struct sandbox_ops *sandbox;
	uint32_t uid;
	size_t nfds; /* fds from WORKER_FD_CTL onwards */
	char pod_uid[254];
	bool debug_seccomp;
	bool test_requests;
	bool ctl_open; /* fd 3 not yet at EOF */
	int rdv_fd;    /* the rendezvous listener, or -1 */
	bool adopting; /* a new supervisor connected: Custody after its Hello */

	/* Data plane (data_thread.c). With a control plane and a UDP socket the
	 * data thread runs the engine (dp, worker/dataplane.h) and these
	 * counters stay 0 (send_stats reads the engine's); without, it only
	 * counts what the pod sends. */
	pthread_t data_thread;
	struct dataplane *dp;
	size_t peers;	 /* peers of the last configuration published */
	bool configured; /* a netmap's configuration was published */
	atomic_uint_fast64_t tun_rx_packets;
	atomic_uint_fast64_t tun_rx_bytes;
	atomic_uint_fast64_t tun_tx_packets;
	atomic_uint_fast64_t drops;
	atomic_bool tun_gone;
	atomic_int tun_errno;

	/* Control plane (control_thread.c): its own loop, created after fork. */
	uv_loop_t loop;
	/* fd 3's poll handle. A new supervisor's connection is dup3'd onto
	 * fd 3 while the old handle closes, so there are two, alternating. */
	uv_poll_t ctl_poll[2];
	bool ctl_closing[2];
	int ctl_idx;
	uv_poll_t rdv_poll;
	uv_timer_t timer;
	uint64_t trim_due; /* uv_now when malloc_trim is due, 0: none */
	bool tun_gone_sent;
	uint64_t tun_gone_at; /* uv_now when the control thread saw it, 0 */

	/* The control client (control/client.h), NULL without a control URL. */
	struct worker_start start;
	/* The CA bundle from Start, kept for the process's life: the control
	 * client and every DERP connection borrow it. The zygote's mapping
	 * when the bytes are the same (tls_store_pem), else one copy of ours
	 * (~220 KB with a full bundle). Never freed. */
	const char *ca_pem;
	size_t ca_pem_len;
	struct client *ctl;
	uint32_t next_id; /* ResolveRequest and NetopRequest ids */
	struct worker_resolve resolves[WORKER_RESOLVES_MAX];
	/* The self node's addresses and the netops that put them on ts0:
	 * replies with an id below netop_first belong to an older set. */
	struct ip_prefix addrs[PREFIX_MAX];
	size_t naddrs;
	uint32_t netop_first;
	unsigned int netops_pending;
	/* Addresses control gave while no supervisor could put them on ts0
	 * (or whose netops were lost with it): asked for again on adoption. */
	struct ip_prefix addrs_owed[PREFIX_MAX];
	size_t n_addrs_owed;
	bool addrs_owed_set;
	bool netop_failed;
	/* The protocol agreed with the current supervisor (worker_proto). */
	uint32_t sup_version;
	/* ts0's routes (routes.c): the set the netmap reaches (sorted,
	 * unique; routes_known once a netmap came), the RouteSet in flight
	 * (routes_id, 0: none; routes_sending while parts remain from
	 * routes_cursor), whether want changed since it was sent, and the
	 * last reply's outcome. */
	struct ip_prefix *routes_want;
	size_t n_routes_want;
	bool routes_known, routes_dirty, routes_sending, routes_applied;
	uint32_t routes_id;
	size_t routes_cursor;
	uint64_t routes_retry_at; /* uv_now before which no set is sent, 0 */
	uint32_t routes_refused, routes_not_accepted;
	bool control_up;
	/* Key expiry (reauth.c): the self node's KeyExpiry from the last
	 * netmap (has_expiry false: none), control's clock skew, whether
	 * control refused the key as expired, and the last ReauthRequest
	 * sent (uv_now, 0: none). */
	struct {
		bool has_expiry, expired;
		bool news; /* the netmap changed them since the last request */
		int64_t key_expiry, skew;
		uint64_t last_ms;
	} reauth;
	/* The control client's state as Stats and control Events report it
	 * (worker.proto's ControlStatus; reason already printable). */
	struct {
		int state; /* Tscni__ControlState */
		char reason[CONTROL_REASON_MAX_LEN + 1];
		uint64_t since_unix, retry_unix;
	} control;
	/* /proc/self/smaps_rollup, opened before the sandbox hid /proc, or
	 * -1: Stats.pss_bytes. */
	int smaps_fd;
	bool ready_sent;
	/* When the first netmap was applied (uv_hrtime), 0: Ready reports it
	 * with the registration's, for the supervisor's ADD spans. */
	uint64_t first_netmap_ns;
	/* When Ready began waiting for the home DERP region (uv_now), 0. */
	uint64_t ready_wait_since;
	bool logging_out;
	/* The pod's UDP socket (an extra fd from the supervisor, bound in the
	 * host's netns), or -1: its port makes the endpoints control learns. */
	int udp_fd;
	/* The host netns's NETLINK_ROUTE socket (an extra fd), or -1: where
	 * the host's addresses and their changes come from (endpoints.c). */
	int nl_fd;
	struct endpoints *endpoints; /* NULL: no control plane or no socket */
	/* DERP: the ring between the engine and the control thread, and the
	 * connections (derp_link.c); NULL without an engine. */
	struct chan *chan;
	struct derp_link *derp;
	/* Our endpoints on the host's interfaces (the last netlink dump) and
	 * the one STUN saw (has_stun_ep; stun is the engine's raw answer). */
	struct netmap_endpoint local_eps[IFADDR_ADDRS_MAX];
	size_t n_local_eps;
	bool has_stun, has_stun_ep;
	struct sockaddr_storage stun;
	struct netmap_endpoint stun_ep;
	/* Our disco public key, announced to control as DiscoKey. Its private
	 * half lives only in the engine (data_thread_prepare makes both). */
	uint8_t disco_public[KEY_LEN];
};

/* The child side of a spawn: never returns. fds (nfds of them, received from
 * the supervisor through the zygote) become fds 3.. of the child; uid is the
 * worker's own uid (> 0). fallbacks: take the paths for kernels older than
 * the one we run on (no close_range: walk /proc/self/fd), as tests force. */
_Noreturn void worker_child(const struct sandbox_ops *sb, const int *fds, size_t nfds, uint32_t uid,
			    bool fallbacks);

/* data_thread.c: finds the pod's UDP socket among the extra fds (ctx->udp_fd)
 * and, with a control URL, creates the engine on it and WORKER_FD_TUN with
 * the node key from ctx->start (before control_thread_init wipes it; all
 * TUN and UDP setup is done here, before the seccomp filter). 0 or -errno
 * with *why set. */
int data_thread_prepare(struct worker_ctx *ctx, const char **why);
/* data_thread.c: starts the data-plane thread on WORKER_FD_TUN. 0 or -errno. */
int data_thread_start(struct worker_ctx *ctx);

/* control_thread.c: runs the control loop on the calling thread until Stop or the
 * TUN is gone. Returns the process exit status. */
int control_thread_run(struct worker_ctx *ctx);
/* control_thread.c: prepares the loop and handles before the seccomp filter loads,
 * since creating them needs syscalls the filter forbids. 0 or -errno. */
int control_thread_init(struct worker_ctx *ctx);

struct netmap_endpoint;
/* derp_link.c: the DERP connections on the control loop, packets through
 * chan; takes the node key and CA bundle from ctx->start (call before
 * worker_start_clear). 0 or a libuv error. */
struct netmap;
int derp_link_new(struct worker_ctx *ctx, struct chan *chan, struct derp_link **out);
/* A new netmap: its DERP map; the home region chosen at the first. */
void derp_link_netmap(struct derp_link *dl, const struct netmap *nm);
/* Sends the supervisor the STUN targets of the current DERP map (a
 * DerpMapReport, for its netcheck): on every new map and to a supervisor
 * that adopted us. NULL-safe. */
void derp_link_report_map(struct derp_link *dl);
/* The supervisor's netcheck measured our map: latencies to control, the home
 * region reconsidered (magicsock/home.h). A report for another map than the
 * one we last reported is ignored. NULL-safe. */
void derp_link_netcheck(struct derp_link *dl, const Tscni__NetcheckReport *r);
enum derp_home_state {
	DERP_HOME_NONE,	      /* no DERP map yet, or no region may be home */
	DERP_HOME_CONNECTING, /* a home region, not connected (yet) */
	DERP_HOME_UP,	      /* the home region's server greeted us */
};
enum derp_home_state derp_link_home_state(const struct derp_link *dl);
/* control_thread.c: sends Ready when everything it waits for is there;
 * derp_link.c calls it when the home region connects. */
void worker_maybe_ready(struct worker_ctx *ctx);
/* Something the housekeeping tick paces began (route sets, news for the
 * supervisor): the tick goes back to WORKER_TIMER_MS at once. */
void worker_tick_busy(struct worker_ctx *ctx);
/* Connections closed because their server sent a bad (oversized or
 * malformed) frame, over the worker's life; 0 for NULL. */
uint64_t derp_link_bad_frames(const struct derp_link *dl);
/* endpoints.c: when the engine's STUN answer changed, the endpoints
 * control gets are the local ones and that one. */
void worker_endpoints_refresh(struct worker_ctx *ctx);
/* endpoints.c: with the UDP and netlink sockets, dumps the host's addresses
 * (before the filter loads; the first lite update carries them) and
 * watches for changes on ctx->loop. Call after the control client exists.
 * 0, or a libuv error. */
int endpoints_init(struct worker_ctx *ctx);
/* endpoints.c, tests only: sends a RTM_NEWADDR on the netlink socket and
 * returns the kernel's answer (0: allowed, a sandbox hole; else the
 * negative errno, -EPERM without CAP_NET_ADMIN), with detail filled. */
int endpoints_test_newaddr(struct worker_ctx *ctx, char *detail, size_t dlen);

/* peer_status.c: Stats.peer from the engine's per-peer report v[0..n) (of a
 * configuration with `total` peers) and what netmap nm (NULL: none yet)
 * says of each peer: at most PEER_STATUS_MAX entries, the rest counted in
 * s->peers_left_off, every field in the shape the supervisor's checks
 * (common/validate.c) accept. now_unix and now_mono_ns (CLOCK_MONOTONIC)
 * turn handshake times into Unix seconds. s->peer points into the returned
 * buffer (NULL when there are no entries): peer_status_free() it once s is
 * packed. */
struct dataplane_peer_info;
struct peer_status_buf;
struct peer_status_buf *peer_status_fill(Tscni__Stats *s, const struct dataplane_peer_info *v,
					 size_t n, size_t total, const struct netmap *nm,
					 int64_t now_unix, uint64_t now_mono_ns);
/* NULL does nothing. */
void peer_status_free(struct peer_status_buf *b);

/* worker.c: wipes and frees what Start left in ctx->start. */
void worker_start_clear(struct worker_start *s);

/* ipc.c: fd 3. */
int ipc_send(int fd, const Tscni__WorkerMsg *m);
/* Receives and unpacks one SupervisorMsg (validated). Returns 1 with *out
 * set (free with tscni__supervisor_msg__free_unpacked(*out, NULL)), 0 on
 * EOF, -EAGAIN, or -EBADMSG/-EMSGSIZE with *why set. */
int ipc_recv(int fd, Tscni__SupervisorMsg **out, const char **why);
/* Sends Hello with this binary's version range; ready_state as
 * worker.proto's Hello.ready_state (0 on the spawn link). */
int ipc_send_hello(int fd, const char *pod_uid, uint32_t ready_state);
int ipc_send_event(int fd, Tscni__EventKind kind, const char *detail);
/* The same with the control client's state after it (control may be NULL). */
int ipc_send_event_control(int fd, Tscni__EventKind kind, const char *detail,
			   Tscni__ControlStatus *control);
/* Hands fds back to a re-adopting supervisor: one Custody message. */
int ipc_send_custody(int fd, const int *fds, size_t nfds);
/* A log sink (common/log.h) that turns each line into a Log message on fd 3. */
void ipc_log_sink(void *arg, enum log_level level, const char *line);

#endif
