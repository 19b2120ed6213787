/* outstore.h — the output store: where the files stages make (thumbnails,
 * cut-outs, ads) are written and read back, by key.
 *
 * A key is an output's path relative to the output root, exactly what the
 * store records as pm_output_rec.path, e.g.
 * "ab/cd/abcd…ef-0123456789ab/512.webp" (see docs/OUTPUTS.md). Keys are
 * content-addressed (source hash + pipeline hash + output name), so the same
 * key always names the same bytes: writing a key twice, from two threads,
 * two processes or two machines, is harmless.
 *
 * The interface is a small vtable so that an S3-compatible backend can be
 * added next to the local one (docs/OUTPUTS.md, "An S3-compatible backend",
 * says which calls each slot maps to). Callers use the pm_outstore_*
 * functions below, never the slots. Every slot of a backend is filled.
 *
 * Backends today:
 *   local  a folder on a local or network filesystem (NFS, CephFS): a put
 *          writes a temporary file in the store's temp folder (which must
 *          be on the same filesystem), optionally fsyncs it, and renames it
 *          over the key, so readers see the old object, the new one or none,
 *          never a partial one.
 *
 * Threads: a pm_outstore is immutable after open; every function may be
 * called from any number of threads at once on one store (the local
 * backend keeps no mutable state but its root folder descriptor). Open and
 * close are the owner's: close only when no other thread uses the store.
 * Separate processes may open stores on the same root at the same time.
 */
#ifndef PM_OUTSTORE_H
#define PM_OUTSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct pm_outstore pm_outstore;

/* The backend vtable. Each slot has the meaning of the pm_outstore_*
 * function of the same name; keys reaching a slot are already checked
 * (pm_outstore_key_ok). */
typedef struct pm_outstore_vt {
	const char *name; /* "local" */
	pm_status (*put)(pm_outstore *os, const char *key, const void *buf,
			 size_t len, bool sync, pm_err *err);
	pm_status (*stat)(pm_outstore *os, const char *key, int64_t *size,
			  pm_err *err);
	pm_status (*get)(pm_outstore *os, const char *key, uint64_t max,
			 void **buf, size_t *len, pm_err *err);
	pm_status (*open_fd)(pm_outstore *os, const char *key, int *fd,
			     int64_t *size, pm_err *err);
	pm_status (*url)(pm_outstore *os, const char *key, char *out, size_t n,
			 pm_err *err);
	pm_status (*flush)(pm_outstore *os, pm_err *err);
	void (*close)(pm_outstore *os);
} pm_outstore_vt;

/* Every backend's handle starts with this (the backend's own struct
 * embeds it as its first member). */
struct pm_outstore {
	const pm_outstore_vt *vt;
};

/* Opens the local backend on root (an existing folder; made absolute
 * here). tmp_dir is the folder for temporary files: it must exist and be on
 * the same filesystem as root; NULL puts each temporary file next to its
 * key's file (".NAME.RANDOM.tmp"), where a crash can leave one. Both strings
 * are copied. On success *out is the caller's, freed with pm_outstore_close.
 */
pm_status pm_outstore_local_open(const char *root, const char *tmp_dir,
				 pm_outstore **out, pm_err *err);

/* true if key is a usable relative key: 1 to 1023 bytes, not starting or
 * ending with '/', no empty, "." or ".." segment, no byte below 0x20 and no
 * backslash. Anything read from a database goes through this. */
bool pm_outstore_key_ok(const char *key);

/* Stores buf[0..len) under key, replacing what is there, atomically: a
 * concurrent reader or a crash sees the previous object (or none) or the
 * whole new one, never a part. sync: make the object durable before
 * returning (fsync; a backend whose put is durable ignores it). Missing
 * folders of the key are made. Idempotent: putting the bytes a key already
 * holds is fine, and so are concurrent puts of one key. */
pm_status pm_outstore_put(pm_outstore *os, const char *key, const void *buf,
			  size_t len, bool sync, pm_err *err);
/* Whether key holds an object (*exists), or an error for a failure other
 * than its absence. */
pm_status pm_outstore_exists(pm_outstore *os, const char *key, bool *exists,
			     pm_err *err);
/* The object's size in bytes; PM_ERR_NOT_FOUND if key holds none. */
pm_status pm_outstore_stat(pm_outstore *os, const char *key, int64_t *size,
			   pm_err *err);
/* Reads the whole object, at most max bytes (PM_ERR_TOO_LARGE past that);
 * *buf is malloc'd and the caller's. PM_ERR_NOT_FOUND if absent. */
pm_status pm_outstore_get(pm_outstore *os, const char *key, uint64_t max,
			  void **buf, size_t *len, pm_err *err);
/* A read-only descriptor on the object and its size, for sendfile-style
 * serving; *fd is the caller's to close. PM_ERR_NOT_FOUND if absent,
 * PM_ERR_UNSUPPORTED for a backend without local files (use url). */
pm_status pm_outstore_open_fd(pm_outstore *os, const char *key, int *fd,
			      int64_t *size, pm_err *err);
/* Where the object can be addressed from outside: the local backend gives
 * "file://" and the absolute path (percent-encoded); a remote backend an
 * https URL. Does not check that the object exists. PM_ERR_TOO_LARGE if it
 * does not fit in out[n]. */
pm_status pm_outstore_url(pm_outstore *os, const char *key, char *out, size_t n,
			  pm_err *err);
/* Makes every put so far durable (--durability batch): syncfs on the local
 * root; nothing to do for a backend whose puts are durable. */
pm_status pm_outstore_flush(pm_outstore *os, pm_err *err);
/* The backend's name, "local". */
const char *pm_outstore_backend(const pm_outstore *os);
/* Frees the store (NULL is fine). No other thread may be using it. */
void pm_outstore_close(pm_outstore *os);

#endif
