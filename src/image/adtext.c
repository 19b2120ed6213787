/* adtext.c — text blocks of an ad: auto-fit, wrapping, line limit with
 * ellipsis, alignment, an optional filled box, rendered to an RGBA image.
 *
 * Uses Pango and cairo directly (the libraries vips_text is built on) for
 * three reasons: the text is set as plain text (pango_layout_set_text), so
 * a hostile title can never be parsed as markup; Pango reports the exact
 * line count and ellipsizes the last allowed line itself (negative layout
 * height + PANGO_ELLIPSIZE_END), where vips_text gives only a bitmap; and
 * each worker has its own font map, where vips_text serialises every call
 * in the process behind one lock. Fonts come from fontconfig, with Pango's
 * per-character fallback (so Cyrillic, Greek and CJK titles find a font
 * that has them).
 *
 * Threads: a pm_adtext belongs to one thread (the compose stage creates
 * one per worker in init); different pm_adtext may be used at once.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cairo.h>
#include <pango/pangocairo.h>

#include "image/template.h"

struct pm_adtext {
	PangoFontMap *fm; /* owned */
	PangoContext *pc; /* owned */
};

pm_status pm_adtext_new(pm_adtext **out, pm_err *err)
{
	pm_adtext *a = calloc(1, sizeof *a);
	cairo_font_options_t *fo;

	*out = NULL;
	if (!a)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	a->fm = pango_cairo_font_map_new();
	a->pc = a->fm ? pango_font_map_create_context(a->fm) : NULL;
	if (!a->pc) {
		pm_adtext_free(a);
		return pm_fail(err, PM_ERR_INTERNAL,
			       "pango: no font map (fontconfig broken?)");
	}
	/* Unhinted metrics: layout scales linearly with size, so the
	 * binary search on size sees monotonic extents. */
	fo = cairo_font_options_create();
	cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
	cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_NONE);
	cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
	pango_cairo_context_set_font_options(a->pc, fo);
	cairo_font_options_destroy(fo);
	pango_cairo_context_set_resolution(a->pc, 72.0);
	*out = a;
	return PM_OK;
}

void pm_adtext_free(pm_adtext *a)
{
	if (!a)
		return;
	if (a->pc)
		g_object_unref(a->pc);
	if (a->fm)
		g_object_unref(a->fm);
	free(a);
}

bool pm_adtext_font_installed(pm_adtext *a, const char *font, char *got,
			      size_t got_sz)
{
	PangoFontDescription *d = pango_font_description_from_string(font);
	PangoFontDescription *d2 = NULL;
	PangoFont *f;
	const char *want = pango_font_description_get_family(d);
	const char *have = NULL;
	bool ok = false;

	pango_font_description_set_absolute_size(d, 20 * PANGO_SCALE);
	f = pango_font_map_load_font(a->fm, a->pc, d);
	if (f) {
		d2 = pango_font_describe(f);
		have = pango_font_description_get_family(d2);
	}
	if (got && got_sz)
		snprintf(got, got_sz, "%s", have ? have : "");
	/* A description may list families ("Noto Sans, DejaVu Sans"):
	 * installed when the font Pango picked is one of them. */
	if (want && have) {
		char buf[PM_TPL_MAX_FONT + 1], *save = NULL;
		snprintf(buf, sizeof buf, "%s", want);
		for (char *t = strtok_r(buf, ",", &save); t && !ok;
		     t = strtok_r(NULL, ",", &save)) {
			while (*t == ' ')
				t++;
			size_t n = strlen(t);
			while (n && t[n - 1] == ' ')
				t[--n] = '\0';
			ok = strcasecmp(t, have) == 0;
		}
	}
	if (d2)
		pango_font_description_free(d2);
	if (f)
		g_object_unref(f);
	pango_font_description_free(d);
	return ok;
}

/* Valid UTF-8 (invalid bytes become U+FFFD), control characters and white
 * space runs as one space, trimmed, at most PM_TPL_MAX_ROW_TEXT bytes (cut
 * at a character boundary), upper-cased when asked. g_free the result. */
static char *clean_text(const char *in, bool upper)
{
	char *v = g_utf8_make_valid(in, -1), *o, *r;
	size_t n = 0;
	bool space = true; /* drops leading space */

	o = g_malloc(strlen(v) + 1);
	for (const char *p = v; *p; p = g_utf8_next_char(p)) {
		gunichar c = g_utf8_get_char(p);
		int cl = (int)(g_utf8_next_char(p) - p);
		if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) ||
		    c == 0x2028 || c == 0x2029 || g_unichar_isspace(c)) {
			if (!space)
				o[n++] = ' ';
			space = true;
			continue;
		}
		if (n + (size_t)cl > PM_TPL_MAX_ROW_TEXT)
			break;
		memcpy(o + n, p, (size_t)cl);
		n += (size_t)cl;
		space = false;
	}
	while (n && o[n - 1] == ' ')
		n--;
	o[n] = '\0';
	g_free(v);
	if (!upper)
		return o;
	r = g_utf8_strup(o, -1);
	g_free(o);
	return r;
}

typedef struct measure {
	PangoRectangle ink, log;
	int lines;
} measure;

static void measure_at(PangoLayout *l, PangoFontDescription *fd, int size,
		       measure *m)
{
	pango_font_description_set_absolute_size(fd,
						 (double)size * PANGO_SCALE);
	pango_layout_set_font_description(l, fd);
	pango_layout_get_pixel_extents(l, &m->ink, &m->log);
	m->lines = pango_layout_get_line_count(l);
}

static bool fits(const measure *m, int max_lines, int iw, int ih)
{
	int h = m->log.height > m->ink.height ? m->log.height : m->ink.height;
	return m->lines <= max_lines && h <= ih && m->ink.width <= iw &&
	       m->log.width <= iw;
}

static void rounded_rect(cairo_t *cr, double x, double y, double w, double h,
			 double r)
{
	if (r > w / 2)
		r = w / 2;
	if (r > h / 2)
		r = h / 2;
	if (r <= 0) {
		cairo_rectangle(cr, x, y, w, h);
		return;
	}
	cairo_new_sub_path(cr);
	cairo_arc(cr, x + w - r, y + r, r, -M_PI / 2, 0);
	cairo_arc(cr, x + w - r, y + h - r, r, 0, M_PI / 2);
	cairo_arc(cr, x + r, y + h - r, r, M_PI / 2, M_PI);
	cairo_arc(cr, x + r, y + r, r, M_PI, 3 * M_PI / 2);
	cairo_close_path(cr);
}

static int imin(int a, int b)
{
	return a < b ? a : b;
}

static int imax(int a, int b)
{
	return a > b ? a : b;
}

pm_status pm_adtext_render(pm_adtext *a, const pm_text_block *b,
			   const char *font, const char *text, int canvas_w,
			   int canvas_h, pm_textfit *fit, VipsImage **out,
			   pm_err *err)
{
	char *t = clean_text(text ? text : "", b->uppercase);
	PangoLayout *l = NULL;
	PangoFontDescription *fd = NULL;
	cairo_surface_t *sf = NULL;
	cairo_t *cr = NULL;
	VipsImage *raw = NULL;
	measure m;
	int iw = b->box.w - 2 * b->padding, ih = b->box.h - 2 * b->padding;
	int x0, y0, lo, hi;
	pm_rect reg;
	pm_status s = PM_OK;

	memset(fit, 0, sizeof *fit);
	*out = NULL;
	if (!t[0] && !b->has_fill) {
		g_free(t);
		return PM_OK; /* nothing to draw */
	}
	l = pango_layout_new(a->pc);
	fd = pango_font_description_from_string(font);
	pango_layout_set_text(l, t, -1);
	pango_layout_set_width(l, iw * PANGO_SCALE);
	pango_layout_set_wrap(l, PANGO_WRAP_WORD_CHAR);
	pango_layout_set_alignment(
	    l, b->halign == PM_ALIGN_START    ? PANGO_ALIGN_LEFT
	       : b->halign == PM_ALIGN_CENTRE ? PANGO_ALIGN_CENTER
					      : PANGO_ALIGN_RIGHT);
	/* Auto-fit: the largest size in [min, max] that fits. */
	lo = b->size_min;
	hi = b->size_max;
	measure_at(l, fd, hi, &m);
	if (fits(&m, b->max_lines, iw, ih)) {
		lo = hi;
	} else {
		measure_at(l, fd, lo, &m);
		if (fits(&m, b->max_lines, iw, ih)) {
			while (hi - lo > 1) { /* lo fits, hi does not */
				int mid = lo + (hi - lo) / 2;
				measure_at(l, fd, mid, &m);
				if (fits(&m, b->max_lines, iw, ih))
					lo = mid;
				else
					hi = mid;
			}
		} else {
			/* Over the line limit even at the smallest size:
			 * ellipsize at the lines that fit the box. */
			int lines = imin(b->max_lines, m.lines);
			pango_layout_set_ellipsize(l, PANGO_ELLIPSIZE_END);
			for (; lines >= 1; lines--) {
				pango_layout_set_height(l, -lines);
				measure_at(l, fd, lo, &m);
				if (fits(&m, b->max_lines, iw, ih))
					break;
			}
			fit->truncated = true;
		}
	}
	measure_at(l, fd, lo, &m);
	fit->truncated = fit->truncated || pango_layout_is_ellipsized(l);
	fit->missing = pango_layout_get_unknown_glyphs_count(l);
	fit->size = lo;
	fit->lines = t[0] ? m.lines : 0;
	/* Place: vertical alignment of the logical box, then nudge so the
	 * ink stays inside the inner box when it can. */
	x0 = 0;
	y0 = b->valign == PM_ALIGN_START    ? 0
	     : b->valign == PM_ALIGN_CENTRE ? (ih - m.log.height) / 2
					    : ih - m.log.height;
	if (m.ink.width <= iw) {
		if (m.ink.x + x0 < 0)
			x0 = -m.ink.x;
		if (m.ink.x + m.ink.width + x0 > iw)
			x0 = iw - m.ink.x - m.ink.width;
	}
	if (m.ink.height <= ih) {
		if (m.ink.y + y0 < 0)
			y0 = -m.ink.y;
		if (m.ink.y + m.ink.height + y0 > ih)
			y0 = ih - m.ink.y - m.ink.height;
	}
	x0 += b->box.x + b->padding;
	y0 += b->box.y + b->padding;
	fit->ink =
	    (pm_rect){m.ink.x + x0, m.ink.y + y0, m.ink.width, m.ink.height};
	if (!t[0])
		fit->ink = (pm_rect){b->box.x, b->box.y, 0, 0};
	/* The image covers the box and the ink, within the canvas. */
	{
		int l0 = imin(b->box.x, fit->ink.x);
		int t0 = imin(b->box.y, fit->ink.y);
		int r0 = imax(b->box.x + b->box.w, fit->ink.x + fit->ink.w);
		int b0 = imax(b->box.y + b->box.h, fit->ink.y + fit->ink.h);
		l0 = imax(l0, 0);
		t0 = imax(t0, 0);
		r0 = imin(r0, canvas_w);
		b0 = imin(b0, canvas_h);
		reg = (pm_rect){l0, t0, r0 - l0, b0 - t0};
	}
	fit->region = reg;
	if (reg.w <= 0 || reg.h <= 0)
		goto out;
	sf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, reg.w, reg.h);
	if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
		s = pm_fail(err, PM_ERR_NOMEM, "cairo: %dx%d surface", reg.w,
			    reg.h);
		goto out;
	}
	cr = cairo_create(sf);
	if (b->has_fill) {
		cairo_set_source_rgba(cr, b->fill.r / 255.0, b->fill.g / 255.0,
				      b->fill.b / 255.0, b->fill.a / 255.0);
		rounded_rect(cr, b->box.x - reg.x, b->box.y - reg.y, b->box.w,
			     b->box.h, b->radius);
		cairo_fill(cr);
	}
	if (t[0]) {
		cairo_set_source_rgba(cr, b->color.r / 255.0,
				      b->color.g / 255.0, b->color.b / 255.0,
				      b->color.a / 255.0);
		cairo_move_to(cr, x0 - reg.x, y0 - reg.y);
		pango_cairo_show_layout(cr, l);
	}
	cairo_surface_flush(sf);
	{
		/* premultiplied native-endian ARGB32 -> straight RGBA */
		unsigned char *d = cairo_image_surface_get_data(sf);
		int stride = cairo_image_surface_get_stride(sf);
		unsigned char *px = g_malloc((size_t)reg.w * reg.h * 4);
		for (int y = 0; y < reg.h; y++) {
			const uint32_t *row =
			    (const uint32_t *)(d + (size_t)y * stride);
			unsigned char *o = px + (size_t)y * reg.w * 4;
			for (int x = 0; x < reg.w; x++, o += 4) {
				uint32_t v = row[x];
				unsigned al = v >> 24;
				o[3] = (unsigned char)al;
				if (!al) {
					o[0] = o[1] = o[2] = 0;
					continue;
				}
				o[0] = (unsigned char)imin(
				    255,
				    (int)((((v >> 16) & 255) * 255 + al / 2) /
					  al));
				o[1] = (unsigned char)imin(
				    255,
				    (int)((((v >> 8) & 255) * 255 + al / 2) /
					  al));
				o[2] = (unsigned char)imin(
				    255,
				    (int)(((v & 255) * 255 + al / 2) / al));
			}
		}
		raw = vips_image_new_from_memory_copy(
		    px, (size_t)reg.w * reg.h * 4, reg.w, reg.h, 4,
		    VIPS_FORMAT_UCHAR);
		g_free(px);
		if (!raw || vips_copy(raw, out, "interpretation",
				      VIPS_INTERPRETATION_sRGB, NULL)) {
			s = pm_fail(err, PM_ERR_NOMEM, "text image: %s",
				    vips_error_buffer());
			vips_error_clear();
		}
	}
out:
	if (raw)
		g_object_unref(raw);
	if (cr)
		cairo_destroy(cr);
	if (sf)
		cairo_surface_destroy(sf);
	if (fd)
		pango_font_description_free(fd);
	if (l)
		g_object_unref(l);
	g_free(t);
	return s;
}
