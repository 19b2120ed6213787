/* outstore.c — the output store's front (key checks, forwarding to the
 * backend) and its local-filesystem backend; see outstore.h.
 *
 * Local puts: the bytes go to a temporary file opened with O_EXCL under a
 * name no other writer can pick (pid, a per-process counter and 64 random
 * bits, so writers on other machines sharing the folder over NFS do not
 * collide either), are fsynced when asked, and the file is renamed over the
 * key. rename within one filesystem is atomic, also on NFS and CephFS, so
 * concurrent puts of one key leave one complete file (the last rename's),
 * and a writer killed at any point leaves at most its temporary file, never
 * a partial object under the key.
 *
 * Threads: any; a local store holds only immutable strings and the root's
 * descriptor (read by syncfs). The temp-name counter is atomic.
 */
#define _GNU_SOURCE
#include "store/outstore.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

#define KEY_MAX 1023

bool pm_outstore_key_ok(const char *key)
{
	size_t n, seg = 0;

	if (!key)
		return false;
	n = strlen(key);
	if (n == 0 || n > KEY_MAX || key[0] == '/' || key[n - 1] == '/')
		return false;
	for (size_t i = 0; i <= n; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c == '/' || c == '\0') {
			const char *s = key + seg;
			size_t l = i - seg;
			if (l == 0 || (l == 1 && s[0] == '.') ||
			    (l == 2 && s[0] == '.' && s[1] == '.'))
				return false;
			seg = i + 1;
		} else if (c < 0x20 || c == 0x7f || c == '\\') {
			return false;
		}
	}
	return true;
}

static pm_status bad_key(const char *key, pm_err *err)
{
	return pm_fail(err, PM_ERR_USAGE, "bad output key \"%.200s\"",
		       key ? key : "(null)");
}

pm_status pm_outstore_put(pm_outstore *os, const char *key, const void *buf,
			  size_t len, bool sync, pm_err *err)
{
	if (!pm_outstore_key_ok(key))
		return bad_key(key, err);
	return os->vt->put(os, key, buf, len, sync, err);
}

pm_status pm_outstore_stat(pm_outstore *os, const char *key, int64_t *size,
			   pm_err *err)
{
	*size = 0;
	if (!pm_outstore_key_ok(key))
		return bad_key(key, err);
	return os->vt->stat(os, key, size, err);
}

pm_status pm_outstore_exists(pm_outstore *os, const char *key, bool *exists,
			     pm_err *err)
{
	int64_t size;
	pm_err e;
	pm_status s = pm_outstore_stat(os, key, &size, &e);

	*exists = s == PM_OK;
	if (s == PM_ERR_NOT_FOUND)
		return PM_OK;
	if (s && err)
		*err = e;
	return s;
}

pm_status pm_outstore_get(pm_outstore *os, const char *key, uint64_t max,
			  void **buf, size_t *len, pm_err *err)
{
	*buf = NULL;
	*len = 0;
	if (!pm_outstore_key_ok(key))
		return bad_key(key, err);
	return os->vt->get(os, key, max, buf, len, err);
}

pm_status pm_outstore_open_fd(pm_outstore *os, const char *key, int *fd,
			      int64_t *size, pm_err *err)
{
	*fd = -1;
	*size = 0;
	if (!pm_outstore_key_ok(key))
		return bad_key(key, err);
	return os->vt->open_fd(os, key, fd, size, err);
}

pm_status pm_outstore_url(pm_outstore *os, const char *key, char *out, size_t n,
			  pm_err *err)
{
	if (n)
		out[0] = '\0';
	if (!pm_outstore_key_ok(key))
		return bad_key(key, err);
	return os->vt->url(os, key, out, n, err);
}

pm_status pm_outstore_flush(pm_outstore *os, pm_err *err)
{
	return os->vt->flush(os, err);
}

const char *pm_outstore_backend(const pm_outstore *os)
{
	return os->vt->name;
}

void pm_outstore_close(pm_outstore *os)
{
	if (os)
		os->vt->close(os);
}

/* ---- the local backend ---- */

typedef struct local_store {
	pm_outstore base; /* first: the handle callers hold */
	char root[PATH_MAX];
	char tmp[PATH_MAX]; /* "" = next to the key's file */
	int root_fd;	    /* for syncfs */
} local_store;

static const pm_outstore_vt local_vt;

/* root/key into out; false if it does not fit. */
static bool full_path(const local_store *l, const char *key, char *out,
		      size_t n)
{
	return (size_t)snprintf(out, n, "%s/%s", l->root, key) < n;
}

/* 16 hex digits no other writer of this folder picks: random bits (from the
 * kernel; the clock and a counter if it has none to give) mixed with a
 * per-process counter. */
static void unique_suffix(char out[17])
{
	static unsigned long counter;
	unsigned long c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
	uint64_t r = 0;
	struct timespec ts;

	if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
		clock_gettime(CLOCK_REALTIME, &ts);
		r = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^
		    (uint64_t)ts.tv_sec;
	}
	r ^= (uint64_t)c * 0xbf58476d1ce4e5b9ull;
	snprintf(out, 17, "%016llx", (unsigned long long)r);
}

/* Makes the folder holding path (path's text up to its last '/'). */
static pm_status make_parent(const char *path, pm_err *err)
{
	char dir[PATH_MAX * 2];
	const char *slash = strrchr(path, '/');

	if (!slash || slash == path || (size_t)(slash - path) >= sizeof dir)
		return pm_fail(err, PM_ERR_IO, "no folder for %s", path);
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return pm_mkdirs(dir, err);
}

/* Creates a new temporary file for final (O_EXCL), its name in tmp. */
static pm_status open_tmp(const local_store *l, const char *final, char *tmp,
			  size_t n, int *fd, pm_err *err)
{
	const char *base = strrchr(final, '/') + 1;
	char sfx[17];
	bool made = false;

	for (int attempt = 0; attempt < 8; attempt++) {
		size_t w;

		unique_suffix(sfx);
		if (l->tmp[0])
			w = (size_t)snprintf(tmp, n, "%s/%ld.%s.tmp", l->tmp,
					     (long)getpid(), sfx);
		else /* "DIR/.NAME.SFX.tmp": hidden from listings */
			w = (size_t)snprintf(tmp, n, "%.*s.%s.%s.tmp",
					     (int)(base - final), final, base,
					     sfx);
		if (w >= n)
			return pm_fail(err, PM_ERR_IO, "path too long: %s",
				       final);
		*fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (*fd >= 0)
			return PM_OK;
		if (errno == EEXIST)
			continue;
		if (errno == ENOENT && !l->tmp[0] && !made) {
			pm_status s = make_parent(final, err);
			if (s)
				return s;
			made = true;
			attempt--;
			continue;
		}
		return pm_fail(err, PM_ERR_IO, "create %s: %s", tmp,
			       strerror(errno));
	}
	return pm_fail(err, PM_ERR_IO, "create a temporary file for %s: %s",
		       final, strerror(EEXIST));
}

static pm_status local_put(pm_outstore *os, const char *key, const void *buf,
			   size_t len, bool sync, pm_err *err)
{
	local_store *l = (local_store *)os;
	char final[PATH_MAX * 2], tmp[PATH_MAX * 2 + 64];
	int fd = -1, e;
	pm_status s;

	if (!full_path(l, key, final, sizeof final))
		return pm_fail(err, PM_ERR_IO, "path too long: %s/%.200s",
			       l->root, key);
	s = open_tmp(l, final, tmp, sizeof tmp, &fd, err);
	if (!s)
		s = pm_write_tmp_fd(fd, tmp, buf, len, sync, err);
	if (s)
		return s;
	if (!rename(tmp, final))
		return PM_OK;
	if (errno == ENOENT && l->tmp[0]) {
		/* the key's folder is missing (the temporary file is ours
		 * and still there): make it and try once more */
		s = make_parent(final, err);
		if (s) {
			unlink(tmp);
			return s;
		}
		if (!rename(tmp, final))
			return PM_OK;
	}
	e = errno;
	unlink(tmp);
	return pm_fail(err, PM_ERR_IO, "rename to %s: %s", final, strerror(e));
}

static pm_status local_stat(pm_outstore *os, const char *key, int64_t *size,
			    pm_err *err)
{
	local_store *l = (local_store *)os;
	char path[PATH_MAX * 2];
	struct stat st;

	if (!full_path(l, key, path, sizeof path))
		return pm_fail(err, PM_ERR_IO, "path too long: %.200s", key);
	if (stat(path, &st))
		return pm_fail(err,
			       errno == ENOENT || errno == ENOTDIR
				   ? PM_ERR_NOT_FOUND
				   : PM_ERR_IO,
			       "stat %s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return pm_fail(err, PM_ERR_NOT_FOUND,
			       "%s is not a regular file", path);
	*size = (int64_t)st.st_size;
	return PM_OK;
}

static pm_status local_get(pm_outstore *os, const char *key, uint64_t max,
			   void **buf, size_t *len, pm_err *err)
{
	local_store *l = (local_store *)os;
	char path[PATH_MAX * 2];

	if (!full_path(l, key, path, sizeof path))
		return pm_fail(err, PM_ERR_IO, "path too long: %.200s", key);
	return pm_read_file(path, max, buf, len, err);
}

static pm_status local_open_fd(pm_outstore *os, const char *key, int *fd,
			       int64_t *size, pm_err *err)
{
	local_store *l = (local_store *)os;
	char path[PATH_MAX * 2];
	struct stat st;
	int f;

	if (!full_path(l, key, path, sizeof path))
		return pm_fail(err, PM_ERR_IO, "path too long: %.200s", key);
	f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return pm_fail(err,
			       errno == ENOENT || errno == ENOTDIR
				   ? PM_ERR_NOT_FOUND
				   : PM_ERR_IO,
			       "open %s: %s", path, strerror(errno));
	if (fstat(f, &st) || !S_ISREG(st.st_mode)) {
		close(f);
		return pm_fail(err, PM_ERR_NOT_FOUND,
			       "%s is not a regular file", path);
	}
	*fd = f;
	*size = (int64_t)st.st_size;
	return PM_OK;
}

static pm_status local_url(pm_outstore *os, const char *key, char *out,
			   size_t n, pm_err *err)
{
	local_store *l = (local_store *)os;
	static const char hex[] = "0123456789ABCDEF";
	char path[PATH_MAX * 2];
	size_t o = 0;

	if (!full_path(l, key, path, sizeof path))
		return pm_fail(err, PM_ERR_IO, "path too long: %.200s", key);
	if (n < 8)
		return pm_fail(err, PM_ERR_TOO_LARGE, "no room for a URL");
	memcpy(out, "file://", 7);
	o = 7;
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		bool plain = (*p >= 'a' && *p <= 'z') ||
			     (*p >= 'A' && *p <= 'Z') ||
			     (*p >= '0' && *p <= '9') || strchr("/-._~", *p);
		if (o + (plain ? 1 : 3) >= n) {
			out[0] = '\0';
			return pm_fail(err, PM_ERR_TOO_LARGE,
				       "the URL of %.200s is too long", key);
		}
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return PM_OK;
}

static pm_status local_flush(pm_outstore *os, pm_err *err)
{
	local_store *l = (local_store *)os;

	if (syncfs(l->root_fd))
		return pm_fail(err, PM_ERR_IO, "syncfs %s: %s", l->root,
			       strerror(errno));
	return PM_OK;
}

static void local_close(pm_outstore *os)
{
	local_store *l = (local_store *)os;

	if (l->root_fd >= 0)
		close(l->root_fd);
	free(l);
}

static const pm_outstore_vt local_vt = {
    .name = "local",
    .put = local_put,
    .stat = local_stat,
    .get = local_get,
    .open_fd = local_open_fd,
    .url = local_url,
    .flush = local_flush,
    .close = local_close,
};

pm_status pm_outstore_local_open(const char *root, const char *tmp_dir,
				 pm_outstore **out, pm_err *err)
{
	local_store *l;
	struct stat rs, ts;

	*out = NULL;
	l = calloc(1, sizeof *l);
	if (!l)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	l->base.vt = &local_vt;
	l->root_fd = -1;
	if (!realpath(root, l->root)) {
		int e = errno;
		free(l);
		return pm_fail(err, e == ENOENT ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			       "output folder %s: %s", root, strerror(e));
	}
	l->root_fd = open(l->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->root_fd < 0 || fstat(l->root_fd, &rs)) {
		int e = errno;
		local_close(&l->base);
		return pm_fail(err, PM_ERR_IO, "output folder %s: %s", root,
			       strerror(e));
	}
	if (tmp_dir) {
		int e = 0;
		if (!realpath(tmp_dir, l->tmp) || stat(l->tmp, &ts))
			e = errno;
		else if (!S_ISDIR(ts.st_mode))
			e = ENOTDIR;
		if (e) {
			local_close(&l->base);
			return pm_fail(err, PM_ERR_IO,
				       "temporary folder %s: %s", tmp_dir,
				       strerror(e));
		}
		if (ts.st_dev != rs.st_dev) {
			local_close(&l->base);
			return pm_fail(err, PM_ERR_USAGE,
				       "temporary folder %s is not on the "
				       "filesystem of %s: a rename between "
				       "them would not be atomic",
				       tmp_dir, root);
		}
	}
	*out = &l->base;
	return PM_OK;
}
