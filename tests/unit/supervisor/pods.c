/* Unit tests for supervisor/pods*.c (all of them, so that none is linked
 * from the library twice), without root and without touching any
 * network namespace: the operations whose netns is gone or never existed
 * (DEL and CHECK of unknown keys, GC and the reconciler on attachments whose
 * netns path does not exist, startup with half-made and stale records,
 * tombstones), per-key serialisation, and the reply shapes; the worker
 * bookkeeping that needs no process: uid slots, the worker's identity in the
 * record, roll-workers with nothing to roll, the worker state in STATUS. A
 * real libuv loop and threadpool and a real state directory under /tmp. */
#include "supervisor/pods.c"
#include "supervisor/pods_add.c"
#include "supervisor/pods_check.c"
#include "supervisor/pods_del.c"
#include "supervisor/pods_gc.c"
#include "supervisor/pods_netop.c"
#include "supervisor/pods_op.c"
#include "supervisor/pods_reconcile.c"
#include "supervisor/pods_roll.c"
#include "supervisor/pods_save.c"
#include "supervisor/pods_startup.c"
#include "supervisor/pods_worker.c"

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

struct fixture {
	char dir[64];
	struct supervisor sup;
	/* Replies received, in order. */
	unsigned int nreplies;
	Tscni__CniReply__BodyCase body[8];
	uint32_t code[8];
	bool existed[8];
	uint32_t released[8];
	size_t nfailed[8];
	uint32_t rolled[8];
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct state_origin origin = {.node_name = "unit-node"};

	strcpy(f->dir, "/tmp/tscni-pods-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(state_origin_detect(&origin), 0);
	assert_int_equal(state_open(f->dir, &origin, &f->sup.st), 0);
	assert_int_equal(uv_loop_init(&f->sup.loop), 0);
	f->sup.cfg.reconcile_interval_s = 1;
	assert_int_equal(pods_new(&f->sup, &f->sup.pods), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pods_stop(f->sup.pods);
	uv_run(&f->sup.loop, UV_RUN_DEFAULT);
	pods_free(f->sup.pods);
	assert_int_equal(uv_loop_close(&f->sup.loop), 0);
	state_close(f->sup.st);
	nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void on_reply(void *arg, const Tscni__CniReply *rep)
{
	struct fixture *f = arg;
	unsigned int i = f->nreplies++;

	assert_true(i < 8);
	assert_int_equal(rep->protocol_version, CNI_PROTOCOL_VERSION);
	f->body[i] = rep->body_case;
	if (rep->body_case == TSCNI__CNI_REPLY__BODY_ERROR)
		f->code[i] = rep->error->cni_code;
	if (rep->body_case == TSCNI__CNI_REPLY__BODY_DEL)
		f->existed[i] = rep->del->existed;
	if (rep->body_case == TSCNI__CNI_REPLY__BODY_GC) {
		f->released[i] = rep->gc->released;
		f->nfailed[i] = rep->gc->n_failed;
	}
	if (rep->body_case == TSCNI__CNI_REPLY__BODY_ROLL_WORKERS) {
		f->rolled[i] = rep->roll_workers->rolled;
		f->nfailed[i] = rep->roll_workers->n_failed;
	}
}

/* Puts an attachment both on disk and (when in_table) in the table. */
static struct attachment *add_attachment(struct fixture *f, const char *network, const char *cid,
					 const char *netns, uint64_t dev, uint64_t ino,
					 Tscni__AttachmentState st, bool in_table)
{
	struct attachment *a = xcalloc(1, sizeof(*a));

	a->tun_fd = -1;
	a->network = xstrdup(network);
	a->container_id = xstrdup(cid);
	strcpy(a->ifname, "eth0");
	record_key_filename(network, cid, "eth0", a->keyname, sizeof(a->keyname));
	a->pod_uid = xstrdup(cid);
	a->meta.namespace_ = xstrdup("default");
	a->meta.name = xstrdup("pod");
	a->meta.uid = xstrdup(cid);
	a->meta.infra_container_id = xstrdup("");
	a->netns_path = xstrdup(netns);
	a->netns_dev = dev;
	a->netns_ino = ino;
	strcpy(a->interface_name, "ts0");
	/* Only READY attachments have made a device. */
	a->ifindex = st == TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY ? 7 : 0;
	a->state = st;
	a->cni_version = xstrdup("1.1.0");
	pods__make_tag(a->tag, a->pod_uid, a->keyname);
	assert_int_equal(pods__attachment_save(f->sup.pods, a), 0);
	if (in_table) {
		pods__table_insert(f->sup.pods, a);
		return a;
	}
	pods__attachment_free(a);
	return NULL;
}

static bool record_exists(struct fixture *f, const char *cid, const char *network)
{
	char path[512];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/pods/%s/attachments/%s_%s_eth0.pb", f->dir, cid, network,
		 cid);
	return stat(path, &sb) == 0;
}

static void key_init(Tscni__AttachmentKey *k, const char *network, const char *cid)
{
	tscni__attachment_key__init(k);
	k->network = (char *)network;
	k->container_id = (char *)cid;
	k->ifname = "eth0";
}

static void submit_del_req(struct fixture *f, const char *network, const char *cid,
			   struct pods_request **r)
{
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__DelRequest del = TSCNI__DEL_REQUEST__INIT;
	Tscni__AttachmentKey k;

	key_init(&k, network, cid);
	del.key = &k;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_DEL;
	req.del = &del;
	assert_int_equal(pods_submit(f->sup.pods, &req, on_reply, f, r), 0);
}

static void test_del_unknown_twice(void **state)
{
	struct fixture *f = *state;
	struct pods_request *r1, *r2;

	submit_del_req(f, "net", "never-added", &r1);
	submit_del_req(f, "net", "never-added", &r2);
	assert_int_equal(f->nreplies, 0); /* never before the loop runs */
	uv_run(&f->sup.loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nreplies, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(f->body[i], TSCNI__CNI_REPLY__BODY_DEL);
		assert_false(f->existed[i]);
	}
}

static void test_del_known_gone_netns(void **state)
{
	struct fixture *f = *state;
	struct pods_request *r;

	add_attachment(f, "net", "c1", "/nonexistent/netns", 1, 2,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	assert_true(record_exists(f, "c1", "net"));
	submit_del_req(f, "net", "c1", &r);
	uv_run(&f->sup.loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nreplies, 1);
	assert_true(f->existed[0]);
	assert_false(record_exists(f, "c1", "net"));
	assert_int_equal(pods_count(f->sup.pods), 0);
	/* The identity directory is not touched by DEL. */
}

static void test_check_unknown(void **state)
{
	struct fixture *f = *state;
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__CheckRequest chk = TSCNI__CHECK_REQUEST__INIT;
	Tscni__AttachmentKey k;
	struct pods_request *r;

	key_init(&k, "net", "nope");
	chk.key = &k;
	chk.netns_path = "/nonexistent";
	chk.interface_name = "ts0";
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_CHECK;
	req.check = &chk;
	assert_int_equal(pods_submit(f->sup.pods, &req, on_reply, f, &r), 0);
	uv_run(&f->sup.loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nreplies, 1);
	assert_int_equal(f->body[0], TSCNI__CNI_REPLY__BODY_ERROR);
	assert_int_equal(f->code[0], 103);
}

static void test_gc_scoped_to_network(void **state)
{
	struct fixture *f = *state;
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__GcRequest gc = TSCNI__GC_REQUEST__INIT;
	Tscni__GcAttachment keep = TSCNI__GC_ATTACHMENT__INIT, *valid[1] = {&keep};
	struct pods_request *r;

	add_attachment(f, "n1", "keep", "/nonexistent/a", 1, 2,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	add_attachment(f, "n1", "drop", "/nonexistent/b", 1, 3,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	add_attachment(f, "n2", "other", "/nonexistent/c", 1, 4,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	keep.container_id = "keep";
	keep.ifname = "eth0";
	gc.network = "n1";
	gc.n_valid = 1;
	gc.valid = valid;
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_GC;
	req.gc = &gc;
	assert_int_equal(pods_submit(f->sup.pods, &req, on_reply, f, &r), 0);
	uv_run(&f->sup.loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nreplies, 1);
	assert_int_equal(f->body[0], TSCNI__CNI_REPLY__BODY_GC);
	assert_int_equal(f->released[0], 1);
	assert_int_equal(f->nfailed[0], 0);
	assert_true(record_exists(f, "keep", "n1"));
	assert_false(record_exists(f, "drop", "n1"));
	assert_true(record_exists(f, "other", "n2"));
	assert_int_equal(pods_count(f->sup.pods), 2);
}

static void test_gc_nothing_to_release(void **state)
{
	struct fixture *f = *state;
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__GcRequest gc = TSCNI__GC_REQUEST__INIT;
	struct pods_request *r = (struct pods_request *)1;

	add_attachment(f, "n2", "other", "/nonexistent/c", 1, 4,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	gc.network = "n1";
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_GC;
	req.gc = &gc;
	assert_int_equal(pods_submit(f->sup.pods, &req, on_reply, f, &r), 0);
	/* Replied during the call; the handle it set was then spent. */
	assert_int_equal(f->nreplies, 1);
	assert_int_equal(f->released[0], 0);
	assert_int_equal(pods_count(f->sup.pods), 1);
}

static void test_same_key_serialised(void **state)
{
	struct fixture *f = *state;
	struct pods_request *r1, *r2, *r3;
	struct op *o1, *o2, *o3;

	submit_del_req(f, "net", "k1", &r1);
	submit_del_req(f, "net", "k1", &r2);
	submit_del_req(f, "net", "k2", &r3);
	o1 = f->sup.pods->ops;
	o2 = o1->next;
	o3 = o2->next;
	assert_true(o1->running);
	assert_false(o2->running); /* waits behind k1's first op */
	assert_true(o3->running);  /* another key runs at once */
	uv_run(&f->sup.loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nreplies, 3);
	assert_null(f->sup.pods->ops);
}

static void test_detached_request_completes(void **state)
{
	struct fixture *f = *state;
	struct pods_request *r;

	add_attachment(f, "net", "c9", "/nonexistent/netns", 1, 2,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	submit_del_req(f, "net", "c9", &r);
	pods_request_detach(r);
	uv_run(&f->sup.loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nreplies, 0);
	assert_false(record_exists(f, "c9", "net")); /* the work still happened */
}

static void test_startup_reconcile_and_tombstones(void **state)
{
	struct fixture *f = *state;
	Tscni__Tombstone t = TSCNI__TOMBSTONE__INIT;
	Tscni__AttachmentKey k;
	struct stat sb;
	char tdir[128];
	int tfd;

	/* A live netns we may open without privileges: our own. */
	assert_int_equal(stat("/proc/self/ns/net", &sb), 0);
	add_attachment(f, "net", "live", "/proc/self/ns/net", sb.st_dev, sb.st_ino,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, false);
	add_attachment(f, "net", "half", "/proc/self/ns/net", sb.st_dev, sb.st_ino,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_INTENT, false);
	add_attachment(f, "net", "gone", "/nonexistent/netns", 1, 2,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, false);
	add_attachment(f, "net", "replaced", "/proc/self/ns/net", sb.st_dev, sb.st_ino + 1,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, false);
	add_attachment(f, "net", "tomb", "/nonexistent/t", 1, 5,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, false);
	key_init(&k, "net", "tomb");
	t.key = &k;
	snprintf(tdir, sizeof(tdir), "%s/tombstones", f->dir);
	tfd = open(tdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(tfd >= 0);
	assert_int_equal(record_write_tombstone(tfd, "net_tomb_eth0", &t), 0);

	assert_int_equal(pods_startup(f->sup.pods), 0);
	assert_int_equal(pods_count(f->sup.pods), 1);
	assert_non_null(pods__table_find(f->sup.pods, "net_live_eth0"));
	assert_true(record_exists(f, "live", "net"));
	assert_false(record_exists(f, "half", "net"));
	assert_false(record_exists(f, "gone", "net"));
	assert_false(record_exists(f, "replaced", "net"));
	assert_false(record_exists(f, "tomb", "net"));
	assert_int_equal(faccessat(tfd, "net_tomb_eth0", F_OK, 0), -1);
	close(tfd);
}

static void test_reconciler_releases_gone_netns(void **state)
{
	struct fixture *f = *state;

	add_attachment(f, "net", "r1", "/nonexistent/netns", 1, 2,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	assert_int_equal(pods_start(f->sup.pods), 0);
	/* One round (1 s), then stop so that uv_run returns. */
	while (pods_count(f->sup.pods) > 0)
		uv_run(&f->sup.loop, UV_RUN_ONCE);
	assert_false(record_exists(f, "r1", "net"));
}

static void test_status_fill(void **state)
{
	struct fixture *f = *state;
	Tscni__StatusReply rep = TSCNI__STATUS_REPLY__INIT;

	add_attachment(f, "n1", "s1", "/nonexistent/a", 1, 2,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	add_attachment(f, "n1", "s2", "/nonexistent/b", 1, 3,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_INTENT, true);
	pods_status_fill(f->sup.pods, &rep, false);
	assert_int_equal(rep.pods, 2);
	assert_int_equal(rep.n_pod, 0);
	pods_status_fill(f->sup.pods, &rep, true);
	assert_int_equal(rep.n_pod, 2);
	assert_string_equal(rep.pod[0]->key->container_id, "s2");
	assert_string_equal(rep.pod[0]->state, "intent");
	assert_string_equal(rep.pod[1]->state, "ready");
	assert_string_equal(rep.pod[1]->interface_name, "ts0");
	pods_status_clear(&rep);
	assert_null(rep.pod);
}

/* A worker whose last Stats had three peers (and left two off). */
static struct worker *worker_with_peers(void)
{
	struct worker *w = workers__test_new(WORKERS_TS_READY, false);
	Tscni__WorkerMsg m = TSCNI__WORKER_MSG__INIT;
	Tscni__Stats s = TSCNI__STATS__INIT;
	Tscni__PeerStatus a = TSCNI__PEER_STATUS__INIT, b = TSCNI__PEER_STATUS__INIT;
	Tscni__PeerStatus *v[3] = {&a, &b, &a};
	uint8_t ip4[4] = {100, 64, 0, 2}, ep[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 2}, buf[1024];
	const char *why = "";
	size_t len;

	a.node_key = "[IiIiI]";
	a.host_name = "web-1";
	a.tailnet_ipv4 = (ProtobufCBinaryData){4, ip4};
	a.path = TSCNI__PEER_PATH__PEER_PATH_DIRECT;
	a.direct_ip = (ProtobufCBinaryData){16, ep};
	a.direct_port = 41641;
	a.last_handshake_unix = 1700000000;
	a.rx_bytes = 7;
	a.tx_bytes = 9;
	b.node_key = "[MzMzM]";
	b.host_name = "";
	s.peer = v;
	s.n_peer = 3;
	s.peers_left_off = 2;
	m.body_case = TSCNI__WORKER_MSG__BODY_STATS;
	m.stats = &s;
	len = tscni__worker_msg__pack(&m, buf);
	if (workers__dispatch(w, buf, len, &why) < 0)
		fail_msg("dispatch: %s", why);
	return w;
}

/* PodStatus.peer carries the worker's last Stats.peer on, within the reply's
 * budget of peers: what the budget cuts is counted in peers_left_off with
 * what the worker left off; the result passes the status command's checks. */
static void test_status_peers(void **state)
{
	struct worker *w = worker_with_peers();
	Tscni__AttachmentKey key = {PROTOBUF_C_MESSAGE_INIT(&tscni__attachment_key__descriptor),
				    "n1", "c1", "eth0"};
	Tscni__CniReply r = TSCNI__CNI_REPLY__INIT;
	Tscni__StatusReply st = TSCNI__STATUS_REPLY__INIT;
	struct status_buf b = {0}, c = {0};
	Tscni__PodStatus *pods[2] = {&b.s, &c.s};
	const char *why = "";
	size_t budget = 2;

	(void)state;
	tscni__pod_status__init(&b.s);
	tscni__pod_status__init(&c.s);
	peers_fill(&b, w, &budget);
	assert_int_equal(budget, 0);
	assert_int_equal(b.s.n_peer, 2);
	assert_int_equal(b.s.peers_left_off, 3);
	assert_string_equal(b.s.peer[0]->node_key, "[IiIiI]");
	assert_string_equal(b.s.peer[0]->host_name, "web-1");
	assert_int_equal(b.s.peer[0]->tailnet_ipv4.len, 4);
	assert_int_equal(b.s.peer[0]->direct_ip.len, 16);
	assert_int_equal(b.s.peer[0]->direct_ip.data[15], 2);
	assert_int_equal(b.s.peer[0]->direct_port, 41641);
	assert_int_equal(b.s.peer[0]->last_handshake_unix, 1700000000);
	assert_int_equal(b.s.peer[0]->rx_bytes, 7);
	assert_int_equal(b.s.peer[0]->tx_bytes, 9);
	assert_int_equal(b.s.peer[1]->path, TSCNI__PEER_PATH__PEER_PATH_NONE);
	assert_int_equal(b.s.peer[1]->tailnet_ipv4.len, 0);
	/* The budget is spent: the next pod lists none. */
	peers_fill(&c, w, &budget);
	assert_int_equal(c.s.n_peer, 0);
	assert_null(c.peers);
	assert_int_equal(c.s.peers_left_off, 5);

	for (size_t i = 0; i < 2; i++) {
		pods[i]->key = &key;
		pods[i]->state = "ready";
	}
	st.health = TSCNI__HEALTH__HEALTH_READY;
	st.reason = "";
	st.pod = pods;
	st.n_pod = 2;
	r.protocol_version = 1;
	r.body_case = TSCNI__CNI_REPLY__BODY_STATUS;
	r.status = &st;
	if (validate_cni_reply(&r, &why) < 0)
		fail_msg("validate: %s", why);
	free(b.peers);
	free(b.peer_ptrs);
	workers__test_free(w);
}

/* The worker's identity goes into the record and comes back unchanged;
 * the record's boot id is this boot's. */
static void test_worker_record_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct worker_identity wi = {.pid = 4242, .start_time = 987654321, .version = 1};
	struct attachment *a, *b;
	Tscni__Attachment *m;
	char dir[512];
	const char *why = NULL;
	int dfd, err = 0;

	a = add_attachment(f, "n1", "w1", "/nonexistent/w", 1, 2,
			   TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	assert_int_equal(pods__attachment_save_worker(f->sup.pods, a, &wi, WORKERS_UID_BASE + 7),
			 0);
	snprintf(dir, sizeof(dir), "%s/pods/w1/attachments", f->dir);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	m = record_read_attachment(dfd, "n1_w1_eth0.pb", &err, &why);
	close(dfd);
	assert_non_null(m);
	assert_non_null(m->worker);
	assert_int_equal(m->worker->pid, 4242);
	assert_int_equal(m->worker->start_time, 987654321);
	assert_int_equal(m->worker->uid, WORKERS_UID_BASE + 7);
	assert_int_equal(m->worker->handshake_version, 1);
	assert_string_equal(m->boot_id, state_get_origin(f->sup.st)->boot_id);
	b = pods__attachment_from_pb(m);
	tscni__attachment__free_unpacked(m, NULL);
	assert_int_equal(b->wi.pid, 4242);
	assert_int_equal(b->wi.start_time, 987654321);
	assert_int_equal(b->wi.version, 1);
	assert_int_equal(b->worker_uid, WORKERS_UID_BASE + 7);
	assert_string_equal(b->wi.boot_id, state_get_origin(f->sup.st)->boot_id);
	pods__attachment_free(b);
}

/* uid slots: the recorded one is kept, a taken or out-of-range one is
 * replaced by the lowest free one. */
static void test_slot_allocation(void **state)
{
	struct fixture *f = *state;
	struct attachment *a, *b, *c, *d;
	uint32_t slot;

	a = add_attachment(f, "n1", "p1", "/nonexistent/1", 1, 2,
			   TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	b = add_attachment(f, "n1", "p2", "/nonexistent/2", 1, 3,
			   TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	c = add_attachment(f, "n1", "p3", "/nonexistent/3", 1, 4,
			   TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	d = add_attachment(f, "n1", "p4", "/nonexistent/4", 1, 5,
			   TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	a->worker_uid = WORKERS_UID_BASE + 5;
	assert_int_equal(pods__slot_get(f->sup.pods, a, &slot), 0);
	assert_int_equal(slot, 5);
	assert_int_equal(pods__slot_get(f->sup.pods, b, &slot), 0);
	assert_int_equal(slot, 0);
	assert_int_equal(b->worker_uid, WORKERS_UID_BASE);
	c->worker_uid = WORKERS_UID_BASE + 5; /* another pod's: taken */
	assert_int_equal(pods__slot_get(f->sup.pods, c, &slot), 0);
	assert_int_equal(slot, 1);
	d->worker_uid = 12; /* below the range */
	assert_int_equal(pods__slot_get(f->sup.pods, d, &slot), 0);
	assert_int_equal(slot, 2);
	/* Stable: asking again gives the same slot. */
	assert_int_equal(pods__slot_get(f->sup.pods, a, &slot), 0);
	assert_int_equal(slot, 5);
}

static void test_roll_nothing_to_roll(void **state)
{
	struct fixture *f = *state;
	Tscni__CniRequest req = TSCNI__CNI_REQUEST__INIT;
	Tscni__RollWorkersRequest rr = TSCNI__ROLL_WORKERS_REQUEST__INIT;
	struct pods_request *r;

	add_attachment(f, "n1", "r1", "/nonexistent/r", 1, 2,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	req.protocol_version = CNI_PROTOCOL_VERSION;
	req.body_case = TSCNI__CNI_REQUEST__BODY_ROLL_WORKERS;
	req.roll_workers = &rr;
	assert_int_equal(pods_submit(f->sup.pods, &req, on_reply, f, &r), 0);
	assert_int_equal(f->nreplies, 0); /* later, never inside pods_submit */
	/* A second roll while one runs is refused. */
	assert_int_equal(pods_submit(f->sup.pods, &req, on_reply, f, &r), 0);
	assert_int_equal(f->nreplies, 1);
	assert_int_equal(f->body[0], TSCNI__CNI_REPLY__BODY_ERROR);
	assert_int_equal(f->code[0], CNI_ERR_TRY_AGAIN);
	uv_run(&f->sup.loop, UV_RUN_DEFAULT);
	assert_int_equal(f->nreplies, 2);
	assert_int_equal(f->body[1], TSCNI__CNI_REPLY__BODY_ROLL_WORKERS);
	assert_int_equal(f->rolled[1], 0);
	assert_int_equal(f->nfailed[1], 0);
	assert_null(f->sup.pods->roll);
}

static void test_status_worker_state(void **state)
{
	struct fixture *f = *state;
	Tscni__StatusReply rep = TSCNI__STATUS_REPLY__INIT;

	add_attachment(f, "n1", "s1", "/nonexistent/a", 1, 2,
		       TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY, true);
	pods_status_fill(f->sup.pods, &rep, true);
	assert_int_equal(rep.n_pod, 1);
	assert_string_equal(rep.pod[0]->worker_state, "none");
	assert_int_equal(rep.pod[0]->worker_pid, 0);
	pods_status_clear(&rep);
}

/* The control plane's identity bookkeeping: a new identity is named
 * <cluster>-<namespace>-<pod>, unregistered; a Ready records the node's
 * addresses and stable id and marks it registered (the next ADD reads them
 * back and its worker gets no auth key); a logout marks it unregistered
 * again and keeps the addresses. */
static void test_identity_registration(void **state)
{
	struct fixture *f = *state;
	struct ip_prefix addrs[2];
	struct worker_spec spec;
	struct attachment a = {.pod_uid = (char *)"uid-1", .tun_fd = -1};
	Tscni__Identity *id;
	struct op_add *op;
	int err = 0;
	char key[] = "tskey-unit-not-a-real-key";
	uint8_t k[KEY_LEN] = {1};
	char hn[HOSTNAME_MAX + 1];

	f->sup.cfg.cluster_name = "Prod";
	f->sup.cfg.control_url = "https://control.example";
	f->sup.auth_key = key;
	assert_int_equal(ip_prefix_parse("100.64.0.7/32", false, &addrs[0]), 0);
	assert_int_equal(
		ip_prefix_parse("fd7a:115c:a1e0:ab12:4843:cd96:6440:7/128", false, &addrs[1]), 0);

	op = add_new(f->sup.pods, "n1", "c1", "eth0");
	free(op->meta.namespace_);
	free(op->meta.name);
	op->meta.namespace_ = xstrdup("kube-system");
	op->meta.name = xstrdup("Web_1");
	assert_int_equal(identity_ensure(op, "uid-1"), 0);
	assert_true(op->have_keys);
	assert_false(op->registered);
	/* "Web_1" lost its '_': hostname.h adds the 8-hex suffix. */
	assert_int_equal(strncmp(op->hostname, "prod-kube-system-web-1-", 23), 0);
	assert_int_equal(strlen(op->hostname), 23 + HOSTNAME_SUFFIX_HEX);
	strscpy(hn, op->hostname, sizeof(hn));
	pods__op_free(&op->op);

	/* Unregistered: the worker gets the control URL and the auth key. */
	pods__spec_fill(f->sup.pods, &a, &spec, 0, k, k, "h", NULL, false);
	assert_string_equal(spec.control_url, "https://control.example");
	assert_ptr_equal(spec.auth_key, key);

	/* Ready: registered, with the node's addresses and stable id. */
	assert_int_equal(pods__identity_record(f->sup.pods, "uid-1", true, addrs, 2, "nStable7"),
			 0);
	id = state_identity_get(f->sup.st, "uid-1", &err);
	assert_non_null(id);
	assert_true(id->registered);
	assert_int_equal(id->n_addresses, 2);
	assert_string_equal(id->stable_node_id, "nStable7");
	pods__identity_wipe_free(id);

	op = add_new(f->sup.pods, "n1", "c2", "eth0");
	assert_int_equal(identity_ensure(op, "uid-1"), 0);
	assert_true(op->registered);
	assert_int_equal(op->naddrs, 2);
	assert_true(prefixes_equal(op->addrs, op->naddrs, addrs, 2));
	assert_string_equal(op->hostname, hn);
	pods__op_free(&op->op);
	pods__spec_fill(f->sup.pods, &a, &spec, 0, k, k, "h", NULL, true);
	assert_null(spec.auth_key);

	/* Logout: unregistered, addresses kept (control gives them back). */
	assert_int_equal(pods__identity_record(f->sup.pods, "uid-1", false, NULL, 0, NULL), 0);
	id = state_identity_get(f->sup.st, "uid-1", &err);
	assert_non_null(id);
	assert_false(id->registered);
	assert_int_equal(id->n_addresses, 2);
	pods__identity_wipe_free(id);

	/* A key rotation (pods_reauth.c) under way: the identity holds the
	 * old public key; a respawn's spec carries it; the node's Ready with
	 * the new key clears it, even with the same addresses. */
	{
		uint8_t old_pub[KEY_LEN];

		memset(old_pub, 0x42, sizeof(old_pub));
		id = state_identity_get(f->sup.st, "uid-1", &err);
		assert_non_null(id);
		id->old_node_public.data = old_pub;
		id->old_node_public.len = KEY_LEN;
		id->registered = true; /* the record's early return must not apply */
		assert_int_equal(state_identity_put(f->sup.st, id), 0);
		id->old_node_public.data = NULL;
		id->old_node_public.len = 0;
		pods__identity_wipe_free(id);
		id = state_identity_get(f->sup.st, "uid-1", &err);
		assert_non_null(id);
		assert_int_equal(id->old_node_public.len, KEY_LEN);
		assert_memory_equal(id->old_node_public.data, old_pub, KEY_LEN);
		pods__identity_wipe_free(id);
		f->sup.pods->spawn_old = old_pub;
		pods__spec_fill(f->sup.pods, &a, &spec, 0, k, k, "h", NULL, false);
		assert_ptr_equal(spec.old_node_public, old_pub);
		f->sup.pods->spawn_old = NULL;
		assert_int_equal(pods__identity_record(f->sup.pods, "uid-1", true, NULL, 0, NULL),
				 0);
		id = state_identity_get(f->sup.st, "uid-1", &err);
		assert_non_null(id);
		assert_true(id->registered);
		assert_int_equal(id->old_node_public.len, 0);
		pods__identity_wipe_free(id);
	}

	/* A pod without an identity: -ENOENT, nothing created. */
	assert_int_equal(pods__identity_record(f->sup.pods, "uid-none", true, addrs, 2, ""),
			 -ENOENT);
	f->sup.auth_key = NULL;
}

/* Without a control plane nothing changes: no URL, no key in the spec, and
 * the hostname is the pod's name as before. */
static void test_identity_without_control(void **state)
{
	struct fixture *f = *state;
	struct attachment a = {.pod_uid = (char *)"uid-2", .tun_fd = -1};
	uint8_t k[KEY_LEN] = {0};
	struct worker_spec spec;
	struct op_add *op;

	op = add_new(f->sup.pods, "n1", "c3", "eth0");
	free(op->meta.namespace_);
	free(op->meta.name);
	op->meta.namespace_ = xstrdup("ns");
	op->meta.name = xstrdup("web");
	assert_int_equal(identity_ensure(op, "uid-2"), 0);
	assert_string_equal(op->hostname, "web");
	pods__op_free(&op->op);
	pods__spec_fill(f->sup.pods, &a, &spec, 0, k, k, "web", NULL, false);
	assert_null(spec.control_url);
	assert_null(spec.auth_key);
}

/* The pod's annotations choose a new identity's tags and hostname; the
 * record keeps them, later ADDs of the same pod UID get the recorded ones
 * whatever their annotations say, and the worker's spec carries them. */
static void test_identity_tags_hostname(void **state)
{
	struct fixture *f = *state;
	struct attachment a = {.pod_uid = (char *)"uid-t", .tun_fd = -1};
	uint8_t k[KEY_LEN] = {0};
	struct worker_spec spec;
	Tscni__Identity *id;
	struct op_add *op;
	int err = 0;

	op = add_new(f->sup.pods, "n1", "ct1", "eth0");
	free(op->meta.namespace_);
	free(op->meta.name);
	op->meta.namespace_ = xstrdup("ns");
	op->meta.name = xstrdup("web");
	op->choice.tags.n = 2;
	strscpy(op->choice.tags.v[0], "tag:web", sizeof(op->choice.tags.v[0]));
	strscpy(op->choice.tags.v[1], "tag:db", sizeof(op->choice.tags.v[1]));
	strscpy(op->choice.hostname, "web-1", sizeof(op->choice.hostname));
	assert_int_equal(identity_ensure(op, "uid-t"), 0);
	assert_string_equal(op->hostname, "web-1");
	assert_int_equal(op->tags.n, 2);
	pods__spec_fill(f->sup.pods, &a, &spec, 0, k, k, op->hostname, &op->tags, false);
	assert_string_equal(spec.hostname, "web-1");
	assert_non_null(spec.tags);
	assert_int_equal(spec.tags->n, 2);
	assert_string_equal(spec.tags->v[1], "tag:db");
	pods__op_free(&op->op);

	id = state_identity_get(f->sup.st, "uid-t", &err);
	assert_non_null(id);
	assert_string_equal(id->hostname, "web-1");
	assert_int_equal(id->n_tags, 2);
	assert_string_equal(id->tags[0], "tag:web");
	assert_string_equal(id->tags[1], "tag:db");
	pods__identity_wipe_free(id);

	/* Same pod UID, other annotations: the identity's own win. */
	op = add_new(f->sup.pods, "n1", "ct2", "eth0");
	op->choice.tags.n = 1;
	strscpy(op->choice.tags.v[0], "tag:other", sizeof(op->choice.tags.v[0]));
	strscpy(op->choice.hostname, "other", sizeof(op->choice.hostname));
	assert_int_equal(identity_ensure(op, "uid-t"), 0);
	assert_string_equal(op->hostname, "web-1");
	assert_int_equal(op->tags.n, 2);
	assert_string_equal(op->tags.v[0], "tag:web");
	pods__op_free(&op->op);

	/* No annotations: no tags, the generated hostname, none in the spec. */
	op = add_new(f->sup.pods, "n1", "ct3", "eth0");
	assert_int_equal(identity_ensure(op, "uid-t2"), 0);
	assert_int_equal(op->tags.n, 0);
	pods__spec_fill(f->sup.pods, &a, &spec, 0, k, k, op->hostname, &op->tags, false);
	assert_null(spec.tags);
	pods__op_free(&op->op);
}

static void test_errno_codes(void **state)
{
	static const struct {
		int err;
		uint32_t code;
	} v[] = {
		{-EAGAIN, 11}, {-ENOBUFS, 11}, {-ETIMEDOUT, 11}, {-ENOSPC, 11},
		{-EDQUOT, 11}, {-EPERM, 999},  {-EINVAL, 999},	 {-EIO, 999},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		assert_int_equal(pods__errno_cni_code(v[i].err), v[i].code);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_del_unknown_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_known_gone_netns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc_scoped_to_network, setup, teardown),
		cmocka_unit_test_setup_teardown(test_gc_nothing_to_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_key_serialised, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detached_request_completes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_startup_reconcile_and_tombstones, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reconciler_releases_gone_netns, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_status_fill, setup, teardown),
		cmocka_unit_test(test_status_peers),
		cmocka_unit_test_setup_teardown(test_worker_record_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_allocation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roll_nothing_to_roll, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_worker_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_registration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_tags_hostname, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_without_control, setup, teardown),
		cmocka_unit_test(test_errno_codes),
	};

	log_init("unit_supervisor_pods", LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
