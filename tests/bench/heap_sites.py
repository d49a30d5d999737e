#!/usr/bin/env python3
"""heap_sites.py DUMP [TOP]: an idle process's live heap by allocation site,
from heap_sites.so's dump (tests/bench/heap_sites.c): each site is the first
three callers outside the allocation wrappers (xmalloc, CRYPTO_malloc,
jansson's, ...), symbolized with addr2line. Prints "#   KiB blocks site",
the largest first, then the total and each library's share."""
import bisect
import collections
import subprocess
import sys

WRAPPERS = {
    "xmalloc", "xcalloc", "xrealloc", "xstrdup", "xstrndup", "xasprintf", "xmemdup",
    "CRYPTO_malloc", "CRYPTO_zalloc", "CRYPTO_realloc", "CRYPTO_strdup", "CRYPTO_strndup",
    "CRYPTO_memdup", "CRYPTO_clear_realloc", "jsonp_malloc", "jsonp_strdup", "jsonp_strndup",
    "Curl_cmalloc", "Curl_ccalloc", "Curl_crealloc", "Curl_cstrdup", "uv__malloc", "uv__calloc",
    "uv__realloc", "uv__strdup", "protobuf_c_default_allocator_alloc", "do_alloc", "??",
}


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    sites, maps = [], []
    for line in open(path):
        if line.startswith("site "):
            f = line.split()
            sites.append((int(f[1]), int(f[2]), [int(a, 16) for a in f[3:]]))
        elif line.startswith("map "):
            f = line[4:].split()
            if len(f) >= 6 and f[5].startswith("/"):
                lo, hi = (int(x, 16) for x in f[0].split("-"))
                maps.append((lo, hi, int(f[2], 16), f[5]))
    maps.sort()
    starts = [m[0] for m in maps]

    def where(a):
        i = bisect.bisect_right(starts, a) - 1
        if i >= 0 and maps[i][0] <= a < maps[i][1]:
            lo, _, off, obj = maps[i]
            return obj, a - lo + off
        return None, a

    todo = collections.defaultdict(set)
    for _, _, st in sites:
        for a in st:
            obj, off = where(a - 1)  # the call, not the return address
            if obj:
                todo[obj].add(off)
    names = {}
    for obj, offs in todo.items():
        offs = sorted(offs)
        try:
            out = subprocess.run(["addr2line", "-f", "-e", obj] + [hex(o) for o in offs],
                                 capture_output=True, text=True, timeout=60).stdout.split("\n")
        except (OSError, subprocess.TimeoutExpired):
            out = []
        short = obj.rsplit("/", 1)[-1]
        for k, o in enumerate(offs):
            fn = out[2 * k] if 2 * k < len(out) else "??"
            names[(obj, o)] = (fn, short)
    by_site = collections.Counter()
    blocks = collections.Counter()
    by_lib = collections.Counter()
    total = 0
    for size, n, st in sites:
        chain, lib = [], None
        for a in st:
            obj, off = where(a - 1)
            fn, short = names.get((obj, off), ("??", "?"))
            if fn in WRAPPERS or fn.startswith("__libc") or short.startswith("libc.so"):
                continue
            if lib is None:
                lib = short
            chain.append(fn)
            if len(chain) == 3:
                break
        key = " < ".join(chain) or "?"
        by_site[key] += size
        blocks[key] += n
        by_lib[lib or "?"] += size
        total += size
    for key, size in by_site.most_common(top):
        print("#   %7.1f KiB %6d  %s" % (size / 1024, blocks[key], key[:110]))
    rest = sum(by_site.values()) - sum(s for _, s in by_site.most_common(top))
    print("#   %7.1f KiB         the %d other sites" % (rest / 1024, max(len(by_site) - top, 0)))
    print("#   %7.1f KiB in %d blocks in all; by the first caller's object: %s" % (
        total / 1024, sum(n for _, n, _ in sites),
        ", ".join("%s %.0f" % (k, v / 1024) for k, v in by_lib.most_common(6))))


if __name__ == "__main__":
    main()
