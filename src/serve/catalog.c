/* catalog.c — the dashboard's catalog views over HTTP: the gallery of
 * images with its filters (GET /api/images) and one image's page
 * (GET /api/images/{sha256}: its outputs, facts, OCR text, caption and
 * tags, the items made from it, its duplicates and similar images).
 *
 * Both are quick handlers on the HTTP threads: every answer is a few store
 * queries plus, for duplicates and similar images, exact scans
 * (engine/search.h) of the stored perceptual hashes and, for one image's
 * page, of the stored vectors, both loaded per request (6 and 36 ms at
 * 10k images, 0.34 and 0.56 s at 100k: docs/BENCHMARKS.md "Search";
 * kept in memory, they would cost only the scan). A gallery page filtered
 * to duplicates compares each candidate's hash with every one, n^2
 * Hamming distances like `pixmill dupes` (docs/API.md says so).
 *
 * Threads: srv_h_images and srv_h_image_get on libmicrohttpd's threads,
 * each with the store connection its request borrowed (srv_store);
 * nothing here is shared between requests.
 */
#define _GNU_SOURCE
#include "serve/serve.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "engine/search.h"
#include "stages/embed.h"

#define GALLERY_MAX	 200 /* images per page */
#define CURSOR_MAX	 1000000
#define NEAR_DISTANCE	 6 /* pHash bits: `pixmill dupes`' default */
#define NEAR_MAX	 24
#define SIMILAR_MAX	 8
#define SIMILAR_MIN_COS	 0.50f
#define EMBED_CAP_FLOATS 4096

static bool hex64(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* "true"/"1" -> true, "false"/"0"/absent -> false; anything else is a
 * usage error (false returned in *ok). */
static bool bool_arg(srv_req *q, const char *name, bool *ok)
{
	const char *v = srv_arg(q, name);

	if (!v || !*v || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		return false;
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		return true;
	*ok = false;
	return false;
}

/* The facts the gallery and the page read from an asset's meta_json:
 * new references into meta (owned by meta). */
typedef struct meta_view {
	const char *caption; /* NULL if none */
	json_t *tags;	     /* array or NULL */
} meta_view;

static meta_view view_of(json_t *meta)
{
	meta_view v = {NULL, NULL};
	json_t *an = json_object_get(meta, "analysis");
	const char *cap = json_string_value(json_object_get(meta, "caption"));

	if (cap && *cap)
		v.caption = cap;
	if (json_is_array(json_object_get(an, "tags")))
		v.tags = json_object_get(an, "tags");
	return v;
}

/* Other sources whose pHash is within NEAR_DISTANCE bits of h. */
static int near_of(const pm_hashset *hs, const pm_image_info *in,
		   pm_hash_hit *hits, int k)
{
	if (!in->has_phash || !hs->n)
		return 0;
	return pm_hashset_topk(hs, in->phash, k, NEAR_DISTANCE, in->sha256,
			       hits);
}

/* The outputs of the asset in, as a new array; NULL after an error put in
 * *s and e. */
static json_t *outputs_of(pm_store *st, const pm_image_info *in, pm_status *s,
			  pm_err *e)
{
	json_t *outs = json_array();

	if (!outs) {
		*s = pm_fail(e, PM_ERR_NOMEM, "out of memory");
		return NULL;
	}
	*s = srv_outputs_json(st, in->sha256, in->pipeline_hash, outs, e);
	if (*s) {
		json_decref(outs);
		return NULL;
	}
	return outs;
}

/* ---- GET /api/images ---- */

typedef struct gallery_ctx {
	pm_store *st;
	const pm_hashset *hs; /* loaded for the dupes filter and the badge */
	bool dupes_only;
	int64_t skip, limit; /* paging: matches to skip, then to keep */
	int64_t seen;	     /* matches so far */
	json_t *arr;
	bool more; /* a match past the page exists */
	pm_status err;
	pm_err e;
} gallery_ctx;

static int gallery_cb(const pm_image_info *in, void *ud)
{
	gallery_ctx *c = ud;
	pm_hash_hit hit;
	int near = near_of(c->hs, in, &hit, 1);
	json_t *meta, *outs, *j;
	meta_view v;

	if (c->dupes_only && in->items < 2 && near == 0)
		return 0;
	if (c->seen++ < c->skip)
		return 0;
	if ((int64_t)json_array_size(c->arr) == c->limit) {
		c->more = true;
		return 1;
	}
	outs = outputs_of(c->st, in, &c->err, &c->e);
	if (!outs)
		return 1;
	meta = in->meta_json ? json_loads(in->meta_json, 0, NULL) : NULL;
	v = view_of(meta);
	j = json_pack("{s:s,s:s?,s:i,s:i,s:I,s:s?,s:s?,s:I,s:b,s:b,s:s?,s:O?,"
		      "s:f,s:o}",
		      "sha256", in->sha256, "format", in->format, "width",
		      in->width, "height", in->height, "bytes",
		      (json_int_t)in->bytes, "title", in->title, "image",
		      in->image, "items", (json_int_t)in->items, "has_text",
		      in->has_text, "duplicate", in->items > 1 || near > 0,
		      "caption", v.caption, "tags", v.tags, "created",
		      in->created, "outputs", outs);
	json_decref(meta);
	if (!j) {
		c->err = pm_fail(&c->e, PM_ERR_NOMEM, "out of memory");
		return 1;
	}
	json_array_append_new(c->arr, j);
	return 0;
}

void srv_h_images(srv_req *q)
{
	const char *text = srv_arg(q, "q"), *fmt = srv_arg(q, "format");
	const char *tag = srv_arg(q, "tag"), *cur = srv_arg(q, "cursor");
	char match[1200], next[32];
	pm_image_query iq = {0};
	pm_hashset hs = {0};
	gallery_ctx c = {0};
	int64_t limit, job, skip;
	bool ok = true;
	pm_status st;

	if (!pm_http_int_param(srv_arg(q, "limit"), 1, GALLERY_MAX, 48,
			       &limit) ||
	    !pm_http_int_param(srv_arg(q, "job"), 1, INT64_MAX, 0, &job) ||
	    !pm_http_int_param(cur, 0, CURSOR_MAX, 0, &skip)) {
		srv_reply_error(q, PM_ERR_USAGE,
				"limit wants 1 to %d, job a job id and cursor "
				"a value from next_cursor",
				GALLERY_MAX);
		return;
	}
	iq.has_text = bool_arg(q, "has_text", &ok);
	iq.has_caption = bool_arg(q, "has_caption", &ok);
	c.dupes_only = bool_arg(q, "duplicates", &ok);
	if (!ok) {
		srv_reply_error(q, PM_ERR_USAGE,
				"has_text, has_caption and duplicates want "
				"true or false");
		return;
	}
	if (fmt && *fmt &&
	    (strlen(fmt) > 16 ||
	     strspn(fmt, "abcdefghijklmnopqrstuvwxyz0123456789") !=
		 strlen(fmt))) {
		srv_reply_error(q, PM_ERR_USAGE,
				"format wants a format name such as jpeg or "
				"png");
		return;
	}
	if (tag && strlen(tag) > 64) {
		srv_reply_error(q, PM_ERR_USAGE, "tag wants at most 64 bytes");
		return;
	}
	if (text && *text) {
		if (strlen(text) > 1000 ||
		    !pm_store_fts_query(text, match, sizeof match)) {
			srv_reply_error(q, PM_ERR_USAGE,
					"q wants some words to search for (at "
					"most 1000 bytes)");
			return;
		}
		iq.match = match;
	}
	iq.job_id = job;
	iq.format = fmt && *fmt ? fmt : NULL;
	iq.tag = tag && *tag ? tag : NULL;
	c.st = srv_store(q->s, &c.e);
	if (!c.st) {
		srv_reply_error(q, PM_ERR_STORE, "%s", c.e.msg);
		return;
	}
	st = pm_hashset_load(c.st, &hs, &c.e);
	if (st) {
		srv_reply_error(q, st, "%s", c.e.msg);
		return;
	}
	c.hs = &hs;
	c.skip = skip;
	c.limit = limit;
	c.arr = json_array();
	st = pm_store_images(c.st, &iq, gallery_cb, &c, &c.e);
	pm_hashset_clear(&hs);
	if (!st)
		st = c.err;
	if (st || !c.arr) {
		json_decref(c.arr);
		if (!st)
			st = pm_fail(&c.e, PM_ERR_NOMEM, "out of memory");
		srv_reply_error(q, st, "%s", c.e.msg);
		return;
	}
	snprintf(next, sizeof next, "%lld",
		 (long long)(skip + (int64_t)json_array_size(c.arr)));
	srv_reply_json(
	    q, 200,
	    json_pack("{s:o,s:s?}", "images", c.arr, "next_cursor",
		      c.more && skip + limit <= CURSOR_MAX ? next : NULL));
}

/* ---- GET /api/images/{sha256} ---- */

typedef struct page_ctx {
	pm_store *st;
	json_t *assets;	      /* [{pipeline_hash, ...}], newest first */
	json_t *meta_all;     /* the metas, to read OCR/caption from */
	pm_image_info first;  /* the newest asset's facts */
	char sha[65], ph[65]; /* of the newest asset */
	char title[512];      /* a title, "" if none */
	pm_status err;
	pm_err e;
} page_ctx;

static json_t *num_or_null(double v)
{
	return isnan(v) ? json_null() : json_real(v);
}

static int asset_cb(const pm_image_info *in, void *ud)
{
	page_ctx *c = ud;
	json_t *meta, *colors, *j;
	json_t *outs = outputs_of(c->st, in, &c->err, &c->e);
	char ph[17] = "";

	if (!outs)
		return 1;
	meta = in->meta_json ? json_loads(in->meta_json, 0, NULL) : NULL;
	colors = in->colors_json ? json_loads(in->colors_json, 0, NULL) : NULL;
	if (json_array_size(c->assets) == 0) {
		c->first = *in;
		snprintf(c->sha, sizeof c->sha, "%s", in->sha256);
		snprintf(c->ph, sizeof c->ph, "%s", in->pipeline_hash);
		snprintf(c->title, sizeof c->title, "%s",
			 in->title ? in->title : "");
		c->first.sha256 = c->sha;
		c->first.pipeline_hash = c->ph;
		c->first.title = c->title;
		c->first.meta_json = c->first.colors_json = c->first.format =
		    c->first.image = NULL;
	}
	if (in->has_phash)
		snprintf(ph, sizeof ph, "%016llx",
			 (unsigned long long)in->phash);
	j = json_pack("{s:s,s:s?,s:i,s:i,s:I,s:s?,s:O?,s:o,s:O?,s:f,s:o}",
		      "pipeline_hash", in->pipeline_hash, "format", in->format,
		      "width", in->width, "height", in->height, "bytes",
		      (json_int_t)in->bytes, "phash", ph[0] ? ph : NULL,
		      "colors", colors, "sharpness", num_or_null(in->sharpness),
		      "meta", meta, "created", in->created, "outputs", outs);
	json_decref(colors);
	if (!j) {
		json_decref(meta);
		c->err = pm_fail(&c->e, PM_ERR_NOMEM, "out of memory");
		return 1;
	}
	json_array_append_new(c->assets, j);
	json_array_append_new(c->meta_all, meta ? meta : json_object());
	return 0;
}

static int page_item_cb(const pm_asset_item *it, void *ud)
{
	json_t *arr = ud;

	json_array_append_new(
	    arr, json_pack("{s:I,s:s?,s:s?,s:s?,s:s?,s:s?}", "job_id",
			   (json_int_t)it->job_id, "key", it->key, "id", it->id,
			   "image", it->image, "title", it->title, "category",
			   it->category));
	return 0;
}

/* A source found near this one: {sha256, title, outputs, <what>: v}. */
static json_t *neighbour(pm_store *st, const char *sha, const char *what,
			 json_t *v)
{
	char title[512];
	json_t *outs = json_array();
	pm_err e;

	if (pm_store_title(st, sha, title, sizeof title, &e))
		title[0] = '\0';
	srv_outputs_json(st, sha, NULL, outs, &e);
	return json_pack("{s:s,s:s?,s:o,s:o}", "sha256", sha, "title",
			 title[0] ? title : NULL, what, v, "outputs", outs);
}

/* The nearest sources by the built-in embedding, best first, down to
 * SIMILAR_MIN_COS (copies score ~1, unrelated photos 0.0-0.7: docs/API.md),
 * so the page shows the closest pictures, not only copies. */
static pm_status similar_of(pm_store *st, const char *sha, json_t *arr,
			    pm_err *e)
{
	float *q = malloc(EMBED_CAP_FLOATS * sizeof *q);
	pm_vecset *vs = NULL;
	pm_vec_hit hits[SIMILAR_MAX];
	int dim = 0, n;
	pm_status s;

	if (!q)
		return pm_fail(e, PM_ERR_NOMEM, "out of memory");
	s = pm_store_embedding_get(st, sha, PM_EMBED_BUILTIN_ID, q,
				   EMBED_CAP_FLOATS, &dim, e);
	if (!s && dim > 0)
		s = pm_vecset_load(st, PM_EMBED_BUILTIN_ID, &vs, e);
	if (s || dim <= 0 || pm_vecset_dim(vs) != dim) {
		pm_vecset_free(vs);
		free(q);
		return s;
	}
	n = pm_vecset_topk(vs, q, SIMILAR_MAX, sha, hits);
	for (int i = 0; i < n && hits[i].score >= SIMILAR_MIN_COS; i++)
		json_array_append_new(
		    arr, neighbour(st, pm_vecset_sha(vs, hits[i].index),
				   "score", json_real(hits[i].score)));
	pm_vecset_free(vs);
	free(q);
	return PM_OK;
}

void srv_h_image_get(srv_req *q)
{
	const char *sha = q->caps[0];
	page_ctx c = {0};
	pm_image_query iq = {0};
	pm_hashset hs = {0};
	pm_hash_hit hits[NEAR_MAX];
	json_t *items, *near, *similar, *tags = NULL, *analysis = NULL,
					*ocr = NULL, *j;
	const char *caption = NULL;
	size_t i;
	json_t *m;
	int n;
	pm_status st;

	if (!hex64(sha)) {
		srv_reply_error(q, PM_ERR_USAGE,
				"an image is /api/images/SHA256: 64 lowercase "
				"hex digits");
		return;
	}
	c.st = srv_store(q->s, &c.e);
	if (!c.st) {
		srv_reply_error(q, PM_ERR_STORE, "%s", c.e.msg);
		return;
	}
	c.assets = json_array();
	c.meta_all = json_array();
	items = json_array();
	near = json_array();
	similar = json_array();
	iq.sha256 = sha;
	st = pm_store_images(c.st, &iq, asset_cb, &c, &c.e);
	if (!st)
		st = c.err;
	if (!st && json_array_size(c.assets) == 0)
		st = pm_fail(&c.e, PM_ERR_NOT_FOUND, "no image %s", sha);
	if (!st)
		st = pm_store_asset_items(c.st, 0, sha, page_item_cb, items,
					  &c.e);
	if (!st)
		st = pm_hashset_load(c.st, &hs, &c.e);
	if (!st) {
		n = near_of(&hs, &c.first, hits, NEAR_MAX);
		for (int k = 0; k < n; k++)
			json_array_append_new(
			    near,
			    neighbour(c.st, hs.sha[hits[k].index], "distance",
				      json_integer(hits[k].distance)));
		st = similar_of(c.st, sha, similar, &c.e);
	}
	pm_hashset_clear(&hs);
	if (st) {
		srv_reply_error(q, st, "%s", c.e.msg);
		goto out;
	}
	/* The newest asset that has each: OCR text, caption and tags. */
	json_array_foreach(c.meta_all, i, m)
	{
		meta_view v = view_of(m);
		if (!ocr && json_object_get(m, "ocr"))
			ocr = json_object_get(m, "ocr");
		if (!caption && v.caption) {
			caption = v.caption;
			tags = v.tags;
			analysis = json_object_get(m, "analysis");
		}
	}
	j = json_pack(
	    "{s:s,s:s?,s:b,s:o,s:{s:s?,s:O?,s:O?},s:o?,s:o,s:{s:o,s:o,s:i},"
	    "s:o}",
	    "sha256", sha, "title", c.title[0] ? c.title : NULL, "has_text",
	    c.first.has_text, "items", items, "analysis", "caption", caption,
	    "tags", tags, "details", analysis, "ocr",
	    ocr ? json_pack("{s:O?,s:O?,s:O?}", "text",
			    json_object_get(ocr, "text"), "confidence",
			    json_object_get(ocr, "confidence"), "lang",
			    json_object_get(ocr, "lang"))
		: NULL,
	    "assets", c.assets, "duplicates", "exact",
	    json_boolean(json_array_size(items) > 1), "near", near,
	    "near_distance", NEAR_DISTANCE, "similar", similar);
	items = near = similar = c.assets = NULL; /* the answer has them */
	if (!j) {
		srv_reply_error(q, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	srv_reply_json(q, 200, j);
out:
	json_decref(items);
	json_decref(near);
	json_decref(similar);
	json_decref(c.assets);
	json_decref(c.meta_all);
}
