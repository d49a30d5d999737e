/* The CNI socket (docs/cni-contract.md section 10): a unix stream socket,
 * 0600 in a 0700 directory, peers checked with SO_PEERCRED, one CniRequest
 * frame in and one CniReply frame out per request, several requests per
 * connection one after another. STATUS is answered at once from the
 * supervisor's precomputed health; the other verbs go to pods.c. */
#ifndef TSCNI_SUPERVISOR_CNI_SERVER_H
#define TSCNI_SUPERVISOR_CNI_SERVER_H

#include <stddef.h>

struct supervisor;
struct cni_server;

/* At most proc_limits_conn_max connections at once (proc_limits.h reserves
 * their fds; past it new ones wait in the listen backlog), of which at most
 * IDLE_MAX without a request in flight: past that, the one idle longest
 * makes room for a new one (docs/design.md §2). */
enum { CNI_SERVER_IDLE_MAX = 128 };

/* Claims path for this supervisor before anything else starts: takes an
 * exclusive flock on path + ".lock" (created 0600 beside the socket, the
 * directory made 0700 when missing) and, holding it, tries to connect to
 * path. Another supervisor holding the lock or answering there refuses the
 * start: -EADDRINUSE after a log line naming it. Returns the lock's fd
 * (close-on-exec, held until exit) or a negative errno. */
int cni_server_claim(const char *path);

/* Creates the socket at path on sup->loop and starts accepting: the parent
 * directory is created 0700 when missing, a stale socket file is removed
 * (cni_server_claim has proved it stale),
 * the socket is bound at a temporary name in the same directory, made 0600,
 * put to listen and only then renamed to path, so a socket that exists is
 * ready. Returns 0 or a negative errno (with a log line naming the step);
 * *out is NULL on failure. */
int cni_server_open(struct supervisor *sup, const char *path, struct cni_server **out);

/* NULL while the socket srv listens on is still at its path; else a
 * sentence (static, or in buf) saying it is lost: srv NULL or closing, the
 * path gone (someone removed it: runtimes no longer reach us), or another
 * file there. One lstat, on the loop (the path is on a tmpfs). */
const char *cni_server_lost(const struct cni_server *srv, char *buf, size_t len);

/* Stops accepting, closes every connection (their pending requests still
 * complete in pods.c, without a reply), unlinks the socket. The server frees
 * itself once its handles are closed. cni_server_close(NULL) does nothing. */
void cni_server_close(struct cni_server *srv);

#endif
