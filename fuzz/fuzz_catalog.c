/* fuzz_catalog.c — libFuzzer target for the catalog readers: reads the input
 * as CSV, JSON Lines and a list (pm_catalog_open_mem), with default and with
 * tiny limits, drains every record and frees everything.
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ingest/catalog.h"

/* Reads data as kind under opts until the end or a fatal error. */
static void drain(const uint8_t *data, size_t size, pm_catalog_kind kind,
		  const pm_catalog_opts *opts)
{
	pm_catalog *c = NULL;
	pm_record *r = NULL;
	pm_err err;

	if (pm_catalog_open_mem(data, size, kind, opts, &c, &err) != PM_OK)
		return;
	while (pm_catalog_next(c, &r, &err) == PM_OK && r) {
		/* Every string is NUL-terminated; touch them all. */
		if (!r->key || !r->attrs_json ||
		    (r->status == PM_OK) != (r->image != NULL))
			__builtin_trap();
		if (r->status != PM_OK && !memchr(r->error, 0, sizeof r->error))
			__builtin_trap();
		(void)strlen(r->key);
		pm_record_free(r); /* the record was ours */
	}
	pm_catalog_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const pm_catalog_kind kinds[] = {
	    PM_CATALOG_CSV, PM_CATALOG_JSONL, PM_CATALOG_LIST, PM_CATALOG_AUTO};
	static const pm_catalog_opts tiny = {
	    .max_field = 7, .max_record = 33, .max_columns = 4};

	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		drain(data, size, kinds[i], NULL);
		drain(data, size, kinds[i], &tiny);
	}
	return 0;
}
