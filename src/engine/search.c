/* search.c — exact nearest-neighbour search over embeddings and
 * perceptual hashes; see search.h.
 *
 * The vector scan is the hot loop: rows are 64-byte aligned and padded
 * with zeros to a multiple of LANES floats, and the dot product keeps
 * LANES independent partial sums in four 128-bit vector registers, so it
 * runs as packed multiply-adds at -O2 without -ffast-math (GCC does not
 * reassociate one float sum by itself; its auto-vectorised version of a
 * 16-float accumulator array kept the array in memory, measured slower). Top-k
 * is a small sorted array with an early reject against its worst entry.
 *
 * Threads: building (new/add/load) on one thread; topk on any number of
 * threads once built.
 */
#include "engine/search.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16 /* floats per partial-sum block: 64 bytes */

struct pm_vecset {
	int dim;	 /* floats per vector */
	size_t stride;	 /* floats per row: dim rounded up to LANES */
	size_t n, cap;	 /* rows used, rows allocated */
	float *v;	 /* cap * stride floats, 64-byte aligned; owned */
	char (*sha)[65]; /* cap source hashes; owned */
};

pm_status pm_vecset_new(int dim, pm_vecset **out, pm_err *err)
{
	pm_vecset *vs;

	*out = NULL;
	if (dim < 0 || dim > 65536)
		return pm_fail(err, PM_ERR_INTERNAL, "vecset: bad dim %d", dim);
	vs = calloc(1, sizeof *vs);
	if (!vs)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	vs->dim = dim;
	vs->stride = ((size_t)dim + LANES - 1) / LANES * LANES;
	*out = vs;
	return PM_OK;
}

static pm_status grow(pm_vecset *vs, pm_err *err)
{
	size_t cap = vs->cap ? vs->cap * 2 : 1024;
	size_t bytes = cap * vs->stride * sizeof(float);
	float *v = aligned_alloc(64, bytes ? bytes : 64);
	char(*sha)[65] = realloc(vs->sha, cap * sizeof *vs->sha);

	if (!v || !sha) {
		free(v);
		if (sha)
			vs->sha = sha;
		return pm_fail(err, PM_ERR_NOMEM, "out of memory (%zu vectors)",
			       cap);
	}
	if (vs->n)
		memcpy(v, vs->v, vs->n * vs->stride * sizeof(float));
	free(vs->v);
	vs->v = v;
	vs->sha = sha;
	vs->cap = cap;
	return PM_OK;
}

pm_status pm_vecset_add(pm_vecset *vs, const char *sha256, const float *vec,
			pm_err *err)
{
	pm_status s;
	float *row;

	if (vs->n == vs->cap && (s = grow(vs, err)))
		return s;
	row = vs->v + vs->n * vs->stride;
	memcpy(row, vec, (size_t)vs->dim * sizeof *row);
	memset(row + vs->dim, 0, (vs->stride - (size_t)vs->dim) * sizeof *row);
	snprintf(vs->sha[vs->n], 65, "%s", sha256 ? sha256 : "");
	vs->n++;
	return PM_OK;
}

typedef struct load_ctx {
	pm_vecset *vs;
	pm_status s;
	pm_err *err;
} load_ctx;

static int load_cb(const char *sha256, const float *vec, int dim, void *ud)
{
	load_ctx *c = ud;

	if (c->vs->dim == 0 && c->vs->n == 0) {
		c->vs->dim = dim;
		c->vs->stride = ((size_t)dim + LANES - 1) / LANES * LANES;
	}
	if (dim != c->vs->dim)
		return 0;
	c->s = pm_vecset_add(c->vs, sha256, vec, c->err);
	return c->s != PM_OK;
}

pm_status pm_vecset_load(pm_store *st, const char *model, pm_vecset **out,
			 pm_err *err)
{
	load_ctx c = {NULL, PM_OK, err};
	pm_status s = pm_vecset_new(0, &c.vs, err);

	*out = NULL;
	if (s)
		return s;
	s = pm_store_embeddings(st, model, load_cb, &c, err);
	if (!s)
		s = c.s;
	if (s) {
		pm_vecset_free(c.vs);
		return s;
	}
	*out = c.vs;
	return PM_OK;
}

size_t pm_vecset_count(const pm_vecset *vs)
{
	return vs->n;
}

int pm_vecset_dim(const pm_vecset *vs)
{
	return vs->dim;
}

const char *pm_vecset_sha(const pm_vecset *vs, size_t i)
{
	return i < vs->n ? vs->sha[i] : NULL;
}

void pm_vecset_free(pm_vecset *vs)
{
	if (!vs)
		return;
	free(vs->v);
	free(vs->sha);
	free(vs);
}

/* Four 4-float partial sums (GCC/Clang vector extensions: SSE2 on x86-64,
 * NEON on arm64, plain code elsewhere; no intrinsics, no -ffast-math). */
typedef float v4f __attribute__((vector_size(16)));

/* Dot product of two rows of stride floats (a multiple of LANES), both
 * 64-byte aligned. The partial sums stay in registers; the order of the
 * additions differs from a plain loop only in the last bits. */
static float dot(const float *restrict a, const float *restrict b,
		 size_t stride)
{
	const v4f *pa = __builtin_assume_aligned(a, 64);
	const v4f *pb = __builtin_assume_aligned(b, 64);
	v4f s0 = {0, 0, 0, 0}, s1 = s0, s2 = s0, s3 = s0;

	for (size_t j = 0; j < stride / 4; j += 4) {
		s0 += pa[j] * pb[j];
		s1 += pa[j + 1] * pb[j + 1];
		s2 += pa[j + 2] * pb[j + 2];
		s3 += pa[j + 3] * pb[j + 3];
	}
	v4f s = (s0 + s1) + (s2 + s3);
	return (s[0] + s[1]) + (s[2] + s[3]);
}

float pm_vecset_score(const pm_vecset *vs, size_t i, const float *q)
{
	const float *row = vs->v + i * vs->stride;
	float sum = 0;

	for (int j = 0; i < vs->n && j < vs->dim; j++)
		sum += row[j] * q[j];
	return sum;
}

int pm_vecset_topk(const pm_vecset *vs, const float *q, int k,
		   const char *exclude, pm_vec_hit *hits)
{
	float *qa;
	int n = 0;

	if (k < 1 || vs->n == 0 || vs->dim == 0)
		return 0;
	qa = aligned_alloc(64, vs->stride * sizeof *qa);
	if (!qa)
		return 0;
	memcpy(qa, q, (size_t)vs->dim * sizeof *qa);
	memset(qa + vs->dim, 0, (vs->stride - (size_t)vs->dim) * sizeof *qa);
	for (size_t i = 0; i < vs->n; i++) {
		float sc = dot(vs->v + i * vs->stride, qa, vs->stride);
		if (n == k && !(sc > hits[n - 1].score))
			continue;
		if (exclude && strcmp(vs->sha[i], exclude) == 0)
			continue;
		int j = n < k ? n++ : n - 1;
		while (j > 0 && hits[j - 1].score < sc) {
			hits[j] = hits[j - 1];
			j--;
		}
		hits[j] = (pm_vec_hit){i, sc};
	}
	free(qa);
	return n;
}

/* ---- perceptual hashes ---- */

pm_status pm_hashset_add(pm_hashset *hs, const char *sha256, uint64_t h,
			 pm_err *err)
{
	if (hs->n == hs->cap) {
		size_t cap = hs->cap ? hs->cap * 2 : 1024;
		uint64_t *nh = realloc(hs->h, cap * sizeof *nh);
		if (nh)
			hs->h = nh;
		char(*ns)[65] = realloc(hs->sha, cap * sizeof *ns);
		if (ns)
			hs->sha = ns;
		if (!nh || !ns)
			return pm_fail(err, PM_ERR_NOMEM, "out of memory");
		hs->cap = cap;
	}
	hs->h[hs->n] = h;
	snprintf(hs->sha[hs->n], 65, "%s", sha256 ? sha256 : "");
	hs->n++;
	return PM_OK;
}

typedef struct hload_ctx {
	pm_hashset *hs;
	pm_status s;
	pm_err *err;
	char last[65]; /* one per source: assets of one sha256 in a row */
} hload_ctx;

static int hload_cb(const char *sha, const char *ph, uint64_t h, void *ud)
{
	hload_ctx *c = ud;

	(void)ph;
	if (!sha || strcmp(sha, c->last) == 0)
		return 0;
	snprintf(c->last, sizeof c->last, "%s", sha);
	c->s = pm_hashset_add(c->hs, sha, h, c->err);
	return c->s != PM_OK;
}

typedef struct sha_ref {
	const char *sha;
	size_t i;
} sha_ref;

static int cmp_ref(const void *a, const void *b)
{
	const sha_ref *x = a, *y = b;
	int c = strcmp(x->sha, y->sha);

	return c ? c : (x->i > y->i) - (x->i < y->i);
}

pm_status pm_hashset_load(pm_store *st, pm_hashset *hs, pm_err *err)
{
	hload_ctx c = {hs, PM_OK, err, ""};
	sha_ref *r = NULL;
	bool *keep = NULL;
	pm_status s;
	size_t m = 0;

	memset(hs, 0, sizeof *hs);
	s = pm_store_phashes(st, hload_cb, &c, err);
	if (!s)
		s = c.s;
	if (s || hs->n < 2)
		goto out;
	/* The same source under several pipelines may come in any order:
	 * keep its first entry only. */
	r = malloc(hs->n * sizeof *r);
	keep = calloc(hs->n, sizeof *keep);
	if (!r || !keep) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < hs->n; i++)
		r[i] = (sha_ref){hs->sha[i], i};
	qsort(r, hs->n, sizeof *r, cmp_ref);
	for (size_t i = 0; i < hs->n; i++)
		keep[r[i].i] = i == 0 || strcmp(r[i - 1].sha, r[i].sha) != 0;
	for (size_t i = 0; i < hs->n; i++)
		if (keep[i]) {
			hs->h[m] = hs->h[i];
			memmove(hs->sha[m], hs->sha[i], 65);
			m++;
		}
	hs->n = m;
out:
	free(r);
	free(keep);
	if (s)
		pm_hashset_clear(hs);
	return s;
}

void pm_hashset_clear(pm_hashset *hs)
{
	free(hs->h);
	free(hs->sha);
	memset(hs, 0, sizeof *hs);
}

int pm_hashset_topk(const pm_hashset *hs, uint64_t q, int k, int max_d,
		    const char *exclude, pm_hash_hit *hits)
{
	int n = 0;

	if (k < 1)
		return 0;
	for (size_t i = 0; i < hs->n; i++) {
		int d = __builtin_popcountll(hs->h[i] ^ q);
		if (d > max_d || (n == k && d >= hits[n - 1].distance))
			continue;
		if (exclude && strcmp(hs->sha[i], exclude) == 0)
			continue;
		int j = n < k ? n++ : n - 1;
		while (j > 0 && hits[j - 1].distance > d) {
			hits[j] = hits[j - 1];
			j--;
		}
		hits[j] = (pm_hash_hit){i, d};
	}
	return n;
}
