#!/usr/bin/env python3
"""heap_sites.py DUMP [TOP [PID]]: an idle process's live heap by allocation site,
from heap_sites.so's dump (tests/bench/heap_sites.c): each site is the first
three callers outside the allocation wrappers (xmalloc, CRYPTO_malloc,
jansson's, ...), symbolized with addr2line. Prints "#   KiB blocks site",
the largest first, then the total and each library's share. With PID (the
live process, root), each site's bytes in private resident pages too
(pagemap and kpagecount), and sites ordered by those."""
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


PAGE = 4096


def private_bytes(pid, blks):
    """Per site, the bytes of its blocks that lie in resident pages mapped
    once (USS: what this process alone holds), from /proc/PID/pagemap and
    /proc/kpagecount (root). None when they cannot be read."""
    try:
        pm = open("/proc/%s/pagemap" % pid, "rb")
        kc = open("/proc/kpagecount", "rb")
    except OSError:
        return None
    cache = {}

    def private(page):
        if page not in cache:
            pm.seek(page * 8)
            e = int.from_bytes(pm.read(8), "little")
            pfn = e & ((1 << 55) - 1)
            ok = bool(e >> 63) and pfn != 0
            if ok:
                kc.seek(pfn * 8)
                ok = int.from_bytes(kc.read(8), "little") == 1
            cache[page] = ok
        return cache[page]

    out = collections.Counter()
    for site, addr, size in blks:
        a, end = addr, addr + size
        while a < end:
            page = a // PAGE
            nxt = min(end, (page + 1) * PAGE)
            if private(page):
                out[site] += nxt - a
            a = nxt
    return out


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    pid = sys.argv[3] if len(sys.argv) > 3 else None
    sites, maps, blks = [], [], []
    for line in open(path):
        if line.startswith("blk "):
            f = line.split()
            blks.append((int(f[1]), int(f[2], 16), int(f[3])))
        elif line.startswith("site "):
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
    priv_site = private_bytes(pid, blks) if pid and blks else None
    priv = collections.Counter()
    for idx, (size, n, st) in enumerate(sites):
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
        if priv_site is not None:
            priv[key] += priv_site[idx]
        by_lib[lib or "?"] += size
        total += size
    if priv_site is None:
        for key, size in by_site.most_common(top):
            print("#   %7.1f KiB %6d  %s" % (size / 1024, blocks[key], key[:110]))
        rest = sum(by_site.values()) - sum(s for _, s in by_site.most_common(top))
        print("#   %7.1f KiB         the %d other sites" % (rest / 1024,
                                                          max(len(by_site) - top, 0)))
    else:
        # Ordered by what the process alone holds of each site.
        order = sorted(by_site, key=lambda k: (-priv[k], -by_site[k]))
        print("#   (KiB allocated, KiB of it in private resident pages, blocks, site)")
        for key in order[:top]:
            print("#   %7.1f %7.1f KiB %6d  %s" % (by_site[key] / 1024, priv[key] / 1024,
                                                  blocks[key], key[:100]))
        rest = order[top:]
        print("#   %7.1f %7.1f KiB         the %d other sites" % (
            sum(by_site[k] for k in rest) / 1024, sum(priv[k] for k in rest) / 1024, len(rest)))
        print("#   %7.1f KiB of the blocks in private resident pages" % (
            sum(priv.values()) / 1024))
    print("#   %7.1f KiB in %d blocks in all; by the first caller's object: %s" % (
        total / 1024, sum(n for _, n, _ in sites),
        ", ".join("%s %.0f" % (k, v / 1024) for k, v in by_lib.most_common(6))))


if __name__ == "__main__":
    main()
