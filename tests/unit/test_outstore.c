/* test_outstore.c — unit tests for the output store (src/store/outstore.c):
 * key checks, put/stat/exists/get/open_fd/url/flush on the local backend,
 * concurrent puts of one key and of different keys from threads and from
 * forked processes into one root (every object complete and
 * byte-identical, no temporary file left), and a writer killed in the middle
 * of a put (no partial object under the key).
 *
 * Threads: CHECK runs on the main thread only; the writer threads report
 * through their own result fields, and forked children through their exit
 * status.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "store/outstore.h"
#include "test.h"

#define N_KEYS	 6
#define N_THREAD 4
#define N_PROC	 3
#define ROUNDS	 25

static char root[256], tmp[300];

/* Deterministic content of key number k: a few hundred KiB, so a put takes
 * several writes and a reader racing a writer would see a partial file if
 * puts were not atomic. */
static unsigned char *content(int k, size_t *len)
{
	size_t n = (size_t)(150000 + k * 37001);
	unsigned char *b = malloc(n);
	uint32_t x = 2463534242u + (uint32_t)k;

	for (size_t i = 0; b && i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		b[i] = (unsigned char)x;
	}
	*len = n;
	return b;
}

static void key_of(int k, char *out, size_t n)
{
	/* the engine's layout: aa/bb/<sha>-<pipeline>/<name> */
	snprintf(out, n, "%02x/%02x/%02x%02x%060d-0123456789ab/%d.webp", k,
		 k + 1, k, k + 1, k, 100 * (k + 1));
}

/* Files in folder d whose name ends in ".tmp", recursively. */
static int count_tmp(const char *d)
{
	DIR *dir = opendir(d);
	struct dirent *de;
	int n = 0;

	if (!dir)
		return 0;
	while ((de = readdir(dir))) {
		char p[1024];
		size_t l = strlen(de->d_name);
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", d, de->d_name);
		if (lstat(p, &st))
			continue;
		if (S_ISDIR(st.st_mode))
			n += count_tmp(p);
		else if (l > 4 && !strcmp(de->d_name + l - 4, ".tmp"))
			n++;
	}
	closedir(dir);
	return n;
}

/* Whether key holds exactly content(k). */
static bool object_is(pm_outstore *os, const char *key, int k)
{
	size_t want_len, len;
	unsigned char *want = content(k, &want_len);
	void *got = NULL;
	pm_err e;
	bool ok =
	    pm_outstore_get(os, key, 64u << 20, &got, &len, &e) == PM_OK &&
	    len == want_len && memcmp(got, want, len) == 0;

	free(want);
	free(got);
	return ok;
}

static void test_keys(void)
{
	CHECK(pm_outstore_key_ok("ab/cd/abcd-0123/512.webp"));
	CHECK(pm_outstore_key_ok("a"));
	CHECK(pm_outstore_key_ok("a..b/c"));
	CHECK(!pm_outstore_key_ok(NULL));
	CHECK(!pm_outstore_key_ok(""));
	CHECK(!pm_outstore_key_ok("/etc/passwd"));
	CHECK(!pm_outstore_key_ok("a/../../etc"));
	CHECK(!pm_outstore_key_ok(".."));
	CHECK(!pm_outstore_key_ok("a/./b"));
	CHECK(!pm_outstore_key_ok("a//b"));
	CHECK(!pm_outstore_key_ok("a/"));
	CHECK(!pm_outstore_key_ok("a\\b"));
	CHECK(!pm_outstore_key_ok("a\nb"));
	{
		char big[1100];
		memset(big, 'x', sizeof big - 1);
		big[sizeof big - 1] = '\0';
		CHECK(!pm_outstore_key_ok(big));
		big[1023] = '\0';
		CHECK(pm_outstore_key_ok(big));
	}
}

static void test_basic(void)
{
	pm_outstore *os = NULL, *bad = NULL;
	pm_err e;
	bool ex = true;
	int64_t size = -1;
	void *buf = NULL;
	size_t len = 0;
	int fd = -1;
	char url[512], want[600], path[600];
	struct stat st;

	CHECK_INT(pm_outstore_local_open(root, tmp, &os, &e), PM_OK);
	if (!os)
		return;
	CHECK_STR(pm_outstore_backend(os), "local");
	CHECK_INT(pm_outstore_exists(os, "x/y/a.bin", &ex, &e), PM_OK);
	CHECK(!ex);
	CHECK_INT(pm_outstore_stat(os, "x/y/a.bin", &size, &e),
		  PM_ERR_NOT_FOUND);
	CHECK_INT(pm_outstore_get(os, "x/y/a.bin", 100, &buf, &len, &e),
		  PM_ERR_NOT_FOUND);
	CHECK_INT(pm_outstore_open_fd(os, "x/y/a.bin", &fd, &size, &e),
		  PM_ERR_NOT_FOUND);
	CHECK_INT(fd, -1);
	/* the key's folders are made by the put */
	CHECK_INT(pm_outstore_put(os, "x/y/a.bin", "hello", 5, true, &e),
		  PM_OK);
	CHECK_INT(pm_outstore_exists(os, "x/y/a.bin", &ex, &e), PM_OK);
	CHECK(ex);
	CHECK_INT(pm_outstore_stat(os, "x/y/a.bin", &size, &e), PM_OK);
	CHECK_INT(size, 5);
	CHECK_INT(pm_outstore_get(os, "x/y/a.bin", 100, &buf, &len, &e), PM_OK);
	CHECK(len == 5 && buf && memcmp(buf, "hello", 5) == 0);
	free(buf);
	CHECK_INT(pm_outstore_get(os, "x/y/a.bin", 4, &buf, &len, &e),
		  PM_ERR_TOO_LARGE);
	CHECK(buf == NULL);
	/* the same bytes again: fine; other bytes replace them whole */
	CHECK_INT(pm_outstore_put(os, "x/y/a.bin", "hello", 5, false, &e),
		  PM_OK);
	CHECK_INT(pm_outstore_put(os, "x/y/a.bin", "bye", 3, false, &e), PM_OK);
	CHECK_INT(pm_outstore_open_fd(os, "x/y/a.bin", &fd, &size, &e), PM_OK);
	CHECK_INT(size, 3);
	if (fd >= 0) {
		char b[8] = {0};
		CHECK_INT(read(fd, b, sizeof b), 3);
		CHECK_STR(b, "bye");
		close(fd);
	}
	/* an empty object */
	CHECK_INT(pm_outstore_put(os, "x/empty", "", 0, true, &e), PM_OK);
	CHECK_INT(pm_outstore_stat(os, "x/empty", &size, &e), PM_OK);
	CHECK_INT(size, 0);
	/* a folder is not an object */
	CHECK_INT(pm_outstore_stat(os, "x/y", &size, &e), PM_ERR_NOT_FOUND);
	CHECK_INT(pm_outstore_open_fd(os, "x/y", &fd, &size, &e),
		  PM_ERR_NOT_FOUND);
	/* hostile keys never reach the filesystem */
	CHECK_INT(pm_outstore_put(os, "../escape", "x", 1, false, &e),
		  PM_ERR_USAGE);
	CHECK_INT(pm_outstore_get(os, "/etc/passwd", 100, &buf, &len, &e),
		  PM_ERR_USAGE);
	CHECK_INT(pm_outstore_open_fd(os, "a/../../x", &fd, &size, &e),
		  PM_ERR_USAGE);
	CHECK_INT(pm_outstore_exists(os, "", &ex, &e), PM_ERR_USAGE);
	snprintf(path, sizeof path, "%s/../escape", root);
	CHECK(access(path, F_OK) != 0);
	/* url: file:// and the absolute path, percent-encoded */
	CHECK_INT(pm_outstore_url(os, "x/y/a.bin", url, sizeof url, &e), PM_OK);
	snprintf(want, sizeof want, "file://%s/x/y/a.bin", root);
	CHECK_STR(url, want);
	CHECK_INT(pm_outstore_url(os, "x/a b%.bin", url, sizeof url, &e),
		  PM_OK);
	CHECK(strstr(url, "/x/a%20b%25.bin") != NULL);
	CHECK_INT(pm_outstore_url(os, "x/y/a.bin", url, 12, &e),
		  PM_ERR_TOO_LARGE);
	CHECK_INT(pm_outstore_flush(os, &e), PM_OK);
	CHECK_INT(count_tmp(root), 0);
	pm_outstore_close(os);
	pm_outstore_close(NULL);

	/* opening: a missing root, a temp folder that is a file */
	CHECK_INT(pm_outstore_local_open("/nonexistent/pm-out", NULL, &bad, &e),
		  PM_ERR_NOT_FOUND);
	CHECK(bad == NULL);
	snprintf(path, sizeof path, "%s/x/empty", root);
	CHECK(pm_outstore_local_open(root, path, &bad, &e) != PM_OK);
	CHECK(bad == NULL);
	/* no temp folder: the temporary file sits next to the key's file,
	 * hidden, and is gone after the put */
	CHECK_INT(pm_outstore_local_open(root, NULL, &os, &e), PM_OK);
	if (os) {
		CHECK_INT(
		    pm_outstore_put(os, "n/o/tmp.bin", "abc", 3, true, &e),
		    PM_OK);
		CHECK_INT(pm_outstore_stat(os, "n/o/tmp.bin", &size, &e),
			  PM_OK);
		CHECK_INT(size, 3);
		CHECK_INT(count_tmp(root), 0);
		pm_outstore_close(os);
	}
	snprintf(path, sizeof path, "%s/n/o/tmp.bin", root);
	CHECK(stat(path, &st) == 0 && st.st_size == 3);
}

/* ---- concurrency ---- */

typedef struct writer {
	pm_outstore *os;
	int id;
	int failures; /* puts that failed */
	pm_err e;
} writer;

/* Puts every key ROUNDS times, in an order that differs per writer, so
 * writers race on the same key and on different keys at once. */
static int put_all(pm_outstore *os, int id, pm_err *e)
{
	unsigned char *b[N_KEYS];
	size_t l[N_KEYS];
	char key[200];
	int fail = 0;

	for (int k = 0; k < N_KEYS; k++)
		b[k] = content(k, &l[k]);
	for (int r = 0; r < ROUNDS; r++)
		for (int i = 0; i < N_KEYS; i++) {
			int k = (i + id + r) % N_KEYS;
			key_of(k, key, sizeof key);
			if (!b[k] || pm_outstore_put(os, key, b[k], l[k],
						     (r % 8) == 0, e))
				fail++;
		}
	for (int k = 0; k < N_KEYS; k++)
		free(b[k]);
	return fail;
}

static void *writer_main(void *arg)
{
	writer *w = arg;

	w->failures = put_all(w->os, w->id, &w->e);
	return NULL;
}

/* Reads every key over and over while writers run: an object, once there,
 * is always whole. */
typedef struct reader {
	pm_outstore *os;
	atomic_int *stop;
	int reads, bad;
} reader;

static void *reader_main(void *arg)
{
	reader *r = arg;
	char key[200];

	while (!atomic_load(r->stop)) {
		for (int k = 0; k < N_KEYS; k++) {
			bool ex = false;
			pm_err e;
			key_of(k, key, sizeof key);
			if (pm_outstore_exists(r->os, key, &ex, &e) || !ex)
				continue;
			r->reads++;
			if (!object_is(r->os, key, k))
				r->bad++;
		}
	}
	return NULL;
}

static void test_concurrent(void)
{
	pm_outstore *os = NULL;
	pm_err e;
	pthread_t t[N_THREAD], rt;
	writer w[N_THREAD];
	reader rd = {0};
	atomic_int stop = 0;
	pid_t kids[N_PROC];
	char key[200];
	int total_fail = 0;

	CHECK_INT(pm_outstore_local_open(root, tmp, &os, &e), PM_OK);
	if (!os)
		return;
	/* forked processes, each with its own store on the same root */
	for (int p = 0; p < N_PROC; p++) {
		kids[p] = fork();
		if (kids[p] == 0) {
			pm_outstore *mine = NULL;
			pm_err ce;
			int f;
			if (pm_outstore_local_open(root, tmp, &mine, &ce))
				_exit(3);
			f = put_all(mine, 100 + p, &ce);
			if (f)
				fprintf(stderr, "child %d: %d failed: %s\n", p,
					f, ce.msg);
			pm_outstore_close(mine);
			_exit(f ? 1 : 0);
		}
		CHECK(kids[p] > 0);
	}
	/* and threads of this process sharing one store */
	rd.os = os;
	rd.stop = &stop;
	pthread_create(&rt, NULL, reader_main, &rd);
	for (int i = 0; i < N_THREAD; i++) {
		w[i] = (writer){.os = os, .id = i};
		pthread_create(&t[i], NULL, writer_main, &w[i]);
	}
	for (int i = 0; i < N_THREAD; i++) {
		pthread_join(t[i], NULL);
		if (w[i].failures)
			fprintf(stderr, "thread %d: %s\n", i, w[i].e.msg);
		total_fail += w[i].failures;
	}
	for (int p = 0; p < N_PROC; p++) {
		int st = -1;
		if (kids[p] > 0) {
			CHECK(waitpid(kids[p], &st, 0) == kids[p]);
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		}
	}
	atomic_store(&stop, 1);
	pthread_join(rt, NULL);
	CHECK_INT(total_fail, 0);
	CHECK_INT(rd.bad, 0);
	fprintf(stderr,
		"test_outstore: concurrent: %d whole reads while "
		"writing\n",
		rd.reads);
	for (int k = 0; k < N_KEYS; k++) {
		key_of(k, key, sizeof key);
		CHECK(object_is(os, key, k));
	}
	/* no temporary file left anywhere: not in the temp folder, not
	 * next to the objects */
	CHECK_INT(count_tmp(root), 0);
	CHECK_INT(count_tmp(tmp), 0);
	pm_outstore_close(os);
}

/* ---- a writer killed mid-put ---- */

/* A child puts a large object over and over and is killed with SIGKILL at
 * a moment that varies from round to round (before, during or between
 * puts); after each round the key is absent or holds the whole object,
 * never a part of it. Nothing here depends on timing: any moment of the
 * kill must give one of the two allowed answers. */
static void test_crash(void)
{
	pm_outstore *os = NULL;
	pm_err e;
	size_t len;
	unsigned char *big;
	const char *key = "cr/as/crash-0123456789ab/1024.webp";
	int whole = 0, absent = 0, partial = 0;

	CHECK_INT(pm_outstore_local_open(root, tmp, &os, &e), PM_OK);
	if (!os)
		return;
	big = content(N_KEYS, &len); /* key number N_KEYS: ~370 KB */
	for (int i = 0; i < 40 && big; i++) {
		int sp[2], st;
		char c;
		bool ex = false;
		pid_t pid;

		pm_outstore_close(os);
		os = NULL;
		/* a fresh root state for this key */
		{
			char p[600];
			snprintf(p, sizeof p, "%s/%s", root, key);
			unlink(p);
		}
		CHECK_INT(pm_outstore_local_open(root, tmp, &os, &e), PM_OK);
		if (!os || pipe(sp))
			break;
		pid = fork();
		if (pid == 0) {
			pm_err ce;
			close(sp[0]);
			/* tell the parent we are about to put, then put
			 * again and again until killed */
			if (write(sp[1], "g", 1) != 1)
				_exit(3);
			for (;;)
				pm_outstore_put(os, key, big, len, i % 2, &ce);
		}
		close(sp[1]);
		if (read(sp[0], &c, 1) != 1)
			c = 0;
		close(sp[0]);
		/* kill it somewhere in a put: vary the moment */
		usleep((useconds_t)(i * 97 % 900));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		CHECK(WIFSIGNALED(st));
		CHECK_INT(pm_outstore_exists(os, key, &ex, &e), PM_OK);
		if (!ex)
			absent++;
		else if (object_is(os, key, N_KEYS))
			whole++;
		else
			partial++;
	}
	CHECK_INT(partial, 0);
	CHECK(whole + absent == 40);
	fprintf(stderr,
		"test_outstore: crash: %d whole, %d absent, %d partial\n",
		whole, absent, partial);
	/* what a killed writer leaves is temporary files in the temp folder
	 * (the engine empties it at start), never next to the objects */
	CHECK_INT(count_tmp(root) - count_tmp(tmp), 0);
	free(big);
	pm_outstore_close(os);
}

int main(void)
{
	char cmd[600];

	snprintf(root, sizeof root, "/tmp/pm-test-outstore-XXXXXX");
	if (!mkdtemp(root))
		return 2;
	snprintf(tmp, sizeof tmp, "%s/.tmp", root);
	if (mkdir(tmp, 0755))
		return 2;
	test_keys();
	test_basic();
	test_concurrent();
	test_crash();
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	CHECK_INT(system(cmd), 0);
	TEST_DONE();
}
