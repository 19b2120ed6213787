/* origin.c — the test origin: a small programmable HTTP/1.1 server on
 * loopback (127.0.0.1 unless --bind says otherwise) for the fetch tests
 * (tests/unit/test_fetch.c, tests/cli/test_cli.sh, tests/cli/test_network.sh),
 * the fleet tests (tests/fleet/, --bind on a veth address so that workers in
 * other network namespaces reach it) and bench/net.sh, bench/fleet.sh. It
 * serves a folder and synthetic bodies with faults injected per URL or by
 * ratio, and counts requests so that tests can assert on them.
 *
 * Run:  origin [OPTIONS] [PORT]      (PORT 0 or none: any free port)
 * Once listening it prints the port on the first line of stdout (and into
 * --port-file FILE, written atomically): that line is the ready signal.
 * Options (also in usage() below):
 *   --bind ADDR          IPv4 address to listen on [127.0.0.1]
 *   --root DIR           folder of /file/NAME [$ORIGIN_ROOT, else .]
 *   --latency MS         wait before answering every counted request [0]
 *   --fault-ratio R      share of /file/ and /img/ URLs (0..1) that fail
 *                        at first; which URLs, and which fault each attempt
 *                        gets, come from a hash of the path+query, the
 *                        attempt number and --seed, so runs reproduce [0]
 *   --fault-kinds LIST   faults drawn for those [503,500,429,reset,truncate]
 *   --fault-times N      attempts a faulty URL fails before it recovers [2]
 *   --seed N             seed of that hash [1]
 *   --slow-ms MS         the delay of the "slow" fault [1500]
 *   --drip-rate B        bytes per second of "drip" [100]
 *   --hang-max SEC       longest a "timeout" request is held [3600]
 *   --idle-timeout SEC   closes keep-alive connections idle this long [300]
 *   --max-conns N        connections served at once; more wait in the
 *                        listen backlog [2048]
 *   --die-with-parent    exit when the process that started it exits
 *   --verbose            one line per request on stderr
 *
 * Paths (every counted path also takes ?latency=MS, or ?delay=MS, a wait
 * before answering, added to --latency):
 *   /file/NAME[?fault=F&times=N&tag=T]
 *                        the file NAME from --root, with an ETag and a
 *                        Last-Modified; 304 to a matching If-None-Match (or,
 *                        without one, a fresh If-Modified-Since). The first
 *                        N requests of this path+query (default: all of
 *                        them) get fault F instead. T only makes URLs
 *                        distinct.
 *   /img/NAME[?size=N&fault=F&times=N]
 *                        N bytes (default 1000): byte i is (i * 7 +
 *                        len(NAME) * 13 + NAME[0]) % 251 (test_fetch.c
 *                        checks it); fixed Last-Modified, 304 as above
 *   /status/CODE[?times=N]  CODE the first N times (default: always), then
 *                        200 "ok"
 *   /retry-after/N[?after=S&date=1]
 *                        429 with Retry-After: S (default 1; an HTTP-date
 *                        if date=1) N times, then 200 "ok"
 *   /reset[?times=N]     TCP reset N times (default 1), then 200 "ok"
 *   /slow                Content-Length 1000, drips 10 bytes/s
 *   /big[?size=N]        Content-Length N (default 100 MiB) of zeros
 *   /big-chunked         chunked, endless 64 KiB chunks
 *   /redirect?to=URL[&code=C]   C (default 302) with Location: URL
 *   /redirect/N?to=URL[&code=C] a chain: N redirects (1..1000), the last
 *                        one to URL (default /img/redirected)
 *   /redirect-private[?target=T&path=P]
 *                        302 to a private address: T metadata (default,
 *                        http://169.254.169.254/latest/meta-data/), mapped
 *                        (the same as IPv4-mapped IPv6) or loopback
 *                        (http://127.0.0.1:PORT/P, P default /img/private).
 *                        For SSRF-guard tests only: a client without the
 *                        guard really connects there.
 *   /loop                302 to itself, forever
 *   /html                200 text/html (an error page served as success)
 *   /hang                reads the request, never answers
 *   /headers             the request headers, one "name: value" a line
 *   /count               JSON: {"counts": {path+query: n}, "max_active":
 *                        {host: n}, "max_per_sec": {host: n}, "total": n,
 *                        "connections": {"active", "max", "total"},
 *                        "responses": {code: n}, "faults": {kind: n},
 *                        "faulted": {path+query: faults injected}}
 *                        (/stats is the same)
 *   /count?path=P        requests P (path+query, URL-encoded) received
 *   /count?max_active=HOST   most requests for Host HOST answered at once
 *   /count?max_per_sec=HOST  most requests for HOST in any 1 s window
 *   /stats/reset         forgets every count and maximum
 * /count, /stats and /headers are not counted and get no latency or fault.
 *
 * Faults (F above, or drawn by --fault-ratio): an HTTP code 200..599 (429
 * and 503 carry Retry-After: ?after=S, default 1, for 429 only unless
 * given); reset (TCP RST); close (closed without an answer); truncate
 * (the full Content-Length, half the body, then closed); timeout (never
 * answered, held until the client goes); slow (--slow-ms, or ?ms=, then
 * the normal answer); drip (the body at --drip-rate, or ?rate=, B/s);
 * endless (chunked, never ends); huge (Content-Length ?size=, default
 * 1 TiB, then zeros); ctype (200 text/html, an HTML page); mislabel (the
 * real bytes labelled text/html).
 *
 * Threads: the main thread accepts; each connection gets its own detached
 * thread with a small stack, at most --max-conns at once (accept waits for
 * a free slot). Threads rather than epoll because most faults are waits
 * (latency, drips, hangs) that read best as straight-line code with
 * sleeps, hundreds of mostly sleeping threads cost little, and no
 * connection ever waits for another. Every counter is under one mutex
 * (stats_mu); the configuration is read-only once main() has parsed it.
 * Only libc and pthreads.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REQ_MAX	       16384 /* request line + headers */
#define HDR_MAX	       100
#define VAL_MAX	       8192 /* a decoded query value (redirect targets) */
#define HOST_NAME_MAX_ 128
#define MAX_HOSTS      1024
#define MAX_KEYS       (1u << 20)
#define MAX_KINDS      32
#define FILE_MAX       (1ll << 30)
#define CHUNK	       65536
#define LAST_MODIFIED  "Wed, 21 Oct 2015 07:28:00 GMT"
#define LAST_MOD_TS    1445412480 /* the same, as a time_t */

/* ---- configuration (read-only after main() parsed it) ---- */

static struct {
	const char *root;
	const char *bind;
	int port;
	const char *port_file;
	long latency_ms;
	double fault_ratio;
	char kinds[MAX_KINDS][16];
	int n_kinds;
	long fault_times;
	uint64_t seed;
	long slow_ms;
	long drip_rate;
	long hang_max_s;
	long idle_ms;
	long max_conns;
	bool verbose;
} cfg = {
    .root = ".",
    .bind = "127.0.0.1",
    .fault_times = 2,
    .seed = 1,
    .slow_ms = 1500,
    .drip_rate = 100,
    .hang_max_s = 3600,
    .idle_ms = 300000,
    .max_conns = 2048,
};

static int listen_port;

/* ---- small helpers ---- */

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	if (ms <= 0)
		return;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	if (!h)
		h = 14695981039346656037ull;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* splitmix64's finalizer: spreads FNV's weak low bits. */
static uint64_t mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static void http_date(time_t t, char *out, size_t n)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static bool parse_http_date(const char *s, time_t *t)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	const char *end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (!end || *end)
		return false;
	*t = timegm(&tm);
	return true;
}

/* A growable string, for JSON and header lists. Fails soft: after an
 * allocation failure it stays as it was. */
typedef struct sbuf {
	char *p;
	size_t len, cap;
} sbuf;

static void sb_add(sbuf *s, const char *p, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4096;
		while (cap < s->len + n + 1)
			cap *= 2;
		char *np = realloc(s->p, cap);
		if (!np)
			return;
		s->p = np;
		s->cap = cap;
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = '\0';
}

static void sb_str(sbuf *s, const char *p)
{
	sb_add(s, p, strlen(p));
}

__attribute__((format(printf, 2, 3))) static void sb_fmt(sbuf *s,
							 const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_add(s, tmp,
		       (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal of arbitrary bytes: escapes quotes, backslashes
 * and control bytes, and bytes >= 0x80 as \u00XX (request targets are not
 * necessarily UTF-8). */
static void sb_json(sbuf *s, const char *p)
{
	sb_add(s, "\"", 1);
	for (; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			sb_add(s, e, 2);
		} else if (c < 0x20 || c >= 0x7f) {
			sb_fmt(s, "\\u%04x", c);
		} else {
			sb_add(s, p, 1);
		}
	}
	sb_add(s, "\"", 1);
}

/* ---- statistics (all under stats_mu) ---- */

typedef struct entry {
	char *key;
	long n;	     /* requests */
	long faults; /* of them answered with an injected fault */
} entry;

typedef struct table {
	entry *v;
	size_t cap, len;
} table;

typedef struct hoststat {
	char name[HOST_NAME_MAX_];
	long active, max_active, max_per_sec;
	double *arr; /* arrival times in the last second, a ring */
	size_t head, len, cap;
} hoststat;

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_cv = PTHREAD_COND_INITIALIZER;
static table counts;	/* path+query -> requests */
static table fault_tab; /* fault kind -> times injected */
static hoststat *hosts; /* [MAX_HOSTS] */
static size_t n_hosts;
static long total;
static long responses[600];
static long conns_active, conns_max, conns_total;

static entry *table_get(table *t, const char *key, bool create)
{
	uint64_t h;
	size_t i;

	if (t->cap == 0) {
		if (!create)
			return NULL;
		t->v = calloc(1024, sizeof *t->v);
		if (!t->v)
			return NULL;
		t->cap = 1024;
	}
	h = mix(fnv1a(0, key, strlen(key)));
	for (i = h & (t->cap - 1); t->v[i].key; i = (i + 1) & (t->cap - 1))
		if (strcmp(t->v[i].key, key) == 0)
			return &t->v[i];
	if (!create || t->len >= MAX_KEYS)
		return NULL;
	if ((t->len + 1) * 2 > t->cap) { /* grow, then probe again */
		table nt = {calloc(t->cap * 2, sizeof *t->v), t->cap * 2, 0};
		if (!nt.v)
			return NULL;
		for (size_t j = 0; j < t->cap; j++) {
			if (!t->v[j].key)
				continue;
			uint64_t hj =
			    mix(fnv1a(0, t->v[j].key, strlen(t->v[j].key)));
			size_t k = hj & (nt.cap - 1);
			while (nt.v[k].key)
				k = (k + 1) & (nt.cap - 1);
			nt.v[k] = t->v[j];
			nt.len++;
		}
		free(t->v);
		*t = nt;
		for (i = h & (t->cap - 1); t->v[i].key;
		     i = (i + 1) & (t->cap - 1))
			;
	}
	t->v[i].key = strdup(key);
	if (!t->v[i].key)
		return NULL;
	t->v[i].n = 0;
	t->v[i].faults = 0;
	t->len++;
	return &t->v[i];
}

static void table_clear(table *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->v[i].key);
	free(t->v);
	memset(t, 0, sizeof *t);
}

static hoststat *host_get(const char *name, bool create)
{
	for (size_t i = 0; i < n_hosts; i++)
		if (strcmp(hosts[i].name, name) == 0)
			return &hosts[i];
	if (!create || n_hosts >= MAX_HOSTS)
		return NULL;
	hoststat *h = &hosts[n_hosts++];
	memset(h, 0, sizeof *h);
	snprintf(h->name, sizeof h->name, "%s", name);
	return h;
}

/* Records an arrival at time t; returns requests in the last second. */
static long host_arrive(hoststat *h, double t)
{
	while (h->len && h->arr[h->head] <= t - 1.0) {
		h->head = (h->head + 1) % h->cap;
		h->len--;
	}
	if (h->len == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		double *na = malloc(cap * sizeof *na);
		if (!na)
			return (long)h->len;
		for (size_t i = 0; i < h->len; i++)
			na[i] = h->arr[(h->head + i) % h->cap];
		free(h->arr);
		h->arr = na;
		h->cap = cap;
		h->head = 0;
	}
	h->arr[(h->head + h->len) % h->cap] = t;
	h->len++;
	return (long)h->len;
}

static void count_response(int code)
{
	if (code < 0 || code >= 600)
		return;
	pthread_mutex_lock(&stats_mu);
	responses[code]++;
	pthread_mutex_unlock(&stats_mu);
}

static void count_fault(const char *key, const char *kind)
{
	pthread_mutex_lock(&stats_mu);
	entry *e = table_get(&counts, key, false);
	if (e)
		e->faults++;
	e = table_get(&fault_tab, kind, true);
	if (e)
		e->n++;
	pthread_mutex_unlock(&stats_mu);
}

static void stats_reset(void)
{
	pthread_mutex_lock(&stats_mu);
	table_clear(&counts);
	table_clear(&fault_tab);
	for (size_t i = 0; i < n_hosts; i++) {
		hosts[i].max_active = hosts[i].active;
		hosts[i].max_per_sec = 0;
		hosts[i].head = hosts[i].len = 0;
	}
	total = 0;
	memset(responses, 0, sizeof responses);
	conns_max = conns_active;
	conns_total = 0;
	pthread_mutex_unlock(&stats_mu);
}

static void stats_json(sbuf *s)
{
	bool first;

	pthread_mutex_lock(&stats_mu);
	sb_str(s, "{\"counts\": {");
	first = true;
	for (size_t i = 0; i < counts.cap; i++) {
		if (!counts.v[i].key)
			continue;
		sb_str(s, first ? "" : ", ");
		sb_json(s, counts.v[i].key);
		sb_fmt(s, ": %ld", counts.v[i].n);
		first = false;
	}
	sb_str(s, "}, \"max_active\": {");
	for (size_t i = 0; i < n_hosts; i++) {
		sb_str(s, i ? ", " : "");
		sb_json(s, hosts[i].name);
		sb_fmt(s, ": %ld", hosts[i].max_active);
	}
	sb_str(s, "}, \"max_per_sec\": {");
	for (size_t i = 0; i < n_hosts; i++) {
		sb_str(s, i ? ", " : "");
		sb_json(s, hosts[i].name);
		sb_fmt(s, ": %ld", hosts[i].max_per_sec);
	}
	sb_fmt(s,
	       "}, \"total\": %ld, \"connections\": {\"active\": %ld, "
	       "\"max\": %ld, \"total\": %ld}, \"responses\": {",
	       total, conns_active, conns_max, conns_total);
	first = true;
	for (int c = 0; c < 600; c++) {
		if (!responses[c])
			continue;
		sb_fmt(s, "%s\"%d\": %ld", first ? "" : ", ", c, responses[c]);
		first = false;
	}
	sb_str(s, "}, \"faults\": {");
	first = true;
	for (size_t i = 0; i < fault_tab.cap; i++) {
		if (!fault_tab.v[i].key)
			continue;
		sb_str(s, first ? "" : ", ");
		sb_json(s, fault_tab.v[i].key);
		sb_fmt(s, ": %ld", fault_tab.v[i].n);
		first = false;
	}
	sb_str(s, "}, \"faulted\": {");
	first = true;
	for (size_t i = 0; i < counts.cap; i++) {
		if (!counts.v[i].key || !counts.v[i].faults)
			continue;
		sb_str(s, first ? "" : ", ");
		sb_json(s, counts.v[i].key);
		sb_fmt(s, ": %ld", counts.v[i].faults);
		first = false;
	}
	sb_str(s, "}}");
	pthread_mutex_unlock(&stats_mu);
}

/* ---- a connection ---- */

typedef struct conn {
	int fd;
	bool dead;	/* the socket is closed (reset, fault) */
	bool close;	/* close after this response */
	bool head;	/* HEAD: headers only */
	size_t len;	/* bytes in buf */
	size_t req_len; /* bytes of the current request's head */
	char *method, *target, *version;
	char *hname[HDR_MAX], *hval[HDR_MAX];
	int nhdr;
	char buf[REQ_MAX + 1];
} conn;

static const char *header(const conn *c, const char *name)
{
	for (int i = 0; i < c->nhdr; i++)
		if (strcasecmp(c->hname[i], name) == 0)
			return c->hval[i];
	return NULL;
}

static bool send_all(conn *c, const void *p, size_t n)
{
	const char *b = p;
	if (c->dead)
		return false;
	while (n) {
		ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			c->close = true;
			return false;
		}
		b += w;
		n -= (size_t)w;
	}
	return true;
}

/* The body is not sent for HEAD. */
static bool send_body(conn *c, const void *p, size_t n)
{
	return c->head ? true : send_all(c, p, n);
}

static const char *reason(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 204:
		return "No Content";
	case 301:
		return "Moved Permanently";
	case 302:
		return "Found";
	case 303:
		return "See Other";
	case 304:
		return "Not Modified";
	case 307:
		return "Temporary Redirect";
	case 308:
		return "Permanent Redirect";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 410:
		return "Gone";
	case 429:
		return "Too Many Requests";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Status";
	}
}

/* Sends the status line, Date, Server, the header lines in extra (each
 * ending in \r\n, or NULL), Connection and the blank line. */
static bool send_head(conn *c, int code, const char *extra)
{
	sbuf s = {0};
	char date[64];
	bool ok;

	http_date(time(NULL), date, sizeof date);
	sb_fmt(&s, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: pixmill-origin\r\n",
	       code, reason(code), date);
	if (extra)
		sb_str(&s, extra);
	if (c->close)
		sb_str(&s, "Connection: close\r\n");
	sb_str(&s, "\r\n");
	count_response(code);
	ok = s.p && send_all(c, s.p, s.len);
	free(s.p);
	return ok;
}

/* A whole response with a body of len bytes; extra as for send_head. */
static bool send_resp(conn *c, int code, const char *ctype, const void *body,
		      size_t len, const char *extra)
{
	sbuf h = {0};
	bool ok;

	sb_fmt(&h, "Content-Type: %s\r\nContent-Length: %zu\r\n", ctype, len);
	if (extra)
		sb_str(&h, extra);
	ok = h.p && send_head(c, code, h.p) && send_body(c, body, len);
	free(h.p);
	return ok;
}

static bool send_plain(conn *c, int code, const char *text, const char *extra)
{
	return send_resp(c, code, "text/plain", text, strlen(text), extra);
}

/* Closes the connection with a TCP reset (SO_LINGER 0). */
static void reset_conn(conn *c)
{
	struct linger l = {1, 0};
	if (c->dead)
		return;
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	close(c->fd);
	c->dead = true;
	c->close = true;
}

/* Waits until the client goes away (or max_s passes); reads and drops
 * whatever it sends meanwhile. */
static void hold(conn *c, long max_s)
{
	double end = now_mono() + (double)max_s;
	char junk[4096];

	c->close = true;
	while (!c->dead && now_mono() < end) {
		struct pollfd p = {c->fd, POLLIN, 0};
		int r = poll(&p, 1, 200);
		if (r < 0 && errno != EINTR)
			break;
		if (r <= 0)
			continue;
		if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
			break;
		ssize_t n = recv(c->fd, junk, sizeof junk, 0);
		if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
			break;
	}
}

/* ---- query strings ---- */

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Decodes %XX and '+' of p[0..n) into out (at most cap - 1 bytes). */
static void url_decode(const char *p, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < cap; i++) {
		int hi, lo;
		if (p[i] == '+') {
			out[o++] = ' ';
		} else if (p[i] == '%' && i + 2 < n &&
			   (hi = hexval((unsigned char)p[i + 1])) >= 0 &&
			   (lo = hexval((unsigned char)p[i + 2])) >= 0) {
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[o++] = p[i];
		}
	}
	out[o] = '\0';
}

/* The first non-empty value of name in query (as Python's parse_qs keeps
 * it), decoded into out. */
static bool q_get(const char *query, const char *name, char *out, size_t cap)
{
	char k[64];
	const char *p = query;

	if (!p)
		return false;
	while (*p) {
		const char *amp = strchr(p, '&');
		size_t n = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', n);
		if (eq && eq + 1 < p + n) {
			url_decode(p, (size_t)(eq - p), k, sizeof k);
			if (strcmp(k, name) == 0) {
				url_decode(eq + 1, (size_t)(p + n - eq - 1),
					   out, cap);
				return true;
			}
		}
		p += n;
		if (*p == '&')
			p++;
	}
	return false;
}

/* A whole number parameter: *out = def when absent; false when malformed
 * or outside [lo, hi]. */
static bool q_long(const char *query, const char *name, long long def,
		   long long lo, long long hi, long long *out)
{
	char v[64];
	char *end;

	*out = def;
	if (!q_get(query, name, v, sizeof v))
		return true;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		return false;
	*out = x;
	return true;
}

static bool parse_long(const char *s, long long lo, long long hi,
		       long long *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || end == s || *end || x < lo || x > hi)
		return false;
	*out = x;
	return true;
}

/* ---- bodies ---- */

typedef struct body {
	char *data;
	size_t len;
	const char *ctype;
	char etag[48];
	time_t mtime;
	bool found;
} body;

static void body_free(body *b)
{
	free(b->data);
	b->data = NULL;
}

/* /img/NAME's byte i: (i * 7 + len(NAME) * 13 + NAME[0]) % 251. */
static void pattern(const char *name, size_t from, char *out, size_t n)
{
	size_t seed = strlen(name) * 13 + (unsigned char)name[0];
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(((from + i) * 7 + seed) % 251);
}

static bool read_file(const char *name, body *b)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;
	size_t got = 0;

	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	if ((size_t)snprintf(path, sizeof path, "%s/%s", cfg.root, name) >=
	    sizeof path)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > FILE_MAX) {
		close(fd);
		return false;
	}
	b->data = malloc((size_t)st.st_size + 1);
	if (!b->data) {
		close(fd);
		return false;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, b->data + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	b->len = got;
	b->mtime = st.st_mtime;
	b->found = true;
	uint64_t h = fnv1a(0, b->data, b->len);
	snprintf(b->etag, sizeof b->etag, "\"%016llx-%zx\"",
		 (unsigned long long)mix(h), b->len);
	const char *dot = strrchr(name, '.');
	const char *ext = dot ? dot + 1 : name;
	b->ctype = strcmp(ext, "png") == 0    ? "image/png"
		   : strcmp(ext, "webp") == 0 ? "image/webp"
		   : strcmp(ext, "gif") == 0  ? "image/gif"
					      : "image/jpeg";
	return true;
}

/* 304 when the request's validators match b (If-None-Match wins over
 * If-Modified-Since, as RFC 9110 says). */
static bool fresh(const conn *c, const body *b)
{
	const char *inm = header(c, "If-None-Match");
	const char *ims = header(c, "If-Modified-Since");
	time_t t;

	if (inm)
		return strcmp(inm, b->etag) == 0 || strcmp(inm, "*") == 0;
	if (ims && parse_http_date(ims, &t))
		return t >= b->mtime;
	return false;
}

static bool send_not_modified(conn *c, const body *b)
{
	char extra[256], lm[64];
	http_date(b->mtime, lm, sizeof lm);
	snprintf(extra, sizeof extra, "ETag: %s\r\nLast-Modified: %s\r\n",
		 b->etag, lm);
	return send_head(c, 304, extra);
}

/* Type, length and validators of a body, as header lines. */
static void body_headers(const body *b, size_t len, char *out, size_t n)
{
	char lm[64];
	http_date(b->mtime, lm, sizeof lm);
	snprintf(out, n,
		 "Content-Type: %s\r\nContent-Length: %zu\r\nETag: "
		 "%s\r\nLast-Modified: %s\r\n",
		 b->ctype, len, b->etag, lm);
}

/* Sends count zero bytes (or until the client goes). */
static bool send_zeros(conn *c, long long count)
{
	static const char zeros[CHUNK];
	while (count > 0 && !c->head) {
		size_t n = count < CHUNK ? (size_t)count : CHUNK;
		if (!send_all(c, zeros, n))
			return false;
		count -= (long long)n;
	}
	return true;
}

/* Endless chunked body (until the client goes). */
static void send_endless(conn *c)
{
	static const char zeros[CHUNK];
	char head[16];
	int hn = snprintf(head, sizeof head, "%x\r\n", CHUNK);

	send_head(c, 200,
		  "Content-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n");
	c->close = true;
	while (!c->head && send_all(c, head, (size_t)hn) &&
	       send_all(c, zeros, CHUNK) && send_all(c, "\r\n", 2))
		;
}

/* Sends data at rate bytes per second, in steps of 100 ms (or one byte
 * at a time when slower than 10 B/s). */
static void drip(conn *c, const char *data, size_t len, long rate)
{
	size_t step = rate >= 10 ? (size_t)(rate / 10) : 1;
	long pause = rate >= 10 ? 100 : 1000 / (rate > 0 ? rate : 1);

	for (size_t off = 0; off < len && !c->head;) {
		size_t n = len - off < step ? len - off : step;
		if (!send_all(c, data + off, n))
			return;
		off += n;
		if (off < len)
			sleep_ms(pause);
	}
}

/* ---- faults ---- */

static bool valid_kind(const char *k)
{
	static const char *const named[] = {
	    "reset", "close",	"truncate", "timeout", "hang",	   "slow",
	    "drip",  "endless", "huge",	    "ctype",   "mislabel", NULL};
	long long code;
	for (int i = 0; named[i]; i++)
		if (strcmp(k, named[i]) == 0)
			return true;
	return parse_long(k, 200, 599, &code);
}

/* The fault --fault-ratio draws for attempt nth of key, or NULL. */
static const char *ratio_fault(const char *key, long nth)
{
	if (cfg.fault_ratio <= 0 || cfg.n_kinds == 0 || nth > cfg.fault_times)
		return NULL;
	uint64_t h =
	    mix(fnv1a(cfg.seed * 0x9e3779b97f4a7c15ull + 1, key, strlen(key)));
	double u = (double)(h >> 11) / 9007199254740992.0; /* [0, 1) */
	if (u >= cfg.fault_ratio)
		return NULL;
	uint64_t k = mix(h ^ ((uint64_t)nth * 0xd6e8feb86659fd93ull));
	return cfg.kinds[k % (uint64_t)cfg.n_kinds];
}

static const char html_page[] = "<html><body>Sorry, not found</body></html>";

/* Answers with fault kind; b is the body it spoils (for truncate, drip,
 * mislabel). Returns false when the normal answer should follow (slow). */
static bool do_fault(conn *c, const char *kind, const char *query,
		     const body *b)
{
	long long v;
	char extra[128];

	if (strcmp(kind, "reset") == 0) {
		reset_conn(c);
	} else if (strcmp(kind, "close") == 0) {
		c->close = true;
		shutdown(c->fd, SHUT_RDWR);
	} else if (strcmp(kind, "truncate") == 0) {
		char h[512];
		body_headers(b, b->len, h, sizeof h);
		c->close = true;
		if (send_head(c, 200, h))
			send_body(c, b->data, b->len / 2);
	} else if (strcmp(kind, "timeout") == 0 || strcmp(kind, "hang") == 0) {
		hold(c, cfg.hang_max_s);
	} else if (strcmp(kind, "slow") == 0) {
		if (!q_long(query, "ms", cfg.slow_ms, 0, 3600000, &v))
			v = cfg.slow_ms;
		sleep_ms((long)v);
		return false;
	} else if (strcmp(kind, "drip") == 0) {
		if (!q_long(query, "rate", cfg.drip_rate, 1, 1 << 30, &v))
			v = cfg.drip_rate;
		char h[512];
		body_headers(b, b->len, h, sizeof h);
		if (send_head(c, 200, h))
			drip(c, b->data, b->len, (long)v);
	} else if (strcmp(kind, "endless") == 0) {
		send_endless(c);
	} else if (strcmp(kind, "huge") == 0) {
		if (!q_long(query, "size", 1ll << 40, 0, LLONG_MAX / 2, &v))
			v = 1ll << 40;
		snprintf(extra, sizeof extra,
			 "Content-Type: image/jpeg\r\nContent-Length: %lld\r\n",
			 v);
		c->close = true;
		if (send_head(c, 200, extra))
			send_zeros(c, v);
	} else if (strcmp(kind, "ctype") == 0) {
		send_resp(c, 200, "text/html; charset=utf-8", html_page,
			  sizeof html_page - 1, NULL);
	} else if (strcmp(kind, "mislabel") == 0) {
		send_resp(c, 200, "text/html; charset=utf-8", b->data, b->len,
			  NULL);
	} else if (parse_long(kind, 200, 599, &v)) {
		long long after;
		bool has_after = q_get(query, "after", extra, sizeof extra);
		if (!q_long(query, "after", 1, 0, 1 << 30, &after))
			after = 1;
		if (v == 429 || (v == 503 && has_after)) {
			snprintf(extra, sizeof extra, "Retry-After: %lld\r\n",
				 after);
			send_plain(c, (int)v,
				   v == 429 ? "slow down" : "injected fault",
				   extra);
		} else {
			send_plain(c, (int)v, "injected fault", NULL);
		}
	} else {
		send_plain(c, 400, "unknown fault\n", NULL);
	}
	return true;
}

/* ---- routes ---- */

typedef struct req {
	const char *path;  /* NUL-terminated copy, no query */
	const char *query; /* after '?', or NULL */
	const char *key;   /* the whole target, as counted */
	long nth;	   /* this key's request number, 1-based */
} req;

/* /file/NAME and /img/NAME, with their faults. */
static void route_content(conn *c, const req *r, bool is_file)
{
	char fault[32] = "";
	long long times, size;
	body b = {0};
	const char *kind = NULL;

	if (q_get(r->query, "fault", fault, sizeof fault)) {
		if (!valid_kind(fault)) {
			send_plain(c, 400, "unknown fault\n", NULL);
			return;
		}
		if (!q_long(r->query, "times", LLONG_MAX, 0, LLONG_MAX,
			    &times)) {
			send_plain(c, 400, "bad times\n", NULL);
			return;
		}
		if (r->nth <= times)
			kind = fault;
	} else {
		kind = ratio_fault(r->key, r->nth);
	}
	if (is_file) {
		const char *name = strrchr(r->path + 5, '/') + 1;
		read_file(name, &b);
		b.ctype = b.found ? b.ctype : "image/jpeg";
	} else {
		const char *name = r->path + 5;
		if (!q_long(r->query, "size", 1000, 0, FILE_MAX, &size)) {
			send_plain(c, 400, "bad size\n", NULL);
			return;
		}
		sbuf k = {0};
		sb_fmt(&k, "%s:%lld", name, size);
		snprintf(
		    b.etag, sizeof b.etag, "\"%016llx\"",
		    (unsigned long long)mix(fnv1a(0, k.p ? k.p : "", k.len)));
		free(k.p);
		b.len = (size_t)size;
		b.mtime = LAST_MOD_TS;
		b.ctype = "image/jpeg";
		b.found = true;
		/* The bytes are made when a fault needs them whole. */
		if (kind) {
			b.data = malloc(b.len + 1);
			if (b.data)
				pattern(name, 0, b.data, b.len);
			else
				b.len = 0;
		}
	}
	if (kind) {
		if (!b.data) { /* a fault on a missing file: 1000 bytes */
			b.data = calloc(1, 1000);
			b.len = b.data ? 1000 : 0;
			snprintf(b.etag, sizeof b.etag, "\"missing\"");
		}
		count_fault(r->key, kind);
		if (do_fault(c, kind, r->query, &b)) {
			body_free(&b);
			return;
		}
	}
	if (!b.found) {
		send_plain(c, 404, "not found", NULL);
	} else if (fresh(c, &b)) {
		send_not_modified(c, &b);
	} else {
		char h[512];
		body_headers(&b, b.len, h, sizeof h);
		if (send_head(c, 200, h)) {
			if (b.data || is_file) {
				send_body(c, b.data, b.len);
			} else {
				char chunk[16384];
				for (size_t off = 0; off < b.len && !c->head;) {
					size_t n = b.len - off < sizeof chunk
						       ? b.len - off
						       : sizeof chunk;
					pattern(r->path + 5, off, chunk, n);
					if (!send_all(c, chunk, n))
						break;
					off += n;
				}
			}
		}
	}
	body_free(&b);
}

static void route_count(conn *c, const req *r)
{
	char v[VAL_MAX];
	char out[64];
	long n = 0;

	if (q_get(r->query, "path", v, sizeof v)) {
		pthread_mutex_lock(&stats_mu);
		entry *e = table_get(&counts, v, false);
		n = e ? e->n : 0;
		pthread_mutex_unlock(&stats_mu);
	} else if (q_get(r->query, "max_active", v, sizeof v) ||
		   q_get(r->query, "max_per_sec", v, sizeof v)) {
		bool act = q_get(r->query, "max_active", v, sizeof v);
		pthread_mutex_lock(&stats_mu);
		hoststat *h = host_get(v, false);
		n = h ? (act ? h->max_active : h->max_per_sec) : 0;
		pthread_mutex_unlock(&stats_mu);
	} else {
		sbuf s = {0};
		stats_json(&s);
		if (s.p)
			send_resp(c, 200, "application/json", s.p, s.len, NULL);
		else
			send_plain(c, 500, "out of memory\n", NULL);
		free(s.p);
		return;
	}
	snprintf(out, sizeof out, "%ld", n);
	send_plain(c, 200, out, NULL);
}

static void route_redirect_chain(conn *c, const req *r)
{
	long long n, code;
	char to[VAL_MAX];
	sbuf h = {0};

	if (!parse_long(r->path + 10, 1, 1000, &n) ||
	    !q_long(r->query, "code", 302, 300, 399, &code)) {
		send_plain(c, 400, "want /redirect/N with N 1..1000\n", NULL);
		return;
	}
	if (n > 1) {
		sb_fmt(&h, "Location: /redirect/%lld", n - 1);
		if (r->query) {
			sb_str(&h, "?");
			sb_str(&h, r->query);
		}
	} else {
		if (!q_get(r->query, "to", to, sizeof to))
			snprintf(to, sizeof to, "/img/redirected");
		sb_str(&h, "Location: ");
		sb_str(&h, to);
	}
	sb_str(&h, "\r\n");
	send_plain(c, (int)code, "moved\n", h.p);
	free(h.p);
}

static void route_redirect_private(conn *c, const req *r)
{
	char target[32] = "metadata", path[1024] = "/img/private";
	char extra[1200];

	q_get(r->query, "target", target, sizeof target);
	q_get(r->query, "path", path, sizeof path);
	if (strcmp(target, "metadata") == 0)
		snprintf(extra, sizeof extra,
			 "Location: http://169.254.169.254/latest/meta-data/"
			 "\r\n");
	else if (strcmp(target, "mapped") == 0)
		snprintf(extra, sizeof extra,
			 "Location: http://[::ffff:169.254.169.254]/latest/"
			 "meta-data/\r\n");
	else if (strcmp(target, "loopback") == 0)
		snprintf(extra, sizeof extra,
			 "Location: http://127.0.0.1:%d%s%s\r\n", listen_port,
			 path[0] == '/' ? "" : "/", path);
	else {
		send_plain(c, 400, "target: metadata, mapped or loopback\n",
			   NULL);
		return;
	}
	send_plain(c, 302, "moved\n", extra);
}

/* Routes one parsed request. */
static void route(conn *c, const req *r)
{
	const char *p = r->path;
	long long v, times;
	char val[VAL_MAX];

	if (strncmp(p, "/file/", 6) == 0) {
		route_content(c, r, true);
	} else if (strncmp(p, "/img/", 5) == 0) {
		route_content(c, r, false);
	} else if (strcmp(p, "/html") == 0) {
		send_resp(c, 200, "text/html; charset=utf-8", html_page,
			  sizeof html_page - 1, NULL);
	} else if (strncmp(p, "/status/", 8) == 0) {
		if (!parse_long(p + 8, 200, 599, &v) ||
		    !q_long(r->query, "times", 1000000000, 0, LLONG_MAX,
			    &times)) {
			send_plain(c, 400, "want /status/CODE, 200..599\n",
				   NULL);
			return;
		}
		if (r->nth <= times) {
			snprintf(val, sizeof val, "status %lld\n", v);
			send_plain(c, (int)v, val, NULL);
		} else {
			send_plain(c, 200, "ok", NULL);
		}
	} else if (strncmp(p, "/retry-after/", 13) == 0) {
		long long after;
		if (!parse_long(p + 13, 0, LLONG_MAX, &times) ||
		    !q_long(r->query, "after", 1, 0, 1 << 30, &after)) {
			send_plain(c, 400, "want /retry-after/N\n", NULL);
			return;
		}
		if (r->nth <= times) {
			char ra[64], extra[96];
			if (q_get(r->query, "date", val, sizeof val) &&
			    strcmp(val, "1") == 0)
				http_date(time(NULL) + (time_t)after, ra,
					  sizeof ra);
			else
				snprintf(ra, sizeof ra, "%lld", after);
			snprintf(extra, sizeof extra, "Retry-After: %s\r\n",
				 ra);
			send_plain(c, 429, "slow down\n", extra);
		} else {
			send_plain(c, 200, "ok", NULL);
		}
	} else if (strcmp(p, "/reset") == 0) {
		if (!q_long(r->query, "times", 1, 0, LLONG_MAX, &times)) {
			send_plain(c, 400, "bad times\n", NULL);
			return;
		}
		if (r->nth <= times)
			reset_conn(c);
		else
			send_plain(c, 200, "ok", NULL);
	} else if (strcmp(p, "/slow") == 0) {
		static const char xs[1000] = {[0 ... 999] = 'x'};
		if (send_head(c, 200,
			      "Content-Type: image/jpeg\r\n"
			      "Content-Length: 1000\r\n"))
			drip(c, xs, sizeof xs, 10);
	} else if (strcmp(p, "/big") == 0) {
		if (!q_long(r->query, "size", 100ll << 20, 0, LLONG_MAX / 2,
			    &v)) {
			send_plain(c, 400, "bad size\n", NULL);
			return;
		}
		snprintf(val, sizeof val,
			 "Content-Type: image/jpeg\r\nContent-Length: %lld\r\n",
			 v);
		if (send_head(c, 200, val))
			send_zeros(c, v);
	} else if (strcmp(p, "/big-chunked") == 0) {
		send_endless(c);
	} else if (strcmp(p, "/redirect") == 0) {
		sbuf h = {0};
		if (!q_long(r->query, "code", 302, 300, 399, &v)) {
			send_plain(c, 400, "bad code\n", NULL);
			return;
		}
		if (!q_get(r->query, "to", val, sizeof val))
			snprintf(val, sizeof val, "/");
		sb_str(&h, "Location: ");
		sb_str(&h, val);
		sb_str(&h, "\r\n");
		send_plain(c, (int)v, "moved\n", h.p);
		free(h.p);
	} else if (strncmp(p, "/redirect/", 10) == 0) {
		route_redirect_chain(c, r);
	} else if (strcmp(p, "/redirect-private") == 0) {
		route_redirect_private(c, r);
	} else if (strcmp(p, "/loop") == 0) {
		send_plain(c, 302, "again\n", "Location: /loop\r\n");
	} else if (strcmp(p, "/headers") == 0) {
		sbuf s = {0};
		for (int i = 0; i < c->nhdr; i++) {
			for (char *q = c->hname[i]; *q; q++)
				*q = (char)tolower((unsigned char)*q);
			sb_fmt(&s, "%s: ", c->hname[i]);
			sb_str(&s, c->hval[i]);
			sb_str(&s, "\n");
		}
		send_resp(c, 200, "text/plain", s.p ? s.p : "", s.len, NULL);
		free(s.p);
	} else if (strcmp(p, "/hang") == 0) {
		hold(c, cfg.hang_max_s);
	} else if (strcmp(p, "/count") == 0 || strcmp(p, "/stats") == 0) {
		route_count(c, r);
	} else if (strcmp(p, "/stats/reset") == 0) {
		stats_reset();
		send_plain(c, 200, "ok", NULL);
	} else {
		send_plain(c, 404, "not found\n", NULL);
	}
}

/* Counts, waits, routes and uncounts one request. */
static void handle(conn *c)
{
	char path[REQ_MAX];
	char host[HOST_NAME_MAX_];
	const char *q = strchr(c->target, '?');
	size_t plen = q ? (size_t)(q - c->target) : strlen(c->target);
	req r = {path, q ? q + 1 : NULL, c->target, 0};
	hoststat *h = NULL;
	long long lat = 0;
	bool counted;

	memcpy(path, c->target, plen);
	path[plen] = '\0';
	const char *hv = header(c, "Host");
	snprintf(host, sizeof host, "%s", hv ? hv : "?");
	char *colon = strrchr(host, ':');
	if (colon)
		*colon = '\0';
	counted =
	    !(strncmp(path, "/count", 6) == 0 ||
	      strncmp(path, "/stats", 6) == 0 || strcmp(path, "/headers") == 0);
	if (counted) {
		double t = now_mono();
		pthread_mutex_lock(&stats_mu);
		total++;
		entry *e = table_get(&counts, c->target, true);
		r.nth = e ? ++e->n : 1;
		h = host_get(host, true);
		if (h) {
			h->active++;
			if (h->active > h->max_active)
				h->max_active = h->active;
			long ps = host_arrive(h, t);
			if (ps > h->max_per_sec)
				h->max_per_sec = ps;
		}
		pthread_mutex_unlock(&stats_mu);
		/* ?latency=MS, or its older name ?delay=MS; junk counts as 0 */
		char scratch[2];
		const char *name =
		    q_get(r.query, "latency", scratch, 2) ? "latency" : "delay";
		if (!q_long(r.query, name, 0, 0, 3600000, &lat))
			lat = 0;
		sleep_ms(cfg.latency_ms + (long)lat);
	}
	if (cfg.verbose)
		fprintf(stderr, "origin: %s %.200s\n", c->method, c->target);
	route(c, &r);
	if (counted && h) {
		pthread_mutex_lock(&stats_mu);
		h->active--;
		pthread_mutex_unlock(&stats_mu);
	}
}

/* ---- reading requests ---- */

/* Reads more bytes into c->buf; false on close, error or idle timeout. */
static bool fill(conn *c)
{
	if (c->len >= REQ_MAX)
		return false;
	for (;;) {
		struct pollfd p = {c->fd, POLLIN, 0};
		int r = poll(&p, 1, (int)cfg.idle_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		ssize_t n = recv(c->fd, c->buf + c->len, REQ_MAX - c->len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		c->len += (size_t)n;
		return true;
	}
}

/* Where the head ends (just past the blank line), or 0. Lines may end in
 * CRLF or a bare LF. */
static size_t head_end(const conn *c)
{
	for (size_t i = 0; i + 1 < c->len; i++) {
		if (c->buf[i] != '\n')
			continue;
		if (c->buf[i + 1] == '\n')
			return i + 2;
		if (c->buf[i + 1] == '\r' && i + 2 < c->len &&
		    c->buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
		s[--n] = '\0';
	return s;
}

/* Parses the head in buf[0..end); false (with an error answer sent)
 * when it is malformed. */
static bool parse_head(conn *c, size_t end)
{
	char *line, *save = NULL;
	char *sp1, *sp2;

	c->buf[end - 1] = '\0';
	c->nhdr = 0;
	line = strtok_r(c->buf, "\n", &save);
	if (!line) {
		c->close = true;
		send_plain(c, 400, "bad request line\n", NULL);
		return false;
	}
	line = trim(line);
	sp1 = strchr(line, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strchr(sp2 + 1, ' ')) {
		c->close = true;
		send_plain(c, 400, "bad request line\n", NULL);
		return false;
	}
	*sp1 = *sp2 = '\0';
	c->method = line;
	c->target = sp1 + 1;
	c->version = sp2 + 1;
	if (strncmp(c->version, "HTTP/1.", 7) != 0 || !c->version[7] ||
	    c->version[8]) {
		c->close = true;
		send_plain(c, 505, "HTTP/1.x only\n", NULL);
		return false;
	}
	if (c->target[0] != '/') {
		c->close = true;
		send_plain(c, 400, "bad request target\n", NULL);
		return false;
	}
	for (const char *t = c->target; *t; t++) {
		if ((unsigned char)*t < 0x21 || *t == 0x7f) {
			c->close = true;
			send_plain(c, 400, "bad request target\n", NULL);
			return false;
		}
	}
	while ((line = strtok_r(NULL, "\n", &save))) {
		char *colon;
		line = trim(line);
		if (!*line)
			continue;
		colon = strchr(line, ':');
		if (!colon || colon == line || c->nhdr >= HDR_MAX) {
			c->close = true;
			send_plain(c, c->nhdr >= HDR_MAX ? 431 : 400,
				   "bad header\n", NULL);
			return false;
		}
		*colon = '\0';
		for (char *q = line; *q; q++) {
			if (*q == ' ' || *q == '\t') {
				c->close = true;
				send_plain(c, 400, "bad header\n", NULL);
				return false;
			}
		}
		c->hname[c->nhdr] = line;
		c->hval[c->nhdr] = trim(colon + 1);
		c->nhdr++;
	}
	return true;
}

/* Whether the Connection header lists token. */
static bool conn_has(const conn *c, const char *token)
{
	const char *v = header(c, "Connection");
	size_t tl = strlen(token);
	while (v && *v) {
		while (*v == ' ' || *v == ',')
			v++;
		size_t n = strcspn(v, ", ");
		if (n == tl && strncasecmp(v, token, tl) == 0)
			return true;
		v += n;
	}
	return false;
}

/* Reads and drops a request body of n bytes; false when the connection
 * is gone. */
static bool skip_body(conn *c, long long n)
{
	size_t have = c->len - c->req_len;
	if ((long long)have >= n) {
		c->req_len += (size_t)n;
		return true;
	}
	n -= (long long)have;
	c->len = c->req_len; /* drop the buffered part */
	while (n > 0) {
		char junk[4096];
		struct pollfd p = {c->fd, POLLIN, 0};
		if (poll(&p, 1, (int)cfg.idle_ms) <= 0)
			return false;
		ssize_t r = recv(
		    c->fd, junk,
		    n < (long long)sizeof junk ? (size_t)n : sizeof junk, 0);
		if (r <= 0)
			return false;
		n -= r;
	}
	return true;
}

static void serve(conn *c)
{
	while (!c->dead && !c->close) {
		size_t end;
		while (!(end = head_end(c))) {
			if (c->len >= REQ_MAX) {
				c->close = true;
				send_plain(c, 431, "request head too large\n",
					   NULL);
				return;
			}
			if (!fill(c))
				return;
		}
		c->req_len = end;
		c->head = false;
		if (!parse_head(c, end))
			return;
		bool v10 = strcmp(c->version, "HTTP/1.0") == 0;
		c->close =
		    v10 ? !conn_has(c, "keep-alive") : conn_has(c, "close");
		const char *te = header(c, "Transfer-Encoding");
		const char *cl = header(c, "Content-Length");
		long long blen = 0;
		if (te) {
			c->close = true;
			send_plain(c, 501,
				   "request bodies: Content-Length "
				   "only\n",
				   NULL);
			return;
		}
		if (cl && !parse_long(cl, 0, 1 << 20, &blen)) {
			c->close = true;
			send_plain(c, 400, "bad or too large Content-Length\n",
				   NULL);
			return;
		}
		if (blen && !skip_body(c, blen))
			return;
		if (strcmp(c->method, "GET") == 0) {
			handle(c);
		} else if (strcmp(c->method, "HEAD") == 0) {
			c->head = true;
			handle(c);
		} else {
			c->close = true;
			send_plain(c, 501, "GET and HEAD only\n", NULL);
			return;
		}
		if (c->dead)
			return;
		/* Keep what came after this request (pipelining). */
		memmove(c->buf, c->buf + c->req_len, c->len - c->req_len);
		c->len -= c->req_len;
	}
}

static void *conn_main(void *arg)
{
	conn *c = arg;

	serve(c);
	if (!c->dead) {
		shutdown(c->fd, SHUT_WR);
		close(c->fd);
	}
	free(c);
	pthread_mutex_lock(&stats_mu);
	conns_active--;
	pthread_cond_signal(&conns_cv);
	pthread_mutex_unlock(&stats_mu);
	return NULL;
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: origin [OPTIONS] [PORT]\n"
	    "A programmable HTTP origin (127.0.0.1 unless --bind) for the "
	    "fetch tests;\nprints its port on the first line of stdout when "
	    "ready. Paths and faults: see\ntests/fetch/origin.c.\n"
	    "  --bind ADDR          IPv4 address to listen on [127.0.0.1]\n"
	    "  --root DIR           folder of /file/NAME [$ORIGIN_ROOT or .]\n"
	    "  --port-file FILE     also write the port there (atomically)\n"
	    "  --latency MS         wait before every counted answer [0]\n"
	    "  --fault-ratio R      share of /file/ and /img/ URLs that fail "
	    "at first [0]\n"
	    "  --fault-kinds LIST   faults drawn for them "
	    "[503,500,429,reset,truncate]\n"
	    "  --fault-times N      attempts a faulty URL fails, then it "
	    "recovers [2]\n"
	    "  --seed N             seed of the fault hash [1]\n"
	    "  --slow-ms MS         delay of the slow fault [1500]\n"
	    "  --drip-rate B        bytes/s of the drip fault [100]\n"
	    "  --hang-max SEC       longest a timeout fault is held [3600]\n"
	    "  --idle-timeout SEC   close idle keep-alive connections [300]\n"
	    "  --max-conns N        connections served at once [2048]\n"
	    "  --die-with-parent    exit when the parent process exits\n"
	    "  --verbose            log each request to stderr\n");
}

static bool set_kinds(const char *list)
{
	char copy[1024], *save = NULL;
	snprintf(copy, sizeof copy, "%s", list);
	cfg.n_kinds = 0;
	for (char *t = strtok_r(copy, ", ", &save); t;
	     t = strtok_r(NULL, ", ", &save)) {
		if (!valid_kind(t) || strlen(t) >= sizeof cfg.kinds[0] ||
		    cfg.n_kinds >= MAX_KINDS) {
			fprintf(stderr, "origin: unknown fault kind \"%s\"\n",
				t);
			return false;
		}
		snprintf(cfg.kinds[cfg.n_kinds++], sizeof cfg.kinds[0], "%s",
			 t);
	}
	return cfg.n_kinds > 0;
}

static bool opt_num(const char *name, const char *arg, long long lo,
		    long long hi, long long *out)
{
	if (parse_long(arg, lo, hi, out))
		return true;
	fprintf(stderr, "origin: %s wants a whole number in %lld..%lld\n", name,
		lo, hi);
	return false;
}

static bool write_port_file(const char *path, int port)
{
	char tmp[PATH_MAX];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
		return false;
	f = fopen(tmp, "w");
	if (!f)
		return false;
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0)
		return false;
	return rename(tmp, path) == 0;
}

int main(int argc, char **argv)
{
	enum {
		O_ROOT = 256,
		O_PORT_FILE,
		O_LATENCY,
		O_RATIO,
		O_KINDS,
		O_TIMES,
		O_SEED,
		O_SLOW,
		O_DRIP,
		O_HANG,
		O_IDLE,
		O_MAXC,
		O_PARENT,
		O_VERBOSE,
		O_BIND,
	};
	static const struct option opts[] = {
	    {"root", required_argument, 0, O_ROOT},
	    {"port-file", required_argument, 0, O_PORT_FILE},
	    {"latency", required_argument, 0, O_LATENCY},
	    {"fault-ratio", required_argument, 0, O_RATIO},
	    {"fault-kinds", required_argument, 0, O_KINDS},
	    {"fault-times", required_argument, 0, O_TIMES},
	    {"seed", required_argument, 0, O_SEED},
	    {"slow-ms", required_argument, 0, O_SLOW},
	    {"drip-rate", required_argument, 0, O_DRIP},
	    {"hang-max", required_argument, 0, O_HANG},
	    {"idle-timeout", required_argument, 0, O_IDLE},
	    {"max-conns", required_argument, 0, O_MAXC},
	    {"die-with-parent", no_argument, 0, O_PARENT},
	    {"verbose", no_argument, 0, O_VERBOSE},
	    {"bind", required_argument, 0, O_BIND},
	    {"help", no_argument, 0, 'h'},
	    {0, 0, 0, 0},
	};
	long long v;
	int ch, lfd;
	pid_t parent = getppid();
	bool die_with_parent = false;
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	pthread_attr_t attr;
	struct rlimit rl;
	const char *env_root = getenv("ORIGIN_ROOT");

	if (env_root && *env_root)
		cfg.root = env_root;
	set_kinds("503,500,429,reset,truncate");
	while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (ch) {
		case O_ROOT:
			cfg.root = optarg;
			break;
		case O_PORT_FILE:
			cfg.port_file = optarg;
			break;
		case O_LATENCY:
			if (!opt_num("--latency", optarg, 0, 3600000, &v))
				return 2;
			cfg.latency_ms = (long)v;
			break;
		case O_RATIO: {
			char *end;
			cfg.fault_ratio = strtod(optarg, &end);
			if (end == optarg || *end || !(cfg.fault_ratio >= 0) ||
			    cfg.fault_ratio > 1) {
				fprintf(stderr, "origin: --fault-ratio wants "
						"0..1\n");
				return 2;
			}
			break;
		}
		case O_KINDS:
			if (!set_kinds(optarg))
				return 2;
			break;
		case O_TIMES:
			if (!opt_num("--fault-times", optarg, 0, 1000000, &v))
				return 2;
			cfg.fault_times = (long)v;
			break;
		case O_SEED:
			if (!opt_num("--seed", optarg, 0, LLONG_MAX, &v))
				return 2;
			cfg.seed = (uint64_t)v;
			break;
		case O_SLOW:
			if (!opt_num("--slow-ms", optarg, 0, 3600000, &v))
				return 2;
			cfg.slow_ms = (long)v;
			break;
		case O_DRIP:
			if (!opt_num("--drip-rate", optarg, 1, 1 << 30, &v))
				return 2;
			cfg.drip_rate = (long)v;
			break;
		case O_HANG:
			if (!opt_num("--hang-max", optarg, 0, 86400, &v))
				return 2;
			cfg.hang_max_s = (long)v;
			break;
		case O_IDLE:
			if (!opt_num("--idle-timeout", optarg, 1, 86400, &v))
				return 2;
			cfg.idle_ms = (long)v * 1000;
			break;
		case O_MAXC:
			if (!opt_num("--max-conns", optarg, 1, 100000, &v))
				return 2;
			cfg.max_conns = (long)v;
			break;
		case O_PARENT:
			die_with_parent = true;
			break;
		case O_VERBOSE:
			cfg.verbose = true;
			break;
		case O_BIND:
			cfg.bind = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc - 1) {
		usage(stderr);
		return 2;
	}
	if (optind == argc - 1) {
		if (!opt_num("PORT", argv[optind], 0, 65535, &v))
			return 2;
		cfg.port = (int)v;
	}
	if (die_with_parent) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			return 0; /* it is gone already */
	}
	signal(SIGPIPE, SIG_IGN);
	/* Room for many connections (and the files they read). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	hosts = calloc(MAX_HOSTS, sizeof *hosts);
	if (!hosts)
		return 1;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		perror("origin: socket");
		return 1;
	}
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)cfg.port);
	if (inet_pton(AF_INET, cfg.bind, &sa.sin_addr) != 1) {
		fprintf(stderr,
			"origin: --bind wants an IPv4 address, not \"%s\"\n",
			cfg.bind);
		return 2;
	}
	if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl)) {
		perror("origin: bind/listen");
		return 1;
	}
	listen_port = ntohs(sa.sin_port);
	if (cfg.port_file && !write_port_file(cfg.port_file, listen_port)) {
		perror("origin: port file");
		return 1;
	}
	printf("%d\n", listen_port);
	fflush(stdout);

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (;;) {
		pthread_mutex_lock(&stats_mu);
		while (conns_active >= cfg.max_conns)
			pthread_cond_wait(&conns_cv, &stats_mu);
		pthread_mutex_unlock(&stats_mu);

		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				sleep_ms(10); /* EMFILE and such: wait */
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		conn *c = malloc(sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		memset(c, 0, offsetof(conn, buf));
		c->fd = fd;
		pthread_mutex_lock(&stats_mu);
		conns_active++;
		conns_total++;
		if (conns_active > conns_max)
			conns_max = conns_active;
		pthread_mutex_unlock(&stats_mu);
		pthread_t t;
		if (pthread_create(&t, &attr, conn_main, c) != 0) {
			close(fd);
			free(c);
			pthread_mutex_lock(&stats_mu);
			conns_active--;
			pthread_mutex_unlock(&stats_mu);
			sleep_ms(10);
		}
	}
}
