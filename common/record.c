/* State records: the envelope of record.h, atomic file writes and the typed
 * read/write helpers. A record file is outside input (a crash, a full disk or
 * another tool may have left anything in it), so record_open() checks every
 * length before it trusts one, and every parse ends in a validate_*(). */
#include "record.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "mem.h"
#include "validate.h"

enum record_envelope {
	RECORD_FORMAT_VERSION = 1,
	/* The plain "<network>_<cid>_<ifname>" form is used up to this length. */
	RECORD_KEYNAME_PLAIN_MAX = 200,
};

static const uint8_t record_magic[4] = {'T', 'S', 'C', 'R'};

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void checksum(uint8_t out[static RECORD_SUM_LEN], const uint8_t *buf, size_t len)
{
	/* BLAKE2b-128, unkeyed. It detects damage, it does not authenticate:
	 * whoever can write the state directory is root already. */
	crypto_generichash(out, RECORD_SUM_LEN, buf, len, NULL, 0);
}

void record_seal(enum record_type type, const uint8_t *body, size_t len, uint8_t **out,
		 size_t *outlen)
{
	uint8_t *p;

	/* Callers pack messages they built; a body this large is a bug. */
	if (len > RECORD_MAX_BODY)
		abort();
	p = xmalloc(RECORD_HDR_LEN + len + RECORD_SUM_LEN);
	memcpy(p, record_magic, sizeof(record_magic));
	p[4] = (uint8_t)type;
	p[5] = RECORD_FORMAT_VERSION;
	put_be16(p + 6, 0);
	put_be32(p + 8, (uint32_t)len);
	if (len)
		memcpy(p + RECORD_HDR_LEN, body, len);
	checksum(p + RECORD_HDR_LEN + len, p, RECORD_HDR_LEN + len);
	*out = p;
	*outlen = RECORD_HDR_LEN + len + RECORD_SUM_LEN;
}

int record_open(const uint8_t *buf, size_t len, enum record_type want, const uint8_t **body,
		size_t *body_len, const char **why)
{
	uint8_t sum[RECORD_SUM_LEN];
	uint32_t blen;

	*body = NULL;
	*body_len = 0;
	if (len < RECORD_HDR_LEN + RECORD_SUM_LEN) {
		*why = "truncated";
		return -EBADMSG;
	}
	if (memcmp(buf, record_magic, sizeof(record_magic))) {
		*why = "bad magic";
		return -EBADMSG;
	}
	if (buf[5] != RECORD_FORMAT_VERSION) {
		*why = "unknown format version";
		return -EBADMSG;
	}
	if (get_be16(buf + 6) != 0) {
		*why = "reserved bytes not zero";
		return -EBADMSG;
	}
	blen = get_be32(buf + 8);
	if (blen > RECORD_MAX_BODY) {
		*why = "body length out of range";
		return -EBADMSG;
	}
	/* Both sides are bounded by now: len >= HDR + SUM, blen <= MAX_BODY. */
	if (len - RECORD_HDR_LEN - RECORD_SUM_LEN < blen) {
		*why = "truncated";
		return -EBADMSG;
	}
	if (len - RECORD_HDR_LEN - RECORD_SUM_LEN > blen) {
		*why = "trailing bytes after the checksum";
		return -EBADMSG;
	}
	checksum(sum, buf, RECORD_HDR_LEN + blen);
	if (sodium_memcmp(sum, buf + RECORD_HDR_LEN + blen, RECORD_SUM_LEN)) {
		*why = "checksum mismatch";
		return -EBADMSG;
	}
	/* Checked after the checksum: a damaged type byte reads as damage. */
	if (buf[4] != (uint8_t)want) {
		*why = "wrong record type";
		return -EBADMSG;
	}
	*body = buf + RECORD_HDR_LEN;
	*body_len = blen;
	return 0;
}

/* A single path component we may create or read: the temp-file scheme and
 * the directory walk rely on it. */
static bool plain_component(const char *name)
{
	return name && name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) <= NAME_MAX;
}

static int write_file(int dirfd, const char *name, const void *buf, size_t len, unsigned int mode,
		      bool durable)
{
	char tmp[NAME_MAX + 1];
	int fd = -1, ret, n;

	if (!plain_component(name))
		return -EINVAL;
	n = snprintf(tmp, sizeof(tmp), ".%s.tmp.%ld", name, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == EEXIST) {
		/* Left by an earlier process with our pid (a container's
		 * supervisor often has the same pid every time). Only one
		 * process with this pid exists now, so the file is stale. */
		if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT)
			return -errno;
		fd = openat(dirfd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
	}
	if (fd < 0)
		return -errno;
	/* fchmod: the umask must not decide a secret's mode. */
	if (fchmod(fd, mode) < 0) {
		ret = -errno;
		goto err;
	}
	ret = write_all(fd, buf, len);
	if (ret < 0)
		goto err;
	if (durable && fsync(fd) < 0) {
		ret = -errno;
		goto err;
	}
	ret = close(fd);
	fd = -1;
	if (ret < 0) {
		ret = -errno;
		goto err;
	}
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		ret = -errno;
		goto err;
	}
	/* The rename is durable only once the directory is. */
	if (durable && fsync(dirfd) < 0)
		return -errno;
	return 0;
err:
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	return ret;
}

int atomic_write_file(int dirfd, const char *name, const void *buf, size_t len, unsigned int mode)
{
	return write_file(dirfd, name, buf, len, mode, true);
}

int atomic_write_file_cached(int dirfd, const char *name, const void *buf, size_t len,
			     unsigned int mode)
{
	return write_file(dirfd, name, buf, len, mode, false);
}

int read_small_file(int dirfd, const char *name, size_t max, uint8_t **buf, size_t *len)
{
	struct stat sb;
	uint8_t *p = NULL;
	size_t cap, got = 0;
	int fd, ret;

	*buf = NULL;
	*len = 0;
	/* O_NONBLOCK: a FIFO planted in the directory must not hang us. */
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	if (sb.st_size < 0 || (unsigned long long)sb.st_size > max) {
		ret = -EFBIG;
		goto out;
	}
	/* One byte beyond the size seen, to notice a file that grew since. */
	cap = (size_t)sb.st_size + 1;
	p = xmalloc(cap);
	for (;;) {
		ssize_t n = read(fd, p + got, cap - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == cap) {
			if (cap > max) {
				ret = -EFBIG;
				goto out;
			}
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			p = xrealloc(p, cap);
		}
	}
	*buf = p;
	*len = got;
	p = NULL;
	ret = 0;
out:
	if (p) {
		sodium_memzero(p, cap);
		free(p);
	}
	close(fd);
	return ret;
}

/* Frees a buffer that may have held private keys. */
static void wipe_free(uint8_t *p, size_t len)
{
	if (!p)
		return;
	sodium_memzero(p, len);
	free(p);
}

static int write_packed(int dirfd, const char *name, enum record_type type,
			const ProtobufCMessage *m, bool durable)
{
	size_t plen = protobuf_c_message_get_packed_size(m), slen;
	uint8_t *packed, *sealed;
	int ret;

	if (plen > RECORD_MAX_BODY)
		return -EMSGSIZE;
	packed = xmalloc(plen ? plen : 1);
	protobuf_c_message_pack(m, packed);
	record_seal(type, packed, plen, &sealed, &slen);
	wipe_free(packed, plen);
	ret = write_file(dirfd, name, sealed, slen, 0600, durable);
	wipe_free(sealed, slen);
	return ret;
}

/* A record that would fail validation when read back is never written: the
 * next start would move it to damaged/. */
int record_write_identity(int dirfd, const char *name, const Tscni__Identity *m)
{
	const char *why;

	if (validate_identity(m, &why) < 0)
		return -EINVAL;
	return write_packed(dirfd, name, RECORD_IDENTITY, &m->base, true);
}

static int write_attachment(int dirfd, const char *name, const Tscni__Attachment *m, bool durable)
{
	const char *why;

	if (validate_attachment(m, &why) < 0)
		return -EINVAL;
	return write_packed(dirfd, name, RECORD_ATTACHMENT, &m->base, durable);
}

int record_write_attachment(int dirfd, const char *name, const Tscni__Attachment *m)
{
	return write_attachment(dirfd, name, m, true);
}

int record_write_attachment_cached(int dirfd, const char *name, const Tscni__Attachment *m)
{
	return write_attachment(dirfd, name, m, false);
}

int record_write_tombstone(int dirfd, const char *name, const Tscni__Tombstone *m)
{
	const char *why;

	if (validate_tombstone(m, &why) < 0)
		return -EINVAL;
	return write_packed(dirfd, name, RECORD_TOMBSTONE, &m->base, true);
}

int record_write_job(int dirfd, const char *name, const Tscni__Job *m)
{
	const char *why;

	if (validate_job(m, &why) < 0)
		return -EINVAL;
	return write_packed(dirfd, name, RECORD_JOB, &m->base, true);
}

Tscni__Identity *record_parse_identity(const uint8_t *buf, size_t len, const char **why)
{
	const uint8_t *body;
	size_t blen;
	Tscni__Identity *m;

	if (record_open(buf, len, RECORD_IDENTITY, &body, &blen, why) < 0)
		return NULL;
	m = tscni__identity__unpack(NULL, blen, body);
	if (!m) {
		*why = "protobuf does not unpack";
		return NULL;
	}
	if (validate_identity(m, why) < 0) {
		if (m->machine_private.data)
			sodium_memzero(m->machine_private.data, m->machine_private.len);
		if (m->node_private.data)
			sodium_memzero(m->node_private.data, m->node_private.len);
		tscni__identity__free_unpacked(m, NULL);
		return NULL;
	}
	return m;
}

Tscni__Attachment *record_parse_attachment(const uint8_t *buf, size_t len, const char **why)
{
	const uint8_t *body;
	size_t blen;
	Tscni__Attachment *m;

	if (record_open(buf, len, RECORD_ATTACHMENT, &body, &blen, why) < 0)
		return NULL;
	m = tscni__attachment__unpack(NULL, blen, body);
	if (!m) {
		*why = "protobuf does not unpack";
		return NULL;
	}
	if (validate_attachment(m, why) < 0) {
		tscni__attachment__free_unpacked(m, NULL);
		return NULL;
	}
	return m;
}

Tscni__Tombstone *record_parse_tombstone(const uint8_t *buf, size_t len, const char **why)
{
	const uint8_t *body;
	size_t blen;
	Tscni__Tombstone *m;

	if (record_open(buf, len, RECORD_TOMBSTONE, &body, &blen, why) < 0)
		return NULL;
	m = tscni__tombstone__unpack(NULL, blen, body);
	if (!m) {
		*why = "protobuf does not unpack";
		return NULL;
	}
	if (validate_tombstone(m, why) < 0) {
		tscni__tombstone__free_unpacked(m, NULL);
		return NULL;
	}
	return m;
}

Tscni__Job *record_parse_job(const uint8_t *buf, size_t len, const char **why)
{
	const uint8_t *body;
	size_t blen;
	Tscni__Job *m;

	if (record_open(buf, len, RECORD_JOB, &body, &blen, why) < 0)
		return NULL;
	m = tscni__job__unpack(NULL, blen, body);
	if (!m) {
		*why = "protobuf does not unpack";
		return NULL;
	}
	if (validate_job(m, why) < 0) {
		tscni__job__free_unpacked(m, NULL);
		return NULL;
	}
	return m;
}

/* Reads a record file for one of the parse functions. *err: -ENOENT when the
 * file is missing, -EBADMSG when it can never parse (too large, not a
 * regular file, a symlink), else the read's errno. */
static uint8_t *read_record(int dirfd, const char *name, size_t *len, int *err, const char **why)
{
	uint8_t *buf;
	int ret = read_small_file(dirfd, name, RECORD_MAX_FILE, &buf, len);

	*err = 0;
	switch (ret) {
	case 0:
		return buf;
	case -ENOENT:
		*why = "no such file";
		break;
	case -EFBIG:
		*why = "file larger than any record";
		ret = -EBADMSG;
		break;
	case -ELOOP:
		*why = "a symbolic link";
		ret = -EBADMSG;
		break;
	case -EINVAL:
		*why = "not a regular file";
		ret = -EBADMSG;
		break;
	default:
		*why = "read failed";
		break;
	}
	*err = ret;
	return NULL;
}

Tscni__Identity *record_read_identity(int dirfd, const char *name, int *err, const char **why)
{
	size_t len;
	uint8_t *buf = read_record(dirfd, name, &len, err, why);
	Tscni__Identity *m;

	if (!buf)
		return NULL;
	m = record_parse_identity(buf, len, why);
	wipe_free(buf, len);
	*err = m ? 0 : -EBADMSG;
	return m;
}

Tscni__Attachment *record_read_attachment(int dirfd, const char *name, int *err, const char **why)
{
	size_t len;
	uint8_t *buf = read_record(dirfd, name, &len, err, why);
	Tscni__Attachment *m;

	if (!buf)
		return NULL;
	m = record_parse_attachment(buf, len, why);
	free(buf);
	*err = m ? 0 : -EBADMSG;
	return m;
}

Tscni__Tombstone *record_read_tombstone(int dirfd, const char *name, int *err, const char **why)
{
	size_t len;
	uint8_t *buf = read_record(dirfd, name, &len, err, why);
	Tscni__Tombstone *m;

	if (!buf)
		return NULL;
	m = record_parse_tombstone(buf, len, why);
	free(buf);
	*err = m ? 0 : -EBADMSG;
	return m;
}

Tscni__Job *record_read_job(int dirfd, const char *name, int *err, const char **why)
{
	size_t len;
	uint8_t *buf = read_record(dirfd, name, &len, err, why);
	Tscni__Job *m;

	if (!buf)
		return NULL;
	m = record_parse_job(buf, len, why);
	free(buf);
	*err = m ? 0 : -EBADMSG;
	return m;
}

/* The plain form is unambiguous only while the first two parts hold no '_'
 * (the ifname, last, may): network "a_b" + cid "c" and network "a" + cid
 * "b_c" would otherwise share a file. Such keys, and long ones, are hashed,
 * over the parts separated by NUL (which none can hold) for the same reason;
 * the file's content always carries the full key. */
char *record_key_filename(const char *network, const char *container_id, const char *ifname,
			  char *buf, size_t n)
{
	const char *parts[] = {network, container_id, ifname};
	uint8_t digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256_state h;
	int len;

	if (!buf || n < RECORD_KEYNAME_LEN || !valid_name(network, NAME_MAX_LEN) ||
	    !valid_name(container_id, CONTAINER_ID_MAX_LEN) || !valid_ifname(ifname))
		return NULL;
	if (!strchr(network, '_') && !strchr(container_id, '_')) {
		len = snprintf(buf, n, "%s_%s_%s", network, container_id, ifname);
		if (len >= 0 && len <= RECORD_KEYNAME_PLAIN_MAX)
			return buf;
	}
	crypto_hash_sha256_init(&h);
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		crypto_hash_sha256_update(&h, (const uint8_t *)parts[i], strlen(parts[i]) + 1);
	crypto_hash_sha256_final(&h, digest);
	memcpy(buf, "h_", 2);
	sodium_bin2hex(buf + 2, n - 2, digest, sizeof(digest));
	return buf;
}
