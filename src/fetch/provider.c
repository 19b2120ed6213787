/* provider.c — image search providers: spec parsing, the Google CSE and
 * Bing v7 request/answer shapes, and one search with rate limit, quota,
 * retries and health metrics (see provider.h).
 *
 * The rate limit and Retry-After cool-down are the vision limiter's
 * (src/vision/limiter.c): each provider owns one limiter endpoint, keyed
 * by ("search:" NAME, endpoint URL), used without limiter keys (the
 * provider puts its own key into the request) and with the vision metrics
 * turned off. Backoff and Retry-After parsing are the vision client's too.
 *
 * Threads: see provider.h. A provider's mutex guards its quota counter;
 * nothing sleeps or does I/O under it. Each search makes its own curl easy
 * handle (a provider is called at most a few times a second).
 */
#define _GNU_SOURCE
#include "fetch/provider.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "core/metrics.h"
#include "core/util.h"
#include "vision/vision.h"

#define KEY_MAX	  512
#define QUERY_MAX 8 /* fields in a query */

/* ---- the API shapes: the vtable ---- */

typedef struct pm_provider_api {
	const char *kind;     /* "google", "bing" */
	const char *endpoint; /* the public API's URL */
	bool needs_cx;	      /* a search engine id (Google) */
	int max_num;	      /* results one request may ask for */
	/* The request URL for query (already URL-escaped) into buf;
	 * key_esc is the escaped key (Google puts it in the URL). Returns
	 * the length, or >= n when it does not fit. */
	int (*url)(const pm_provider *p, const char *q_esc, const char *key_esc,
		   const char *cx_esc, int num, char *buf, size_t n);
	/* The header that carries the key, "" for none. */
	const char *key_header;
	pm_status (*parse)(const char *body, size_t len, pm_provider_hit *out,
			   int max, int *n, pm_err *err);
} pm_provider_api;

struct pm_provider {
	const pm_provider_api *api;
	char name[32];
	char endpoint[1024];
	char key[KEY_MAX + 1]; /* secret; "" if none */
	char cx[256];
	double rps;
	int64_t quota; /* requests per UTC day; 0 = none */
	int max;       /* results asked for */
	int timeout_ms;
	int attempts;
	char query[QUERY_MAX][64]; /* row fields making the query */
	int n_query;
	pm_vision_ep *ep; /* rate limiter; process-wide, never freed */
	unsigned seed;	  /* backoff jitter */
	pthread_mutex_t mu;
	int64_t day;  /* UTC day of used */
	int64_t used; /* requests made on day */
};

static int google_url(const pm_provider *p, const char *q, const char *key,
		      const char *cx, int num, char *buf, size_t n)
{
	return snprintf(buf, n, "%s%ckey=%s&cx=%s&q=%s&searchType=image&num=%d",
			p->endpoint, strchr(p->endpoint, '?') ? '&' : '?', key,
			cx, q, num);
}

static int bing_url(const pm_provider *p, const char *q, const char *key,
		    const char *cx, int num, char *buf, size_t n)
{
	return snprintf(buf, n, "%s%cq=%s&count=%d", p->endpoint,
			strchr(p->endpoint, '?') ? '&' : '?', q, num);
}

static const pm_provider_api apis[] = {
    {.kind = "google",
     .endpoint = "https://www.googleapis.com/customsearch/v1",
     .needs_cx = true,
     .max_num = 10,
     .url = google_url,
     .key_header = "",
     .parse = pm_provider_parse_google},
    {.kind = "bing",
     .endpoint = "https://api.bing.microsoft.com/v7.0/images/search",
     .max_num = 150,
     .url = bing_url,
     .key_header = "Ocp-Apim-Subscription-Key",
     .parse = pm_provider_parse_bing},
};

/* ---- parsers ---- */

static bool url_usable(const char *u, size_t n)
{
	if (n == 0 || n > PM_PROVIDER_MAX_URL)
		return false;
	if (!(n > 7 && strncasecmp(u, "http://", 7) == 0) &&
	    !(n > 8 && strncasecmp(u, "https://", 8) == 0))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)u[i];
		if (c <= 0x20 || c == 0x7f || c == '|')
			return false;
	}
	return true;
}

static int dim_of(json_t *v)
{
	json_int_t x;

	if (json_is_integer(v))
		x = json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) >= 1 &&
		 json_real_value(v) <= 1000000)
		x = (json_int_t)json_real_value(v);
	else if (json_is_string(v))
		x = (json_int_t)strtoll(json_string_value(v), NULL, 10);
	else
		return 0;
	return x >= 1 && x <= 1000000 ? (int)x : 0;
}

/* Shared reader: root object, list under list_key (absent = no results),
 * each entry an object with a URL under url_key and sizes under dims (an
 * object member name, or NULL for the entry itself). */
static pm_status parse_shape(const char *what, const char *body, size_t len,
			     const char *list_key, const char *url_key,
			     const char *dims, pm_provider_hit *out, int max,
			     int *n, pm_err *err)
{
	json_error_t je;
	json_t *root, *list, *e;
	size_t i;

	*n = 0;
	if (max > PM_PROVIDER_MAX_HITS)
		max = PM_PROVIDER_MAX_HITS;
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return pm_fail(err, PM_ERR_UPSTREAM,
			       "the %s answer is not JSON (line %d: %.80s)",
			       what, je.line, je.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return pm_fail(err, PM_ERR_UPSTREAM,
			       "the %s answer is not a JSON object", what);
	}
	list = json_object_get(root, list_key);
	if (list && !json_is_array(list)) {
		json_decref(root);
		return pm_fail(err, PM_ERR_UPSTREAM,
			       "the %s answer's \"%s\" is not a list", what,
			       list_key);
	}
	json_array_foreach(list, i, e)
	{
		const char *u;
		json_t *d;
		size_t ul;

		if (*n >= max)
			break;
		if (!json_is_object(e) ||
		    !json_is_string(json_object_get(e, url_key)))
			continue;
		u = json_string_value(json_object_get(e, url_key));
		ul = json_string_length(json_object_get(e, url_key));
		if (!url_usable(u, ul))
			continue;
		memcpy(out[*n].url, u, ul);
		out[*n].url[ul] = '\0';
		d = dims ? json_object_get(e, dims) : e;
		out[*n].width =
		    json_is_object(d) ? dim_of(json_object_get(d, "width")) : 0;
		out[*n].height = json_is_object(d)
				     ? dim_of(json_object_get(d, "height"))
				     : 0;
		(*n)++;
	}
	json_decref(root);
	return PM_OK;
}

pm_status pm_provider_parse_google(const char *body, size_t len,
				   pm_provider_hit *out, int max, int *n,
				   pm_err *err)
{
	return parse_shape("Google CSE", body, len, "items", "link", "image",
			   out, max, n, err);
}

pm_status pm_provider_parse_bing(const char *body, size_t len,
				 pm_provider_hit *out, int max, int *n,
				 pm_err *err)
{
	return parse_shape("Bing", body, len, "value", "contentUrl", NULL, out,
			   max, n, err);
}

/* ---- specs ---- */

static pm_status set_key(pm_provider *p, const char *v, pm_err *err)
{
	const char *k = v;
	size_t n;

	if (strncmp(v, "env:", 4) == 0) {
		k = getenv(v + 4);
		if (!k || !*k)
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: the environment "
				       "variable %.64s is not set",
				       p->name, v + 4);
	}
	n = strlen(k);
	if (n < 4 || n > KEY_MAX)
		return pm_fail(err, PM_ERR_USAGE,
			       "search provider %s: the key is under 4 or over "
			       "%d bytes",
			       p->name, KEY_MAX);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] == 0x7f)
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: the key has a "
				       "space or a control character",
				       p->name);
	memcpy(p->key, k, n + 1);
	return PM_OK;
}

static int num_in(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return -1;
	*out = v;
	return 0;
}

static pm_status set_query(pm_provider *p, const char *v, pm_err *err)
{
	char tmp[512], *save = NULL;

	if (strlen(v) >= sizeof tmp)
		return pm_fail(err, PM_ERR_USAGE,
			       "search provider %s: query is too long",
			       p->name);
	snprintf(tmp, sizeof tmp, "%s", v);
	p->n_query = 0;
	for (char *t = strtok_r(tmp, "+", &save); t;
	     t = strtok_r(NULL, "+", &save)) {
		if (p->n_query >= QUERY_MAX || strlen(t) >= sizeof p->query[0])
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: query takes at "
				       "most %d fields of under 64 bytes",
				       p->name, QUERY_MAX);
		snprintf(p->query[p->n_query++], sizeof p->query[0], "%s", t);
	}
	if (!p->n_query)
		return pm_fail(err, PM_ERR_USAGE,
			       "search provider %s: query names no field",
			       p->name);
	return PM_OK;
}

/* One NAME=VALUE of a spec. */
static pm_status spec_item(pm_provider *p, const char *k, const char *v,
			   pm_err *err)
{
	double d;

	if (strcmp(k, "name") == 0) {
		size_t n = strlen(v);
		if (n == 0 || n >= sizeof p->name)
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider name must be 1 to %zu "
				       "bytes",
				       sizeof p->name - 1);
		for (size_t i = 0; i < n; i++)
			if (!isalnum((unsigned char)v[i]) && v[i] != '-' &&
			    v[i] != '_')
				return pm_fail(err, PM_ERR_USAGE,
					       "search provider name: letters, "
					       "digits, - and _ only");
		memcpy(p->name, v, n + 1);
	} else if (strcmp(k, "endpoint") == 0) {
		if ((strncasecmp(v, "http://", 7) != 0 &&
		     strncasecmp(v, "https://", 8) != 0) ||
		    strlen(v) >= sizeof p->endpoint)
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: endpoint must be "
				       "an http(s) URL under %zu bytes",
				       p->name, sizeof p->endpoint);
		snprintf(p->endpoint, sizeof p->endpoint, "%s", v);
	} else if (strcmp(k, "key") == 0) {
		return set_key(p, v, err);
	} else if (strcmp(k, "cx") == 0) {
		if (!*v || strlen(v) >= sizeof p->cx)
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: cx must be 1 to "
				       "%zu bytes",
				       p->name, sizeof p->cx - 1);
		snprintf(p->cx, sizeof p->cx, "%s", v);
	} else if (strcmp(k, "rps") == 0) {
		if (num_in(v, 0.01, 1000, &d))
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: rps wants 0.01 to "
				       "1000",
				       p->name);
		p->rps = d;
	} else if (strcmp(k, "quota") == 0) {
		if (num_in(v, 0, 1e12, &d) || d != (double)(int64_t)d)
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: quota wants a "
				       "whole number of requests per day "
				       "(0: none)",
				       p->name);
		p->quota = (int64_t)d;
	} else if (strcmp(k, "max") == 0) {
		if (num_in(v, 1, PM_PROVIDER_MAX_HITS, &d) ||
		    d != (double)(int)d)
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: max wants 1 to %d",
				       p->name, PM_PROVIDER_MAX_HITS);
		p->max = (int)d;
	} else if (strcmp(k, "timeout") == 0) {
		if (num_in(v, 0.001, 600, &d))
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: timeout wants "
				       "seconds (up to 600)",
				       p->name);
		p->timeout_ms = (int)(d * 1000);
	} else if (strcmp(k, "attempts") == 0) {
		if (num_in(v, 1, 20, &d) || d != (double)(int)d)
			return pm_fail(err, PM_ERR_USAGE,
				       "search provider %s: attempts wants 1 "
				       "to 20",
				       p->name);
		p->attempts = (int)d;
	} else if (strcmp(k, "query") == 0) {
		return set_query(p, v, err);
	} else {
		return pm_fail(err, PM_ERR_USAGE,
			       "search provider %s: unknown setting \"%.32s\" "
			       "(name, endpoint, key, cx, rps, quota, max, "
			       "query, timeout, attempts)",
			       p->name, k);
	}
	return PM_OK;
}

pm_status pm_provider_parse_spec(const char *spec, pm_provider **out,
				 pm_err *err)
{
	pm_provider *p;
	char *copy, *save = NULL, *t;
	char model[64];
	pm_vision_cfg cfg;
	pm_status s = PM_OK;

	*out = NULL;
	p = calloc(1, sizeof *p);
	copy = strdup(spec);
	if (!p || !copy) {
		free(p);
		free(copy);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	t = strtok_r(copy, ",", &save);
	for (size_t i = 0; t && i < sizeof apis / sizeof *apis; i++)
		if (strcmp(t, apis[i].kind) == 0)
			p->api = &apis[i];
	if (!p->api) {
		s = pm_fail(err, PM_ERR_USAGE,
			    "--search-provider: the first item is the API "
			    "shape: google or bing");
		goto out;
	}
	snprintf(p->name, sizeof p->name, "%s", p->api->kind);
	snprintf(p->endpoint, sizeof p->endpoint, "%s", p->api->endpoint);
	p->rps = 2;
	p->max = PM_PROVIDER_MAX_HITS;
	p->timeout_ms = 10000;
	p->attempts = 3;
	snprintf(p->query[0], sizeof p->query[0], "title");
	snprintf(p->query[1], sizeof p->query[1], "brand");
	p->n_query = 2;
	while (!s && (t = strtok_r(NULL, ",", &save)) != NULL) {
		char *eq = strchr(t, '=');
		if (!eq) {
			s = pm_fail(err, PM_ERR_USAGE,
				    "search provider %s: settings are "
				    "NAME=VALUE, comma-separated",
				    p->name);
			break;
		}
		*eq = '\0';
		s = spec_item(p, t, eq + 1, err);
	}
	if (!s && p->api->needs_cx && !p->cx[0])
		s = pm_fail(err, PM_ERR_USAGE,
			    "search provider %s: google needs cx=ID (the "
			    "Programmable Search Engine id)",
			    p->name);
	if (s)
		goto out;
	snprintf(model, sizeof model, "search:%s", p->name);
	p->ep = pm_vision_ep_get(p->endpoint, model, err);
	if (!p->ep) {
		s = PM_ERR_USAGE;
		goto out;
	}
	pm_vision_ep_get_cfg(p->ep, &cfg);
	cfg.timeout_ms = p->timeout_ms;
	cfg.max_attempts = p->attempts;
	cfg.rate_start = cfg.rate_max = p->rps;
	cfg.rate_min = p->rps < 0.05 ? p->rps : 0.05;
	cfg.rate_increase = p->rps / 4;
	cfg.rate_decrease = 0.5;
	cfg.max_wait_s = 30;
	cfg.no_metrics = true;
	pm_vision_ep_set_cfg(p->ep, &cfg);
	pm_vision_ep_reset_rate(p->ep);
	pthread_mutex_init(&p->mu, NULL);
	p->seed = (unsigned)(pm_now() * 1e6) ^ (unsigned)(uintptr_t)p;
	p->day = pm_provider_today();
out:
	/* the copy may hold the key */
	explicit_bzero(copy, strlen(spec));
	free(copy);
	if (s) {
		explicit_bzero(p->key, sizeof p->key);
		free(p);
		return s;
	}
	*out = p;
	return PM_OK;
}

void pm_provider_free(pm_provider *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->mu);
	explicit_bzero(p->key, sizeof p->key);
	free(p);
}

const char *pm_provider_name(const pm_provider *p)
{
	return p->name;
}

const char *pm_provider_kind(const pm_provider *p)
{
	return p->api->kind;
}

int64_t pm_provider_quota(const pm_provider *p)
{
	return p->quota;
}

/* ---- queries ---- */

/* len, or less so that s[0..len) does not end inside a UTF-8 sequence. */
static size_t utf8_cut(const char *s, size_t len)
{
	size_t i = len, cont = 0, need;
	unsigned char lead;

	while (i > 0 && cont < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) {
		i--;
		cont++;
	}
	if (i == 0)
		return len;
	lead = (unsigned char)s[i - 1];
	if (lead < 0xc0)
		return len;
	need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
	return cont + 1 >= need ? len : i - 1;
}

static void append_clean(char *buf, size_t n, size_t *len, const char *v)
{
	bool any = false;

	if (!v)
		return;
	for (const char *s = v; *s && *len + 2 < n; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x20 || c == 0x7f)
			c = ' ';
		if (c == ' ' && (!any || buf[*len - 1] == ' '))
			continue;
		if (!any && *len > 0)
			buf[(*len)++] = ' ';
		any = true;
		buf[(*len)++] = (char)c;
	}
	while (*len > 0 && buf[*len - 1] == ' ')
		(*len)--;
	*len = utf8_cut(buf, *len);
	while (*len > 0 && buf[*len - 1] == ' ')
		(*len)--;
	buf[*len] = '\0';
}

void pm_provider_query(const pm_provider *p, const char *title, const char *id,
		       const char *category, const char *attrs_json, char *buf,
		       size_t n)
{
	json_t *attrs = NULL;
	size_t len = 0;

	if (!n)
		return;
	buf[0] = '\0';
	if (attrs_json)
		attrs = json_loads(attrs_json, 0, NULL);
	for (int i = 0; i < p->n_query; i++) {
		const char *f = p->query[i], *v = NULL;
		if (strcmp(f, "title") == 0)
			v = title;
		else if (strcmp(f, "id") == 0)
			v = id;
		else if (strcmp(f, "category") == 0)
			v = category;
		else if (json_is_object(attrs))
			v = json_string_value(json_object_get(attrs, f));
		append_clean(buf, n, &len, v);
	}
	json_decref(attrs);
}

/* ---- quota ---- */

int64_t pm_provider_today(void)
{
	return (int64_t)(time(NULL) / 86400);
}

void pm_provider_seed_quota(pm_provider *p, int64_t day, int64_t used)
{
	pthread_mutex_lock(&p->mu);
	if (day > p->day) {
		p->day = day;
		p->used = 0;
	}
	if (day == p->day && used > p->used)
		p->used = used;
	pm_metric_put(PM_M_SEARCH_QUOTA_USED, p->name, NULL, (double)p->used);
	pthread_mutex_unlock(&p->mu);
}

/* Takes one request from today's quota; false when it is used up. */
static bool quota_take(pm_provider *p)
{
	int64_t today = pm_provider_today();
	bool ok;

	pthread_mutex_lock(&p->mu);
	if (today != p->day) {
		p->day = today;
		p->used = 0;
	}
	ok = p->quota == 0 || p->used < p->quota;
	if (ok)
		p->used++;
	pm_metric_put(PM_M_SEARCH_QUOTA_USED, p->name, NULL, (double)p->used);
	pthread_mutex_unlock(&p->mu);
	return ok;
}

/* ---- one search ---- */

/* Replaces the key wherever it appears in s (an error text may echo the
 * URL). */
static void scrub(const pm_provider *p, char *s)
{
	size_t kl = strlen(p->key);
	char *q;

	if (kl == 0)
		return;
	while ((q = strstr(s, p->key)) != NULL) {
		memmove(q + 3, q + kl, strlen(q + kl) + 1);
		memcpy(q, "***", 3);
	}
}

/* One GET; *code the HTTP status (0 when there was no answer). */
static CURLcode get(pm_provider *p, CURL *e, const char *url, pm_vision_recv *a,
		    char *errbuf, long *code)
{
	struct curl_slist *h = NULL;
	char hdr[KEY_MAX + 64];
	CURLcode rc;

	errbuf[0] = '\0';
	if (!pm_vision_recv_reset(a, PM_PROVIDER_MAX_BODY))
		return CURLE_OUT_OF_MEMORY;
	*code = 0;
	curl_easy_reset(e);
	h = curl_slist_append(h, "Accept: application/json");
	if (p->api->key_header[0] && p->key[0]) {
		snprintf(hdr, sizeof hdr, "%s: %s", p->api->key_header, p->key);
		h = curl_slist_append(h, hdr);
		explicit_bzero(hdr, sizeof hdr);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)p->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(p->timeout_ms < 10000 ? p->timeout_ms : 10000));
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, pm_vision_recv_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, pm_vision_recv_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "pixmill-search/1");
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, code);
	for (struct curl_slist *q = h; q; q = q->next)
		explicit_bzero(q->data, strlen(q->data));
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	return rc;
}

/* Counts one request's outcome in the metrics. */
static void count(const pm_provider *p, const char *outcome, double secs)
{
	pm_metric_inc(PM_M_SEARCH_REQUESTS, p->name, outcome, 1);
	pm_metric_obs(PM_M_SEARCH_LATENCY, p->name, NULL, secs);
}

pm_status pm_provider_search(pm_provider *p, const char *query,
			     pm_provider_hit *out, int max, int *n,
			     pm_provider_call *call, pm_err *err)
{
	char url[4096 + 1024], errbuf[CURL_ERROR_SIZE];
	char *q_esc = NULL, *k_esc = NULL, *c_esc = NULL;
	pm_vision_recv a = {0};
	CURL *e = NULL;
	pm_status s = PM_OK, last = PM_ERR_IO;
	pm_err last_err = {{0}};
	int attempts = 0, num;
	bool over_quota = false;

	memset(call, 0, sizeof *call);
	*n = 0;
	if (max > p->max)
		max = p->max;
	num = max < p->api->max_num ? max : p->api->max_num;
	e = curl_easy_init();
	if (!e) {
		s = pm_fail(err, PM_ERR_NOMEM, "curl_easy_init failed");
		goto out;
	}
	q_esc = curl_easy_escape(e, query, 0);
	k_esc = curl_easy_escape(e, p->key, 0);
	c_esc = curl_easy_escape(e, p->cx, 0);
	if (!q_esc || !k_esc || !c_esc) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (p->api->url(p, q_esc, k_esc, c_esc, num, url, sizeof url) >=
	    (int)sizeof url) {
		s = pm_fail(err, PM_ERR_UPSTREAM,
			    "%s: the search URL would be too long", p->name);
		goto out;
	}
	for (;;) {
		double at, t0, ra, dt;
		int key;
		long code;
		CURLcode rc;

		if (attempts >= p->attempts) {
			s = last;
			*err = last_err;
			break;
		}
		if (!quota_take(p)) {
			over_quota = true;
			s = pm_fail(err, PM_ERR_RATE,
				    "%s: over its daily quota (%lld requests "
				    "per UTC day)",
				    p->name, (long long)p->quota);
			break;
		}
		s = pm_vision_ep_pick(p->ep, pm_now(), &key, &at, err);
		if (s) {
			/* the slot was not used: give it back */
			pthread_mutex_lock(&p->mu);
			p->used--;
			pthread_mutex_unlock(&p->mu);
			pm_fail(err, s,
				"%s: rate limited (Retry-After beyond "
				"30 s)",
				p->name);
			break;
		}
		pm_vision_sleep_until(at);
		/* the fleet's bucket of this provider's key (or endpoint) */
		s = pm_vision_ep_shared_wait(
		    p->ep, key, p->key[0] ? p->key : p->endpoint, err);
		if (s) {
			pthread_mutex_lock(&p->mu);
			p->used--;
			pthread_mutex_unlock(&p->mu);
			break;
		}
		t0 = pm_now();
		rc = get(p, e, url, &a, errbuf, &code);
		dt = pm_now() - t0;
		attempts++;
		call->requests++;
		call->latency_ms += dt * 1000.0;
		ra = pm_vision_retry_after(
		    a.retry_after[0] ? a.retry_after : NULL, time(NULL));
		if (rc != CURLE_OK && !a.over) {
			bool to = rc == CURLE_OPERATION_TIMEDOUT;
			count(p, to ? "timeout" : "network_error", dt);
			pm_vision_ep_report(p->ep, key, PM_VO_OVERLOAD, -1,
					    pm_now());
			last = PM_ERR_IO;
			if (to)
				pm_fail(&last_err, PM_ERR_IO,
					"%s: no answer within %d ms (%d "
					"attempts)",
					p->name, p->timeout_ms, attempts);
			else {
				scrub(p, errbuf);
				pm_fail(&last_err, PM_ERR_IO,
					"%s: request failed: %s (%d attempts)",
					p->name,
					errbuf[0] ? errbuf
						  : curl_easy_strerror(rc),
					attempts);
			}
			if (attempts < p->attempts)
				pm_vision_sleep_until(
				    pm_now() +
				    pm_vision_backoff(&p->seed, attempts));
			continue;
		}
		if (a.over) {
			count(p, "bad_answer", dt);
			s = pm_fail(err, PM_ERR_UPSTREAM,
				    "%s: the answer is over %u bytes", p->name,
				    PM_PROVIDER_MAX_BODY);
			break;
		}
		if (code == 200) {
			pm_vision_ep_report(p->ep, key, PM_VO_OK, -1, pm_now());
			s = p->api->parse(a.body ? a.body : "", a.len, out, max,
					  n, err);
			if (s) {
				char why[sizeof err->msg];
				count(p, "bad_answer", dt);
				memcpy(why, err->msg, sizeof why);
				pm_fail(err, s, "%s: %.400s", p->name, why);
				break;
			}
			count(p, "ok", dt);
			call->ok = true;
			call->results = *n;
			pm_metric_inc(PM_M_SEARCH_SEARCHES, p->name,
				      *n ? "found" : "empty", 1);
			pm_metric_inc(PM_M_SEARCH_RESULTS, p->name, NULL, *n);
			break;
		}
		if (code == 429) {
			count(p, "rate_limited", dt);
			pm_vision_ep_report(p->ep, key, PM_VO_RATE, ra,
					    pm_now());
			last = PM_ERR_RATE;
			pm_fail(&last_err, PM_ERR_RATE,
				"%s: answered 429 (rate limited) %d times",
				p->name, attempts);
			continue; /* the next pick waits out Retry-After */
		}
		if (code >= 500 || code == 408) {
			count(p, "server_error", dt);
			pm_vision_ep_report(p->ep, key, PM_VO_OVERLOAD, ra,
					    pm_now());
			last = PM_ERR_IO;
			pm_fail(&last_err, PM_ERR_IO,
				"%s: answered %ld (%d attempts)", p->name, code,
				attempts);
			if (attempts < p->attempts)
				pm_vision_sleep_until(
				    pm_now() + (ra > 0 && ra < 30
						    ? ra
						    : pm_vision_backoff(
							  &p->seed, attempts)));
			continue;
		}
		pm_vision_ep_report(p->ep, key, PM_VO_NEUTRAL, -1, pm_now());
		if (code == 401 || code == 403) {
			count(p, "auth_error", dt);
			s = pm_fail(err, PM_ERR_AUTH,
				    "%s: the API refused the key (%ld)",
				    p->name, code);
			break;
		}
		count(p, "bad_request", dt);
		{
			char msg[200];
			pm_vision_error_message(a.body ? a.body : "", a.len,
						msg, sizeof msg);
			scrub(p, msg);
			s = pm_fail(err, PM_ERR_UPSTREAM,
				    "%s: answered %ld%s%s%s", p->name, code,
				    code == 404 ? " (check the endpoint)" : "",
				    msg[0] ? ": " : "", msg);
		}
		break;
	}
	if (s)
		pm_metric_inc(
		    PM_M_SEARCH_SEARCHES, p->name,
		    over_quota && !call->requests ? "over_quota" : "failed", 1);
out:
	if (e) {
		curl_free(q_esc);
		if (k_esc) {
			explicit_bzero(k_esc, strlen(k_esc));
			curl_free(k_esc);
		}
		curl_free(c_esc);
		curl_easy_cleanup(e);
	}
	explicit_bzero(url, sizeof url);
	free(a.body);
	return s;
}
