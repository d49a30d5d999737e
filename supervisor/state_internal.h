/* What the files of the state directory share (supervisor/ only; the rest of
 * the supervisor sees state.h). state.c opens the directory, walks it
 * (state_load), moves damaged and foreign records aside and keeps the
 * tombstones and jobs; state_identity.c the pods' identity records and their
 * directories (state_pod_remove); state_attachment.c the attachment records
 * under pods/<uid>/attachments/. */
#ifndef TSCNI_SUPERVISOR_STATE_INTERNAL_H
#define TSCNI_SUPERVISOR_STATE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "state.h"

/* Every record file's name ends in this (sizeof gives the room it takes). */
#define STATE_RECORD_SUFFIX ".pb"
/* The subdirectory of pods/<uid> that holds its attachment records. */
#define STATE_ATTACHMENTS_NAME "attachments"

struct state {
	char *dir;
	struct state_origin origin;
	int lock_fd;
	int dir_fd;
	int pods_fd;
	int tombstones_fd;
	int jobs_fd;
	int damaged_fd;
	int quarantine_fd;
};

/* One walk of state_load: where it reports, and what it moved aside. */
struct state_load_ctx {
	struct state *st;
	const struct state_load_cb *cb;
	unsigned int damaged;
	unsigned int quarantined;
};

/* ---- state.c: the directory -------------------------------------------- */

/* Creates (0700) and opens a subdirectory; an existing one is brought back to
 * 0700. *created tells whether the parent needs an fsync. 0 or -errno, *out
 * -1 on failure. */
int state__open_subdir(int parent, const char *name, bool create, int *out, bool *created);
/* Closes *fd if open and sets it to -1. */
void state__close_fd(int *fd);
/* Whether name is a temp file of an atomic write (common/record.h). */
bool state__is_temp_name(const char *name);
/* Whether name ends in STATE_RECORD_SUFFIX, with something before it. */
bool state__has_record_suffix(const char *name);
/* The names in a directory (not "." and ".."), read in full before the caller
 * renames or unlinks any of them; free them with state__free_names. 0 or
 * -errno (then *names is NULL and *n 0). */
int state__list_dir(int dirfd, char ***names, size_t *n);
void state__free_names(char **names, size_t n);
/* Deletes a temp file left by a write that never reached its rename; with
 * grace, only one older than STATE_TEMP_GRACE_S. rel names it in the log. */
void state__remove_temp(int dirfd, const char *name, const char *rel, bool grace);
/* Moves dirfd/name to damaged/ or quarantine/ as
 * "<relative path, '/' as '%'>.<unix time>", or as "h_<sha256 of the path>.<time>"
 * when that would be too long, adding "-<n>" if the name is taken. */
void state__move_aside(struct state *st, bool quarantine, int dirfd, const char *name,
		       const char *rel, const char *why);
/* Whether a record was written on another machine or under another node name. */
bool state__is_foreign(const struct state *st, const char *machine_id, const char *node_name);
/* state__move_aside during a walk, counted in c. */
void state__aside(struct state_load_ctx *c, bool quarantine, int dirfd, const char *name,
		  const char *rel, const char *why);
/* A read failure that is not damage (EIO, EACCES) leaves the file alone. */
void state__read_failed(int err, const char *rel, const char *why);
/* Opens pods/<uid> (and its attachments/ when att_fd is given), creating
 * them when asked; a created directory is made durable in its parent, but
 * attachments/ not when att_later: the caller fsyncs pods/<uid> itself.
 * 0 or a negative errno (-EINVAL for a uid that is not a pod UID), the fds
 * -1 on failure. */
int state__open_pod_sync(struct state *st, const char *uid, bool create, int *pod_fd, int *att_fd,
			 bool att_later);
/* state__open_pod_sync without att_later. */
int state__open_pod(struct state *st, const char *uid, bool create, int *pod_fd, int *att_fd);

/* ---- state_identity.c: pods/<uid>/identity.pb --------------------------- */

/* Reads pods/<uid>/identity.pb during a walk and passes it on, or moves it
 * aside. */
void state__load_identity(struct state_load_ctx *c, int pod_fd, const char *uid);

/* ---- state_attachment.c: pods/<uid>/attachments/ ------------------------ */

/* Reads one entry of pods/<uid>/attachments/ during a walk and passes it on,
 * or removes it (a leftover temp file) or moves it aside. */
void state__load_attachment(struct state_load_ctx *c, int att_fd, const char *uid,
			    const char *name);
/* Counts the records in attachments/ (temp files excluded): >= 0 or -errno. */
int state__count_records(int dirfd);

#endif
