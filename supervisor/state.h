/* The state directory (docs/design.md §3), default /var/lib/tailscale-cni:
 *
 *   supervisor.lock                          flock: one supervisor per node
 *   pods/<pod-uid>/identity.pb               keys, hostname, addresses
 *   pods/<pod-uid>/attachments/<key>.pb      one per (network, cid, ifname)
 *   tombstones/<key>                         DELs written by the plugin
 *   jobs/<id>.pb                             persisted API work
 *   damaged/  quarantine/                    records moved aside, never acted on
 *
 * Files 0600, directories 0700; every write is atomic (common/record.h).
 * Functions are synchronous (they fsync): pods.c calls them on the threadpool.
 * They return 0 or a negative errno. */
#ifndef TSCNI_SUPERVISOR_STATE_H
#define TSCNI_SUPERVISOR_STATE_H

#include <stdbool.h>
#include <stddef.h>

#include "state.pb-c.h"

struct state;

/* What identifies this node; records from elsewhere are quarantined. */
struct state_origin {
	char machine_id[64]; /* /etc/machine-id */
	char node_name[256]; /* --node-name, $NODE_NAME, or the host name */
	char boot_id[64];    /* /proc/sys/kernel/random/boot_id */
};

/* This boot's id (/proc/sys/kernel/random/boot_id, a UUID) into out:
 * 0, or a negative errno (-EINVAL when it does not fit len). */
int state_boot_id(char *out, size_t len);

/* Fills origin from the system; node_name may be preset (non-empty) by the
 * caller and is then kept. */
int state_origin_detect(struct state_origin *origin);

/* Creates the layout under dir (0700), takes the flock on supervisor.lock
 * without blocking (-EWOULDBLOCK: another supervisor runs). */
int state_open(const char *dir, const struct state_origin *origin, struct state **out);
void state_close(struct state *st);
const char *state_dir(const struct state *st);
const struct state_origin *state_get_origin(const struct state *st);

/* Called once per record found by state_load. Records that fail to parse are
 * moved to damaged/ and records of another machine or node name to
 * quarantine/, each with a log line naming the file; neither reaches the
 * callbacks. The callbacks do not own the messages. */
struct state_load_cb {
	void (*identity)(void *arg, const Tscni__Identity *id);
	void (*attachment)(void *arg, const Tscni__Attachment *att);
	void (*tombstone)(void *arg, const Tscni__Tombstone *tomb, const char *filename);
	void (*job)(void *arg, const Tscni__Job *job);
	void *arg;
};
/* Walks the whole directory once. Returns 0 (damaged records are not an
 * error) and counts what was moved aside in *n_damaged / *n_quarantined. */
int state_load(struct state *st, const struct state_load_cb *cb, unsigned int *n_damaged,
	       unsigned int *n_quarantined);

/* Identity of a pod: read (NULL with -ENOENT when none), or write. A damaged
 * identity, or one of another machine or node name, is moved aside (logged)
 * and reads as -ENOENT; -EINVAL for a pod UID that is not a valid_name().
 * Free the result with tscni__identity__free_unpacked(id, NULL) after wiping
 * its keys. Puts (here and below) return -EINVAL for a record that does not
 * validate or whose machine_id/node_name differ from the origin. */
Tscni__Identity *state_identity_get(struct state *st, const char *pod_uid, int *err);
int state_identity_put(struct state *st, const Tscni__Identity *id);
/* Removes pods/<uid> entirely (identity, worker.sock, leftover temp files).
 * -ENOTEMPTY while an attachment of the pod remains, or when the directory
 * holds files that are not ours (they are left alone). 0 when already gone. */
int state_pod_remove(struct state *st, const char *pod_uid);

/* The file is pods/<pod_uid>/attachments/<record_key_filename(key)>.pb.
 * Removing what is not there returns 0. */
int state_attachment_put(struct state *st, const Tscni__Attachment *att);
/* Without fsync (atomic_write_file_cached): survives the supervisor's death,
 * maybe not the machine's. For an ADD's records before its reply: the ts0
 * they name dies with the machine too, and the record the reply waits for
 * (pods_save.c, once the worker is Ready) is durable. */
int state_attachment_put_cached(struct state *st, const Tscni__Attachment *att);
int state_attachment_remove(struct state *st, const char *pod_uid, const Tscni__AttachmentKey *key);
/* Counts the attachment records of a pod (to know if it has any left): >= 0,
 * 0 when the pod has no directory. */
int state_attachment_count(struct state *st, const char *pod_uid);

/* Tombstones are written by the CNI plugin (cni/), removed by the supervisor
 * once the DEL they stand for is done. filename is the one state_load passed
 * to the callback; 0 when already gone. */
int state_tombstone_remove(struct state *st, const char *filename);

/* jobs/<id>.pb; id is a valid_name() of at most 200 bytes. */
int state_job_put(struct state *st, const Tscni__Job *job);
int state_job_remove(struct state *st, const char *id);

#endif
