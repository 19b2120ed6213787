/* analyze.c — the `analyze` stage: a caption and tags per image (and, when
 * the catalog row has a title, whether the image shows that product) from
 * a vision model behind an OpenAI-compatible chat-completions endpoint.
 * The HTTP client, the keys and the adaptive rate limit are in
 * src/vision/ (vision.h).
 *
 * Per item: the decoded image is fitted to max_edge (default 768, never
 * enlarged), encoded as JPEG (jpeg_quality, default 85), sent base64 in a
 * data URL, and the answer validated. Results:
 *   meta["analysis"] = {"caption", "tags", "product_match", "match_score"
 *                       (both only with a title), "model", "tokens_in",
 *                       "tokens_out", "latency_ms", "requests"}
 *   meta["caption"]  = the caption (the store's full-text index reads
 *                       $.caption)
 *
 * Params. Those that change the answer stay in the params and so in the
 * pipeline hash (a change re-analyses every image): "base_url"
 * (required, http:// or https://, e.g. "https://api.openai.com/v1"; when
 * absent, $PIXMILL_VISION_URL), "model" (required; when absent,
 * $PIXMILL_VISION_MODEL), "prompt" (replaces the built-in instruction; the
 * JSON format instruction is always added), "response_format"
 * ("json_object", "json_schema" or "none"), "detail" ("auto", "low",
 * "high"), "max_tokens" (300; 0 = not sent), "temperature" (0; -1 = not
 * sent), "max_edge" (768), "jpeg_quality" (85).
 * Those that do not change the answer are taken out of the params by
 * check, before the pipeline is hashed and stored, and kept with the
 * process-wide endpoint of (base_url, model) (vision.h): "api_keys" (a
 * list of secrets; PIXMILL_VISION_KEYS, comma-separated, is read too),
 * "timeout_ms", "max_attempts", "price_in_per_1k", "price_out_per_1k"
 * (dollars per 1000 tokens, for the cost counter), "rate_start",
 * "rate_min", "rate_max", "rate_increase", "rate_decrease", "max_wait_s".
 * So keys never reach the pipeline hash, the jobs table, the manifest or
 * a log, and changing a timeout or a price costs no re-run. The default
 * instruction is versioned by the stage version.
 *
 * Caching: the engine keys every asset by (source SHA-256, pipeline hash),
 * and the pipeline hash covers base_url, model, prompt and the other
 * answer-changing params: an image seen before with the same settings is
 * not sent again, in this run or a later one. The stage sets uses_row, as
 * product_match depends on the row's title: the engine then keys the
 * asset on the image and the row's text (pm_row_key: title, price,
 * currency, brand), so two rows with one image and different titles each
 * get their own verdict; rows without text (a folder) are keyed by the
 * image alone.
 *
 * Threads: check/decode_size on any thread (check registers settings and
 * keys with the endpoint, which locks itself); init/process/fini on one
 * worker thread with that worker's own client (a libcurl handle).
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "image/image.h"
#include "stages/stage.h"
#include "vision/vision.h"

typedef struct an_state {
	pm_vision_ep *ep;	  /* shared, never freed */
	pm_vision_client *client; /* this worker's */
	char model[128];
	char *prompt; /* malloc'd, or NULL for the built-in one */
	char response_format[16];
	char detail[8];
	int max_tokens;
	double temperature;
	int max_edge;
	int quality;
} an_state;

/* ---- params ---- */

static bool printable(const char *s, bool spaces)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f ||
		    (!spaces && *s == ' '))
			return false;
	return true;
}

static pm_status str_param(json_t *p, const char *k, const char *def,
			   size_t max, const char *const *allowed, pm_err *err)
{
	json_t *v = json_object_get(p, k);

	if (!v) {
		if (!def)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "analyze: \"%s\" is required%s", k,
				       strcmp(k, "base_url") == 0
					   ? " (or set PIXMILL_VISION_URL)"
				       : strcmp(k, "model") == 0
					   ? " (or set PIXMILL_VISION_MODEL)"
					   : "");
		json_object_set_new(p, k, json_string(def));
		return PM_OK;
	}
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > max)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: \"%s\" must be a string of 1 to %zu "
			       "bytes",
			       k, max);
	if (allowed) {
		for (int i = 0; allowed[i]; i++)
			if (strcmp(allowed[i], json_string_value(v)) == 0)
				return PM_OK;
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: \"%s\" must be one of %s%s%s%s%s", k,
			       allowed[0], allowed[1] ? ", " : "",
			       allowed[1] ? allowed[1] : "",
			       allowed[1] && allowed[2] ? ", " : "",
			       allowed[1] && allowed[2] ? allowed[2] : "");
	}
	return PM_OK;
}

static pm_status int_param(json_t *p, const char *k, int def, int lo, int hi,
			   pm_err *err)
{
	json_t *v = json_object_get(p, k);

	if (!v) {
		json_object_set_new(p, k, json_integer(def));
		return PM_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: \"%s\" must be an integer from %d to "
			       "%d",
			       k, lo, hi);
	return PM_OK;
}

/* A missing base_url or model is taken from the environment (so a
 * built-in pipeline can name the stage without a URL); it is then in the
 * params, and so in the pipeline hash, like a written one. */
static void env_default(json_t *p, const char *k, const char *env)
{
	const char *v = getenv(env);

	if (!json_object_get(p, k) && v && *v)
		json_object_set_new(p, k, json_string(v));
}

/* An operational number: read into *out if present, then removed from
 * the params (it is not part of the pipeline hash). */
static pm_status op_num(json_t *p, const char *k, double lo, double hi,
			double *out, pm_err *err)
{
	json_t *v = json_object_get(p, k);

	if (!v)
		return PM_OK;
	if (!json_is_number(v) || !(json_number_value(v) >= lo) ||
	    !(json_number_value(v) <= hi))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: \"%s\" must be a number from %g to %g",
			       k, lo, hi);
	*out = json_number_value(v);
	json_object_del(p, k);
	return PM_OK;
}

static pm_status an_check(json_t *params, pm_err *err)
{
	static const char *const formats[] = {"json_object", "json_schema",
					      "none", NULL};
	static const char *const details[] = {"auto", "low", "high", NULL};
	const char *url;
	pm_vision_ep *ep;
	pm_vision_cfg cfg;
	json_t *keys, *t;
	double v;
	pm_status s;

	env_default(params, "base_url", "PIXMILL_VISION_URL");
	env_default(params, "model", "PIXMILL_VISION_MODEL");
	if ((s = str_param(params, "base_url", NULL, 1000, NULL, err)))
		return s;
	url = json_string_value(json_object_get(params, "base_url"));
	if ((strncasecmp(url, "http://", 7) != 0 &&
	     strncasecmp(url, "https://", 8) != 0) ||
	    !printable(url, false))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: \"base_url\" must be an http:// or "
			       "https:// URL without spaces, e.g. "
			       "https://api.openai.com/v1");
	if ((s = str_param(params, "model", NULL, 127, NULL, err)))
		return s;
	if (!printable(json_string_value(json_object_get(params, "model")),
		       true))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: \"model\" has a control character");
	if (json_object_get(params, "prompt") &&
	    (s = str_param(params, "prompt", "", 8000, NULL, err)))
		return s;
	if ((s = str_param(params, "response_format", "json_object", 16,
			   formats, err)) ||
	    (s = str_param(params, "detail", "auto", 8, details, err)) ||
	    (s = int_param(params, "max_tokens", 300, 0, 16384, err)) ||
	    (s = int_param(params, "max_edge", 768, 64, 4096, err)) ||
	    (s = int_param(params, "jpeg_quality", 85, 1, 100, err)))
		return s;
	t = json_object_get(params, "temperature");
	if (!t)
		json_object_set_new(params, "temperature", json_real(0));
	else if (!json_is_number(t) ||
		 !((json_number_value(t) >= 0 && json_number_value(t) <= 2) ||
		   json_number_value(t) == -1))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: \"temperature\" must be a number "
			       "from 0 to 2, or -1 (not sent)");

	/* the operational settings go to the endpoint, out of the hash */
	ep = pm_vision_ep_get(
	    url, json_string_value(json_object_get(params, "model")), err);
	if (!ep)
		return PM_ERR_PIPELINE;
	pm_vision_ep_get_cfg(ep, &cfg);
	v = cfg.timeout_ms;
	if ((s = op_num(params, "timeout_ms", 100, 600000, &v, err)))
		return s;
	cfg.timeout_ms = (int)v;
	v = cfg.max_attempts;
	if ((s = op_num(params, "max_attempts", 1, 20, &v, err)))
		return s;
	cfg.max_attempts = (int)v;
	if ((s = op_num(params, "price_in_per_1k", 0, 1000, &cfg.price_in,
			err)) ||
	    (s = op_num(params, "price_out_per_1k", 0, 1000, &cfg.price_out,
			err)) ||
	    (s = op_num(params, "rate_start", 0.001, 10000, &cfg.rate_start,
			err)) ||
	    (s = op_num(params, "rate_min", 0.001, 10000, &cfg.rate_min,
			err)) ||
	    (s = op_num(params, "rate_max", 0.001, 10000, &cfg.rate_max,
			err)) ||
	    (s = op_num(params, "rate_increase", 0, 10000, &cfg.rate_increase,
			err)) ||
	    (s = op_num(params, "rate_decrease", 0.01, 1, &cfg.rate_decrease,
			err)) ||
	    (s = op_num(params, "max_wait_s", 0, 3600, &cfg.max_wait_s, err)))
		return s;
	if (cfg.rate_min > cfg.rate_max)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "analyze: \"rate_min\" is over \"rate_max\"");
	cfg.rate_start = cfg.rate_start < cfg.rate_min	 ? cfg.rate_min
			 : cfg.rate_start > cfg.rate_max ? cfg.rate_max
							 : cfg.rate_start;
	pm_vision_ep_set_cfg(ep, &cfg);
	keys = json_object_get(params, "api_keys");
	if (keys) {
		size_t i;
		json_t *k;
		if (!json_is_array(keys))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "analyze: \"api_keys\" must be a list "
				       "of strings");
		json_array_foreach(keys, i, k)
		{
			if (!json_is_string(k))
				return pm_fail(err, PM_ERR_PIPELINE,
					       "analyze: \"api_keys\" must be "
					       "a list of strings");
			if ((s = pm_vision_ep_add_key(ep, json_string_value(k),
						      err)))
				return s;
		}
		json_object_del(params, "api_keys");
	}
	return PM_OK;
}

static int an_decode_size(const json_t *params)
{
	return (int)json_integer_value(json_object_get(params, "max_edge"));
}

/* ---- per worker ---- */

static pm_status an_init(const json_t *params, void **state, pm_err *err)
{
	an_state *st = calloc(1, sizeof *st);
	const char *url =
	    json_string_value(json_object_get(params, "base_url"));
	const char *model = json_string_value(json_object_get(params, "model"));
	json_t *pr = json_object_get(params, "prompt");
	pm_status s;

	*state = NULL;
	if (!st)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	st->ep = pm_vision_ep_get(url, model, err);
	if (!st->ep) {
		free(st);
		return PM_ERR_PIPELINE;
	}
	s = pm_vision_ep_add_env_keys(st->ep, err);
	if (!s)
		s = pm_vision_client_new(st->ep, url, &st->client, err);
	if (s) {
		free(st);
		return s;
	}
	snprintf(st->model, sizeof st->model, "%s", model);
	if (json_is_string(pr) &&
	    !(st->prompt = strdup(json_string_value(pr)))) {
		pm_vision_client_free(st->client);
		free(st);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	snprintf(st->response_format, sizeof st->response_format, "%s",
		 json_string_value(json_object_get(params, "response_format")));
	snprintf(st->detail, sizeof st->detail, "%s",
		 json_string_value(json_object_get(params, "detail")));
	st->max_tokens =
	    (int)json_integer_value(json_object_get(params, "max_tokens"));
	st->temperature =
	    json_number_value(json_object_get(params, "temperature"));
	st->max_edge = an_decode_size(params);
	st->quality =
	    (int)json_integer_value(json_object_get(params, "jpeg_quality"));
	*state = st;
	return PM_OK;
}

static void an_fini(void *state)
{
	an_state *st = state;

	if (!st)
		return;
	pm_vision_client_free(st->client);
	free(st->prompt);
	free(st);
}

/* The image as base64 JPEG, long edge <= max_edge; malloc'd, caller
 * frees. */
static pm_status encode_b64(an_state *st, VipsImage *im, char **out,
			    pm_err *err)
{
	VipsImage *fit = NULL;
	void *buf = NULL;
	size_t len = 0;
	pm_encode_opts eo = {.format = PM_FMT_JPEG,
			     .quality = st->quality,
			     .effort = -1,
			     .keep_meta = false};
	pm_status s;

	*out = NULL;
	s = pm_image_fit(im, st->max_edge, &fit, err);
	if (s)
		return s;
	s = pm_image_encode(fit, &eo, &buf, &len, err);
	g_object_unref(fit);
	if (s)
		return s;
	*out = pm_vision_base64(buf, len);
	g_free(buf);
	if (!*out)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	return PM_OK;
}

static pm_status an_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	an_state *st = state;
	pm_vision_answer a = {0};
	pm_vision_stats stats;
	pm_vision_req req = {0};
	char *b64 = NULL;
	json_t *an;
	pm_status s;

	if (!ctx->image)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "analyze: no decoded image");
	s = encode_b64(st, ctx->image, &b64, err);
	if (s)
		return s;
	req.model = st->model;
	req.prompt = st->prompt;
	req.title = ctx->title && *ctx->title ? ctx->title : NULL;
	req.response_format = st->response_format;
	req.detail = st->detail;
	req.max_tokens = st->max_tokens;
	req.temperature = st->temperature;
	req.image_b64 = b64;
	s = pm_vision_analyze(st->client, &req, &a, &stats, err);
	free(b64);
	if (s)
		return s;
	an = json_pack(
	    "{s:s,s:O,s:s,s:I,s:I,s:I,s:i}", "caption", a.caption, "tags",
	    a.tags, "model", st->model, "tokens_in",
	    (json_int_t)(a.tokens_in < 0 ? 0 : a.tokens_in), "tokens_out",
	    (json_int_t)(a.tokens_out < 0 ? 0 : a.tokens_out), "latency_ms",
	    (json_int_t)llround(stats.latency_ms), "requests", stats.requests);
	if (an && a.has_match) {
		json_object_set_new(an, "product_match",
				    json_boolean(a.product_match));
		json_object_set_new(an, "match_score",
				    json_real(a.match_score));
	}
	if (!ctx->meta)
		ctx->meta = json_object();
	if (!an || !ctx->meta) {
		json_decref(an);
		pm_vision_answer_clear(&a);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	json_object_set_new(ctx->meta, "caption", json_string(a.caption));
	json_object_set_new(ctx->meta, "analysis", an);
	pm_vision_answer_clear(&a);
	return PM_OK;
}

const pm_stage_vt pm_stage_analyze = {
    .name = "analyze",
    .version = 1,
    .check = an_check,
    .decode_size = an_decode_size,
    .init = an_init,
    .process = an_process,
    .fini = an_fini,
    .uses_row = true, /* product_match depends on the row's title */
};
