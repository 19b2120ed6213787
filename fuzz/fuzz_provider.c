/* fuzz_provider.c — libFuzzer target for the image search answer parsers
 * (src/fetch/provider.c: the Google CSE and Bing v7 shapes), which read
 * JSON from a remote API.
 *
 * The first byte picks the shape and how many results are asked for; the
 * rest is the answer body (not NUL-terminated: the parser must read only
 * len bytes). Invariants: no crash or out-of-bounds read (ASan); on
 * success at most the results asked for, each an http(s) URL of at most
 * PM_PROVIDER_MAX_URL bytes without whitespace, control characters or
 * '|' (it goes into a candidate list), sizes within 0..1000000; on
 * failure PM_ERR_UPSTREAM (or NOMEM), no hits and a NUL-terminated
 * message.
 *
 * Threads: libFuzzer calls the entry point from one thread.
 */
#include "fetch/provider.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pm_provider_hit h[PM_PROVIDER_MAX_HITS];
	pm_err e = {{0}};
	int n = -1, max;
	pm_status s;
	char *body;

	if (size < 1)
		return 0;
	max = 1 + (data[0] >> 1) % PM_PROVIDER_MAX_HITS;
	body = malloc(size - 1 ? size - 1 : 1); /* exact size: ASan sees
						   any read past it */
	if (!body)
		return 0;
	memcpy(body, data + 1, size - 1);
	s = (data[0] & 1)
		? pm_provider_parse_bing(body, size - 1, h, max, &n, &e)
		: pm_provider_parse_google(body, size - 1, h, max, &n, &e);
	if (s == PM_OK) {
		if (n < 0 || n > max)
			abort();
		for (int i = 0; i < n; i++) {
			size_t l = strnlen(h[i].url, sizeof h[i].url);
			if (l == sizeof h[i].url || l > PM_PROVIDER_MAX_URL)
				abort();
			if (strncasecmp(h[i].url, "http://", 7) != 0 &&
			    strncasecmp(h[i].url, "https://", 8) != 0)
				abort();
			for (size_t k = 0; k < l; k++) {
				unsigned char c = (unsigned char)h[i].url[k];
				if (c <= 0x20 || c == 0x7f || c == '|')
					abort();
			}
			if (h[i].width < 0 || h[i].width > 1000000 ||
			    h[i].height < 0 || h[i].height > 1000000)
				abort();
		}
	} else {
		if ((s != PM_ERR_UPSTREAM && s != PM_ERR_NOMEM) || n != 0)
			abort();
		if (strnlen(e.msg, sizeof e.msg) >= sizeof e.msg)
			abort();
	}
	free(body);
	return 0;
}
