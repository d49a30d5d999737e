/* Small fixed-size secrets (a worker's two private keys) packed into
 * sodium_malloc'ed pages: locked in memory, excluded from core dumps,
 * guard pages around each page, wiped when given back.
 *
 * One sodium_malloc per secret costs 8 KiB of resident memory (its data
 * page and its read-only canary page) for 64 bytes: 1.6 MiB of a
 * supervisor with 200 pods (tests/bench/workers.sh). A page here holds
 * SECRET_SLAB_SLOTS of them. Loop thread only. */
#ifndef TSCNI_SUPERVISOR_SECRET_SLAB_H
#define TSCNI_SUPERVISOR_SECRET_SLAB_H

#include <stddef.h>

enum {
	SECRET_SLAB_SLOT = 64,	/* bytes a slot holds */
	SECRET_SLAB_SLOTS = 63, /* slots a page holds (one 4 KiB page) */
};

/* A zeroed slot of SECRET_SLAB_SLOT bytes, or NULL (no memory, or
 * sodium_init failed). */
void *secret_slab_get(void);
/* Wipes p's slot and gives it back (a page with no slot in use is freed).
 * p: from secret_slab_get, or NULL. */
void secret_slab_put(void *p);
/* The pages held now. */
size_t secret_slab_pages(void);

#endif
