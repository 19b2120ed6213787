/* fuzz_urlguard.c — libFuzzer target for the SSRF guard: the input is
 * checked as a URL (pm_urlguard_check_url / pm_urlguard_url_host), parsed
 * as an allow list (pm_urlguard_new), and its first bytes are classified
 * as an IPv4 and an IPv6 address (pm_urlguard_addr_allowed). Invariants:
 * an accepted URL yields a non-empty lowercase host; a refusal always has
 * a reason; allow_private allows everything.
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#include <ctype.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch/urlguard.h"

static void classify(const uint8_t *data, size_t size, const pm_urlguard *g,
		     const pm_urlguard *open)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;
	char why[400];

	memset(&s4, 0, sizeof s4);
	memset(&s6, 0, sizeof s6);
	s4.sin_family = AF_INET;
	s6.sin6_family = AF_INET6;
	memcpy(&s4.sin_addr, data, size < 4 ? size : 4);
	memcpy(&s6.sin6_addr, data, size < 16 ? size : 16);
	if (!pm_urlguard_addr_allowed((struct sockaddr *)&s4, g, why,
				      sizeof why) &&
	    strncmp(why, "refused: ", 9) != 0)
		__builtin_trap();
	if (!pm_urlguard_addr_allowed((struct sockaddr *)&s6, g, why,
				      sizeof why) &&
	    strncmp(why, "refused: ", 9) != 0)
		__builtin_trap();
	if (!pm_urlguard_addr_allowed((struct sockaddr *)&s6, open, why,
				      sizeof why))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pm_urlguard *deflt, *open;
	char *s = malloc(size + 1);
	char host[256];
	pm_err err;
	pm_urlguard *g = NULL;

	if (!deflt) {
		pm_urlguard_new(false, NULL, &deflt, &err);
		pm_urlguard_new(true, NULL, &open, &err);
	}
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	pm_status a = pm_urlguard_check_url(s, &err);
	pm_status b = pm_urlguard_url_host(s, host, sizeof host, &err);
	if (a != b)
		__builtin_trap();
	if (b == PM_OK) {
		if (!host[0] || !memchr(host, 0, sizeof host))
			__builtin_trap();
		for (const char *p = host; *p; p++)
			if (isupper((unsigned char)*p))
				__builtin_trap();
		(void)pm_urlguard_host_allowed(deflt, host);
	} else if (!memchr(err.msg, 0, sizeof err.msg) || !err.msg[0]) {
		__builtin_trap();
	}

	if (size < 1024 && pm_urlguard_new(false, s, &g, &err) == PM_OK) {
		(void)pm_urlguard_host_allowed(g, "example.com");
		classify(data, size, g, open);
		pm_urlguard_free(g);
	}
	classify(data, size, deflt, open);
	free(s);
	return 0;
}
