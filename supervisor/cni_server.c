/* The CNI socket: accept, peer check, framing, dispatch, replies. */
#include "cni_server.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "frame.h"
#include "log.h"
#include "mem.h"
#include "pods.h"
#include "proc_limits.h"
#include "supervisor.h"
#include "validate.h"
#include "workers.h"

enum cni_server_limits {
	/* A connection's buffer never holds more than one whole frame plus a
	 * read's worth: frame_decode refuses longer frames from the header. */
	CONN_BUF_MAX = FRAME_HDR_LEN + FRAME_MAX_BODY + 65536,
	CONN_READ_CHUNK = 65536,
	BACKLOG = 128,
	/* Refused peers are logged at most this often (remote input, STYLE 5). */
	REFUSE_LOG_INTERVAL_MS = 10000,
	/* Replies a client has not taken: past this many queued bytes its
	 * next request waits (and reading stops) until they drain. */
	CONN_QUEUED_MAX = 256 * 1024,
	/* A connection with nothing in flight closes after this long without
	 * a byte from the client... */
	CONN_IDLE_MS = 30000,
	/* ...and one holding half a frame, or replies the client does not
	 * read, after this long without progress. */
	CONN_STALL_MS = 10000,
	CONN_SWEEP_MS = 1000,
	/* Only a connection idle this long may be closed to make room: a new
	 * one is idle until its request is read, in the same loop turn. */
	CONN_EVICT_MIN_MS = 1000,
};

enum { CNI_ERR_CONFIG = 7, CNI_ERR_PROTOCOL = 101, CNI_ERR_INTERNAL = 999 };

struct cni_server {
	struct supervisor *sup;
	uv_pipe_t listener;
	char *path;
	/* The socket file as renamed to path: one found there with another
	 * identity (or none) means the socket is lost (cni_server_lost). */
	dev_t path_dev;
	ino_t path_ino;
	struct conn *conns;
	unsigned int n_conns;
	unsigned long conn_max; /* proc_limits_conn_max */
	bool cap_logged;	/* the cap was hit; logged again once back below half */
	/* libuv holds a connection for us (and polls the listener no more)
	 * until server_accept finds room for it. */
	bool accept_waiting;
	bool accepting; /* in server_accept: a conn_close there does not recurse */
	bool closing;
	uv_timer_t sweep;
	unsigned int handles_open;
	unsigned long long last_refuse_log_ms;
};

struct conn {
	struct conn *next;
	struct cni_server *srv;
	uv_pipe_t pipe;
	uint8_t *buf;
	size_t len;
	size_t cap;
	struct pods_request *req; /* the request pods.c is working on */
	uv_shutdown_t shutdown;
	unsigned long long last_ms; /* the last byte read or reply written */
	bool reading;
	bool closing;
	bool in_process;
	bool blocked; /* a request waits for queued replies to drain */
};

struct write_req {
	uv_write_t w;
	struct conn *c;
	uint8_t *data; /* header + body, freed in the write callback */
};

static void server_put(struct cni_server *srv)
{
	if (--srv->handles_open > 0)
		return;
	free(srv->path);
	free(srv);
}

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct cni_server *srv = c->srv;

	free(c->buf);
	free(c);
	server_put(srv);
}

static void server_accept(struct cni_server *srv);

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	for (struct conn **pp = &c->srv->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			c->srv->n_conns--;
			break;
		}
	}
	if (c->srv->n_conns < CNI_SERVER_IDLE_MAX / 2)
		c->srv->cap_logged = false;
	server_accept(c->srv);
	if (c->req) {
		pods_request_detach(c->req);
		c->req = NULL;
	}
	uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static size_t conn_queued(struct conn *c)
{
	return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe);
}

static void conn_process(struct conn *c);

static void write_done(uv_write_t *w, int status)
{
	struct write_req *wr = (struct write_req *)w;
	struct conn *c = wr->c;

	if (status < 0 && status != UV_ECANCELED)
		log_debug("reply write: %s", uv_strerror(status));
	free(wr->data);
	free(wr);
	/* A cancelled write comes from uv_close: c is closing, not yet freed. */
	if (status < 0 || c->closing)
		return;
	c->last_ms = now_ms();
	if (c->blocked && conn_queued(c) <= CONN_QUEUED_MAX / 2) {
		c->blocked = false;
		conn_process(c);
	}
}

/* Packs and sends one reply frame. A reply that cannot be sent closes the
 * connection: the client then sees EOF, never half a reply. */
static void conn_send(struct conn *c, const Tscni__CniReply *rep)
{
	size_t len = tscni__cni_reply__get_packed_size(rep);
	struct write_req *wr;
	uv_buf_t b;
	int ret;

	if (c->closing)
		return;
	if (len == 0 || len > FRAME_MAX_BODY) {
		log_err("reply of %zu bytes does not fit a frame", len);
		conn_close(c);
		return;
	}
	wr = xmalloc(sizeof(*wr));
	wr->c = c;
	wr->data = xmalloc(FRAME_HDR_LEN + len);
	frame_put_header(wr->data, len);
	tscni__cni_reply__pack(rep, wr->data + FRAME_HDR_LEN);
	b = uv_buf_init((char *)wr->data, (unsigned int)(FRAME_HDR_LEN + len));
	ret = uv_write(&wr->w, (uv_stream_t *)&c->pipe, &b, 1, write_done);
	if (ret < 0) {
		log_debug("reply write: %s", uv_strerror(ret));
		free(wr->data);
		free(wr);
		conn_close(c);
	}
}

static void conn_send_error(struct conn *c, uint32_t code, const char *msg, const char *details)
{
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__Error e = TSCNI__ERROR__INIT;

	e.cni_code = code;
	e.msg = (char *)msg;
	e.details = (char *)(details ? details : "");
	rep.protocol_version = CNI_PROTOCOL_VERSION;
	rep.body_case = TSCNI__CNI_REPLY__BODY_ERROR;
	rep.error = &e;
	conn_send(c, &rep);
}

static void send_status(struct conn *c, bool verbose)
{
	struct supervisor *sup = c->srv->sup;
	Tscni__CniReply rep = TSCNI__CNI_REPLY__INIT;
	Tscni__StatusReply st = TSCNI__STATUS_REPLY__INIT;
	uint64_t now = (uint64_t)time(NULL);
	size_t filled;

	st.health = sup->health;
	st.reason = (char *)(sup->health_reason ? sup->health_reason : "");
	st.uptime_s = now > sup->started_unix ? now - sup->started_unix : 0;
	st.version = (char *)TSCNI_VERSION;
	if (sup->workers) {
		st.zygote_pid = workers_zygote_pid(sup->workers);
		st.zygote_restarts = workers_zygote_restarts(sup->workers);
	}
	pods_status_fill(sup->pods, &st, verbose);
	filled = st.n_pod;
	rep.protocol_version = CNI_PROTOCOL_VERSION;
	rep.body_case = TSCNI__CNI_REPLY__BODY_STATUS;
	rep.status = &st;
	/* A table too large for one frame is cut; st.pods keeps the count. */
	while (st.n_pod > 0 && tscni__cni_reply__get_packed_size(&rep) > FRAME_MAX_BODY)
		st.n_pod /= 2;
	conn_send(c, &rep);
	st.n_pod = filled; /* the entries cut above are freed too */
	pods_status_clear(&st);
}

static void on_reply(void *arg, const Tscni__CniReply *rep)
{
	struct conn *c = arg;

	c->req = NULL;
	c->last_ms = now_ms();
	conn_send(c, rep);
	if (c->in_process)
		return; /* conn_process carries on with the next frame itself */
	conn_process(c);
	/* A connection without a request in flight may now make room. */
	server_accept(c->srv);
}

static void handle_frame(struct conn *c, const uint8_t *body, size_t len)
{
	struct supervisor *sup = c->srv->sup;
	Tscni__CniRequest *req;
	const char *why = NULL;
	char detail[96];
	int ret;

	req = tscni__cni_request__unpack(NULL, len, body);
	if (!req) {
		conn_send_error(c, CNI_ERR_PROTOCOL, "malformed request",
				"the frame is not a CniRequest");
		return;
	}
	if (req->protocol_version != CNI_PROTOCOL_VERSION) {
		snprintf(detail, sizeof(detail), "the supervisor speaks version %d, the request %u",
			 CNI_PROTOCOL_VERSION, req->protocol_version);
		conn_send_error(c, CNI_ERR_PROTOCOL, "protocol version mismatch", detail);
		goto out;
	}
	ret = validate_cni_request(req, &why);
	if (ret < 0) {
		conn_send_error(c, CNI_ERR_PROTOCOL, "invalid request", why);
		goto out;
	}
	if (req->body_case == TSCNI__CNI_REQUEST__BODY_STATUS) {
		send_status(c, req->status->verbose);
		goto out;
	}
	ret = pods_submit(sup->pods, req, on_reply, c, &c->req);
	if (ret < 0)
		conn_send_error(c, CNI_ERR_CONFIG, "invalid request",
				"interfaceName is not a valid interface name");
out:
	tscni__cni_request__free_unpacked(req, NULL);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	if (c->cap - c->len < CONN_READ_CHUNK && c->cap < CONN_BUF_MAX) {
		size_t want = c->cap ? c->cap * 2 : CONN_READ_CHUNK;

		if (want < c->len + CONN_READ_CHUNK)
			want = c->len + CONN_READ_CHUNK;
		if (want > CONN_BUF_MAX)
			want = CONN_BUF_MAX;
		c->buf = xrealloc(c->buf, want);
		c->cap = want;
	}
	/* A full buffer yields UV_ENOBUFS in read_cb, which closes. */
	*buf = uv_buf_init((char *)c->buf + c->len, (unsigned int)(c->cap - c->len));
}

static void shutdown_done(uv_shutdown_t *req, int status)
{
	conn_close(req->data);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (nread == UV_EOF && !c->req) {
		/* The client is done sending: let the replies already queued
		 * go out (uv_shutdown waits for them), then close. */
		uv_read_stop(s);
		c->reading = false;
		c->shutdown.data = c;
		if (uv_shutdown(&c->shutdown, s, shutdown_done) < 0)
			conn_close(c);
		return;
	}
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug("CNI connection: %s", uv_strerror((int)nread));
		conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	c->last_ms = now_ms();
	conn_process(c);
}

/* Handles every whole frame in the buffer, one request at a time: while
 * pods.c works on one, reading stops (a client waits for its reply anyway,
 * and a pipelining client cannot make us buffer without bound). */
static void conn_process(struct conn *c)
{
	const uint8_t *body;
	size_t body_len;
	const char *why = NULL;
	ssize_t n;

	c->in_process = true;
	while (!c->closing && !c->req) {
		if (conn_queued(c) > CONN_QUEUED_MAX) {
			c->blocked = true; /* write_done carries on */
			break;
		}
		n = frame_decode(c->buf, c->len, &body, &body_len, &why);
		if (n < 0) {
			log_warn("CNI connection: %s, closing it", why);
			conn_close(c);
			break;
		}
		if (n == 0)
			break;
		handle_frame(c, body, body_len);
		memmove(c->buf, c->buf + n, c->len - (size_t)n);
		c->len -= (size_t)n;
	}
	c->in_process = false;
	if (c->closing)
		return;
	if (c->len == 0) {
		/* An idle connection holds no buffer. */
		free(c->buf);
		c->buf = NULL;
		c->cap = 0;
	}
	if ((c->req || c->blocked) && c->reading) {
		uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	} else if (!c->req && !c->blocked && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb) == 0)
			c->reading = true;
		else
			conn_close(c);
	}
}

/* Only root and the supervisor's own uid may talk to it. */
static bool peer_allowed(struct cni_server *srv, struct conn *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0)
		return false;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
		return false;
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	unsigned long long now = now_ms();

	if (now - srv->last_refuse_log_ms >= REFUSE_LOG_INTERVAL_MS) {
		srv->last_refuse_log_ms = now;
		log_warn("CNI connection from uid %u pid %d refused", (unsigned int)cred.uid,
			 (int)cred.pid);
	}
	return false;
}

/* Whether a new connection may be taken: below both caps, yes; else the
 * connection idle longest (at least CONN_EVICT_MIN_MS, no request in pods.c)
 * goes, so that a new client (an ADD from the runtime) is served. false
 * when the total cap is reached and none can go: the new one then waits. */
static bool make_room(struct cni_server *srv)
{
	unsigned long long now = now_ms();
	struct conn *victim = NULL;
	unsigned int idle = 0;

	for (struct conn *c = srv->conns; c; c = c->next) {
		if (c->req)
			continue;
		idle++;
		if (now - c->last_ms >= CONN_EVICT_MIN_MS &&
		    (!victim || c->last_ms < victim->last_ms))
			victim = c;
	}
	if (idle < CNI_SERVER_IDLE_MAX && srv->n_conns < srv->conn_max)
		return true;
	if (!srv->cap_logged) {
		srv->cap_logged = true;
		log_warn("CNI socket: %u connections open, %u idle: the idle ones are closed as "
			 "new ones arrive",
			 srv->n_conns, idle);
	}
	if (victim) {
		conn_close(victim);
		return true;
	}
	return srv->n_conns < srv->conn_max;
}

/* Closes the connections that sat too long: idle, or stalled on half a frame
 * or on replies the client does not read. One with a request in pods.c
 * waits for it (pods.c has its own deadlines). */
static void on_sweep(uv_timer_t *t)
{
	struct cni_server *srv = t->data;
	unsigned long long now = now_ms();
	struct conn *c = srv->conns, *next;

	for (; c; c = next) {
		next = c->next;
		if (c->req)
			continue;
		bool stalled = c->len > 0 || conn_queued(c) > 0;
		unsigned long long limit = stalled ? CONN_STALL_MS : CONN_IDLE_MS;

		if (now - c->last_ms < limit)
			continue;
		log_debug("CNI connection %s for %llu s: closing it", stalled ? "stalled" : "idle",
			  (now - c->last_ms) / 1000);
		conn_close(c);
	}
	/* A waiting connection may now find one idle long enough to go. */
	server_accept(srv);
}

/* Takes the connection libuv holds, when there is room for it. Until then
 * libuv leaves the listener alone and later clients wait in the backlog:
 * at the cap with every connection busy, new ones wait rather than fail. */
static void server_accept(struct cni_server *srv)
{
	struct conn *c;
	bool room;
	int ret;

	if (!srv->accept_waiting || srv->accepting || srv->closing)
		return;
	srv->accepting = true;
	room = make_room(srv);
	srv->accepting = false;
	if (!room)
		return;
	srv->accept_waiting = false;
	c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	uv_pipe_init(srv->listener.loop, &c->pipe, 0); /* cannot fail for a pipe */
	c->pipe.data = c;
	c->last_ms = now_ms();
	srv->handles_open++;
	srv->n_conns++;
	c->next = srv->conns;
	srv->conns = c;
	ret = uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->pipe);
	if (ret < 0 || !peer_allowed(srv, c)) {
		conn_close(c);
		return;
	}
	conn_process(c); /* starts reading */
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct cni_server *srv = listener->data;

	if (status < 0) {
		log_warn("accept on the CNI socket: %s", uv_strerror(status));
		return;
	}
	srv->accept_waiting = true;
	server_accept(srv);
}

static void listener_closed(uv_handle_t *h)
{
	server_put(h->data);
}

/* Whether a supervisor answers at path: a connect that is accepted or
 * queued. Refused, or no socket file: nobody listens. */
static bool socket_answers(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ret;

	if (strscpy(sa.sun_path, path, sizeof(sa.sun_path)) < 0)
		return false;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return false;
	ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	ret = ret == 0 || errno == EAGAIN || errno == EINPROGRESS;
	close(fd);
	return ret;
}

int cni_server_claim(const char *path)
{
	char *copy = xstrdup(path);
	const char *dir = dirname(copy);
	char *lock = xasprintf("%s.lock", path);
	int fd = -1, ret;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		log_err_r(ret, "create the socket directory %s", dir);
		goto out;
	}
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		ret = -errno;
		log_err_r(ret, "open the socket's lock %s", lock);
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? -EADDRINUSE : -errno;
		if (ret == -EADDRINUSE)
			log_err("refusing to start: another supervisor holds %s and serves %s",
				lock, path);
		else
			log_err_r(ret, "lock %s", lock);
		goto out;
	}
	/* A supervisor from before the lock file existed still answers. */
	if (socket_answers(path)) {
		ret = -EADDRINUSE;
		log_err("refusing to start: another supervisor answers on %s", path);
		goto out;
	}
	ret = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	free(lock);
	free(copy);
	return ret;
}

/* Makes the socket's directory (0700) when it is missing, and removes a
 * stale socket left by a supervisor that died. */
static int prepare_path(const char *path)
{
	char *copy = xstrdup(path);
	const char *dir = dirname(copy);
	struct stat sb;
	int ret = 0;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		log_err_r(ret, "create the socket directory %s", dir);
		goto out;
	}
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			ret = -EEXIST;
			log_err("%s exists and is not a socket; not touching it", path);
			goto out;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			ret = -errno;
			log_err_r(ret, "remove the stale socket %s", path);
			goto out;
		}
		log_info("removed the stale socket %s", path);
	}
out:
	free(copy);
	return ret;
}

int cni_server_open(struct supervisor *sup, const char *path, struct cni_server **out)
{
	struct cni_server *srv;
	char *copy, *tmp;
	int ret;

	*out = NULL;
	ret = prepare_path(path);
	if (ret < 0)
		return ret;
	copy = xstrdup(path);
	tmp = xasprintf("%s/.cni.sock.tmp.%d", dirname(copy), (int)getpid());
	free(copy);
	unlink(tmp);

	srv = xcalloc(1, sizeof(*srv));
	srv->sup = sup;
	srv->path = xstrdup(path);
	srv->conn_max = proc_limits_conn_max(proc_limits_nofile());
	ret = uv_pipe_init(&sup->loop, &srv->listener, 0);
	if (ret < 0) {
		log_err("CNI socket: %s", uv_strerror(ret));
		free(srv->path);
		free(srv);
		free(tmp);
		return ret;
	}
	srv->listener.data = srv;
	srv->handles_open = 2;
	uv_timer_init(&sup->loop, &srv->sweep);
	srv->sweep.data = srv;
	uv_timer_start(&srv->sweep, on_sweep, CONN_SWEEP_MS, CONN_SWEEP_MS);
	ret = uv_pipe_bind(&srv->listener, tmp);
	if (ret < 0) {
		log_err("bind %s: %s", tmp, uv_strerror(ret));
		goto err_close;
	}
	if (chmod(tmp, 0600) < 0) {
		ret = -errno;
		log_err_r(ret, "chmod %s", tmp);
		goto err_unlink;
	}
	ret = uv_listen((uv_stream_t *)&srv->listener, BACKLOG, on_connection);
	if (ret < 0) {
		log_err("listen on %s: %s", tmp, uv_strerror(ret));
		goto err_unlink;
	}
	if (rename(tmp, path) < 0) {
		ret = -errno;
		log_err_r(ret, "rename %s to %s", tmp, path);
		goto err_unlink;
	}
	{
		struct stat sb;

		if (lstat(path, &sb) == 0) {
			srv->path_dev = sb.st_dev;
			srv->path_ino = sb.st_ino;
		}
	}
	free(tmp);
	*out = srv;
	return 0;

err_unlink:
	unlink(tmp);
err_close:
	free(tmp);
	uv_close((uv_handle_t *)&srv->sweep, listener_closed);
	uv_close((uv_handle_t *)&srv->listener, listener_closed);
	return ret;
}

const char *cni_server_lost(const struct cni_server *srv, char *buf, size_t len)
{
	struct stat sb;

	if (!srv || srv->closing)
		return "the CNI socket is closed";
	if (lstat(srv->path, &sb) < 0) {
		snprintf(buf, len, "the CNI socket %s is gone (%s): runtimes cannot reach us",
			 srv->path, strerror(errno));
		return buf;
	}
	if (!S_ISSOCK(sb.st_mode) || sb.st_dev != srv->path_dev || sb.st_ino != srv->path_ino) {
		snprintf(buf, len, "the CNI socket %s was replaced by another file", srv->path);
		return buf;
	}
	return NULL;
}

void cni_server_close(struct cni_server *srv)
{
	if (!srv)
		return;
	unlink(srv->path);
	srv->closing = true;
	while (srv->conns)
		conn_close(srv->conns);
	uv_close((uv_handle_t *)&srv->sweep, listener_closed);
	uv_close((uv_handle_t *)&srv->listener, listener_closed);
}
