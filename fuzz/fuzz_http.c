/* fuzz_http.c — libFuzzer target for the HTTP helpers of `pixmill serve`
 * (src/serve/httputil.c). The input is split at '\n' into fields:
 *   0 Accept-Encoding   1 Range          2 If-None-Match   3 entity tag
 *   4 request path      5 path segment   6 query integer   7 Content-Type
 * and the rest of the input drives compression and a token bucket.
 * Invariants checked: a chosen coding is one the header names (or "*");
 * a range lies in [0, size); a tag always matches itself, its weak form,
 * "*" and any list it ends; captures are non-empty, short, free of '/'
 * and never "." or ".."; at most one API route matches a path, and without
 * escapes the captures rebuild it; decoding agrees between buffer sizes;
 * integers agree with strtoll; a --listen value (field 6 too) that parses
 * parses again from the URL it prints, to the same address and port;
 * compression round-trips (gzip, zstd; some input sizes only, see below).
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <zlib.h>
#include <zstd.h>

#include "serve/httputil.h"

enum { NFIELDS = 8 };

/* The routes of docs/API.md. */
static const char *const routes[] = {
    "/",
    "/api/jobs",
    "/api/jobs/{id}",
    "/api/jobs/{id}/events",
    "/api/jobs/{id}/items",
    "/api/jobs/{id}/retry",
    "/api/failed",
    "/api/images",
    "/api/assets/{sha256}/{name}",
    "/api/outputs",
    "/api/search/text",
    "/api/search/image",
    "/health",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/api/openapi.json",
    "/api/stats",
};

static void check_encoding(const char *h)
{
	pm_encoding e = pm_http_choose_encoding(h);

	if (e == PM_ENC_IDENTITY)
		return;
	if (e != PM_ENC_GZIP && e != PM_ENC_BR && e != PM_ENC_ZSTD)
		__builtin_trap();
	/* a coding is chosen only if the header names it or has "*" */
	if (!strcasestr(h, pm_encoding_name(e)) && !strchr(h, '*'))
		__builtin_trap();
}

static void check_range(const char *h, int64_t size)
{
	int64_t s = 0, e = 0;
	int r = pm_http_range(h, size, &s, &e);

	if (r == 1) {
		if (!(0 <= s && s <= e && e < size))
			__builtin_trap();
	} else if (r == 0 || r == -1) {
		if (s != 0 || e != size - 1)
			__builtin_trap();
	} else {
		__builtin_trap();
	}
}

static void check_etag(const char *hdr, const char *raw)
{
	size_t n = strlen(raw), hn = strlen(hdr), k = 0;
	char *tag = malloc(n + 3), *weak = malloc(n + 5);
	char *list = malloc(hn + n + 5);

	(void)pm_http_etag_match(hdr, raw);
	if (!tag || !weak || !list)
		goto out;
	/* a valid tag from the etagc bytes of raw */
	tag[k++] = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)raw[i];
		if (c == 0x21 || (c >= 0x23 && c != 0x7f))
			tag[k++] = (char)c;
	}
	tag[k++] = '"';
	tag[k] = '\0';
	memcpy(weak, "W/", 2);
	memcpy(weak + 2, tag, k + 1);
	if (!pm_http_etag_match(tag, tag) || !pm_http_etag_match(weak, tag) ||
	    !pm_http_etag_match(tag, weak) || !pm_http_etag_match("*", tag))
		__builtin_trap();
	/* Without quotes the header's elements end at its commas, so a tag
	 * appended to it is always seen. */
	if (!strchr(hdr, '"')) {
		memcpy(list, hdr, hn);
		memcpy(list + hn, ", ", 2);
		memcpy(list + hn + 2, tag, k + 1);
		if (!pm_http_etag_match(list, tag))
			__builtin_trap();
	}
out:
	free(tag);
	free(weak);
	free(list);
}

static void check_routes(const char *path)
{
	char caps[4][128], rebuilt[1024];
	int matched = 0;

	for (size_t r = 0; r < sizeof routes / sizeof routes[0]; r++) {
		int n = -1, want = 0;
		bool ok;

		for (const char *p = routes[r]; *p; p++)
			want += *p == '{';
		ok = pm_route_match(routes[r], path, caps, 4, &n);
		if (!ok) {
			if (n != 0)
				__builtin_trap();
			continue;
		}
		matched++;
		if (n != want)
			__builtin_trap();
		for (int i = 0; i < n; i++) {
			size_t len = strnlen(caps[i], sizeof caps[i]);
			if (len == 0 || len >= sizeof caps[i] ||
			    memchr(caps[i], '/', len) ||
			    strcmp(caps[i], ".") == 0 ||
			    strcmp(caps[i], "..") == 0)
				__builtin_trap();
		}
		if (strchr(path, '%') || strlen(path) >= sizeof rebuilt)
			continue;
		/* no escapes: substituting the captures gives the path */
		size_t o = 0;
		int c = 0;
		for (const char *p = routes[r]; *p;) {
			if (*p == '{') {
				size_t len = strlen(caps[c]);
				if (o + len >= sizeof rebuilt)
					__builtin_trap();
				memcpy(rebuilt + o, caps[c++], len);
				o += len;
				p = strchr(p, '}') + 1;
			} else {
				if (o + 1 >= sizeof rebuilt)
					__builtin_trap();
				rebuilt[o++] = *p++;
			}
		}
		rebuilt[o] = '\0';
		if (strcmp(rebuilt, path) != 0)
			__builtin_trap();
	}
	if (matched > 1) /* the route table is unambiguous */
		__builtin_trap();
	/* a pattern built from the path itself matches it */
	if (!pm_route_match(path, path, caps, 0, NULL) && !strchr(path, '{'))
		__builtin_trap();
}

static void check_decode(const char *in, size_t len)
{
	char big[4096], small[8];
	size_t pct = 0;
	bool b = pm_url_decode(in, len, big, sizeof big);
	bool s = pm_url_decode(in, len, small, sizeof small);

	if (s && (!b || strcmp(small, big) != 0))
		__builtin_trap();
	if (!b && big[0])
		__builtin_trap();
	if (!s && small[0])
		__builtin_trap();
	if (!b)
		return;
	for (size_t i = 0; i < len; i++)
		pct += in[i] == '%';
	/* every escape is three bytes that became one */
	if (strlen(big) != len - 2 * pct)
		__builtin_trap();
	if (strlen(big) < sizeof small && !s)
		__builtin_trap();
}

static void check_int(const char *s)
{
	static const int64_t bounds[][2] = {
	    {INT64_MIN, INT64_MAX}, {1, 500}, {-10, 10}, {0, 0}};
	const char *d = s[0] == '-' ? s + 1 : s;
	bool strict = *d != '\0' && strspn(d, "0123456789") == strlen(d);
	long long ref = 0;
	bool ref_ok = false;

	if (strict) {
		errno = 0;
		ref = strtoll(s, NULL, 10);
		ref_ok = errno == 0;
	}
	for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
		int64_t v = 77;
		bool ok =
		    pm_http_int_param(s, bounds[i][0], bounds[i][1], 5, &v);
		bool want =
		    ref_ok && ref >= bounds[i][0] && ref <= bounds[i][1];
		if (ok != want || (ok && v != ref) || (!ok && v != 77))
			__builtin_trap();
	}
}

static void check_listen(const char *s)
{
	struct sockaddr_storage a, b;
	char url[96], spec[96];
	size_t n;
	pm_err e;

	if (!pm_http_parse_listen(s, &a, &e))
		return;
	if (a.ss_family != AF_INET && a.ss_family != AF_INET6)
		__builtin_trap();
	pm_http_listen_url(&a, 1234, url, sizeof url);
	n = strlen(url);
	if (n < 9 || strncmp(url, "http://", 7) != 0 || url[n - 1] != '/')
		__builtin_trap();
	memcpy(spec, url + 7, n - 8);
	spec[n - 8] = 0;
	if (!pm_http_parse_listen(spec, &b, &e) || a.ss_family != b.ss_family)
		__builtin_trap();
	if (a.ss_family == AF_INET
		? memcmp(&((struct sockaddr_in *)&a)->sin_addr,
			 &((struct sockaddr_in *)&b)->sin_addr,
			 sizeof(struct in_addr)) != 0 ||
		      ntohs(((struct sockaddr_in *)&b)->sin_port) != 1234
		: memcmp(&((struct sockaddr_in6 *)&a)->sin6_addr,
			 &((struct sockaddr_in6 *)&b)->sin6_addr,
			 sizeof(struct in6_addr)) != 0 ||
		      ntohs(((struct sockaddr_in6 *)&b)->sin6_port) != 1234)
		__builtin_trap();
}

static void check_compress(const uint8_t *data, size_t size)
{
	static const pm_encoding encs[] = {PM_ENC_IDENTITY, PM_ENC_GZIP,
					   PM_ENC_BR, PM_ENC_ZSTD};
	unsigned char *back = malloc(size + 1);

	if (!back)
		return;
	for (size_t i = 0; i < sizeof encs / sizeof encs[0]; i++) {
		void *z = NULL;
		size_t zn = 0, got = 0;
		pm_err err;

		if (pm_compress(encs[i], data, size, &z, &zn, &err) != PM_OK)
			__builtin_trap();
		if (encs[i] == PM_ENC_GZIP) {
			z_stream zs;
			memset(&zs, 0, sizeof zs);
			if (inflateInit2(&zs, 15 + 16) != Z_OK)
				__builtin_trap();
			zs.next_in = z;
			zs.avail_in = (uInt)zn;
			zs.next_out = back;
			zs.avail_out = (uInt)(size + 1);
			if (inflate(&zs, Z_FINISH) != Z_STREAM_END)
				__builtin_trap();
			got = size + 1 - zs.avail_out;
			inflateEnd(&zs);
		} else if (encs[i] == PM_ENC_ZSTD) {
			got = ZSTD_decompress(back, size + 1, z, zn);
			if (ZSTD_isError(got))
				__builtin_trap();
		} else if (encs[i] == PM_ENC_IDENTITY) {
			if (zn > size + 1)
				__builtin_trap();
			memcpy(back, z, zn);
			got = zn;
		} else {
			got = size; /* libbrotlidec is not linked here */
			if (size)
				memcpy(back, data, size);
		}
		if (got != size || (size && memcmp(back, data, size) != 0))
			__builtin_trap();
		free(z); /* ours: pm_compress handed it over */
	}
	free(back);
}

static void check_bucket(const uint8_t *data, size_t size)
{
	pm_bucket b;
	double now = 1000.0;

	if (size < 2)
		return;
	pm_bucket_init(&b, data[0] / 8.0, data[1] / 4.0, now);
	for (size_t i = 2; i < size && i < 512; i++) {
		/* bytes 0xf0.. step the clock back a little */
		now +=
		    data[i] >= 0xf0 ? -(data[i] & 15) / 10.0 : data[i] / 100.0;
		double w = pm_bucket_take(&b, now);
		if (!(w == 0 || (w > 0 && w <= PM_BUCKET_NEVER)))
			__builtin_trap();
		if (!(b.tokens >= -1e-6 && b.tokens <= b.burst))
			__builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *f[NFIELDS];
	size_t flen[NFIELDS], pos = 0;
	const uint8_t *rest;
	size_t rest_n;

	/* Each field is its own allocation of its exact length plus NUL, so
	 * ASan sees a read past it. */
	for (int i = 0; i < NFIELDS; i++) {
		const uint8_t *nl =
		    pos < size ? memchr(data + pos, '\n', size - pos) : NULL;
		size_t end = nl ? (size_t)(nl - data) : size;
		flen[i] = end - pos;
		f[i] = malloc(flen[i] + 1);
		if (!f[i]) {
			while (i--)
				free(f[i]);
			return 0;
		}
		memcpy(f[i], data + pos, flen[i]);
		f[i][flen[i]] = '\0';
		pos = nl ? end + 1 : size;
	}
	rest = data + pos;
	rest_n = size - pos;

	check_encoding(f[0]);
	(void)pm_http_compressible(f[0]);
	(void)pm_http_compressible(f[7]);
	static const int64_t sizes[] = {
	    0, 1, 2, 100, 65536, INT64_MAX - 1, INT64_MAX};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
		check_range(f[1], sizes[i]);
	check_range(f[1], (int64_t)rest_n);
	check_etag(f[2], f[3]);
	check_routes(f[4]);
	check_decode(f[5], flen[5]); /* raw bytes, NULs included */
	check_decode(f[4], flen[4]);
	check_int(f[6]);
	check_listen(f[6]);
	/* Under ASan one brotli call costs ~5 ms (its large context is
	 * poisoned and unpoisoned), 40 times the rest of this function, so
	 * only one input size in 32 is compressed. */
	if (size <= 4096 && size % 32 == 0)
		check_compress(data, size);
	check_bucket(rest, rest_n);

	for (int i = 0; i < NFIELDS; i++)
		free(f[i]);
	return 0;
}
