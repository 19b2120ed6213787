/* record_json.h — a catalog record (pm_record) as one JSON object and back:
 * how `run --enqueue-only` stores each record in the shared queue and how
 * `pixmill worker` reads it again on another machine.
 *
 * The text is the record's fields under their own names ("ordinal", "key",
 * "id", "image", "candidates", "title", "price", "category", "attrs_json"
 * (the attributes' JSON text, kept verbatim), "status" (pm_status_code
 * name), "no_image", "error"); absent strings are left out.
 *
 * pm_record_from_json treats its input as hostile (a queue row anyone with
 * database access may have written): anything that is not a well-formed
 * record fails with PM_ERR_CATALOG and a reason, never a crash.
 *
 * Threads: pure functions over their arguments; any thread.
 */
#ifndef PM_RECORD_JSON_H
#define PM_RECORD_JSON_H

#include <stddef.h>

#include "core/status.h"
#include "ingest/catalog.h"

/* Largest record text pm_record_from_json accepts (the catalog readers'
 * default record limit). */
#define PM_RECORD_JSON_MAX (4u << 20)

/* Compact JSON text of r; *out is malloc'd and the caller's (free).
 * PM_ERR_NOMEM, or PM_ERR_INTERNAL for a record without a key. */
pm_status pm_record_to_json(const pm_record *r, char **out, pm_err *err);

/* Parses len bytes of text into a new record *out (the caller's: free with
 * pm_record_free). PM_ERR_CATALOG with a reason for anything malformed
 * (not JSON, not an object, wrong types, missing key, unknown status, an
 * image-less record that says it is fine, attrs_json that is not a JSON
 * object, strings with NUL bytes, over PM_RECORD_JSON_MAX); PM_ERR_NOMEM.
 * *out is NULL on failure. */
pm_status pm_record_from_json(const char *text, size_t len, pm_record **out,
			      pm_err *err);

#endif
