/* compose.c — the compose stage: one finished ad per template from the
 * product image and the catalog row's title, price, currency and brand
 * (template format: docs/TEMPLATES.md; rendering: image/adrender.c).
 *
 * Product image: with "product" "auto" (default), the item's cut-out when
 * a cutout stage ran earlier in the pipeline and wrote one (its output
 * "cutout.<ext>", read back from the asset folder), else the decoded
 * image; "image" always uses the decoded image; "cutout" fails the item
 * when there is no cut-out.
 *
 * Placeholder (ctx->placeholder: no image of the row would do; the
 * engine runs only this stage): each template's product box holds a
 * neutral box of its shape with the brand's initial (else the title's);
 * facts "product": "placeholder". The stage sets `placeholder` in its
 * vtable, so pipelines with it get placeholders instead of failures.
 *
 * Params (unknown keys refused): "templates" (names from the template
 * folder, or paths to .json files; default: every *.json of the folder,
 * sorted, at most 8), "template_dir" (default: $PIXMILL_TEMPLATES, set by
 * `pixmill run --templates DIR`, else
 * templates/ beside the binary's folder, else ./templates), "formats"
 * (overrides every template's: jpeg, webp, png), "quality" (1..100,
 * overrides), "product" (auto, image, cutout). check() parses and
 * validates every template (so a bad one fails the pipeline load with its
 * reason) and writes "digests" (SHA-256 of each template and its images:
 * editing a template changes the pipeline hash, so ads are re-rendered),
 * "decode_edge" (the largest product box side) and "boxes" ([w, h] of
 * each template's product box, read by the verify stage).
 *
 * Outputs: "ad-<W>x<H>.<ext>" per template and format ("ad-<name>.<ext>"
 * when two templates share a size). Facts: ctx->meta "ads": {"product":
 * "cutout"|"image", "templates": {name: {"outputs": [...], "title":
 * {"size", "lines", "truncated", "font", "ink"}, "price": {..., "text"},
 * "cta": {...}, "brand": {...}}}}.
 *
 * The outputs depend on the row's text, not only on the image bytes: the
 * stage sets uses_row, and the engine then keys the asset (dedup, cache,
 * output folder) on the source hash *and* the row's title, price,
 * currency and brand (pm_row_key in stages/row.c).
 *
 * Threads: init/process/fini on one worker thread, with that worker's own
 * templates and Pango font map; check/decode_size on any thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "image/template.h"
#include "stages/stage.h"

#define MAX_TEMPLATES 8

enum product_src { PROD_AUTO, PROD_IMAGE, PROD_CUTOUT };

typedef struct compose_state {
	pm_template *tpl[MAX_TEMPLATES];
	char out_name[MAX_TEMPLATES][24]; /* "ad-1080x1080" */
	int n_tpl;
	pm_adtext *text;
	enum product_src product;
	int edge; /* decode edge for a cut-out read back */
} compose_state;

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The default template folder (see the header comment). */
static void default_dir(char *out, size_t sz)
{
	const char *env = getenv("PIXMILL_TEMPLATES");
	char exe[2048], cand[2200];
	ssize_t n;

	if (env && env[0]) {
		snprintf(out, sz, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			static const char *const rel[] = {
			    "/../templates", "/../share/pixmill/templates",
			    "/../../templates"};
			for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
				snprintf(cand, sizeof cand, "%s%s", exe,
					 rel[i]);
				if (is_dir(cand) &&
				    (size_t)snprintf(out, sz, "%s", cand) < sz)
					return;
			}
		}
	}
	snprintf(out, sz, "templates");
}

/* A template spec to a file path: a name ("square") is looked up in dir;
 * anything with a '/' or ending in ".json" is a path. */
static pm_status spec_path(const char *spec, const char *dir, char *out,
			   size_t sz, pm_err *err)
{
	size_t n = strlen(spec);

	if (!n || n > 900)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "compose: a template name is empty or too long");
	if (strchr(spec, '/') || (n > 5 && strcmp(spec + n - 5, ".json") == 0))
		snprintf(out, sz, "%s", spec);
	else {
		for (const char *p = spec; *p; p++)
			if (!strchr("abcdefghijklmnopqrstuvwxyz"
				    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
				    *p))
				return pm_fail(
				    err, PM_ERR_PIPELINE,
				    "compose: template name \"%.60s\" "
				    "may hold only letters, digits, "
				    "- and _ (or give a path)",
				    spec);
		int w = snprintf(out, sz, "%s/%s.json", dir, spec);
		if (w < 0 || (size_t)w >= sz)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "compose: template path too long");
	}
	return PM_OK;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the *.json files in the template folder (dirv or the
 * default), sorted, at most MAX_TEMPLATES; NULL when there are none. */
static json_t *dir_templates(json_t *dirv)
{
	char dir[2048], *names[MAX_TEMPLATES];
	int n = 0;
	DIR *d;
	struct dirent *de;
	json_t *list;

	if (json_is_string(dirv))
		snprintf(dir, sizeof dir, "%s", json_string_value(dirv));
	else
		default_dir(dir, sizeof dir);
	d = opendir(dir);
	if (!d)
		return NULL;
	while ((de = readdir(d)) && n < MAX_TEMPLATES) {
		size_t l = strlen(de->d_name);
		if (l > 5 && l < 64 &&
		    strcmp(de->d_name + l - 5, ".json") == 0 &&
		    de->d_name[0] != '.')
			names[n++] = strndup(de->d_name, l - 5);
	}
	closedir(d);
	if (n == 0)
		return NULL;
	qsort(names, (size_t)n, sizeof *names, cmp_str);
	list = json_array();
	for (int i = 0; i < n; i++) {
		json_array_append_new(list, json_string(names[i]));
		free(names[i]);
	}
	return list;
}

static const char *const param_keys[] = {
    "stage",   "version", "templates",	 "template_dir", "formats", "quality",
    "product", "digests", "decode_edge", "boxes",	 NULL};

/* Loads every template the params name (used by check and init). */
static pm_status load_all(const json_t *params, pm_template **tpl, int *n,
			  pm_err *err)
{
	json_t *list = json_object_get(params, "templates"), *v;
	json_t *dirv = json_object_get(params, "template_dir");
	char dir[2048], path[2048];
	size_t i;
	pm_status s;

	*n = 0;
	if (json_is_string(dirv))
		snprintf(dir, sizeof dir, "%s", json_string_value(dirv));
	else
		default_dir(dir, sizeof dir);
	json_array_foreach(list, i, v)
	{
		s = spec_path(json_string_value(v), dir, path, sizeof path,
			      err);
		if (!s)
			s = pm_template_load(path, &tpl[*n], err);
		if (s) {
			pm_err e2 = *err;
			return pm_fail(err, PM_ERR_PIPELINE,
				       "compose: template \"%.60s\": %s",
				       json_string_value(v), e2.msg);
		}
		(*n)++;
	}
	return PM_OK;
}

static pm_status compose_check(json_t *params, pm_err *err)
{
	json_t *list = json_object_get(params, "templates");
	json_t *formats = json_object_get(params, "formats");
	json_t *quality = json_object_get(params, "quality");
	json_t *product = json_object_get(params, "product");
	json_t *dirv = json_object_get(params, "template_dir");
	json_t *digests, *boxes, *v;
	pm_template *tpl[MAX_TEMPLATES] = {NULL};
	const char *k;
	int n = 0, edge = 0;
	size_t i;
	pm_status s;

	json_object_foreach(params, k, v)
	{
		bool ok = false;
		for (int j = 0; param_keys[j]; j++)
			ok = ok || strcmp(k, param_keys[j]) == 0;
		if (!ok)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "compose: unknown parameter \"%.40s\"",
				       k);
	}
	if (!list) {
		list = dir_templates(dirv);
		if (!list)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "compose: no template (*.json) in the "
				       "template folder; give \"templates\" "
				       "or --templates DIR");
		json_object_set_new(params, "templates", list);
	}
	if (!json_is_array(list) || json_array_size(list) == 0 ||
	    json_array_size(list) > MAX_TEMPLATES)
		return pm_fail(err, PM_ERR_PIPELINE,
			       "compose: \"templates\" must list 1 to %d "
			       "template names or paths",
			       MAX_TEMPLATES);
	json_array_foreach(list, i, v)
	{
		if (!json_is_string(v))
			return pm_fail(err, PM_ERR_PIPELINE,
				       "compose: template %zu must be a name "
				       "or a path",
				       i + 1);
	}
	if (dirv && (!json_is_string(dirv) || !json_string_length(dirv) ||
		     json_string_length(dirv) > 1000))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "compose: \"template_dir\" must be a folder");
	if (formats) {
		if (!json_is_array(formats) || json_array_size(formats) == 0 ||
		    json_array_size(formats) > PM_TPL_MAX_FORMATS)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "compose: \"formats\" must list 1 to %d "
				       "of jpeg, webp, png",
				       PM_TPL_MAX_FORMATS);
		json_array_foreach(formats, i, v)
		{
			pm_format f =
			    json_is_string(v)
				? pm_format_parse(json_string_value(v))
				: PM_FMT_UNKNOWN;
			if (f != PM_FMT_JPEG && f != PM_FMT_WEBP &&
			    f != PM_FMT_PNG)
				return pm_fail(err, PM_ERR_PIPELINE,
					       "compose: format %zu must be "
					       "jpeg, webp or png",
					       i + 1);
			json_array_set_new(formats, i,
					   json_string(pm_format_name(f)));
		}
	}
	if (quality &&
	    (!json_is_integer(quality) || json_integer_value(quality) < 1 ||
	     json_integer_value(quality) > 100))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "compose: \"quality\" must be 1 to 100");
	if (!product)
		json_object_set_new(params, "product", json_string("auto"));
	else if (!json_is_string(product) ||
		 (strcmp(json_string_value(product), "auto") != 0 &&
		  strcmp(json_string_value(product), "image") != 0 &&
		  strcmp(json_string_value(product), "cutout") != 0))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "compose: \"product\" must be auto, image or "
			       "cutout");
	s = load_all(params, tpl, &n, err);
	digests = json_array();
	boxes = json_array();
	for (int j = 0; !s && j < n; j++) {
		char hex[65];
		s = pm_template_digest(tpl[j], hex, err);
		if (!s)
			json_array_append_new(digests, json_string(hex));
		json_array_append_new(
		    boxes,
		    json_pack("[ii]", tpl[j]->product.w, tpl[j]->product.h));
		int e = tpl[j]->product.w > tpl[j]->product.h
			    ? tpl[j]->product.w
			    : tpl[j]->product.h;
		edge = e > edge ? e : edge;
	}
	for (int j = 0; j < n; j++)
		pm_template_free(tpl[j]);
	if (s) {
		json_decref(digests);
		json_decref(boxes);
		return s;
	}
	json_object_set_new(params, "digests", digests);
	json_object_set_new(params, "boxes", boxes);
	json_object_set_new(params, "decode_edge", json_integer(edge));
	return PM_OK;
}

static int compose_decode_size(const json_t *params)
{
	return (int)json_integer_value(json_object_get(params, "decode_edge"));
}

static void compose_fini(void *state)
{
	compose_state *c = state;

	if (!c)
		return;
	for (int i = 0; i < c->n_tpl; i++)
		pm_template_free(c->tpl[i]);
	pm_adtext_free(c->text);
	free(c);
}

static pm_status compose_init(const json_t *params, void **state, pm_err *err)
{
	compose_state *c = calloc(1, sizeof *c);
	json_t *formats = json_object_get(params, "formats");
	json_t *quality = json_object_get(params, "quality");
	const char *prod =
	    json_string_value(json_object_get(params, "product"));
	pm_status s;

	*state = NULL;
	if (!c)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	c->product = prod && strcmp(prod, "image") == 0	   ? PROD_IMAGE
		     : prod && strcmp(prod, "cutout") == 0 ? PROD_CUTOUT
							   : PROD_AUTO;
	c->edge = compose_decode_size(params);
	s = load_all(params, c->tpl, &c->n_tpl, err);
	for (int i = 0; !s && i < c->n_tpl; i++)
		s = pm_template_load_images(c->tpl[i], err);
	if (!s)
		s = pm_adtext_new(&c->text, err);
	if (s) {
		compose_fini(c);
		return s;
	}
	for (int i = 0; i < c->n_tpl; i++) {
		pm_template *t = c->tpl[i];
		bool dup = false;
		if (formats) {
			json_t *v;
			size_t j;
			t->n_formats = 0;
			json_array_foreach(formats, j, v)
			{
				pm_format f =
				    pm_format_parse(json_string_value(v));
				t->enc[t->n_formats++] = (pm_encode_opts){
				    .format = f,
				    .quality = f == PM_FMT_WEBP ? 85 : 88,
				    .effort = -1};
			}
		}
		if (quality)
			for (int j = 0; j < t->n_formats; j++)
				t->enc[j].quality =
				    (int)json_integer_value(quality);
		for (int j = 0; j < c->n_tpl; j++)
			dup = dup || (j != i && c->tpl[j]->width == t->width &&
				      c->tpl[j]->height == t->height);
		if (dup)
			snprintf(c->out_name[i], sizeof c->out_name[i],
				 "ad-%.16s", t->name);
		else
			snprintf(c->out_name[i], sizeof c->out_name[i],
				 "ad-%dx%d", t->width, t->height);
		for (int k = 0; k < PM_TB_COUNT; k++) {
			char got[128];
			if (t->text[k].present &&
			    !pm_adtext_font_installed(c->text, t->text[k].font,
						      got, sizeof got))
				pm_log(PM_LOG_WARN,
				       "compose: template %s: font \"%s\" (%s) "
				       "is not installed; using \"%s\"",
				       t->name, t->text[k].font,
				       pm_tb_name((pm_tb_kind)k), got);
		}
	}
	*state = c;
	return PM_OK;
}

/* The item's cut-out, decoded from its file in the asset folder, or NULL
 * (*why says why) when there is none. */
static pm_status load_cutout(compose_state *c, pm_item_ctx *ctx,
			     VipsImage **out, const char **why, pm_err *err)
{
	json_t *facts = ctx->meta ? json_object_get(ctx->meta, "cutout") : NULL;
	const pm_output_rec *o = NULL;
	void *buf = NULL;
	size_t len = 0;
	pm_status s;

	*out = NULL;
	for (int i = 0; i < ctx->n_outputs; i++)
		if (strncmp(ctx->outputs[i].name, "cutout.", 7) == 0)
			o = &ctx->outputs[i];
	if (!o) {
		*why = json_is_true(json_object_get(facts, "skipped"))
			   ? "cut-out skipped"
			   : "no cutout stage before compose";
		return PM_OK;
	}
	s = ctx->outs ? pm_outstore_get(ctx->outs, o->path, 256u << 20, &buf,
					&len, err)
		      : pm_fail(err, PM_ERR_INTERNAL,
				"no output store to read %s from", o->path);
	if (!s)
		s = pm_image_decode(buf, len, c->edge > 0 ? c->edge : 4096,
				    false, out, err);
	free(buf);
	return s;
}

/* Splits "12.99 USD" into amount and currency when the row has none. */
static void split_price(const char *price, char *amount, size_t asz, char *cur,
			size_t csz)
{
	size_t n = strlen(price);

	snprintf(amount, asz, "%s", price);
	cur[0] = '\0';
	while (n && price[n - 1] == ' ')
		n--;
	if (n > 4 && price[n - 4] == ' ' && price[n - 3] >= 'A' &&
	    price[n - 3] <= 'Z' && price[n - 2] >= 'A' && price[n - 2] <= 'Z' &&
	    price[n - 1] >= 'A' && price[n - 1] <= 'Z') {
		snprintf(cur, csz, "%.3s", price + n - 3);
		snprintf(amount, asz, "%.*s", (int)(n - 4), price);
	}
}

static const char *ext_of(pm_format f)
{
	return f == PM_FMT_JPEG ? "jpg" : pm_format_name(f);
}

/* The placeholder product for template t: a neutral box of the product
 * box's shape (light warm grey) with the brand's initial, else the
 * title's, in a darker grey. *out is the caller's. */
static pm_status placeholder_image(const pm_template *t, const pm_item_ctx *ctx,
				   VipsImage **out, pm_err *err)
{
	static const double bg[3] = {233, 230, 225}, ink[3] = {160, 154, 146};
	const char *src = ctx->brand && ctx->brand[0]	? ctx->brand
			  : ctx->title && ctx->title[0] ? ctx->title
							: "?";
	int w = t->product.w - 2 * t->padding,
	    h = t->product.h - 2 * t->padding;
	VipsImage *base = NULL, *mask = NULL, *box = NULL;
	char initial[8] = "?", font[64], *up, *esc;
	int r = -1;

	w = w < 16 ? 16 : w;
	h = h < 16 ? 16 : h;
	if (g_utf8_validate(src, -1, NULL)) {
		const char *end = g_utf8_next_char(src);
		snprintf(initial, sizeof initial, "%.*s", (int)(end - src),
			 src);
	}
	up = g_utf8_strup(initial, -1);
	esc = g_markup_escape_text(up, -1); /* vips_text reads markup */
	snprintf(font, sizeof font, "DejaVu Sans Bold %d",
		 (w < h ? w : h) / 2 > 4 ? (w < h ? w : h) / 2 : 4);
	if (!vips_black(&base, w, h, "bands", 3, NULL) &&
	    !vips_text(&mask, esc, "font", font, "dpi", 72, NULL)) {
		VipsImage *big = NULL, *fg = NULL, *bgc = NULL;
		int mx = (w - mask->Xsize) / 2, my = (h - mask->Ysize) / 2;
		r = vips_embed(mask, &big, mx > 0 ? mx : 0, my > 0 ? my : 0, w,
			       h, NULL) ||
		    vips_linear(base, &bgc, (double[]){1, 1, 1}, (double *)bg,
				3, "uchar", TRUE, NULL) ||
		    vips_linear(base, &fg, (double[]){1, 1, 1}, (double *)ink,
				3, "uchar", TRUE, NULL) ||
		    vips_ifthenelse(big, fg, bgc, &box, "blend", TRUE, NULL);
		if (big)
			g_object_unref(big);
		if (fg)
			g_object_unref(fg);
		if (bgc)
			g_object_unref(bgc);
	}
	g_free(up);
	g_free(esc);
	if (base)
		g_object_unref(base);
	if (mask)
		g_object_unref(mask);
	if (r) {
		if (box)
			g_object_unref(box);
		return pm_vips_fail(err, PM_ERR_ENCODE, "compose: placeholder");
	}
	*out = box;
	return PM_OK;
}

static pm_status compose_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	compose_state *c = state;
	VipsImage *prod = NULL;
	json_t *ads = NULL, *per;
	const char *why = NULL;
	char amount[160] = "", cur[8] = "";
	pm_ad_row row = {ctx->title, NULL, ctx->currency, ctx->brand};
	pm_status s = PM_OK;

	if (ctx->placeholder) {
		/* no image will do: a placeholder box per template, below */
	} else if (c->product != PROD_IMAGE) {
		s = load_cutout(c, ctx, &prod, &why, err);
		if (s)
			return s;
		if (!prod && c->product == PROD_CUTOUT)
			return pm_fail(err, PM_ERR_PIPELINE,
				       "compose: product \"cutout\" asked for, "
				       "but %s",
				       why);
	}
	if (!prod && !ctx->placeholder) {
		prod = ctx->image;
		g_object_ref(prod);
	}
	if (ctx->price && ctx->price[0]) {
		split_price(ctx->price, amount, sizeof amount, cur, sizeof cur);
		row.price = amount;
		if ((!row.currency || !row.currency[0]) && cur[0])
			row.currency = cur;
	}
	ads = json_pack("{s:s,s:{}}", "product",
			ctx->placeholder     ? "placeholder"
			: prod == ctx->image ? "image"
					     : "cutout",
			"templates");
	if (why && prod == ctx->image)
		json_object_set_new(ads, "product_reason", json_string(why));
	per = json_object_get(ads, "templates");
	for (int i = 0; i < c->n_tpl && !s; i++) {
		pm_template *t = c->tpl[i];
		VipsImage *ad = NULL;
		json_t *facts = NULL, *outs = json_array();

		if (ctx->placeholder) {
			if (prod)
				g_object_unref(prod);
			prod = NULL;
			s = placeholder_image(t, ctx, &prod, err);
			if (s) {
				json_decref(outs);
				break;
			}
		}
		s = pm_ad_render(c->text, t, prod, &row, &ad, &facts, err);
		for (int f = 0; !s && f < t->n_formats; f++) {
			pm_encode_opts o = t->enc[f];
			void *buf = NULL;
			size_t len = 0;
			char name[32];
			o.keep_meta = false;
			s = pm_image_encode(ad, &o, &buf, &len, err);
			if (s)
				break;
			snprintf(name, sizeof name, "%s.%s", c->out_name[i],
				 ext_of(o.format));
			s = pm_ctx_add_output(
			    ctx, name, pm_format_name(o.format),
			    vips_image_get_width(ad), vips_image_get_height(ad),
			    buf, len, err);
			g_free(buf);
			json_array_append_new(outs, json_string(name));
		}
		if (facts) {
			json_object_set_new(facts, "outputs", outs);
			json_object_set_new(per, t->name, facts);
		} else
			json_decref(outs);
		if (ad)
			g_object_unref(ad);
	}
	if (prod)
		g_object_unref(prod);
	if (s) {
		json_decref(ads);
		return s;
	}
	if (!ctx->meta)
		ctx->meta = json_object();
	json_object_set_new(ctx->meta, "ads", ads);
	return PM_OK;
}

const pm_stage_vt pm_stage_compose = {
    .name = "compose",
    .version = 1,
    .check = compose_check,
    .decode_size = compose_decode_size,
    .init = compose_init,
    .process = compose_process,
    .fini = compose_fini,
    .uses_row = true,
    .placeholder = true,
};
