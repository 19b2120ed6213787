/* fuzz_outkey.c — libFuzzer target for output keys (src/store/outstore.c):
 * keys come from database rows (outputs.path), which may be broken or
 * hostile. The input, as a string, goes through pm_outstore_key_ok and the
 * read-only calls of a local store on an empty temporary root: an accepted
 * key never climbs out of the root, and no call crashes or finds an object.
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/outstore.h"

static pm_outstore *os;
static char root[] = "/tmp/pm-fuzz-outkey-XXXXXX";

/* The root stays empty (only read calls are made): remove it at exit. */
static void cleanup(void)
{
	pm_outstore_close(os);
	rmdir(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char key[1200], url[8192];
	pm_err e;
	bool ok, ex = true;
	int64_t sz;
	void *buf = NULL;
	size_t len;
	int fd = -1;

	if (!os) {
		if (!mkdtemp(root) ||
		    pm_outstore_local_open(root, NULL, &os, &e) != PM_OK)
			abort();
		atexit(cleanup);
	}
	if (size >= sizeof key)
		size = sizeof key - 1;
	memcpy(key, data, size);
	key[size] = '\0';
	ok = pm_outstore_key_ok(key);
	if (ok) {
		size_t n = strlen(key);
		/* relative, bounded, no ".." or "." segment */
		if (n == 0 || n > 1023 || key[0] == '/' || key[n - 1] == '/' ||
		    strstr(key, "//") || !strcmp(key, "..") ||
		    !strncmp(key, "../", 3) || strstr(key, "/../") ||
		    (n >= 3 && !strcmp(key + n - 3, "/..")))
			__builtin_trap();
	}
	/* the root is empty: nothing is ever found, bad keys are refused */
	if (pm_outstore_exists(os, key, &ex, &e) == PM_OK && ex)
		__builtin_trap();
	if (pm_outstore_stat(os, key, &sz, &e) == PM_OK)
		__builtin_trap();
	if (pm_outstore_get(os, key, 1024, &buf, &len, &e) == PM_OK)
		__builtin_trap();
	if (buf)
		__builtin_trap();
	if (pm_outstore_open_fd(os, key, &fd, &sz, &e) == PM_OK || fd != -1)
		__builtin_trap();
	if ((pm_outstore_url(os, key, url, sizeof url, &e) == PM_OK) != ok ||
	    (ok && strncmp(url, "file:///", 8) != 0))
		__builtin_trap();
	return 0;
}
