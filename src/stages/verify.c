/* verify.c — the verify stage: does this candidate image do for this
 * product? A quality score from the image, and checks that it shows the
 * product. An image that fails ends the item with PM_ERR_REJECTED; the
 * engine then moves on to the row's next image candidate, or composes a
 * placeholder when none is left (engine/run.c). Put it after the ocr and
 * analyze stages (whose facts it reads) and before cutout and compose
 * (so a rejected image costs no outputs); the built-in "ads" pipeline is
 * verify, cutout, compose.
 *
 * Score parts, each 0..1 (facts under meta "verify"):
 *   resolution  short edge of the source over "good_edge" (800 px);
 *   sharpness   variance of the Laplacian (pm_image_sharpness) on a log
 *               scale: 0 at 2 and under, 0.27 at 10, 0.75 at 100, 1 at
 *               316 and over;
 *   aspect      how much of each template's product box the image fills
 *               when contained (min(a/b, b/a) of the aspect ratios),
 *               averaged over "aspects" (from the compose stage's boxes);
 *   plainness   1 - the colour spread of the image's border / 40: a plain
 *               studio background scores 1, a busy scene near 0;
 *   text        only with an ocr stage before: 1 - the share of the image
 *               covered by word boxes / "max_text_cover" (0.2): text and
 *               watermarks over the product lower it.
 * score = the weighted mean of the parts present (weights 0.3, 0.3,
 * 0.1, 0.15, 0.15) minus "duplicate_penalty" (0.3) when the image is within
 * 3 bits (pHash) of another row's chosen image in this run. The image is
 * rejected under "min_score" (0.35), except a duplicate on the row's last
 * candidate that only the penalty puts under it (kept, with
 * "kept_duplicate": the penalty ranks, it does not cost a row its image).
 *
 * Product checks:
 *   OCR (with an ocr stage before): words of at least 3 letters read with
 *   confidence >= "ocr_min_conf" (70) are compared with the row's title
 *   and brand words (case-folded; a word inside another counts when 4+
 *   letters long). One shared word: "match". No shared word and at least
 *   "ocr_min_words" (2) such words: "contradiction", rejected (the image
 *   shows another product's text, such as another brand). Otherwise
 *   "neutral": no text is no evidence.
 *   Vision model (with an analyze stage before, on a row with a title):
 *   its product_match false, or match_score under "min_match_score"
 *   (0.5), rejects.
 *
 * Params (defaults filled in by check, unknown keys refused): those
 * named above, and "aspects" (box width / height ratios; set from the
 * compose stage when the pipeline has one, else [1]).
 *
 * Threads: check/decode_size on any thread; process on a worker thread,
 * with no state of its own (the registry in ctx->seen locks itself).
 */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/stage.h"
#include "stages/verify.h"

#define W_RES	 0.3
#define W_SHARP	 0.3
#define W_ASPECT 0.1
#define W_PLAIN	 0.15
#define W_TEXT	 0.15

#define MAX_ASPECTS 8
#define MAX_TOKENS  64

typedef struct verify_state {
	double min_score, good_edge, dup_penalty, max_text_cover;
	double min_match_score;
	int ocr_min_conf, ocr_min_words;
	double aspects[MAX_ASPECTS];
	int n_aspects;
} verify_state;

/* ---- the chosen-image registry ---- */

typedef struct seen_ent {
	uint64_t phash;
	uint64_t key_hash; /* FNV-1a of the row key */
	int next[4];	   /* next entry in each quarter's bucket, -1 ends */
} seen_ent;

struct pm_verify_seen {
	pthread_mutex_t mu;
	bool mu_init;
	seen_ent *ents;
	int n, cap;
	int *head[4]; /* 65536 bucket heads per quarter */
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

pm_verify_seen *pm_verify_seen_new(void)
{
	pm_verify_seen *s = calloc(1, sizeof *s);

	if (!s)
		return NULL;
	for (int q = 0; q < 4; q++) {
		s->head[q] = malloc(65536 * sizeof(int));
		if (!s->head[q]) {
			pm_verify_seen_free(s);
			return NULL;
		}
		memset(s->head[q], 0xff, 65536 * sizeof(int)); /* all -1 */
	}
	pthread_mutex_init(&s->mu, NULL);
	s->mu_init = true;
	return s;
}

void pm_verify_seen_free(pm_verify_seen *s)
{
	if (!s)
		return;
	for (int q = 0; q < 4; q++)
		free(s->head[q]);
	if (s->mu_init)
		pthread_mutex_destroy(&s->mu);
	free(s->ents);
	free(s);
}

bool pm_verify_seen_dup(pm_verify_seen *s, uint64_t phash, const char *key,
			int max_dist, int *other_dist)
{
	uint64_t kh = fnv(key);
	bool dup = false;

	if (!s)
		return false;
	pthread_mutex_lock(&s->mu);
	for (int q = 0; q < 4 && !dup; q++) {
		unsigned b = (unsigned)(phash >> (16 * q)) & 0xffff;
		for (int i = s->head[q][b]; i >= 0; i = s->ents[i].next[q]) {
			int d = __builtin_popcountll(s->ents[i].phash ^ phash);
			if (d <= max_dist && s->ents[i].key_hash != kh) {
				*other_dist = d;
				dup = true;
				break;
			}
		}
	}
	pthread_mutex_unlock(&s->mu);
	return dup;
}

void pm_verify_seen_add(pm_verify_seen *s, uint64_t phash, const char *key)
{
	seen_ent *e;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	if (s->n == s->cap) {
		int cap = s->cap ? s->cap * 2 : 1024;
		seen_ent *n = realloc(s->ents, (size_t)cap * sizeof *n);
		if (!n) { /* out of memory: this one goes unrecorded */
			pthread_mutex_unlock(&s->mu);
			return;
		}
		s->ents = n;
		s->cap = cap;
	}
	e = &s->ents[s->n];
	e->phash = phash;
	e->key_hash = fnv(key);
	for (int q = 0; q < 4; q++) {
		unsigned b = (unsigned)(phash >> (16 * q)) & 0xffff;
		e->next[q] = s->head[q][b];
		s->head[q][b] = s->n;
	}
	s->n++;
	pthread_mutex_unlock(&s->mu);
}

/* ---- params ---- */

static const char *const known_keys[] = {"stage",
					 "version",
					 "min_score",
					 "good_edge",
					 "duplicate_penalty",
					 "max_text_cover",
					 "min_match_score",
					 "ocr_min_conf",
					 "ocr_min_words",
					 "aspects",
					 NULL};

static pm_status num_param(json_t *p, const char *k, double def, double lo,
			   double hi, bool integer, pm_err *err)
{
	json_t *v = json_object_get(p, k);

	if (!v) {
		json_object_set_new(p, k,
				    integer ? json_integer((json_int_t)def)
					    : json_real(def));
		return PM_OK;
	}
	if ((integer ? !json_is_integer(v) : !json_is_number(v)) ||
	    !(json_number_value(v) >= lo && json_number_value(v) <= hi))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "verify: \"%s\" must be %s from %g to %g", k,
			       integer ? "an integer" : "a number", lo, hi);
	if (!integer && json_is_integer(v)) /* 1 and 1.0 hash alike */
		json_object_set_new(p, k, json_real(json_number_value(v)));
	return PM_OK;
}

static pm_status verify_check(json_t *params, pm_err *err)
{
	json_t *asp = json_object_get(params, "aspects"), *v;
	const char *k;
	size_t i;
	pm_status s;

	json_object_foreach(params, k, v)
	{
		bool ok = false;
		for (int j = 0; known_keys[j]; j++)
			ok = ok || strcmp(k, known_keys[j]) == 0;
		if (!ok)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "verify: unknown parameter \"%.40s\"",
				       k);
	}
	if ((s = num_param(params, "min_score", 0.35, 0, 1, false, err)) ||
	    (s = num_param(params, "good_edge", 800, 16, 16384, true, err)) ||
	    (s = num_param(params, "duplicate_penalty", 0.3, 0, 1, false,
			   err)) ||
	    (s = num_param(params, "max_text_cover", 0.2, 0.01, 1, false,
			   err)) ||
	    (s = num_param(params, "min_match_score", 0.5, 0, 1, false, err)) ||
	    (s = num_param(params, "ocr_min_conf", 70, 0, 100, true, err)) ||
	    (s = num_param(params, "ocr_min_words", 2, 1, 1000, true, err)))
		return s;
	if (!asp) {
		json_object_set_new(params, "aspects", json_pack("[f]", 1.0));
		return PM_OK;
	}
	if (!json_is_array(asp) || json_array_size(asp) == 0 ||
	    json_array_size(asp) > MAX_ASPECTS)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "verify: \"aspects\" must list 1 to %d ratios",
			       MAX_ASPECTS);
	json_array_foreach(asp, i, v)
	{
		if (!json_is_number(v) || !(json_number_value(v) >= 0.01 &&
					    json_number_value(v) <= 100))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "verify: aspect %zu must be a number "
				       "from 0.01 to 100",
				       i + 1);
	}
	return PM_OK;
}

pm_status pm_verify_link(json_t *stages, pm_err *err)
{
	json_t *boxes = NULL, *st, *asp;
	size_t i, j;

	(void)err;
	json_array_foreach(stages, i, st)
	{
		json_t *n = json_object_get(st, "stage");
		if (json_is_string(n) &&
		    strcmp(json_string_value(n), "compose") == 0)
			boxes = json_object_get(st, "boxes");
	}
	if (!json_is_array(boxes) || json_array_size(boxes) == 0)
		return PM_OK;
	json_array_foreach(stages, i, st)
	{
		json_t *n = json_object_get(st, "stage"), *b;
		if (!json_is_string(n) ||
		    strcmp(json_string_value(n), "verify") != 0)
			continue;
		asp = json_array();
		json_array_foreach(boxes, j, b)
		{
			double w = json_number_value(json_array_get(b, 0));
			double h = json_number_value(json_array_get(b, 1));
			if (w > 0 && h > 0 && j < MAX_ASPECTS)
				json_array_append_new(
				    asp, json_real(round(w / h * 1000) / 1000));
		}
		json_object_set_new(st, "aspects", asp);
	}
	return PM_OK;
}

static int verify_decode_size(const json_t *params)
{
	(void)params;
	return 0; /* works on whatever the other stages need */
}

static pm_status verify_init(const json_t *params, void **state, pm_err *err)
{
	verify_state *st = calloc(1, sizeof *st);
	json_t *asp = json_object_get(params, "aspects"), *v;
	size_t i;

	if (!st)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
#define NUM(k) json_number_value(json_object_get(params, k))
	st->min_score = NUM("min_score");
	st->good_edge = NUM("good_edge");
	st->dup_penalty = NUM("duplicate_penalty");
	st->max_text_cover = NUM("max_text_cover");
	st->min_match_score = NUM("min_match_score");
	st->ocr_min_conf = (int)NUM("ocr_min_conf");
	st->ocr_min_words = (int)NUM("ocr_min_words");
#undef NUM
	json_array_foreach(asp, i, v)
	{
		if (st->n_aspects < MAX_ASPECTS)
			st->aspects[st->n_aspects++] = json_number_value(v);
	}
	if (st->n_aspects == 0)
		st->aspects[st->n_aspects++] = 1.0;
	*state = st;
	return PM_OK;
}

static void verify_fini(void *state)
{
	free(state);
}

/* ---- measurements ---- */

static double clamp01(double x)
{
	return x < 0 ? 0 : x > 1 ? 1 : x;
}

static double round3(double x)
{
	return round(x * 1000) / 1000;
}

/* Colour spread of the outermost ring of a 64-px copy: the mean
 * Euclidean RGB distance of its pixels from their mean. */
static pm_status border_spread(VipsImage *in, double *out, pm_err *err)
{
	VipsImage *sm = NULL;
	double sum[3] = {0, 0, 0}, dist = 0;
	int n = 0, w, h, bands;
	pm_status s = pm_image_fit(in, 64, &sm, err);

	if (s)
		return s;
	if (vips_image_wio_input(sm)) {
		g_object_unref(sm);
		return pm_vips_fail(err, PM_ERR_DECODE, "verify: border");
	}
	w = sm->Xsize;
	h = sm->Ysize;
	bands = sm->Bands;
	for (int pass = 0; pass < 2; pass++) {
		double mean[3] = {sum[0] / (n ? n : 1), sum[1] / (n ? n : 1),
				  sum[2] / (n ? n : 1)};
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++) {
				const uint8_t *p;
				if (y != 0 && y != h - 1 && x != 0 &&
				    x != w - 1)
					continue;
				p = VIPS_IMAGE_ADDR(sm, x, y);
				if (pass == 0) {
					for (int c = 0; c < 3; c++)
						sum[c] += p[bands >= 3 ? c : 0];
					n++;
				} else {
					double d2 = 0;
					for (int c = 0; c < 3; c++) {
						double d =
						    p[bands >= 3 ? c : 0] -
						    mean[c];
						d2 += d * d;
					}
					dist += sqrt(d2);
				}
			}
	}
	g_object_unref(sm);
	*out = n ? dist / n : 0;
	return PM_OK;
}

/* Lower-cased words of s (ASCII letters folded; bytes >= 0x80 kept as
 * letters so other scripts give words too) of at least 3 bytes, into
 * tok (each malloc'd); returns how many (<= max). */
static int tokens(const char *s, char **tok, int max)
{
	int n = 0;

	while (s && *s && n < max) {
		const char *b;
		while (*s && !isalnum((unsigned char)*s) &&
		       (unsigned char)*s < 0x80)
			s++;
		b = s;
		while (*s && (isalnum((unsigned char)*s) ||
			      (unsigned char)*s >= 0x80))
			s++;
		if (s - b >= 3) {
			char *t = strndup(b, (size_t)(s - b));
			if (!t)
				break;
			for (char *c = t; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			tok[n++] = t;
		}
	}
	return n;
}

static bool has_letter(const char *t)
{
	for (; *t; t++)
		if (isalpha((unsigned char)*t) || (unsigned char)*t >= 0x80)
			return true;
	return false;
}

static bool tok_match(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (strcmp(a, b) == 0)
		return true;
	return (la >= 4 && lb >= 4) && (strstr(a, b) || strstr(b, a));
}

/* The OCR check and the text coverage; adds "ocr" facts. Returns the
 * verdict: 1 match, 0 neutral, -1 contradiction. *cover = share of the
 * image under word boxes. */
static int ocr_verdict(const verify_state *st, const pm_item_ctx *ctx,
		       json_t *ocr, json_t *facts, double *cover)
{
	json_t *words = json_object_get(ocr, "words"), *wv;
	char *row[MAX_TOKENS], *seen[MAX_TOKENS];
	int n_row = 0, n_seen = 0, n_conf = 0;
	double area = 0, img_area;
	json_t *matched = json_array(), *other = json_array();
	char rowtext[1200];
	size_t i;
	int verdict;

	snprintf(rowtext, sizeof rowtext, "%.800s %.300s",
		 ctx->title ? ctx->title : "", ctx->brand ? ctx->brand : "");
	n_row = tokens(rowtext, row, MAX_TOKENS);
	img_area = (double)ctx->image->Xsize * ctx->image->Ysize;
	json_array_foreach(words, i, wv)
	{
		const char *word = json_string_value(json_array_get(wv, 0));
		double bw = json_number_value(json_array_get(wv, 3));
		double bh = json_number_value(json_array_get(wv, 4));
		double conf = json_number_value(json_array_get(wv, 5));
		char *t[4];
		int nt;

		if (bw > 0 && bh > 0)
			area += bw * bh;
		if (!word || conf < st->ocr_min_conf)
			continue;
		nt = tokens(word, t, 4);
		for (int k = 0; k < nt; k++) {
			bool hit = false;
			if (!has_letter(t[k]) || n_seen >= MAX_TOKENS) {
				free(t[k]);
				continue;
			}
			n_conf++;
			for (int r = 0; r < n_row && !hit; r++)
				hit = tok_match(t[k], row[r]);
			json_array_append_new(hit ? matched : other,
					      json_string(t[k]));
			seen[n_seen++] = t[k];
		}
	}
	*cover = img_area > 0 ? clamp01(area / img_area) : 0;
	verdict = json_array_size(matched) > 0	? 1
		  : n_conf >= st->ocr_min_words ? -1
						: 0;
	json_object_set_new(facts, "ocr",
			    json_pack("{s:s,s:o,s:o,s:f}", "verdict",
				      verdict > 0   ? "match"
				      : verdict < 0 ? "contradiction"
						    : "neutral",
				      "matched", matched, "other", other,
				      "text_cover", round3(*cover)));
	for (int k = 0; k < n_row; k++)
		free(row[k]);
	for (int k = 0; k < n_seen; k++)
		free(seen[k]);
	return verdict;
}

static pm_status verify_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	verify_state *st = state;
	json_t *facts = json_object(), *parts = json_object();
	json_t *ocr = ctx->meta ? json_object_get(ctx->meta, "ocr") : NULL;
	json_t *an = ctx->meta ? json_object_get(ctx->meta, "analysis") : NULL;
	char reason[400] = "";
	double sharp = 0, spread = 0, wsum = 0, score = 0, part, aspect = 0,
	       cover = 0;
	double a_img;
	int w, h, dist = 0;
	uint64_t ph;
	bool dup = false;
	pm_status s;

	if (!facts || !parts) {
		json_decref(facts);
		json_decref(parts);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	json_object_set_new(facts, "parts", parts);
	w = ctx->header && ctx->header->width ? ctx->header->width
					      : ctx->image->Xsize;
	h = ctx->header && ctx->header->height ? ctx->header->height
					       : ctx->image->Ysize;
#define PART(name, weight, value)                                              \
	do {                                                                   \
		part = clamp01(value);                                         \
		json_object_set_new(parts, name, json_real(round3(part)));     \
		score += (weight)*part;                                        \
		wsum += (weight);                                              \
	} while (0)
	PART("resolution", W_RES, (w < h ? w : h) / st->good_edge);
	if ((s = pm_image_sharpness(ctx->image, &sharp, err)))
		goto fail;
	PART("sharpness", W_SHARP, (log10(1 + sharp) - 0.5) / 2);
	a_img = (double)ctx->image->Xsize / ctx->image->Ysize;
	for (int i = 0; i < st->n_aspects; i++)
		aspect += a_img < st->aspects[i] ? a_img / st->aspects[i]
						 : st->aspects[i] / a_img;
	PART("aspect", W_ASPECT, aspect / st->n_aspects);
	if ((s = border_spread(ctx->image, &spread, err)))
		goto fail;
	PART("plainness", W_PLAIN, 1 - spread / 40);
	if (json_is_object(ocr)) {
		int v = ocr_verdict(st, ctx, ocr, facts, &cover);
		PART("text", W_TEXT, 1 - cover / st->max_text_cover);
		if (v < 0) {
			char *read = json_dumps(
			    json_object_get(json_object_get(facts, "ocr"),
					    "other"),
			    JSON_COMPACT);
			snprintf(reason, sizeof reason,
				 "the text in the image does not name the "
				 "product (read: %.200s)",
				 read ? read : "");
			free(read);
		}
	}
#undef PART
	score = wsum > 0 ? score / wsum : 0;
	if ((s = pm_image_phash(ctx->image, &ph, err)))
		goto fail;
	ctx->phash = ph;
	ctx->has_phash = true;
	if (ctx->seen &&
	    pm_verify_seen_dup(ctx->seen, ph, ctx->row_key, 3, &dist)) {
		dup = true;
		score -= st->dup_penalty;
		json_object_set_new(parts, "duplicate",
				    json_real(-st->dup_penalty));
	}
	if (json_is_object(an) &&
	    json_is_boolean(json_object_get(an, "product_match"))) {
		bool m = json_is_true(json_object_get(an, "product_match"));
		double ms =
		    json_number_value(json_object_get(an, "match_score"));
		json_object_set_new(
		    facts, "vision",
		    json_pack("{s:b,s:f}", "match", m, "score", ms));
		if (!reason[0] && (!m || ms < st->min_match_score))
			snprintf(reason, sizeof reason,
				 "the vision model says it is not the product "
				 "(match %s, score %.2f)",
				 m ? "yes" : "no", ms);
	}
	score = round3(score < 0 ? 0 : score);
	json_object_set_new(facts, "score", json_real(score));
	/* The penalty ranks a duplicate after the row's other candidates; it
	 * does not cost a row its last image. */
	if (dup && !ctx->more_candidates && score < st->min_score &&
	    score + st->dup_penalty >= st->min_score) {
		json_object_set_new(facts, "kept_duplicate", json_true());
	} else if (!reason[0] && score < st->min_score)
		snprintf(
		    reason, sizeof reason, "quality score %.2f under %.2f%s",
		    score, st->min_score,
		    dup ? " (a duplicate of another product's image)" : "");
	json_object_set_new(facts, "passed", json_boolean(!reason[0]));
	if (reason[0])
		json_object_set_new(facts, "reason", json_string(reason));
	if (!ctx->meta)
		ctx->meta = json_object();
	json_object_set_new(ctx->meta, "verify", facts);
	if (reason[0])
		return pm_fail(err, PM_ERR_REJECTED, "%s", reason);
	pm_verify_seen_add(ctx->seen, ph, ctx->row_key);
	return PM_OK;
fail:
	json_decref(facts);
	return s;
}

const pm_stage_vt pm_stage_verify = {
    .name = "verify",
    .version = 1,
    .check = verify_check,
    .decode_size = verify_decode_size,
    .init = verify_init,
    .process = verify_process,
    .fini = verify_fini,
};
