/* redis.c — the optional Redis connection (see redis.h): URL parsing and
 * masking, a pool of hiredis connections with timeouts, reconnection with
 * backoff, the up/down state, the token-bucket script and the commands.
 *
 * Threads: see redis.h. State shared by the pool (up/down, counters, the
 * reconnect schedule, the script's SHA) lives under r->smu; a connection
 * is used only under its own mutex. Lock order: a connection's mutex, then
 * smu; smu is never held across network I/O.
 */
#define _GNU_SOURCE
#include "fleet/redis.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "core/util.h"

/* ---- URLs ---- */

void pm_redis_url_mask(const char *url, char *out, size_t size)
{
	const char *auth, *at = NULL, *colon = NULL, *p = url;
	size_t n = 0;

	if (size == 0)
		return;
	auth = strstr(url, "://");
	if (auth) {
		auth += 3;
		size_t end = strcspn(auth, "/?#");
		for (size_t i = 0; i < end; i++)
			if (auth[i] == '@')
				at = auth + i;
		if (at) {
			colon = memchr(auth, ':', (size_t)(at - auth));
			if (!colon) /* no ':': all of it may be a secret */
				colon = auth - 1;
		}
	}
	while (*p && n + 1 < size) {
		if (colon && p == colon + 1) {
			for (const char *m = "***"; *m && n + 1 < size; m++)
				out[n++] = *m;
			p = at;
			colon = NULL;
			continue;
		}
		out[n++] = *p++;
	}
	out[n] = 0;
}

/* Percent-decodes [s, s+len) into out (size bytes); -1 if malformed, too
 * long, or it decodes to a NUL. */
static int pct_decode(const char *s, size_t len, char *out, size_t size)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)s[i];
		if (c == '%') {
			int a, b;
			if (i + 2 >= len)
				return -1;
			a = pm_hexval(s[i + 1]);
			b = pm_hexval(s[i + 2]);
			if (a < 0 || b < 0)
				return -1;
			c = a * 16 + b;
			i += 2;
		}
		if (c == 0 || n + 1 >= size)
			return -1;
		out[n++] = (char)c;
	}
	out[n] = 0;
	return 0;
}

/* A decimal number in [lo, hi] spanning exactly [s, s+len); -1 if not. */
static int parse_int(const char *s, size_t len, long lo, long hi, long *out)
{
	long v = 0;

	if (len == 0 || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

pm_status pm_redis_url_parse(const char *url, pm_redis_url *o, pm_err *err)
{
	char shown[320];
	const char *p, *end, *at = NULL, *hp, *he;
	long v;

	memset(o, 0, sizeof *o);
	o->port = 6379;
	pm_redis_url_mask(url, shown, sizeof shown);
#define BAD(why)                                                               \
	pm_fail(err, PM_ERR_USAGE,                                             \
		"redis URL %s: %s (want redis://[[USER]:PASSWORD@]HOST"        \
		"[:PORT][/DB] or unix:///PATH)",                               \
		shown, why)
	if (strncasecmp(url, "unix://", 7) == 0) {
		p = url + 7;
		if (*p != '/')
			return BAD("the socket path must be absolute");
		if (strlen(p) >= sizeof o->path)
			return BAD("the socket path is too long");
		if (strpbrk(p, "?#"))
			return BAD("no query or fragment is understood");
		o->is_unix = true;
		snprintf(o->path, sizeof o->path, "%s", p);
		return PM_OK;
	}
	if (strncasecmp(url, "redis://", 8) != 0)
		return BAD("unknown scheme");
	p = url + 8;
	end = p + strcspn(p, "/?#");
	if (*end == '?' || *end == '#')
		return BAD("no query or fragment is understood");
	for (const char *q = p; q < end; q++)
		if (*q == '@')
			at = q;
	hp = p;
	if (at) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (!colon)
			return BAD("user info without ':' (use "
				   "redis://:PASSWORD@HOST or "
				   "redis://USER:PASSWORD@HOST)");
		if (pct_decode(p, (size_t)(colon - p), o->user,
			       sizeof o->user) ||
		    pct_decode(colon + 1, (size_t)(at - colon - 1), o->password,
			       sizeof o->password))
			return BAD("malformed or too long user or password");
		o->has_password = true;
		hp = at + 1;
	}
	/* host[:port], host may be [v6] */
	if (*hp == '[') {
		const char *rb = memchr(hp, ']', (size_t)(end - hp));
		if (!rb || rb == hp + 1)
			return BAD("malformed [IPv6] host");
		if ((size_t)(rb - hp - 1) >= sizeof o->host)
			return BAD("host too long");
		memcpy(o->host, hp + 1, (size_t)(rb - hp - 1));
		o->host[rb - hp - 1] = 0;
		he = rb + 1;
		if (he < end && *he != ':')
			return BAD("junk after the [IPv6] host");
	} else {
		he = hp;
		while (he < end && *he != ':')
			he++;
		if (he == hp)
			return BAD("no host");
		if ((size_t)(he - hp) >= sizeof o->host)
			return BAD("host too long");
		memcpy(o->host, hp, (size_t)(he - hp));
		o->host[he - hp] = 0;
	}
	for (const char *q = o->host; *q; q++)
		if ((unsigned char)*q <= ' ' || *q == '@' || *q == '%' ||
		    *q == '\\' || (unsigned char)*q >= 0x7f)
			return BAD("bad character in the host");
	if (he < end) { /* ":port" */
		if (parse_int(he + 1, (size_t)(end - he - 1), 1, 65535, &v))
			return BAD("the port wants 1 to 65535");
		o->port = (int)v;
	}
	if (*end == '/' && end[1]) {
		if (parse_int(end + 1, strlen(end + 1), 0, 1000000, &v))
			return BAD(
			    "the database wants a number (0 to 1000000)");
		o->db = (int)v;
	}
	return PM_OK;
#undef BAD
}

/* ---- the handle ---- */

/* The token bucket. KEYS[1]: the bucket (a hash: tok, ts in ms of the
 * server's clock). ARGV: rate (tokens/s), burst. Refills from TIME (never
 * backwards), takes a token and returns 0, or returns the ms to wait. A
 * bucket that is not numbers, or is out of any range this script writes
 * (negative, infinite, stamped in the future), starts again full, so a
 * broken or hostile key can never stall the fleet. */
static const char BUCKET_LUA[] =
    "local rate = tonumber(ARGV[1])\n"
    "local burst = tonumber(ARGV[2])\n"
    "if not rate or not burst or rate <= 0 or burst < 1 then\n"
    "  return redis.error_reply('bad bucket arguments')\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local b = redis.call('HMGET', KEYS[1], 'tok', 'ts')\n"
    "local tok = tonumber(b[1])\n"
    "local ts = tonumber(b[2])\n"
    "if not tok or not ts or tok ~= tok or ts ~= ts or tok < 0 or\n"
    "   tok > burst * 2 + 1e6 or ts > now + 60000 or ts < now - 1e12 then\n"
    "  tok = burst\n"
    "  ts = now\n"
    "end\n"
    "if now > ts then\n"
    "  tok = math.min(burst, tok + (now - ts) * rate / 1000)\n"
    "  ts = now\n"
    "end\n"
    "if tok > burst then tok = burst end\n"
    "local wait = 0\n"
    "if tok >= 1 then\n"
    "  tok = tok - 1\n"
    "else\n"
    "  wait = math.ceil((1 - tok) * 1000 / rate)\n"
    "  if wait < 1 then wait = 1 end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'tok', string.format('%.6f', tok),\n"
    "           'ts', string.format('%.3f', ts))\n"
    "redis.call('PEXPIRE', KEYS[1],\n"
    "           math.ceil((burst - tok) * 1000 / rate) + 1000)\n"
    "return wait\n";

typedef struct conn {
	pthread_mutex_t mu;
	redisContext *c;
	uint64_t gen; /* r->gen when connected; older: reconnect */
} conn;

struct pm_redis {
	pm_redis_url u;
	pm_redis_cfg cfg;
	char shown[300];
	conn pool[PM_REDIS_POOL];

	pthread_mutex_t smu; /* everything below */
	bool up;
	bool connecting; /* a caller is trying to reconnect */
	double next_try; /* pm_now() of the next reconnect attempt */
	double down_since;
	double degraded_s; /* closed periods of being down */
	uint64_t gen;	   /* bumped when going down: drop connections */
	char sha[48];	   /* the bucket script's SHA1 ("" until loaded) */
	char last_error[256];
	uint64_t ops, errors, fallbacks, downs;
};

void pm_redis_cfg_default(pm_redis_cfg *c)
{
	c->connect_timeout_ms = 200;
	c->cmd_timeout_ms = 200;
	c->retry_ms = 2000;
}

static struct timeval tv_ms(long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	return tv;
}

/* smu held: going down (or staying down) because of why. */
static void mark_down(pm_redis *r, const char *why, double now)
{
	r->errors++;
	r->gen++;
	r->next_try = now + (double)r->cfg.retry_ms / 1000.0;
	if (r->up || r->downs == 0) {
		r->downs++;
		r->down_since = now;
		pm_log(PM_LOG_WARN,
		       "redis %s is down (%s): using local rate limits and "
		       "the store only; retrying every %.1f s",
		       r->shown, why, (double)r->cfg.retry_ms / 1000.0);
	}
	r->up = false;
	snprintf(r->last_error, sizeof r->last_error, "%s", why);
}

/* A reply that is an error: its text, else NULL. */
static const char *reply_error(const redisReply *rep)
{
	return rep && rep->type == REDIS_REPLY_ERROR && rep->str ? rep->str
								 : NULL;
}

/* Connects cn (its mutex held): connect, timeouts, AUTH, SELECT, SCRIPT
 * LOAD. On failure writes why and returns -1 (cn->c NULL). */
static int do_connect(pm_redis *r, conn *cn, char *why, size_t wsize)
{
	struct timeval ct = tv_ms(r->cfg.connect_timeout_ms);
	redisContext *c;
	redisReply *rep;

	if (cn->c) {
		redisFree(cn->c);
		cn->c = NULL;
	}
	c = r->u.is_unix ? redisConnectUnixWithTimeout(r->u.path, ct)
			 : redisConnectWithTimeout(r->u.host, r->u.port, ct);
	if (!c || c->err) {
		snprintf(why, wsize, "connect: %s",
			 c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return -1;
	}
	if (redisSetTimeout(c, tv_ms(r->cfg.cmd_timeout_ms)) != REDIS_OK) {
		snprintf(why, wsize, "could not set timeouts");
		redisFree(c);
		return -1;
	}
	if (!r->u.is_unix)
		redisEnableKeepAlive(c);
	if (r->u.has_password) {
		const char *argv[3] = {"AUTH", r->u.user, r->u.password};
		int argc = 3;
		if (!r->u.user[0]) {
			argv[1] = r->u.password;
			argc = 2;
		}
		rep = redisCommandArgv(c, argc, argv, NULL);
		if (!rep || reply_error(rep)) {
			/* the server's words (WRONGPASS ...) never echo the
			 * password */
			snprintf(why, wsize, "AUTH refused: %.160s",
				 rep ? reply_error(rep) : c->errstr);
			freeReplyObject(rep);
			redisFree(c);
			return -1;
		}
		freeReplyObject(rep);
	}
	if (r->u.db) {
		rep = redisCommand(c, "SELECT %d", r->u.db);
		if (!rep || reply_error(rep)) {
			snprintf(why, wsize, "SELECT %d refused: %.160s",
				 r->u.db, rep ? reply_error(rep) : c->errstr);
			freeReplyObject(rep);
			redisFree(c);
			return -1;
		}
		freeReplyObject(rep);
	}
	rep = redisCommand(c, "SCRIPT LOAD %s", BUCKET_LUA);
	if (!rep || rep->type != REDIS_REPLY_STRING || !rep->str ||
	    rep->len >= sizeof r->sha) {
		snprintf(why, wsize, "SCRIPT LOAD failed: %.160s",
			 rep && reply_error(rep) ? rep->str
			 : rep			 ? "unexpected reply"
						 : c->errstr);
		freeReplyObject(rep);
		redisFree(c);
		return -1;
	}
	pthread_mutex_lock(&r->smu);
	snprintf(r->sha, sizeof r->sha, "%s", rep->str);
	cn->gen = r->gen;
	pthread_mutex_unlock(&r->smu);
	freeReplyObject(rep);
	cn->c = c;
	return 0;
}

/* Takes a connection (locked) that is ready for a command, or returns
 * NULL with err set (down: fail fast). */
static conn *acquire(pm_redis *r, pm_err *err)
{
	conn *cn = NULL;
	double now = pm_now();
	char why[256];

	for (int i = 0; i < PM_REDIS_POOL && !cn; i++)
		if (pthread_mutex_trylock(&r->pool[i].mu) == 0)
			cn = &r->pool[i];
	if (!cn) {
		cn = &r->pool[(uintptr_t)pthread_self() % PM_REDIS_POOL];
		pthread_mutex_lock(&cn->mu);
	}
	pthread_mutex_lock(&r->smu);
	if (r->up && cn->c && cn->gen == r->gen) {
		pthread_mutex_unlock(&r->smu);
		return cn;
	}
	if (!r->up && (r->connecting || now < r->next_try)) {
		r->fallbacks++;
		pthread_mutex_unlock(&r->smu);
		pthread_mutex_unlock(&cn->mu);
		pm_fail(err, PM_ERR_IO, "redis %s is down", r->shown);
		return NULL;
	}
	bool was_up = r->up;
	if (!was_up)
		r->connecting = true;
	pthread_mutex_unlock(&r->smu);

	int rc = do_connect(r, cn, why, sizeof why);
	now = pm_now();
	pthread_mutex_lock(&r->smu);
	if (!was_up)
		r->connecting = false;
	if (rc) {
		mark_down(r, why, now);
		pthread_mutex_unlock(&r->smu);
		pthread_mutex_unlock(&cn->mu);
		pm_fail(err, PM_ERR_IO, "redis %s: %s", r->shown, why);
		return NULL;
	}
	if (!r->up) {
		if (r->downs > 0) {
			r->degraded_s += now - r->down_since;
			pm_log(PM_LOG_INFO,
			       "redis %s is up again (down %.1f s)", r->shown,
			       now - r->down_since);
		}
		r->up = true;
	}
	pthread_mutex_unlock(&r->smu);
	return cn;
}

static void release(conn *cn)
{
	pthread_mutex_unlock(&cn->mu);
}

/* A command failed on cn (locked): the connection is dropped; I/O errors
 * mark the whole handle down. */
static pm_status cmd_failed(pm_redis *r, conn *cn, bool io, const char *what,
			    pm_err *err)
{
	char why[256];

	snprintf(why, sizeof why, "%s", what);
	if (cn->c) {
		redisFree(cn->c);
		cn->c = NULL;
	}
	pthread_mutex_lock(&r->smu);
	if (io)
		mark_down(r, why, pm_now());
	else
		r->errors++;
	pthread_mutex_unlock(&r->smu);
	release(cn);
	return pm_fail(err, PM_ERR_IO, "redis %s: %s", r->shown, why);
}

static void count_ok(pm_redis *r)
{
	pthread_mutex_lock(&r->smu);
	r->ops++;
	pthread_mutex_unlock(&r->smu);
}

/* Runs argv on a pooled connection: the reply (the caller frees it), or
 * NULL with err set. A reply that is an error is returned as such. */
static redisReply *command(pm_redis *r, int argc, const char **argv,
			   const size_t *lens, pm_err *err)
{
	conn *cn = acquire(r, err);
	redisReply *rep;

	if (!cn)
		return NULL;
	rep = redisCommandArgv(cn->c, argc, argv, lens);
	if (!rep) {
		char what[200];
		snprintf(what, sizeof what, "%s: %s", argv[0],
			 cn->c->err == REDIS_ERR_IO &&
				 (errno == EAGAIN || errno == EWOULDBLOCK)
			     ? "timed out"
			     : cn->c->errstr);
		cmd_failed(r, cn, true, what, err);
		return NULL;
	}
	release(cn);
	count_ok(r);
	return rep;
}

pm_status pm_redis_open(const char *url, const pm_redis_cfg *cfg,
			pm_redis **out, pm_err *err)
{
	pm_redis *r;
	pm_status s;
	pm_err e;
	struct sigaction old;

	*out = NULL;
	r = calloc(1, sizeof *r);
	if (!r)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	s = pm_redis_url_parse(url, &r->u, err);
	if (s) {
		free(r);
		return s;
	}
	/* a password kept off the command line (ps shows argv) */
	const char *env_pw = getenv("PIXMILL_REDIS_PASSWORD");
	if (!r->u.has_password && env_pw && *env_pw &&
	    strlen(env_pw) < sizeof r->u.password) {
		snprintf(r->u.password, sizeof r->u.password, "%s", env_pw);
		r->u.has_password = true;
	}
	if (cfg)
		r->cfg = *cfg;
	else
		pm_redis_cfg_default(&r->cfg);
	pm_redis_url_mask(url, r->shown, sizeof r->shown);
	pthread_mutex_init(&r->smu, NULL);
	for (int i = 0; i < PM_REDIS_POOL; i++)
		pthread_mutex_init(&r->pool[i].mu, NULL);
	/* hiredis writes with write(2): a server that goes away must not
	 * kill the process with SIGPIPE */
	if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	conn *cn = acquire(r, &e); /* down is not an error (see redis.h) */
	if (cn)
		release(cn);
	*out = r;
	return PM_OK;
}

void pm_redis_close(pm_redis *r)
{
	if (!r)
		return;
	for (int i = 0; i < PM_REDIS_POOL; i++) {
		if (r->pool[i].c)
			redisFree(r->pool[i].c);
		pthread_mutex_destroy(&r->pool[i].mu);
	}
	pthread_mutex_destroy(&r->smu);
	explicit_bzero(&r->u, sizeof r->u);
	free(r);
}

void pm_redis_stats_get(pm_redis *r, pm_redis_stats *st)
{
	memset(st, 0, sizeof *st);
	pthread_mutex_lock(&r->smu);
	st->up = r->up;
	st->ops = r->ops;
	st->errors = r->errors;
	st->fallbacks = r->fallbacks;
	st->downs = r->downs;
	st->degraded_s = r->degraded_s;
	if (!r->up && r->downs > 0)
		st->degraded_s += pm_now() - r->down_since;
	snprintf(st->last_error, sizeof st->last_error, "%s", r->last_error);
	snprintf(st->url, sizeof st->url, "%s", r->shown);
	pthread_mutex_unlock(&r->smu);
}

bool pm_redis_is_up(pm_redis *r)
{
	bool up;
	pthread_mutex_lock(&r->smu);
	up = r->up;
	pthread_mutex_unlock(&r->smu);
	return up;
}

pm_status pm_redis_take(pm_redis *r, const char *key, double rate, double burst,
			long *wait_ms, pm_err *err)
{
	char a_rate[32], a_burst[32], sha[48];
	conn *cn;
	redisReply *rep;

	*wait_ms = 0;
	if (!(rate > 0) || !isfinite(rate) || !(burst >= 1) || !isfinite(burst))
		return pm_fail(err, PM_ERR_USAGE, "redis: bad bucket");
	snprintf(a_rate, sizeof a_rate, "%.6g", rate);
	snprintf(a_burst, sizeof a_burst, "%.6g", burst);
	cn = acquire(r, err);
	if (!cn)
		return PM_ERR_IO;
	pthread_mutex_lock(&r->smu);
	snprintf(sha, sizeof sha, "%s", r->sha);
	pthread_mutex_unlock(&r->smu);
	const char *argv[6] = {"EVALSHA", sha, "1", key, a_rate, a_burst};
	rep = redisCommandArgv(cn->c, 6, argv, NULL);
	if (rep && rep->type == REDIS_REPLY_ERROR && rep->str &&
	    strncmp(rep->str, "NOSCRIPT", 8) == 0) {
		/* flushed or restarted under us: EVAL caches it again */
		freeReplyObject(rep);
		argv[0] = "EVAL";
		argv[1] = BUCKET_LUA;
		rep = redisCommandArgv(cn->c, 6, argv, NULL);
	}
	if (!rep) {
		char what[200];
		snprintf(what, sizeof what, "token bucket: %s",
			 cn->c->err == REDIS_ERR_IO &&
				 (errno == EAGAIN || errno == EWOULDBLOCK)
			     ? "timed out"
			     : cn->c->errstr);
		return cmd_failed(r, cn, true, what, err);
	}
	release(cn);
	if (rep->type != REDIS_REPLY_INTEGER || rep->integer < 0) {
		char what[200];
		snprintf(what, sizeof what, "token bucket: %.160s",
			 reply_error(rep) ? rep->str : "unexpected reply");
		freeReplyObject(rep);
		pthread_mutex_lock(&r->smu);
		r->errors++;
		pthread_mutex_unlock(&r->smu);
		return pm_fail(err, PM_ERR_IO, "redis %s: %s", r->shown, what);
	}
	count_ok(r);
	*wait_ms = rep->integer > 3600000 ? 3600000 : (long)rep->integer;
	freeReplyObject(rep);
	return PM_OK;
}

/* An answer that is an error reply: counted, reported, freed. */
static pm_status bad_reply(pm_redis *r, redisReply *rep, const char *what,
			   pm_err *err)
{
	pm_status s =
	    pm_fail(err, PM_ERR_IO, "redis %s: %s: %.160s", r->shown, what,
		    reply_error(rep) ? rep->str : "unexpected reply");
	freeReplyObject(rep);
	pthread_mutex_lock(&r->smu);
	r->errors++;
	pthread_mutex_unlock(&r->smu);
	return s;
}

pm_status pm_redis_get(pm_redis *r, const char *key, char **out, size_t *len,
		       pm_err *err)
{
	const char *argv[2] = {"GET", key};
	redisReply *rep;

	*out = NULL;
	if (len)
		*len = 0;
	rep = command(r, 2, argv, NULL, err);
	if (!rep)
		return PM_ERR_IO;
	if (rep->type == REDIS_REPLY_NIL) {
		freeReplyObject(rep);
		return PM_OK;
	}
	if (rep->type != REDIS_REPLY_STRING)
		return bad_reply(r, rep, "GET", err);
	*out = malloc(rep->len + 1);
	if (!*out) {
		freeReplyObject(rep);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	memcpy(*out, rep->str, rep->len);
	(*out)[rep->len] = 0;
	if (len)
		*len = rep->len;
	freeReplyObject(rep);
	return PM_OK;
}

pm_status pm_redis_set(pm_redis *r, const char *key, const void *val,
		       size_t len, long ttl_s, pm_err *err)
{
	char ttl[24];
	const char *argv[5] = {"SET", key, val, "EX", ttl};
	size_t lens[5] = {3, strlen(key), len, 2, 0};
	redisReply *rep;

	snprintf(ttl, sizeof ttl, "%ld", ttl_s < 1 ? 1 : ttl_s);
	lens[4] = strlen(ttl);
	rep = command(r, 5, argv, lens, err);
	if (!rep)
		return PM_ERR_IO;
	if (rep->type != REDIS_REPLY_STATUS)
		return bad_reply(r, rep, "SET", err);
	freeReplyObject(rep);
	return PM_OK;
}

pm_status pm_redis_publish(pm_redis *r, const char *channel, const char *msg,
			   pm_err *err)
{
	const char *argv[3] = {"PUBLISH", channel, msg};
	redisReply *rep = command(r, 3, argv, NULL, err);

	if (!rep)
		return PM_ERR_IO;
	if (rep->type != REDIS_REPLY_INTEGER)
		return bad_reply(r, rep, "PUBLISH", err);
	freeReplyObject(rep);
	return PM_OK;
}

/* ---- SUBSCRIBE ---- */

/* Sleeps up to ms in 100 ms steps, returning early when *stop is set. */
static void nap(long ms, volatile int *stop)
{
	for (long t = 0; t < ms && !(stop && *stop); t += 100) {
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

pm_status pm_redis_subscribe(const char *url, const char *channel,
			     int (*on_msg)(const char *msg, size_t len,
					   void *ud),
			     void *ud, volatile int *stop, pm_err *err)
{
	pm_redis *r;
	pm_status s;
	pm_err e;
	bool said_down = false;

	s = pm_redis_open(url, NULL, &r, err);
	if (s)
		return s;
	while (!(stop && *stop)) {
		conn *cn = acquire(r, &e);
		if (!cn) {
			if (!said_down)
				pm_log(PM_LOG_WARN,
				       "%s: waiting for it to come back",
				       e.msg);
			said_down = true;
			nap(r->cfg.retry_ms, stop);
			continue;
		}
		/* this connection becomes a subscriber: take it out of the
		 * pool's hands (it is freed below) */
		redisContext *c = cn->c;
		const char *argv[2] = {"SUBSCRIBE", channel};
		redisReply *rep = NULL;
		bool failed = false;
		cn->c = NULL;
		if (said_down)
			pm_log(PM_LOG_INFO, "redis %s: subscribed again",
			       r->shown);
		said_down = false;
		if (redisAppendCommandArgv(c, 2, argv, NULL) != REDIS_OK)
			failed = true;
		/* flush */
		int done = 0;
		while (!failed && !done)
			if (redisBufferWrite(c, &done) != REDIS_OK)
				failed = true;
		while (!failed && !(stop && *stop)) {
			void *v = NULL;
			if (redisGetReplyFromReader(c, &v) != REDIS_OK) {
				failed = true;
				break;
			}
			rep = v;
			if (!rep) {
				struct pollfd pfd = {c->fd, POLLIN, 0};
				int pr = poll(&pfd, 1, 200);
				if (pr < 0 && errno != EINTR)
					failed = true;
				else if (pr > 0 &&
					 redisBufferRead(c) != REDIS_OK)
					failed = true;
				continue;
			}
			/* ["message", channel, payload] */
			if (rep->type == REDIS_REPLY_ARRAY &&
			    rep->elements == 3 &&
			    rep->element[0]->type == REDIS_REPLY_STRING &&
			    strcmp(rep->element[0]->str, "message") == 0 &&
			    rep->element[2]->type == REDIS_REPLY_STRING) {
				int stop_now = on_msg(rep->element[2]->str,
						      rep->element[2]->len, ud);
				freeReplyObject(rep);
				if (stop_now) {
					redisFree(c);
					release(cn);
					pm_redis_close(r);
					return PM_OK;
				}
				continue;
			}
			freeReplyObject(rep); /* the subscribe confirmation */
		}
		redisFree(c);
		if (failed) {
			pthread_mutex_lock(&r->smu);
			mark_down(r, "subscription lost", pm_now());
			pthread_mutex_unlock(&r->smu);
			said_down = true;
		}
		release(cn);
	}
	pm_redis_close(r);
	return PM_OK;
}
