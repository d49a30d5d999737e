/* Allocation and bounded string helpers. */
#ifndef TSCNI_COMMON_MEM_H
#define TSCNI_COMMON_MEM_H

#include <stddef.h>
#include <sys/types.h>

/* Abort on OOM: sizes that come from input are capped before allocating. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Zeroed memory of its own mapping: its pages stay unbacked (cost nothing)
 * until written, where calloc may memset a reused heap chunk. For a large
 * table of which an idle process touches little. Freed with xmap_free(p, n). */
void *xmap_zeroed(size_t n);
void xmap_free(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* asprintf that aborts on OOM. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copies at most n-1 bytes and always terminates (n > 0). Returns the
 * length copied, or -E2BIG if src was truncated. */
ssize_t strscpy(char *dst, const char *src, size_t n);

/* write(2) until every byte is out, retrying EINTR and short writes.
 * Returns 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);

/* Milliseconds on CLOCK_MONOTONIC. */
unsigned long long now_ms(void);

#endif
