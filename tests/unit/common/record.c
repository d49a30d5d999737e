/* Unit tests for common/record.c: the envelope (every truncation, every bit
 * flip, wrong type, trailing bytes, length fields out of range), atomic
 * writes (modes, replacement, no temp file left on failure) and the typed
 * round trips. Works in a mkdtemp() directory under /tmp. */
#include "common/record.c"

#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

struct fixture {
	char dir[64];
	int dirfd;
};

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/tscni-record-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->dirfd >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->dirfd);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static uint8_t key_a[32] = {1,	2,  3,	4,  5,	6,  7,	8,  9,	10, 11, 12, 13, 14, 15, 16,
			    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static uint8_t key_b[32] = {0xff, 0xfe, 0xfd};
static uint8_t v4[4] = {100, 64, 0, 7};

/* Each sample* fills caller-provided storage with a valid message. */
struct sample {
	Tscni__AttachmentKey key;
	Tscni__IpPrefix pfx;
	Tscni__IpPrefix *pfxs[1];
	Tscni__PodMeta pod;
	Tscni__WorkerInfo worker;
	Tscni__Identity id;
	Tscni__Attachment att;
	Tscni__Tombstone tomb;
	Tscni__Job job;
	uint8_t node_public[32];
};

static void sample_init(struct sample *s)
{
	tscni__attachment_key__init(&s->key);
	s->key.network = "tsnet";
	s->key.container_id = "0123456789abcdef";
	s->key.ifname = "eth0";
	tscni__ip_prefix__init(&s->pfx);
	s->pfx.addr.data = v4;
	s->pfx.addr.len = sizeof(v4);
	s->pfx.prefix_len = 32;
	s->pfxs[0] = &s->pfx;
	tscni__pod_meta__init(&s->pod);
	s->pod.namespace_ = "default";
	s->pod.name = "web-0";
	s->pod.uid = "3f2a0c5e-1111-2222-3333-444455556666";

	tscni__identity__init(&s->id);
	s->id.pod_uid = s->pod.uid;
	s->id.machine_private.data = key_a;
	s->id.machine_private.len = 32;
	s->id.node_private.data = key_b;
	s->id.node_private.len = 32;
	s->id.hostname = "web-0";
	s->id.n_addresses = 1;
	s->id.addresses = s->pfxs;
	s->id.machine_id = "0123456789abcdef0123456789abcdef";
	s->id.node_name = "node-1";
	s->id.created_unix = 1764170000;
	s->id.pod = &s->pod;

	tscni__worker_info__init(&s->worker);
	s->worker.pid = 4242;
	s->worker.start_time = 99;
	tscni__attachment__init(&s->att);
	s->att.key = &s->key;
	s->att.pod_uid = s->pod.uid;
	s->att.pod = &s->pod;
	s->att.netns_path = "/var/run/netns/cni-1234";
	s->att.netns_dev = 4;
	s->att.netns_ino = 4026532000;
	s->att.interface_name = "ts0";
	s->att.ifindex = 7;
	s->att.state = TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY;
	s->att.boot_id = "003f0e07-03b8-46cb-8609-2fa848e269a8";
	s->att.machine_id = s->id.machine_id;
	s->att.node_name = s->id.node_name;
	s->att.cni_version = "1.0.0";
	s->att.n_addresses = 1;
	s->att.addresses = s->pfxs;
	s->att.worker = &s->worker;

	tscni__tombstone__init(&s->tomb);
	s->tomb.key = &s->key;
	s->tomb.netns_path = "";
	s->tomb.interface_name = "ts0";
	s->tomb.created_unix = 5;

	tscni__job__init(&s->job);
	s->job.id = "del-3f2a";
	s->job.kind = TSCNI__JOB_KIND__JOB_DELETE_DEVICE;
	s->job.pod_uid = s->pod.uid;
	s->job.stable_node_id = "nABCDEF1CNTRL";
	s->job.attempts = 3;
	s->job.node_public.data = s->node_public;
	s->job.node_public.len = sizeof(s->node_public);
}

/* A sealed attachment record, for the envelope tests. */
static uint8_t *sealed_attachment(size_t *len)
{
	struct sample s;
	size_t plen;
	uint8_t *packed, *out;

	sample_init(&s);
	plen = tscni__attachment__get_packed_size(&s.att);
	packed = xmalloc(plen);
	tscni__attachment__pack(&s.att, packed);
	record_seal(RECORD_ATTACHMENT, packed, plen, &out, len);
	free(packed);
	return out;
}

static void test_seal_open(void **state)
{
	size_t len, blen;
	uint8_t *buf = sealed_attachment(&len);
	const uint8_t *body;
	const char *why = NULL;

	assert_memory_equal(buf, "TSCR", 4);
	assert_int_equal(buf[4], RECORD_ATTACHMENT);
	assert_int_equal(buf[5], 1);
	assert_int_equal(get_be32(buf + 8), len - RECORD_HDR_LEN - RECORD_SUM_LEN);
	assert_int_equal(record_open(buf, len, RECORD_ATTACHMENT, &body, &blen, &why), 0);
	assert_ptr_equal(body, buf + RECORD_HDR_LEN);
	assert_int_equal(blen, len - RECORD_HDR_LEN - RECORD_SUM_LEN);
	free(buf);
}

static void test_open_truncated(void **state)
{
	size_t len, blen;
	uint8_t *buf = sealed_attachment(&len);
	const uint8_t *body;

	for (size_t n = 0; n < len; n++) {
		/* A copy of exactly n bytes, so ASan sees any read past it. */
		uint8_t *cut = xmalloc(n ? n : 1);
		const char *why = NULL;

		memcpy(cut, buf, n);
		assert_int_equal(record_open(cut, n, RECORD_ATTACHMENT, &body, &blen, &why),
				 -EBADMSG);
		assert_non_null(why);
		assert_null(body);
		/* Checked before anything else is read. */
		assert_string_equal(why, "truncated");
		free(cut);
	}
	free(buf);
}

static void test_open_bitflip(void **state)
{
	size_t len, blen;
	uint8_t *buf = sealed_attachment(&len);
	const uint8_t *body;

	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			const char *why = NULL;

			buf[i] ^= (uint8_t)(1u << bit);
			assert_int_equal(
				record_open(buf, len, RECORD_ATTACHMENT, &body, &blen, &why),
				-EBADMSG);
			assert_non_null(why);
			/* A flip in the body or the sum is caught by the sum. */
			if (i >= RECORD_HDR_LEN)
				assert_string_equal(why, "checksum mismatch");
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	free(buf);
}

static void test_open_wrong_type_trailing_oversize(void **state)
{
	size_t len, blen;
	uint8_t *buf = sealed_attachment(&len), *longer;
	const uint8_t *body;
	const char *why = NULL;

	assert_int_equal(record_open(buf, len, RECORD_IDENTITY, &body, &blen, &why), -EBADMSG);
	assert_string_equal(why, "wrong record type");

	longer = xmalloc(len + 1);
	memcpy(longer, buf, len);
	longer[len] = 0;
	assert_int_equal(record_open(longer, len + 1, RECORD_ATTACHMENT, &body, &blen, &why),
			 -EBADMSG);
	assert_string_equal(why, "trailing bytes after the checksum");
	free(longer);

	put_be32(buf + 8, RECORD_MAX_BODY + 1);
	assert_int_equal(record_open(buf, len, RECORD_ATTACHMENT, &body, &blen, &why), -EBADMSG);
	assert_string_equal(why, "body length out of range");
	put_be32(buf + 8, 0xffffffffu);
	assert_int_equal(record_open(buf, len, RECORD_ATTACHMENT, &body, &blen, &why), -EBADMSG);
	assert_string_equal(why, "body length out of range");
	/* In range but longer than the buffer. */
	put_be32(buf + 8, (uint32_t)len);
	assert_int_equal(record_open(buf, len, RECORD_ATTACHMENT, &body, &blen, &why), -EBADMSG);
	assert_string_equal(why, "truncated");

	memcpy(buf, "TSCX", 4);
	assert_int_equal(record_open(buf, len, RECORD_ATTACHMENT, &body, &blen, &why), -EBADMSG);
	assert_string_equal(why, "bad magic");
	free(buf);
}

static void test_open_empty_body(void **state)
{
	uint8_t *buf;
	size_t len, blen;
	const uint8_t *body;
	const char *why = NULL;

	record_seal(RECORD_JOB, NULL, 0, &buf, &len);
	assert_int_equal(len, RECORD_HDR_LEN + RECORD_SUM_LEN);
	assert_int_equal(record_open(buf, len, RECORD_JOB, &body, &blen, &why), 0);
	assert_int_equal(blen, 0);
	/* An all-default Job unpacks but does not validate. */
	assert_null(record_parse_job(buf, len, &why));
	assert_string_equal(why, "job.id invalid");
	free(buf);
}

static void test_roundtrip_identity(void **state)
{
	struct fixture *f = *state;
	struct sample s;
	struct stat sb;
	const char *why = NULL;
	int err = 1;
	Tscni__Identity *m;

	sample_init(&s);
	umask(0);
	assert_int_equal(record_write_identity(f->dirfd, "identity.pb", &s.id), 0);
	umask(022);
	assert_int_equal(fstatat(f->dirfd, "identity.pb", &sb, 0), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	m = record_read_identity(f->dirfd, "identity.pb", &err, &why);
	assert_non_null(m);
	assert_int_equal(err, 0);
	assert_string_equal(m->pod_uid, s.id.pod_uid);
	assert_int_equal(m->machine_private.len, 32);
	assert_memory_equal(m->machine_private.data, key_a, 32);
	assert_memory_equal(m->node_private.data, key_b, 32);
	assert_string_equal(m->hostname, "web-0");
	assert_int_equal(m->n_addresses, 1);
	assert_memory_equal(m->addresses[0]->addr.data, v4, 4);
	assert_string_equal(m->node_name, "node-1");
	assert_int_equal(m->created_unix, 1764170000);
	assert_string_equal(m->pod->namespace_, "default");
	tscni__identity__free_unpacked(m, NULL);

	/* A record of another type under that name is damage. */
	assert_int_equal(record_write_job(f->dirfd, "identity.pb", &s.job), 0);
	assert_null(record_read_identity(f->dirfd, "identity.pb", &err, &why));
	assert_int_equal(err, -EBADMSG);
	assert_string_equal(why, "wrong record type");
	assert_null(record_read_identity(f->dirfd, "nothing.pb", &err, &why));
	assert_int_equal(err, -ENOENT);
}

static void test_roundtrip_attachment_tombstone_job(void **state)
{
	struct fixture *f = *state;
	struct sample s;
	const char *why = NULL;
	int err;
	Tscni__Attachment *a;
	Tscni__Tombstone *t;
	Tscni__Job *j;

	sample_init(&s);
	assert_int_equal(record_write_attachment(f->dirfd, "a.pb", &s.att), 0);
	assert_int_equal(record_write_tombstone(f->dirfd, "t", &s.tomb), 0);
	assert_int_equal(record_write_job(f->dirfd, "j.pb", &s.job), 0);

	a = record_read_attachment(f->dirfd, "a.pb", &err, &why);
	assert_non_null(a);
	assert_string_equal(a->key->network, "tsnet");
	assert_string_equal(a->key->container_id, "0123456789abcdef");
	assert_string_equal(a->key->ifname, "eth0");
	assert_string_equal(a->netns_path, "/var/run/netns/cni-1234");
	assert_int_equal(a->netns_ino, 4026532000ULL);
	assert_int_equal(a->state, TSCNI__ATTACHMENT_STATE__ATTACHMENT_READY);
	assert_int_equal(a->worker->pid, 4242);
	assert_string_equal(a->boot_id, s.att.boot_id);
	tscni__attachment__free_unpacked(a, NULL);

	t = record_read_tombstone(f->dirfd, "t", &err, &why);
	assert_non_null(t);
	assert_string_equal(t->key->container_id, "0123456789abcdef");
	assert_string_equal(t->netns_path, "");
	assert_int_equal(t->created_unix, 5);
	tscni__tombstone__free_unpacked(t, NULL);

	j = record_read_job(f->dirfd, "j.pb", &err, &why);
	assert_non_null(j);
	assert_string_equal(j->id, "del-3f2a");
	assert_int_equal(j->kind, TSCNI__JOB_KIND__JOB_DELETE_DEVICE);
	assert_int_equal(j->attempts, 3);
	tscni__job__free_unpacked(j, NULL);
}

static void test_write_refuses_invalid(void **state)
{
	struct fixture *f = *state;
	struct sample s;
	struct stat sb;

	sample_init(&s);
	s.id.machine_private.len = 31;
	assert_int_equal(record_write_identity(f->dirfd, "bad.pb", &s.id), -EINVAL);
	assert_int_equal(fstatat(f->dirfd, "bad.pb", &sb, 0), -1);
	s.att.state = 0;
	assert_int_equal(record_write_attachment(f->dirfd, "bad.pb", &s.att), -EINVAL);
}

/* A valid envelope around a message that fails validation is rejected with
 * the validator's reason. */
static void test_parse_validates(void **state)
{
	struct sample s;
	uint8_t packed[512], *buf;
	size_t plen, len;
	const char *why = NULL;

	sample_init(&s);
	s.id.node_private.len = 33;
	uint8_t key33[33] = {0};
	s.id.node_private.data = key33;
	plen = tscni__identity__pack(&s.id, packed);
	record_seal(RECORD_IDENTITY, packed, plen, &buf, &len);
	assert_null(record_parse_identity(buf, len, &why));
	assert_string_equal(why, "identity.node_private not 32 bytes");
	free(buf);

	/* Not protobuf at all. */
	memset(packed, 0xff, 16);
	record_seal(RECORD_IDENTITY, packed, 16, &buf, &len);
	assert_null(record_parse_identity(buf, len, &why));
	assert_string_equal(why, "protobuf does not unpack");
	free(buf);
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_atomic_write(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf;
	size_t len;
	struct stat sb;
	char tmp[64];

	assert_int_equal(atomic_write_file(f->dirfd, "x", "one", 3, 0600), 0);
	assert_int_equal(atomic_write_file(f->dirfd, "x", "second", 6, 0640), 0);
	assert_int_equal(read_small_file(f->dirfd, "x", 100, &buf, &len), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(buf, "second", 6);
	free(buf);
	assert_int_equal(fstatat(f->dirfd, "x", &sb, 0), 0);
	assert_int_equal(sb.st_mode & 07777, 0640);

	/* A stale temp file of a dead process that had our pid. */
	snprintf(tmp, sizeof(tmp), ".x.tmp.%ld", (long)getpid());
	int fd = openat(f->dirfd, tmp, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(atomic_write_file(f->dirfd, "x", "third", 5, 0600), 0);
	assert_int_equal(count_entries(f->dir), 1);

	/* The rename fails (the target is a directory): the old state stays
	 * and no temp file is left behind. */
	assert_int_equal(mkdirat(f->dirfd, "d", 0700), 0);
	assert_int_equal(atomic_write_file(f->dirfd, "d", "zz", 2, 0600), -EISDIR);
	assert_int_equal(count_entries(f->dir), 2);

	assert_int_equal(atomic_write_file(f->dirfd, "a/b", "zz", 2, 0600), -EINVAL);
	assert_int_equal(atomic_write_file(f->dirfd, ".hidden", "zz", 2, 0600), -EINVAL);
	assert_int_equal(atomic_write_file(f->dirfd, "", "zz", 2, 0600), -EINVAL);
	assert_int_equal(atomic_write_file(-1, "x", "zz", 2, 0600), -EBADF);
}

static void test_read_small_file(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = (uint8_t *)"sentinel";
	size_t len = 99;

	assert_int_equal(atomic_write_file(f->dirfd, "ten", "0123456789", 10, 0600), 0);
	assert_int_equal(read_small_file(f->dirfd, "ten", 10, &buf, &len), 0);
	assert_int_equal(len, 10);
	free(buf);
	assert_int_equal(read_small_file(f->dirfd, "ten", 9, &buf, &len), -EFBIG);
	assert_null(buf);
	assert_int_equal(len, 0);
	assert_int_equal(read_small_file(f->dirfd, "none", 9, &buf, &len), -ENOENT);
	assert_int_equal(symlinkat("ten", f->dirfd, "link"), 0);
	assert_int_equal(read_small_file(f->dirfd, "link", 100, &buf, &len), -ELOOP);
	/* A FIFO must neither block nor be read. */
	assert_int_equal(mkfifoat(f->dirfd, "fifo", 0600), 0);
	assert_int_equal(read_small_file(f->dirfd, "fifo", 100, &buf, &len), -EINVAL);
	assert_int_equal(atomic_write_file(f->dirfd, "empty", "", 0, 0600), 0);
	assert_int_equal(read_small_file(f->dirfd, "empty", 100, &buf, &len), 0);
	assert_int_equal(len, 0);
	free(buf);

	int err;
	const char *why;

	assert_null(record_read_job(f->dirfd, "link", &err, &why));
	assert_int_equal(err, -EBADMSG);
	assert_string_equal(why, "a symbolic link");
	assert_null(record_read_job(f->dirfd, "fifo", &err, &why));
	assert_int_equal(err, -EBADMSG);
	assert_string_equal(why, "not a regular file");
}

static void test_key_filename(void **state)
{
	char buf[RECORD_KEYNAME_LEN], small[RECORD_KEYNAME_LEN - 1];
	char cid[CONTAINER_ID_MAX_LEN + 1];
	char *hashed;

	assert_string_equal(record_key_filename("net", "abc123", "eth0", buf, sizeof(buf)),
			    "net_abc123_eth0");
	assert_null(record_key_filename("net", "abc123", "eth0", small, sizeof(small)));
	/* An ifname may hold '_': it is last, so the split stays unique. */
	assert_string_equal(record_key_filename("net", "abc", "e_0", buf, sizeof(buf)),
			    "net_abc_e_0");

	/* '_' in the first two parts, or too long: hashed, and distinct. */
	hashed = xstrdup(record_key_filename("a_b", "c", "eth0", buf, sizeof(buf)));
	assert_int_equal(strlen(hashed), 66);
	assert_memory_equal(hashed, "h_", 2);
	assert_string_not_equal(record_key_filename("a", "b_c", "eth0", buf, sizeof(buf)), hashed);
	free(hashed);

	memset(cid, 'a', 190);
	cid[190] = '\0';
	/* 3 + 1 + 190 + 1 + 4 = 199: plain. */
	assert_int_equal(strlen(record_key_filename("net", cid, "eth0", buf, sizeof(buf))), 199);
	memset(cid, 'a', CONTAINER_ID_MAX_LEN);
	cid[CONTAINER_ID_MAX_LEN] = '\0';
	assert_int_equal(strlen(record_key_filename("net", cid, "eth0", buf, sizeof(buf))), 66);

	assert_null(record_key_filename("../x", "c", "eth0", buf, sizeof(buf)));
	assert_null(record_key_filename("n", "c/d", "eth0", buf, sizeof(buf)));
	assert_null(record_key_filename("n", "c", "..", buf, sizeof(buf)));
	assert_null(record_key_filename("n", "", "eth0", buf, sizeof(buf)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_open),
		cmocka_unit_test(test_open_truncated),
		cmocka_unit_test(test_open_bitflip),
		cmocka_unit_test(test_open_wrong_type_trailing_oversize),
		cmocka_unit_test(test_open_empty_body),
		cmocka_unit_test_setup_teardown(test_roundtrip_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roundtrip_attachment_tombstone_job, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_refuses_invalid, setup, teardown),
		cmocka_unit_test(test_parse_validates),
		cmocka_unit_test_setup_teardown(test_atomic_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_small_file, setup, teardown),
		cmocka_unit_test(test_key_filename),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
