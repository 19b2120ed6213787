/* httputil.c — HTTP helpers of `pixmill serve`: content negotiation and
 * compression, Range, If-None-Match, routes, percent-decoding, strict
 * query integers, API key checks, token bucket, --listen addresses. See
 * httputil.h.
 *
 * Threads: any. Nothing here has state of its own; a pm_bucket is guarded
 * by its caller.
 */
#define ZLIB_CONST
#include "serve/httputil.h"

#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <brotli/encode.h>
#include <openssl/crypto.h>
#include <zlib.h>
#include <zstd.h>

#include "core/util.h"

/* Compression settings for on-the-fly responses. Measured on a 100 KB
 * /api/jobs/N/items page (2 cores, brotli 1.0.9, zstd 1.5.4, zlib 1.2.13):
 *   gzip 6      11.9% of the input, ~0.8 ms
 *   brotli q4   10.6%, ~0.5 ms;  q5 10.2%, ~1 ms;  q6-q8 no smaller, slower;
 *               q9 ~100 ms; q10/q11 9.0%, 30-150 ms (offline only)
 *   zstd 3      10.5%, ~0.1 ms
 * Brotli q5 is the knee: ~100 MB/s, within 1% of q8's size. lgwin 22 (4
 * MiB) covers any body we compress; BrotliEncoderCompress sizes its ring
 * buffer to the input, so small bodies do not pay for the window. */
enum {
	GZIP_LEVEL = 6,
	BROTLI_QUALITY = 5,
	BROTLI_LGWIN = 22,
	ZSTD_LEVEL = 3,
};

const char *pm_encoding_name(pm_encoding e)
{
	switch (e) {
	case PM_ENC_GZIP:
		return "gzip";
	case PM_ENC_BR:
		return "br";
	case PM_ENC_ZSTD:
		return "zstd";
	case PM_ENC_IDENTITY:
	default:
		return "identity";
	}
}

/* ---- tokens ------------------------------------------------------------ */

static bool is_ows(char c)
{
	return c == ' ' || c == '\t';
}

static const char *skip_ows(const char *p)
{
	while (is_ows(*p))
		p++;
	return p;
}

/* RFC 9110 5.6.2 tchar. */
static bool is_tchar(char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *skip_token(const char *p)
{
	while (is_tchar(*p))
		p++;
	return p;
}

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Whether s[0..n) equals the lowercase word w, ignoring case. */
static bool word_eq(const char *s, size_t n, const char *w)
{
	if (strlen(w) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (lower(s[i]) != w[i])
			return false;
	return true;
}

/* Skips a quoted-string starting at p[0] == '"'; returns the byte after the
 * closing quote, or NULL if it is not closed. */
static const char *skip_quoted(const char *p)
{
	for (p++; *p; p++) {
		if (*p == '\\') {
			if (!p[1])
				return NULL;
			p++;
		} else if (*p == '"') {
			return p + 1;
		}
	}
	return NULL;
}

/* Skips to the next ',' that is not inside a quoted string, or the end. */
static const char *skip_element(const char *p)
{
	while (*p && *p != ',') {
		if (*p == '"') {
			const char *q = skip_quoted(p);
			if (!q)
				return p + strlen(p);
			p = q;
		} else {
			p++;
		}
	}
	return p;
}

/* ---- Accept-Encoding ---------------------------------------------------- */

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), as an
 * integer in thousandths. */
static bool parse_qvalue(const char *s, size_t n, int *q)
{
	int v;
	size_t i;

	if (n == 0 || (s[0] != '0' && s[0] != '1'))
		return false;
	v = (s[0] - '0') * 1000;
	if (n == 1) {
		*q = v;
		return true;
	}
	if (s[1] != '.' || n > 5)
		return false;
	int scale = 100;
	for (i = 2; i < n; i++, scale /= 10) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v += (s[i] - '0') * scale;
	}
	if (v > 1000)
		return false;
	*q = v;
	return true;
}

enum { CODING_COUNT = 4 };

/* Weights in thousandths, -1 = not named. Index = pm_encoding. */
typedef struct weights {
	int named[CODING_COUNT];
	int star;
} weights;

static void note_coding(weights *w, const char *tok, size_t n, int q)
{
	int *slot;

	if (word_eq(tok, n, "gzip") || word_eq(tok, n, "x-gzip"))
		slot = &w->named[PM_ENC_GZIP];
	else if (word_eq(tok, n, "br"))
		slot = &w->named[PM_ENC_BR];
	else if (word_eq(tok, n, "zstd"))
		slot = &w->named[PM_ENC_ZSTD];
	else if (word_eq(tok, n, "identity"))
		slot = &w->named[PM_ENC_IDENTITY];
	else if (n == 1 && tok[0] == '*')
		slot = &w->star;
	else
		return; /* a coding we do not offer */
	/* Named twice: the lower weight wins, so a q=0 anywhere forbids. */
	if (*slot < 0 || q < *slot)
		*slot = q;
}

/* Parses one list element at p (OWS already skipped) into w; returns the
 * position of the ',' or NUL that ends it. */
static const char *parse_coding(const char *p, weights *w)
{
	const char *tok = p;
	size_t tok_n;
	bool ok;
	int q = 1000;

	p = skip_token(p);
	tok_n = (size_t)(p - tok);
	ok = tok_n > 0;
	p = skip_ows(p);
	while (ok && *p == ';') {
		const char *name, *val;
		size_t name_n, val_n;

		p = skip_ows(p + 1);
		name = p;
		p = skip_token(p);
		name_n = (size_t)(p - name);
		p = skip_ows(p);
		if (name_n == 0 || *p != '=') {
			ok = false;
			break;
		}
		p = skip_ows(p + 1);
		val = p;
		if (*p == '"') {
			p = skip_quoted(p);
			if (!p)
				return val + strlen(val);
		} else {
			p = skip_token(p);
		}
		val_n = (size_t)(p - val);
		if (name_n == 1 && lower(name[0]) == 'q' &&
		    !parse_qvalue(val, val_n, &q))
			ok = false;
		p = skip_ows(p);
	}
	if (*p && *p != ',')
		ok = false;
	if (ok)
		note_coding(w, tok, tok_n, q);
	return skip_element(p);
}

pm_encoding pm_http_choose_encoding(const char *accept_encoding)
{
	/* Best first: a tie keeps the earlier one. */
	static const pm_encoding order[] = {PM_ENC_ZSTD, PM_ENC_BR,
					    PM_ENC_GZIP};
	weights w = {.named = {-1, -1, -1, -1}, .star = -1};
	const char *p = accept_encoding;
	pm_encoding best = PM_ENC_IDENTITY;
	int best_q = 0, ident_q;

	if (!p)
		return PM_ENC_IDENTITY;
	for (;;) {
		while (*p == ',' || is_ows(*p))
			p++;
		if (!*p)
			break;
		p = parse_coding(p, &w);
	}
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		int q = w.named[order[i]];
		if (q < 0)
			q = w.star < 0 ? 0 : w.star;
		if (q > best_q) {
			best_q = q;
			best = order[i];
		}
	}
	if (best_q == 0)
		return PM_ENC_IDENTITY;
	ident_q =
	    w.named[PM_ENC_IDENTITY] >= 0 ? w.named[PM_ENC_IDENTITY] : w.star;
	return ident_q > best_q ? PM_ENC_IDENTITY : best;
}

/* ---- Content-Type ------------------------------------------------------- */

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

bool pm_http_compressible(const char *content_type)
{
	static const char *const yes[] = {
	    "application/json",	     "application/javascript",
	    "application/xml",	     "application/x-ndjson",
	    "image/svg+xml",	     "application/x-javascript",
	    "application/ecmascript"};
	char t[128];
	size_t n = 0;
	const char *p;

	if (!content_type)
		return false;
	p = skip_ows(content_type);
	for (; *p && *p != ';' && !is_ows(*p); p++) {
		if (n + 1 >= sizeof t)
			return false; /* no real media type is this long */
		t[n++] = lower(*p);
	}
	t[n] = '\0';
	if (strcmp(t, "text/event-stream") == 0)
		return false; /* streamed: compressing would buffer events */
	if (strncmp(t, "text/", 5) == 0)
		return n > 5;
	for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
		if (strcmp(t, yes[i]) == 0)
			return true;
	/* application/problem+json, application/ld+json, application/rss+xml */
	if (strncmp(t, "application/", 12) == 0 && n > 12 &&
	    (ends_with(t, n, "+json") || ends_with(t, n, "+xml")))
		return true;
	return false;
}

/* ---- compression -------------------------------------------------------- */

static pm_status compress_gzip(const unsigned char *in, size_t len,
			       unsigned char **out, size_t *out_len,
			       pm_err *err)
{
	z_stream zs;
	unsigned char *buf;
	size_t cap, done = 0, in_left = len;
	int rc;

	memset(&zs, 0, sizeof zs);
	rc = deflateInit2(&zs, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8,
			  Z_DEFAULT_STRATEGY);
	if (rc == Z_MEM_ERROR)
		return pm_fail(err, PM_ERR_NOMEM, "gzip: out of memory");
	if (rc != Z_OK)
		return pm_fail(err, PM_ERR_INTERNAL, "gzip: deflateInit2: %d",
			       rc);
	/* Enough for one pass; the loop below grows it should a chunked pass
	 * (bodies over 4 GiB) need more. */
	cap = deflateBound(&zs, len);
	if (cap < len)
		cap = len; /* overflowed */
	buf = malloc(cap ? cap : 1);
	if (!buf) {
		deflateEnd(&zs);
		return pm_fail(err, PM_ERR_NOMEM, "gzip: out of memory (%zu)",
			       cap);
	}
	for (;;) {
		size_t room;

		if (zs.avail_in == 0 && in_left) {
			size_t chunk = in_left < UINT_MAX ? in_left : UINT_MAX;
			zs.next_in = in + (len - in_left);
			zs.avail_in = (uInt)chunk;
			in_left -= chunk;
		}
		if (done == cap) {
			size_t ncap = cap * 2;
			unsigned char *nb;
			if (ncap <= cap || !(nb = realloc(buf, ncap))) {
				free(buf);
				deflateEnd(&zs);
				return pm_fail(err, PM_ERR_NOMEM,
					       "gzip: out of memory (%zu)",
					       ncap);
			}
			buf = nb;
			cap = ncap;
		}
		room = cap - done < UINT_MAX ? cap - done : UINT_MAX;
		zs.next_out = buf + done;
		zs.avail_out = (uInt)room;
		rc = deflate(&zs, in_left ? Z_NO_FLUSH : Z_FINISH);
		done += room - zs.avail_out;
		if (rc == Z_STREAM_END)
			break;
		if (rc != Z_OK && rc != Z_BUF_ERROR) {
			free(buf);
			deflateEnd(&zs);
			return pm_fail(err, PM_ERR_INTERNAL,
				       "gzip: deflate: %d", rc);
		}
	}
	deflateEnd(&zs);
	*out = buf;
	*out_len = done;
	return PM_OK;
}

static pm_status compress_br(const unsigned char *in, size_t len,
			     unsigned char **out, size_t *out_len, pm_err *err)
{
	static const unsigned char none[1];
	size_t cap = BrotliEncoderMaxCompressedSize(len);
	unsigned char *buf;

	if (cap == 0)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "brotli: %zu bytes is too large", len);
	buf = malloc(cap);
	if (!buf)
		return pm_fail(err, PM_ERR_NOMEM, "brotli: out of memory (%zu)",
			       cap);
	if (!BrotliEncoderCompress(BROTLI_QUALITY, BROTLI_LGWIN,
				   BROTLI_MODE_GENERIC, len, len ? in : none,
				   &cap, buf)) {
		free(buf);
		return pm_fail(err, PM_ERR_INTERNAL,
			       "brotli: BrotliEncoderCompress failed on %zu "
			       "bytes",
			       len);
	}
	*out = buf;
	*out_len = cap;
	return PM_OK;
}

static pm_status compress_zstd(const unsigned char *in, size_t len,
			       unsigned char **out, size_t *out_len,
			       pm_err *err)
{
	static const unsigned char none[1];
	size_t cap = ZSTD_compressBound(len), n;
	unsigned char *buf;

	if (ZSTD_isError(cap) || cap == 0)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "zstd: %zu bytes is too large", len);
	buf = malloc(cap);
	if (!buf)
		return pm_fail(err, PM_ERR_NOMEM, "zstd: out of memory (%zu)",
			       cap);
	n = ZSTD_compress(buf, cap, len ? in : none, len, ZSTD_LEVEL);
	if (ZSTD_isError(n)) {
		free(buf);
		return pm_fail(err, PM_ERR_INTERNAL, "zstd: %s",
			       ZSTD_getErrorName(n));
	}
	*out = buf;
	*out_len = n;
	return PM_OK;
}

pm_status pm_compress(pm_encoding enc, const void *in, size_t len, void **out,
		      size_t *out_len, pm_err *err)
{
	unsigned char *buf = NULL;
	size_t n = 0;
	pm_status s;

	if (!out || !out_len)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "pm_compress: no place for the result");
	*out = NULL;
	*out_len = 0;
	if (!in && len)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "pm_compress: NULL input of %zu bytes", len);
	switch (enc) {
	case PM_ENC_IDENTITY:
		buf = malloc(len ? len : 1);
		if (!buf)
			return pm_fail(err, PM_ERR_NOMEM,
				       "copy: out of memory (%zu)", len);
		if (len)
			memcpy(buf, in, len);
		n = len;
		s = PM_OK;
		break;
	case PM_ENC_GZIP:
		s = compress_gzip(in, len, &buf, &n, err);
		break;
	case PM_ENC_BR:
		s = compress_br(in, len, &buf, &n, err);
		break;
	case PM_ENC_ZSTD:
		s = compress_zstd(in, len, &buf, &n, err);
		break;
	default:
		return pm_fail(err, PM_ERR_INTERNAL,
			       "pm_compress: unknown encoding %d", (int)enc);
	}
	if (s != PM_OK)
		return s;
	/* The bound is about the input's size; give the rest back. */
	if (n && n < len / 2) {
		unsigned char *shrunk = realloc(buf, n);
		if (shrunk)
			buf = shrunk;
	}
	*out = buf; /* ownership passes to the caller */
	*out_len = n;
	return PM_OK;
}

/* ---- Range -------------------------------------------------------------- */

/* Reads 1+ digits at *pp into *v, saturating at INT64_MAX. */
static bool parse_digits(const char **pp, int64_t *v)
{
	const char *p = *pp;
	int64_t x = 0;

	if (*p < '0' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		int d = *p - '0';
		x = x > (INT64_MAX - d) / 10 ? INT64_MAX : x * 10 + d;
	}
	*pp = p;
	*v = x;
	return true;
}

/* Parses one range-spec between spec and the ',' or NUL after it. Returns
 * 1, 0 or -1 as pm_http_range. */
static int range_spec(const char *p, int64_t size, int64_t *start, int64_t *end)
{
	int64_t a, b;

	if (*p == '-') {
		p++;
		if (!parse_digits(&p, &b))
			return 0;
		p = skip_ows(p);
		if (*p && *p != ',')
			return 0;
		if (b == 0)
			return -1;
		if (size == 0)
			return 0; /* nothing to cut: send the empty body */
		*start = b >= size ? 0 : size - b;
		*end = size - 1;
		return 1;
	}
	if (!parse_digits(&p, &a) || *p != '-')
		return 0;
	p++;
	b = INT64_MAX;
	if (*p >= '0' && *p <= '9')
		parse_digits(&p, &b);
	p = skip_ows(p);
	if (*p && *p != ',')
		return 0;
	if (b < a)
		return 0; /* invalid range-spec: ignore the header */
	if (a >= size)
		return -1;
	*start = a;
	*end = b >= size ? size - 1 : b;
	return 1;
}

int pm_http_range(const char *hdr, int64_t size, int64_t *start, int64_t *end)
{
	const char *p, *spec = NULL;
	int r;

	*start = 0;
	*end = size - 1;
	if (!hdr || size < 0)
		return 0;
	p = skip_ows(hdr);
	if (strncasecmp(p, "bytes=", 6) != 0)
		return 0;
	p += 6;
	/* 1#range-spec: empty elements are allowed, more than one real
	 * range is not served (we do not do multipart/byteranges). */
	for (;;) {
		while (*p == ',' || is_ows(*p))
			p++;
		if (!*p)
			break;
		if (spec)
			return 0;
		spec = p;
		p = skip_element(p);
	}
	if (!spec)
		return 0;
	r = range_spec(spec, size, start, end);
	if (r != 1) {
		*start = 0;
		*end = size - 1;
	}
	return r;
}

/* ---- If-None-Match ------------------------------------------------------ */

/* Finds the opaque text of an entity tag at p: W/ skipped, the quotes
 * stripped. Returns the byte after the tag, or NULL if p is not a tag. */
static const char *entity_tag(const char *p, const char **text, size_t *n)
{
	if (p[0] == 'W' && p[1] == '/')
		p += 2;
	if (*p != '"')
		return NULL;
	const char *s = ++p;
	/* etagc = %x21 / %x23-7E / obs-text */
	while (*p && *p != '"' &&
	       ((unsigned char)*p == 0x21 || (unsigned char)*p >= 0x23) &&
	       (unsigned char)*p != 0x7f)
		p++;
	if (*p != '"')
		return NULL;
	*text = s;
	*n = (size_t)(p - s);
	return p + 1;
}

bool pm_http_etag_match(const char *hdr, const char *etag)
{
	const char *want, *p;
	size_t want_n;

	if (!hdr || !etag || !*etag)
		return false;
	p = entity_tag(etag, &want, &want_n);
	if (!p || *p) {
		/* Not a quoted tag: the whole string is the opaque text. */
		want = etag;
		want_n = strlen(etag);
	}
	p = hdr;
	for (;;) {
		const char *text, *after;
		size_t n;

		while (*p == ',' || is_ows(*p))
			p++;
		if (!*p)
			return false;
		if (*p == '*') {
			after = skip_ows(p + 1);
			if (!*after || *after == ',')
				return true;
		}
		after = entity_tag(p, &text, &n);
		if (after) {
			after = skip_ows(after);
			if ((!*after || *after == ',') && n == want_n &&
			    memcmp(text, want, n) == 0)
				return true;
			p = after;
		}
		p = skip_element(p);
	}
}

/* ---- routes and percent-decoding ---------------------------------------- */

bool pm_url_decode(const char *in, size_t in_len, char *out, size_t out_sz)
{
	size_t o = 0;

	if (!out || out_sz == 0)
		return false;
	out[0] = '\0';
	if (!in && in_len)
		return false;
	for (size_t i = 0; i < in_len; i++) {
		char c = in[i];
		if (c == '%') {
			int hi, lo;
			if (in_len - i < 3 || (hi = pm_hexval(in[i + 1])) < 0 ||
			    (lo = pm_hexval(in[i + 2])) < 0)
				goto bad;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (c == '\0' || o + 1 >= out_sz)
			goto bad;
		out[o++] = c;
	}
	out[o] = '\0';
	return true;
bad:
	out[0] = '\0';
	return false;
}

bool pm_route_match(const char *pattern, const char *path, char caps[][128],
		    int max_caps, int *n_caps)
{
	const char *pp = pattern, *sp = path;
	int n = 0;

	if (n_caps)
		*n_caps = 0;
	if (!pattern || !path)
		return false;
	for (;;) {
		size_t pn = strcspn(pp, "/"), sn = strcspn(sp, "/");

		if (pn >= 2 && pp[0] == '{' && pp[pn - 1] == '}') {
			char *cap;
			if (sn == 0 || !caps || n >= max_caps)
				return false;
			cap = caps[n];
			if (!pm_url_decode(sp, sn, cap, sizeof caps[n]) ||
			    strchr(cap, '/') || strcmp(cap, ".") == 0 ||
			    strcmp(cap, "..") == 0)
				return false;
			n++;
		} else if (pn != sn || memcmp(pp, sp, pn) != 0) {
			return false;
		}
		pp += pn;
		sp += sn;
		if (!*pp || !*sp) {
			if (*pp != *sp)
				return false;
			break;
		}
		pp++; /* both at '/' */
		sp++;
	}
	if (n_caps)
		*n_caps = n;
	return true;
}

/* ---- query integers ----------------------------------------------------- */

bool pm_http_int_param(const char *s, int64_t lo, int64_t hi, int64_t dflt,
		       int64_t *out)
{
	bool neg = false;
	uint64_t mag = 0, limit;
	int64_t v;

	if (!s) {
		*out = dflt;
		return true;
	}
	if (*s == '-') {
		neg = true;
		s++;
	}
	if (!*s)
		return false;
	/* |INT64_MIN| = INT64_MAX + 1 */
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		unsigned d = (unsigned)(*s - '0');
		if (mag > (limit - d) / 10)
			return false;
		mag = mag * 10 + d;
	}
	if (neg)
		v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
	else
		v = (int64_t)mag;
	if (v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* ---- API keys ----------------------------------------------------------- */

bool pm_http_key_equal(const unsigned char *a, const unsigned char *b, size_t n)
{
	if (n == 0)
		return true;
	return CRYPTO_memcmp(a, b, n) == 0;
}

void pm_http_key_hash(const void *key, size_t len, char hex[65])
{
	static const char none[1];
	pm_sha256_hex(len ? key : none, len, hex);
}

bool pm_http_key_check(const void *key, size_t len, const char *want_hex)
{
	char want[65], got[65];

	if (!want_hex || (!key && len))
		return false;
	/* The configured hash is not secret; only the comparison with the
	 * presented key's hash must not leak where they differ. */
	for (int i = 0; i < 64; i++) {
		if (pm_hexval(want_hex[i]) < 0)
			return false;
		want[i] = lower(want_hex[i]);
	}
	if (want_hex[64] != '\0')
		return false;
	want[64] = '\0';
	pm_http_key_hash(key, len, got);
	return pm_http_key_equal((const unsigned char *)got,
				 (const unsigned char *)want, 64);
}

/* ---- token bucket ------------------------------------------------------- */

void pm_bucket_init(pm_bucket *b, double rate, double burst, double now)
{
	if (!(burst >= 1)) /* also NaN */
		burst = 1;
	if (!(rate > 0))
		rate = 0;
	b->rate = rate;
	b->burst = burst;
	b->tokens = burst;
	b->last = now;
}

double pm_bucket_take(pm_bucket *b, double now)
{
	double wait;

	/* A clock that steps back (or NaN) neither refills nor moves last
	 * backwards, so the time is not counted twice. */
	if (now > b->last) {
		if (b->rate > 0) {
			double t = b->tokens + (now - b->last) * b->rate;
			b->tokens = t < b->burst ? t : b->burst;
		}
		b->last = now;
	}
	/* The epsilon absorbs rounding, so that waiting exactly the time
	 * returned below is always enough. */
	if (b->tokens >= 1 - 1e-9) {
		b->tokens -= 1;
		return 0;
	}
	if (!(b->rate > 0))
		return PM_BUCKET_NEVER;
	wait = (1 - b->tokens) / b->rate;
	if (!(wait > 1e-9))
		wait = 1e-9;
	if (wait > PM_BUCKET_NEVER)
		wait = PM_BUCKET_NEVER;
	return wait;
}

/* ---- --listen ----------------------------------------------------------- */

bool pm_http_parse_listen(const char *spec, struct sockaddr_storage *sa,
			  pm_err *err)
{
	struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
	char host[64];
	const char *colon, *h = spec;
	size_t hn;
	int64_t port;

	memset(sa, 0, sizeof *sa);
	colon = spec ? strrchr(spec, ':') : NULL;
	if (!colon) {
		pm_fail(err, PM_ERR_USAGE, "--listen wants ADDR:PORT, not %s",
			spec ? spec : "nothing");
		return false;
	}
	if (!pm_http_int_param(colon + 1, 0, 65535, 0, &port)) {
		pm_fail(err, PM_ERR_USAGE, "--listen: bad port in %s", spec);
		return false;
	}
	hn = (size_t)(colon - spec);
	if (hn >= 2 && spec[0] == '[' && colon[-1] == ']') {
		h = spec + 1;
		hn -= 2;
		if (hn >= sizeof host)
			goto bad;
		memcpy(host, h, hn);
		host[hn] = 0;
		if (inet_pton(AF_INET6, host, &v6->sin6_addr) != 1)
			goto bad;
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		return true;
	}
	if (hn >= sizeof host)
		goto bad;
	memcpy(host, h, hn);
	host[hn] = 0;
	if (!host[0] || strcmp(host, "*") == 0)
		strcpy(host, "0.0.0.0");
	else if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (inet_pton(AF_INET, host, &v4->sin_addr) != 1)
		goto bad;
	v4->sin_family = AF_INET;
	v4->sin_port = htons((uint16_t)port);
	return true;
bad:
	memset(sa, 0, sizeof *sa);
	pm_fail(err, PM_ERR_USAGE,
		"--listen: %.*s is not an IPv4 address nor [an IPv6 one]",
		(int)(colon - spec), spec);
	return false;
}

void pm_http_listen_url(const struct sockaddr_storage *sa, unsigned port,
			char *buf, size_t size)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (sa->ss_family == AF_INET6) {
		inet_ntop(AF_INET6,
			  &((const struct sockaddr_in6 *)sa)->sin6_addr, a,
			  sizeof a);
		snprintf(buf, size, "http://[%s]:%u/", a, port);
		return;
	}
	inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, a,
		  sizeof a);
	snprintf(buf, size, "http://%s:%u/", a, port);
}
