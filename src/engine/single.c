/* single.c — one image through a pipeline on the caller's thread (serve's
 * uploads and image-search queries); see single.h.
 *
 * Threads: any thread, each with its own pm_pipeline_run and pm_store.
 */
#define _GNU_SOURCE
#include "engine/single.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"

void pm_asset_from_ctx(pm_asset_rec *as, const pm_item_ctx *ctx,
		       const char *sha256, const pm_header *header,
		       size_t src_len, const char *pipeline_hash, char **meta)
{
	int sw = header->orientation >= 5; /* EXIF swaps width and height */

	memset(as, 0, sizeof *as);
	as->sha256 = sha256;
	as->pipeline_hash = pipeline_hash;
	as->format = pm_format_name(header->format);
	as->width = sw ? header->height : header->width;
	as->height = sw ? header->width : header->height;
	as->bytes = (int64_t)src_len;
	as->phash = ctx->phash;
	as->has_phash = ctx->has_phash;
	as->colors_json = ctx->colors_json;
	as->sharpness = ctx->sharpness;
	*meta = ctx->meta ? json_dumps(ctx->meta, JSON_COMPACT | JSON_SORT_KEYS)
			  : NULL;
	as->meta_json = *meta;
	as->embedding = ctx->embedding;
	as->embedding_dim = ctx->embedding_dim;
	as->embedding_model =
	    ctx->embedding_model[0] ? ctx->embedding_model : NULL;
	as->n_outputs = ctx->n_outputs;
	as->outputs = ctx->outputs;
}

/* Runs the stages on the decoded image; outputs go to the asset's folder. */
static pm_status run_stages(const pm_single_opts *o, const void *src,
			    size_t len, pm_single_result *res, pm_item_ctx *ctx,
			    char *asset_dir, size_t dir_sz, pm_err *err)
{
	VipsImage *im = NULL;
	char dir[4600];
	const char *ph = pm_pipeline_hash(o->pipe);
	pm_status s;

	s = pm_image_decode(src, len, pm_pipeline_decode_size(o->pipe), false,
			    &im, err);
	if (s)
		return s;
	snprintf(asset_dir, dir_sz, "%.2s/%.2s/%s-%.12s", res->sha256,
		 res->sha256 + 2, res->sha256, ph);
	snprintf(dir, sizeof dir, "%s/%s", o->out_root, asset_dir);
	if (o->record)
		s = pm_mkdirs(dir, err);
	if (!s) {
		ctx->src = src;
		ctx->src_len = len;
		ctx->sha256 = res->sha256;
		ctx->header = &res->header;
		ctx->image = im;
		ctx->out_root = o->out_root;
		ctx->asset_dir = asset_dir;
		ctx->outs = o->outs;
		ctx->sync = o->sync;
		ctx->title = o->title;
		s = pm_pipeline_run_item(o->pr, ctx, err);
		ctx->image = NULL;
	}
	g_object_unref(im);
	return s;
}

pm_status pm_single_process(const pm_single_opts *o, const void *src,
			    size_t len, pm_single_result *res, pm_err *err)
{
	double t0 = pm_now();
	pm_item_ctx ctx = {.sharpness = NAN};
	pm_item_rec it = {0};
	pm_asset_rec as;
	char asset_dir[160], *meta = NULL;
	const char *ph = pm_pipeline_hash(o->pipe);
	bool exists = false;
	pm_status s;

	memset(res, 0, sizeof *res);
	pm_sha256_hex(src, len, res->sha256);
	s = pm_image_probe(src, len, o->limits, &res->header, err);
	if (s)
		goto out;
	res->width = res->header.orientation >= 5 ? res->header.height
						  : res->header.width;
	res->height = res->header.orientation >= 5 ? res->header.width
						   : res->header.height;
	if (o->record) {
		s = pm_store_asset_exists(o->st, res->sha256, ph, &exists, err);
		if (s)
			goto out;
	}
	res->duplicate = exists;
	if (!exists && pm_pipeline_needs_pixels(o->pipe)) {
		s = run_stages(o, src, len, res, &ctx, asset_dir,
			       sizeof asset_dir, err);
		if (s)
			goto out;
		res->phash = ctx.phash;
		res->has_phash = ctx.has_phash;
		if (o->want_embedding && ctx.embedding) {
			res->embedding = ctx.embedding; /* now the caller's */
			res->embedding_dim = ctx.embedding_dim;
			snprintf(res->embedding_model,
				 sizeof res->embedding_model, "%s",
				 ctx.embedding_model);
			ctx.embedding = NULL;
		}
	}
	if (!o->record || (exists && !o->title))
		goto out; /* a re-upload keeps the item (and title) it has */
	/* One item per distinct upload, keyed by its hash, so uploads are
	 * searchable (title) and show in the job's item list. */
	it.job_id = o->job_id;
	it.key = res->sha256;
	{
		/* Upload order, for paging (microseconds since the epoch). */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		it.ordinal = (uint64_t)ts.tv_sec * 1000000u +
			     (uint64_t)ts.tv_nsec / 1000u;
	}
	it.title = o->title;
	it.image = "(upload)";
	it.status = PM_OK;
	it.sha256 = res->sha256;
	it.duplicate = exists;
	it.attempts = 1;
	it.latency_ms = (pm_now() - t0) * 1000.0;
	if (!exists) {
		pm_asset_from_ctx(&as, &ctx, res->sha256, &res->header, len, ph,
				  &meta);
		it.asset = &as;
	}
	s = pm_store_begin(o->st, err);
	if (!s)
		s = pm_store_put_item(o->st, &it, err);
	if (!s)
		s = pm_store_commit(o->st, err);
	else
		pm_store_rollback(o->st);
out:
	free(meta);
	pm_item_ctx_clear(&ctx);
	res->ms = (pm_now() - t0) * 1000.0;
	return s;
}
