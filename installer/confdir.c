/* The runtime's CNI configuration directory (confdir.h). */
#include "confdir.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"
#include "log.h"
#include "mem.h"

/* The extensions libcni reads (ConfFiles), in no particular order. */
static const char *const exts[] = {".conflist", ".conf", ".json"};

/* A message into why (CONFDIR_WHY_LEN), truncated if it must be. */
static void say(char *why, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(char *why, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, CONFDIR_WHY_LEN, fmt, ap);
	va_end(ap);
}

static const char *ext_of(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
		size_t e = strlen(exts[i]);

		if (n > e && strcmp(name + n - e, exts[i]) == 0)
			return exts[i];
	}
	return NULL;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The configuration file names of dir in byte order (Go's sort.Strings,
 * what go-cni and ocicni use). At most CONFDIR_MAX_ENTRIES entries are
 * read and CONFDIR_MAX_FILES kept (-E2BIG beyond). */
static int scan(const char *dir, char ***out, size_t *n, char *why)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL, p[PATH_MAX];
	size_t seen = 0;
	int ret = 0;

	*out = NULL;
	*n = 0;
	if (!d) {
		ret = -errno;
		say(why, "%s: %s", dir, strerror(-ret));
		return ret == -ENOTDIR ? -EINVAL : ret;
	}
	names = xcalloc(CONFDIR_MAX_FILES, sizeof(*names));
	while ((e = readdir(d))) {
		if (++seen > CONFDIR_MAX_ENTRIES) {
			say(why, "%s: more than %d entries", dir, CONFDIR_MAX_ENTRIES);
			ret = -E2BIG;
			break;
		}
		if (!ext_of(e->d_name))
			continue;
		if (files_path(p, sizeof(p), "%s/%s", dir, e->d_name) < 0 || is_dir(p))
			continue;
		if (*n == CONFDIR_MAX_FILES) {
			say(why, "%s: more than %d configuration files", dir, CONFDIR_MAX_FILES);
			ret = -E2BIG;
			break;
		}
		names[(*n)++] = xstrdup(e->d_name);
	}
	closedir(d);
	if (ret < 0) {
		free_names(names, *n);
		*n = 0;
		return ret;
	}
	qsort(names, *n, sizeof(*names), cmp_names);
	*out = names;
	return 0;
}

/* One configuration file, read and parsed. */
struct conffile {
	char path[PATH_MAX];
	char *bytes;
	size_t len;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct conflist cl;
};

static void conffile_destroy(struct conffile *f)
{
	free(f->bytes);
	f->bytes = NULL;
	conflist_destroy(&f->cl);
}

/* Reads and parses dir/name; the shape must match the extension (a
 * .conflist a list, a .conf or .json one plugin). why: "<path>: <what>". */
static int conffile_load(const char *dir, const char *name, struct conffile *f, char *why)
{
	char w[CONFLIST_WHY_LEN];
	const char *ext = ext_of(name);
	int ret;

	*f = (struct conffile){0};
	if (files_path(f->path, sizeof(f->path), "%s/%s", dir, name) < 0) {
		say(why, "%s/%s: path too long", dir, name);
		return -EINVAL;
	}
	ret = files_read(f->path, CONFLIST_MAX_LEN, &f->bytes, &f->len, &f->mode, &f->uid, &f->gid);
	if (ret < 0) {
		say(why, "%s: %s", f->path,
		    ret == -EFBIG    ? "larger than 1 MiB"
		    : ret == -EINVAL ? "not a regular file"
				     : strerror(-ret));
		return ret == -ENOENT ? -EAGAIN : -EINVAL;
	}
	ret = conflist_parse(f->bytes, f->len, &f->cl, w);
	if (ret < 0) {
		say(why, "%s: %s", f->path, w);
		conffile_destroy(f);
		return -EINVAL;
	}
	if (ext && strcmp(ext, ".conflist") == 0 && f->cl.single) {
		say(why,
		    "%s: a .conflist without a \"plugins\" list (runtimes read .conflist "
		    "files as lists)",
		    f->path);
		conffile_destroy(f);
		return -EINVAL;
	}
	if (ext && strcmp(ext, ".conflist") != 0 && !f->cl.single) {
		say(why,
		    "%s: a \"plugins\" list in a %s file (runtimes read those as one "
		    "plugin; a list belongs in a .conflist)",
		    f->path, ext);
		conffile_destroy(f);
		return -EINVAL;
	}
	return 0;
}

/* The new content of f: its document printed; written with f's mode and
 * owner. */
static int conffile_write(const struct conffile *f, const char *path, bool *written)
{
	size_t len;
	char *text = conflist_dump(f->cl.root, &len);
	int ret;

	if (!text)
		return -ENOMEM;
	ret = files_write(path, text, len, f->mode, f->uid, f->gid, written);
	free(text);
	return ret;
}

/* A network name used as a folder name must be one path component. */
static bool name_is_component(const char *name)
{
	return !strchr(name, '/') && strcmp(name, ".") && strcmp(name, "..");
}

/* The single-plugin file f, now wrapped into a list (cl after
 * conflist_add), written as <stem>.conflist with the original kept
 * beside it, then the original removed: never both in place. */
static int convert(const char *dir, const char *name, const struct conffile *f,
		   struct confdir_result *res, char *why)
{
	const char *ext = ext_of(name);
	char orig[PATH_MAX];
	size_t stem = strlen(name) - strlen(ext);
	int ret;

	if (files_path(res->file, sizeof(res->file), "%s/%.*s.conflist", dir, (int)stem, name) <
		    0 ||
	    files_path(orig, sizeof(orig), "%s/%s" CONFDIR_ORIG_SUFFIX, dir, name) < 0) {
		say(why, "%s: path too long", f->path);
		return -EINVAL;
	}
	if (access(res->file, F_OK) == 0 && access(orig, F_OK) != 0) {
		say(why,
		    "%s: a single-plugin file, and %s exists beside it: refusing to "
		    "replace a file that is not ours",
		    f->path, res->file);
		return -EINVAL;
	}
	ret = files_write(orig, f->bytes, f->len, f->mode, f->uid, f->gid, NULL);
	if (ret == 0)
		ret = conffile_write(f, res->file, &res->written);
	if (ret == 0)
		ret = files_remove(f->path);
	if (ret < 0) {
		say(why, "%s: converting it to %s failed: %s", f->path, res->file, strerror(-ret));
		return ret;
	}
	res->written = true;
	log_info("%s: a single plugin; now %s with tailscale-cni chained (the original is kept "
		 "as %s for uninstall)",
		 f->path, res->file, orig);
	return 0;
}

/* confdir_apply once; -EAGAIN when the primary vanished between the scan
 * and the read (its writer renamed or removed it). */
static int apply_once(const char *dir, enum confdir_mode mode, const json_t *ours,
		      confdir_version_fn *check, void *check_arg, struct confdir_result *res,
		      char why[static CONFDIR_WHY_LEN])
{
	struct conffile f = {0};
	char **names = NULL, dropin_dir[PATH_MAX], dropin[PATH_MAX], w[CONFLIST_WHY_LEN];
	size_t n = 0;
	bool use_dropin, changed, was_single;
	int ret;

	*res = (struct confdir_result){0};
	ret = scan(dir, &names, &n, why);
	if (ret < 0)
		return ret;
	if (n == 0) {
		say(why, "%s: no *.conflist, *.conf or *.json yet", dir);
		ret = -ENOENT;
		goto out;
	}
	ret = conffile_load(dir, names[0], &f, why);
	if (ret < 0)
		goto out;
	if (conflist_is_multus(&f.cl)) {
		say(why,
		    "%s: Multus's generated configuration, which Multus rewrites: chain "
		    "tailscale-cni in the delegate network's conflist, or point "
		    "--cni-conf-dir at Multus's",
		    f.path);
		ret = -EINVAL;
		goto out;
	}
	if (files_path(dropin_dir, sizeof(dropin_dir), "%s/%s", dir, f.cl.name) < 0 ||
	    files_path(dropin, sizeof(dropin), "%s/" CONFDIR_DROPIN_FILE, dropin_dir) < 0) {
		say(why, "%s: the network name makes too long a path", f.path);
		ret = -EINVAL;
		goto out;
	}
	if (mode == CONFDIR_DROPIN &&
	    (f.cl.single || conflist_inline_only(&f.cl) || !name_is_component(f.cl.name))) {
		say(why,
		    "%s: --mode drop-in needs a .conflist without \"loadOnlyInlinedPlugins\" "
		    "whose name is a folder name (runtimes read no drop-in for %s)",
		    f.path, f.cl.single ? "a single-plugin file" : "this list");
		ret = -EINVAL;
		goto out;
	}
	use_dropin = mode == CONFDIR_DROPIN ||
		     (mode == CONFDIR_AUTO && !f.cl.single && !conflist_inline_only(&f.cl) &&
		      name_is_component(f.cl.name) && is_dir(dropin_dir));
	if (check) {
		ret = check(check_arg, f.cl.version, w);
		if (ret < 0) {
			say(why, "%s: %s", f.path, w);
			goto out;
		}
	}
	if (use_dropin) {
		size_t len;
		char *text = conflist_dump(ours, &len);

		res->dropin = true;
		strscpy(res->file, dropin, sizeof(res->file));
		if (mkdir(dropin_dir, 0755) < 0 && errno != EEXIST) {
			ret = -errno;
		} else {
			ret = text ? files_write(dropin, text, len, 0644, (uid_t)-1, (gid_t)-1,
						 &res->written)
				   : -ENOMEM;
		}
		free(text);
		if (ret < 0) {
			say(why, "%s: %s", dropin, strerror(-ret));
			goto out;
		}
		/* Ours in the list too would run the plugin twice. */
		if (conflist_count_ours(&f.cl) && conflist_remove(&f.cl, &changed, w) == 0 &&
		    changed) {
			ret = conffile_write(&f, f.path, NULL);
			if (ret < 0)
				say(why, "%s: removing our entry (the drop-in holds it): %s",
				    f.path, strerror(-ret));
			else
				log_info("%s: our entry removed: the drop-in %s holds it", f.path,
					 dropin);
		}
		goto out;
	}
	was_single = f.cl.single;
	ret = conflist_add(&f.cl, ours, &changed, w);
	if (ret < 0) {
		say(why, "%s: %s", f.path, w);
		goto out;
	}
	if (was_single) {
		/* conflist_add wrapped it into a list. */
		ret = convert(dir, names[0], &f, res, why);
	} else {
		strscpy(res->file, f.path, sizeof(res->file));
		ret = changed ? conffile_write(&f, f.path, &res->written) : 0;
		if (ret < 0)
			say(why, "%s: %s", f.path, strerror(-ret));
	}
	if (ret == 0 && name_is_component(f.cl.name) && access(dropin, F_OK) == 0 &&
	    files_remove(dropin) == 0)
		log_info("%s: removed: the list %s holds our entry", dropin, res->file);
out:
	conffile_destroy(&f);
	free_names(names, n);
	return ret;
}

int confdir_apply(const char *dir, enum confdir_mode mode, const json_t *ours,
		  confdir_version_fn *check, void *check_arg, struct confdir_result *res,
		  char why[static CONFDIR_WHY_LEN])
{
	int ret = -EAGAIN;

	for (int i = 0; i < 3 && ret == -EAGAIN; i++)
		ret = apply_once(dir, mode, ours, check, check_arg, res, why);
	return ret;
}

/* Our drop-in in every folder of dir. */
static void remove_dropins(const char *dir, bool *clean)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[PATH_MAX];
	size_t seen = 0;

	if (!d)
		return;
	while ((e = readdir(d)) && ++seen <= CONFDIR_MAX_ENTRIES) {
		if (e->d_name[0] == '.' ||
		    files_path(p, sizeof(p), "%s/%s/" CONFDIR_DROPIN_FILE, dir, e->d_name) < 0 ||
		    access(p, F_OK) != 0)
			continue;
		if (files_remove(p) < 0)
			*clean = false;
		else
			log_info("%s: removed", p);
	}
	closedir(d);
}

/* The original of a list we converted: <stem>.conf or .json + suffix. */
static bool find_orig(const char *dir, const char *name, char *orig, size_t n, char *restored,
		      size_t rn)
{
	size_t stem = strlen(name) - strlen(".conflist");

	for (size_t i = 1; i < sizeof(exts) / sizeof(exts[0]); i++) {
		if (files_path(restored, rn, "%s/%.*s%s", dir, (int)stem, name, exts[i]) == 0 &&
		    files_path(orig, n, "%s" CONFDIR_ORIG_SUFFIX, restored) == 0 &&
		    access(orig, F_OK) == 0)
			return true;
	}
	return false;
}

/* Our entry out of one list, or the converted list back to its .conf. */
static void remove_from(const char *dir, const char *name, bool *clean)
{
	struct conffile f, o = {0};
	char why[CONFDIR_WHY_LEN], w[CONFLIST_WHY_LEN], orig[PATH_MAX], restored[PATH_MAX];
	bool changed, have_orig = false;
	int ret;

	ret = conffile_load(dir, name, &f, why);
	if (ret < 0) {
		char p[PATH_MAX], *raw = NULL;
		size_t len;

		/* A file we cannot parse may still name us: keep the binary.
		 * One that is gone names nobody. */
		ret = files_path(p, sizeof(p), "%s/%s", dir, name);
		if (ret == 0)
			ret = files_read(p, CONFLIST_MAX_LEN, &raw, &len, NULL, NULL, NULL);
		if (ret == -ENOENT)
			return;
		if (ret < 0 || memmem(raw, len, CONFLIST_OUR_TYPE, strlen(CONFLIST_OUR_TYPE))) {
			log_warn("%s (left as it is)", why);
			*clean = false;
		}
		free(raw);
		return;
	}
	if (conflist_count_ours(&f.cl) == 0)
		goto out;
	if (strcmp(ext_of(name), ".conflist") == 0 &&
	    find_orig(dir, name, orig, sizeof(orig), restored, sizeof(restored))) {
		/* Its name ends in .tailscale-cni-orig: no extension rule. */
		have_orig = conffile_load(dir, strrchr(orig, '/') + 1, &o, why) == 0 && o.cl.single;
	}
	if (have_orig && conflist_is_wrap_of(&f.cl, &o.cl) && access(restored, F_OK) != 0) {
		/* The original first (it sorts before the list, so the
		 * runtime reads it from now on), then the list goes. */
		ret = files_write(restored, o.bytes, o.len, o.mode, o.uid, o.gid, NULL);
		if (ret == 0)
			ret = files_remove(f.path);
		if (ret == 0)
			ret = files_remove(orig);
		if (ret < 0)
			*clean = false;
		else
			log_info("%s: restored from %s; %s removed", restored, orig, f.path);
		goto out;
	}
	ret = conflist_remove(&f.cl, &changed, w);
	if (ret < 0) {
		log_warn("%s: %s (left as it is)", f.path, w);
		*clean = false;
		goto out;
	}
	ret = conffile_write(&f, f.path, NULL);
	if (ret < 0) {
		*clean = false;
		goto out;
	}
	log_info("%s: our entry removed", f.path);
	if (have_orig)
		files_remove(orig); /* changed since: it can no longer be put back */
out:
	conffile_destroy(&o);
	conffile_destroy(&f);
}

int confdir_remove(const char *dir, enum confdir_mode mode, bool *clean)
{
	char why[CONFDIR_WHY_LEN], **names = NULL;
	size_t n = 0;
	int ret;

	*clean = true;
	if (mode != CONFDIR_CONFLIST)
		remove_dropins(dir, clean);
	if (mode == CONFDIR_DROPIN)
		return 0;
	ret = scan(dir, &names, &n, why);
	if (ret == -ENOENT)
		return 0;
	if (ret < 0) {
		log_err("%s", why);
		*clean = false;
		return ret;
	}
	for (size_t i = 0; i < n; i++)
		remove_from(dir, names[i], clean);
	free_names(names, n);
	return 0;
}
