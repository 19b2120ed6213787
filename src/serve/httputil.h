/* httputil.h — the small HTTP helpers of `pixmill serve` that are ours, not
 * libmicrohttpd's: Accept-Encoding negotiation and response compression
 * (gzip, brotli, zstd), Range and If-None-Match evaluation, route matching
 * with percent-decoded captures, strict query integers, constant-time API
 * key checks, a token bucket for rate limits and --listen addresses.
 *
 * Threads: every function is pure or writes only memory the caller passed,
 * so any thread may call any of them at the same time — except that one
 * pm_bucket must not be used by two threads at once (the caller locks).
 */
#ifndef PM_HTTPUTIL_H
#define PM_HTTPUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include "core/status.h"

typedef enum pm_encoding {
	PM_ENC_IDENTITY = 0,
	PM_ENC_GZIP,
	PM_ENC_BR,
	PM_ENC_ZSTD
} pm_encoding;

/* "identity", "gzip", "br" or "zstd" (the Content-Encoding value); an
 * unknown value gives "identity". Never NULL; static storage. */
const char *pm_encoding_name(pm_encoding e);

/* Picks the response coding for an Accept-Encoding value (RFC 9110
 * 12.5.3). Codings are case-insensitive tokens with an optional ";q=" weight
 * (0 to 1, at most three decimals; q=0 forbids the coding); "*" weighs every
 * coding not named; "x-gzip" is gzip. An element with a malformed weight
 * ("gzip;q=1.5") or other garbage is ignored as a whole; a coding named
 * twice keeps its lowest weight. The highest weight wins, ties prefer
 * zstd > br > gzip; identity wins only when it is named (or matched by "*")
 * with a weight above every coding's. NULL, empty, or nothing acceptable:
 * PM_ENC_IDENTITY. */
pm_encoding pm_http_choose_encoding(const char *accept_encoding);

/* Whether a body of this Content-Type is worth compressing: any text type
 * (but not text/event-stream, which is streamed), application/json,
 * application/javascript, application/xml, application/x-ndjson, the
 * application types with a +json or +xml suffix, and image/svg+xml.
 * Everything else — other images, video, audio, fonts, archives, NULL — is
 * not. Case-insensitive; parameters (";charset=utf-8") are ignored. */
bool pm_http_compressible(const char *content_type);

/* Compresses in[0..len) with enc: gzip (zlib, level 6), brotli (quality 5,
 * window 22) or zstd (level 3); PM_ENC_IDENTITY copies. in may be NULL when
 * len is 0. On PM_OK *out is a malloc'd buffer of *out_len bytes that the
 * caller owns and frees; on failure *out is NULL, *out_len 0, and err says
 * why (PM_ERR_NOMEM, or PM_ERR_INTERNAL for a library failure or a bad
 * argument). */
pm_status pm_compress(pm_encoding enc, const void *in, size_t len, void **out,
		      size_t *out_len, pm_err *err);

/* Evaluates a Range header (RFC 9110 14) against a body of size bytes:
 * "bytes=a-b", "bytes=a-" or "bytes=-n" (unit case-insensitive, OWS around
 * the one range allowed). Returns
 *   1  one satisfiable range: *start..*end inclusive, end clamped to
 *      size - 1 (0 <= *start <= *end < size);
 *   0  serve the whole body: no header, another unit, several ranges, a
 *      syntax error, last < first ("bytes=5-2"), or a suffix range on an
 *      empty body;
 *  -1  unsatisfiable (answer 416): first >= size, or "bytes=-0".
 * Numbers of any length saturate instead of overflowing (a huge first is
 * past the end, a huge last or suffix means "to the end"). When the result
 * is not 1, *start = 0 and *end = size - 1. start and end must not be
 * NULL. */
int pm_http_range(const char *hdr, int64_t size, int64_t *start, int64_t *end);

/* Evaluates If-None-Match (RFC 9110 13.1.2) for a representation whose
 * entity tag is etag ("\"abc\"", optionally W/"abc"; an unquoted etag is
 * taken as the opaque text itself): true when hdr is "*" or a comma list
 * with an element that matches by the weak comparison (W/ ignored on both
 * sides). Elements that are not entity tags are ignored. NULL or empty hdr
 * or etag: false. */
bool pm_http_etag_match(const char *hdr, const char *etag);

/* Matches a request path (no query string) against a route pattern such
 * as "/api/jobs/{id}/items". Literal segments compare byte for byte, raw.
 * Each "{name}" segment captures one non-empty path segment, percent-
 * decoded with pm_url_decode into caps[i] (at most 127 bytes plus NUL); a
 * capture that does not decode, is longer, decodes to "." or "..", or would
 * contain '/' or NUL fails the match. "/a/b/" does not match "/a/b" (nor
 * the reverse); empty segments ("//") match only empty literal segments.
 * Returns true on a full match and sets *n_caps (if not NULL) to the number
 * of captures; false otherwise (*n_caps = 0; caps may be partly written).
 * More captures than max_caps: false. */
bool pm_route_match(const char *pattern, const char *path, char caps[][128],
		    int max_caps, int *n_caps);

/* Percent-decodes in[0..in_len) into out (out_sz bytes including the
 * terminating NUL). '+' stays '+' (this is for path segments). False on a
 * '%' not followed by two hex digits, on %00 or a raw NUL byte, or when
 * the result does not fit; out is then "" (if out_sz > 0). */
bool pm_url_decode(const char *in, size_t in_len, char *out, size_t out_sz);

/* Parses a decimal query parameter strictly: an optional '-' then one or
 * more digits, nothing else (no spaces, '+', hex or trailing junk). NULL s
 * gives *out = dflt and true. False — with *out untouched — for junk, the
 * empty string, overflow, or a value outside [lo, hi]. */
bool pm_http_int_param(const char *s, int64_t lo, int64_t hi, int64_t dflt,
		       int64_t *out);

/* Compares n bytes of a and b in time that does not depend on their
 * contents (CRYPTO_memcmp). True when equal; n == 0 is equal. */
bool pm_http_key_equal(const unsigned char *a, const unsigned char *b,
		       size_t n);

/* The SHA-256 of an API key as 64 lowercase hex digits plus NUL — what the
 * config's "api_keys[].sha256" holds (`pixmill hash-key`). */
void pm_http_key_hash(const void *key, size_t len, char hex[65]);

/* Whether key[0..len) hashes to want_hex (64 hex digits, either case). The
 * hashes are compared in constant time. False when want_hex is not 64 hex
 * digits. */
bool pm_http_key_check(const void *key, size_t len, const char *want_hex);

/* Token bucket: refills at rate tokens per second up to burst tokens. Not
 * thread-safe by itself: the caller holds a lock around each call. now is
 * any clock in seconds that does not go backwards (pm_now()). */
typedef struct pm_bucket {
	double tokens, rate, burst, last;
} pm_bucket;

/* What pm_bucket_take returns when the bucket never refills (rate <= 0). */
#define PM_BUCKET_NEVER 86400.0

/* Starts the bucket full. A burst below 1 is taken as 1 (a bucket that can
 * never hold a whole token would refuse everything). */
void pm_bucket_init(pm_bucket *b, double rate, double burst, double now);
/* Refills for the time since the last call, then takes one token: returns
 * 0 if it did, else the seconds until one is available (> 0; round up for
 * Retry-After), or PM_BUCKET_NEVER if rate <= 0. */
double pm_bucket_take(pm_bucket *b, double now);

/* Parses a --listen value HOST:PORT into *sa (a sockaddr_in or, for
 * "[IPv6]:PORT", a sockaddr_in6). HOST: an IPv4 address, "localhost"
 * (127.0.0.1), "*" or empty (every IPv4 address: ":9464"), or an IPv6
 * address in brackets ("[::1]", "[::]"). PORT: 0 to 65535 decimal (0: any
 * free port). False with err = PM_ERR_USAGE (naming the value) for
 * anything else; spec NULL is an error too. */
bool pm_http_parse_listen(const char *spec, struct sockaddr_storage *sa,
			  pm_err *err);

/* "http://ADDR:PORT/" of a listening address (IPv6 in brackets) into buf
 * (NUL-terminated, cut to size). port is the one really bound (port 0 in
 * sa means any). */
void pm_http_listen_url(const struct sockaddr_storage *sa, unsigned port,
			char *buf, size_t size);

#endif
