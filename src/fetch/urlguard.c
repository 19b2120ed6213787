/* urlguard.c — the SSRF guard: URL shape checks (curl_url) and the address
 * classifier run on every socket libcurl opens. See urlguard.h.
 *
 * Threads: any; a pm_urlguard is read-only once built.
 */
#include "fetch/urlguard.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define URL_MAX 8192

typedef struct cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	int prefix;
} cidr;

struct pm_urlguard {
	bool allow_private;
	cidr *cidrs;
	size_t n_cidrs;
	char **hosts; /* lowercase; "*.x" matches subdomains of x */
	size_t n_hosts;
};

/* ---- URL checks ---- */

pm_status pm_urlguard_url_host(const char *url, char *host, size_t host_len,
			       pm_err *err)
{
	CURLU *u;
	CURLUcode rc;
	char *part = NULL;
	pm_status s = PM_OK;
	size_t n;

	if (!url || !*url)
		return pm_fail(err, PM_ERR_CATALOG, "empty URL");
	n = strlen(url);
	if (n > URL_MAX)
		return pm_fail(err, PM_ERR_CATALOG,
			       "URL is %zu bytes, over the limit of %d", n,
			       URL_MAX);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)url[i];
		if (c <= 0x20 || c == 0x7f)
			return pm_fail(err, PM_ERR_CATALOG,
				       "malformed URL: whitespace or control "
				       "character at byte %zu",
				       i);
	}
	/* A scheme that is plainly not ours ("javascript:", "data:") is
	 * unsupported, not malformed, even when curl cannot parse the rest. */
	size_t sl = 0;
	while (isalnum((unsigned char)url[sl]) || url[sl] == '+' ||
	       url[sl] == '-' || url[sl] == '.')
		sl++;
	if (sl > 0 && url[sl] == ':' && isalpha((unsigned char)url[0]) &&
	    url[sl + 1] != '\0' && !isdigit((unsigned char)url[sl + 1]) &&
	    !(sl == 4 && strncasecmp(url, "http", 4) == 0) &&
	    !(sl == 5 && strncasecmp(url, "https", 5) == 0))
		return pm_fail(err, PM_ERR_UNSUPPORTED,
			       "URL scheme \"%.*s\" is not allowed (http and "
			       "https only)",
			       (int)(sl > 40 ? 40 : sl), url);
	u = curl_url();
	if (!u)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory parsing URL");
	rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);
	if (rc != CURLUE_OK) {
		s = pm_fail(err, PM_ERR_CATALOG, "malformed URL \"%.200s\": %s",
			    url, curl_url_strerror(rc));
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &part, 0) != CURLUE_OK || !part) {
		s = pm_fail(err, PM_ERR_CATALOG, "malformed URL: no scheme");
		goto out;
	}
	if (strcasecmp(part, "http") && strcasecmp(part, "https")) {
		s = pm_fail(err, PM_ERR_UNSUPPORTED,
			    "URL scheme \"%.40s\" is not allowed (http and "
			    "https only)",
			    part);
		goto out;
	}
	curl_free(part);
	part = NULL;
	/* Any userinfo at all, even empty ("http://@host/"), is refused: it
	 * is how "http://trusted.example@10.0.0.1/" tricks readers. */
	if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_OPTIONS, &part, 0) == CURLUE_OK) {
		s = pm_fail(err, PM_ERR_UNSUPPORTED,
			    "URL with userinfo (user:password@host) is "
			    "refused");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_ZONEID, &part, 0) == CURLUE_OK) {
		s = pm_fail(err, PM_ERR_UNSUPPORTED,
			    "URL with an IPv6 zone id is refused");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &part, 0) != CURLUE_OK || !part ||
	    !*part) {
		s = pm_fail(err, PM_ERR_CATALOG, "malformed URL: no host");
		goto out;
	}
	if (host) {
		const char *h = part;
		size_t hl = strlen(h);
		if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
			h++;
			hl -= 2;
		}
		while (hl > 1 && h[hl - 1] == '.')
			hl--; /* "example.com." is "example.com" */
		if (hl >= host_len) {
			s = pm_fail(err, PM_ERR_CATALOG,
				    "malformed URL: host name too long");
			goto out;
		}
		for (size_t i = 0; i < hl; i++)
			host[i] = (char)tolower((unsigned char)h[i]);
		host[hl] = '\0';
	}
out:
	curl_free(part);
	curl_url_cleanup(u);
	return s;
}

pm_status pm_urlguard_check_url(const char *url, pm_err *err)
{
	char host[256]; /* DNS names are at most 253 bytes */

	return pm_urlguard_url_host(url, host, sizeof host, err);
}

/* ---- allow list ---- */

/* Parses "a.b.c.d", "a.b.c.d/n", "v6", "v6/n" or "[v6]" into c. */
static bool parse_cidr(const char *s, cidr *c)
{
	char buf[128];
	char *slash;
	char *end;
	long prefix = -1;
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof buf)
		return false;
	memcpy(buf, s, n + 1);
	slash = strchr(buf, '/');
	if (slash) {
		*slash = '\0';
		if (!isdigit((unsigned char)slash[1]))
			return false;
		prefix = strtol(slash + 1, &end, 10);
		if (*end)
			return false;
	}
	char *a = buf;
	size_t al = strlen(a);
	if (al >= 2 && a[0] == '[' && a[al - 1] == ']') {
		a[al - 1] = '\0';
		a++;
	}
	memset(c, 0, sizeof *c);
	if (inet_pton(AF_INET, a, c->addr) == 1) {
		c->family = AF_INET;
		c->prefix = prefix < 0 ? 32 : (int)prefix;
		return prefix <= 32;
	}
	if (inet_pton(AF_INET6, a, c->addr) == 1) {
		c->family = AF_INET6;
		c->prefix = prefix < 0 ? 128 : (int)prefix;
		return prefix <= 128;
	}
	return false;
}

/* A host name or "*.suffix": letters, digits, '-', '.', '_'. */
static bool valid_host_pattern(const char *s)
{
	if (strncmp(s, "*.", 2) == 0)
		s += 2;
	if (!*s)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' &&
		    *s != '_')
			return false;
	return true;
}

pm_status pm_urlguard_new(bool allow_private, const char *allow_list,
			  pm_urlguard **out, pm_err *err)
{
	pm_urlguard *g = calloc(1, sizeof *g);
	char *copy = NULL, *save = NULL, *tok;
	size_t cap;

	*out = NULL;
	if (!g)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	g->allow_private = allow_private;
	if (!allow_list || !*allow_list) {
		*out = g;
		return PM_OK;
	}
	copy = strdup(allow_list);
	cap = strlen(allow_list) / 2 + 1; /* at most this many entries */
	g->cidrs = calloc(cap, sizeof *g->cidrs);
	g->hosts = calloc(cap, sizeof *g->hosts);
	if (!copy || !g->cidrs || !g->hosts)
		goto nomem;
	for (tok = strtok_r(copy, ", \t\n", &save); tok;
	     tok = strtok_r(NULL, ", \t\n", &save)) {
		cidr c;
		if (parse_cidr(tok, &c)) {
			g->cidrs[g->n_cidrs++] = c;
			continue;
		}
		if (strchr(tok, '/') || strchr(tok, ':') ||
		    !valid_host_pattern(tok)) {
			pm_fail(err, PM_ERR_USAGE,
				"allow list entry \"%.100s\" is neither a host "
				"name nor an address or CIDR",
				tok);
			free(copy);
			pm_urlguard_free(g);
			return PM_ERR_USAGE;
		}
		char *h = strdup(tok);
		if (!h)
			goto nomem;
		for (char *p = h; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		size_t hl = strlen(h);
		while (hl > 1 && h[hl - 1] == '.')
			h[--hl] = '\0';
		g->hosts[g->n_hosts++] = h;
	}
	free(copy);
	*out = g;
	return PM_OK;
nomem:
	free(copy);
	pm_urlguard_free(g);
	return pm_fail(err, PM_ERR_NOMEM, "out of memory");
}

void pm_urlguard_free(pm_urlguard *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < g->n_hosts; i++)
		free(g->hosts[i]);
	free(g->hosts);
	free(g->cidrs);
	free(g);
}

bool pm_urlguard_host_allowed(const pm_urlguard *g, const char *host)
{
	if (!g)
		return false;
	if (g->allow_private)
		return true;
	if (!host)
		return false;
	size_t hl = strlen(host);
	for (size_t i = 0; i < g->n_hosts; i++) {
		const char *p = g->hosts[i];
		if (strncmp(p, "*.", 2) == 0) {
			size_t sl = strlen(p + 1); /* ".suffix" */
			if (hl > sl && strcasecmp(host + hl - sl, p + 1) == 0)
				return true;
		} else if (strcasecmp(host, p) == 0) {
			return true;
		}
	}
	return false;
}

/* ---- the address classifier ---- */

typedef enum aclass {
	A_PUBLIC,
	A_LOOPBACK,
	A_PRIVATE,
	A_LINK_LOCAL,
	A_CGNAT,
	A_MULTICAST,
	A_UNSPECIFIED,
	A_BROADCAST,
	A_RESERVED,
} aclass;

static const char *const class_text[] = {
    [A_PUBLIC] = "a public",
    [A_LOOPBACK] = "a loopback",
    [A_PRIVATE] = "a private",
    [A_LINK_LOCAL] = "a link-local",
    [A_CGNAT] = "a carrier-grade NAT (100.64.0.0/10)",
    [A_MULTICAST] = "a multicast",
    [A_UNSPECIFIED] = "an unspecified",
    [A_BROADCAST] = "a broadcast",
    [A_RESERVED] = "a reserved",
};

static bool in4(uint32_t a, uint32_t net, int bits)
{
	uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
	return (a & mask) == (net & mask);
}

#define V4(a, b, c, d)                                                         \
	((uint32_t)(a) << 24 | (uint32_t)(b) << 16 | (uint32_t)(c) << 8 |      \
	 (uint32_t)(d))

static aclass class4(uint32_t a)
{
	if (in4(a, V4(0, 0, 0, 0), 8))
		return A_UNSPECIFIED;
	if (in4(a, V4(10, 0, 0, 0), 8) || in4(a, V4(172, 16, 0, 0), 12) ||
	    in4(a, V4(192, 168, 0, 0), 16))
		return A_PRIVATE;
	if (in4(a, V4(100, 64, 0, 0), 10))
		return A_CGNAT;
	if (in4(a, V4(127, 0, 0, 0), 8))
		return A_LOOPBACK;
	if (in4(a, V4(169, 254, 0, 0), 16))
		return A_LINK_LOCAL;
	if (in4(a, V4(224, 0, 0, 0), 4))
		return A_MULTICAST;
	if (a == 0xffffffffu)
		return A_BROADCAST;
	if (in4(a, V4(240, 0, 0, 0), 4) ||     /* future use */
	    in4(a, V4(192, 0, 0, 0), 24) ||    /* IETF protocol assignments */
	    in4(a, V4(192, 0, 2, 0), 24) ||    /* documentation */
	    in4(a, V4(198, 51, 100, 0), 24) || /* documentation */
	    in4(a, V4(203, 0, 113, 0), 24) ||  /* documentation */
	    in4(a, V4(198, 18, 0, 0), 15))     /* benchmarking */
		return A_RESERVED;
	return A_PUBLIC;
}

static uint32_t load4(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static bool zero(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* If the IPv6 address a embeds an IPv4 address, writes it to *v4, names
 * the form and returns true. */
static bool embedded4(const unsigned char *a, uint32_t *v4, const char **form)
{
	static const unsigned char nat64[12] = {0x00, 0x64, 0xff, 0x9b};
	if (zero(a, 10) && a[10] == 0xff && a[11] == 0xff) {
		*form = "IPv4-mapped";
		*v4 = load4(a + 12);
		return true;
	}
	if (zero(a, 8) && a[8] == 0xff && a[9] == 0xff && a[10] == 0 &&
	    a[11] == 0) {
		*form = "IPv4-translated";
		*v4 = load4(a + 12);
		return true;
	}
	if (zero(a, 12) && !zero(a + 12, 3)) {
		/* ::a.b.c.d, but not :: or ::1 (first three bytes nonzero
		 * covers every a.b.c.d from 1.0.0.0 up). */
		*form = "IPv4-compatible";
		*v4 = load4(a + 12);
		return true;
	}
	if (memcmp(a, nat64, 12) == 0) {
		*form = "NAT64 (64:ff9b::/96)";
		*v4 = load4(a + 12);
		return true;
	}
	if (a[0] == 0x20 && a[1] == 0x02) {
		*form = "6to4 (2002::/16)";
		*v4 = load4(a + 2);
		return true;
	}
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
		*form = "Teredo (2001::/32)";
		*v4 = ~load4(a + 12);
		return true;
	}
	return false;
}

static aclass class6(const unsigned char *a)
{
	static const unsigned char one[16] = {[15] = 1};
	if (zero(a, 16))
		return A_UNSPECIFIED;
	if (memcmp(a, one, 16) == 0)
		return A_LOOPBACK;
	if ((a[0] & 0xfe) == 0xfc)
		return A_PRIVATE; /* fc00::/7 unique local */
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return A_LINK_LOCAL; /* fe80::/10 */
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
		return A_PRIVATE; /* fec0::/10 site-local (deprecated) */
	if (a[0] == 0xff)
		return A_MULTICAST;
	if (a[0] == 0x00 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b &&
	    a[4] == 0x00 && a[5] == 0x01)
		return A_PRIVATE; /* 64:ff9b:1::/48 local-use NAT64 */
	if (a[0] == 0x01 && zero(a + 1, 7))
		return A_RESERVED; /* 100::/64 discard-only */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return A_RESERVED; /* 2001:db8::/32 documentation */
	if (zero(a, 12))
		return A_RESERVED; /* rest of ::/96 (deprecated) */
	return A_PUBLIC;
}

static bool cidr_match(const cidr *c, int family, const unsigned char *a)
{
	int bits = c->prefix;
	int full = bits / 8, rest = bits % 8;

	if (c->family != family)
		return false;
	if (memcmp(c->addr, a, (size_t)full))
		return false;
	if (rest) {
		unsigned char m = (unsigned char)(0xff << (8 - rest));
		if ((c->addr[full] & m) != (a[full] & m))
			return false;
	}
	return true;
}

static bool cidr_allowed(const pm_urlguard *g, int family,
			 const unsigned char *a)
{
	for (size_t i = 0; g && i < g->n_cidrs; i++)
		if (cidr_match(&g->cidrs[i], family, a))
			return true;
	return false;
}

#define HINT "(use --allow-private or --allow-host)"

bool pm_urlguard_addr_allowed(const struct sockaddr *sa, const pm_urlguard *g,
			      char *why, size_t why_len)
{
	char text[INET6_ADDRSTRLEN], text4[INET_ADDRSTRLEN];
	const char *form = NULL;
	uint32_t v4 = 0;
	aclass c;

	if (why && why_len)
		why[0] = '\0';
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		const unsigned char *a = (const unsigned char *)&s4->sin_addr;
		c = class4(load4(a));
		if (c == A_PUBLIC || (g && g->allow_private) ||
		    cidr_allowed(g, AF_INET, a))
			return true;
		inet_ntop(AF_INET, a, text, sizeof text);
		if (why)
			snprintf(why, why_len,
				 "refused: %s is %s address " HINT, text,
				 class_text[c]);
		return false;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		const unsigned char *a = s6->sin6_addr.s6_addr;
		unsigned char a4[4];
		bool emb = embedded4(a, &v4, &form);
		c = emb ? class4(v4) : class6(a);
		if (c == A_PUBLIC || (g && g->allow_private) ||
		    cidr_allowed(g, AF_INET6, a))
			return true;
		a4[0] = (unsigned char)(v4 >> 24);
		a4[1] = (unsigned char)(v4 >> 16);
		a4[2] = (unsigned char)(v4 >> 8);
		a4[3] = (unsigned char)v4;
		if (emb && cidr_allowed(g, AF_INET, a4))
			return true;
		inet_ntop(AF_INET6, a, text, sizeof text);
		if (!why)
			return false;
		if (emb) {
			inet_ntop(AF_INET, a4, text4, sizeof text4);
			snprintf(
			    why, why_len,
			    "refused: %s is %s address (%s form of %s) " HINT,
			    text, class_text[c], form, text4);
		} else {
			snprintf(why, why_len,
				 "refused: %s is %s address " HINT, text,
				 class_text[c]);
		}
		return false;
	}
	if (why)
		snprintf(why, why_len, "refused: address family %d",
			 (int)sa->sa_family);
	return false;
}

bool pm_urlguard_connect_allowed(const pm_urlguard *g, const char *host,
				 const struct sockaddr *sa, char *why,
				 size_t why_len)
{
	if (pm_urlguard_host_allowed(g, host))
		return true;
	return pm_urlguard_addr_allowed(sa, g, why, why_len);
}
