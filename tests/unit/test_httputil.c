/* test_httputil.c — table-driven tests of the HTTP helpers of `pixmill
 * serve` (src/serve/httputil.c): Accept-Encoding negotiation (q-values,
 * "*", q=0, garbage), compressible types, compression round trips for
 * gzip/brotli/zstd (decompressed here with zlib, libbrotlidec and zstd),
 * Range (hostile and huge numbers), If-None-Match, route matching and its
 * captures, percent-decoding, strict query integers, API key checks, the
 * token bucket's arithmetic and --listen addresses (IPv4, [IPv6], junk).
 *
 * Needs libbrotlidec at link time (Makefile PKGS) for the brotli round trip.
 * Threads: main thread only.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

#include "core/util.h"
#include "serve/httputil.h"
#include "test.h"

/* ---- Accept-Encoding ---------------------------------------------------- */

typedef struct enc_case {
	const char *hdr;
	pm_encoding want;
} enc_case;

static const enc_case enc_cases[] = {
    {NULL, PM_ENC_IDENTITY},
    {"", PM_ENC_IDENTITY},
    {"   ", PM_ENC_IDENTITY},
    {",,, ,", PM_ENC_IDENTITY},
    {"gzip", PM_ENC_GZIP},
    {"GZIP", PM_ENC_GZIP},
    {"x-gzip", PM_ENC_GZIP},
    {"br", PM_ENC_BR},
    {"Br", PM_ENC_BR},
    {"zstd", PM_ENC_ZSTD},
    {"ZStd", PM_ENC_ZSTD},
    {"deflate", PM_ENC_IDENTITY},
    {"compress, deflate", PM_ENC_IDENTITY},
    {"identity", PM_ENC_IDENTITY},
    /* ties prefer zstd > br > gzip, whatever the order */
    {"gzip, deflate, br", PM_ENC_BR},
    {"gzip, deflate, br, zstd", PM_ENC_ZSTD},
    {"zstd, br, gzip", PM_ENC_ZSTD},
    {"gzip,br", PM_ENC_BR},
    {"gzip;q=1, br;q=1, zstd;q=1", PM_ENC_ZSTD},
    {"gzip;q=1.0, br;q=1.00, zstd;q=1.000", PM_ENC_ZSTD},
    /* highest q wins */
    {"gzip;q=1.0, br;q=0.9", PM_ENC_GZIP},
    {"br;q=0.5, gzip;q=0.6", PM_ENC_GZIP},
    {"zstd;q=0.001, gzip;q=0.002", PM_ENC_GZIP},
    {"zstd;q=0.1, br;q=0.2, gzip;q=0.15", PM_ENC_BR},
    {"gzip;q=0.5", PM_ENC_GZIP},
    /* q=0 forbids */
    {"gzip;q=0", PM_ENC_IDENTITY},
    {"gzip;q=0.0", PM_ENC_IDENTITY},
    {"gzip;q=0.000", PM_ENC_IDENTITY},
    {"br;q=0, gzip", PM_ENC_GZIP},
    {"zstd;q=0, br;q=0, gzip;q=0", PM_ENC_IDENTITY},
    {"gzip, gzip;q=0", PM_ENC_IDENTITY}, /* lowest weight of the two */
    {"gzip;q=0, gzip", PM_ENC_IDENTITY},
    {"gzip;q=0.5, gzip;q=0.8", PM_ENC_GZIP},
    /* "*" */
    {"*", PM_ENC_ZSTD},
    {"*;q=0", PM_ENC_IDENTITY},
    {"*;q=0, gzip", PM_ENC_GZIP},
    {"gzip, *;q=0", PM_ENC_GZIP},
    {"*;q=0.5, gzip", PM_ENC_GZIP},
    {"*, zstd;q=0", PM_ENC_BR},
    {"*, zstd;q=0, br;q=0", PM_ENC_GZIP},
    {"*;q=0.1, gzip;q=0.05", PM_ENC_ZSTD},
    /* identity competes only when it is named and weighs more */
    {"identity, gzip;q=0.5", PM_ENC_IDENTITY},
    {"identity;q=0.5, gzip", PM_ENC_GZIP},
    {"identity, gzip", PM_ENC_GZIP},
    {"identity;q=0, gzip", PM_ENC_GZIP},
    {"identity;q=0", PM_ENC_IDENTITY},
    {"*;q=0.9, identity;q=1, br;q=0.3", PM_ENC_IDENTITY},
    /* whitespace and case */
    {"  gzip ;  q=0.5  ,  br ; Q=0.6 ", PM_ENC_BR},
    {"\tgzip\t,\tbr;q=0.1", PM_ENC_GZIP},
    {"gzip;q = 0.4, br;q=0.3", PM_ENC_GZIP}, /* BWS around '=' tolerated */
    /* malformed weights drop the element */
    {"gzip;q=1.5", PM_ENC_IDENTITY},
    {"gzip;q=1.5, br;q=0.1", PM_ENC_BR},
    {"gzip;q=2", PM_ENC_IDENTITY},
    {"gzip;q=-1", PM_ENC_IDENTITY},
    {"gzip;q=0.0001", PM_ENC_IDENTITY},
    {"gzip;q=1.001", PM_ENC_IDENTITY},
    {"gzip;q=.5", PM_ENC_IDENTITY},
    {"gzip;q=", PM_ENC_IDENTITY},
    {"gzip;q", PM_ENC_IDENTITY},
    {"gzip;q=0.5x", PM_ENC_IDENTITY},
    {"gzip;q=\"0.5\"", PM_ENC_IDENTITY},
    {"gzip;q=1e0", PM_ENC_IDENTITY},
    {"gzip;q=nan", PM_ENC_IDENTITY},
    {"gzip;q=0x1", PM_ENC_IDENTITY},
    {"gzip;;q=1", PM_ENC_IDENTITY},
    {"zstd;q=0.5;q=0", PM_ENC_IDENTITY}, /* the last weight counts */
    /* garbage elsewhere is ignored, good elements still count */
    {"gzip br", PM_ENC_IDENTITY},
    {"gzip br, zstd;q=0.2", PM_ENC_ZSTD},
    {"@@@, gzip", PM_ENC_GZIP},
    {"gzip;foo=bar", PM_ENC_GZIP},
    {"gzip;foo=\"a,b;q=0\", br;q=0.1", PM_ENC_GZIP},
    {"gzip;foo=\"unterminated, br", PM_ENC_IDENTITY},
    {"gzip;foo=\"esc\\\"aped\";q=0.3, br;q=0.2", PM_ENC_GZIP},
    {"gzip\x01, br", PM_ENC_BR},
    {"\xff\xfe, zstd", PM_ENC_ZSTD},
    {"gzipx, brr, zstd2", PM_ENC_IDENTITY},
    {";q=1", PM_ENC_IDENTITY},
    {"=gzip", PM_ENC_IDENTITY},
    {"gzip=1", PM_ENC_IDENTITY},
    {"gzip, ;, br;q=0", PM_ENC_GZIP},
};

static void test_choose_encoding(void)
{
	for (size_t i = 0; i < sizeof enc_cases / sizeof enc_cases[0]; i++) {
		pm_encoding got = pm_http_choose_encoding(enc_cases[i].hdr);
		if (got != enc_cases[i].want)
			fprintf(stderr, "Accept-Encoding: %s\n",
				enc_cases[i].hdr ? enc_cases[i].hdr : "(null)");
		CHECK_STR(pm_encoding_name(got),
			  pm_encoding_name(enc_cases[i].want));
	}
	CHECK_STR(pm_encoding_name(PM_ENC_IDENTITY), "identity");
	CHECK_STR(pm_encoding_name(PM_ENC_GZIP), "gzip");
	CHECK_STR(pm_encoding_name(PM_ENC_BR), "br");
	CHECK_STR(pm_encoding_name(PM_ENC_ZSTD), "zstd");
	CHECK_STR(pm_encoding_name((pm_encoding)42), "identity");

	/* a long header is read to the end */
	char big[8192];
	size_t n = 0;
	while (n + 16 < sizeof big)
		n += (size_t)snprintf(big + n, sizeof big - n, "x%zu, ", n);
	snprintf(big + n, sizeof big - n, "br");
	CHECK_INT(pm_http_choose_encoding(big), PM_ENC_BR);
}

/* ---- compressible types ------------------------------------------------- */

typedef struct type_case {
	const char *type;
	bool want;
} type_case;

static const type_case type_cases[] = {
    {"application/json", true},
    {"application/json; charset=utf-8", true},
    {"Application/JSON;charset=UTF-8", true},
    {"  application/json  ; charset=utf-8", true},
    {"application/javascript", true},
    {"application/xml", true},
    {"application/x-ndjson", true},
    {"application/problem+json", true},
    {"application/rss+xml", true},
    {"image/svg+xml", true},
    {"image/svg+xml; charset=utf-8", true},
    {"text/html; charset=utf-8", true},
    {"text/css", true},
    {"text/plain", true},
    {"text/csv", true},
    {"text/javascript", true},
    {"text/plain; version=0.0.4", true}, /* Prometheus */
    {"text/event-stream", false},
    {"TEXT/EVENT-STREAM; charset=utf-8", false},
    {"text/", false},
    {"text", false},
    {"image/webp", false},
    {"image/jpeg", false},
    {"image/png", false},
    {"image/avif", false},
    {"image/x+xml", false},
    {"video/mp4", false},
    {"audio/mpeg", false},
    {"font/woff2", false},
    {"application/zip", false},
    {"application/gzip", false},
    {"application/octet-stream", false},
    {"application/", false},
    {"multipart/form-data; boundary=x", false},
    {"", false},
    {";charset=utf-8", false},
    {NULL, false},
};

static void test_compressible(void)
{
	for (size_t i = 0; i < sizeof type_cases / sizeof type_cases[0]; i++) {
		bool got = pm_http_compressible(type_cases[i].type);
		if (got != type_cases[i].want)
			fprintf(stderr, "Content-Type: %s\n",
				type_cases[i].type ? type_cases[i].type
						   : "(null)");
		CHECK(got == type_cases[i].want);
	}
	/* longer than any real media type: not compressed, no overflow */
	char big[400];
	memset(big, 'a', sizeof big - 1);
	memcpy(big, "text/", 5);
	big[sizeof big - 1] = '\0';
	CHECK(!pm_http_compressible(big));
}

/* ---- compression round trips -------------------------------------------- */

/* Decompresses a whole gzip stream (not zlib, not raw deflate). */
static bool gunzip(const void *in, size_t len, unsigned char *out,
		   size_t out_sz, size_t *got)
{
	z_stream zs;
	int rc;

	memset(&zs, 0, sizeof zs);
	if (inflateInit2(&zs, 15 + 16) != Z_OK)
		return false;
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)out_sz;
	rc = inflate(&zs, Z_FINISH);
	*got = out_sz - zs.avail_out;
	inflateEnd(&zs);
	return rc == Z_STREAM_END && zs.avail_in == 0;
}

static bool decompress(pm_encoding enc, const void *in, size_t len,
		       unsigned char *out, size_t out_sz, size_t *got)
{
	switch (enc) {
	case PM_ENC_GZIP:
		return gunzip(in, len, out, out_sz, got);
	case PM_ENC_BR:
		*got = out_sz;
		return BrotliDecoderDecompress(len, in, got, out) ==
		       BROTLI_DECODER_RESULT_SUCCESS;
	case PM_ENC_ZSTD: {
		size_t n = ZSTD_decompress(out, out_sz, in, len);
		*got = n;
		return !ZSTD_isError(n);
	}
	case PM_ENC_IDENTITY:
	default:
		if (len > out_sz)
			return false;
		if (len)
			memcpy(out, in, len);
		*got = len;
		return true;
	}
}

/* Compresses in with enc, decompresses it and compares. */
static void round_trip(pm_encoding enc, const unsigned char *in, size_t len,
		       size_t max_out)
{
	void *z = (void *)1;
	size_t zn = 12345, got = 0;
	pm_err err = {{0}};
	unsigned char *back = malloc(len + 1);

	CHECK(back != NULL);
	if (!back)
		return;
	pm_status s = pm_compress(enc, in, len, &z, &zn, &err);
	CHECK_INT(s, PM_OK);
	if (s != PM_OK) {
		fprintf(stderr, "pm_compress(%s, %zu): %s\n",
			pm_encoding_name(enc), len, err.msg);
		free(back);
		return;
	}
	CHECK(z != NULL);
	CHECK(zn > 0 || (enc == PM_ENC_IDENTITY && len == 0));
	CHECK(zn <= max_out);
	if (zn > max_out)
		fprintf(stderr, "%s: %zu bytes -> %zu, want <= %zu\n",
			pm_encoding_name(enc), len, zn, max_out);
	/* one byte of room more than needed, to catch trailing output */
	CHECK(decompress(enc, z, zn, back, len + 1, &got));
	CHECK_INT(got, len);
	CHECK(got == len && (len == 0 || memcmp(back, in, len) == 0));
	if (enc == PM_ENC_GZIP && zn >= 2)
		CHECK(((unsigned char *)z)[0] == 0x1f &&
		      ((unsigned char *)z)[1] == 0x8b);
	if (enc == PM_ENC_ZSTD && zn >= 4)
		CHECK(((unsigned char *)z)[0] == 0x28 &&
		      ((unsigned char *)z)[3] == 0xfd);
	free(z); /* ours: pm_compress handed it over */
	free(back);
}

static void test_compress(void)
{
	static const pm_encoding encs[] = {PM_ENC_IDENTITY, PM_ENC_GZIP,
					   PM_ENC_BR, PM_ENC_ZSTD};
	const size_t json_len = 100 * 1024;
	unsigned char *json = malloc(json_len);
	unsigned char *noise = malloc(65536);
	size_t n = 0;
	uint32_t x = 2463534242u;

	CHECK(json && noise);
	if (!json || !noise) {
		free(json);
		free(noise);
		return;
	}
	/* an items page: repetitive JSON */
	for (int i = 0; n + 200 < json_len; i++)
		n += (size_t)snprintf(
		    (char *)json + n, json_len - n,
		    "{\"key\": \"r%d\", \"state\": \"done\", \"sha256\": "
		    "\"%08x\", \"outputs\": [{\"name\": \"256.webp\"}]},\n",
		    i, (unsigned)(i * 2654435761u));
	for (size_t i = 0; i < 65536; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		noise[i] = (unsigned char)x;
	}
	for (size_t e = 0; e < sizeof encs / sizeof encs[0]; e++) {
		bool id = encs[e] == PM_ENC_IDENTITY;
		/* empty input: a valid empty stream */
		round_trip(encs[e], (const unsigned char *)"", 0, 64);
		round_trip(encs[e], NULL, 0, 64);
		round_trip(encs[e], (const unsigned char *)"a", 1, 64);
		round_trip(encs[e], (const unsigned char *)"hello, hello", 12,
			   64);
		/* JSON shrinks a lot */
		round_trip(encs[e], json, n, id ? n : n / 4);
		/* noise does not grow much */
		round_trip(encs[e], noise, 65536, 65536 + 1024);
	}

	/* bad arguments */
	void *z = (void *)1;
	size_t zn = 7;
	pm_err err = {{0}};
	CHECK_INT(pm_compress(PM_ENC_GZIP, NULL, 5, &z, &zn, &err),
		  PM_ERR_INTERNAL);
	CHECK(z == NULL && zn == 0 && err.msg[0]);
	err.msg[0] = '\0';
	CHECK_INT(pm_compress((pm_encoding)9, "x", 1, &z, &zn, &err),
		  PM_ERR_INTERNAL);
	CHECK(z == NULL && zn == 0 && err.msg[0]);
	CHECK_INT(pm_compress(PM_ENC_GZIP, "x", 1, NULL, &zn, &err),
		  PM_ERR_INTERNAL);
	CHECK_INT(pm_compress(PM_ENC_GZIP, "x", 1, &z, NULL, NULL),
		  PM_ERR_INTERNAL);
	free(json);
	free(noise);
}

/* ---- Range -------------------------------------------------------------- */

typedef struct range_case {
	const char *hdr;
	int64_t size;
	int want;
	int64_t start, end; /* when want == 1 */
} range_case;

static const range_case range_cases[] = {
    {NULL, 100, 0, 0, 0},
    {"", 100, 0, 0, 0},
    {"bytes=0-0", 100, 1, 0, 0},
    {"bytes=0-99", 100, 1, 0, 99},
    {"bytes=0-", 100, 1, 0, 99},
    {"bytes=10-19", 100, 1, 10, 19},
    {"bytes=99-", 100, 1, 99, 99},
    {"bytes=99-99", 100, 1, 99, 99},
    {"bytes=50-1000", 100, 1, 50, 99}, /* end clamped */
    {"bytes=-1", 100, 1, 99, 99},
    {"bytes=-10", 100, 1, 90, 99},
    {"bytes=-100", 100, 1, 0, 99},
    {"bytes=-1000", 100, 1, 0, 99},
    {"BYTES=1-2", 100, 1, 1, 2},
    {"Bytes=1-2", 100, 1, 1, 2},
    {"bytes= 1-2 ", 100, 1, 1, 2},
    {"bytes=1-2,", 100, 1, 1, 2}, /* empty list elements are allowed */
    {"bytes=, 1-2", 100, 1, 1, 2},
    {"bytes=007-010", 100, 1, 7, 10},
    /* unsatisfiable */
    {"bytes=100-", 100, -1, 0, 0},
    {"bytes=100-200", 100, -1, 0, 0},
    {"bytes=1000-", 100, -1, 0, 0},
    {"bytes=-0", 100, -1, 0, 0},
    {"bytes=-000", 100, -1, 0, 0},
    {"bytes=0-", 0, -1, 0, 0},
    {"bytes=0-0", 0, -1, 0, 0},
    {"bytes=-0", 0, -1, 0, 0},
    /* huge numbers saturate */
    {"bytes=99999999999999999999999999-", 100, -1, 0, 0},
    {"bytes=9223372036854775807-", 100, -1, 0, 0},
    {"bytes=9223372036854775808-9223372036854775809", 100, -1, 0, 0},
    {"bytes=0-99999999999999999999999999", 100, 1, 0, 99},
    {"bytes=5-18446744073709551616", 100, 1, 5, 99},
    {"bytes=-99999999999999999999999999", 100, 1, 0, 99},
    {"bytes=-9223372036854775807", INT64_MAX, 1, 0, INT64_MAX - 1},
    {"bytes=-1", INT64_MAX, 1, INT64_MAX - 1, INT64_MAX - 1},
    {"bytes=9223372036854775806-", INT64_MAX, 1, INT64_MAX - 1, INT64_MAX - 1},
    {"bytes=0-", INT64_MAX, 1, 0, INT64_MAX - 1},
    /* ignored: serve the whole body */
    {"bytes=5-2", 100, 0, 0, 0},
    {"bytes=200-100", 100, 0, 0, 0},
    {"bytes=0-1,3-4", 100, 0, 0, 0},
    {"bytes=0-1, -5", 100, 0, 0, 0},
    {"bytes=-", 100, 0, 0, 0},
    {"bytes=", 100, 0, 0, 0},
    {"bytes=,", 100, 0, 0, 0},
    {"bytes", 100, 0, 0, 0},
    {"bytes 0-1", 100, 0, 0, 0},
    {"bytes =0-1", 100, 0, 0, 0},
    {"items=0-1", 100, 0, 0, 0},
    {"bits=0-1", 100, 0, 0, 0},
    {"bytes=a-b", 100, 0, 0, 0},
    {"bytes=1", 100, 0, 0, 0},
    {"bytes=1 - 2", 100, 0, 0, 0},
    {"bytes=+1-2", 100, 0, 0, 0},
    {"bytes=-+1", 100, 0, 0, 0},
    {"bytes=--1", 100, 0, 0, 0},
    {"bytes=1--2", 100, 0, 0, 0},
    {"bytes=0x10-", 100, 0, 0, 0},
    {"bytes=1-2x", 100, 0, 0, 0},
    {"bytes=1-2 3", 100, 0, 0, 0},
    {"bytes=-5x", 100, 0, 0, 0},
    {"bytes=1.5-2", 100, 0, 0, 0},
    {"bytes=\"0-1\"", 100, 0, 0, 0},
    {"bytes=-5", 0, 0, 0, 0}, /* a suffix of an empty body: all of it */
    {"bytes=0-1", -1, 0, 0, 0},
};

static void test_range(void)
{
	for (size_t i = 0; i < sizeof range_cases / sizeof range_cases[0];
	     i++) {
		const range_case *c = &range_cases[i];
		int64_t s = -7, e = -7;
		int r = pm_http_range(c->hdr, c->size, &s, &e);
		if (r != c->want)
			fprintf(stderr, "Range: %s (size %lld)\n",
				c->hdr ? c->hdr : "(null)", (long long)c->size);
		CHECK_INT(r, c->want);
		if (c->want == 1) {
			CHECK_INT(s, c->start);
			CHECK_INT(e, c->end);
		} else {
			/* otherwise the whole body */
			CHECK_INT(s, 0);
			CHECK_INT(e, c->size - 1);
		}
	}
}

/* ---- If-None-Match ------------------------------------------------------ */

typedef struct etag_case {
	const char *hdr, *etag;
	bool want;
} etag_case;

static const etag_case etag_cases[] = {
    {"\"abc\"", "\"abc\"", true},
    {"\"abc\"", "\"abd\"", false},
    {"\"abc\"", "\"ab\"", false},
    {"\"ab\"", "\"abc\"", false},
    {"*", "\"abc\"", true},
    {" * ", "\"abc\"", true},
    {"*, \"x\"", "\"abc\"", true},
    {"\"x\", \"abc\"", "\"abc\"", true},
    {"\"x\",\"y\" ,  \"abc\" ", "\"abc\"", true},
    {"\"x\", \"y\"", "\"abc\"", false},
    /* weak comparison: W/ ignored on either side */
    {"W/\"abc\"", "\"abc\"", true},
    {"\"abc\"", "W/\"abc\"", true},
    {"W/\"abc\"", "W/\"abc\"", true},
    {"w/\"abc\"", "\"abc\"", false}, /* W is case-sensitive */
    {"W/ \"abc\"", "\"abc\"", false},
    /* the tag is opaque: case and commas inside it count */
    {"\"ABC\"", "\"abc\"", false},
    {"\"a,b\"", "\"a,b\"", true},
    {"\"a\", \"b\"", "\"a,b\"", false},
    {"\"\"", "\"\"", true},
    {"\"\"", "\"abc\"", false},
    /* an unquoted etag from the caller is its own opaque text */
    {"\"abc\"", "abc", true},
    {"abc", "abc", false}, /* unquoted in the header is not a tag */
    /* garbage */
    {"", "\"abc\"", false},
    {NULL, "\"abc\"", false},
    {"\"abc\"", NULL, false},
    {"\"abc\"", "", false},
    {"\"abc", "\"abc\"", false},
    {"abc\"", "\"abc\"", false},
    {"\"abc\"x", "\"abc\"", false},
    {"\"abc\" x, \"abc\"", "\"abc\"", true},
    {"\"a bc\"", "\"a bc\"", false}, /* a space is not an etagc */
    {"junk, \"abc\"", "\"abc\"", true},
    {"**", "\"abc\"", false},
    {"*x", "\"abc\"", false},
    {",,,", "\"abc\"", false},
    {"\"unterminated, \"abc\"", "\"abc\"", false},
    {"\"x\", \"abc\", \"y\"", "\"abc\"", true},
    {"W/\"abc\", W/\"def\"", "\"def\"", true},
    {"\"sha\xc3\xa9\"", "\"sha\xc3\xa9\"", true}, /* obs-text */
};

static void test_etag(void)
{
	for (size_t i = 0; i < sizeof etag_cases / sizeof etag_cases[0]; i++) {
		const etag_case *c = &etag_cases[i];
		bool got = pm_http_etag_match(c->hdr, c->etag);
		if (got != c->want)
			fprintf(stderr, "If-None-Match: %s vs %s\n",
				c->hdr ? c->hdr : "(null)",
				c->etag ? c->etag : "(null)");
		CHECK(got == c->want);
	}
	/* a real asset etag */
	char hex[65], tag[70], hdr[200];
	pm_sha256_hex("x", 1, hex);
	snprintf(tag, sizeof tag, "\"%s\"", hex);
	snprintf(hdr, sizeof hdr, "W/\"0000\", %s", tag);
	CHECK(pm_http_etag_match(hdr, tag));
	hdr[strlen(hdr) - 2] ^= 1;
	CHECK(!pm_http_etag_match(hdr, tag));
}

/* ---- routes ------------------------------------------------------------- */

typedef struct route_case {
	const char *pattern, *path;
	bool want;
	int n;
	const char *cap0, *cap1;
} route_case;

#define SHA "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12"

static const route_case route_cases[] = {
    {"/api/jobs", "/api/jobs", true, 0, NULL, NULL},
    {"/api/jobs", "/api/jobs/", false, 0, NULL, NULL},
    {"/api/jobs/", "/api/jobs", false, 0, NULL, NULL},
    {"/api/jobs/", "/api/jobs/", true, 0, NULL, NULL},
    {"/api/jobs", "/api/Jobs", false, 0, NULL, NULL},
    {"/api/jobs", "/api/job", false, 0, NULL, NULL},
    {"/api/jobs", "/api/jobsx", false, 0, NULL, NULL},
    {"/api/jobs", "/api//jobs", false, 0, NULL, NULL},
    {"/api/jobs", "api/jobs", false, 0, NULL, NULL},
    {"/api/jobs", "", false, 0, NULL, NULL},
    {"/", "/", true, 0, NULL, NULL},
    {"/", "", false, 0, NULL, NULL},
    {"/", "//", false, 0, NULL, NULL},
    {"/health", "/health/live", false, 0, NULL, NULL},
    {"/api/jobs/{id}", "/api/jobs/3", true, 1, "3", NULL},
    {"/api/jobs/{id}", "/api/jobs/", false, 0, NULL, NULL}, /* empty cap */
    {"/api/jobs/{id}", "/api/jobs", false, 0, NULL, NULL},
    {"/api/jobs/{id}", "/api/jobs/3/", false, 0, NULL, NULL},
    {"/api/jobs/{id}", "/api/jobs/3/items", false, 0, NULL, NULL},
    {"/api/jobs/{id}/items", "/api/jobs/42/items", true, 1, "42", NULL},
    {"/api/jobs/{id}/items", "/api/jobs//items", false, 0, NULL, NULL},
    {"/api/jobs/{id}/items", "/api/jobs/42/item", false, 0, NULL, NULL},
    {"/api/jobs/{id}/retry", "/api/jobs/7/retry", true, 1, "7", NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/256.webp", true, 2,
     SHA, "256.webp"},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/256%2Ewebp", true, 2,
     SHA, "256.webp"},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/a%20b", true, 2, SHA,
     "a b"},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/a+b", true, 2, SHA,
     "a+b"},
    /* traversal and hostile captures */
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/..", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/.", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/%2e%2e", false, 0,
     NULL, NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/%2E%2E", false, 0,
     NULL, NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/.%2e", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/%2e", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/...", true, 2, SHA,
     "..."},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/..a", true, 2, SHA,
     "..a"},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/a%2Fb", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/a%2fb", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/..%2F..%2Fetc", false,
     0, NULL, NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/a%00b", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/a%zzb", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/a%2", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/%", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA "/../x", false, 0, NULL,
     NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets/" SHA, false, 0, NULL, NULL},
    {"/api/assets/{sha256}/{name}", "/api/assets//x", false, 0, NULL, NULL},
    /* a literal segment is never decoded */
    {"/api/jobs", "/api/%6Aobs", false, 0, NULL, NULL},
    /* malformed braces are literal */
    {"/a/{id", "/a/{id", true, 0, NULL, NULL},
    {"/a/{id", "/a/3", false, 0, NULL, NULL},
    {"/a/{}", "/a/3", true, 1, "3", NULL},
};

static void test_routes(void)
{
	char caps[4][128];
	int n;

	for (size_t i = 0; i < sizeof route_cases / sizeof route_cases[0];
	     i++) {
		const route_case *c = &route_cases[i];
		n = -1;
		bool got = pm_route_match(c->pattern, c->path, caps, 4, &n);
		if (got != c->want)
			fprintf(stderr, "route %s vs %s\n", c->pattern,
				c->path);
		CHECK(got == c->want);
		CHECK_INT(n, c->want ? c->n : 0);
		if (got && c->cap0)
			CHECK_STR(caps[0], c->cap0);
		if (got && c->cap1)
			CHECK_STR(caps[1], c->cap1);
	}

	/* capture length: 127 bytes fit, 128 do not (also when decoded) */
	char path[600], seg[400];
	memset(seg, 'a', 127);
	seg[127] = '\0';
	snprintf(path, sizeof path, "/api/jobs/%s", seg);
	CHECK(pm_route_match("/api/jobs/{id}", path, caps, 1, &n));
	CHECK_INT(strlen(caps[0]), 127);
	memset(seg, 'a', 128);
	seg[128] = '\0';
	snprintf(path, sizeof path, "/api/jobs/%s", seg);
	CHECK(!pm_route_match("/api/jobs/{id}", path, caps, 1, &n));
	CHECK_INT(n, 0);
	for (int i = 0; i < 127; i++)
		memcpy(seg + 3 * i, "%41", 3);
	seg[3 * 127] = '\0'; /* 381 bytes that decode to 127 */
	snprintf(path, sizeof path, "/api/jobs/%s", seg);
	CHECK(pm_route_match("/api/jobs/{id}", path, caps, 1, &n));
	CHECK_INT(strlen(caps[0]), 127);
	CHECK(caps[0][0] == 'A' && caps[0][126] == 'A');
	snprintf(path, sizeof path, "/api/jobs/%sA", seg);
	CHECK(!pm_route_match("/api/jobs/{id}", path, caps, 1, &n));

	/* more captures than room */
	CHECK(!pm_route_match("/api/assets/{sha256}/{name}", "/api/assets/x/y",
			      caps, 1, &n));
	CHECK(!pm_route_match("/api/jobs/{id}", "/api/jobs/1", caps, 0, &n));
	CHECK(!pm_route_match("/api/jobs/{id}", "/api/jobs/1", NULL, 4, &n));
	CHECK(pm_route_match("/api/jobs", "/api/jobs", NULL, 0, NULL));
	CHECK(pm_route_match("/api/assets/{sha256}/{name}", "/api/assets/x/y",
			     caps, 2, NULL));
	CHECK(!pm_route_match(NULL, "/", caps, 4, &n));
	CHECK(!pm_route_match("/", NULL, caps, 4, &n));
}

/* ---- percent-decoding --------------------------------------------------- */

typedef struct dec_case {
	const char *in;
	bool ok;
	const char *out;
} dec_case;

static const dec_case dec_cases[] = {
    {"", true, ""},
    {"abc", true, "abc"},
    {"a%20b", true, "a b"},
    {"a+b", true, "a+b"},
    {"%41%62%7a%7A%5a", true, "AbzzZ"},
    {"%2F", true, "/"},
    {"%25", true, "%"},
    {"%2525", true, "%25"},
    {"%e2%82%ac", true, "\xe2\x82\xac"},
    {"%ff", true, "\xff"},
    {"%", false, ""},
    {"%4", false, ""},
    {"a%", false, ""},
    {"%g0", false, ""},
    {"%0g", false, ""},
    {"%-1", false, ""},
    {"% 1", false, ""},
    {"%00", false, ""},
    {"a%00b", false, ""},
    {"%%41", false, ""},
};

static void test_url_decode(void)
{
	char out[64];

	for (size_t i = 0; i < sizeof dec_cases / sizeof dec_cases[0]; i++) {
		const dec_case *c = &dec_cases[i];
		memset(out, 'x', sizeof out);
		bool ok = pm_url_decode(c->in, strlen(c->in), out, sizeof out);
		if (ok != c->ok)
			fprintf(stderr, "decode %s\n", c->in);
		CHECK(ok == c->ok);
		CHECK_STR(out, c->out);
	}
	/* in_len bounds the input: the rest is not read */
	CHECK(pm_url_decode("ab%41", 2, out, sizeof out));
	CHECK_STR(out, "ab");
	CHECK(!pm_url_decode("ab%41", 4, out, sizeof out));
	/* a raw NUL inside in_len */
	CHECK(!pm_url_decode("a\0b", 3, out, sizeof out));
	/* the terminating NUL must fit */
	CHECK(pm_url_decode("abc", 3, out, 4));
	CHECK_STR(out, "abc");
	memset(out, 'x', sizeof out);
	CHECK(!pm_url_decode("abcd", 4, out, 4));
	CHECK_STR(out, "");
	CHECK(out[4] == 'x'); /* nothing written past out_sz */
	CHECK(pm_url_decode("%41%42%43", 9, out, 4));
	CHECK_STR(out, "ABC");
	CHECK(!pm_url_decode("%41%42%43%44", 12, out, 4));
	CHECK(pm_url_decode("", 0, out, 1));
	CHECK(!pm_url_decode("a", 1, out, 1));
	CHECK(!pm_url_decode("a", 1, out, 0));
	CHECK(!pm_url_decode("a", 1, NULL, 10));
	CHECK(pm_url_decode(NULL, 0, out, 4));
}

/* ---- query integers ----------------------------------------------------- */

typedef struct int_case {
	const char *s;
	int64_t lo, hi;
	bool ok;
	int64_t want;
} int_case;

static const int_case int_cases[] = {
    {NULL, 1, 500, true, 100}, /* the default */
    {"1", 1, 500, true, 1},
    {"500", 1, 500, true, 500},
    {"100", 1, 500, true, 100},
    {"0100", 1, 500, true, 100},
    {"0", 1, 500, false, 0},
    {"501", 1, 500, false, 0},
    {"-1", 1, 500, false, 0},
    {"-1", -10, 10, true, -1},
    {"-0", -10, 10, true, 0},
    {"-10", -10, 10, true, -10},
    {"-11", -10, 10, false, 0},
    {"", 1, 500, false, 0},
    {"-", 1, 500, false, 0},
    {"+5", 1, 500, false, 0},
    {" 5", 1, 500, false, 0},
    {"5 ", 1, 500, false, 0},
    {"5x", 1, 500, false, 0},
    {"0x10", 0, 500, false, 0},
    {"1e3", 0, 5000, false, 0},
    {"1.0", 0, 500, false, 0},
    {"--1", -10, 10, false, 0},
    {"1-", -10, 10, false, 0},
    {"9223372036854775807", INT64_MIN, INT64_MAX, true, INT64_MAX},
    {"9223372036854775808", INT64_MIN, INT64_MAX, false, 0},
    {"-9223372036854775808", INT64_MIN, INT64_MAX, true, INT64_MIN},
    {"-9223372036854775809", INT64_MIN, INT64_MAX, false, 0},
    {"18446744073709551616", INT64_MIN, INT64_MAX, false, 0},
    {"99999999999999999999999999999", INT64_MIN, INT64_MAX, false, 0},
    {"000000000000000000000000000042", 0, 100, true, 42},
};

static void test_int_param(void)
{
	for (size_t i = 0; i < sizeof int_cases / sizeof int_cases[0]; i++) {
		const int_case *c = &int_cases[i];
		int64_t v = -12345;
		bool ok = pm_http_int_param(c->s, c->lo, c->hi, 100, &v);
		if (ok != c->ok)
			fprintf(stderr, "int param %s\n",
				c->s ? c->s : "(null)");
		CHECK(ok == c->ok);
		CHECK_INT(v, c->ok ? c->want : -12345); /* untouched on fail */
	}
}

/* ---- API keys ----------------------------------------------------------- */

static void test_keys(void)
{
	unsigned char a[32], b[32];
	char hex[65], upper[65];

	memset(a, 7, sizeof a);
	memcpy(b, a, sizeof b);
	CHECK(pm_http_key_equal(a, b, sizeof a));
	CHECK(pm_http_key_equal(a, b, 0));
	b[31] ^= 1;
	CHECK(!pm_http_key_equal(a, b, sizeof a));
	CHECK(pm_http_key_equal(a, b, 31));
	b[31] = a[31];
	b[0] ^= 0x80;
	CHECK(!pm_http_key_equal(a, b, sizeof a));

	/* the SHA-256 of "abc" */
	pm_http_key_hash("abc", 3, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223"
		       "b00361a396177a9cb410ff61f20015ad");
	pm_http_key_hash("", 0, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb924"
		       "27ae41e4649b934ca495991b7852b855");
	pm_http_key_hash(NULL, 0, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb924"
		       "27ae41e4649b934ca495991b7852b855");

	pm_http_key_hash("s3cret-key", 10, hex);
	CHECK(pm_http_key_check("s3cret-key", 10, hex));
	for (int i = 0; i < 65; i++)
		upper[i] = (hex[i] >= 'a' && hex[i] <= 'f')
			       ? (char)(hex[i] - 'a' + 'A')
			       : hex[i];
	CHECK(pm_http_key_check("s3cret-key", 10, upper));
	CHECK(!pm_http_key_check("s3cret-kez", 10, hex));
	CHECK(!pm_http_key_check("s3cret-key", 9, hex));
	CHECK(!pm_http_key_check("", 0, hex));
	CHECK(!pm_http_key_check("s3cret-key", 10, NULL));
	CHECK(!pm_http_key_check("s3cret-key", 10, ""));
	CHECK(!pm_http_key_check("s3cret-key", 10, "abc"));
	hex[63] = '\0'; /* 63 digits */
	CHECK(!pm_http_key_check("s3cret-key", 10, hex));
	char longer[70];
	pm_http_key_hash("s3cret-key", 10, hex);
	snprintf(longer, sizeof longer, "%s0", hex); /* 65 digits */
	CHECK(!pm_http_key_check("s3cret-key", 10, longer));
	hex[10] = 'g';
	CHECK(!pm_http_key_check("s3cret-key", 10, hex));
}

/* ---- token bucket ------------------------------------------------------- */

static bool near(double a, double b)
{
	return fabs(a - b) < 1e-9;
}

static void test_bucket(void)
{
	pm_bucket b;
	double w;

	/* 2 per second, burst 3: three at once, then one every 0.5 s */
	pm_bucket_init(&b, 2, 3, 100.0);
	CHECK(near(b.tokens, 3));
	CHECK(pm_bucket_take(&b, 100.0) == 0);
	CHECK(pm_bucket_take(&b, 100.0) == 0);
	CHECK(pm_bucket_take(&b, 100.0) == 0);
	w = pm_bucket_take(&b, 100.0);
	CHECK(near(w, 0.5));
	w = pm_bucket_take(&b, 100.25); /* half a token back */
	CHECK(near(w, 0.25));
	CHECK(pm_bucket_take(&b, 100.5) == 0);
	CHECK(near(b.tokens, 0));
	w = pm_bucket_take(&b, 100.5);
	CHECK(near(w, 0.5));
	CHECK(w > 0 && ceil(w) == 1); /* Retry-After: 1 */

	/* a long idle time refills only up to burst */
	CHECK(pm_bucket_take(&b, 1000.0) == 0);
	CHECK(near(b.tokens, 2));
	CHECK(pm_bucket_take(&b, 1000.0) == 0);
	CHECK(pm_bucket_take(&b, 1000.0) == 0);
	CHECK(pm_bucket_take(&b, 1000.0) > 0);

	/* a refused take costs nothing: waiting the returned time works */
	pm_bucket_init(&b, 0.1, 1, 0.0);
	CHECK(pm_bucket_take(&b, 0.0) == 0);
	w = pm_bucket_take(&b, 0.0);
	CHECK(near(w, 10));
	w = pm_bucket_take(&b, 4.0);
	CHECK(near(w, 6));
	CHECK(pm_bucket_take(&b, 4.0 + w) == 0);

	/* the clock stepping back neither refills nor rewinds */
	pm_bucket_init(&b, 1, 1, 50.0);
	CHECK(pm_bucket_take(&b, 50.0) == 0);
	CHECK(near(pm_bucket_take(&b, 40.0), 1));
	CHECK(near(b.last, 50.0));
	CHECK(pm_bucket_take(&b, 51.0) == 0);
	CHECK(pm_bucket_take(&b, NAN) > 0);
	CHECK(near(b.last, 51.0));

	/* steady state: N seconds at rate r admit about r*N + burst */
	pm_bucket_init(&b, 50, 100, 0.0);
	int admitted = 0;
	for (int i = 0; i < 100000; i++)
		if (pm_bucket_take(&b, i * 0.0001) == 0) /* 10 s */
			admitted++;
	CHECK(admitted >= 599 && admitted <= 601);

	/* degenerate settings */
	pm_bucket_init(&b, 0, 2, 0.0);
	CHECK(pm_bucket_take(&b, 0.0) == 0);
	CHECK(pm_bucket_take(&b, 0.0) == 0);
	CHECK(pm_bucket_take(&b, 1e6) == PM_BUCKET_NEVER);
	pm_bucket_init(&b, -5, 1, 0.0);
	CHECK(pm_bucket_take(&b, 0.0) == 0);
	CHECK(pm_bucket_take(&b, 10.0) == PM_BUCKET_NEVER);
	pm_bucket_init(&b, 1, 0, 0.0); /* burst 0 is burst 1 */
	CHECK(near(b.burst, 1));
	CHECK(pm_bucket_take(&b, 0.0) == 0);
	CHECK(pm_bucket_take(&b, 0.0) > 0);
	pm_bucket_init(&b, 1, NAN, 0.0);
	CHECK(near(b.burst, 1));
	pm_bucket_init(&b, 1e300, 1, 0.0);
	CHECK(pm_bucket_take(&b, 0.0) == 0);
	w = pm_bucket_take(&b, 0.0);
	CHECK(w > 0 && w < 1e-6);
	pm_bucket_init(&b, 1e-12, 1, 0.0);
	CHECK(pm_bucket_take(&b, 0.0) == 0);
	CHECK(pm_bucket_take(&b, 0.0) == PM_BUCKET_NEVER); /* capped */
}

/* ---- --listen ------------------------------------------------------------ */

typedef struct listen_case {
	const char *spec;
	int family;	 /* 0: refused */
	const char *url; /* pm_http_listen_url with port 7 */
	unsigned port;
} listen_case;

static const listen_case listen_cases[] = {
    {"127.0.0.1:9464", AF_INET, "http://127.0.0.1:7/", 9464},
    {":9464", AF_INET, "http://0.0.0.0:7/", 9464},
    {"*:0", AF_INET, "http://0.0.0.0:7/", 0},
    {"localhost:80", AF_INET, "http://127.0.0.1:7/", 80},
    {"[::1]:9464", AF_INET6, "http://[::1]:7/", 9464},
    {"[::]:65535", AF_INET6, "http://[::]:7/", 65535},
    {"[::ffff:10.0.0.1]:1", AF_INET6, "http://[::ffff:10.0.0.1]:7/", 1},
    {"127.0.0.1", 0, NULL, 0},
    {"127.0.0.1:", 0, NULL, 0},
    {"127.0.0.1:65536", 0, NULL, 0},
    {"127.0.0.1:-1", 0, NULL, 0},
    {"127.0.0.1:80x", 0, NULL, 0},
    {"127.0.0.1: 80", 0, NULL, 0},
    {"1.2.3:80", 0, NULL, 0},
    {"example.com:80", 0, NULL, 0},
    {"::1:80", 0, NULL, 0},
    {"[::1:80", 0, NULL, 0},
    {"::1]:80", 0, NULL, 0},
    {"[]:80", 0, NULL, 0},
    {"[127.0.0.1]:80", 0, NULL, 0},
    {"[zz]:80", 0, NULL, 0},
    {"", 0, NULL, 0},
    {NULL, 0, NULL, 0},
    {"[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000]:1", 0,
     NULL, 0},
};

static void test_listen(void)
{
	for (size_t i = 0; i < sizeof listen_cases / sizeof listen_cases[0];
	     i++) {
		const listen_case *c = &listen_cases[i];
		struct sockaddr_storage sa;
		pm_err e = {{0}};
		char url[96];
		bool ok = pm_http_parse_listen(c->spec, &sa, &e);
		if (ok != (c->family != 0))
			fprintf(stderr, "listen %s\n",
				c->spec ? c->spec : "(null)");
		CHECK(ok == (c->family != 0));
		if (!ok) {
			CHECK(strstr(e.msg, "--listen") != NULL);
			continue;
		}
		CHECK_INT(sa.ss_family, c->family);
		CHECK_INT(ntohs(c->family == AF_INET
				    ? ((struct sockaddr_in *)&sa)->sin_port
				    : ((struct sockaddr_in6 *)&sa)->sin6_port),
			  c->port);
		pm_http_listen_url(&sa, 7, url, sizeof url);
		CHECK_STR(url, c->url);
	}
}

int main(void)
{
	test_choose_encoding();
	test_compressible();
	test_compress();
	test_range();
	test_etag();
	test_routes();
	test_url_decode();
	test_int_param();
	test_keys();
	test_bucket();
	test_listen();
	TEST_DONE();
}
