/* limiter.c — vision endpoints: their API keys, settings and per-key
 * adaptive rate limits (see vision.h).
 *
 * An endpoint is one (base_url, model). The table of endpoints is
 * process-wide, append-only and bounded (64); table_mu guards insertion.
 * Each endpoint has its own mutex (mu) guarding its settings, keys and
 * rate state; every worker thread's client goes through it for each
 * request, so the limits are shared by all workers. Nothing sleeps or does
 * I/O under a lock: pm_vision_ep_pick only reserves a slot and returns its
 * time; the caller sleeps.
 *
 * Rate per key (AIMD): a key may send at most `rate` requests per second:
 * each reservation moves the key's next free slot on by 1/rate. A success
 * adds rate_increase (up to rate_max); a 429, a 5xx, a timeout or a network
 * error multiplies it by rate_decrease (down to rate_min); a 429 with
 * Retry-After (or without: 1/rate) also puts the key in a cool-down until
 * then; 401/403 disable the key for the rest of the process.
 *
 * Secrets: a key's text is only copied out by pm_vision_ep_key (for the
 * Authorization header). Everywhere else, and in the metric labels, a key
 * is "key1", "key2", ... in the order added.
 *
 * Threads: any; endpoints are never freed (they hold no thread's state).
 */
#define _GNU_SOURCE
#include "vision/vision.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/util.h"
#include "fleet/fleet.h"

#define EP_MAX 64

typedef struct vkey {
	char *secret;	       /* malloc'd; never logged */
	char label[16];	       /* "key1", ... */
	double rate;	       /* requests/s allowed now */
	double next_free;      /* earliest next send (pm_now seconds) */
	double cooldown_until; /* after a 429 */
	bool disabled;	       /* refused with 401/403 */
} vkey;

struct pm_vision_ep {
	char *base_url; /* malloc'd */
	char *model;	/* malloc'd */
	pthread_mutex_t mu;
	pm_vision_cfg cfg;
	vkey keys[PM_VISION_MAX_KEYS];
	int n_keys;
	int rr;		  /* round-robin cursor */
	bool env_loaded;  /* PIXMILL_VISION_KEYS read */
	double anon_next; /* the no-key slot, when there are no keys */
	double anon_cooldown;
	double anon_rate;
};

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static pm_vision_ep *table[EP_MAX];
static int n_table;

void pm_vision_cfg_default(pm_vision_cfg *c)
{
	c->timeout_ms = 60000;
	c->max_attempts = 4;
	c->price_in = 0;
	c->price_out = 0;
	c->rate_start = 2;
	c->rate_min = 0.05;
	c->rate_max = 20;
	c->rate_increase = 0.5;
	c->rate_decrease = 0.5;
	c->max_wait_s = 120;
	c->no_metrics = false;
}

pm_vision_ep *pm_vision_ep_get(const char *base_url, const char *model,
			       pm_err *err)
{
	pm_vision_ep *ep = NULL;

	pthread_mutex_lock(&table_mu);
	for (int i = 0; i < n_table; i++)
		if (strcmp(table[i]->base_url, base_url) == 0 &&
		    strcmp(table[i]->model, model) == 0) {
			ep = table[i];
			goto out;
		}
	if (n_table >= EP_MAX) {
		pm_fail(err, PM_ERR_PIPELINE,
			"analyze: more than %d vision endpoints", EP_MAX);
		goto out;
	}
	ep = calloc(1, sizeof *ep);
	if (!ep || !(ep->base_url = strdup(base_url)) ||
	    !(ep->model = strdup(model))) {
		if (ep) {
			free(ep->base_url);
			free(ep);
		}
		ep = NULL;
		pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	pthread_mutex_init(&ep->mu, NULL);
	pm_vision_cfg_default(&ep->cfg);
	ep->anon_rate = ep->cfg.rate_start;
	table[n_table++] = ep;
out:
	pthread_mutex_unlock(&table_mu);
	return ep;
}

void pm_vision_ep_get_cfg(pm_vision_ep *ep, pm_vision_cfg *out)
{
	pthread_mutex_lock(&ep->mu);
	*out = ep->cfg;
	pthread_mutex_unlock(&ep->mu);
}

static double clampd(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void pm_vision_ep_set_cfg(pm_vision_ep *ep, const pm_vision_cfg *c)
{
	pthread_mutex_lock(&ep->mu);
	ep->cfg = *c;
	/* keys keep their learnt rate, within the new bounds */
	for (int i = 0; i < ep->n_keys; i++)
		ep->keys[i].rate =
		    clampd(ep->keys[i].rate, c->rate_min, c->rate_max);
	ep->anon_rate = clampd(ep->anon_rate, c->rate_min, c->rate_max);
	pthread_mutex_unlock(&ep->mu);
}

void pm_vision_ep_reset_rate(pm_vision_ep *ep)
{
	pthread_mutex_lock(&ep->mu);
	for (int i = 0; i < ep->n_keys; i++)
		ep->keys[i].rate = ep->cfg.rate_start;
	ep->anon_rate = ep->cfg.rate_start;
	pthread_mutex_unlock(&ep->mu);
}

pm_status pm_vision_ep_add_key(pm_vision_ep *ep, const char *key, pm_err *err)
{
	size_t n = strlen(key);
	pm_status s = PM_OK;

	if (n < 4 || n > 512)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: an API key is under 4 or over 512 "
			       "bytes");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)key[i] <= 0x20 ||
		    (unsigned char)key[i] == 0x7f)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "analyze: an API key has a space or a "
				       "control character");
	pthread_mutex_lock(&ep->mu);
	for (int i = 0; i < ep->n_keys; i++)
		if (strcmp(ep->keys[i].secret, key) == 0)
			goto out;
	if (ep->n_keys >= PM_VISION_MAX_KEYS) {
		s = pm_fail(err, PM_ERR_PIPELINE,
			    "analyze: more than %d API keys",
			    PM_VISION_MAX_KEYS);
		goto out;
	}
	{
		vkey *k = &ep->keys[ep->n_keys];
		memset(k, 0, sizeof *k);
		k->secret = strdup(key);
		if (!k->secret) {
			s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
			goto out;
		}
		snprintf(k->label, sizeof k->label, "key%d", ep->n_keys + 1);
		k->rate = ep->cfg.rate_start;
		ep->n_keys++;
		if (!ep->cfg.no_metrics)
			pm_metric_put(PM_M_VISION_KEY_RATE, k->label, NULL,
				      k->rate);
	}
out:
	pthread_mutex_unlock(&ep->mu);
	return s;
}

pm_status pm_vision_ep_add_env_keys(pm_vision_ep *ep, pm_err *err)
{
	const char *v;
	char *copy, *save = NULL;
	pm_status s = PM_OK;

	pthread_mutex_lock(&ep->mu);
	if (ep->env_loaded) {
		pthread_mutex_unlock(&ep->mu);
		return PM_OK;
	}
	ep->env_loaded = true;
	pthread_mutex_unlock(&ep->mu);
	v = getenv("PIXMILL_VISION_KEYS");
	if (!v || !*v)
		return PM_OK;
	copy = strdup(v);
	if (!copy)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	for (char *t = strtok_r(copy, ",", &save); t && !s;
	     t = strtok_r(NULL, ",", &save)) {
		char *e;
		while (*t == ' ' || *t == '\t' || *t == '\n')
			t++;
		e = t + strlen(t);
		while (e > t && (e[-1] == ' ' || e[-1] == '\t' ||
				 e[-1] == '\n' || e[-1] == '\r'))
			*--e = '\0';
		if (*t)
			s = pm_vision_ep_add_key(ep, t, err);
	}
	/* the copy held secrets: wipe it before freeing */
	explicit_bzero(copy, strlen(v));
	free(copy);
	return s;
}

int pm_vision_ep_key_count(pm_vision_ep *ep)
{
	int n;

	pthread_mutex_lock(&ep->mu);
	n = ep->n_keys;
	pthread_mutex_unlock(&ep->mu);
	return n;
}

static double max3(double a, double b, double c)
{
	double m = a > b ? a : b;
	return m > c ? m : c;
}

pm_status pm_vision_ep_pick(pm_vision_ep *ep, double now, int *key, double *at,
			    pm_err *err)
{
	pm_status s = PM_OK;
	int best = -1;
	double best_t = 0;

	pthread_mutex_lock(&ep->mu);
	if (ep->n_keys == 0) {
		double t = max3(now, ep->anon_next, ep->anon_cooldown);
		if (t - now > ep->cfg.max_wait_s) {
			s = pm_fail(err, PM_ERR_RATE,
				    "vision API rate limited: no slot for "
				    "%.0f s (over max_wait_s %.0f)",
				    t - now, ep->cfg.max_wait_s);
			goto out;
		}
		ep->anon_next = t + 1.0 / ep->anon_rate;
		*key = -1;
		*at = t;
		goto out;
	}
	for (int j = 0; j < ep->n_keys; j++) {
		int i = (ep->rr + j) % ep->n_keys;
		vkey *k = &ep->keys[i];
		double t;
		if (k->disabled)
			continue;
		t = max3(now, k->next_free, k->cooldown_until);
		if (best < 0 || t < best_t) {
			best = i;
			best_t = t;
		}
	}
	if (best < 0) {
		s = pm_fail(err, PM_ERR_AUTH,
			    "every vision API key (%d) was refused with "
			    "401/403: check PIXMILL_VISION_KEYS or the "
			    "stage's api_keys",
			    ep->n_keys);
		goto out;
	}
	if (best_t - now > ep->cfg.max_wait_s) {
		s = pm_fail(err, PM_ERR_RATE,
			    "vision API rate limited: every key is cooling "
			    "down for %.0f s more (over max_wait_s %.0f)",
			    best_t - now, ep->cfg.max_wait_s);
		goto out;
	}
	ep->keys[best].next_free = best_t + 1.0 / ep->keys[best].rate;
	ep->rr = (best + 1) % ep->n_keys;
	*key = best;
	*at = best_t;
out:
	pthread_mutex_unlock(&ep->mu);
	return s;
}

void pm_vision_ep_report(pm_vision_ep *ep, int key, pm_vision_outcome o,
			 double retry_after, double now)
{
	double *rate, *cool;
	const char *label = "none";

	pthread_mutex_lock(&ep->mu);
	if (key >= 0 && key < ep->n_keys) {
		rate = &ep->keys[key].rate;
		cool = &ep->keys[key].cooldown_until;
		label = ep->keys[key].label;
	} else {
		rate = &ep->anon_rate;
		cool = &ep->anon_cooldown;
	}
	switch (o) {
	case PM_VO_OK:
		*rate = clampd(*rate + ep->cfg.rate_increase, ep->cfg.rate_min,
			       ep->cfg.rate_max);
		break;
	case PM_VO_RATE: {
		double wait;
		*rate = clampd(*rate * ep->cfg.rate_decrease, ep->cfg.rate_min,
			       ep->cfg.rate_max);
		wait = retry_after >= 0 ? retry_after : 1.0 / *rate;
		if (now + wait > *cool)
			*cool = now + wait;
		break;
	}
	case PM_VO_OVERLOAD:
		*rate = clampd(*rate * ep->cfg.rate_decrease, ep->cfg.rate_min,
			       ep->cfg.rate_max);
		break;
	case PM_VO_AUTH:
		if (key >= 0 && key < ep->n_keys)
			ep->keys[key].disabled = true;
		break;
	case PM_VO_NEUTRAL:
		break;
	}
	if (!ep->cfg.no_metrics)
		pm_metric_put(
		    PM_M_VISION_KEY_RATE, label, NULL,
		    (key >= 0 && key < ep->n_keys && ep->keys[key].disabled)
			? 0
			: *rate);
	pthread_mutex_unlock(&ep->mu);
}

void pm_vision_ep_key(pm_vision_ep *ep, int key, char *buf, size_t n,
		      char *label, size_t label_n)
{
	pthread_mutex_lock(&ep->mu);
	if (key >= 0 && key < ep->n_keys) {
		snprintf(buf, n, "%s", ep->keys[key].secret);
		snprintf(label, label_n, "%s", ep->keys[key].label);
	} else {
		if (n)
			buf[0] = '\0';
		if (label_n)
			label[0] = '\0';
	}
	pthread_mutex_unlock(&ep->mu);
}

double pm_vision_ep_rate(pm_vision_ep *ep, int key, bool *disabled)
{
	double r;

	pthread_mutex_lock(&ep->mu);
	if (key >= 0 && key < ep->n_keys) {
		r = ep->keys[key].rate;
		if (disabled)
			*disabled = ep->keys[key].disabled;
	} else {
		r = ep->anon_rate;
		if (disabled)
			*disabled = false;
	}
	pthread_mutex_unlock(&ep->mu);
	return r;
}

void pm_vision_ep_scrub(pm_vision_ep *ep, char *s)
{
	pthread_mutex_lock(&ep->mu);
	for (int i = 0; i < ep->n_keys; i++) {
		const char *k = ep->keys[i].secret;
		size_t kl = strlen(k);
		char *p;
		while ((p = strstr(s, k)) != NULL) {
			memmove(p + 3, p + kl, strlen(p + kl) + 1);
			memcpy(p, "***", 3);
		}
	}
	pthread_mutex_unlock(&ep->mu);
}

pm_status pm_vision_ep_shared_wait(pm_vision_ep *ep, int key, const char *ident,
				   pm_err *err)
{
	char id[1200];
	double rate, max_wait, t0 = pm_now();
	pm_status s = PM_OK;

	if (strcmp(pm_fleet_state(), "off") == 0)
		return PM_OK;
	pthread_mutex_lock(&ep->mu);
	if (ident && *ident)
		snprintf(id, sizeof id, "%s", ident);
	else if (key >= 0 && key < ep->n_keys)
		snprintf(id, sizeof id, "%s", ep->keys[key].secret);
	else
		snprintf(id, sizeof id, "%s %s", ep->base_url, ep->model);
	rate =
	    key >= 0 && key < ep->n_keys ? ep->keys[key].rate : ep->anon_rate;
	max_wait = ep->cfg.max_wait_s;
	pthread_mutex_unlock(&ep->mu);
	for (;;) {
		long w = 0;
		if (pm_fleet_take_key(id, rate, 1, &w) != PM_OK || w <= 0)
			break; /* a token, or Redis off/down: go */
		if (pm_now() - t0 + (double)w / 1000.0 > max_wait) {
			s = pm_fail(err, PM_ERR_RATE,
				    "the fleet's shared rate limit of this API "
				    "key: no slot for over %.0f s",
				    max_wait);
			break;
		}
		struct timespec ts = {w / 1000, (w % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
	explicit_bzero(id, sizeof id);
	return s;
}
