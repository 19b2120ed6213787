/* embed.c — the `embed` stage: a normalised visual vector per image for
 * "find similar" (pixmill search image) — the built-in engine, or a
 * user's ONNX model through src/ml/embed_model.h.
 *
 * Built-in engine (no model, PM_EMBED_BUILTIN_DIM floats): the image is
 * box-averaged to 64x64 (aspect ignored, as pHash does; never enlarged),
 * converted to CIELAB,
 * and described by three blocks, each normalised on its own, weighted,
 * then the whole vector L2-normalised:
 *   - colour: a 4x4x4 soft (trilinear) histogram over L, a, b; square
 *     roots of the shares (Hellinger), centred;            64 values
 *   - layout: mean L, a, b of a 4x4 grid of cells minus the image's mean;
 *     for each row, columns c and 3-c give their sum and |difference|,
 *     which a horizontal flip leaves unchanged;             48 values
 *   - edges: per cell, an 8-bin histogram of Sobel gradient orientation
 *     (0..180 degrees, weighted by magnitude); a flip sends cell (r, c)
 *     bin i to cell (r, 3-c) bin 7-i, so the pairs summed that way are
 *     flip-invariant; square roots, centred.                64 values
 * Global colour and coarse layout survive resizing, recompression and a
 * 10% crop; the folding makes a mirror image score 1.0 against its
 * original.
 *
 * Params: {"stage": "embed"} (built-in) or {"stage": "embed", "model":
 * "DESCRIPTOR.json"}: check reads the descriptor's "size" into the params
 * (the decode size) and the model file's id (hex prefix of its SHA-256,
 * as pm_embed_model_id) as "model_id", so a changed model changes the
 * pipeline hash; each worker opens its own model in init.
 *
 * Results: ctx->embedding (malloc'd, owned by the context, freed by
 * pm_item_ctx_clear), ctx->embedding_dim, ctx->embedding_model, and
 * meta["embed"] = {"model": id, "dim": n}.
 *
 * Threads: init/process/fini on one worker thread; check/decode_size and
 * pm_embed_builtin on any.
 */
#include "stages/embed.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "ml/embed_model.h"
#include "ml/models.h"
#include "stages/stage.h"

#define EMB_N	 64  /* working copy edge, px */
#define EMB_EDGE 256 /* decode size the built-in engine asks for */
#define GRID	 4   /* cells per side */
#define HL	 4   /* histogram bins along L */
#define HAB	 4   /* ... along a and along b */
#define OBINS	 8   /* orientation bins over 0..180 degrees */

#define N_HIST (HL * HAB * HAB)		   /* 64 */
#define N_LAY  (GRID * (GRID / 2) * 6)	   /* 48 */
#define N_EDGE (GRID * (GRID / 2) * OBINS) /* 64 */
#define W_HIST 1.0f			   /* block weights */
#define W_LAY  0.8f
#define W_EDGE 0.8f

_Static_assert(N_HIST + N_LAY + N_EDGE == PM_EMBED_BUILTIN_DIM,
	       "embed blocks must add up to PM_EMBED_BUILTIN_DIM");

static pm_status vips_fail(pm_err *err, const char *what)
{
	char w[128];
	snprintf(w, sizeof w, "%s: %s", "embed", what);
	return pm_vips_fail(err, PM_ERR_DECODE, w);
}

/* New reference to an 8-bit image with 3 (RGB) or 4 (RGB + alpha) bands
 * equivalent to in (the engine's images already are). */
static int to_rgb8(VipsImage *in, VipsImage **out)
{
	VipsImage *img = in, *t = NULL;

	g_object_ref(img);
	if (img->Coding != VIPS_CODING_NONE ||
	    (img->BandFmt != VIPS_FORMAT_UCHAR &&
	     vips_colourspace_issupported(img))) {
		if (vips_colourspace(img, &t, VIPS_INTERPRETATION_sRGB, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	if (img->Bands > 4) {
		if (vips_extract_band(img, &t, 0, "n", 3, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	if (img->Bands < 3) { /* grey (+ alpha): repeat the grey band */
		VipsImage *g = NULL, *three[3], *a = NULL;
		if (vips_extract_band(img, &g, 0, NULL))
			goto fail;
		three[0] = three[1] = three[2] = g;
		int rc = vips_bandjoin(three, &t, 3, NULL);
		g_object_unref(g);
		if (rc)
			goto fail;
		if (img->Bands == 2) {
			VipsImage *rgb = t, *ra[2];
			if (vips_extract_band(img, &a, 1, NULL)) {
				g_object_unref(rgb);
				goto fail;
			}
			ra[0] = rgb;
			ra[1] = a;
			rc = vips_bandjoin(ra, &t, 2, NULL);
			g_object_unref(rgb);
			g_object_unref(a);
			if (rc)
				goto fail;
		}
		pm_vips_swap(&img, t);
	}
	if (img->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_cast(img, &t, VIPS_FORMAT_UCHAR, NULL))
			goto fail;
		pm_vips_swap(&img, t);
	}
	*out = img;
	return 0;
fail:
	g_object_unref(img);
	return -1;
}

#define STRIP 64 /* source rows per region request */

/* A malloc'd w x h x 3 float copy of in (w, h = min(EMB_N, source size);
 * aspect ignored), each pixel the mean of the source pixels that fall in
 * it (a box filter), alpha flattened against white. Rows are read through
 * a VipsRegion, so an in-memory image is not copied. Caller frees *px. */
static pm_status small_rgb(VipsImage *in, float **px, int *w, int *h,
			   pm_err *err)
{
	VipsImage *img = NULL;
	VipsRegion *reg = NULL;
	double *acc = NULL;
	int *col = NULL;
	pm_status s = PM_OK;

	*px = NULL;
	if (!in || in->Xsize < 1 || in->Ysize < 1)
		return pm_fail(err, PM_ERR_INTERNAL, "embed: no image");
	if (to_rgb8(in, &img))
		return vips_fail(err, "convert");
	int W = img->Xsize, H = img->Ysize, nb = img->Bands;
	int ow = W < EMB_N ? W : EMB_N, oh = H < EMB_N ? H : EMB_N;
	acc = calloc((size_t)ow * oh * 4, sizeof *acc); /* r, g, b, n */
	col = malloc(((size_t)ow + 1) * sizeof *col);
	if (!acc || !col) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* output column o takes source columns [col[o], col[o + 1]):
	 * those x with x * ow / W == o */
	for (int o = 0; o <= ow; o++)
		col[o] = (int)(((int64_t)o * W + ow - 1) / ow);
	if (!(reg = vips_region_new(img))) {
		s = vips_fail(err, "read pixels");
		goto out;
	}
	for (int y0 = 0; y0 < H; y0 += STRIP) {
		VipsRect r = {0, y0, W, H - y0 < STRIP ? H - y0 : STRIP};
		if (vips_region_prepare(reg, &r)) {
			s = vips_fail(err, "read pixels");
			goto out;
		}
		for (int y = y0; y < y0 + r.height; y++) {
			const uint8_t *p = VIPS_REGION_ADDR(reg, 0, y);
			double *row =
			    acc + (size_t)((int64_t)y * oh / H) * ow * 4;
			/* one output column at a time, in integer sums: no
			 * dependency through memory per pixel */
			for (int o = 0; o < ow; o++) {
				uint64_t r0 = 0, g0 = 0, b0 = 0;
				int x = col[o], x1 = col[o + 1];
				const uint8_t *q = p + (size_t)x * nb;
				if (nb == 4) { /* over white, in 1/255ths */
					for (; x < x1; x++, q += 4) {
						unsigned a = q[3],
							 u = 255u * (255u - a);
						r0 += q[0] * a + u;
						g0 += q[1] * a + u;
						b0 += q[2] * a + u;
					}
				} else {
					for (; x < x1; x++, q += 3) {
						r0 += q[0];
						g0 += q[1];
						b0 += q[2];
					}
				}
				double k = nb == 4 ? 1.0 / 255.0 : 1.0;
				double *d = row + (size_t)o * 4;
				d[0] += (double)r0 * k;
				d[1] += (double)g0 * k;
				d[2] += (double)b0 * k;
				d[3] += col[o + 1] - col[o];
			}
		}
	}
	*px = malloc((size_t)ow * oh * 3 * sizeof **px);
	if (!*px) {
		s = pm_fail(err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < (size_t)ow * oh; i++)
		for (int c = 0; c < 3; c++)
			(*px)[3 * i + c] =
			    acc[4 * i + 3] > 0
				? (float)(acc[4 * i + c] / acc[4 * i + 3])
				: 255.0f;
	*w = ow;
	*h = oh;
out:
	if (reg)
		g_object_unref(reg);
	g_object_unref(img);
	free(acc);
	free(col);
	return s;
}

/* sRGB transfer function on 0..255, through a 1024-entry table with
 * linear interpolation (pow per pixel would dominate the stage). */
#define LIN_N 1024
static float lin_tab[LIN_N + 1];
static pthread_once_t lin_once = PTHREAD_ONCE_INIT;

static void lin_init(void)
{
	for (int i = 0; i <= LIN_N; i++) {
		double c = (double)i / LIN_N;
		lin_tab[i] =
		    (float)(c <= 0.04045 ? c / 12.92
					 : pow((c + 0.055) / 1.055, 2.4));
	}
}

static float srgb_to_linear(float v)
{
	float u = v * (LIN_N / 255.0f);
	int i = (int)u;

	if (i < 0)
		return 0;
	if (i >= LIN_N)
		return lin_tab[LIN_N];
	return lin_tab[i] + (u - (float)i) * (lin_tab[i + 1] - lin_tab[i]);
}

static float lab_f(float t)
{
	return t > 216.0f / 24389.0f ? cbrtf(t)
				     : (24389.0f / 27.0f * t + 16) / 116;
}

/* Soft binning of v on nb bins of width wd starting at lo: bin *i0 gets
 * weight *w0, bin *i1 the rest (equal at the ends). */
static void soft_bin(float v, float lo, float wd, int nb, int *i0, int *i1,
		     float *w0)
{
	float u = (v - lo) / wd - 0.5f;
	int i = (int)floorf(u);
	float f = u - (float)i;

	if (i < 0) {
		*i0 = *i1 = 0;
		*w0 = 1;
	} else if (i >= nb - 1) {
		*i0 = *i1 = nb - 1;
		*w0 = 1;
	} else {
		*i0 = i;
		*i1 = i + 1;
		*w0 = 1 - f;
	}
}

/* Square roots of the shares of v[0..n), centred, L2-normalised. */
static void hellinger_block(float *v, int n)
{
	double sum = 0, mean = 0, norm = 0;

	for (int i = 0; i < n; i++)
		sum += v[i];
	for (int i = 0; i < n; i++) {
		v[i] = sum > 0 ? sqrtf((float)(v[i] / sum)) : 0;
		mean += v[i];
	}
	mean /= n;
	for (int i = 0; i < n; i++) {
		v[i] -= (float)mean;
		norm += (double)v[i] * v[i];
	}
	norm = sqrt(norm);
	for (int i = 0; i < n; i++)
		v[i] = norm > 1e-9 ? (float)(v[i] / norm) : 0;
}

static void l2_block(float *v, int n, float weight)
{
	double norm = 0;

	for (int i = 0; i < n; i++)
		norm += (double)v[i] * v[i];
	norm = sqrt(norm);
	for (int i = 0; i < n; i++)
		v[i] = norm > 1e-9 ? (float)(v[i] / norm * weight) : 0;
}

/* The features of a w x h RGB buffer (see the top of the file). */
static void features(const float *px, int w, int h, float *out,
		     float *lab /* 3 * w * h scratch */)
{
	float *hist = out, *lay = out + N_HIST, *edge = out + N_HIST + N_LAY;
	double cell[GRID][GRID][4] = {{{0}}}; /* L, a, b sums; count */
	double mean[3] = {0, 0, 0};
	float ori[GRID][GRID][OBINS] = {{{0}}};
	size_t npx = (size_t)w * h;

	memset(out, 0, PM_EMBED_BUILTIN_DIM * sizeof *out);
	pthread_once(&lin_once, lin_init);
	for (size_t i = 0; i < npx; i++) {
		float r = srgb_to_linear(px[3 * i]),
		      g = srgb_to_linear(px[3 * i + 1]),
		      b = srgb_to_linear(px[3 * i + 2]);
		float x = 0.4124564f * r + 0.3575761f * g + 0.1804375f * b;
		float y = 0.2126729f * r + 0.7151522f * g + 0.0721750f * b;
		float z = 0.0193339f * r + 0.1191920f * g + 0.9503041f * b;
		float fx = lab_f(x / 0.95047f), fy = lab_f(y),
		      fz = lab_f(z / 1.08883f);
		float L = 116 * fy - 16, A = 500 * (fx - fy),
		      B = 200 * (fy - fz);
		lab[3 * i] = L;
		lab[3 * i + 1] = A;
		lab[3 * i + 2] = B;

		int l0, l1, a0, a1, b0, b1;
		float wl, wa, wb;
		soft_bin(L, 0, 100.0f / HL, HL, &l0, &l1, &wl);
		soft_bin(A, -64, 128.0f / HAB, HAB, &a0, &a1, &wa);
		soft_bin(B, -64, 128.0f / HAB, HAB, &b0, &b1, &wb);
		int li[2] = {l0, l1}, ai[2] = {a0, a1}, bi[2] = {b0, b1};
		float lw[2] = {wl, 1 - wl}, aw[2] = {wa, 1 - wa},
		      bw[2] = {wb, 1 - wb};
		for (int p = 0; p < 2; p++)
			for (int q = 0; q < 2; q++)
				for (int s = 0; s < 2; s++)
					hist[(li[p] * HAB + ai[q]) * HAB +
					     bi[s]] += lw[p] * aw[q] * bw[s];

		int cy = (int)((i / w) * GRID / h),
		    cx = (int)((i % w) * GRID / w);
		cell[cy][cx][0] += L;
		cell[cy][cx][1] += A;
		cell[cy][cx][2] += B;
		cell[cy][cx][3] += 1;
		mean[0] += L;
		mean[1] += A;
		mean[2] += B;
	}
	hellinger_block(hist, N_HIST);
	for (int c = 0; c < 3; c++)
		mean[c] /= (double)npx;

	/* layout: per row, column pairs (c, 3 - c): sum and |difference| */
	float *lp = lay;
	for (int r = 0; r < GRID; r++)
		for (int c = 0; c < GRID / 2; c++) {
			const double *u = cell[r][c],
				     *v = cell[r][GRID - 1 - c];
			for (int ch = 0; ch < 3; ch++) {
				double du = u[3] > 0 ? u[ch] / u[3] - mean[ch]
						     : 0,
				       dv = v[3] > 0 ? v[ch] / v[3] - mean[ch]
						     : 0;
				*lp++ = (float)((du + dv) / 50.0);
				*lp++ = (float)(fabs(du - dv) / 50.0);
			}
		}
	l2_block(lay, N_LAY, 1.0f);

	/* edges: Sobel on L, orientation in 0..180 degrees, soft-binned */
	for (int y = 1; y < h - 1; y++)
		for (int x = 1; x < w - 1; x++) {
			const float *p = lab + 3 * ((size_t)y * w + x);
			size_t rs = 3 * (size_t)w;
			float gx = (p[3 - rs] + 2 * p[3] + p[3 + rs]) -
				   (p[-3 - rs] + 2 * p[-3] + p[-3 + rs]);
			float gy = (p[rs - 3] + 2 * p[rs] + p[rs + 3]) -
				   (p[-rs - 3] + 2 * p[-rs] + p[-rs + 3]);
			float m = sqrtf(gx * gx + gy * gy);
			if (m < 1.0f)
				continue;
			float t = atan2f(gy, gx);
			if (t < 0)
				t += (float)M_PI;
			float u = t / (float)(M_PI / OBINS) - 0.5f;
			int i0 = (int)floorf(u);
			float f = u - (float)i0;
			int j0 = ((i0 % OBINS) + OBINS) % OBINS,
			    j1 = (j0 + 1) % OBINS;
			int cy = y * GRID / h, cx = x * GRID / w;
			ori[cy][cx][j0] += m * (1 - f);
			ori[cy][cx][j1] += m * f;
		}
	float *ep = edge;
	for (int r = 0; r < GRID; r++)
		for (int c = 0; c < GRID / 2; c++)
			for (int i = 0; i < OBINS / 2; i++) {
				int c2 = GRID - 1 - c, i2 = OBINS - 1 - i;
				*ep++ = ori[r][c][i] + ori[r][c2][i2];
				*ep++ = ori[r][c][i2] + ori[r][c2][i];
			}
	hellinger_block(edge, N_EDGE);

	for (int i = 0; i < N_HIST; i++)
		hist[i] *= W_HIST;
	for (int i = 0; i < N_LAY; i++)
		lay[i] *= W_LAY;
	for (int i = 0; i < N_EDGE; i++)
		edge[i] *= W_EDGE;
	l2_block(out, PM_EMBED_BUILTIN_DIM, 1.0f);
	bool zero = true;
	for (int i = 0; i < PM_EMBED_BUILTIN_DIM && zero; i++)
		zero = out[i] == 0;
	if (zero)
		out[0] = 1; /* still a unit vector */
}

pm_status pm_embed_builtin(VipsImage *in, float *out, pm_err *err)
{
	float *px;
	float *lab;
	int w = 0, h = 0;
	pm_status s;

	if (!out)
		return pm_fail(err, PM_ERR_INTERNAL, "embed: no output");
	s = small_rgb(in, &px, &w, &h, err);
	if (s)
		return s;
	lab = malloc((size_t)w * h * 3 * sizeof *lab);
	if (!lab) {
		free(px);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	features(px, w, h, out, lab);
	free(lab);
	free(px);
	return PM_OK;
}

/* ---- the stage ---- */

typedef struct embed_state {
	pm_embed_model *model; /* NULL: built-in engine; owned */
} embed_state;

static pm_status embed_check(json_t *params, pm_err *err)
{
	json_t *m = json_object_get(params, "model"), *d = NULL, *sz;
	void *buf = NULL;
	size_t len;
	json_error_t je;
	pm_status s;

	if (!m || json_is_null(m)) {
		json_object_del(params, "model");
		json_object_del(params, "size");
		json_object_del(params, "model_id");
		return PM_OK;
	}
	if (!json_is_string(m) || !json_string_length(m) ||
	    json_string_length(m) > 4000)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "embed: \"model\" wants the path of a model "
			       "descriptor (JSON)");
	s = pm_read_file(json_string_value(m), 1 << 16, &buf, &len, err);
	if (s) {
		char why[sizeof err->msg];
		snprintf(why, sizeof why, "%s", err->msg);
		return pm_fail(err, PM_ERR_PIPELINE,
			       "embed: model descriptor: %s", why);
	}
	d = json_loadb(buf, len, 0, &je);
	free(buf);
	sz = json_object_get(d, "size");
	if (!json_is_integer(sz) || json_integer_value(sz) < 8 ||
	    json_integer_value(sz) > 4096) {
		json_decref(d);
		return pm_fail(err, PM_ERR_PIPELINE,
			       "embed: model descriptor %s needs \"size\" "
			       "(8 to 4096)",
			       json_string_value(m));
	}
	json_object_set_new(params, "size",
			    json_integer(json_integer_value(sz)));
	/* The model file's id in the params, so the pipeline hash (and with
	 * it every asset's identity) changes when the model does. */
	json_t *mf = json_object_get(d, "model");
	char path[4200], hex[65];
	const char *desc = json_string_value(m);
	const char *slash = strrchr(desc, '/');
	if (!json_is_string(mf) || !json_string_length(mf)) {
		json_decref(d);
		return pm_fail(err, PM_ERR_PIPELINE,
			       "embed: model descriptor %s needs \"model\" "
			       "(the .onnx file)",
			       desc);
	}
	if (json_string_value(mf)[0] == '/' || !slash)
		snprintf(path, sizeof path, "%s", json_string_value(mf));
	else
		snprintf(path, sizeof path, "%.*s/%s", (int)(slash - desc),
			 desc, json_string_value(mf));
	json_decref(d);
	s = pm_sha256_file(path, hex, NULL, err);
	if (s) {
		char why[sizeof err->msg];
		snprintf(why, sizeof why, "%s", err->msg);
		return pm_fail(err, PM_ERR_PIPELINE,
			       "embed: model file of %s: %s", desc, why);
	}
	hex[16] = '\0'; /* as pm_embed_model_id */
	json_object_set_new(params, "model_id", json_string(hex));
	return PM_OK;
}

static int embed_decode_size(const json_t *params)
{
	json_t *sz = json_object_get(params, "size");

	return json_is_integer(sz) ? (int)json_integer_value(sz) : EMB_EDGE;
}

static pm_status embed_init(const json_t *params, void **state, pm_err *err)
{
	embed_state *es = calloc(1, sizeof *es);
	json_t *m = json_object_get(params, "model");
	pm_status s;

	if (!es)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	if (json_is_string(m)) {
		s = pm_embed_model_open(json_string_value(m), 1, &es->model,
					err);
		if (s) {
			free(es);
			return s;
		}
		int dim = pm_embed_model_dim(es->model);
		if (dim < 1 || dim > 65536) {
			pm_embed_model_close(es->model);
			free(es);
			return pm_fail(err, PM_ERR_PIPELINE,
				       "embed: model gives %d-float vectors",
				       dim);
		}
	}
	*state = es;
	return PM_OK;
}

static pm_status embed_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	embed_state *es = state;
	int dim =
	    es->model ? pm_embed_model_dim(es->model) : PM_EMBED_BUILTIN_DIM;
	const char *id =
	    es->model ? pm_embed_model_id(es->model) : PM_EMBED_BUILTIN_ID;
	float *v = malloc((size_t)dim * sizeof *v);
	pm_status s;

	if (!v)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	s = es->model ? pm_embed_model_run(es->model, ctx->image, v, err)
		      : pm_embed_builtin(ctx->image, v, err);
	if (s) {
		free(v);
		return s;
	}
	free(ctx->embedding);
	ctx->embedding = v; /* the context owns it now */
	ctx->embedding_dim = dim;
	snprintf(ctx->embedding_model, sizeof ctx->embedding_model, "%s", id);
	if (!ctx->meta)
		ctx->meta = json_object();
	json_object_set_new(ctx->meta, "embed",
			    json_pack("{s:s,s:i}", "model", id, "dim", dim));
	return PM_OK;
}

static void embed_fini(void *state)
{
	embed_state *es = state;

	if (!es)
		return;
	pm_embed_model_close(es->model);
	free(es);
}

const pm_stage_vt pm_stage_embed = {
    .name = "embed",
    .version = 1,
    .check = embed_check,
    .decode_size = embed_decode_size,
    .init = embed_init,
    .process = embed_process,
    .fini = embed_fini,
};
