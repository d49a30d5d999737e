/* The supervisor's top-level object, private to supervisor/. main.c owns the
 * one struct supervisor and passes it down; nothing else in the folder keeps
 * global state (docs/style.md §11). */
#ifndef TSCNI_SUPERVISOR_SUPERVISOR_H
#define TSCNI_SUPERVISOR_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "annotations.h"
#include "authkeys.h"
#include "cni.pb-c.h"
#include "ip.h"
#include "log.h"
#include "validate.h"

struct state;
struct pods;
struct cni_server;
struct workers;
struct resolver;
struct netcheck;
struct pool_watch;
struct secret_watch;
struct metrics;
struct metrics_serve;
struct jobs;

enum supervisor_defaults {
	SUPERVISOR_RECONCILE_S = 10,
	SUPERVISOR_RECONCILE_MAX_S = 3600,
	/* A pod gone this long loses its identity (keys, node): a sandbox
	 * re-created for the same pod UID within it keeps its node. */
	SUPERVISOR_IDENTITY_GRACE_S = 600,
	SUPERVISOR_IDENTITY_GRACE_MAX_S = 30 * 24 * 3600,
	/* How often --auth-key-file is stat'ed for a rotation (kubelet
	 * updates a Secret volume within about a minute). */
	AUTH_KEY_WATCH_MS = 2000,
	SUPERVISOR_ROUTE_DENY_MAX = 64, /* --route-deny prefixes */
	SUPERVISOR_POOL_THREADS = 16,	/* libuv's threadpool (main.c pool_size) */
};

#define SUPERVISOR_STATE_DIR	    "/var/lib/tailscale-cni"
#define SUPERVISOR_SOCKET	    "/run/tailscale-cni/cni.sock"
#define SUPERVISOR_WORKER	    "tailscale-cni-worker"
#define SUPERVISOR_WORKER_INSTALLED "/usr/local/bin/" SUPERVISOR_WORKER

struct supervisor_config {
	const char *state_dir;	 /* points into argv or a literal */
	const char *socket_path; /* points into argv or a literal */
	char node_name[256];	 /* empty: state_origin_detect fills it */
	unsigned int reconcile_interval_s;
	unsigned int identity_grace_s; /* --identity-grace */
	enum log_level log_level;
	/* Workers (workers.h). */
	char worker_path[4096];	   /* --worker, else found next to this binary */
	char run_dir[128];	   /* --run-dir, else the CNI socket's directory */
	const char *cgroup_parent; /* --cgroup-parent; NULL: workers' default */
	uint32_t uid_base;	   /* --uid-base; 0: WORKERS_UID_BASE */
	const char *sandbox;	   /* --sandbox seccomp|none (none: tests only) */
	/* --host-mntns: the mount namespace the zygote is exec'd in (the
	 * host's, from a container with hostPID); NULL: ours. */
	const char *host_mntns;
	/* --test-worker-proto MIN:MAX, tests only: pretend to be a supervisor
	 * that speaks only these worker protocol versions. 0: ours. */
	uint32_t worker_proto_min, worker_proto_max;
	/* The control plane. control_url NULL: none, workers are
	 * Ready as soon as their data path runs. */
	const char *control_url;   /* --control-url, "http(s)://host[:port]" */
	const char *auth_key_file; /* --auth-key-file: root's (secret_file.h), watched */
	const char *auth_key_env;  /* --auth-key-env: the variable holding the key */
	const char *ca_file;	   /* --ca-file: PEM handed to workers (else the system's) */
	const char *ca_file_add;   /* --ca-file-add: PEM appended to it */
	/* The key source when not static (authkeys.h): --oauth-client-*,
	 * --api-url, --tailnet, --headscale-*, --key-*. */
	struct authkeys_config ak;
	const char *cluster_name; /* --cluster-name: hostname prefix; NULL: none */
	/* --test-control-no-lite, tests only: workers never send lite updates
	 * (so control never learns their endpoints). */
	bool test_control_no_lite;
	/* --test-wg-timers, tests only: the workers' WireGuard timers in ms
	 * (rekey after, reject after, rekey attempt, rekey timeout,
	 * keepalive, jitter); all 0: the protocol's. */
	uint32_t test_wg_timers_ms[6];
	/* --udp-port-range LO-HI: pods' UDP sockets bind the first free port
	 * in it; 0: an ephemeral port. */
	uint16_t udp_port_lo, udp_port_hi;
	/* --endpoint-deny-iface GLOB (repeatable, valid_iface_glob): host
	 * interfaces whose addresses are never a pod's endpoints, on top of
	 * the workers' built-in list. Point into argv. */
	const char *endpoint_deny[ENDPOINT_DENY_MAX];
	size_t n_endpoint_deny;
	/* Routes into ts0 (netops.h's struct netops_route_policy):
	 * --route-all, --accept-routes, --route-deny CIDR (repeatable). */
	bool route_all, accept_routes;
	struct ip_prefix route_deny[SUPERVISOR_ROUTE_DENY_MAX];
	size_t n_route_deny;
	/* --allowed-tags TAG[,TAG...] (repeatable): the tags a pod's
	 * tailscale-cni.io/tags annotation may ask for (annotations.h); none
	 * by default. */
	struct tag_set allowed_tags;
	/* --metrics-listen ADDR:PORT (metrics.h): the text as given (points
	 * into argv; NULL: no metrics port) and the address parsed. */
	const char *metrics_listen;
	struct sockaddr_storage metrics_addr;
};

struct supervisor {
	uv_loop_t loop;
	struct supervisor_config cfg;
	struct workers *workers;	     /* owned; workers_close at exit (workers live on) */
	struct state *st;		     /* owned; state_close at exit */
	struct pods *pods;		     /* owned; pods_free at exit */
	struct cni_server *srv;		     /* owned; cni_server_close at exit */
	int sock_lock;			     /* cni_server_claim's lock, held until exit */
	struct resolver *resolver;	     /* owned; names for workers (resolver.h) */
	struct secret_watch *auth_key_watch; /* owned; --auth-key-file's rotation */
	struct netcheck *netcheck;	     /* owned; DERP latencies for workers (netcheck.h) */
	struct pool_watch *pool_watch;	     /* owned; health when the threadpool is stuck */
	struct metrics *metrics;	     /* owned; counters (metrics.h), NULL in unit tests */
	struct metrics_serve *metrics_serve; /* owned; the --metrics-listen port, or NULL */
	/* The Tailscale API or Headscale (NULL: a static key or none), and the
	 * device cleanup jobs run against it (jobs.h). Owned. */
	struct authkeys *authkeys;
	struct jobs *jobs;
	struct secret_watch *ak_secret_watch; /* owned; its secret file's rotation */
	/* Read once at start-up: the pre-auth key (sodium_malloc'ed, wiped at
	 * exit; never logged) and the CA (PEM). A key from a file is read
	 * after the zygote exists; one from the environment before it, so that
	 * the variable is gone from the environment the zygote inherits. */
	char *auth_key;
	/* The key source's secret when given in the environment: taken before
	 * the zygote starts, handed to authkeys_new by start_authkeys
	 * (sodium_malloc'ed; NULL otherwise). */
	char *ak_env_secret;
	char *ca_pem;
	size_t ca_pem_len;
	/* Precomputed for STATUS, which is answered on the loop at once and
	 * never waits behind other work. Written only on the loop thread. */
	Tscni__Health health;
	const char *health_reason; /* static string */
	uint64_t started_unix;
};

/* The `status` subcommand (status.c): argv[0] is "status". Prints the
 * supervisor's health and every attachment, as a table or with --json as
 * JSON. Returns the process exit code: 0 when the supervisor answered, 1
 * otherwise (with a message on stderr). */
int status_command(int argc, char **argv);

/* The `roll-workers` subcommand (status.c): argv[0] is "roll-workers". Asks
 * the supervisor to replace every worker with a fresh one, one at a time,
 * and prints how many were rolled and which failed. 0 when all rolled. */
int roll_workers_command(int argc, char **argv);

#endif
