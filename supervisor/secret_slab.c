/* Small secrets packed into sodium_malloc'ed pages (secret_slab.h). */
#include "secret_slab.h"

#include <sodium.h>
#include <stdint.h>
#include <string.h>

struct slab_page {
	struct slab_page *next;
	uint64_t used; /* bit i: slot[i] is in use */
	uint8_t slot[SECRET_SLAB_SLOTS][SECRET_SLAB_SLOT];
};
_Static_assert(sizeof(struct slab_page) <= 4096, "one page");
_Static_assert(SECRET_SLAB_SLOTS < 64, "used is a 64-bit map");

static struct slab_page *pages;
static size_t n_pages;

void *secret_slab_get(void)
{
	struct slab_page *pg;

	for (pg = pages; pg; pg = pg->next)
		if (pg->used != (UINT64_C(1) << SECRET_SLAB_SLOTS) - 1)
			break;
	if (!pg) {
		if (sodium_init() < 0)
			return NULL;
		pg = sodium_malloc(sizeof(*pg));
		if (!pg)
			return NULL;
		memset(pg, 0, sizeof(*pg));
		pg->next = pages;
		pages = pg;
		n_pages++;
	}
	for (int i = 0; i < SECRET_SLAB_SLOTS; i++) {
		if (!(pg->used & UINT64_C(1) << i)) {
			pg->used |= UINT64_C(1) << i;
			return pg->slot[i];
		}
	}
	return NULL; /* not reached: pg has a free slot */
}

void secret_slab_put(void *p)
{
	struct slab_page **link;
	uint8_t *b = p;

	if (!p)
		return;
	for (link = &pages; *link; link = &(*link)->next) {
		struct slab_page *pg = *link;
		size_t i;

		if (b < pg->slot[0] || b >= pg->slot[0] + sizeof(pg->slot))
			continue;
		i = (size_t)(b - pg->slot[0]) / SECRET_SLAB_SLOT;
		sodium_memzero(pg->slot[i], SECRET_SLAB_SLOT);
		pg->used &= ~(UINT64_C(1) << i);
		if (!pg->used) {
			*link = pg->next;
			n_pages--;
			sodium_free(pg); /* wipes it */
		}
		return;
	}
}

size_t secret_slab_pages(void)
{
	return n_pages;
}
