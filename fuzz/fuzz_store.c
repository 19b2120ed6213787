/* fuzz_store.c — libFuzzer target for the store's text handling of outside
 * input that needs no database: store URLs as typed on the command line
 * (pm_store_url_mask, which must hide passwords), search text
 * (pm_store_fts_query) and the UTF-8 scanner the PostgreSQL backend uses
 * to clean every text value (pm_utf8_len). Invariants: outputs stay inside
 * their buffers and are NUL-terminated; masking never lets a
 * "user:password@" password through; a query is quoted words only;
 * a UTF-8 length is 0..4 and within the bytes given, and a valid sequence
 * never contains a byte that can only start one.
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "store/store.h"

static void check_mask(const char *url)
{
	char out[512], again[512], small[8];

	pm_store_url_mask(url, out, sizeof out);
	if (strlen(out) >= sizeof out)
		__builtin_trap();
	pm_store_url_mask(url, small, sizeof small);
	if (strlen(small) >= sizeof small || strncmp(small, out, 7) != 0)
		__builtin_trap();
	/* masking what was masked keeps it inside the buffer too (it may
	 * mask more: a removed "password=" value can unbound an authority) */
	pm_store_url_mask(out, again, sizeof again);
	if (strlen(again) >= sizeof again)
		__builtin_trap();
	/* scheme://user:SECRET@host: SECRET must not survive */
	const char *auth = strstr(url, "://");
	if (!auth || strlen(url) >= 400 || !isalpha((unsigned char)url[0]))
		return;
	for (const char *c = url; c < auth; c++)
		if (!isalnum((unsigned char)*c) && !strchr("+-.", *c))
			return;
	auth += 3;
	size_t end = strcspn(auth, "/");
	const char *at = NULL;
	for (size_t i = 0; i < end; i++)
		if (auth[i] == '@')
			at = auth + i;
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (!colon || at - colon < 5)
		return;
	/* an alphanumeric password of 4+ characters that occurs once */
	char secret[400];
	size_t n = (size_t)(at - colon) - 1;
	memcpy(secret, colon + 1, n);
	secret[n] = 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)secret[i]))
			return;
	if (strstr(url, secret) == colon + 1 &&
	    !strstr(colon + 1 + n, secret) && strstr(out, secret))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char q[256];

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	check_mask(s);

	if (pm_store_fts_query(s, q, sizeof q)) {
		size_t n = strlen(q);
		if (n >= sizeof q || q[0] != '"' || q[n - 1] != '"')
			__builtin_trap();
		for (size_t i = 0; i < n; i++)
			if (!(q[i] == '"' || q[i] == ' ' ||
			      isalnum((unsigned char)q[i]) ||
			      (unsigned char)q[i] >= 0x80))
				__builtin_trap();
	}

	for (size_t i = 0; i < size; i++) {
		size_t l = pm_utf8_len(data + i, size - i);
		if (l > 4 || l > size - i)
			__builtin_trap();
		for (size_t k = 1; k < l; k++)
			if ((data[i + k] & 0xC0) != 0x80)
				__builtin_trap();
	}
	free(s);
	return 0;
}
