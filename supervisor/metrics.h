/* Metrics and health (`--metrics-listen ADDR:PORT`): the supervisor's
 * counters, their rendering in Prometheus' text exposition format 0.0.4 and
 * the health verdict, served by http_serve.h on the supervisor's loop:
 *
 *   GET /metrics   200, Content-Type: text/plain; version=0.0.4
 *   GET /healthz   200 "ok\n", or 503 and one line naming why the supervisor
 *                  cannot serve (not ready: a stuck threadpool, starting,
 *                  shutting down; the CNI socket closed, removed or
 *                  replaced; the zygote down longer than
 *                  METRICS_ZYGOTE_GRACE_MS)
 *   anything else  404 (405 for a method other than GET and HEAD)
 *
 * Every name begins with tailscale_cni_. Per-pod series carry the labels
 * namespace and pod only, never a peer; at most METRICS_PODS_MAX pods are
 * listed (tailscale_cni_metrics_pods_left_off counts the rest), so a
 * scrape's size is bounded. Everything here runs on the loop thread; the
 * counters are plain integers. Every function takes a NULL struct metrics
 * (unit tests build a supervisor without one) and then does nothing. */
#ifndef TSCNI_SUPERVISOR_METRICS_H
#define TSCNI_SUPERVISOR_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct supervisor;

enum metrics_limits {
	METRICS_PODS_MAX = 1024, /* pods with per-pod series in one scrape */
	/* A scrape's body: far above what METRICS_PODS_MAX pods make
	 * (about 2.5 KiB each); past it the scrape fails with 500. */
	METRICS_BODY_MAX = 8 << 20,
	METRICS_ZYGOTE_GRACE_MS = 10000,
	/* How often workers are asked for fresh Stats while the port is
	 * served, so that a scrape's per-pod counters are at most this old
	 * (plus a second: the worker's per-peer report). */
	METRICS_STATS_REFRESH_MS = 2000,
};

enum metrics_verb {
	METRICS_ADD,
	METRICS_DEL,
	METRICS_CHECK,
	METRICS_GC,
	METRICS_VERBS,
};

enum metrics_control_error {
	METRICS_CONTROL_DOWN,	     /* a worker lost its control connection */
	METRICS_CONTROL_AUTH_FAILED, /* control refused a node */
	METRICS_CONTROL_ERRORS,
};

struct metrics;

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* One CNI request answered: its verb, whether the answer was a success,
 * and how long it took from its arrival (microseconds). */
void metrics_cni_observe(struct metrics *m, enum metrics_verb v, bool ok, uint64_t usec);
/* A worker process died and another one is on its way (a respawn). */
void metrics_worker_restart(struct metrics *m);
/* At start-up, a worker a record names: adopted, or refused (rebuilt). */
void metrics_adoption(struct metrics *m, bool adopted);
void metrics_control_error(struct metrics *m, enum metrics_control_error kind);

/* Where a successful ADD's time went (pods_add.c's spans, in order). */
enum metrics_add_phase {
	METRICS_ADD_QUEUE,     /* arrival to its work on the threadpool */
	METRICS_ADD_TUN,       /* identity, records, ts0 */
	METRICS_ADD_SPAWN,     /* to the worker's Hello */
	METRICS_ADD_REGISTER,  /* to control's answer to the registration */
	METRICS_ADD_NETMAP,    /* to the first netmap applied */
	METRICS_ADD_ADDRESSES, /* to ts0's addresses set */
	METRICS_ADD_READY,     /* to the worker's Ready */
	METRICS_ADD_SAVE,      /* to the reply (the record naming the worker) */
	METRICS_ADD_PHASES,
};
void metrics_add_phase(struct metrics *m, int phase, uint64_t usec);

/* ---- the text format: pods_metrics.c writes its families with these ---- */

/* A scrape's body, growing up to METRICS_BODY_MAX (full: the rest is
 * dropped and the scrape answered 500). */
struct metrics_text {
	char *buf;
	size_t len, cap;
	bool full;
};

/* "# HELP name help" and "# TYPE name type" (help: plain text, no
 * backslash or newline). */
void metrics_family(struct metrics_text *t, const char *name, const char *type, const char *help);
/* One sample: name{k="v",...} value. labels: key, value, key, value, ...,
 * NULL (NULL alone: no labels); values are escaped as the format says
 * (backslash, double quote, newline), and bytes outside printable ASCII
 * become '?'. */
void metrics_sample(struct metrics_text *t, const char *name, const char *const *labels,
		    uint64_t v);
void metrics_sample_f(struct metrics_text *t, const char *name, const char *const *labels,
		      double v);

/* The whole exposition for sup (the caller frees t->buf). */
void metrics_render(struct supervisor *sup, struct metrics_text *t);
/* NULL when sup can serve, else a sentence saying why not (static, or in
 * buf). */
const char *metrics_health(struct supervisor *sup, char *buf, size_t len);

/* The port: listens on sup->cfg.metrics_listen (when set) on sup's loop,
 * and asks every worker for Stats every METRICS_STATS_REFRESH_MS. 0, or
 * a negative errno after a line naming the address and the fault. */
int metrics_serve_start(struct supervisor *sup);
/* Closes the port and its timer (memory goes in the close callbacks). */
void metrics_serve_stop(struct supervisor *sup);

#endif
