/* HTTP/2 with prior knowledge (an nghttp2 client session) inside the Noise
 * records of the connection that won the dial race: the early payload
 * first, then the frames. Each request is one h2req; its answer goes to
 * request.c (client__req_done), map stream data to the map reader as it
 * arrives. */
#include "client_internal.h"

#include <ctype.h>
#include <errno.h>

#include <sodium.h>

#include "log.h"
#include "mapjson.h"

void client__req_free(struct h2req *r)
{
	if (!r)
		return;
	if (r->body) {
		sodium_memzero(r->body, r->body_len); /* a register body holds the auth key */
		free(r->body);
	}
	sbuf_free(&r->resp);
	free(r);
}

static struct h2req *req_of(struct conn *n, int32_t id)
{
	return nghttp2_session_get_stream_user_data(n->h2, id);
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
			size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			void *ud)
{
	struct conn *n = ud;
	struct h2req *r;

	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	r = req_of(n, f->hd.stream_id);
	if (!r)
		return 0;
	if (namelen == 7 && !memcmp(name, ":status", 7)) {
		int st = 0;
		size_t i;

		for (i = 0; i < valuelen && i < 3; i++)
			st = st * 10 + (isdigit(value[i]) ? value[i] - '0' : 0);
		r->status = st;
	} else if (namelen == 11 && !memcmp(name, "retry-after", 11)) {
		long v = 0;
		size_t i;

		for (i = 0; i < valuelen && i < 7 && isdigit(value[i]); i++)
			v = v * 10 + (value[i] - '0');
		r->retry_after = (i == valuelen && i > 0) ? v : -1;
	}
	return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
		      size_t len, void *ud)
{
	struct conn *n = ud;
	struct client *c = n->c;
	struct h2req *r = req_of(n, id);

	if (!r)
		return 0;
	if (r->kind == REQ_STREAM && r->status == 200) {
		while (len) {
			char *json = NULL;
			size_t jl = 0;
			const char *why = NULL;
			ssize_t k = mapstream_feed(&c->map.ms, data, len, &json, &jl, &why);

			if (k < 0) {
				client__fail(c, false, (int)k, "map stream: %s", why);
				return 0;
			}
			data += k;
			len -= (size_t)k;
			if (json) {
				client__map_message(c, json, jl);
				free(json);
			}
			if (c->failure.pending)
				return 0;
		}
		return 0;
	}
	/* Register answers are <= 1 MiB; for the others (lite update bodies,
	 * error text) the first 4 KiB are plenty. */
	{
		size_t cap = (r->kind == REQ_REGISTER || r->kind == REQ_LOGOUT)
				     ? MAPJSON_MAX_REGISTER_RESPONSE
				     : 4096;
		size_t room = r->resp.len < cap ? cap - r->resp.len : 0;

		if ((r->kind == REQ_REGISTER || r->kind == REQ_LOGOUT) && len > room) {
			client__fail(c, false, -EMSGSIZE, "register answer larger than 1 MiB");
			return 0;
		}
		sbuf_add(&r->resp, data, len < room ? len : room);
	}
	return 0;
}

static int h2_on_stream_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *ud)
{
	struct conn *n = ud;
	struct h2req *r = req_of(n, id);
	size_t i;

	if (!r)
		return 0;
	for (i = 0; i < MAX_REQS; i++)
		if (n->reqs[i] == r)
			n->reqs[i] = NULL;
	r->closed = true;
	client__req_done(n->c, r, error_code);
	client__req_free(r);
	return 0;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct h2req *r = src->ptr;
	size_t left = r->body_len - r->body_off;
	size_t k = left < len ? left : len;

	memcpy(buf, r->body + r->body_off, k);
	r->body_off += k;
	if (r->body_off == r->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)k;
}

static void h2_flush(struct conn *n)
{
	for (;;) {
		const uint8_t *data;
		ssize_t k;
		size_t need;
		ssize_t w;

		if (n->dead || !n->h2 || n->in_recv)
			return;
		k = nghttp2_session_mem_send(n->h2, &data);
		if (k < 0) {
			client__conn_error(n, -EPROTO, "HTTP/2: %s", nghttp2_strerror((int)k));
			return;
		}
		if (k == 0)
			break;
		need = ts2021_sealed_len((size_t)k);
		sbuf_reserve(&n->out, need);
		w = ts2021_seal(&n->nc.tx, data, (size_t)k, n->out.p + n->out.len, need);
		if (w < 0) {
			client__conn_error(n, (int)w, "ts2021: cannot seal a record");
			return;
		}
		n->out.len += (size_t)w;
	}
	client__conn_flush(n);
}

struct h2req *client__h2_submit(struct client *c, enum req_kind kind, const char *method,
				const char *path, char *body, size_t len)
{
	struct conn *n = c->dial.noise;
	struct h2req *r;
	nghttp2_data_provider prd;
	size_t slot;
	int32_t id;
	const nghttp2_nv nva[] = {
		{(uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0},
		{(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
		{(uint8_t *)":authority", (uint8_t *)c->srv.host, 10, strlen(c->srv.host), 0},
		{(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
		{(uint8_t *)"content-type", (uint8_t *)"application/json", 12, 16, 0},
	};

	if (!n || !n->h2 || n->dead) {
		if (body)
			sodium_memzero(body, len);
		free(body);
		return NULL;
	}
	for (slot = 0; slot < MAX_REQS && n->reqs[slot]; slot++)
		;
	if (slot == MAX_REQS) {
		if (body)
			sodium_memzero(body, len);
		free(body);
		log_warn("too many requests in flight on the control connection");
		return NULL;
	}
	r = xcalloc(1, sizeof(*r));
	r->conn = n;
	r->kind = kind;
	r->body = (uint8_t *)body;
	r->body_len = len;
	r->retry_after = -1;
	prd.source.ptr = r;
	prd.read_callback = h2_read_body;
	id = nghttp2_submit_request(n->h2, NULL, nva, body ? 5 : 4, body ? &prd : NULL, r);
	if (id < 0) {
		client__req_free(r);
		client__conn_error(n, -EPROTO, "HTTP/2: cannot submit %s: %s", path,
				   nghttp2_strerror(id));
		return NULL;
	}
	r->id = id;
	n->reqs[slot] = r;
	h2_flush(n);
	client__conn_update_poll(n);
	return r;
}

void client__h2_start(struct conn *n)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_WINDOW},
	};
	int ret;

	if (nghttp2_session_callbacks_new(&cbs) != 0)
		abort();
	nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h2_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h2_on_stream_close);
	ret = nghttp2_session_client_new(&n->h2, cbs, n);
	nghttp2_session_callbacks_del(cbs);
	if (ret != 0)
		abort();
	nghttp2_submit_settings(n->h2, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	nghttp2_session_set_local_window_size(n->h2, NGHTTP2_FLAG_NONE, 0, 4 * H2_WINDOW);
	h2_flush(n);
}

static void h2_feed(struct conn *n, const uint8_t *p, size_t len)
{
	ssize_t k;

	if (!len || n->dead)
		return;
	n->in_recv = true;
	k = nghttp2_session_mem_recv(n->h2, p, len);
	n->in_recv = false;
	if (k < 0)
		client__conn_error(n, -EPROTO, "HTTP/2 from control: %s", nghttp2_strerror((int)k));
}

/* Decrypted bytes from the server: the early payload, then HTTP/2. */
static void conn_plaintext(struct conn *n, const uint8_t *pt, size_t len)
{
	if (!n->early_done) {
		size_t consumed = 0;
		const char *why = NULL;
		const uint8_t *held;
		size_t nheld;
		int r = ts2021_early_feed(&n->early, pt, len, &consumed, &why);

		if (r < 0) {
			client__conn_error(n, r, "ts2021 early payload: %s", why);
			return;
		}
		if (r == 0)
			return;
		n->early_done = true;
		if (n->early.present) {
			log_debug("control sent an early payload (%u bytes)", n->early.json_len);
		} else {
			nheld = ts2021_early_passthrough(&n->early, &held);
			h2_feed(n, held, nheld);
		}
		pt += consumed;
		len -= consumed;
	}
	h2_feed(n, pt, len);
}

void client__h2_records(struct conn *n)
{
	size_t off = 0;

	while (off < n->in.len && !n->dead) {
		size_t used = 0, ptlen = 0;
		const uint8_t *pt = NULL;
		const char *why = NULL;
		int r = ts2021_reader_next(&n->rd, n->in.p + off, n->in.len - off, &used, &pt,
					   &ptlen, &why);

		off += used;
		if (r < 0) {
			client__conn_error(n, r, "ts2021 record from control: %s", why);
			break;
		}
		if (r == 1)
			conn_plaintext(n, pt, ptlen);
	}
	n->in.len = 0;
	h2_flush(n);
}
