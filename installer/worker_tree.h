/* The worker's tree on the host (deploy/daemonset.yaml): the zygote and the
 * workers run from the host's mount namespace, so the worker binary, the
 * shared libraries it links and this image's dynamic loader are copied
 * under DIR (the same path on the host as here):
 *
 *   DIR/lib/tailscale-cni-worker.elf  DIR/lib/<every library>  DIR/lib/<loader>
 *   DIR/bin/tailscale-cni-worker      #!/bin/sh: exec the loader with
 *                                     --library-path DIR/lib on the .elf
 *
 * so the worker never depends on the host's libc. A new tree is built in
 * DIR/.new.<pid> and swapped in with one rename per folder (lib, then bin;
 * the previous ones stay as lib.old and bin.old until the next install), so
 * a zygote re-exec'ing the wrapper never sees a half-copied tree. */
#ifndef TSCNI_INSTALLER_WORKER_TREE_H
#define TSCNI_INSTALLER_WORKER_TREE_H

#include <stdbool.h>
#include <stddef.h>

enum worker_tree_limits {
	WORKER_TREE_MAX_LIBS = 256,
	ELF_INTERP_MAX = 256,
};

#define WORKER_TREE_BIN "tailscale-cni-worker"

/* The PT_INTERP of the ELF file at path into interp (ELF_INTERP_MAX):
 * 0 for a dynamically linked program, -ENOENT for a static one, -ENOEXEC
 * when path is not a 64-bit little-endian ELF file. */
int elf_interp(const char *path, char interp[static ELF_INTERP_MAX]);

/* Installs the tree for the worker binary elf under dir (absolute, no
 * quote or newline: it is written into the wrapper). *changed is false
 * when the tree already held exactly these files. 0 or -errno, logged. */
int worker_tree_install(const char *elf, const char *dir, bool *changed);

/* Removes what worker_tree_install made under dir (bin, lib, their .old
 * and any .new.* left by a killed run), then dir itself when empty. */
int worker_tree_remove(const char *dir);

#endif
