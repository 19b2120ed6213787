/* fuzz_redis_url.c — libFuzzer target for the Redis URL parser and its
 * mask (src/fleet/redis.c: pm_redis_url_parse, pm_redis_url_mask), which
 * read --redis from the command line. Invariants: a refusal has a message;
 * an accepted URL has a host or an absolute socket path, a port in
 * 1..65535 and a non-negative database; when it has a password, the mask
 * is the URL with exactly the password's bytes replaced by "***"; and a
 * refusal's message is "redis URL " + the mask + ": " + fixed text, so
 * it never shows a password.
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/redis.h"

/* The raw (still encoded) password of url: the bytes after the first ':'
 * of the authority's user info, up to its last '@'. */
static int raw_password(const char *url, const char **pw, size_t *len)
{
	const char *a = strstr(url, "://"), *at = NULL, *colon;
	size_t end;

	if (!a)
		return -1;
	a += 3;
	end = strcspn(a, "/?#");
	for (size_t i = 0; i < end; i++)
		if (a[i] == '@')
			at = a + i;
	if (!at || !(colon = memchr(a, ':', (size_t)(at - a))))
		return -1;
	*pw = colon + 1;
	*len = (size_t)(at - colon - 1);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *url = malloc(size + 1), masked[320], want[320];
	const char *raw;
	size_t rlen;
	pm_redis_url u;
	pm_err err;
	pm_status s;

	if (!url)
		return 0;
	memcpy(url, data, size);
	url[size] = 0;
	memset(&err, 0, sizeof err);
	pm_redis_url_mask(url, masked, sizeof masked);
	s = pm_redis_url_parse(url, &u, &err);
	if (s != PM_OK && !err.msg[0])
		__builtin_trap();
	if (s == PM_OK) {
		if (u.is_unix ? u.path[0] != '/' : !u.host[0])
			__builtin_trap();
		if (u.port < 1 || u.port > 65535 || u.db < 0)
			__builtin_trap();
		if (u.has_password && strlen(url) < 250) {
			if (raw_password(url, &raw, &rlen))
				__builtin_trap();
			snprintf(want, sizeof want, "%.*s***%s",
				 (int)(raw - url), url, raw + rlen);
			if (strcmp(want, masked) != 0)
				__builtin_trap();
		}
	}
	/* a refusal shows the URL only in its masked form, then fixed text */
	if (s != PM_OK && size < 250 &&
	    (strncmp(err.msg, "redis URL ", 10) != 0 ||
	     strncmp(err.msg + 10, masked, strlen(masked)) != 0 ||
	     strncmp(err.msg + 10 + strlen(masked), ": ", 2) != 0))
		__builtin_trap();
	free(url);
	return 0;
}
