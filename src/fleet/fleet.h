/* fleet.h — what a pixmill process shares with the rest of its fleet
 * through the optional Redis (src/fleet/redis.h): per-host and per-API-key
 * token buckets, a read-through cache of two store lookups, and progress
 * messages. One process-wide Redis handle: `run`, `serve` and `worker`
 * call pm_fleet_start with their --redis URL once, before any work, and
 * pm_fleet_stop at the end; everything below is a no-op (or "not there")
 * when it was never started.
 *
 * Redis is only ever an addition: every function here fails soft. A
 * token-bucket call that cannot reach Redis returns PM_ERR_IO and the
 * caller applies its local limit unchanged; a cache miss or an outage sends
 * the caller to the store. The counters say how often that happened.
 *
 * Keys (docs/REDIS.md):
 *   pixmill:rl:host:<host>          token bucket of one origin host
 *   pixmill:rl:key:<16 hex>         token bucket of one API key (the first
 *                                   16 hex digits of its SHA-256; the key
 *                                   itself never leaves the process)
 *   pixmill:c:<store>:u:<sha256 of URL>   "sha256 \t etag \t last-modified"
 *   pixmill:c:<store>:a:<sha256>:<pipeline hash>   "1": the asset exists
 *   channel pixmill:progress         one JSON message per writer commit
 * <store> is 16 hex digits of the SHA-256 of the store's identity (an
 * SQLite file's real path, a PostgreSQL URL without its password, and the
 * creation time of its first job), so two stores never share cache
 * entries, nor does a store deleted and made again at the same place.
 *
 * Threads: pm_fleet_start/stop on the main thread while no other thread
 * uses the fleet; every other function from any thread.
 */
#ifndef PM_FLEET_H
#define PM_FLEET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

#define PM_FLEET_CHANNEL "pixmill:progress"

/* Connects the process to Redis at url (NULL or "": stays off). A
 * malformed URL is PM_ERR_USAGE; an unreachable server is not an error
 * (the process starts degraded and says so). who names this process in
 * progress messages (NULL: "HOSTNAME:PID"); copied. Registers the
 * pixmill_redis_* metrics. */
pm_status pm_fleet_start(const char *url, const char *who, pm_err *err);
void pm_fleet_stop(void);

/* "off" (not configured), "up" or "down". */
const char *pm_fleet_state(void);

typedef struct pm_fleet_stats {
	bool on, up;
	uint64_t errors, fallbacks, downs;
	double degraded_s;
	uint64_t rl_shared, rl_local; /* bucket calls answered by Redis, or
					 left to the local limit */
	uint64_t cache_hits, cache_misses, cache_writes;
	char url[300]; /* masked */
	char last_error[256];
} pm_fleet_stats;
void pm_fleet_stats_get(pm_fleet_stats *st);

/* The shared bucket of an origin host: PM_OK with *wait_ms 0 (a token
 * was taken: go) or > 0 (none: ask again after that long); PM_ERR_IO when
 * off or down (use the local limit). */
pm_status pm_fleet_take_host(const char *host, double rps, double burst,
			     long *wait_ms);
/* The same for an API key (its SHA-256 prefix names the bucket). */
pm_status pm_fleet_take_key(const char *api_key, double rps, double burst,
			    long *wait_ms);

/* Store identity for cache keys (see above) from a store URL or path and
 * the creation time of the store's first job (unix seconds, so a store
 * made again at the same place is another store), into id (17 bytes). */
void pm_fleet_store_id(const char *db_url, double first_job_created,
		       char id[17]);

/* Cache of pm_store_url_get: *found when Redis knows url. Never an error:
 * false on a miss or an outage. */
bool pm_fleet_cache_url_get(const char *store_id, const char *url,
			    char sha256[65], char *etag, size_t etag_size,
			    char *lastmod, size_t lastmod_size);
void pm_fleet_cache_url_put(const char *store_id, const char *url,
			    const char *sha256, const char *etag,
			    const char *lastmod);
/* Cache of pm_store_asset_exists (positive answers only: an asset once
 * committed stays). */
bool pm_fleet_cache_asset_get(const char *store_id, const char *sha256,
			      const char *pipeline_hash);
void pm_fleet_cache_asset_put(const char *store_id, const char *sha256,
			      const char *pipeline_hash);

/* Publishes {job, done, failed, dups, worker, t} on PM_FLEET_CHANNEL. */
void pm_fleet_progress(int64_t job, int64_t done, int64_t failed, int64_t dups);

/* serve's feed of the fleet's progress messages (GET /api/fleet/events):
 * a thread subscribed to PM_FLEET_CHANNEL keeps the last
 * PM_FLEET_FEED_KEEP messages, numbered from 1. Start after pm_fleet_start
 * (a no-op when the fleet is off), stop before pm_fleet_stop; both on the
 * main thread. */
#define PM_FLEET_FEED_KEEP 128
#define PM_FLEET_FEED_MSG  512 /* longer messages are dropped */
pm_status pm_fleet_feed_start(pm_err *err);
void pm_fleet_feed_stop(void);
/* The number of the newest message (0: none yet). Any thread. */
uint64_t pm_fleet_feed_head(void);
/* The oldest kept message newer than *seq into buf (NUL-terminated), and
 * *seq = its number; false when there is none. A reader that fell more
 * than PM_FLEET_FEED_KEEP behind skips to the oldest kept. Any thread. */
bool pm_fleet_feed_next(uint64_t *seq, char *buf, size_t size);

#endif
