/* adrender.c — one finished ad from a template, a product image and a
 * catalog row: background, product (fitted, with a drop shadow from its
 * alpha), logo and text blocks, composited with libvips.
 *
 * Threads: any thread, with a pm_template and a pm_adtext that no other
 * thread uses at the same time.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "image/template.h"

#define MAX_LAYERS (4 + PM_TB_COUNT)

static void unref_all(VipsImage **v, int n)
{
	for (int i = 0; i < n; i++)
		if (v[i])
			g_object_unref(v[i]);
}

/* vips failure as a pm_err; clears libvips' error buffer. */
static pm_status vfail(pm_err *err, const char *what)
{
	pm_status s = pm_fail(err, PM_ERR_ENCODE, "compose: %s: %s", what,
			      vips_error_buffer());
	vips_error_clear();
	return s;
}

/* The background as a t->width x t->height sRGB image (3 bands, in
 * memory). */
static pm_status background(const pm_template *t, VipsImage **out, pm_err *err)
{
	VipsImage *a = NULL, *b = NULL, *c = NULL, *xy = NULL, *xs = NULL,
		  *ys = NULL, *x = NULL, *y = NULL, *tt = NULL;
	pm_status s = PM_OK;

	if (t->bg == PM_BG_IMAGE && t->bg_im) {
		a = t->bg_im;
		g_object_ref(a);
	} else if (t->bg == PM_BG_GRADIENT) {
		double th = t->grad_angle * M_PI / 180.0;
		double cx = cos(th), cy = sin(th);
		/* projections of the four corners on the direction */
		double p[4] = {0, cx * (t->width - 1), cy * (t->height - 1),
			       cx * (t->width - 1) + cy * (t->height - 1)};
		double lo = p[0], hi = p[0], rng;
		for (int i = 1; i < 4; i++) {
			lo = p[i] < lo ? p[i] : lo;
			hi = p[i] > hi ? p[i] : hi;
		}
		rng = hi - lo > 1e-9 ? hi - lo : 1;
		double mul[3] = {t->grad_to.r - t->grad_from.r,
				 t->grad_to.g - t->grad_from.g,
				 t->grad_to.b - t->grad_from.b};
		double add[3] = {t->grad_from.r, t->grad_from.g,
				 t->grad_from.b};
		if (vips_xyz(&xy, t->width, t->height, NULL) ||
		    vips_extract_band(xy, &x, 0, NULL) ||
		    vips_extract_band(xy, &y, 1, NULL) ||
		    vips_linear1(x, &xs, cx / rng, -lo / rng, NULL) ||
		    vips_linear1(y, &ys, cy / rng, 0, NULL) ||
		    vips_add(xs, ys, &tt, NULL) ||
		    vips_linear(tt, &a, mul, add, 3, "uchar", TRUE, NULL))
			s = vfail(err, "gradient");
	} else {
		double mul[3] = {0, 0, 0};
		double add[3] = {t->bg_color.r, t->bg_color.g, t->bg_color.b};
		if (vips_black(&c, t->width, t->height, "bands", 3, NULL) ||
		    vips_linear(c, &a, mul, add, 3, "uchar", TRUE, NULL))
			s = vfail(err, "background");
	}
	if (!s && (vips_copy(a, &b, "interpretation", VIPS_INTERPRETATION_sRGB,
			     NULL) ||
		   !(*out = vips_image_copy_memory(b))))
		s = vfail(err, "background");
	unref_all((VipsImage *[]){a, b, c, xy, xs, ys, x, y, tt}, 9);
	return s;
}

/* Bounding box of alpha > 8 in a one-band uchar image: 1 found, 0 none
 * (all transparent), -1 error (err set). */
static int alpha_bbox(VipsImage *al, int *l, int *t, int *w, int *h,
		      pm_err *err)
{
	VipsImage *m = vips_image_copy_memory(al);
	int W = vips_image_get_width(al), H = vips_image_get_height(al);
	int x0 = W, y0 = H, x1 = -1, y1 = -1;

	if (!m) {
		vfail(err, "product alpha");
		return -1;
	}
	for (int y = 0; y < H; y++) {
		const unsigned char *p = VIPS_IMAGE_ADDR(m, 0, y);
		for (int x = 0; x < W; x++)
			if (p[x] > 8) {
				x0 = x < x0 ? x : x0;
				x1 = x > x1 ? x : x1;
				y0 = y < y0 ? y : y0;
				y1 = y;
			}
	}
	g_object_unref(m);
	if (x1 < 0)
		return 0;
	*l = x0;
	*t = y0;
	*w = x1 - x0 + 1;
	*h = y1 - y0 + 1;
	return 1;
}

/* RGBA product fitted to the template's product box: a cut-out is first
 * trimmed to its alpha's bounding box; then contained or covered
 * (vips_thumbnail_image, premultiplied for alpha). In memory. */
static pm_status fit_product(const pm_template *t, VipsImage *in,
			     VipsImage **out, int *px, int *py, pm_err *err)
{
	VipsImage *v[6] = {NULL};
	VipsImage *src = in, *r = NULL;
	int iw = t->product.w - 2 * t->padding;
	int ih = t->product.h - 2 * t->padding;
	int bands = vips_image_get_bands(in);
	pm_status s = PM_OK;

	*out = NULL;
	if (bands != 3 && bands != 4) { /* grey (+alpha): to sRGB */
		if (vips_colourspace(in, &v[0], VIPS_INTERPRETATION_sRGB,
				     NULL)) {
			s = vfail(err, "product");
			goto out;
		}
		src = v[0];
		bands = vips_image_get_bands(src);
	}
	if (bands == 4) {
		int l = 0, tp = 0, w = 0, h = 0, found;
		if (vips_extract_band(src, &v[1], 3, NULL)) {
			s = vfail(err, "product alpha");
			goto out;
		}
		found = alpha_bbox(v[1], &l, &tp, &w, &h, err);
		if (found < 0) {
			s = PM_ERR_ENCODE;
			goto out;
		}
		if (found) {
			if (vips_extract_area(src, &v[2], l, tp, w, h, NULL)) {
				s = vfail(err, "product crop");
				goto out;
			}
			src = v[2];
		}
	}
	if (t->fit == PM_FIT_COVER
		? vips_thumbnail_image(src, &v[3], iw, "height", ih, "size",
				       VIPS_SIZE_BOTH, "crop",
				       VIPS_INTERESTING_CENTRE, NULL)
		: vips_thumbnail_image(src, &v[3], iw, "height", ih, "size",
				       VIPS_SIZE_BOTH, NULL)) {
		s = vfail(err, "product resize");
		goto out;
	}
	if ((bands == 4 ? vips_copy(v[3], &v[4], NULL)
			: vips_bandjoin_const1(v[3], &v[4], 255, NULL)) ||
	    !(r = vips_image_copy_memory(v[4]))) {
		s = vfail(err, "product");
		goto out;
	}
	*px = t->product.x + t->padding + (iw - vips_image_get_width(r)) / 2;
	*py = t->product.y + t->padding + (ih - vips_image_get_height(r)) / 2;
	*out = r;
out:
	unref_all(v, 6);
	return s;
}

/* Drop shadow, drawn straight onto canvas (RGB, ours, in memory): the
 * product's alpha times opacity, blurred, offset by (dx, dy), darkening
 * what is under it. The blur runs on a copy of the alpha shrunk by k (so
 * sigma / k is about 3 px) and is sampled back up bilinearly while it is
 * blended: the same soft edge for a small fraction of the cost of a full
 * size blur and resize. */
static pm_status shadow_draw(VipsImage *canvas, const pm_template *t,
			     VipsImage *prod, int px, int py, pm_err *err)
{
	VipsImage *v[6] = {NULL};
	double sigma = t->shadow_blur / 2.0;
	int m = (int)ceil(t->shadow_blur * 1.5) + 1;
	int k = sigma > 6 ? (int)(sigma / 3) : 1;
	int W = vips_image_get_width(prod) + 2 * m;
	int H = vips_image_get_height(prod) + 2 * m;
	int cw = vips_image_get_width(canvas),
	    ch = vips_image_get_height(canvas);
	int ox = px - m + t->shadow_dx, oy = py - m + t->shadow_dy;
	VipsImage *a, *sm = NULL;
	int sw, sh;
	double fx, fy;
	pm_status s = PM_OK;

	if (vips_extract_band(prod, &v[0], 3, NULL) ||
	    vips_linear1(v[0], &v[1], t->shadow_opacity, 0, "uchar", TRUE,
			 NULL) ||
	    vips_embed(v[1], &v[2], m, m, W, H, NULL)) {
		s = vfail(err, "shadow");
		goto out;
	}
	a = v[2];
	if (k > 1) {
		if (vips_shrink(a, &v[3], k, k, NULL)) {
			s = vfail(err, "shadow");
			goto out;
		}
		a = v[3];
	}
	if (sigma / k >= 0.5) {
		if (vips_gaussblur(a, &v[4], sigma / k, "min_ampl", 0.05,
				   NULL)) {
			s = vfail(err, "shadow blur");
			goto out;
		}
		a = v[4];
	}
	if (vips_cast_uchar(a, &v[5], NULL) ||
	    !(sm = vips_image_copy_memory(v[5]))) {
		s = vfail(err, "shadow");
		goto out;
	}
	sw = vips_image_get_width(sm);
	sh = vips_image_get_height(sm);
	fx = (double)sw / W;
	fy = (double)sh / H;
	for (int y = oy > 0 ? oy : 0; y < oy + H && y < ch; y++) {
		double sy = (y - oy + 0.5) * fy - 0.5;
		int y0 = (int)floor(sy);
		double wy = sy - y0;
		int ya = y0 < 0 ? 0 : y0 >= sh ? sh - 1 : y0;
		int yb = y0 + 1 < 0 ? 0 : y0 + 1 >= sh ? sh - 1 : y0 + 1;
		const unsigned char *ra = VIPS_IMAGE_ADDR(sm, 0, ya);
		const unsigned char *rb = VIPS_IMAGE_ADDR(sm, 0, yb);
		unsigned char *d = VIPS_IMAGE_ADDR(canvas, 0, y);
		for (int x = ox > 0 ? ox : 0; x < ox + W && x < cw; x++) {
			double sx = (x - ox + 0.5) * fx - 0.5;
			int x0 = (int)floor(sx);
			double wx = sx - x0;
			int xa = x0 < 0 ? 0 : x0 >= sw ? sw - 1 : x0;
			int xb = x0 + 1 < 0	? 0
				 : x0 + 1 >= sw ? sw - 1
						: x0 + 1;
			double al =
			    (ra[xa] * (1 - wx) + ra[xb] * wx) * (1 - wy) +
			    (rb[xa] * (1 - wx) + rb[xb] * wx) * wy;
			unsigned ai = (unsigned)(al + 0.5);
			if (!ai)
				continue;
			for (int c = 0; c < 3; c++)
				d[3 * x + c] =
				    (unsigned char)((d[3 * x + c] * (255 - ai) +
						     127) /
						    255);
		}
	}
out:
	if (sm)
		g_object_unref(sm);
	unref_all(v, 6);
	return s;
}

/* Blends layer (RGBA) over canvas (RGB, in memory, ours) at x, y, over
 * the covered region only. This is Porter-Duff OVER onto an opaque
 * destination, dst + (src - dst) * a, in 8-bit integer arithmetic: what
 * vips_composite2 computes, without its float pipeline over the whole
 * region (the one op that dominated the render time). */
static pm_status paste(VipsImage *canvas, VipsImage *layer, int x, int y,
		       pm_err *err)
{
	int cw = vips_image_get_width(canvas),
	    ch = vips_image_get_height(canvas);
	int x0 = x > 0 ? x : 0, y0 = y > 0 ? y : 0;
	int x1 = x + vips_image_get_width(layer);
	int y1 = y + vips_image_get_height(layer);
	VipsImage *u = NULL, *lm = NULL;

	x1 = x1 < cw ? x1 : cw;
	y1 = y1 < ch ? y1 : ch;
	if (x1 <= x0 || y1 <= y0)
		return PM_OK; /* entirely off the canvas */
	if (vips_image_get_bands(layer) != 4 ||
	    vips_image_get_bands(canvas) != 3 ||
	    vips_image_get_format(canvas) != VIPS_FORMAT_UCHAR)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "compose: layer of %d bands on a canvas of %d",
			       vips_image_get_bands(layer),
			       vips_image_get_bands(canvas));
	if (vips_cast_uchar(layer, &u, NULL) ||
	    !(lm = vips_image_copy_memory(u))) {
		if (u)
			g_object_unref(u);
		return vfail(err, "composite");
	}
	g_object_unref(u);
	for (int yy = y0; yy < y1; yy++) {
		unsigned char *d = VIPS_IMAGE_ADDR(canvas, x0, yy);
		const unsigned char *sp = VIPS_IMAGE_ADDR(lm, x0 - x, yy - y);
		for (int xx = x0; xx < x1; xx++, d += 3, sp += 4) {
			unsigned a = sp[3];
			if (a == 0)
				continue;
			if (a == 255) {
				d[0] = sp[0];
				d[1] = sp[1];
				d[2] = sp[2];
				continue;
			}
			for (int c = 0; c < 3; c++)
				d[c] =
				    (unsigned char)((sp[c] * a +
						     d[c] * (255 - a) + 127) /
						    255);
		}
	}
	g_object_unref(lm);
	return PM_OK;
}

pm_status pm_ad_render(pm_adtext *a, pm_template *t, VipsImage *product,
		       const pm_ad_row *row, VipsImage **out, json_t **facts,
		       pm_err *err)
{
	VipsImage *layer[MAX_LAYERS] = {NULL};
	int lx[MAX_LAYERS] = {0}, ly[MAX_LAYERS] = {0}, n = 0;
	VipsImage *canvas = NULL;
	json_t *f = json_object();
	char price[128] = "";
	pm_status s;

	*out = NULL;
	*facts = NULL;
	if (!f)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	if (!t->bg_im) { /* made once per template, then copied */
		s = background(t, &t->bg_im, err);
		if (s)
			goto out;
	}
	canvas = vips_image_new_memory();
	if (vips_image_write(t->bg_im, canvas)) {
		s = vfail(err, "canvas");
		goto out;
	}
	if (product) {
		VipsImage *p = NULL;
		int px = 0, py = 0;
		s = fit_product(t, product, &p, &px, &py, err);
		if (s)
			goto out;
		if (t->shadow && t->shadow_opacity > 0) {
			s = shadow_draw(canvas, t, p, px, py, err);
			if (s) {
				g_object_unref(p);
				goto out;
			}
		}
		layer[n] = p;
		lx[n] = px;
		ly[n] = py;
		n++;
		json_object_set_new(f, "product",
				    json_pack("[iiii]", px, py,
					      vips_image_get_width(p),
					      vips_image_get_height(p)));
	}
	if (t->has_logo && t->logo_im) {
		layer[n] = t->logo_im;
		g_object_ref(layer[n]);
		lx[n] = t->logo.x +
			(t->logo.w - vips_image_get_width(t->logo_im)) / 2;
		ly[n] = t->logo.y +
			(t->logo.h - vips_image_get_height(t->logo_im)) / 2;
		n++;
	}
	for (int k = 0; k < PM_TB_COUNT; k++) {
		const pm_text_block *b = &t->text[k];
		const char *text = NULL;
		char got[128] = "";
		pm_textfit fit;
		json_t *bf;
		bool installed;

		if (!b->present)
			continue;
		switch ((pm_tb_kind)k) {
		case PM_TB_TITLE:
			text = row->title;
			break;
		case PM_TB_PRICE:
			if (row->price && row->price[0]) {
				const char *cur =
				    row->currency && row->currency[0]
					? row->currency
					: t->currency;
				s = pm_price_format(row->price, cur, t->locale,
						    price, sizeof price, err);
				if (s)
					goto out;
				text = price;
			}
			break;
		case PM_TB_CTA:
			text = b->text;
			break;
		default:
			text =
			    row->brand && row->brand[0] ? row->brand : b->text;
			break;
		}
		if (!text || !text[0])
			continue;
		installed =
		    pm_adtext_font_installed(a, b->font, got, sizeof got);
		s = pm_adtext_render(a, b, b->font, text, t->width, t->height,
				     &fit, &layer[n], err);
		if (s)
			goto out;
		bf = json_pack("{s:i,s:i,s:b,s:s,s:[iiii]}", "size", fit.size,
			       "lines", fit.lines, "truncated", fit.truncated,
			       "font", got, "ink", fit.ink.x, fit.ink.y,
			       fit.ink.w, fit.ink.h);
		if (!installed)
			json_object_set_new(bf, "font_fallback",
					    json_string(b->font));
		if (fit.missing > 0)
			json_object_set_new(bf, "missing_glyphs",
					    json_integer(fit.missing));
		if (k == PM_TB_PRICE)
			json_object_set_new(bf, "text", json_string(price));
		json_object_set_new(f, pm_tb_name((pm_tb_kind)k), bf);
		if (layer[n]) {
			lx[n] = fit.region.x;
			ly[n] = fit.region.y;
			n++;
		}
	}
	for (int i = 0; i < n && !s; i++)
		s = paste(canvas, layer[i], lx[i], ly[i], err);
	if (s)
		goto out;
	*out = canvas;
	canvas = NULL;
	*facts = f;
	f = NULL;
out:
	for (int i = 0; i < n; i++)
		if (layer[i])
			g_object_unref(layer[i]);
	if (canvas)
		g_object_unref(canvas);
	json_decref(f);
	return s;
}
