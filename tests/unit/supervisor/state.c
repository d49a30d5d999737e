/* Unit tests for supervisor/state.c, state_identity.c and state_attachment.c,
 * in a mkdtemp() directory under /tmp (no root): the flock, modes, put/load
 * round trips, damaged records moved to damaged/ with a log line, foreign
 * records to quarantine/, leftover temp files, and the remove functions. */
#include "supervisor/state.c"
#include "supervisor/state_identity.c"
#include "supervisor/state_attachment.c"

#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <cmocka.h>

static const char pod_a[] = "3f2a0c5e-1111-2222-3333-444455556666";
static const char pod_b[] = "7b7b0000-aaaa-bbbb-cccc-ddddeeeeffff";

struct fixture {
	char dir[64];
	char root[80]; /* dir + "/state": state_open creates it */
	struct state_origin origin;
	struct state *st;
	char log[16384];
	size_t log_len;
};

static void capture(void *arg, enum log_level level, const char *line)
{
	struct fixture *f = arg;
	int n = snprintf(f->log + f->log_len, sizeof(f->log) - f->log_len, "%s\n", line);

	if (n > 0 && f->log_len + (size_t)n < sizeof(f->log))
		f->log_len += (size_t)n;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void origin_set(struct state_origin *o, const char *machine, const char *node)
{
	memset(o, 0, sizeof(*o));
	strcpy(o->machine_id, machine);
	strcpy(o->node_name, node);
	strcpy(o->boot_id, "003f0e07-03b8-46cb-8609-2fa848e269a8");
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/tscni-state-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->root, sizeof(f->root), "%s/state", f->dir);
	origin_set(&f->origin, "0123456789abcdef0123456789abcdef", "node-1");
	log_set_sink(capture, f);
	assert_int_equal(state_open(f->root, &f->origin, &f->st), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	state_close(f->st);
	log_set_sink(NULL, NULL);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Reopens the state directory as another supervisor would after a restart. */
static void reopen(struct fixture *f, const struct state_origin *o)
{
	state_close(f->st);
	f->st = NULL;
	assert_int_equal(state_open(f->root, o, &f->st), 0);
}

static uint8_t key_a[32] = {1, 2, 3};
static uint8_t key_b[32] = {4, 5, 6};
static uint8_t v4[4] = {100, 64, 0, 9};

struct sample {
	Tscni__AttachmentKey key;
	Tscni__IpPrefix pfx;
	Tscni__IpPrefix *pfxs[1];
	Tscni__Identity id;
	Tscni__Attachment att;
	Tscni__Tombstone tomb;
	Tscni__Job job;
	uint8_t node_public[32];
};

static void sample_init(struct sample *s, const struct state_origin *o, const char *uid,
			const char *cid)
{
	tscni__attachment_key__init(&s->key);
	s->key.network = "tsnet";
	s->key.container_id = (char *)cid;
	s->key.ifname = "eth0";
	tscni__ip_prefix__init(&s->pfx);
	s->pfx.addr.data = v4;
	s->pfx.addr.len = 4;
	s->pfx.prefix_len = 32;
	s->pfxs[0] = &s->pfx;

	tscni__identity__init(&s->id);
	s->id.pod_uid = (char *)uid;
	s->id.machine_private.data = key_a;
	s->id.machine_private.len = 32;
	s->id.node_private.data = key_b;
	s->id.node_private.len = 32;
	s->id.hostname = "web-0";
	s->id.n_addresses = 1;
	s->id.addresses = s->pfxs;
	s->id.machine_id = (char *)o->machine_id;
	s->id.node_name = (char *)o->node_name;

	tscni__attachment__init(&s->att);
	s->att.key = &s->key;
	s->att.pod_uid = (char *)uid;
	s->att.netns_path = "/var/run/netns/cni-1";
	s->att.interface_name = "ts0";
	s->att.state = TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY;
	s->att.boot_id = (char *)o->boot_id;
	s->att.machine_id = (char *)o->machine_id;
	s->att.node_name = (char *)o->node_name;

	tscni__tombstone__init(&s->tomb);
	s->tomb.key = &s->key;

	tscni__job__init(&s->job);
	s->job.id = "job-1";
	s->job.kind = TSCNI__JOB_KIND__JOB_DELETE_DEVICE;
	s->job.pod_uid = (char *)uid;
	s->job.stable_node_id = "nSTABLE1";
	s->job.node_public.data = s->node_public;
	s->job.node_public.len = sizeof(s->node_public);
}

/* What state_load handed to the callbacks. */
struct seen {
	unsigned int identities, attachments, tombstones, jobs;
	char last_uid[256];
	char last_cid[256];
	char tomb_file[256];
	bool key_ok;
};

static void seen_identity(void *arg, const Tscni__Identity *id)
{
	struct seen *s = arg;

	s->identities++;
	strscpy(s->last_uid, id->pod_uid, sizeof(s->last_uid));
	s->key_ok = id->machine_private.len == 32 && !memcmp(id->machine_private.data, key_a, 32);
}

static void seen_attachment(void *arg, const Tscni__Attachment *att)
{
	struct seen *s = arg;

	s->attachments++;
	strscpy(s->last_cid, att->key->container_id, sizeof(s->last_cid));
}

static void seen_tombstone(void *arg, const Tscni__Tombstone *t, const char *filename)
{
	struct seen *s = arg;

	s->tombstones++;
	strscpy(s->tomb_file, filename, sizeof(s->tomb_file));
}

static void seen_job(void *arg, const Tscni__Job *job)
{
	struct seen *s = arg;

	s->jobs++;
}

static void load(struct fixture *f, struct seen *seen, unsigned int *dmg, unsigned int *quar)
{
	struct state_load_cb cb = {seen_identity, seen_attachment, seen_tombstone, seen_job, seen};

	memset(seen, 0, sizeof(*seen));
	assert_int_equal(state_load(f->st, &cb, dmg, quar), 0);
}

static char *path(struct fixture *f, const char *rel)
{
	return xasprintf("%s/%s", f->root, rel);
}

static mode_t mode_of(struct fixture *f, const char *rel)
{
	struct stat sb;
	char *p = path(f, rel);

	if (lstat(p, &sb) < 0)
		fail_msg("%s: %s", p, strerror(errno));
	free(p);
	return sb.st_mode & 07777;
}

static bool exists(struct fixture *f, const char *rel)
{
	struct stat sb;
	char *p = path(f, rel);
	bool ret = lstat(p, &sb) == 0;

	free(p);
	return ret;
}

/* Writes raw bytes to a file of the state directory, as damage would. */
static void write_raw(struct fixture *f, const char *rel, const void *buf, size_t len)
{
	char *p = path(f, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(p);
}

/* Counts the entries of a subdirectory whose name starts with prefix. */
static int count_prefixed(struct fixture *f, const char *sub, const char *prefix)
{
	char *p = path(f, sub);
	DIR *d = opendir(p);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	closedir(d);
	free(p);
	return n;
}

static void test_lock(void **state)
{
	struct fixture *f = *state;
	struct state *second = (struct state *)1;

	assert_int_equal(state_open(f->root, &f->origin, &second), -EWOULDBLOCK);
	assert_null(second);
	assert_non_null(strstr(f->log, "another supervisor runs"));
	/* Released on close. */
	state_close(f->st);
	f->st = NULL;
	assert_int_equal(state_open(f->root, &f->origin, &f->st), 0);
	assert_string_equal(state_dir(f->st), f->root);
	assert_string_equal(state_get_origin(f->st)->node_name, "node-1");
	assert_int_equal(state_open("relative", &f->origin, &second), -EINVAL);
}

static void test_modes(void **state)
{
	struct fixture *f = *state;
	struct sample s;
	mode_t old;

	/* A directory that exists with a loose mode is tightened. */
	state_close(f->st);
	f->st = NULL;
	assert_int_equal(chmod(f->root, 0755), 0);
	char *jobs = path(f, "jobs");
	assert_int_equal(chmod(jobs, 0777), 0);
	free(jobs);
	old = umask(0);
	assert_int_equal(state_open(f->root, &f->origin, &f->st), 0);

	sample_init(&s, &f->origin, pod_a, "c0ffee");
	assert_int_equal(state_identity_put(f->st, &s.id), 0);
	assert_int_equal(state_attachment_put(f->st, &s.att), 0);
	assert_int_equal(state_job_put(f->st, &s.job), 0);
	umask(old);

	assert_int_equal(mode_of(f, "."), 0700);
	assert_int_equal(mode_of(f, "supervisor.lock"), 0600);
	const char *dirs[] = {"pods",
			      "tombstones",
			      "jobs",
			      "damaged",
			      "quarantine",
			      "pods/3f2a0c5e-1111-2222-3333-444455556666",
			      "pods/3f2a0c5e-1111-2222-3333-444455556666/attachments"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (mode_of(f, dirs[i]) != 0700)
			fail_msg("%s: mode %o", dirs[i], mode_of(f, dirs[i]));
	assert_int_equal(mode_of(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/identity.pb"), 0600);
	assert_int_equal(mode_of(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/attachments/"
				    "tsnet_c0ffee_eth0.pb"),
			 0600);
	assert_int_equal(mode_of(f, "jobs/job-1.pb"), 0600);
}

static void test_put_load_roundtrip(void **state)
{
	struct fixture *f = *state;
	struct sample a, b, b2;
	struct seen seen;
	unsigned int dmg = 99, quar = 99;
	int err = 1, tfd;
	Tscni__Identity *id;

	sample_init(&a, &f->origin, pod_a, "c0ffee");
	sample_init(&b, &f->origin, pod_b, "beef01");
	sample_init(&b2, &f->origin, pod_b, "beef02");
	assert_int_equal(state_identity_put(f->st, &a.id), 0);
	assert_int_equal(state_attachment_put(f->st, &a.att), 0);
	/* Pod b: attachments but no identity; still passed on. */
	assert_int_equal(state_attachment_put(f->st, &b.att), 0);
	assert_int_equal(state_attachment_put(f->st, &b2.att), 0);
	assert_int_equal(state_attachment_count(f->st, pod_b), 2);
	assert_int_equal(state_attachment_count(f->st, pod_a), 1);
	assert_int_equal(state_job_put(f->st, &a.job), 0);
	/* The plugin writes tombstones itself. */
	tfd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int tdir = openat(tfd, "tombstones", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(record_write_tombstone(tdir, "tsnet_dead01_eth0", &a.tomb), 0);
	close(tdir);
	close(tfd);

	reopen(f, &f->origin);
	load(f, &seen, &dmg, &quar);
	assert_int_equal(dmg, 0);
	assert_int_equal(quar, 0);
	assert_int_equal(seen.identities, 1);
	assert_string_equal(seen.last_uid, pod_a);
	assert_true(seen.key_ok);
	assert_int_equal(seen.attachments, 3);
	assert_int_equal(seen.tombstones, 1);
	assert_string_equal(seen.tomb_file, "tsnet_dead01_eth0");
	assert_int_equal(seen.jobs, 1);

	id = state_identity_get(f->st, pod_a, &err);
	assert_non_null(id);
	assert_int_equal(err, 0);
	assert_memory_equal(id->node_private.data, key_b, 32);
	tscni__identity__free_unpacked(id, NULL);
	assert_null(state_identity_get(f->st, pod_b, &err));
	assert_int_equal(err, -ENOENT);
	assert_null(state_identity_get(f->st, "nobody", &err));
	assert_int_equal(err, -ENOENT);
	assert_null(state_identity_get(f->st, "../pods", &err));
	assert_int_equal(err, -EINVAL);

	/* Removal. */
	assert_int_equal(state_pod_remove(f->st, pod_b), -ENOTEMPTY);
	assert_int_equal(state_attachment_remove(f->st, pod_b, &b.key), 0);
	assert_int_equal(state_attachment_remove(f->st, pod_b, &b.key), 0);
	assert_int_equal(state_attachment_count(f->st, pod_b), 1);
	assert_int_equal(state_attachment_remove(f->st, pod_b, &b2.key), 0);
	assert_int_equal(state_attachment_count(f->st, pod_b), 0);
	assert_int_equal(state_pod_remove(f->st, pod_b), 0);
	assert_false(exists(f, "pods/7b7b0000-aaaa-bbbb-cccc-ddddeeeeffff"));
	assert_int_equal(state_pod_remove(f->st, pod_b), 0);
	assert_int_equal(state_attachment_remove(f->st, pod_a, &a.key), 0);
	assert_int_equal(state_pod_remove(f->st, pod_a), 0);
	assert_false(exists(f, "pods/3f2a0c5e-1111-2222-3333-444455556666"));
	assert_int_equal(state_tombstone_remove(f->st, "tsnet_dead01_eth0"), 0);
	assert_int_equal(state_tombstone_remove(f->st, "tsnet_dead01_eth0"), 0);
	assert_int_equal(state_tombstone_remove(f->st, "../supervisor.lock"), -EINVAL);
	assert_int_equal(state_tombstone_remove(f->st, ".x"), -EINVAL);
	assert_int_equal(state_job_remove(f->st, "job-1"), 0);
	assert_false(exists(f, "jobs/job-1.pb"));
	assert_int_equal(state_job_remove(f->st, "../x"), -EINVAL);

	load(f, &seen, &dmg, &quar);
	assert_int_equal(seen.identities + seen.attachments + seen.tombstones + seen.jobs, 0);
	assert_true(exists(f, "supervisor.lock"));
}

static void test_pod_remove_keeps_foreign_files(void **state)
{
	struct fixture *f = *state;
	struct sample a;

	sample_init(&a, &f->origin, pod_a, "c0ffee");
	assert_int_equal(state_identity_put(f->st, &a.id), 0);
	write_raw(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/notes.txt", "x", 1);
	assert_int_equal(state_pod_remove(f->st, pod_a), -ENOTEMPTY);
	assert_true(exists(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/notes.txt"));
}

static void test_damaged(void **state)
{
	struct fixture *f = *state;
	struct sample a, b;
	struct seen seen;
	unsigned int dmg, quar;
	char *p;
	struct stat sb;

	sample_init(&a, &f->origin, pod_a, "c0ffee");
	sample_init(&b, &f->origin, pod_b, "beef01");
	assert_int_equal(state_identity_put(f->st, &a.id), 0);
	assert_int_equal(state_attachment_put(f->st, &a.att), 0);
	assert_int_equal(state_identity_put(f->st, &b.id), 0);
	assert_int_equal(state_attachment_put(f->st, &b.att), 0);
	assert_int_equal(state_job_put(f->st, &a.job), 0);

	/* Truncate pod a's identity by 5 bytes. */
	p = path(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/identity.pb");
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(truncate(p, sb.st_size - 5), 0);
	free(p);
	/* Garbage for pod b's attachment, a tombstone and a job. */
	write_raw(f, "pods/7b7b0000-aaaa-bbbb-cccc-ddddeeeeffff/attachments/tsnet_beef01_eth0.pb",
		  "garbage garbage garbage garbage", 31);
	write_raw(f, "tombstones/tsnet_x_eth0", "", 0);
	/* A whole header and sum, but a length field out of range. */
	uint8_t job2[RECORD_HDR_LEN + RECORD_SUM_LEN] = {'T', 'S', 'C',	 'R',  4,    1,
							 0,   0,   0xff, 0xff, 0xff, 0xff};
	write_raw(f, "jobs/job-2.pb", job2, sizeof(job2));

	reopen(f, &f->origin);
	load(f, &seen, &dmg, &quar);
	assert_int_equal(dmg, 4);
	assert_int_equal(quar, 0);
	/* The rest is still served. */
	assert_int_equal(seen.identities, 1);
	assert_string_equal(seen.last_uid, pod_b);
	assert_int_equal(seen.attachments, 1);
	assert_string_equal(seen.last_cid, "c0ffee");
	assert_int_equal(seen.tombstones, 0);
	assert_int_equal(seen.jobs, 1);

	assert_false(exists(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/identity.pb"));
	assert_int_equal(count_prefixed(f, "damaged",
					"pods%3f2a0c5e-1111-2222-3333-444455556666%identity.pb."),
			 1);
	assert_int_equal(count_prefixed(f, "damaged",
					"pods%7b7b0000-aaaa-bbbb-cccc-ddddeeeeffff%attachments%"
					"tsnet_beef01_eth0.pb."),
			 1);
	assert_int_equal(count_prefixed(f, "damaged", "tombstones%tsnet_x_eth0."), 1);
	assert_int_equal(count_prefixed(f, "damaged", "jobs%job-2.pb."), 1);
	/* Each logged with its name and the reason. */
	assert_non_null(strstr(f->log, "pods/3f2a0c5e-1111-2222-3333-444455556666/identity.pb: "
				       "truncated; moved to damaged/"));
	assert_non_null(strstr(f->log, "tsnet_beef01_eth0.pb: bad magic"));
	assert_non_null(strstr(f->log, "tombstones/tsnet_x_eth0: truncated"));
	assert_non_null(strstr(f->log, "jobs/job-2.pb: body length out of range"));

	/* Nothing left to move on the next start. */
	load(f, &seen, &dmg, &quar);
	assert_int_equal(dmg, 0);
	assert_int_equal(mode_of(f, "damaged"), 0700);
}

static void test_damaged_names(void **state)
{
	struct fixture *f = *state;
	struct sample a;
	struct seen seen;
	unsigned int dmg, quar;
	char *p;

	/* A record under a name that does not match its content. */
	sample_init(&a, &f->origin, pod_a, "c0ffee");
	assert_int_equal(state_attachment_put(f->st, &a.att), 0);
	p = path(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/attachments/tsnet_c0ffee_eth0.pb");
	char *q = path(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/attachments/other.pb");
	assert_int_equal(rename(p, q), 0);
	free(p);
	free(q);
	/* A pod directory whose identity names another pod. */
	assert_int_equal(state_identity_put(f->st, &a.id), 0);
	p = path(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/identity.pb");
	q = path(f, "pods/other-pod");
	assert_int_equal(mkdir(q, 0700), 0);
	free(q);
	q = path(f, "pods/other-pod/identity.pb");
	assert_int_equal(rename(p, q), 0);
	free(p);
	free(q);
	/* A symlink where a record should be, and a bad pod directory name. */
	p = path(f, "jobs/link.pb");
	assert_int_equal(symlink("/etc/passwd", p), 0);
	free(p);
	p = path(f, "pods/bad name");
	assert_int_equal(mkdir(p, 0700), 0);
	free(p);

	load(f, &seen, &dmg, &quar);
	assert_int_equal(seen.attachments + seen.identities + seen.jobs, 0);
	assert_int_equal(dmg, 4);
	assert_non_null(strstr(f->log, "file name does not match its key"));
	assert_non_null(strstr(f->log, "pod_uid differs from its directory"));
	assert_non_null(strstr(f->log, "jobs/link.pb: a symbolic link"));
	assert_non_null(strstr(f->log, "pods/bad name: not a pod UID"));
	assert_int_equal(count_prefixed(f, "damaged", "jobs%link.pb."), 1);
}

static void test_quarantine(void **state)
{
	struct fixture *f = *state;
	struct state_origin other_machine, other_node;
	struct sample a, b, c;
	struct seen seen;
	unsigned int dmg, quar;
	int err;

	origin_set(&other_machine, "ffffffffffffffffffffffffffffffff", "node-1");
	origin_set(&other_node, "0123456789abcdef0123456789abcdef", "node-2");

	/* Written by a supervisor on another machine / another node name. */
	reopen(f, &other_machine);
	sample_init(&a, &other_machine, pod_a, "c0ffee");
	assert_int_equal(state_identity_put(f->st, &a.id), 0);
	assert_int_equal(state_attachment_put(f->st, &a.att), 0);
	reopen(f, &other_node);
	sample_init(&b, &other_node, pod_b, "beef01");
	assert_int_equal(state_attachment_put(f->st, &b.att), 0);
	reopen(f, &f->origin);
	sample_init(&c, &f->origin, pod_b, "beef02");
	assert_int_equal(state_attachment_put(f->st, &c.att), 0);
	/* Our own supervisor refuses to write a foreign record. */
	assert_int_equal(state_attachment_put(f->st, &b.att), -EINVAL);
	assert_int_equal(state_identity_put(f->st, &a.id), -EINVAL);

	load(f, &seen, &dmg, &quar);
	assert_int_equal(quar, 3);
	assert_int_equal(dmg, 0);
	assert_int_equal(seen.identities, 0);
	assert_int_equal(seen.attachments, 1);
	assert_string_equal(seen.last_cid, "beef02");
	assert_int_equal(count_prefixed(f, "quarantine", "pods%"), 3);
	assert_non_null(strstr(f->log, "written on another machine or node name; moved to "
				       "quarantine/pods%3f2a0c5e"));

	/* state_identity_get never returns a foreign identity either. */
	reopen(f, &other_machine);
	assert_int_equal(state_identity_put(f->st, &a.id), 0);
	reopen(f, &f->origin);
	assert_null(state_identity_get(f->st, pod_a, &err));
	assert_int_equal(err, -ENOENT);
	assert_int_equal(count_prefixed(f, "quarantine", "pods%3f2a0c5e"), 3);
}

static void test_temp_leftovers(void **state)
{
	struct fixture *f = *state;
	struct sample a;
	struct seen seen;
	unsigned int dmg, quar;
	struct timeval old[2] = {{1000, 0}, {1000, 0}};
	char *p;

	sample_init(&a, &f->origin, pod_a, "c0ffee");
	assert_int_equal(state_identity_put(f->st, &a.id), 0);
	assert_int_equal(state_attachment_put(f->st, &a.att), 0);
	/* A crash after the temp write, before the rename: half a new record. */
	write_raw(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/.identity.pb.tmp.4242", "TSC", 3);
	write_raw(f,
		  "pods/3f2a0c5e-1111-2222-3333-444455556666/attachments/"
		  ".tsnet_c0ffee_eth0.pb.tmp.77",
		  "", 0);
	write_raw(f, "jobs/.job-1.pb.tmp.5", "x", 1);
	/* A plugin's temp file: fresh ones may still be renamed, old ones go. */
	write_raw(f, "tombstones/.tsnet_a_eth0.tmp.9", "x", 1);
	write_raw(f, "tombstones/.tsnet_b_eth0.tmp.9", "x", 1);
	p = path(f, "tombstones/.tsnet_b_eth0.tmp.9");
	assert_int_equal(utimes(p, old), 0);
	free(p);

	reopen(f, &f->origin);
	load(f, &seen, &dmg, &quar);
	assert_int_equal(dmg, 0);
	assert_int_equal(seen.identities, 1);
	assert_true(seen.key_ok);
	assert_int_equal(seen.attachments, 1);
	assert_false(exists(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/.identity.pb.tmp.4242"));
	assert_false(exists(f, "pods/3f2a0c5e-1111-2222-3333-444455556666/attachments/"
			       ".tsnet_c0ffee_eth0.pb.tmp.77"));
	assert_false(exists(f, "jobs/.job-1.pb.tmp.5"));
	assert_true(exists(f, "tombstones/.tsnet_a_eth0.tmp.9"));
	assert_false(exists(f, "tombstones/.tsnet_b_eth0.tmp.9"));
	assert_int_equal(state_attachment_count(f->st, pod_a), 1);
}

static void test_invalid_names(void **state)
{
	struct fixture *f = *state;
	struct sample a;
	int err;

	sample_init(&a, &f->origin, "../escape", "c0ffee");
	assert_int_equal(state_identity_put(f->st, &a.id), -EINVAL);
	assert_int_equal(state_attachment_put(f->st, &a.att), -EINVAL);
	assert_int_equal(state_pod_remove(f->st, ".."), -EINVAL);
	assert_int_equal(state_pod_remove(f->st, ".hidden"), -EINVAL);
	assert_int_equal(state_attachment_count(f->st, "a/b"), -EINVAL);
	assert_null(state_identity_get(f->st, "", &err));
	assert_int_equal(err, -EINVAL);
	sample_init(&a, &f->origin, pod_a, "c0ffee");
	a.key.ifname = "../x";
	assert_int_equal(state_attachment_remove(f->st, pod_a, &a.key), -EINVAL);
	a.job.id = "../../etc/x";
	assert_int_equal(state_job_put(f->st, &a.job), -EINVAL);
	assert_false(exists(f, "../escape"));
}

static void test_origin(void **state)
{
	struct fixture *f = *state;
	struct state_origin o;
	char *p = xasprintf("%s/id", f->dir);
	char buf[64];
	int fd;

	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_int_equal(write(fd, "0123abcd\n", 9), 9);
	close(fd);
	assert_int_equal(read_id_file(p, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0123abcd");
	assert_int_equal(read_id_file(p, buf, 8), -EINVAL);
	fd = open(p, O_WRONLY | O_TRUNC | O_CLOEXEC);
	close(fd);
	assert_int_equal(read_id_file(p, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(read_id_file("/nonexistent/id", buf, sizeof(buf)), -ENOENT);
	free(p);

	if (access("/etc/machine-id", R_OK) && access("/var/lib/dbus/machine-id", R_OK))
		skip();
	memset(&o, 0, sizeof(o));
	strcpy(o.node_name, "preset-node");
	assert_int_equal(state_origin_detect(&o), 0);
	assert_string_equal(o.node_name, "preset-node");
	assert_true(valid_name(o.machine_id, 63));
	assert_true(valid_name(o.boot_id, 63));
	memset(&o, 0, sizeof(o));
	setenv("NODE_NAME", "env-node", 1);
	assert_int_equal(state_origin_detect(&o), 0);
	assert_string_equal(o.node_name, "env-node");
	setenv("NODE_NAME", "bad node", 1);
	memset(&o, 0, sizeof(o));
	assert_int_equal(state_origin_detect(&o), -EINVAL);
	unsetenv("NODE_NAME");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_load_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pod_remove_keeps_foreign_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quarantine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_temp_leftovers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_origin, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
