/* probe.h — a small HTTP endpoint for the metrics and health of a process
 * that is not `pixmill serve` (`pixmill worker --listen`):
 *   GET /metrics  the Prometheus text of pm_metrics_render (core/metrics.h)
 *   GET /health   the JSON the owner's callback builds, with its status code
 * HEAD works as GET without a body; other paths answer 404, other methods
 * 405 (Allow: GET, HEAD). libmicrohttpd with one internal thread, a few
 * connections at a time, no request bodies read, tiny answers.
 *
 * Threads: pm_probe_start and pm_probe_stop on the owner's thread; the
 * health callback runs on the probe's thread, at the same time as the
 * owner's threads (it reads the owner's state with atomics or a lock).
 */
#ifndef PM_PROBE_H
#define PM_PROBE_H

#include <jansson.h>

#include "core/status.h"

typedef struct pm_probe pm_probe;

/* Builds /health's body and sets *code (200, or 503 when the process cannot
 * do its work). Returns a new reference the probe owns and frees (NULL:
 * 500). */
typedef json_t *(*pm_probe_health_fn)(void *ud, int *code);

/* Listens on spec (pm_http_parse_listen: "127.0.0.1:9464", ":9464",
 * "[::1]:0"...). *port (if not NULL) gets the port bound. ud stays the
 * caller's and must live until pm_probe_stop. On PM_OK *out is the probe
 * (the caller stops it); errors: PM_ERR_USAGE (spec), PM_ERR_IO (cannot
 * listen there). */
pm_status pm_probe_start(const char *spec, pm_probe_health_fn health, void *ud,
			 unsigned *port, pm_probe **out, pm_err *err);

/* Closes the socket, waits for requests in flight, frees p. NULL: no-op. */
void pm_probe_stop(pm_probe *p);

#endif
