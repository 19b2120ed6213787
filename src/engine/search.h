/* search.h — nearest images: exact brute-force search over embeddings
 * (cosine) and perceptual hashes (Hamming distance), and duplicate groups.
 *
 * A pm_vecset holds the vectors of one model contiguously (64-byte
 * aligned rows, zero-padded to a multiple of 16 floats) so one query is a
 * streaming pass of dot products that the compiler vectorises; at 176
 * floats a vector that is ~70 MB per 100k vectors (docs/BENCHMARKS.md has
 * the measured latency and where an ANN index would take over).
 *
 * Threads: a pm_vecset / pm_hashset is built by one thread; once built it
 * is read-only and any number of threads may query it at once.
 */
#ifndef PM_SEARCH_H
#define PM_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "store/store.h"

typedef struct pm_vecset pm_vecset;

/* An empty set of dim-float vectors. *out is the caller's (pm_vecset_free). */
pm_status pm_vecset_new(int dim, pm_vecset **out, pm_err *err);
/* Appends a copy of vec (dim floats) under sha256 (64 hex). */
pm_status pm_vecset_add(pm_vecset *vs, const char *sha256, const float *vec,
			pm_err *err);
/* Loads every vector of model from the store; vectors of another length
 * than the first are skipped. *out is the caller's; an empty store gives
 * an empty set (dim 0). */
pm_status pm_vecset_load(pm_store *st, const char *model, pm_vecset **out,
			 pm_err *err);
size_t pm_vecset_count(const pm_vecset *vs);
int pm_vecset_dim(const pm_vecset *vs);
/* sha256 of vector i (owned by vs). */
const char *pm_vecset_sha(const pm_vecset *vs, size_t i);
void pm_vecset_free(pm_vecset *vs);
/* Cosine similarity of vector i and q (dim floats, unit length). */
float pm_vecset_score(const pm_vecset *vs, size_t i, const float *q);

typedef struct pm_vec_hit {
	size_t index; /* into the set */
	float score;  /* cosine similarity (dot product of unit vectors) */
} pm_vec_hit;

/* The k most similar vectors to q (dim floats, unit length), best first;
 * returns how many were written to hits (min(k, count)). exclude: a
 * sha256 to leave out (the query's own), or NULL. */
int pm_vecset_topk(const pm_vecset *vs, const float *q, int k,
		   const char *exclude, pm_vec_hit *hits);

/* ---- perceptual hashes ---- */

typedef struct pm_hashset {
	size_t n, cap;
	uint64_t *h;	 /* n hashes */
	char (*sha)[65]; /* n source hashes */
} pm_hashset;

/* Every asset's pHash from the store, one per source. hs is zeroed first;
 * free with pm_hashset_clear. */
pm_status pm_hashset_load(pm_store *st, pm_hashset *hs, pm_err *err);
pm_status pm_hashset_add(pm_hashset *hs, const char *sha256, uint64_t h,
			 pm_err *err);
void pm_hashset_clear(pm_hashset *hs);

typedef struct pm_hash_hit {
	size_t index;
	int distance; /* Hamming distance, 0..64 */
} pm_hash_hit;

/* The k nearest hashes to q with distance <= max_d, nearest first (ties
 * in set order); returns how many. exclude as for pm_vecset_topk. */
int pm_hashset_topk(const pm_hashset *hs, uint64_t q, int k, int max_d,
		    const char *exclude, pm_hash_hit *hits);

#endif
