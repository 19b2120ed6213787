/* test_redis.c — unit tests of the fleet's Redis layer (src/fleet/): URL
 * parsing and masking, a server that is not there (fail fast, counters,
 * no password in any message), and — when PIXMILL_TEST_REDIS is set to a
 * server URL, e.g. redis://127.0.0.1:PORT (tests/redis/test_redis.sh
 * starts one) — against a real redis-server: the token bucket (burst,
 * wait, shared by two handles, NOSCRIPT after SCRIPT FLUSH), GET/SET with
 * TTL, the fleet cache (round trip, a hostile value is a miss), PUBLISH
 * and SUBSCRIBE. Without it those cases print SKIP.
 *
 * Threads: main thread, plus one publisher thread in the pub/sub case
 * (it only calls pm_redis_publish; the checks stay on the main thread).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "core/util.h"
#include "fleet/fleet.h"
#include "fleet/redis.h"
#include "test.h"
#include "vision/vision.h"

static void test_url_parse(void)
{
	pm_redis_url u;
	pm_err e;

	CHECK_INT(pm_redis_url_parse("redis://localhost", &u, &e), PM_OK);
	CHECK_STR(u.host, "localhost");
	CHECK_INT(u.port, 6379);
	CHECK_INT(u.db, 0);
	CHECK(!u.has_password && !u.is_unix);
	CHECK_INT(pm_redis_url_parse("redis://10.0.0.5:7000/3", &u, &e), PM_OK);
	CHECK_STR(u.host, "10.0.0.5");
	CHECK_INT(u.port, 7000);
	CHECK_INT(u.db, 3);
	CHECK_INT(pm_redis_url_parse("redis://:s3cret@h:1/", &u, &e), PM_OK);
	CHECK(u.has_password);
	CHECK_STR(u.user, "");
	CHECK_STR(u.password, "s3cret");
	CHECK_INT(u.db, 0);
	CHECK_INT(
	    pm_redis_url_parse("redis://bob:p%40ss%2Fw@[::1]:6380/2", &u, &e),
	    PM_OK);
	CHECK_STR(u.user, "bob");
	CHECK_STR(u.password, "p@ss/w");
	CHECK_STR(u.host, "::1");
	CHECK_INT(u.port, 6380);
	CHECK_INT(u.db, 2);
	/* a raw '@' in the password: the last '@' ends the user info */
	CHECK_INT(pm_redis_url_parse("redis://:a@b@host", &u, &e), PM_OK);
	CHECK_STR(u.password, "a@b");
	CHECK_STR(u.host, "host");
	CHECK_INT(pm_redis_url_parse("unix:///run/redis.sock", &u, &e), PM_OK);
	CHECK(u.is_unix);
	CHECK_STR(u.path, "/run/redis.sock");

	const char *bad[] = {
	    "",
	    "localhost:6379",
	    "http://h",
	    "redis://",
	    "redis://:6379",
	    "redis://h:0",
	    "redis://h:65536",
	    "redis://h:12ab",
	    "redis://h:",
	    "redis://h/db",
	    "redis://h/-1",
	    "redis://h?password=x",
	    "redis://h#x",
	    "redis://justapassword@h",
	    "redis://:bad%zzpass@h",
	    "redis://:nul%00pass@h",
	    "redis://[::1",
	    "redis://[]:1",
	    "redis://[::1]x",
	    "redis://h st",
	    "unix://relative/path",
	    "unix:///p?x=1",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		memset(&e, 0, sizeof e);
		pm_status s = pm_redis_url_parse(bad[i], &u, &e);
		CHECK_INT(s, PM_ERR_USAGE);
		CHECK(e.msg[0] != 0);
		if (s == PM_OK)
			fprintf(stderr, "accepted: %s\n", bad[i]);
	}
	/* refusals never show the password */
	CHECK_INT(pm_redis_url_parse("redis://:topsecret@h:99999", &u, &e),
		  PM_ERR_USAGE);
	CHECK(strstr(e.msg, "topsecret") == NULL);
	CHECK(strstr(e.msg, "redis://:***@h:99999") != NULL);
	CHECK_INT(pm_redis_url_parse("redis://topsecret@h", &u, &e),
		  PM_ERR_USAGE);
	CHECK(strstr(e.msg, "topsecret") == NULL);
}

static void test_url_mask(void)
{
	char m[128];

	pm_redis_url_mask("redis://h:1/0", m, sizeof m);
	CHECK_STR(m, "redis://h:1/0");
	pm_redis_url_mask("redis://:pw@h:1/0", m, sizeof m);
	CHECK_STR(m, "redis://:***@h:1/0");
	pm_redis_url_mask("redis://bob:pw@h", m, sizeof m);
	CHECK_STR(m, "redis://bob:***@h");
	pm_redis_url_mask("redis://a:b@c@h/1", m, sizeof m);
	CHECK_STR(m, "redis://a:***@h/1");
	pm_redis_url_mask("redis://onlysecret@h", m, sizeof m);
	CHECK_STR(m, "redis://***@h");
	pm_redis_url_mask("unix:///run/r.sock", m, sizeof m);
	CHECK_STR(m, "unix:///run/r.sock");
	pm_redis_url_mask("redis://:pw@h", m, 10); /* truncated */
	CHECK_STR(m, "redis://:");
}

/* A port nobody listens on: connecting is refused at once. */
static int dead_port(void)
{
	return 1; /* tcpmux: not served on a test machine, refused at once */
}

static void test_down(void)
{
	char url[64];
	pm_redis *r = NULL;
	pm_redis_stats st;
	pm_err e;
	long wait = -1;
	char *v = (char *)1;

	snprintf(url, sizeof url, "redis://:hunter22@127.0.0.1:%d",
		 dead_port());
	CHECK_INT(pm_redis_open(url, NULL, &r, &e), PM_OK); /* not fatal */
	CHECK(r != NULL);
	if (!r)
		return;
	CHECK(!pm_redis_is_up(r));
	double t0 = pm_now();
	for (int i = 0; i < 100; i++)
		CHECK_INT(pm_redis_take(r, "k", 10, 2, &wait, &e), PM_ERR_IO);
	CHECK_INT(wait, 0);
	CHECK_INT(pm_redis_get(r, "k", &v, NULL, &e), PM_ERR_IO);
	CHECK(v == NULL);
	CHECK(pm_now() - t0 < 0.5); /* fail fast, no reconnect storm */
	CHECK(strstr(e.msg, "hunter22") == NULL);
	CHECK(strstr(e.msg, "***") != NULL);
	pm_redis_stats_get(r, &st);
	CHECK(!st.up);
	CHECK_INT(st.downs, 1);
	CHECK(st.fallbacks >= 100);
	CHECK(st.errors >= 1);
	CHECK(st.last_error[0] != 0);
	CHECK(strstr(st.url, "hunter22") == NULL);
	CHECK(st.degraded_s >= 0);
	pm_redis_close(r);

	/* the fleet layer: off, then started on a dead server */
	long w2;
	CHECK_STR(pm_fleet_state(), "off");
	CHECK_INT(pm_fleet_take_host("h", 5, 2, &w2), PM_ERR_IO);
	CHECK(!pm_fleet_cache_asset_get("0123456789abcdef", "a", "b"));
	CHECK_INT(pm_fleet_start(url, "test", &e), PM_OK);
	CHECK_STR(pm_fleet_state(), "down");
	CHECK_INT(pm_fleet_take_host("h", 5, 2, &w2), PM_ERR_IO);
	pm_fleet_progress(1, 2, 3, 4); /* dropped, no crash */
	pm_fleet_stop();
	CHECK_STR(pm_fleet_state(), "off");
	CHECK_INT(pm_fleet_start("redis://:pw@h:0", NULL, &e), PM_ERR_USAGE);
	CHECK(strstr(e.msg, "pw@") == NULL);
}

/* ---- against a real server ---- */

static const char *srv; /* PIXMILL_TEST_REDIS */

/* A raw hiredis connection to srv, for what the API does not do. */
static redisReply *raw(const char *fmt, const char *arg)
{
	pm_redis_url u;
	pm_err e;
	struct timeval tv = {1, 0};
	redisContext *c;
	redisReply *rep;

	if (pm_redis_url_parse(srv, &u, &e))
		return NULL;
	c = u.is_unix ? redisConnectUnixWithTimeout(u.path, tv)
		      : redisConnectWithTimeout(u.host, u.port, tv);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	rep = redisCommand(c, fmt, arg);
	redisFree(c);
	return rep;
}

static void test_bucket(void)
{
	pm_redis *a = NULL, *b = NULL;
	pm_err e;
	long w = -1;
	char key[64];

	snprintf(key, sizeof key, "pixmill:test:bucket:%d", (int)getpid());
	CHECK_INT(pm_redis_open(srv, NULL, &a, &e), PM_OK);
	CHECK_INT(pm_redis_open(srv, NULL, &b, &e), PM_OK);
	if (!a || !b)
		return;
	CHECK(pm_redis_is_up(a));
	/* burst 3 at 1/s: three tokens at once, shared by both handles */
	CHECK_INT(pm_redis_take(a, key, 1, 3, &w, &e), PM_OK);
	CHECK_INT(w, 0);
	CHECK_INT(pm_redis_take(b, key, 1, 3, &w, &e), PM_OK);
	CHECK_INT(w, 0);
	CHECK_INT(pm_redis_take(a, key, 1, 3, &w, &e), PM_OK);
	CHECK_INT(w, 0);
	CHECK_INT(pm_redis_take(b, key, 1, 3, &w, &e), PM_OK);
	CHECK(w > 0 && w <= 1000);
	/* a refusal takes nothing: asking again says about the same */
	long w1 = w;
	CHECK_INT(pm_redis_take(a, key, 1, 3, &w, &e), PM_OK);
	CHECK(w > 0 && w <= w1);
	/* the key expires by itself */
	redisReply *rep = raw("PTTL %s", key);
	CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 &&
	      rep->integer <= 4000);
	freeReplyObject(rep);
	/* NOSCRIPT: after SCRIPT FLUSH the next call still works (EVAL) */
	rep = raw("SCRIPT FLUSH%s", "");
	CHECK(rep && rep->type == REDIS_REPLY_STATUS);
	freeReplyObject(rep);
	CHECK_INT(pm_redis_take(a, "pixmill:test:other", 100, 5, &w, &e),
		  PM_OK);
	CHECK_INT(w, 0);
	CHECK_INT(pm_redis_take(b, "pixmill:test:other", 100, 5, &w, &e),
		  PM_OK);
	/* bad arguments are refused before Redis */
	CHECK_INT(pm_redis_take(a, key, 0, 3, &w, &e), PM_ERR_USAGE);
	CHECK_INT(pm_redis_take(a, key, 1, 0.5, &w, &e), PM_ERR_USAGE);
	/* a hostile bucket (not numbers) is reset, not an error */
	rep = raw("HSET pixmill:test:junk tok %s", "nan-or-junk");
	freeReplyObject(rep);
	CHECK_INT(pm_redis_take(a, "pixmill:test:junk", 1, 2, &w, &e), PM_OK);
	CHECK_INT(w, 0);
	/* out-of-range buckets (infinite, negative, stamped in the future)
	 * start again full instead of stalling the fleet */
	const char *broken[] = {
	    "HSET pixmill:test:b1 tok 1 ts %s",	   "inf",
	    "HSET pixmill:test:b2 tok -1e9 ts %s", "1",
	    "HSET pixmill:test:b3 tok 0 ts %s",	   "9e15",
	};
	for (int i = 0; i < 3; i++) {
		char k[32];
		rep = raw(broken[2 * i], broken[2 * i + 1]);
		freeReplyObject(rep);
		snprintf(k, sizeof k, "pixmill:test:b%d", i + 1);
		CHECK_INT(pm_redis_take(a, k, 1, 2, &w, &e), PM_OK);
		CHECK_INT(w, 0);
		CHECK_INT(pm_redis_take(a, k, 1, 2, &w, &e), PM_OK);
		CHECK_INT(w, 0);
		CHECK_INT(pm_redis_take(a, k, 1, 2, &w, &e), PM_OK);
		CHECK(w > 0 && w <= 1000);
	}
	/* a key of another type: a clear error, the handle stays up */
	rep = raw("SET pixmill:test:str %s", "x");
	freeReplyObject(rep);
	CHECK_INT(pm_redis_take(a, "pixmill:test:str", 1, 2, &w, &e),
		  PM_ERR_IO);
	CHECK(strstr(e.msg, "WRONGTYPE") != NULL);
	CHECK(pm_redis_is_up(a));
	pm_redis_close(a);
	pm_redis_close(b);
}

static void test_get_set(void)
{
	pm_redis *r = NULL;
	pm_err e;
	char *v = NULL;
	size_t len = 0;

	CHECK_INT(pm_redis_open(srv, NULL, &r, &e), PM_OK);
	if (!r)
		return;
	CHECK_INT(pm_redis_set(r, "pixmill:test:kv", "a\0b", 3, 60, &e), PM_OK);
	CHECK_INT(pm_redis_get(r, "pixmill:test:kv", &v, &len, &e), PM_OK);
	CHECK(v && len == 3 && memcmp(v, "a\0b", 3) == 0);
	free(v);
	CHECK_INT(pm_redis_get(r, "pixmill:test:absent", &v, &len, &e), PM_OK);
	CHECK(v == NULL);
	redisReply *rep = raw("TTL %s", "pixmill:test:kv");
	CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0 &&
	      rep->integer <= 60);
	freeReplyObject(rep);
	/* GET of a hash: an error reply, not a crash */
	rep = raw("HSET pixmill:test:hash f %s", "v");
	freeReplyObject(rep);
	CHECK_INT(pm_redis_get(r, "pixmill:test:hash", &v, &len, &e),
		  PM_ERR_IO);
	CHECK(v == NULL);
	CHECK_INT(pm_redis_publish(r, "pixmill:test:ch", "hi", &e), PM_OK);
	pm_redis_stats st;
	pm_redis_stats_get(r, &st);
	CHECK(st.up && st.ops >= 3 && st.downs == 0);
	pm_redis_close(r);
}

static void test_fleet_cache(void)
{
	pm_err e;
	char sha[65], etag[256], lm[64], id[17];
	const char *S =
	    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
	pm_fleet_stats fs;

	pm_fleet_store_id("postgresql://u:secret@db/x", 1.5, id);
	char id2[17];
	pm_fleet_store_id("postgresql://u:other@db/x", 1.5, id2);
	CHECK_STR(id, id2); /* the password is not part of the identity */
	CHECK_INT(strlen(id), 16);
	/* the same place, made again: another store */
	pm_fleet_store_id("postgresql://u:other@db/x", 2.5, id2);
	CHECK(strcmp(id, id2) != 0);
	snprintf(id, sizeof id, "%016x", (unsigned)getpid());
	CHECK_INT(pm_fleet_start(srv, "unit", &e), PM_OK);
	CHECK_STR(pm_fleet_state(), "up");
	CHECK(!pm_fleet_cache_url_get(id, "http://x/1", sha, etag, sizeof etag,
				      lm, sizeof lm));
	pm_fleet_cache_url_put(id, "http://x/1", S, "\"e1\"", "");
	CHECK(pm_fleet_cache_url_get(id, "http://x/1", sha, etag, sizeof etag,
				     lm, sizeof lm));
	CHECK_STR(sha, S);
	CHECK_STR(etag, "\"e1\"");
	CHECK_STR(lm, "");
	/* another store never sees it */
	CHECK(!pm_fleet_cache_url_get("ffffffffffffffff", "http://x/1", sha,
				      etag, sizeof etag, lm, sizeof lm));
	/* a value someone else wrote badly is a miss */
	char key[128], hex[65];
	pm_sha256_hex("http://x/2", 10, hex);
	snprintf(key, sizeof key, "pixmill:c:%s:u:%s", id, hex);
	redisReply *rep = raw("SET %s notasha\tx\ty", key);
	(void)rep;
	freeReplyObject(rep);
	CHECK(!pm_fleet_cache_url_get(id, "http://x/2", sha, etag, sizeof etag,
				      lm, sizeof lm));
	CHECK(!pm_fleet_cache_asset_get(id, S, "p1"));
	pm_fleet_cache_asset_put(id, S, "p1");
	CHECK(pm_fleet_cache_asset_get(id, S, "p1"));
	CHECK(!pm_fleet_cache_asset_get(id, S, "p2"));
	long w;
	CHECK_INT(pm_fleet_take_key("sk-very-secret", 2, 1, &w), PM_OK);
	rep = raw("KEYS %s", "pixmill:rl:key:*");
	CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1);
	if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
		CHECK_INT(strlen(rep->element[0]->str),
			  strlen("pixmill:rl:key:") + 16);
		CHECK(strstr(rep->element[0]->str, "secret") == NULL);
	}
	freeReplyObject(rep);
	pm_fleet_stats_get(&fs);
	CHECK(fs.on && fs.up);
	CHECK_INT(fs.cache_hits, 2);
	CHECK_INT(fs.cache_misses, 5);
	CHECK(fs.rl_shared >= 1);
	pm_fleet_stop();
}

/* The vision limiter's per-key bucket: two "processes" (here: the same
 * key asked for twice as fast as its rate) are held to the key's rate by
 * Redis; the bucket is named by the key's SHA-256, never the key. */
static void test_vision_key(void)
{
	pm_err e;
	pm_vision_ep *ep = pm_vision_ep_get("http://vision.test/v1", "m", &e);
	pm_vision_cfg cfg;
	char hex[65], key[64];
	const char *secret = "sk-test-fleet-key-123";

	CHECK(ep != NULL);
	if (!ep)
		return;
	pm_vision_ep_get_cfg(ep, &cfg);
	cfg.rate_start = cfg.rate_max = 4;
	cfg.no_metrics = true;
	pm_vision_ep_set_cfg(ep, &cfg);
	pm_vision_ep_reset_rate(ep);
	CHECK_INT(pm_vision_ep_add_key(ep, secret, &e), PM_OK);
	/* off: returns at once */
	CHECK_INT(pm_vision_ep_shared_wait(ep, 0, NULL, &e), PM_OK);
	CHECK_INT(pm_fleet_start(srv, "unit", &e), PM_OK);
	double t0 = pm_now();
	for (int i = 0; i < 5; i++)
		CHECK_INT(pm_vision_ep_shared_wait(ep, 0, NULL, &e), PM_OK);
	double dt = pm_now() - t0;
	/* 5 tokens at 4/s with a burst of 1: the last no sooner than 1 s
	 * after the first (a lower bound: never fails on a slow machine) */
	CHECK(dt >= 0.9);
	pm_sha256_hex(secret, strlen(secret), hex);
	snprintf(key, sizeof key, "EXISTS pixmill:rl:key:%.16s", hex);
	redisReply *rep = raw(key, "");
	CHECK(rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1);
	freeReplyObject(rep);
	rep = raw("KEYS %s", "*sk-test*");
	CHECK(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 0);
	freeReplyObject(rep);
	pm_fleet_stop();
}

/* Atomicity: 6 threads on 2 handles (so on several pooled connections
 * each) take from one bucket as fast as they can for about 1 s; together
 * they never get more than burst + rate x elapsed tokens. */
typedef struct hammer {
	pm_redis *r;
	double until;
	long granted, calls, errors;
} hammer;

static void *hammer_main(void *arg)
{
	hammer *h = arg;
	pm_err e;
	long w;

	while (pm_now() < h->until) {
		if (pm_redis_take(h->r, "pixmill:test:hammer", 50, 5, &w, &e))
			h->errors++;
		else if (w == 0)
			h->granted++;
		h->calls++;
	}
	return NULL;
}

static void test_bucket_threads(void)
{
	pm_redis *r[2] = {NULL, NULL};
	hammer h[6];
	pthread_t t[6];
	pm_err e;
	long granted = 0, calls = 0, errors = 0;

	CHECK_INT(pm_redis_open(srv, NULL, &r[0], &e), PM_OK);
	CHECK_INT(pm_redis_open(srv, NULL, &r[1], &e), PM_OK);
	if (!r[0] || !r[1])
		return;
	double t0 = pm_now();
	for (int i = 0; i < 6; i++) {
		h[i] = (hammer){r[i % 2], t0 + 1.0, 0, 0, 0};
		pthread_create(&t[i], NULL, hammer_main, &h[i]);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		granted += h[i].granted;
		calls += h[i].calls;
		errors += h[i].errors;
	}
	double dt = pm_now() - t0;
	CHECK_INT(errors, 0);
	CHECK(calls > granted); /* they did run into the limit */
	CHECK(granted >= 5);
	CHECK(granted <= 5 + (long)(50 * dt) + 1);
	printf("-- bucket under 6 threads: %ld tokens of %ld calls in %.2f s "
	       "(at most %ld allowed)\n",
	       granted, calls, dt, 5 + (long)(50 * dt) + 1);
	pm_redis_close(r[0]);
	pm_redis_close(r[1]);
}

static volatile int pub_stop;

static void *publisher(void *arg)
{
	pm_redis *r = NULL;
	pm_err e;

	(void)arg;
	if (pm_redis_open(srv, NULL, &r, &e))
		return NULL;
	for (int i = 0; i < 100 && !pub_stop; i++) {
		pm_redis_publish(r, "pixmill:test:sub", "{\"n\":1}", &e);
		usleep(50 * 1000);
	}
	pm_redis_close(r);
	return NULL;
}

static int got_msg(const char *msg, size_t len, void *ud)
{
	int *n = ud;
	if (len == 7 && memcmp(msg, "{\"n\":1}", 7) == 0)
		(*n)++;
	return *n >= 2;
}

static void test_pubsub(void)
{
	pthread_t t;
	int n = 0;
	volatile int stop = 0;
	pm_err e;

	pthread_create(&t, NULL, publisher, NULL);
	CHECK_INT(
	    pm_redis_subscribe(srv, "pixmill:test:sub", got_msg, &n, &stop, &e),
	    PM_OK);
	pub_stop = 1;
	pthread_join(t, NULL);
	CHECK_INT(n, 2);
}

int main(void)
{
	test_url_parse();
	test_url_mask();
	test_down();
	srv = getenv("PIXMILL_TEST_REDIS");
	if (srv && *srv) {
		printf("-- Redis: %s\n", srv);
		redisReply *rep = raw("FLUSHALL%s", "");
		freeReplyObject(rep);
		test_bucket();
		test_bucket_threads();
		test_get_set();
		test_fleet_cache();
		test_vision_key();
		test_pubsub();
	} else
		printf("SKIP the cases against a real server (set "
		       "PIXMILL_TEST_REDIS=redis://HOST:PORT)\n");
	TEST_DONE();
}
