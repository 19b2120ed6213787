/* fuzz_record.c — libFuzzer target for the queued-record decoder
 * (src/ingest/record_json.c): any bytes either fail with PM_ERR_CATALOG
 * (or NOMEM) and no record, or give a record that keeps the catalog
 * readers' invariants (a key, attrs_json, an image exactly when it is ok)
 * and survives a round trip through pm_record_to_json unchanged.
 *
 * Threads: libFuzzer calls the entry point from one thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/record_json.h"

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pm_record *r = NULL, *r2 = NULL;
	pm_err err;
	char *txt = NULL;
	pm_status s = pm_record_from_json((const char *)data, size, &r, &err);

	if (s) {
		if (r || (s != PM_ERR_CATALOG && s != PM_ERR_NOMEM) ||
		    !memchr(err.msg, 0, sizeof err.msg))
			__builtin_trap();
		return 0;
	}
	if (!r || !r->key || !r->attrs_json ||
	    (r->status == PM_OK && (!r->image || r->no_image)))
		__builtin_trap();
	if (pm_record_to_json(r, &txt, &err))
		abort(); /* only on out of memory */
	if (pm_record_from_json(txt, strlen(txt), &r2, &err))
		__builtin_trap();
	if (r2->ordinal != r->ordinal || !same(r2->key, r->key) ||
	    !same(r2->id, r->id) || !same(r2->image, r->image) ||
	    !same(r2->candidates, r->candidates) ||
	    !same(r2->title, r->title) || !same(r2->price, r->price) ||
	    !same(r2->category, r->category) ||
	    !same(r2->attrs_json, r->attrs_json) || r2->status != r->status ||
	    r2->no_image != r->no_image ||
	    (r->status && strcmp(r2->error, r->error)))
		__builtin_trap();
	free(txt);
	pm_record_free(r);
	pm_record_free(r2);
	return 0;
}
