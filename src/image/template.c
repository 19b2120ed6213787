/* template.c — parsing and validating ad template files (format in
 * docs/TEMPLATES.md), loading their background and logo images, and a
 * digest over everything a template depends on.
 *
 * Template files are treated as hostile: bounded size, unknown keys
 * refused, every number range-checked, every box inside the canvas, every
 * string bounded; errors name the offending key.
 *
 * Threads: parse/load/digest on any thread (they touch only their
 * arguments); a loaded pm_template is then used by one thread at a time.
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "image/template.h"

const char *pm_tb_name(pm_tb_kind k)
{
	static const char *const n[] = {"title", "price", "cta", "brand"};
	return k < PM_TB_COUNT ? n[k] : "?";
}

/* ---- small checked getters; where names the object for messages ---- */

static pm_status only_keys(json_t *o, const char *where,
			   const char *const *allowed, pm_err *err)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v)
	{
		bool ok = false;
		for (int i = 0; allowed[i]; i++)
			ok = ok || strcmp(k, allowed[i]) == 0;
		if (!ok)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: unknown key \"%.40s\" in %s",
				       k, where);
	}
	return PM_OK;
}

static pm_status get_int(json_t *o, const char *where, const char *key, int lo,
			 int hi, int def, bool required, int *out, pm_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		if (required)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: %s needs \"%s\"", where, key);
		*out = def;
		return PM_OK;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.%s must be an integer from %d to "
			       "%d",
			       where, key, lo, hi);
	*out = (int)json_integer_value(v);
	return PM_OK;
}

static pm_status get_num(json_t *o, const char *where, const char *key,
			 double lo, double hi, double def, double *out,
			 pm_err *err)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		*out = def;
		return PM_OK;
	}
	if (!json_is_number(v) || json_number_value(v) < lo ||
	    json_number_value(v) > hi)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.%s must be a number from %g to %g",
			       where, key, lo, hi);
	*out = json_number_value(v);
	return PM_OK;
}

static pm_status get_str(json_t *o, const char *where, const char *key,
			 size_t max, const char *def, char *out, size_t out_sz,
			 pm_err *err)
{
	json_t *v = json_object_get(o, key);
	const char *s;

	if (!v) {
		snprintf(out, out_sz, "%s", def ? def : "");
		return PM_OK;
	}
	if (!json_is_string(v))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.%s must be a string", where, key);
	s = json_string_value(v);
	if (strlen(s) > max || strlen(s) >= out_sz ||
	    strlen(s) != json_string_length(v))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.%s is longer than %zu bytes (or "
			       "holds a NUL)",
			       where, key, max < out_sz - 1 ? max : out_sz - 1);
	snprintf(out, out_sz, "%s", s);
	return PM_OK;
}

/* "#rgb", "#rrggbb" or "#rrggbbaa". */
static bool parse_color(const char *s, pm_rgba *c)
{
	size_t n = strlen(s);
	int v[8];

	if (s[0] != '#' || (n != 4 && n != 7 && n != 9))
		return false;
	for (size_t i = 1; i < n; i++)
		if ((v[i - 1] = pm_hexval(s[i])) < 0)
			return false;
	if (n == 4) {
		c->r = (uint8_t)(v[0] * 17);
		c->g = (uint8_t)(v[1] * 17);
		c->b = (uint8_t)(v[2] * 17);
		c->a = 255;
	} else {
		c->r = (uint8_t)(v[0] * 16 + v[1]);
		c->g = (uint8_t)(v[2] * 16 + v[3]);
		c->b = (uint8_t)(v[4] * 16 + v[5]);
		c->a = n == 9 ? (uint8_t)(v[6] * 16 + v[7]) : 255;
	}
	return true;
}

static pm_status get_color(json_t *o, const char *where, const char *key,
			   const char *def, pm_rgba *out, bool *present,
			   pm_err *err)
{
	char buf[16];
	pm_status s = get_str(o, where, key, 9, def, buf, sizeof buf, err);

	if (s)
		return s;
	if (present)
		*present = json_object_get(o, key) != NULL;
	if (!buf[0] && !def)
		return PM_OK;
	if (!parse_color(buf, out))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.%s must be a colour \"#rrggbb\" "
			       "or \"#rrggbbaa\"",
			       where, key);
	return PM_OK;
}

/* x, y, w, h inside the canvas. */
static pm_status get_rect(json_t *o, const char *where, const pm_template *t,
			  pm_rect *r, pm_err *err)
{
	pm_status s;

	if ((s = get_int(o, where, "x", 0, t->width - 1, 0, true, &r->x,
			 err)) ||
	    (s = get_int(o, where, "y", 0, t->height - 1, 0, true, &r->y,
			 err)) ||
	    (s = get_int(o, where, "w", 1, t->width, 0, true, &r->w, err)) ||
	    (s = get_int(o, where, "h", 1, t->height, 0, true, &r->h, err)))
		return s;
	if (r->x + r->w > t->width || r->y + r->h > t->height)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s box %dx%d at %d,%d leaves the "
			       "%dx%d canvas",
			       where, r->w, r->h, r->x, r->y, t->width,
			       t->height);
	return PM_OK;
}

/* Resolves rel against dir into out (absolute when dir is). Refuses
 * empty names. */
static pm_status resolve(const char *dir, const char *rel, const char *where,
			 char *out, size_t out_sz, pm_err *err)
{
	int n;

	if (!rel[0])
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s needs a file name", where);
	if (rel[0] == '/' || !dir || !dir[0])
		n = snprintf(out, out_sz, "%s", rel);
	else
		n = snprintf(out, out_sz, "%s/%s", dir, rel);
	if (n < 0 || (size_t)n >= out_sz)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s path is too long", where);
	return PM_OK;
}

static bool font_chars_ok(const char *f)
{
	for (const char *p = f; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr(" -_,.", *p))
			return false;
	return f[0] != '\0';
}

static pm_status parse_block(json_t *o, pm_tb_kind k, const pm_template *t,
			     pm_text_block *b, pm_err *err)
{
	static const char *const keys[] = {
	    "x",     "y",      "w",	  "h",	    "font",	 "size",
	    "lines", "color",  "align",	  "valign", "uppercase", "text",
	    "fill",  "radius", "padding", NULL};
	char where[32], buf[16];
	json_t *size = json_object_get(o, "size");
	pm_status s;

	snprintf(where, sizeof where, "text.%s", pm_tb_name(k));
	if (!json_is_object(o))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s must be an object", where);
	if ((s = only_keys(o, where, keys, err)) ||
	    (s = get_rect(o, where, t, &b->box, err)) ||
	    (s = get_str(o, where, "font", PM_TPL_MAX_FONT - 1, "DejaVu Sans",
			 b->font, sizeof b->font, err)))
		return s;
	if (!font_chars_ok(b->font))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.font may hold only letters, "
			       "digits, spaces and - _ , .",
			       where);
	if (!json_is_array(size) || json_array_size(size) != 2 ||
	    !json_is_integer(json_array_get(size, 0)) ||
	    !json_is_integer(json_array_get(size, 1)))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.size must be [min, max] in px",
			       where);
	{
		json_int_t lo = json_integer_value(json_array_get(size, 0));
		json_int_t hi = json_integer_value(json_array_get(size, 1));
		if (lo < PM_TPL_MIN_FONT_PX || hi > PM_TPL_MAX_FONT_PX ||
		    lo > hi)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: %s.size must be [min, max] "
				       "with %d <= min <= max <= %d",
				       where, PM_TPL_MIN_FONT_PX,
				       PM_TPL_MAX_FONT_PX);
		b->size_min = (int)lo;
		b->size_max = (int)hi;
	}
	if ((s = get_int(o, where, "lines", 1, PM_TPL_MAX_LINES, 1, false,
			 &b->max_lines, err)) ||
	    (s = get_color(o, where, "color", "#000000", &b->color, NULL,
			   err)) ||
	    (s = get_color(o, where, "fill", NULL, &b->fill, &b->has_fill,
			   err)) ||
	    (s = get_int(o, where, "radius", 0, 2048, 0, false, &b->radius,
			 err)) ||
	    (s = get_int(o, where, "padding", 0, 2048, 0, false, &b->padding,
			 err)) ||
	    (s = get_str(o, where, "text", PM_TPL_MAX_TEXT - 1, "", b->text,
			 sizeof b->text, err)))
		return s;
	if (2 * b->padding >= b->box.w || 2 * b->padding >= b->box.h)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.padding leaves no room for text",
			       where);
	if (k == PM_TB_CTA && !b->text[0])
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: text.cta needs its \"text\"");
	if (json_object_get(o, "uppercase") &&
	    !json_is_boolean(json_object_get(o, "uppercase")))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.uppercase must be true or false",
			       where);
	b->uppercase = json_is_true(json_object_get(o, "uppercase"));
	if ((s = get_str(o, where, "align", 8, "left", buf, sizeof buf, err)))
		return s;
	if (strcmp(buf, "left") == 0)
		b->halign = PM_ALIGN_START;
	else if (strcmp(buf, "centre") == 0 || strcmp(buf, "center") == 0)
		b->halign = PM_ALIGN_CENTRE;
	else if (strcmp(buf, "right") == 0)
		b->halign = PM_ALIGN_END;
	else
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.align must be left, centre or "
			       "right",
			       where);
	if ((s = get_str(o, where, "valign", 8, "top", buf, sizeof buf, err)))
		return s;
	if (strcmp(buf, "top") == 0)
		b->valign = PM_ALIGN_START;
	else if (strcmp(buf, "middle") == 0)
		b->valign = PM_ALIGN_CENTRE;
	else if (strcmp(buf, "bottom") == 0)
		b->valign = PM_ALIGN_END;
	else
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: %s.valign must be top, middle or "
			       "bottom",
			       where);
	b->present = true;
	return PM_OK;
}

static pm_status parse_background(json_t *o, pm_template *t, const char *dir,
				  pm_err *err)
{
	static const char *const keys[] = {"color", "gradient", "image", NULL};
	static const char *const gkeys[] = {"from", "to", "angle", NULL};
	json_t *g = json_object_get(o, "gradient");
	char rel[1024];
	int kinds;
	pm_status s;

	if (!o) {
		t->bg = PM_BG_COLOR;
		t->bg_color = (pm_rgba){255, 255, 255, 255};
		return PM_OK;
	}
	if (!json_is_object(o))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: background must be an object");
	if ((s = only_keys(o, "background", keys, err)))
		return s;
	kinds =
	    !!json_object_get(o, "color") + !!g + !!json_object_get(o, "image");
	if (kinds != 1)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: background needs exactly one of "
			       "color, gradient, image");
	if (json_object_get(o, "color")) {
		t->bg = PM_BG_COLOR;
		s = get_color(o, "background", "color", "#ffffff", &t->bg_color,
			      NULL, err);
		t->bg_color.a = 255;
		return s;
	}
	if (g) {
		t->bg = PM_BG_GRADIENT;
		if (!json_is_object(g))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: background.gradient must be "
				       "an object");
		if ((s = only_keys(g, "background.gradient", gkeys, err)) ||
		    (s = get_color(g, "background.gradient", "from", "#ffffff",
				   &t->grad_from, NULL, err)) ||
		    (s = get_color(g, "background.gradient", "to", "#000000",
				   &t->grad_to, NULL, err)) ||
		    (s = get_num(g, "background.gradient", "angle", -360, 360,
				 90, &t->grad_angle, err)))
			return s;
		return PM_OK;
	}
	t->bg = PM_BG_IMAGE;
	if ((s = get_str(o, "background", "image", 1000, "", rel, sizeof rel,
			 err)))
		return s;
	return resolve(dir, rel, "background.image", t->bg_image,
		       sizeof t->bg_image, err);
}

static pm_status parse_product(json_t *o, pm_template *t, pm_err *err)
{
	static const char *const keys[] = {"x",	  "y",	     "w",      "h",
					   "fit", "padding", "shadow", NULL};
	static const char *const skeys[] = {"dx", "dy", "blur", "opacity",
					    NULL};
	json_t *sh;
	char fit[16];
	pm_status s;

	if (!json_is_object(o))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: needs a \"product\" box object");
	if ((s = only_keys(o, "product", keys, err)) ||
	    (s = get_rect(o, "product", t, &t->product, err)) ||
	    (s = get_int(o, "product", "padding", 0, 2048, 0, false,
			 &t->padding, err)) ||
	    (s = get_str(o, "product", "fit", 8, "contain", fit, sizeof fit,
			 err)))
		return s;
	if (2 * t->padding >= t->product.w || 2 * t->padding >= t->product.h)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: product.padding leaves no room");
	if (strcmp(fit, "contain") == 0)
		t->fit = PM_FIT_CONTAIN;
	else if (strcmp(fit, "cover") == 0)
		t->fit = PM_FIT_COVER;
	else
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: product.fit must be contain or "
			       "cover");
	sh = json_object_get(o, "shadow");
	if (!sh)
		return PM_OK;
	if (!json_is_object(sh))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: product.shadow must be an object");
	t->shadow = true;
	if ((s = only_keys(sh, "product.shadow", skeys, err)) ||
	    (s = get_int(sh, "product.shadow", "dx", -512, 512, 0, false,
			 &t->shadow_dx, err)) ||
	    (s = get_int(sh, "product.shadow", "dy", -512, 512, 12, false,
			 &t->shadow_dy, err)) ||
	    (s = get_num(sh, "product.shadow", "blur", 0, 200, 16,
			 &t->shadow_blur, err)) ||
	    (s = get_num(sh, "product.shadow", "opacity", 0, 1, 0.35,
			 &t->shadow_opacity, err)))
		return s;
	return PM_OK;
}

static pm_status parse_output(json_t *o, pm_template *t, pm_err *err)
{
	static const char *const keys[] = {"formats", "quality", NULL};
	json_t *f = json_object_get(o, "formats");
	json_t *q = json_object_get(o, "quality"), *v;
	size_t i;
	pm_status s;

	t->n_formats = 1;
	t->enc[0] = (pm_encode_opts){
	    .format = PM_FMT_JPEG, .quality = 88, .effort = -1};
	if (!o)
		return PM_OK;
	if (!json_is_object(o))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: output must be an object");
	if ((s = only_keys(o, "output", keys, err)))
		return s;
	if (q && !json_is_object(q))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: output.quality must be an object "
			       "such as {\"jpeg\": 88}");
	if (f) {
		if (!json_is_array(f) || json_array_size(f) == 0 ||
		    json_array_size(f) > PM_TPL_MAX_FORMATS)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: output.formats must list 1 "
				       "to %d of jpeg, webp, png",
				       PM_TPL_MAX_FORMATS);
		t->n_formats = 0;
		json_array_foreach(f, i, v)
		{
			pm_format fm =
			    json_is_string(v)
				? pm_format_parse(json_string_value(v))
				: PM_FMT_UNKNOWN;
			if (fm != PM_FMT_JPEG && fm != PM_FMT_WEBP &&
			    fm != PM_FMT_PNG)
				return pm_fail(err, PM_ERR_PIPELINE,
					       "template: output.formats[%zu] "
					       "must be jpeg, webp or png",
					       i);
			for (int j = 0; j < t->n_formats; j++)
				if (t->enc[j].format == fm)
					return pm_fail(
					    err, PM_ERR_PIPELINE,
					    "template: output.formats lists "
					    "%s twice",
					    pm_format_name(fm));
			t->enc[t->n_formats++] = (pm_encode_opts){
			    .format = fm,
			    .quality = fm == PM_FMT_WEBP ? 85 : 88,
			    .effort = -1};
		}
	}
	for (int j = 0; j < t->n_formats; j++) {
		json_t *qv =
		    json_object_get(q, pm_format_name(t->enc[j].format));
		if (!qv)
			continue;
		if (!json_is_integer(qv) || json_integer_value(qv) < 1 ||
		    json_integer_value(qv) > 100)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: output.quality.%s must be 1 "
				       "to 100",
				       pm_format_name(t->enc[j].format));
		t->enc[j].quality = (int)json_integer_value(qv);
	}
	return PM_OK;
}

static pm_status parse_root(json_t *root, pm_template *t, const char *dir,
			    pm_err *err)
{
	static const char *const keys[] = {"name",    "canvas", "background",
					   "product", "text",	"price",
					   "logo",    "output", NULL};
	static const char *const ckeys[] = {"width", "height", NULL};
	static const char *const pkeys[] = {"currency", "locale", NULL};
	static const char *const lkeys[] = {"image", "x", "y", "w", "h", NULL};
	static const char *const tkeys[] = {"title", "price", "cta", "brand",
					    NULL};
	json_t *c = json_object_get(root, "canvas");
	json_t *text = json_object_get(root, "text");
	json_t *price = json_object_get(root, "price");
	json_t *logo = json_object_get(root, "logo");
	char name[64];
	pm_status s;

	if ((s = only_keys(root, "the template", keys, err)) ||
	    (s = get_str(root, "template", "name", 60, t->name, name,
			 sizeof name, err)))
		return s;
	snprintf(t->name, sizeof t->name, "%s", name);
	for (const char *p = t->name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: name may hold only letters, "
				       "digits, - and _");
	if (!json_is_object(c))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: needs a \"canvas\" object with "
			       "width and height");
	if ((s = only_keys(c, "canvas", ckeys, err)) ||
	    (s = get_int(c, "canvas", "width", PM_TPL_MIN_SIDE, PM_TPL_MAX_SIDE,
			 0, true, &t->width, err)) ||
	    (s = get_int(c, "canvas", "height", PM_TPL_MIN_SIDE,
			 PM_TPL_MAX_SIDE, 0, true, &t->height, err)))
		return s;
	if ((long long)t->width * t->height > PM_TPL_MAX_PIXELS)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: canvas over %d pixels",
			       PM_TPL_MAX_PIXELS);
	if ((s = parse_background(json_object_get(root, "background"), t, dir,
				  err)) ||
	    (s = parse_product(json_object_get(root, "product"), t, err)))
		return s;
	if (!json_is_object(text))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: needs a \"text\" object (title, "
			       "price, cta, brand)");
	if ((s = only_keys(text, "text", tkeys, err)))
		return s;
	for (int k = 0; k < PM_TB_COUNT; k++) {
		json_t *b = json_object_get(text, pm_tb_name((pm_tb_kind)k));
		if (b &&
		    (s = parse_block(b, (pm_tb_kind)k, t, &t->text[k], err)))
			return s;
	}
	if (!t->text[PM_TB_TITLE].present)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template: text.title is required");
	snprintf(t->currency, sizeof t->currency, "USD");
	snprintf(t->locale, sizeof t->locale, "en_US");
	if (price) {
		if (!json_is_object(price))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: price must be an object");
		if ((s = only_keys(price, "price", pkeys, err)) ||
		    (s = get_str(price, "price", "currency", 3, "USD",
				 t->currency, sizeof t->currency, err)) ||
		    (s = get_str(price, "price", "locale", 7, "en_US",
				 t->locale, sizeof t->locale, err)))
			return s;
		if (!pm_price_currency_known(t->currency))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: price.currency \"%s\" is "
				       "not in the table",
				       t->currency);
		if (!pm_price_locale_known(t->locale))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: price.locale \"%s\" is not "
				       "in the table",
				       t->locale);
	}
	if (logo) {
		char rel[1024];
		if (!json_is_object(logo))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template: logo must be an object");
		if ((s = only_keys(logo, "logo", lkeys, err)) ||
		    (s = get_rect(logo, "logo", t, &t->logo, err)) ||
		    (s = get_str(logo, "logo", "image", 1000, "", rel,
				 sizeof rel, err)) ||
		    (s = resolve(dir, rel, "logo.image", t->logo_image,
				 sizeof t->logo_image, err)))
			return s;
		t->has_logo = true;
	}
	return parse_output(json_object_get(root, "output"), t, err);
}

pm_status pm_template_parse(const char *json_text, size_t len, const char *dir,
			    pm_template **out, pm_err *err)
{
	json_error_t je;
	json_t *root;
	pm_template *t;
	pm_status s;

	*out = NULL;
	if (len > PM_TPL_MAX_FILE)
		return pm_fail(err, PM_ERR_PIPELINE, "template: over %d bytes",
			       PM_TPL_MAX_FILE);
	root = json_loadb(json_text, len, JSON_REJECT_DUPLICATES, &je);
	if (!root || !json_is_object(root)) {
		s = pm_fail(err, PM_ERR_PIPELINE,
			    "template: not a JSON object: %s (line %d)",
			    root ? "wrong type" : je.text, je.line);
		json_decref(root);
		return s;
	}
	t = calloc(1, sizeof *t);
	if (!t) {
		json_decref(root);
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	}
	snprintf(t->name, sizeof t->name, "template");
	s = parse_root(root, t, dir, err);
	json_decref(root);
	if (s) {
		pm_template_free(t);
		return s;
	}
	*out = t;
	return PM_OK;
}

pm_status pm_template_load(const char *path, pm_template **out, pm_err *err)
{
	void *buf = NULL;
	size_t len = 0;
	char dir[1024], stem[64];
	const char *slash = strrchr(path, '/'), *base;
	pm_status s;

	*out = NULL;
	s = pm_read_file(path, PM_TPL_MAX_FILE, &buf, &len, err);
	if (s) {
		if (s == PM_ERR_TOO_LARGE)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "template %.200s: over %d bytes", path,
				       PM_TPL_MAX_FILE);
		return s;
	}
	if (slash)
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	else
		snprintf(dir, sizeof dir, ".");
	base = slash ? slash + 1 : path;
	snprintf(stem, sizeof stem, "%s", base);
	if (strrchr(stem, '.'))
		*strrchr(stem, '.') = '\0';
	s = pm_template_parse(buf, len, dir, out, err);
	free(buf);
	if (s) {
		/* name the file in the message */
		pm_err e2 = *err;
		return pm_fail(err, s, "%.200s: %s", path, e2.msg);
	}
	/* the file's stem when it names itself "template" (no name key) */
	if (strcmp((*out)->name, "template") == 0) {
		for (char *p = stem; *p; p++)
			if (!isalnum((unsigned char)*p) && *p != '-')
				*p = '_';
		snprintf((*out)->name, sizeof(*out)->name, "%s", stem);
	}
	snprintf((*out)->path, sizeof(*out)->path, "%s", path);
	return PM_OK;
}

/* Decodes an image file (bounded) into an in-memory sRGB image. */
static pm_status load_image(const char *path, int max_edge, VipsImage **out,
			    pm_err *err)
{
	void *buf = NULL;
	size_t len = 0;
	pm_limits lim;
	pm_header h;
	pm_status s;

	pm_err e2;

	s = pm_read_file(path, PM_TPL_MAX_IMAGE, &buf, &len, err);
	if (s) {
		e2 = *err;
		return pm_fail(err, s == PM_ERR_TOO_LARGE ? PM_ERR_PIPELINE : s,
			       "template image %.200s: %s", path, e2.msg);
	}
	pm_limits_default(&lim);
	lim.max_pixels = 64u << 20;
	s = pm_image_probe(buf, len, &lim, &h, err);
	if (!s)
		s = pm_image_decode(buf, len, max_edge, false, out, err);
	free(buf);
	if (s) {
		e2 = *err;
		return pm_fail(err, PM_ERR_PIPELINE,
			       "template image %.200s: %s", path, e2.msg);
	}
	return PM_OK;
}

pm_status pm_template_load_images(pm_template *t, pm_err *err)
{
	VipsImage *im = NULL, *a = NULL, *b = NULL;
	pm_status s = PM_OK;

	if (t->bg == PM_BG_IMAGE && !t->bg_im) {
		int edge = t->width > t->height ? t->width : t->height;
		s = load_image(t->bg_image, edge * 2, &im, err);
		if (s)
			return s;
		/* cover the canvas, centred, drop alpha */
		if (vips_thumbnail_image(im, &a, t->width, "height", t->height,
					 "crop", VIPS_INTERESTING_CENTRE,
					 "size", VIPS_SIZE_FORCE, NULL) ||
		    vips_extract_band(a, &b, 0, "n", 3, NULL) ||
		    !(t->bg_im = vips_image_copy_memory(b)))
			s = pm_fail(err, PM_ERR_PIPELINE,
				    "template background: %s",
				    vips_error_buffer());
		vips_error_clear();
		g_clear_object(&im);
		g_clear_object(&a);
		g_clear_object(&b);
		if (s)
			return s;
	}
	if (t->has_logo && !t->logo_im) {
		int edge = t->logo.w > t->logo.h ? t->logo.w : t->logo.h;
		s = load_image(t->logo_image, edge * 2, &im, err);
		if (s)
			return s;
		if (vips_thumbnail_image(im, &a, t->logo.w, "height", t->logo.h,
					 NULL) ||
		    (vips_image_hasalpha(a)
			 ? vips_copy(a, &b, NULL)
			 : vips_bandjoin_const1(a, &b, 255, NULL)) ||
		    !(t->logo_im = vips_image_copy_memory(b)))
			s = pm_fail(err, PM_ERR_PIPELINE, "template logo: %s",
				    vips_error_buffer());
		vips_error_clear();
		g_clear_object(&im);
		g_clear_object(&a);
		g_clear_object(&b);
	}
	return s;
}

void pm_template_free(pm_template *t)
{
	if (!t)
		return;
	if (t->bg_im)
		g_object_unref(t->bg_im);
	if (t->logo_im)
		g_object_unref(t->logo_im);
	free(t);
}

static pm_status digest_file(const char *path, char hex[65], pm_err *err)
{
	void *buf = NULL;
	size_t len = 0;
	pm_status s = pm_read_file(path, PM_TPL_MAX_IMAGE, &buf, &len, err);

	if (s) {
		pm_err e2 = *err;
		return pm_fail(err, PM_ERR_PIPELINE, "template: %.200s: %s",
			       path, e2.msg);
	}
	pm_sha256_hex(buf, len, hex);
	free(buf);
	return PM_OK;
}

pm_status pm_template_digest(const pm_template *t, char hex[65], pm_err *err)
{
	char parts[3 * 65 + 1] = "", h[65];
	pm_status s;

	if (t->path[0]) {
		if ((s = digest_file(t->path, h, err)))
			return s;
		strcat(parts, h);
	}
	if (t->bg == PM_BG_IMAGE) {
		if ((s = digest_file(t->bg_image, h, err)))
			return s;
		strcat(parts, h);
	}
	if (t->has_logo) {
		if ((s = digest_file(t->logo_image, h, err)))
			return s;
		strcat(parts, h);
	}
	pm_sha256_hex(parts, strlen(parts), hex);
	return PM_OK;
}
