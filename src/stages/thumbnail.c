/* thumbnail.c — the thumbnail stage: every configured size in every
 * configured format, from the one decoded image.
 *
 * Params: "sizes" (long edges, px, never enlarged; default [128,512,1024]),
 * "formats" (webp, jpeg, png, avif; default ["webp"]), "quality" (object of
 * format -> 1..100; defaults webp 80, jpeg 82, avif 50), "effort" (encoder
 * effort, -1 = our default: webp 2, libvips' for the others). Sizes are
 * produced largest first, each from the previous (never from a smaller one), so
 * each resize is short.
 *
 * Threads: init/process/fini on one worker thread; check/decode_size any.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "stages/stage.h"

#define MAX_SIZES   8
#define MAX_FORMATS 4

typedef struct thumb_state {
	int sizes[MAX_SIZES]; /* descending */
	int n_sizes;
	pm_encode_opts enc[MAX_FORMATS];
	int n_formats;
} thumb_state;

static const char *ext_of(pm_format f)
{
	return f == PM_FMT_JPEG ? "jpg" : pm_format_name(f);
}

static int default_quality(pm_format f)
{
	switch (f) {
	case PM_FMT_JPEG:
		return 82;
	case PM_FMT_AVIF:
		return 50;
	default:
		return 80;
	}
}

static pm_status thumb_check(json_t *params, pm_err *err)
{
	json_t *sizes = json_object_get(params, "sizes");
	json_t *formats = json_object_get(params, "formats");
	json_t *quality = json_object_get(params, "quality");
	json_t *effort = json_object_get(params, "effort");
	json_t *v, *q;
	size_t i;

	if (!sizes) {
		sizes = json_pack("[iii]", 128, 512, 1024);
		json_object_set_new(params, "sizes", sizes);
	}
	if (!json_is_array(sizes) || json_array_size(sizes) == 0 ||
	    json_array_size(sizes) > MAX_SIZES)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "thumbnail: \"sizes\" must be an array of 1 to "
			       "%d sizes",
			       MAX_SIZES);
	json_array_foreach(sizes, i, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > 16384)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "thumbnail: size %zu must be an integer "
				       "from 1 to 16384",
				       i + 1);
	}
	if (!formats) {
		formats = json_pack("[s]", "webp");
		json_object_set_new(params, "formats", formats);
	}
	if (!json_is_array(formats) || json_array_size(formats) == 0 ||
	    json_array_size(formats) > MAX_FORMATS)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "thumbnail: \"formats\" must be an array of 1 "
			       "to %d of webp, jpeg, png, avif",
			       MAX_FORMATS);
	if (!quality) {
		quality = json_object();
		json_object_set_new(params, "quality", quality);
	}
	if (!json_is_object(quality))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "thumbnail: \"quality\" must be an object such "
			       "as {\"webp\": 80}");
	json_array_foreach(formats, i, v)
	{
		pm_format f = json_is_string(v)
				  ? pm_format_parse(json_string_value(v))
				  : PM_FMT_UNKNOWN;
		if (f != PM_FMT_WEBP && f != PM_FMT_JPEG && f != PM_FMT_PNG &&
		    f != PM_FMT_AVIF)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "thumbnail: format %zu must be one of "
				       "webp, jpeg, png, avif",
				       i + 1);
		/* Canonical names, so "jpg" and "jpeg" hash alike. */
		json_array_set_new(formats, i, json_string(pm_format_name(f)));
		q = json_object_get(quality, pm_format_name(f));
		if (!q && f != PM_FMT_PNG)
			json_object_set_new(quality, pm_format_name(f),
					    json_integer(default_quality(f)));
		else if (q &&
			 (!json_is_integer(q) || json_integer_value(q) < 1 ||
			  json_integer_value(q) > 100))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "thumbnail: quality for %s must be 1 to "
				       "100",
				       pm_format_name(f));
	}
	if (!effort)
		json_object_set_new(params, "effort", json_integer(-1));
	else if (!json_is_integer(effort) || json_integer_value(effort) < -1 ||
		 json_integer_value(effort) > 9)
		return pm_fail(
		    err, PM_ERR_PIPELINE,
		    "thumbnail: \"effort\" must be -1 (default) to 9");
	return PM_OK;
}

static int thumb_decode_size(const json_t *params)
{
	json_t *v;
	size_t i;
	int m = 0;

	json_array_foreach(json_object_get(params, "sizes"), i, v)
	{
		if (json_integer_value(v) > m)
			m = (int)json_integer_value(v);
	}
	return m;
}

static int cmp_desc(const void *a, const void *b)
{
	return *(const int *)b - *(const int *)a;
}

static pm_status thumb_init(const json_t *params, void **state, pm_err *err)
{
	thumb_state *t = calloc(1, sizeof *t);
	json_t *v, *quality = json_object_get(params, "quality");
	size_t i;
	int effort = (int)json_integer_value(json_object_get(params, "effort"));

	if (!t)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	json_array_foreach(json_object_get(params, "sizes"), i, v)
	{
		t->sizes[t->n_sizes++] = (int)json_integer_value(v);
	}
	qsort(t->sizes, (size_t)t->n_sizes, sizeof *t->sizes, cmp_desc);
	json_array_foreach(json_object_get(params, "formats"), i, v)
	{
		pm_encode_opts *o = &t->enc[t->n_formats++];
		o->format = pm_format_parse(json_string_value(v));
		o->quality = (int)json_integer_value(
		    json_object_get(quality, json_string_value(v)));
		o->effort = effort;
	}
	*state = t;
	return PM_OK;
}

static pm_status thumb_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	thumb_state *t = state;
	VipsImage *cur = ctx->image, *next;
	pm_status s = PM_OK;
	int last = -1;
	/* Encoded bytes of the previous size, per format: when an image is
	 * smaller than several sizes, fit returns it unchanged and those
	 * outputs are the same bytes, so they are encoded once. Owned here
	 * (g_free). */
	void *prev[MAX_FORMATS] = {NULL};
	size_t prev_len[MAX_FORMATS] = {0};

	g_object_ref(cur);
	for (int i = 0; i < t->n_sizes; i++) {
		bool same;

		if (t->sizes[i] == last)
			continue; /* a size listed twice */
		last = t->sizes[i];
		s = pm_image_fit(cur, t->sizes[i], &next, err);
		if (s)
			break;
		same = next == cur;
		g_object_unref(cur);
		cur = next;
		for (int f = 0; f < t->n_formats; f++) {
			pm_encode_opts o = t->enc[f];
			char name[32];

			if (!same || !prev[f]) {
				g_free(prev[f]);
				prev[f] = NULL;
				o.keep_meta = ctx->keep_meta;
				s = pm_image_encode(cur, &o, &prev[f],
						    &prev_len[f], err);
				if (s)
					goto out;
			}
			snprintf(name, sizeof name, "%d.%s", t->sizes[i],
				 ext_of(o.format));
			s = pm_ctx_add_output(ctx, name,
					      pm_format_name(o.format),
					      vips_image_get_width(cur),
					      vips_image_get_height(cur),
					      prev[f], prev_len[f], err);
			if (s)
				goto out;
		}
	}
out:
	for (int f = 0; f < MAX_FORMATS; f++)
		g_free(prev[f]);
	g_object_unref(cur);
	return s;
}

static void thumb_fini(void *state)
{
	free(state);
}

const pm_stage_vt pm_stage_thumbnail = {
    .name = "thumbnail",
    .version = 2, /* 2: webp effort 2 by default (was libvips' 4) */
    .check = thumb_check,
    .decode_size = thumb_decode_size,
    .init = thumb_init,
    .process = thumb_process,
    .fini = thumb_fini,
};

pm_status pm_ctx_add_output(pm_item_ctx *ctx, const char *name,
			    const char *format, int width, int height,
			    const void *buf, size_t len, pm_err *err)
{
	int i = ctx->n_outputs;
	pm_output_rec *o;
	pm_status s;

	if (i >= PM_MAX_OUTPUTS)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "more than %d outputs for one image",
			       PM_MAX_OUTPUTS);
	snprintf(ctx->out_names[i], sizeof ctx->out_names[i], "%s", name);
	snprintf(ctx->out_paths[i], sizeof ctx->out_paths[i], "%s/%s",
		 ctx->asset_dir, name);
	if (!ctx->outs)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "no output store to write %s to", name);
	s = pm_outstore_put(ctx->outs, ctx->out_paths[i], buf, len, ctx->sync,
			    err);
	if (s)
		return s;
	pm_sha256_hex(buf, len, ctx->out_sha[i]);
	o = &ctx->outputs[i];
	o->name = ctx->out_names[i];
	o->path = ctx->out_paths[i];
	o->format = format;
	o->width = width;
	o->height = height;
	o->bytes = (int64_t)len;
	o->sha256 = ctx->out_sha[i];
	ctx->n_outputs++;
	return PM_OK;
}
