/* stub_daemon: a stand-in for tailscale-cni-supervisor on the CNI socket, for
 * the conformance cases of docs/cni-contract.md §11 that need a daemon which
 * misbehaves in a controlled way. It speaks the real protocol (common/frame.h,
 * CniRequest/CniReply of common/proto/cni.proto, checked by
 * validate_cni_request) and creates no interface.
 *
 *   stub_daemon --socket PATH --log FILE --table FILE [--mode MODE]
 *               [--verbs ADD,DEL,CHECK,GC,STATUS] [--delay-ms N] [--message TEXT]
 *
 * MODE, applied to the verbs in --verbs (default: all of them); other verbs
 * are answered as in "ok":
 *   ok      answer at once: ADD -> ts0, MTU 1280, no addresses (pending);
 *           DEL -> existed; CHECK -> ok if the key is held, else 103;
 *           GC -> release this network's keys not listed; STATUS -> ready.
 *   hang    read the request, never reply; when the client goes away, carry
 *           the request out anyway (a daemon that finishes work the plugin
 *           gave up on, docs/cni-contract.md §11 cases 29 and 48).
 *   half    send half of a frame and close.
 *   refuse  answer with Error code 102, msg "refused by stub", details TEXT.
 *   late    carry out the request and reply after --delay-ms.
 *
 * --log gets one line per event, appended: "connect", then
 *   "ADD net=N cid=C ifname=I netns=P ifc=ts0 ns=NS name=NAME uid=UID"
 *   "DEL net=N cid=C ifname=I netns=P", "CHECK ...", "GC net=N valid=C/I,...",
 *   "STATUS".
 * --table is rewritten (temp + rename) after every change with the keys the
 * stub holds, one "network containerid ifname" line each. The socket is
 * created at a temp name and renamed into place, so once it exists it is
 * served. SIGTERM or SIGINT end the stub. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cni.pb-c.h"
#include "frame.h"
#include "mem.h"
#include "validate.h"

enum stub_mode { MODE_OK, MODE_HANG, MODE_HALF, MODE_REFUSE, MODE_LATE };

enum stub_verb {
	VERB_ADD = 1U << 0,
	VERB_DEL = 1U << 1,
	VERB_CHECK = 1U << 2,
	VERB_GC = 1U << 3,
	VERB_STATUS = 1U << 4,
};

enum { STUB_MAX_KEYS = 4096, STUB_IO_TIMEOUT_MS = 30000 };

struct stub_key {
	char *network, *container_id, *ifname;
};

static struct {
	const char *socket_path, *log_path, *table_path, *message;
	enum stub_mode mode;
	unsigned int verbs;
	long delay_ms;
	pthread_mutex_t lock;
	struct stub_key keys[STUB_MAX_KEYS];
	size_t nkeys;
	int log_fd;
} stub = {
	.mode = MODE_OK,
	.verbs = VERB_ADD | VERB_DEL | VERB_CHECK | VERB_GC | VERB_STATUS,
	.message = "stub refusal",
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.log_fd = -1,
};

/* One line, one write(2), so lines of concurrent connections never mix. */
static void stub_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void stub_log(const char *fmt, ...)
{
	char line[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	write_all(stub.log_fd, line, (size_t)n);
}

/* Caller holds stub.lock. Writes the key table atomically. */
static void table_write(void)
{
	char *tmp = xasprintf("%s.tmp", stub.table_path);
	FILE *f = fopen(tmp, "we");

	if (!f) {
		fprintf(stderr, "stub_daemon: open %s: %s\n", tmp, strerror(errno));
		free(tmp);
		return;
	}
	for (size_t i = 0; i < stub.nkeys; i++)
		fprintf(f, "%s %s %s\n", stub.keys[i].network, stub.keys[i].container_id,
			stub.keys[i].ifname);
	if (fclose(f) != 0 || rename(tmp, stub.table_path) < 0)
		fprintf(stderr, "stub_daemon: write %s: %s\n", stub.table_path, strerror(errno));
	free(tmp);
}

/* Caller holds stub.lock. Returns the index of the key or -1. */
static long table_find(const Tscni__AttachmentKey *k)
{
	for (size_t i = 0; i < stub.nkeys; i++) {
		if (!strcmp(stub.keys[i].network, k->network) &&
		    !strcmp(stub.keys[i].container_id, k->container_id) &&
		    !strcmp(stub.keys[i].ifname, k->ifname))
			return (long)i;
	}
	return -1;
}

/* Caller holds stub.lock. */
static void table_remove(size_t i)
{
	free(stub.keys[i].network);
	free(stub.keys[i].container_id);
	free(stub.keys[i].ifname);
	stub.keys[i] = stub.keys[--stub.nkeys];
}

static unsigned int verb_of(const Tscni__CniRequest *req)
{
	switch (req->body_case) {
	case TSCNI__CNI_REQUEST__BODY_ADD:
		return VERB_ADD;
	case TSCNI__CNI_REQUEST__BODY_DEL:
		return VERB_DEL;
	case TSCNI__CNI_REQUEST__BODY_CHECK:
		return VERB_CHECK;
	case TSCNI__CNI_REQUEST__BODY_GC:
		return VERB_GC;
	case TSCNI__CNI_REQUEST__BODY_STATUS:
		return VERB_STATUS;
	default:
		return 0;
	}
}

static void log_request(const Tscni__CniRequest *req)
{
	const Tscni__AttachmentKey *k;

	switch (req->body_case) {
	case TSCNI__CNI_REQUEST__BODY_ADD: {
		const Tscni__AddRequest *a = req->add;
		const Tscni__PodMeta *p = a->pod;

		k = a->key;
		stub_log("ADD net=%s cid=%s ifname=%s netns=%s ifc=%s ns=%s name=%s uid=%s",
			 k->network, k->container_id, k->ifname, a->netns_path, a->interface_name,
			 p ? p->namespace_ : "", p ? p->name : "", p ? p->uid : "");
		break;
	}
	case TSCNI__CNI_REQUEST__BODY_DEL:
		k = req->del->key;
		stub_log("DEL net=%s cid=%s ifname=%s netns=%s", k->network, k->container_id,
			 k->ifname, req->del->netns_path);
		break;
	case TSCNI__CNI_REQUEST__BODY_CHECK:
		k = req->check->key;
		stub_log("CHECK net=%s cid=%s ifname=%s netns=%s", k->network, k->container_id,
			 k->ifname, req->check->netns_path);
		break;
	case TSCNI__CNI_REQUEST__BODY_GC: {
		char valid[4096] = "";
		size_t off = 0;

		for (size_t i = 0; i < req->gc->n_valid && off < sizeof(valid) - 1; i++) {
			int n = snprintf(valid + off, sizeof(valid) - off, "%s%s/%s", i ? "," : "",
					 req->gc->valid[i]->container_id,
					 req->gc->valid[i]->ifname);

			if (n < 0)
				break;
			off += (size_t)n;
		}
		stub_log("GC net=%s valid=%s", req->gc->network, valid);
		break;
	}
	case TSCNI__CNI_REQUEST__BODY_STATUS:
		stub_log("STATUS");
		break;
	default:
		stub_log("UNKNOWN");
		break;
	}
}

/* Carries out req on the key table and fills reply (whose body is left for
 * the caller to free through the stack objects passed in). */
struct reply_store {
	Tscni__AddReply add;
	Tscni__DelReply del;
	Tscni__CheckReply check;
	Tscni__GcReply gc;
	Tscni__StatusReply status;
	Tscni__Error error;
};

static void apply(const Tscni__CniRequest *req, Tscni__CniReply *reply, struct reply_store *st)
{
	long i;

	pthread_mutex_lock(&stub.lock);
	switch (req->body_case) {
	case TSCNI__CNI_REQUEST__BODY_ADD:
		if (table_find(req->add->key) < 0 && stub.nkeys < STUB_MAX_KEYS) {
			stub.keys[stub.nkeys++] = (struct stub_key){
				.network = xstrdup(req->add->key->network),
				.container_id = xstrdup(req->add->key->container_id),
				.ifname = xstrdup(req->add->key->ifname),
			};
			table_write();
		}
		st->add.interface_name = req->add->interface_name;
		st->add.mtu = 1280;
		st->add.addresses_pending = true;
		reply->body_case = TSCNI__CNI_REPLY__BODY_ADD;
		reply->add = &st->add;
		break;
	case TSCNI__CNI_REQUEST__BODY_DEL:
		i = table_find(req->del->key);
		st->del.existed = i >= 0;
		if (i >= 0) {
			table_remove((size_t)i);
			table_write();
		}
		reply->body_case = TSCNI__CNI_REPLY__BODY_DEL;
		reply->del = &st->del;
		break;
	case TSCNI__CNI_REQUEST__BODY_CHECK:
		if (table_find(req->check->key) >= 0) {
			reply->body_case = TSCNI__CNI_REPLY__BODY_CHECK;
			reply->check = &st->check;
		} else {
			st->error.cni_code = 103;
			st->error.msg = "no record for this attachment";
			st->error.details = "stub holds no such key";
			reply->body_case = TSCNI__CNI_REPLY__BODY_ERROR;
			reply->error = &st->error;
		}
		break;
	case TSCNI__CNI_REQUEST__BODY_GC: {
		const Tscni__GcRequest *gc = req->gc;

		for (size_t k = 0; k < stub.nkeys;) {
			bool keep = strcmp(stub.keys[k].network, gc->network) != 0;

			for (size_t v = 0; !keep && v < gc->n_valid; v++)
				keep = !strcmp(stub.keys[k].container_id,
					       gc->valid[v]->container_id) &&
				       !strcmp(stub.keys[k].ifname, gc->valid[v]->ifname);
			if (keep) {
				k++;
				continue;
			}
			table_remove(k);
			st->gc.released++;
		}
		table_write();
		reply->body_case = TSCNI__CNI_REPLY__BODY_GC;
		reply->gc = &st->gc;
		break;
	}
	case TSCNI__CNI_REQUEST__BODY_STATUS:
		st->status.health = TSCNI__HEALTH__HEALTH_READY;
		st->status.pods = (uint32_t)stub.nkeys;
		st->status.version = "stub";
		reply->body_case = TSCNI__CNI_REPLY__BODY_STATUS;
		reply->status = &st->status;
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&stub.lock);
}

static int send_reply(int fd, const Tscni__CniReply *reply)
{
	size_t len = tscni__cni_reply__get_packed_size(reply);
	uint8_t *buf = xmalloc(len + 1);
	int ret;

	tscni__cni_reply__pack(reply, buf);
	ret = frame_write_fd(fd, buf, len, now_ms() + STUB_IO_TIMEOUT_MS);
	free(buf);
	return ret;
}

/* Half a frame: a header that promises the whole reply, then half the body. */
static void send_half(int fd)
{
	Tscni__AddReply add = TSCNI__ADD_REPLY__INIT;
	Tscni__CniReply reply = TSCNI__CNI_REPLY__INIT;
	uint8_t hdr[FRAME_HDR_LEN];

	add.interface_name = "ts0";
	add.mtu = 1280;
	reply.protocol_version = CNI_PROTOCOL_VERSION;
	reply.body_case = TSCNI__CNI_REPLY__BODY_ADD;
	reply.add = &add;
	size_t len = tscni__cni_reply__get_packed_size(&reply);
	uint8_t *buf = xmalloc(len + 1);

	tscni__cni_reply__pack(&reply, buf);
	frame_put_header(hdr, len);
	write_all(fd, hdr, sizeof(hdr));
	write_all(fd, buf, len / 2);
	free(buf);
}

/* Blocks until the peer closes its end (or 10 minutes pass). */
static void wait_peer_gone(int fd)
{
	char buf[256];

	for (int waited = 0; waited < 600; waited++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			return;
		if (p.revents & (POLLHUP | POLLERR))
			return;
		if (p.revents & POLLIN) {
			ssize_t n = read(fd, buf, sizeof(buf));

			if (n <= 0)
				return;
		}
	}
}

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	uint8_t *body = NULL;
	size_t len = 0;
	const char *why = "?";
	Tscni__CniRequest *req = NULL;
	Tscni__CniReply reply = TSCNI__CNI_REPLY__INIT;
	struct reply_store st = {
		.add = TSCNI__ADD_REPLY__INIT,
		.del = TSCNI__DEL_REPLY__INIT,
		.check = TSCNI__CHECK_REPLY__INIT,
		.gc = TSCNI__GC_REPLY__INIT,
		.status = TSCNI__STATUS_REPLY__INIT,
		.error = TSCNI__ERROR__INIT,
	};
	int ret;

	stub_log("connect");
	ret = frame_read_fd(fd, &body, &len, now_ms() + STUB_IO_TIMEOUT_MS, &why);
	if (ret < 0) {
		stub_log("bad-frame %s (%s)", strerror(-ret), why);
		goto out;
	}
	req = tscni__cni_request__unpack(NULL, len, body);
	if (!req) {
		stub_log("bad-request unpack failed");
		goto out;
	}
	if (validate_cni_request(req, &why) < 0) {
		stub_log("bad-request %s", why);
		goto out;
	}
	log_request(req);
	reply.protocol_version = CNI_PROTOCOL_VERSION;
	enum stub_mode mode = (verb_of(req) & stub.verbs) ? stub.mode : MODE_OK;

	switch (mode) {
	case MODE_OK:
		apply(req, &reply, &st);
		ret = send_reply(fd, &reply);
		break;
	case MODE_HANG:
		wait_peer_gone(fd);
		apply(req, &reply, &st);
		stub_log("completed-after-client-left");
		break;
	case MODE_HALF:
		send_half(fd);
		break;
	case MODE_REFUSE:
		st.error.cni_code = 102;
		st.error.msg = "refused by stub";
		st.error.details = (char *)stub.message;
		reply.body_case = TSCNI__CNI_REPLY__BODY_ERROR;
		reply.error = &st.error;
		ret = send_reply(fd, &reply);
		break;
	case MODE_LATE: {
		struct timespec ts = {.tv_sec = stub.delay_ms / 1000,
				      .tv_nsec = (stub.delay_ms % 1000) * 1000000};

		nanosleep(&ts, NULL);
		apply(req, &reply, &st);
		ret = send_reply(fd, &reply);
		stub_log("late-reply %s", ret < 0 ? strerror(-ret) : "sent");
		break;
	}
	}
out:
	if (req)
		tscni__cni_request__free_unpacked(req, NULL);
	free(body);
	close(fd);
	return NULL;
}

static int parse_verbs(const char *s, unsigned int *out)
{
	static const struct {
		const char *name;
		unsigned int bit;
	} names[] = {{"ADD", VERB_ADD},
		     {"DEL", VERB_DEL},
		     {"CHECK", VERB_CHECK},
		     {"GC", VERB_GC},
		     {"STATUS", VERB_STATUS}};
	char *copy = xstrdup(s), *save = NULL;

	*out = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			if (!strcmp(t, names[i].name))
				break;
		}
		if (i == sizeof(names) / sizeof(names[0])) {
			fprintf(stderr, "stub_daemon: unknown verb '%s' in --verbs\n", t);
			free(copy);
			return -EINVAL;
		}
		*out |= names[i].bit;
	}
	free(copy);
	return 0;
}

static int parse_mode(const char *s, enum stub_mode *out)
{
	static const char *const names[] = {"ok", "hang", "half", "refuse", "late"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum stub_mode)i;
			return 0;
		}
	}
	fprintf(stderr, "stub_daemon: unknown --mode '%s' (ok|hang|half|refuse|late)\n", s);
	return -EINVAL;
}

static int listen_at(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char *tmp = xasprintf("%s.tmp", path);
	int fd = -1;

	if (strlen(tmp) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "stub_daemon: socket path too long: %s\n", path);
		goto err;
	}
	memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
	unlink(tmp);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(tmp, 0600) < 0 ||
	    listen(fd, 512) < 0 || rename(tmp, path) < 0) {
		fprintf(stderr, "stub_daemon: listen on %s: %s\n", path, strerror(errno));
		goto err;
	}
	free(tmp);
	return fd;
err:
	if (fd >= 0)
		close(fd);
	free(tmp);
	return -1;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	stop = 1;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!val) {
			fprintf(stderr, "stub_daemon: %s needs a value\n", opt);
			return 2;
		}
		i++;
		if (!strcmp(opt, "--socket"))
			stub.socket_path = val;
		else if (!strcmp(opt, "--log"))
			stub.log_path = val;
		else if (!strcmp(opt, "--table"))
			stub.table_path = val;
		else if (!strcmp(opt, "--message"))
			stub.message = val;
		else if (!strcmp(opt, "--delay-ms"))
			stub.delay_ms = strtol(val, NULL, 10);
		else if (!strcmp(opt, "--mode")) {
			if (parse_mode(val, &stub.mode) < 0)
				return 2;
		} else if (!strcmp(opt, "--verbs")) {
			if (parse_verbs(val, &stub.verbs) < 0)
				return 2;
		} else {
			fprintf(stderr, "stub_daemon: unknown option %s\n", opt);
			return 2;
		}
	}
	if (!stub.socket_path || !stub.log_path || !stub.table_path || stub.delay_ms < 0) {
		fprintf(stderr,
			"usage: stub_daemon --socket PATH --log FILE --table FILE "
			"[--mode ok|hang|half|refuse|late] [--verbs ADD,DEL,CHECK,GC,STATUS] "
			"[--delay-ms N] [--message TEXT]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_signal};

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	stub.log_fd = open(stub.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (stub.log_fd < 0) {
		fprintf(stderr, "stub_daemon: open %s: %s\n", stub.log_path, strerror(errno));
		return 1;
	}
	pthread_mutex_lock(&stub.lock);
	table_write();
	pthread_mutex_unlock(&stub.lock);

	int lfd = listen_at(stub.socket_path);

	if (lfd < 0)
		return 1;
	while (!stop) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "stub_daemon: accept: %s\n", strerror(errno));
			break;
		}
		if (pthread_create(&t, NULL, serve, (void *)(long)fd) != 0) {
			close(fd);
			continue;
		}
		pthread_detach(t);
	}
	unlink(stub.socket_path);
	close(lfd);
	return 0;
}
