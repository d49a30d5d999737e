/* Metrics and health (metrics.h): the counters, the text format, the
 * supervisor-wide families, the health verdict and the port's handler. */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cni_server.h"
#include "http_serve.h"
#include "log.h"
#include "mem.h"
#include "pods.h"
#include "pool_watch.h"
#include "supervisor.h"
#include "workers.h"

/* Request latencies, 5 ms to 10 s (an ADD waits up to its syncTimeout,
 * 3 s by default, for its worker). */
static const double bucket_s[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
enum { N_BUCKETS = sizeof(bucket_s) / sizeof(bucket_s[0]) };

struct histogram {
	uint64_t le[N_BUCKETS]; /* not cumulative: rendering adds them up */
	uint64_t count;
	uint64_t sum_us;
};

/* ADD phases, 1 ms to 10 s. */
static const double phase_bucket_s[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
					0.25,  0.5,    1,     2.5,  5,	   10};
enum { N_PHASE_BUCKETS = sizeof(phase_bucket_s) / sizeof(phase_bucket_s[0]) };

struct phase_histogram {
	uint64_t le[N_PHASE_BUCKETS]; /* not cumulative */
	uint64_t count;
	uint64_t sum_us;
};

struct metrics {
	uint64_t cni[METRICS_VERBS][2]; /* [verb][ok] */
	struct histogram dur[METRICS_VERBS];
	struct phase_histogram add_phase[METRICS_ADD_PHASES];
	uint64_t worker_restarts;
	uint64_t adoptions[2]; /* [adopted] */
	uint64_t control_errors[METRICS_CONTROL_ERRORS];
};

/* The port and its Stats refresh, owned by the supervisor while served. */
struct metrics_serve {
	struct http_server *http;
	uv_timer_t refresh;
};

static const char *const verb_name[METRICS_VERBS] = {"ADD", "DEL", "CHECK", "GC"};
static const char *const phase_name[METRICS_ADD_PHASES] = {
	"queue", "tun", "spawn", "register", "netmap", "addresses", "ready", "save"};

static void render_add_phases(struct metrics_text *t, const struct metrics *m)
{
	static const char name[] = "tailscale_cni_add_phase_duration_seconds";

	metrics_family(t, name, "histogram",
		       "Where successful ADDs spent their time, in seconds, by phase: queue (to "
		       "the threadpool), tun (identity, records, ts0), spawn (to the worker's "
		       "Hello), register, netmap (the first), addresses, ready (the worker's "
		       "Ready), save (to the reply).");
	for (int ph = 0; ph < METRICS_ADD_PHASES; ph++) {
		const struct phase_histogram *h = &m->add_phase[ph];
		uint64_t cum = 0;
		char le[16];

		for (size_t i = 0; i < N_PHASE_BUCKETS; i++) {
			cum += h->le[i];
			snprintf(le, sizeof(le), "%g", phase_bucket_s[i]);
			metrics_sample(t, "tailscale_cni_add_phase_duration_seconds_bucket",
				       (const char *[]){"phase", phase_name[ph], "le", le, NULL},
				       cum);
		}
		metrics_sample(t, "tailscale_cni_add_phase_duration_seconds_bucket",
			       (const char *[]){"phase", phase_name[ph], "le", "+Inf", NULL},
			       h->count);
		metrics_sample_f(t, "tailscale_cni_add_phase_duration_seconds_sum",
				 (const char *[]){"phase", phase_name[ph], NULL},
				 (double)h->sum_us / 1e6);
		metrics_sample(t, "tailscale_cni_add_phase_duration_seconds_count",
			       (const char *[]){"phase", phase_name[ph], NULL}, h->count);
	}
}

struct metrics *metrics_new(void)
{
	return xcalloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
	free(m);
}

void metrics_cni_observe(struct metrics *m, enum metrics_verb v, bool ok, uint64_t usec)
{
	struct histogram *h;

	if (!m || v >= METRICS_VERBS)
		return;
	m->cni[v][ok]++;
	h = &m->dur[v];
	for (size_t i = 0; i < N_BUCKETS; i++) {
		if ((double)usec <= bucket_s[i] * 1e6) {
			h->le[i]++;
			break;
		}
	}
	h->count++;
	h->sum_us += usec;
}

void metrics_add_phase(struct metrics *m, int phase, uint64_t usec)
{
	struct phase_histogram *h;

	if (!m || phase < 0 || phase >= METRICS_ADD_PHASES)
		return;
	h = &m->add_phase[phase];
	for (size_t i = 0; i < N_PHASE_BUCKETS; i++) {
		if ((double)usec <= phase_bucket_s[i] * 1e6) {
			h->le[i]++;
			break;
		}
	}
	h->count++;
	h->sum_us += usec;
}

void metrics_worker_restart(struct metrics *m)
{
	if (m)
		m->worker_restarts++;
}

void metrics_adoption(struct metrics *m, bool adopted)
{
	if (m)
		m->adoptions[adopted]++;
}

void metrics_control_error(struct metrics *m, enum metrics_control_error kind)
{
	if (m && kind < METRICS_CONTROL_ERRORS)
		m->control_errors[kind]++;
}

/* ---- the text format -------------------------------------------------- */

static void put(struct metrics_text *t, const char *s, size_t n)
{
	if (t->full)
		return;
	if (t->len + n > METRICS_BODY_MAX) {
		t->full = true;
		return;
	}
	if (t->len + n > t->cap) {
		size_t cap = t->cap ? t->cap : 16384;

		while (cap < t->len + n)
			cap *= 2;
		t->buf = xrealloc(t->buf, cap);
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
}

static void puts_(struct metrics_text *t, const char *s)
{
	put(t, s, strlen(s));
}

static void __attribute__((format(printf, 2, 3))) putf(struct metrics_text *t, const char *fmt, ...)
{
	char b[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	if (n > 0)
		put(t, b, (size_t)n < sizeof(b) ? (size_t)n : sizeof(b) - 1);
}

void metrics_family(struct metrics_text *t, const char *name, const char *type, const char *help)
{
	putf(t, "# HELP %s ", name);
	puts_(t, help);
	putf(t, "\n# TYPE %s %s\n", name, type);
}

/* A label value as the exposition format wants it. */
static void put_label_value(struct metrics_text *t, const char *v)
{
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '\\')
			puts_(t, "\\\\");
		else if (*p == '"')
			puts_(t, "\\\"");
		else if (*p == '\n')
			puts_(t, "\\n");
		else if (*p < 0x20 || *p > 0x7e)
			puts_(t, "?");
		else
			put(t, (const char *)p, 1);
	}
}

static void put_name_labels(struct metrics_text *t, const char *name, const char *const *labels)
{
	puts_(t, name);
	if (!labels || !labels[0])
		return;
	puts_(t, "{");
	for (size_t i = 0; labels[i] && labels[i + 1]; i += 2) {
		putf(t, "%s%s=\"", i ? "," : "", labels[i]);
		put_label_value(t, labels[i + 1]);
		puts_(t, "\"");
	}
	puts_(t, "}");
}

void metrics_sample(struct metrics_text *t, const char *name, const char *const *labels, uint64_t v)
{
	put_name_labels(t, name, labels);
	putf(t, " %" PRIu64 "\n", v);
}

void metrics_sample_f(struct metrics_text *t, const char *name, const char *const *labels, double v)
{
	put_name_labels(t, name, labels);
	putf(t, " %.6f\n", v);
}

/* ---- the supervisor's own families ------------------------------------ */

static void render_cni(struct metrics_text *t, const struct metrics *m)
{
	static const char dur[] = "tailscale_cni_cni_request_duration_seconds";

	metrics_family(t, "tailscale_cni_cni_requests_total", "counter",
		       "CNI requests answered, by verb and result (error: the plugin got a CNI "
		       "error to print).");
	for (int v = 0; v < METRICS_VERBS; v++)
		for (int ok = 1; ok >= 0; ok--)
			metrics_sample(t, "tailscale_cni_cni_requests_total",
				       (const char *[]){"verb", verb_name[v], "result",
							ok ? "success" : "error", NULL},
				       m->cni[v][ok]);
	metrics_family(t, dur, "histogram",
		       "Time from a CNI request's arrival to its answer, in seconds, by verb.");
	for (int v = 0; v < METRICS_VERBS; v++) {
		const struct histogram *h = &m->dur[v];
		uint64_t cum = 0;
		char le[16];

		for (size_t i = 0; i < N_BUCKETS; i++) {
			cum += h->le[i];
			snprintf(le, sizeof(le), "%g", bucket_s[i]);
			metrics_sample(t, "tailscale_cni_cni_request_duration_seconds_bucket",
				       (const char *[]){"verb", verb_name[v], "le", le, NULL}, cum);
		}
		metrics_sample(t, "tailscale_cni_cni_request_duration_seconds_bucket",
			       (const char *[]){"verb", verb_name[v], "le", "+Inf", NULL},
			       h->count);
		metrics_sample_f(t, "tailscale_cni_cni_request_duration_seconds_sum",
				 (const char *[]){"verb", verb_name[v], NULL},
				 (double)h->sum_us / 1e6);
		metrics_sample(t, "tailscale_cni_cni_request_duration_seconds_count",
			       (const char *[]){"verb", verb_name[v], NULL}, h->count);
	}
	render_add_phases(t, m);
}

static void render_workers(struct metrics_text *t, struct supervisor *sup)
{
	const struct metrics *m = sup->metrics;
	uint64_t down = sup->workers ? workers_zygote_down_ms(sup->workers) : 0;

	metrics_family(t, "tailscale_cni_worker_restarts_total", "counter",
		       "Worker processes that died and were respawned with the same keys and "
		       "custody fds (crashes, kills, roll-workers).");
	metrics_sample(t, "tailscale_cni_worker_restarts_total", NULL, m->worker_restarts);
	metrics_family(t, "tailscale_cni_worker_adoptions_total", "counter",
		       "Workers a record named at this supervisor's start: adopted (running "
		       "on, fd custody taken back) or refused (ts0 rebuilt, a new worker).");
	metrics_sample(t, "tailscale_cni_worker_adoptions_total",
		       (const char *[]){"result", "adopted", NULL}, m->adoptions[1]);
	metrics_sample(t, "tailscale_cni_worker_adoptions_total",
		       (const char *[]){"result", "refused", NULL}, m->adoptions[0]);
	metrics_family(t, "tailscale_cni_control_errors_total", "counter",
		       "Control-plane errors workers reported: control_down (a control "
		       "connection lost or not made), auth_failed (control refused a node).");
	metrics_sample(t, "tailscale_cni_control_errors_total",
		       (const char *[]){"kind", "control_down", NULL},
		       m->control_errors[METRICS_CONTROL_DOWN]);
	metrics_sample(t, "tailscale_cni_control_errors_total",
		       (const char *[]){"kind", "auth_failed", NULL},
		       m->control_errors[METRICS_CONTROL_AUTH_FAILED]);
	metrics_family(t, "tailscale_cni_api_errors_total", "counter",
		       "Failed exchanges with the key source's API (Tailscale API or Headscale; "
		       "every attempt, the OAuth token's too): refused (400, 401, 403, 404), "
		       "rate_limited (429), unavailable (no connection, a timeout, 5xx), "
		       "malformed (an answer that does not parse).");
	static const char *const api_kinds[AUTHKEYS_API_ERRORS] = {
		[AUTHKEYS_API_REFUSED] = "refused",
		[AUTHKEYS_API_RATE_LIMITED] = "rate_limited",
		[AUTHKEYS_API_UNAVAILABLE] = "unavailable",
		[AUTHKEYS_API_MALFORMED] = "malformed",
	};
	for (int k = 0; k < AUTHKEYS_API_ERRORS; k++)
		metrics_sample(t, "tailscale_cni_api_errors_total",
			       (const char *[]){"kind", api_kinds[k], NULL},
			       authkeys_api_errors(sup->authkeys, (enum authkeys_api_error)k));
	metrics_family(t, "tailscale_cni_zygote_up", "gauge",
		       "1 while the zygote that forks new workers runs, 0 while it is restarted.");
	metrics_sample(t, "tailscale_cni_zygote_up", NULL,
		       sup->workers && workers_zygote_pid(sup->workers) > 0);
	metrics_family(t, "tailscale_cni_zygote_down_seconds", "gauge",
		       "How long the zygote has been down (0 while it runs).");
	metrics_sample_f(t, "tailscale_cni_zygote_down_seconds", NULL, (double)down / 1e3);
	metrics_family(t, "tailscale_cni_zygote_restarts_total", "counter",
		       "Times the zygote died (or was re-executed by roll-workers) and was "
		       "started again.");
	metrics_sample(t, "tailscale_cni_zygote_restarts_total", NULL,
		       sup->workers ? workers_zygote_restarts(sup->workers) : 0);
}

static void render_health(struct metrics_text *t, struct supervisor *sup)
{
	char buf[256];
	uint64_t wait_ms = 0;
	bool stuck = pool_watch_stuck(sup->pool_watch, &wait_ms);

	metrics_family(t, "tailscale_cni_threadpool_stuck", "gauge",
		       "1 while every threadpool thread has been busy for 5 s or more (ADD and "
		       "DEL wait; the supervisor is not ready), else 0.");
	metrics_sample(t, "tailscale_cni_threadpool_stuck", NULL, stuck);
	metrics_family(t, "tailscale_cni_threadpool_probe_wait_seconds", "gauge",
		       "How long the threadpool watch's no-op job has waited for a thread so "
		       "far (0 when none waits).");
	metrics_sample_f(t, "tailscale_cni_threadpool_probe_wait_seconds", NULL,
			 (double)wait_ms / 1e3);
	metrics_family(t, "tailscale_cni_cni_socket_up", "gauge",
		       "1 while the CNI socket listens at its path, 0 when it was closed, "
		       "removed or replaced.");
	metrics_sample(t, "tailscale_cni_cni_socket_up", NULL,
		       cni_server_lost(sup->srv, buf, sizeof(buf)) == NULL);
	metrics_family(t, "tailscale_cni_ready", "gauge",
		       "1 when the supervisor answers CNI STATUS ready, else 0.");
	metrics_sample(t, "tailscale_cni_ready", NULL, sup->health == TSCNI__HEALTH__HEALTH_READY);
	metrics_family(t, "tailscale_cni_healthy", "gauge", "1 when /healthz answers 200, else 0.");
	metrics_sample(t, "tailscale_cni_healthy", NULL,
		       metrics_health(sup, buf, sizeof(buf)) == NULL);
	metrics_family(t, "tailscale_cni_metrics_connections_refused_total", "counter",
		       "Connections to this port closed at once because 16 were open.");
	metrics_sample(t, "tailscale_cni_metrics_connections_refused_total", NULL,
		       http_server_refused(sup->metrics_serve ? sup->metrics_serve->http : NULL));
	metrics_family(t, "tailscale_cni_start_time_seconds", "gauge",
		       "When this supervisor started, in Unix seconds.");
	metrics_sample(t, "tailscale_cni_start_time_seconds", NULL, sup->started_unix);
	metrics_family(t, "tailscale_cni_build_info", "gauge", "The supervisor's version.");
	metrics_sample(t, "tailscale_cni_build_info",
		       (const char *[]){"version", TSCNI_VERSION, NULL}, 1);
}

void metrics_render(struct supervisor *sup, struct metrics_text *t)
{
	if (!sup->metrics)
		return;
	if (sup->pods)
		pods_metrics_render(sup->pods, t);
	render_cni(t, sup->metrics);
	render_workers(t, sup);
	render_health(t, sup);
}

const char *metrics_health(struct supervisor *sup, char *buf, size_t len)
{
	const char *why;
	uint64_t down;

	if (sup->health != TSCNI__HEALTH__HEALTH_READY) {
		snprintf(buf, len, "not ready: %s",
			 sup->health_reason ? sup->health_reason : "no reason given");
		return buf;
	}
	why = cni_server_lost(sup->srv, buf, len);
	if (why)
		return why;
	if (!sup->workers)
		return "shutting down: the workers are let go";
	down = workers_zygote_down_ms(sup->workers);
	if (down > METRICS_ZYGOTE_GRACE_MS) {
		snprintf(buf, len,
			 "the zygote has been down for %" PRIu64 " s: new pods get no "
			 "worker",
			 down / 1000);
		return buf;
	}
	return NULL;
}

/* ---- the port --------------------------------------------------------- */

static char *text_body(const char *s, size_t *len)
{
	*len = strlen(s);
	return xstrdup(s);
}

static void on_request(void *arg, const struct http_request *req, struct http_response *resp)
{
	struct supervisor *sup = arg;

	if (!strcmp(req->path, "/metrics")) {
		struct metrics_text t = {0};

		metrics_render(sup, &t);
		if (t.full) {
			free(t.buf);
			log_warn("metrics: a scrape would exceed %d bytes: answered 500",
				 METRICS_BODY_MAX);
			resp->status = 500;
			resp->content_type = "text/plain; charset=utf-8";
			resp->body = text_body("the exposition exceeds its size bound\n",
					       &resp->body_len);
			return;
		}
		resp->status = 200;
		resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
		resp->body = t.buf;
		resp->body_len = t.len;
		return;
	}
	resp->content_type = "text/plain; charset=utf-8";
	if (!strcmp(req->path, "/healthz")) {
		char buf[256];
		const char *why = metrics_health(sup, buf, sizeof(buf));

		resp->status = why ? 503 : 200;
		resp->body = why ? xasprintf("%s\n", why) : xstrdup("ok\n");
		resp->body_len = strlen(resp->body);
		return;
	}
	resp->status = 404;
	resp->body =
		text_body("not found: /metrics and /healthz are served here\n", &resp->body_len);
}

static void on_refresh(uv_timer_t *t)
{
	struct supervisor *sup = t->data;

	if (sup->pods)
		pods_request_stats(sup->pods);
}

int metrics_serve_start(struct supervisor *sup)
{
	struct metrics_serve *ms;
	int ret;

	if (!sup->cfg.metrics_listen)
		return 0;
	ms = xcalloc(1, sizeof(*ms));
	ret = http_server_open(&sup->loop, (const struct sockaddr *)&sup->cfg.metrics_addr,
			       on_request, sup, &ms->http);
	if (ret < 0) {
		log_err("--metrics-listen %s: %s", sup->cfg.metrics_listen, uv_strerror(ret));
		free(ms);
		return ret;
	}
	uv_timer_init(&sup->loop, &ms->refresh);
	ms->refresh.data = sup;
	uv_timer_start(&ms->refresh, on_refresh, METRICS_STATS_REFRESH_MS,
		       METRICS_STATS_REFRESH_MS);
	sup->metrics_serve = ms;
	log_info("metrics and health on http://%s (/metrics, /healthz)", sup->cfg.metrics_listen);
	return 0;
}

static void refresh_closed(uv_handle_t *h)
{
	free(h->data);
}

void metrics_serve_stop(struct supervisor *sup)
{
	struct metrics_serve *ms = sup->metrics_serve;

	if (!ms)
		return;
	sup->metrics_serve = NULL;
	http_server_close(ms->http);
	ms->refresh.data = ms;
	uv_close((uv_handle_t *)&ms->refresh, refresh_closed);
}
