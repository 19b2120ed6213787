/* redis.h — the optional Redis connection of a pixmill fleet (hiredis):
 * URL parsing and masking, a small pool of connections with short
 * timeouts, reconnection with backoff, an up/down state with counters,
 * and the few commands pixmill needs (an atomic token bucket in Lua, GET,
 * SET with a TTL, PUBLISH, SUBSCRIBE).
 *
 * Redis is never required: every command fails fast (PM_ERR_IO) while the
 * server is down, and the callers (src/fleet/fleet.c) fall back to their
 * local limits and to the store. A command waits at most cmd_timeout_ms
 * (200 ms) for a dead server; after a failure the handle is "down" and no
 * command touches the network until retry_ms (2 s) have passed, then one
 * caller tries to reconnect (connect_timeout_ms, 200 ms) while the others
 * keep falling back.
 *
 * URLs (outside input: command line, config):
 *   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]   (HOST may be [IPv6])
 *   unix:///PATH
 * USER and PASSWORD may be percent-encoded. The password is never printed:
 * messages show pm_redis_url_mask's form ("redis://:***@host"). A URL
 * without a password takes the environment's PIXMILL_REDIS_PASSWORD
 * (read by pm_redis_open), which keeps it off the command line.
 *
 * Threads: pm_redis_open/close from one owning thread; every other
 * function from any thread at once. The handle holds PM_REDIS_POOL
 * connections, each under its own mutex: a caller takes a free one
 * (trylock), else waits for one picked by its thread id; so a command
 * never runs on a connection another thread is using, and a slow command
 * holds up at most the threads that wait on that one connection.
 * Ownership: strings passed in are copied or only read during the call;
 * pm_redis_get's *out is malloc'd and the caller's.
 */
#ifndef PM_REDIS_H
#define PM_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define PM_REDIS_POOL 4

typedef struct pm_redis_url {
	bool is_unix;
	char host[256]; /* name or address (no brackets) */
	int port;	/* 6379 */
	char path[256]; /* unix socket path */
	char user[128]; /* "" if none (AUTH PASSWORD) */
	char password[256];
	bool has_password;
	int db; /* SELECT db (0) */
} pm_redis_url;

/* Parses url into *out. PM_ERR_USAGE with a message that shows the URL
 * masked when it is malformed. */
pm_status pm_redis_url_parse(const char *url, pm_redis_url *out, pm_err *err);

/* Copies url into out (size bytes, truncated) with the password (all of
 * the user info before the last '@' of the authority, after its first
 * ':', or all of it when there is no ':') replaced by "***". */
void pm_redis_url_mask(const char *url, char *out, size_t size);

typedef struct pm_redis_cfg {
	long connect_timeout_ms; /* 200 */
	long cmd_timeout_ms;	 /* 200 */
	long retry_ms;		 /* 2000: at most one reconnect per period */
} pm_redis_cfg;
void pm_redis_cfg_default(pm_redis_cfg *c);

typedef struct pm_redis pm_redis;

/* Parses url and tries to connect once. A malformed URL is PM_ERR_USAGE;
 * an unreachable server, a refused AUTH or SELECT is not an error: the
 * handle starts "down" (pm_redis_stats says why) and reconnects later.
 * cfg NULL: defaults. *out is the caller's: pm_redis_close frees it. */
pm_status pm_redis_open(const char *url, const pm_redis_cfg *cfg,
			pm_redis **out, pm_err *err);
void pm_redis_close(pm_redis *r);

typedef struct pm_redis_stats {
	bool up;
	uint64_t ops;	      /* commands answered */
	uint64_t errors;      /* commands or connects that failed */
	uint64_t fallbacks;   /* calls refused at once while down */
	uint64_t downs;	      /* up -> down transitions (the first failed
				 connect included) */
	double degraded_s;    /* seconds spent down so far (now included) */
	char last_error[256]; /* why it went down last ("" if never) */
	char url[300];	      /* masked */
} pm_redis_stats;
void pm_redis_stats_get(pm_redis *r, pm_redis_stats *st);
bool pm_redis_is_up(pm_redis *r);

/* The token bucket: atomically (one Lua script, EVALSHA with EVAL as the
 * fallback on NOSCRIPT) refills key from the server's TIME at rate tokens
 * per second up to burst, then takes one token (*wait_ms = 0) or, when
 * there is none, takes nothing and says how long until there is one
 * (*wait_ms > 0). The key expires when it would be full again. PM_ERR_IO:
 * Redis down or failing (use the local limit). */
pm_status pm_redis_take(pm_redis *r, const char *key, double rate, double burst,
			long *wait_ms, pm_err *err);

/* GET key: *out a malloc'd NUL-terminated copy (and *len) when it exists,
 * else *out = NULL. */
pm_status pm_redis_get(pm_redis *r, const char *key, char **out, size_t *len,
		       pm_err *err);
/* SET key val EX ttl_s (ttl_s >= 1). */
pm_status pm_redis_set(pm_redis *r, const char *key, const void *val,
		       size_t len, long ttl_s, pm_err *err);
/* PUBLISH channel msg. */
pm_status pm_redis_publish(pm_redis *r, const char *channel, const char *msg,
			   pm_err *err);

/* Subscribes to channel on a connection of its own and calls
 * on_msg(payload, len, ud) for each message (payload is outside input,
 * not NUL-terminated for sure, and valid only during the call: copy what
 * you keep) until on_msg returns non-zero
 * or *stop becomes non-zero (checked about every 200 ms). Reconnects (and
 * resubscribes) after errors, every retry_ms, telling warn about each
 * state change once. Runs on the calling thread. PM_ERR_USAGE for a bad
 * URL; otherwise PM_OK when stopped. */
pm_status pm_redis_subscribe(const char *url, const char *channel,
			     int (*on_msg)(const char *msg, size_t len,
					   void *ud),
			     void *ud, volatile int *stop, pm_err *err);

#endif
