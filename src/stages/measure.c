/* measure.c — the measuring stages: phash (64-bit perceptual hash),
 * colors (dominant colours) and quality (sharpness and a 0-100 score).
 *
 * They are thin: the maths lives in image/analyze.c, and these only read
 * params and put numbers into the item context. Kept in one file because
 * each is a dozen lines of the same shape around a different call.
 *
 * Threads: init/process/fini on one worker thread; check/decode_size any.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "stages/stage.h"

/* Analyses run on a copy no larger than this, whatever the outputs. */
#define MEASURE_EDGE 256

static int measure_decode_size(const json_t *params)
{
	(void)params;
	return MEASURE_EDGE;
}

static pm_status no_params(json_t *params, pm_err *err)
{
	(void)params;
	(void)err;
	return PM_OK;
}

/* Stages without state still return a non-NULL token. */
static pm_status no_state(const json_t *params, void **state, pm_err *err)
{
	(void)params;
	(void)err;
	*state = NULL;
	return PM_OK;
}

static pm_status phash_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	pm_status s = pm_image_phash(ctx->image, &ctx->phash, err);

	(void)state;
	if (s == PM_OK)
		ctx->has_phash = true;
	return s;
}

const pm_stage_vt pm_stage_phash = {
    .name = "phash",
    .version = 1,
    .check = no_params,
    .decode_size = measure_decode_size,
    .init = no_state,
    .process = phash_process,
};

static pm_status colors_check(json_t *params, pm_err *err)
{
	json_t *c = json_object_get(params, "count");

	if (!c)
		json_object_set_new(params, "count", json_integer(5));
	else if (!json_is_integer(c) || json_integer_value(c) < 1 ||
		 json_integer_value(c) > 16)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "colors: \"count\" must be 1 to 16");
	return PM_OK;
}

static pm_status colors_init(const json_t *params, void **state, pm_err *err)
{
	int *count = malloc(sizeof *count);

	if (!count)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	*count = (int)json_integer_value(json_object_get(params, "count"));
	*state = count;
	return PM_OK;
}

static pm_status colors_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	pm_color c[16];
	int n = 0;
	pm_status s = pm_image_colors(ctx->image, *(int *)state, c, &n, err);
	char *buf, *p;
	size_t cap;

	if (s)
		return s;
	cap = 2 + (size_t)n * 48;
	buf = malloc(cap);
	if (!buf)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	p = buf;
	*p++ = '[';
	for (int i = 0; i < n; i++)
		p += snprintf(p, cap - (size_t)(p - buf),
			      "%s{\"hex\":\"#%02x%02x%02x\",\"share\":%.4f}",
			      i ? "," : "", c[i].r, c[i].g, c[i].b, c[i].share);
	snprintf(p, cap - (size_t)(p - buf), "]");
	free(ctx->colors_json);
	ctx->colors_json = buf;
	return PM_OK;
}

const pm_stage_vt pm_stage_colors = {
    .name = "colors",
    .version = 1,
    .check = colors_check,
    .decode_size = measure_decode_size,
    .init = colors_init,
    .process = colors_process,
    .fini = free,
};

/* A 0-100 score: half resolution (full marks at 2 MP and above), half
 * sharpness (log scale; full marks at a Laplacian variance of 1000). */
static double quality_score(const pm_header *h, double sharp)
{
	double w = h->width, hh = h->height;
	double res = fmin(1.0, (w * hh) / 2e6);
	double sh = fmin(1.0, log10(1.0 + fmax(0.0, sharp)) / 3.0);

	return round(1000.0 * (0.5 * res + 0.5 * sh)) / 10.0;
}

static pm_status quality_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	pm_status s = pm_image_sharpness(ctx->image, &ctx->sharpness, err);

	(void)state;
	if (s)
		return s;
	if (!ctx->meta)
		ctx->meta = json_object();
	json_object_set_new(
	    ctx->meta, "quality",
	    json_real(quality_score(ctx->header, ctx->sharpness)));
	return PM_OK;
}

const pm_stage_vt pm_stage_quality = {
    .name = "quality",
    .version = 1,
    .check = no_params,
    .decode_size = measure_decode_size,
    .init = no_state,
    .process = quality_process,
};
