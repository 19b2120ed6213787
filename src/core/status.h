/* status.h — the one status enum of pixmill, and the per-call error buffer.
 *
 * Every function that can fail returns a pm_status. The human-readable detail
 * is written once, where the failure is first detected, into a pm_err that the
 * caller passed down; callers just pass the status up. The enum is only ever
 * appended to: its names are stored in databases and shown over HTTP, so a
 * value's meaning never changes.
 *
 * Threads: every function here is pure or writes only the caller's pm_err,
 * so any thread may call them.
 */
#ifndef PM_STATUS_H
#define PM_STATUS_H

#include <stddef.h>

typedef enum pm_status {
	PM_OK = 0,
	PM_ERR_NOMEM,	    /* allocation failed or memory budget refused */
	PM_ERR_IO,	    /* a file could not be read, written or synced */
	PM_ERR_NOT_FOUND,   /* a file, job, item or asset does not exist */
	PM_ERR_USAGE,	    /* bad command line or option value */
	PM_ERR_CATALOG,	    /* a malformed catalog row or file */
	PM_ERR_UNSUPPORTED, /* image format or URL scheme we do not handle */
	PM_ERR_TOO_LARGE,   /* over a bytes/pixels/dimension/frames limit */
	PM_ERR_DECODE,	    /* corrupt, truncated or undecodable image */
	PM_ERR_ENCODE,	    /* an output could not be encoded */
	PM_ERR_STORE,	    /* database error */
	PM_ERR_PIPELINE,    /* a pipeline file is malformed */
	PM_ERR_CANCELLED,   /* interrupted by a signal or shutdown */
	PM_ERR_INTERNAL,    /* a bug: an invariant did not hold */
	PM_ERR_MISMATCH,    /* declared type differs from sniffed content */
	PM_ERR_LOCKED,	    /* another process holds the resource */
	PM_ERR_AUTH,	    /* no or wrong API key */
	PM_ERR_RATE,	    /* over a rate limit: retry later */
	PM_ERR_BUSY,	    /* queue full or draining: retry later */
	PM_ERR_METHOD,	    /* the route exists, not with this method */
	PM_ERR_CONFLICT,    /* not in a state that allows it */
	PM_ERR_TOO_SMALL,   /* under --min-dimension */
	PM_ERR_UPSTREAM,    /* a remote service (vision model) answered badly */
	PM_ERR_REJECTED,    /* an image that does not pass the checks of the
			       verify stage (quality, product match) */
	PM_STATUS_COUNT
} pm_status;

/* Detail for the last failure. Fixed size so it can live on the stack or in
 * an item without allocation; messages longer than this are truncated. */
typedef struct pm_err {
	char msg[512];
} pm_err;

/* Stable snake_case code for a status, e.g. "decode_error". Never NULL. */
const char *pm_status_code(pm_status s);
/* Process exit code for a status: 0 ok, 1 items failed (set by callers),
 * 2 usage, 3 input (catalog/pipeline), 4 store/io, 5 internal, 130 cancel. */
int pm_status_exit(pm_status s);
/* HTTP status for an API answer about this status. */
int pm_status_http(pm_status s);

/* Writes a message into err (if err is not NULL) and returns s, so a failure
 * site reads: return pm_fail(err, PM_ERR_IO, "open %s: %s", p, strerror(e)); */
pm_status pm_fail(pm_err *err, pm_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
