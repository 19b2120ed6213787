/* catalog.h — streaming readers for catalogs: CSV, JSON Lines, plain lists of
 * paths/URLs, and folders walked recursively.
 *
 * A reader yields one pm_record at a time and holds at most one record (plus
 * a bounded read buffer) in memory, so memory does not depend on catalog size.
 * A malformed row is not fatal: it comes back as a record whose status is
 * PM_ERR_CATALOG with a reason, and reading goes on with the next row. Only
 * an I/O failure of the catalog itself ends reading with an error status.
 *
 * Threads: a pm_catalog is used by one thread at a time (the ingest thread).
 * Different catalogs may be read on different threads at once.
 */
#ifndef PM_CATALOG_H
#define PM_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum pm_catalog_kind {
	PM_CATALOG_AUTO = 0, /* decide from the path and the first bytes */
	PM_CATALOG_CSV,
	PM_CATALOG_JSONL,
	PM_CATALOG_LIST,
	PM_CATALOG_FOLDER,
} pm_catalog_kind;

typedef struct pm_catalog_opts {
	pm_catalog_kind kind; /* PM_CATALOG_AUTO to detect */
	size_t max_field;     /* bytes in one field; 0 = 1 MiB */
	size_t max_record;    /* bytes in one record/line; 0 = 4 MiB */
	int max_columns;      /* CSV columns; 0 = 1024 */
	int folder_all_files; /* folder: 1 = every regular file, 0 = image
				 extensions only (jpg jpeg png webp gif tif tiff
				 bmp heic heif avif jxl, any case) */
} pm_catalog_opts;

/* One catalog entry. All strings are NUL-terminated UTF-8 owned by the
 * record; free the whole record with pm_record_free. */
typedef struct pm_record {
	uint64_t ordinal; /* 1-based position among the catalog's records
			     (header, blank and comment lines not counted) */
	char *key;	  /* stable resume key: "r<ordinal>" for CSV, JSONL and
			     lists; the path relative to the root for folders */
	char *id;	  /* the `id` column/field, or NULL */
	char *image;	  /* the image source: an absolute local path (relative
			     ones are resolved against the catalog's folder),
			     a file:// URL turned into its path, or any other
			     URL as written (http://...). NULL when malformed. */
	char *candidates; /* several image candidates (an image_urls column
			     or JSON array): "SRC [HINT] | SRC [HINT] ...",
			     each SRC resolved like `image` (see
			     ingest/candidates.h); image is then the first
			     one as written. NULL for a single image. */
	char *title;	  /* NULL when absent */
	char *price;	  /* as written (a JSON number is printed), or NULL */
	char *category;	  /* NULL when absent */
	char *
	    attrs_json;	  /* every other column/field as a compact JSON object
			     of strings (JSONL keeps JSON values); "{}" if none */
	pm_status status; /* PM_OK, or PM_ERR_CATALOG for a malformed row */
	int no_image;	  /* 1: malformed only because the row names no
			     image (an empty image column, or no image field
			     in JSONL); unlike other malformed rows it keeps
			     id, title, price, category and attrs_json, so an
			     image search provider can look for one
			     (fetch/provider.h) */
	char error[256];  /* the reason when status != PM_OK */
} pm_record;

typedef struct pm_catalog pm_catalog;

/* Opens path for reading. On success *out is owned by the caller (free with
 * pm_catalog_close). Fails with PM_ERR_NOT_FOUND, PM_ERR_IO, or
 * PM_ERR_CATALOG (e.g. a CSV without a usable header or no image column). */
pm_status pm_catalog_open(const char *path, const pm_catalog_opts *opts,
			  pm_catalog **out, pm_err *err);

/* Reads the next record. On PM_OK, *out is a new record owned by the caller,
 * or NULL at the end of the catalog. A malformed row is PM_OK with
 * (*out)->status == PM_ERR_CATALOG. Any other return is fatal for the
 * catalog (I/O error); *out is NULL then. */
pm_status pm_catalog_next(pm_catalog *c, pm_record **out, pm_err *err);

/* The kind actually used (after AUTO detection). */
pm_catalog_kind pm_catalog_kind_of(const pm_catalog *c);
const char *pm_catalog_kind_name(pm_catalog_kind k);
/* Parses "auto", "csv", "jsonl", "list", "folder"; -1 if unknown. */
int pm_catalog_kind_parse(const char *s);

void pm_catalog_close(pm_catalog *c);
void pm_record_free(pm_record *r);

/* For fuzzing and tests: reads a catalog of the given kind (not FOLDER) from
 * memory. Same contract as pm_catalog_open; data is copied. */
pm_status pm_catalog_open_mem(const void *data, size_t len,
			      pm_catalog_kind kind, const pm_catalog_opts *opts,
			      pm_catalog **out, pm_err *err);

#endif
