/* The CA certificates workers trust for https (control and DERP): the
 * system's bundle, the one libcurl itself would read (CURLINFO_CAINFO,
 * then the well-known paths), unless --ca-file replaces it; --ca-file-add
 * appends to either. Read here, once, before the zygote starts, and handed
 * to each worker in memory (CaChunk messages before Start): workers open no
 * file. A bundle is public, so symlinks are followed (/etc/ssl/certs is
 * made of them). */
#ifndef TSCNI_SUPERVISOR_CA_BUNDLE_H
#define TSCNI_SUPERVISOR_CA_BUNDLE_H

#include <stddef.h>

/* The system bundle's path: libcurl's compiled-in default if that file
 * exists, else the first of the well-known paths that does, else NULL. */
const char *ca_bundle_default_path(void);

/* Checks that buf (len bytes) is PEM CA certificates: at least one
 * "-----BEGIN CERTIFICATE-----" block, every such block closed by its END
 * line, its base64 decoding to one DER SEQUENCE of exactly that length.
 * Text outside the blocks (comments, other PEM types) is allowed.
 * The number of certificates, or -EBADMSG with *why set. */
int ca_bundle_check(const char *buf, size_t len, const char **why);

/* Reads the bundle: replace (--ca-file) or, when NULL, the system's; then
 * add (--ca-file-add, may be NULL) appended. Every file 1 byte to
 * CA_BUNDLE_MAX_LEN and PEM, the whole within CA_BUNDLE_MAX_LEN.
 * *out is malloc'ed and NUL-terminated; *src names where it came from
 * (static storage or replace). 0, or -errno after one log line naming the
 * option, the path and the fault. */
int ca_bundle_load(const char *replace, const char *add, char **out, size_t *len, const char **src);

#endif
