/* The worker's tree on the host (worker_tree.h). */
#include "worker_tree.h"

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"
#include "log.h"
#include "mem.h"
#include "subprocess.h"

int elf_interp(const char *path, char interp[static ELF_INTERP_MAX])
{
	Elf64_Ehdr eh;
	Elf64_Phdr ph;
	int fd, ret = -ENOENT;

	interp[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pread(fd, &eh, sizeof(eh), 0) != (ssize_t)sizeof(eh) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh.e_ident[EI_DATA] != ELFDATA2LSB || eh.e_phentsize != sizeof(Elf64_Phdr) ||
	    eh.e_phnum > 256) {
		ret = -ENOEXEC;
		goto out;
	}
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		if (pread(fd, &ph, sizeof(ph), (off_t)(eh.e_phoff + i * sizeof(ph))) !=
		    (ssize_t)sizeof(ph)) {
			ret = -ENOEXEC;
			goto out;
		}
		if (ph.p_type != PT_INTERP)
			continue;
		if (ph.p_filesz < 2 || ph.p_filesz > ELF_INTERP_MAX ||
		    pread(fd, interp, ph.p_filesz, (off_t)ph.p_offset) != (ssize_t)ph.p_filesz ||
		    interp[ph.p_filesz - 1] != '\0' || interp[0] != '/') {
			interp[0] = '\0';
			ret = -ENOEXEC;
			goto out;
		}
		ret = 0;
		break;
	}
out:
	close(fd);
	return ret;
}

/* The libraries the loader resolves for elf, as ldd prints them ("\tname
 * => /path (0x...)"), into libs (absolute paths the caller frees). The
 * loader's own line and the vDSO have no "=> /" and are passed over. */
static int list_libs(const char *interp, const char *elf, char *libs[], size_t *n)
{
	char *argv[] = {(char *)interp, "--list", (char *)elf, NULL};
	char *out = NULL, *line, *next;
	size_t len;
	int ret;

	*n = 0;
	ret = subprocess_capture(argv, NULL, NULL, &out, &len);
	if (ret < 0) {
		log_err_r(ret, "%s --list %s", interp, elf);
		return ret;
	}
	for (line = out; line && *line; line = next) {
		char *arrow, *path, *end;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		arrow = strstr(line, "=> ");
		if (!arrow)
			continue;
		path = arrow + 3;
		if (strncmp(path, "not found", 9) == 0) {
			log_err("%s: a library it links is not found: %s", elf, line);
			ret = -ENOENT;
			break;
		}
		end = strstr(path, " (0x");
		if (path[0] != '/' || !end || (size_t)(end - path) >= PATH_MAX)
			continue;
		*end = '\0';
		if (*n == WORKER_TREE_MAX_LIBS) {
			log_err("%s links more than %d libraries", elf, WORKER_TREE_MAX_LIBS);
			ret = -E2BIG;
			break;
		}
		libs[(*n)++] = xstrdup(path);
	}
	free(out);
	if (ret < 0) {
		for (size_t i = 0; i < *n; i++)
			free(libs[i]);
		*n = 0;
	}
	return ret;
}

/* Removes the regular files and symlinks of dir (one level: our folders
 * hold nothing else), then dir. 0 when dir does not exist. */
static int remove_flat(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX];
	int ret = 0;

	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (files_path(p, sizeof(p), "%s/%s", dir, e->d_name) < 0 ||
		    (unlink(p) < 0 && errno != ENOENT)) {
			ret = -errno;
			log_warn_r(ret, "remove %s", p);
		}
	}
	closedir(d);
	if (rmdir(dir) < 0 && errno != ENOENT && ret == 0)
		ret = -errno;
	return ret;
}

/* Whether the folder path (DIR/bin, DIR/lib or their .old) is one this
 * code made, or does not exist: a bin folder holds exactly our wrapper, a
 * lib folder our .elf. Nothing else is ever renamed or emptied, so a
 * --worker-dir of / or /usr cannot cost the host its /bin or /lib. */
static bool folder_is_ours(const char *path, bool bin)
{
	DIR *d = opendir(path);
	struct dirent *e;
	bool found = false, other = false;

	if (!d)
		return errno == ENOENT;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (!strcmp(e->d_name, bin ? WORKER_TREE_BIN : WORKER_TREE_BIN ".elf"))
			found = true;
		else
			other = true;
	}
	closedir(d);
	return found && !(bin && other);
}

static bool sub_is_ours(const char *dir, const char *sub)
{
	char p[PATH_MAX];

	return files_path(p, sizeof(p), "%s/%s", dir, sub) == 0 && folder_is_ours(p, sub[0] == 'b');
}

/* Removes DIR/.new.* left by a run that was killed. */
static void remove_leftovers(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX], sub[PATH_MAX];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, ".new.", 5) != 0)
			continue;
		if (files_path(p, sizeof(p), "%s/%s", dir, e->d_name) < 0)
			continue;
		files_path(sub, sizeof(sub), "%s/bin", p);
		remove_flat(sub);
		files_path(sub, sizeof(sub), "%s/lib", p);
		remove_flat(sub);
		rmdir(p);
	}
	closedir(d);
}

/* Replaces DIR/<sub> by NEW/<sub>, keeping the previous one as <sub>.old. */
static int swap_in(const char *dir, const char *new, const char *sub)
{
	char cur[PATH_MAX], old[PATH_MAX], fresh[PATH_MAX];
	int ret;

	files_path(cur, sizeof(cur), "%s/%s", dir, sub);
	files_path(old, sizeof(old), "%s/%s.old", dir, sub);
	files_path(fresh, sizeof(fresh), "%s/%s", new, sub);
	ret = remove_flat(old);
	if (ret < 0)
		return ret;
	if (rename(cur, old) < 0 && errno != ENOENT)
		return -errno;
	if (rename(fresh, cur) < 0)
		return -errno;
	return 0;
}

/* How many entries folder path holds (. and .. aside); -1 when it cannot
 * be read. */
static int count_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/* The file src as ROOT/<sub>/<name>, mode 0755: copied there, or with
 * check, compared with what is there (*same cleared on a difference). */
static int put(const char *src, const char *root, const char *sub, const char *name, bool check,
	       bool *same)
{
	char p[PATH_MAX], *buf;
	size_t len;
	int ret;

	if (files_path(p, sizeof(p), "%s/%s/%s", root, sub, name) < 0)
		return -ENAMETOOLONG;
	if (!check)
		return files_copy(src, p, 0755, NULL);
	if (!*same)
		return 0;
	ret = files_read(src, FILES_MAX_COPY, &buf, &len, NULL, NULL, NULL);
	if (ret < 0) {
		log_err_r(ret, "read %s", src);
		return ret;
	}
	*same = files_same(p, buf, len, 0755);
	free(buf);
	return 0;
}

/* The tree for elf, whose wrapper names dir: written under root (a fresh
 * DIR/.new.<pid>), or with check compared with the tree installed in
 * root (= dir), *same saying whether it holds exactly these files. */
static int build(const char *elf, const char *dir, const char *root, bool check, bool *same)
{
	char interp[ELF_INTERP_MAX], real_interp[PATH_MAX], p[PATH_MAX],
		*libs[WORKER_TREE_MAX_LIBS];
	char wrapper[3 * PATH_MAX], *ld;
	size_t n = 0;
	int ret;

	*same = true;
	ret = elf_interp(elf, interp);
	if (ret < 0) {
		log_err_r(ret, "%s: no dynamic loader named in it (the worker tree needs one)",
			  elf);
		return ret;
	}
	if (!realpath(interp, real_interp)) {
		ret = -errno;
		log_err_r(ret, "%s: its loader %s", elf, interp);
		return ret;
	}
	ret = list_libs(interp, elf, libs, &n);
	if (ret < 0)
		return ret;
	ret = put(elf, root, "lib", WORKER_TREE_BIN ".elf", check, same);
	for (size_t i = 0; i < n; i++) {
		char b[PATH_MAX];

		strscpy(b, libs[i], sizeof(b));
		if (ret == 0)
			ret = put(libs[i], root, "lib", basename(b), check, same);
		free(libs[i]);
	}
	if (ret < 0)
		return ret;
	/* The loader under the name the program asks for (a symlink on the
	 * image: its target is copied). */
	ld = basename(interp);
	ret = put(real_interp, root, "lib", ld, check, same);
	if (ret < 0)
		return ret;
	snprintf(wrapper, sizeof(wrapper),
		 "#!/bin/sh\nexec '%s/lib/%s' --library-path '%s/lib' '%s/lib/" WORKER_TREE_BIN
		 ".elf' \"$@\"\n",
		 dir, ld, dir, dir);
	files_path(p, sizeof(p), "%s/bin/" WORKER_TREE_BIN, root);
	if (!check)
		return files_write(p, wrapper, strlen(wrapper), 0755, (uid_t)-1, (gid_t)-1, NULL);
	/* Nothing more in lib than the .elf, the libraries and the loader. */
	if (*same)
		*same = files_same(p, wrapper, strlen(wrapper), 0755);
	files_path(p, sizeof(p), "%s/lib", root);
	if (*same)
		*same = count_entries(p) == (int)n + 2;
	return 0;
}

int worker_tree_install(const char *elf, const char *dir, bool *changed)
{
	char new[PATH_MAX], p[PATH_MAX], q[PATH_MAX];
	bool same;
	int ret;

	*changed = false;
	if (dir[0] != '/' || strpbrk(dir, "'\n") || strlen(dir) > PATH_MAX / 4) {
		log_err("--worker-dir %s: an absolute path without quotes or newlines is needed",
			dir);
		return -EINVAL;
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		ret = -errno;
		log_err_r(ret, "create %s", dir);
		return ret;
	}
	if (!sub_is_ours(dir, "bin") || !sub_is_ours(dir, "lib") || !sub_is_ours(dir, "bin.old") ||
	    !sub_is_ours(dir, "lib.old")) {
		log_err("--worker-dir %s: its bin/ or lib/ holds files that are not a worker tree "
			"of ours: refusing to replace them",
			dir);
		return -EEXIST;
	}
	remove_leftovers(dir);
	/* Compared first: an init container restarted on a node whose tree
	 * is current writes nothing. */
	ret = build(elf, dir, dir, true, &same);
	if (ret < 0)
		return ret;
	if (same)
		return 0;
	files_path(new, sizeof(new), "%s/.new.%d", dir, (int)getpid());
	files_path(p, sizeof(p), "%s/bin", new);
	files_path(q, sizeof(q), "%s/lib", new);
	if (mkdir(new, 0755) < 0 || mkdir(p, 0755) < 0 || mkdir(q, 0755) < 0) {
		ret = -errno;
		log_err_r(ret, "create %s", new);
		goto out;
	}
	ret = build(elf, dir, new, false, &same);
	if (ret < 0)
		goto out;
	/* lib first: the wrapper in place (old or new) then always finds a
	 * complete lib folder. */
	ret = swap_in(dir, new, "lib");
	if (ret == 0)
		ret = swap_in(dir, new, "bin");
	if (ret < 0) {
		log_err_r(ret, "swap the new worker tree into %s", dir);
		goto out;
	}
	*changed = true;
	ret = files_sync_dir(dir);
out:
	remove_flat(p);
	remove_flat(q);
	rmdir(new);
	return ret;
}

int worker_tree_remove(const char *dir)
{
	static const char *const subs[] = {"bin", "lib", "bin.old", "lib.old"};
	char p[PATH_MAX];
	int ret = 0, r;

	remove_leftovers(dir);
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		files_path(p, sizeof(p), "%s/%s", dir, subs[i]);
		if (!sub_is_ours(dir, subs[i])) {
			log_warn("%s: left in place: not a worker tree of ours", p);
			continue;
		}
		r = remove_flat(p);
		if (r < 0 && ret == 0)
			ret = r;
	}
	if (rmdir(dir) < 0 && errno != ENOENT) {
		if (errno == ENOTEMPTY || errno == EEXIST)
			log_warn("%s: left in place: it holds files that are not ours", dir);
		else if (ret == 0)
			ret = -errno;
	}
	return ret;
}
