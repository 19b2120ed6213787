/* status.c — names, exit codes and HTTP codes for pm_status.
 *
 * The table below is the only place a status is mapped to anything else.
 * Threads: any.
 */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>

static const struct {
	const char *code; /* stable name stored in the database */
	int exit;	  /* process exit code */
	int http;	  /* HTTP answer code */
} status_table[PM_STATUS_COUNT] = {
    [PM_OK] = {"ok", 0, 200},
    [PM_ERR_NOMEM] = {"out_of_memory", 4, 503},
    [PM_ERR_IO] = {"io_error", 4, 500},
    [PM_ERR_NOT_FOUND] = {"not_found", 3, 404},
    [PM_ERR_USAGE] = {"usage", 2, 400},
    [PM_ERR_CATALOG] = {"bad_catalog_row", 3, 400},
    [PM_ERR_UNSUPPORTED] = {"unsupported", 3, 415},
    [PM_ERR_TOO_LARGE] = {"too_large", 3, 413},
    [PM_ERR_DECODE] = {"decode_error", 3, 422},
    [PM_ERR_ENCODE] = {"encode_error", 5, 500},
    [PM_ERR_STORE] = {"store_error", 4, 503},
    [PM_ERR_PIPELINE] = {"bad_pipeline", 3, 400},
    [PM_ERR_CANCELLED] = {"cancelled", 130, 499},
    [PM_ERR_INTERNAL] = {"internal", 5, 500},
    [PM_ERR_MISMATCH] = {"type_mismatch", 3, 415},
    [PM_ERR_LOCKED] = {"locked", 4, 409},
    [PM_ERR_AUTH] = {"unauthorized", 2, 401},
    [PM_ERR_RATE] = {"rate_limited", 4, 429},
    [PM_ERR_BUSY] = {"overloaded", 4, 503},
    [PM_ERR_METHOD] = {"method_not_allowed", 2, 405},
    [PM_ERR_CONFLICT] = {"conflict", 2, 409},
    [PM_ERR_TOO_SMALL] = {"too_small", 3, 422},
    [PM_ERR_UPSTREAM] = {"upstream_error", 4, 502},
    [PM_ERR_REJECTED] = {"rejected", 3, 422},
};

const char *pm_status_code(pm_status s)
{
	if ((unsigned)s >= PM_STATUS_COUNT)
		return "unknown";
	return status_table[s].code;
}

int pm_status_exit(pm_status s)
{
	if ((unsigned)s >= PM_STATUS_COUNT)
		return 5;
	return status_table[s].exit;
}

int pm_status_http(pm_status s)
{
	if ((unsigned)s >= PM_STATUS_COUNT)
		return 500;
	return status_table[s].http;
}

pm_status pm_fail(pm_err *err, pm_status s, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return s;
}
