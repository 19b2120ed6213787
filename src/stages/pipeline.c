/* pipeline.c — loading, canonicalising and hashing pipelines; running a
 * pipeline's stages over one item.
 *
 * Threads: load/parse/override on one thread before workers start; the
 * loaded pipeline is then read-only. pm_pipeline_run_* on its worker only.
 */
#include "stages/pipeline.h"

#include "core/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "stages/verify.h"

struct pm_pipeline {
	char name[64];
	json_t *root;	 /* {"name":..., "stages":[...]} with defaults */
	char *canonical; /* json_dumps(root) sorted, compact; malloc'd */
	char hash[65];
	int decode_size;
	int needs_pixels;
	int uses_row;	  /* a stage's outputs depend on the row's text */
	int placeholders; /* a stage runs for placeholder items */
	const char *note; /* static text: what loading left out, or NULL */
	int n_stages;
	const pm_stage_vt **vt; /* n_stages entries */
};

struct pm_pipeline_run {
	const pm_pipeline *p;
	void **state; /* one per stage */
};

static const struct {
	const char *name;
	const char *json;
} builtins[] = {
    {"thumbnails", "{\"name\":\"thumbnails\",\"stages\":["
		   "{\"stage\":\"thumbnail\"},{\"stage\":\"phash\"},"
		   "{\"stage\":\"colors\"},{\"stage\":\"quality\"},"
		   "{\"stage\":\"embed\"}]}"},
    {"hashes", "{\"name\":\"hashes\",\"stages\":["
	       "{\"stage\":\"phash\"},{\"stage\":\"colors\"},"
	       "{\"stage\":\"quality\"},{\"stage\":\"embed\"}]}"},
    {"ocr", "{\"name\":\"ocr\",\"stages\":["
	    "{\"stage\":\"ocr\"},{\"stage\":\"phash\"}]}"},
    {"recipes", "{\"name\":\"recipes\",\"stages\":["
		"{\"stage\":\"ocr\",\"psm\":4},{\"stage\":\"recipe\"},"
		"{\"stage\":\"phash\"}]}"},
    {"cutout", "{\"name\":\"cutout\",\"stages\":["
	       "{\"stage\":\"cutout\",\"preview\":256},"
	       "{\"stage\":\"phash\"}]}"},
    {"ads", "{\"name\":\"ads\",\"stages\":["
	    "{\"stage\":\"verify\"},"
	    "{\"stage\":\"cutout\",\"engine\":\"fast\"},"
	    "{\"stage\":\"compose\"}]}"},
    /* A folder of images to browse and search: every stage that feeds the
     * dashboard's gallery. CATALOG_ANALYZE is put before the embed stage
     * when a vision endpoint is configured (see catalog_json). */
    {"catalog", "{\"name\":\"catalog\",\"stages\":["
		"{\"stage\":\"thumbnail\",\"sizes\":[256,1024]},"
		"{\"stage\":\"phash\"},{\"stage\":\"colors\"},"
		"{\"stage\":\"quality\"},{\"stage\":\"ocr\"},"
		"{\"stage\":\"embed\"}]}"},
};
#define CATALOG_ANALYZE "{\"stage\":\"analyze\"},"

const char *pm_pipeline_builtin_names(void)
{
	return "thumbnails, hashes, ocr, recipes, cutout, ads, catalog";
}

const char *pm_pipeline_note(const pm_pipeline *p)
{
	return p->note;
}

/* The catalog pipeline's JSON: the built-in one, with the analyze stage
 * when PIXMILL_VISION_URL and PIXMILL_VISION_MODEL name a vision endpoint
 * (the stage reads them itself). Without them the stage is left out and
 * *note says so: a folder is still catalogued, without captions. buf is
 * the caller's. */
static const char *catalog_json(const char *base, char *buf, size_t size,
				const char **note)
{
	const char *url = getenv("PIXMILL_VISION_URL");
	const char *model = getenv("PIXMILL_VISION_MODEL");
	const char *embed = strstr(base, "{\"stage\":\"embed\"}");

	if (!url || !*url || !model || !*model || !embed ||
	    strlen(base) + strlen(CATALOG_ANALYZE) >= size) {
		*note = "catalog: no vision endpoint (set PIXMILL_VISION_URL "
			"and PIXMILL_VISION_MODEL): the analyze stage is "
			"skipped, images get no caption or tags";
		return base;
	}
	*note = NULL;
	snprintf(buf, size, "%.*s%s%s", (int)(embed - base), base,
		 CATALOG_ANALYZE, embed);
	return buf;
}

static const pm_stage_vt *const stages[] = {
    &pm_stage_thumbnail, &pm_stage_phash,   &pm_stage_colors, &pm_stage_quality,
    &pm_stage_ocr,	 &pm_stage_recipe,  &pm_stage_embed,  &pm_stage_cutout,
    &pm_stage_analyze,	 &pm_stage_compose, &pm_stage_verify,
};

const pm_stage_vt *pm_stage_find(const char *name)
{
	for (size_t i = 0; i < sizeof stages / sizeof *stages; i++)
		if (strcmp(stages[i]->name, name) == 0)
			return stages[i];
	return NULL;
}

const char *pm_stage_names(void)
{
	return "thumbnail, phash, colors, quality, embed, ocr, recipe, "
	       "cutout, analyze, compose, verify";
}

/* Validates root, fills defaults, computes canonical form and hash. */
static pm_status finish(pm_pipeline *p, pm_err *err)
{
	json_t *name = json_object_get(p->root, "name");
	json_t *list = json_object_get(p->root, "stages");
	size_t i;
	json_t *st;
	pm_status s;

	if (!json_is_array(list) || json_array_size(list) == 0)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "pipeline needs a non-empty \"stages\" array");
	if (json_array_size(list) > 32)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "pipeline has more than 32 stages");
	snprintf(p->name, sizeof p->name, "%s",
		 json_is_string(name) ? json_string_value(name) : "custom");
	free(p->vt);
	p->vt = calloc(json_array_size(list), sizeof *p->vt);
	if (!p->vt)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	p->n_stages = 0;
	p->decode_size = 0;
	p->needs_pixels = 0;
	p->uses_row = 0;
	p->placeholders = 0;
	json_array_foreach(list, i, st)
	{
		json_t *sn = json_object_get(st, "stage");
		const pm_stage_vt *vt;
		if (!json_is_object(st) || !json_is_string(sn))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "stage %zu needs a \"stage\" name",
				       i + 1);
		vt = pm_stage_find(json_string_value(sn));
		if (!vt)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "unknown stage \"%s\" (known: %s)",
				       json_string_value(sn), pm_stage_names());
		s = vt->check(st, err);
		if (s)
			return s;
		json_object_set_new(st, "version", json_integer(vt->version));
		p->vt[p->n_stages++] = vt;
		int d = vt->decode_size(st);
		if (d > p->decode_size)
			p->decode_size = d;
		p->needs_pixels = 1;
		p->uses_row |= vt->uses_row;
		p->placeholders |= vt->placeholder;
	}
	s = pm_verify_link(list, err);
	if (s)
		return s;
	free(p->canonical);
	p->canonical = json_dumps(p->root, JSON_SORT_KEYS | JSON_COMPACT);
	if (!p->canonical)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	pm_sha256_hex(p->canonical, strlen(p->canonical), p->hash);
	return PM_OK;
}

pm_status pm_pipeline_parse(const char *json_text, pm_pipeline **out,
			    pm_err *err)
{
	json_error_t je;
	pm_pipeline *p;
	pm_status s;

	*out = NULL;
	p = calloc(1, sizeof *p);
	if (!p)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	p->root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
	if (!p->root || !json_is_object(p->root)) {
		s = pm_fail(err, PM_ERR_PIPELINE,
			    "pipeline is not a JSON object: %s (line %d)",
			    p->root ? "wrong type" : je.text, je.line);
		pm_pipeline_free(p);
		return s;
	}
	s = finish(p, err);
	if (s) {
		pm_pipeline_free(p);
		return s;
	}
	*out = p;
	return PM_OK;
}

pm_status pm_pipeline_load(const char *spec, pm_pipeline **out, pm_err *err)
{
	void *buf;
	size_t len;
	pm_status s;

	for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++) {
		const char *json = builtins[i].json, *note = NULL;
		char cat[1024];
		if (strcmp(spec, builtins[i].name) != 0)
			continue;
		if (strcmp(spec, "catalog") == 0)
			json = catalog_json(json, cat, sizeof cat, &note);
		s = pm_pipeline_parse(json, out, err);
		if (!s)
			(*out)->note = note;
		return s;
	}
	if (!strchr(spec, '/') && !strchr(spec, '.'))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "unknown pipeline \"%s\" (built in: %s; or give "
			       "a JSON file)",
			       spec, pm_pipeline_builtin_names());
	s = pm_read_file(spec, 1 << 20, &buf, &len, err);
	if (s) {
		if (s == PM_ERR_NOT_FOUND || s == PM_ERR_IO)
			s = PM_ERR_PIPELINE;
		return s;
	}
	s = pm_pipeline_parse(buf, out, err);
	free(buf);
	return s;
}

void pm_pipeline_free(pm_pipeline *p)
{
	if (!p)
		return;
	json_decref(p->root);
	free(p->canonical);
	free(p->vt);
	free(p);
}

pm_status pm_pipeline_override(pm_pipeline *p, const char *stage,
			       const char *key, json_t *value, pm_err *err)
{
	json_t *list = json_object_get(p->root, "stages"), *st;
	size_t i;
	int hit = 0;

	json_array_foreach(list, i, st)
	{
		json_t *sn = json_object_get(st, "stage");
		if (json_is_string(sn) &&
		    strcmp(json_string_value(sn), stage) == 0) {
			json_object_set(st, key, value);
			hit = 1;
		}
	}
	json_decref(value);
	if (!hit)
		return pm_fail(err, PM_ERR_USAGE,
			       "pipeline \"%s\" has no %s stage to set %s on",
			       p->name, stage, key);
	return finish(p, err);
}

const char *pm_pipeline_name(const pm_pipeline *p)
{
	return p->name;
}

const char *pm_pipeline_hash(const pm_pipeline *p)
{
	return p->hash;
}

const char *pm_pipeline_canonical(const pm_pipeline *p)
{
	return p->canonical;
}

int pm_pipeline_decode_size(const pm_pipeline *p)
{
	return p->decode_size;
}

int pm_pipeline_needs_pixels(const pm_pipeline *p)
{
	return p->needs_pixels;
}

int pm_pipeline_uses_row(const pm_pipeline *p)
{
	return p->uses_row;
}

int pm_pipeline_placeholders(const pm_pipeline *p)
{
	return p->placeholders;
}

pm_status pm_pipeline_run_new(const pm_pipeline *p, pm_pipeline_run **out,
			      pm_err *err)
{
	pm_pipeline_run *r = calloc(1, sizeof *r);
	json_t *list = json_object_get(p->root, "stages");
	pm_status s;

	*out = NULL;
	if (!r)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	r->p = p;
	r->state = calloc((size_t)p->n_stages + 1, sizeof *r->state);
	if (!r->state) {
		free(r);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	for (int i = 0; i < p->n_stages; i++) {
		s = p->vt[i]->init(json_array_get(list, (size_t)i),
				   &r->state[i], err);
		if (s) {
			pm_pipeline_run_free(r);
			return s;
		}
	}
	*out = r;
	return PM_OK;
}

pm_status pm_pipeline_run_item(pm_pipeline_run *r, pm_item_ctx *ctx,
			       pm_err *err)
{
	for (int i = 0; i < r->p->n_stages; i++) {
		double t0 = pm_now();
		if (ctx->placeholder && !r->p->vt[i]->placeholder)
			continue; /* no image to work on */
		pm_status s = r->p->vt[i]->process(r->state[i], ctx, err);
		pm_metric_obs(PM_M_STAGE_DURATION, r->p->vt[i]->name, NULL,
			      pm_now() - t0);
		if (s)
			return s;
	}
	return PM_OK;
}

void pm_pipeline_run_free(pm_pipeline_run *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->p->n_stages; i++)
		if (r->p->vt[i]->fini)
			r->p->vt[i]->fini(r->state[i]);
	free(r->state);
	free(r);
}

void pm_item_ctx_clear(pm_item_ctx *ctx)
{
	json_decref(ctx->row_attrs);
	ctx->row_attrs = NULL;
	ctx->currency = ctx->brand = NULL;
	free(ctx->colors_json);
	ctx->colors_json = NULL;
	json_decref(ctx->meta);
	ctx->meta = NULL;
	free(ctx->embedding);
	ctx->embedding = NULL;
	ctx->embedding_dim = 0;
	ctx->embedding_model[0] = '\0';
	ctx->n_outputs = 0;
	ctx->has_phash = false;
	ctx->sharpness = NAN;
}

pm_status pm_pipeline_apply_options(pm_pipeline *pipe, const char *sizes,
				    const char *formats, int quality, pm_err *e)
{
	pm_status s;

	if (sizes) {
		json_t *a = json_array();
		const char *p = sizes;
		while (*p) {
			char *end;
			long v = strtol(p, &end, 10);
			if (end == p || v < 1 || v > 16384 ||
			    (*end && *end != ',')) {
				json_decref(a);
				return pm_fail(
				    e, PM_ERR_USAGE,
				    "--sizes wants numbers from 1 to "
				    "16384 separated by commas: %s",
				    sizes);
			}
			json_array_append_new(a, json_integer(v));
			p = *end ? end + 1 : end;
		}
		s = pm_pipeline_override(pipe, "thumbnail", "sizes", a, e);
		if (s)
			return s;
	}
	if (formats) {
		json_t *a = json_array();
		char buf[256], *save = NULL;
		snprintf(buf, sizeof buf, "%s", formats);
		for (char *t = strtok_r(buf, ",", &save); t;
		     t = strtok_r(NULL, ",", &save))
			json_array_append_new(a, json_string(t));
		s = pm_pipeline_override(pipe, "thumbnail", "formats", a, e);
		if (s)
			return s;
	}
	if (quality) {
		json_t *q = json_pack("{s:i,s:i,s:i}", "webp", quality, "jpeg",
				      quality, "avif", quality);
		s = pm_pipeline_override(pipe, "thumbnail", "quality", q, e);
		if (s)
			return s;
	}
	return PM_OK;
}
