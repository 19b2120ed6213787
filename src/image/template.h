/* template.h — ad templates: parsing and validating a template JSON file
 * (docs/TEMPLATES.md), formatting a price for a currency and locale, laying
 * out text blocks with auto-fit, and rendering one finished ad from a
 * product image and a catalog row's text.
 *
 * Files: template.c (parse, validate, load images), price.c (price table),
 * adtext.c (Pango layout: auto-fit, wrapping, ellipsis), adrender.c
 * (libvips composition: background, product with drop shadow, logo, text).
 *
 * Threads: pm_template_parse, pm_template_digest and pm_price_format may be
 * called from any thread at once (they touch only their arguments). A
 * pm_template and a pm_adtext are owned by one thread at a time (the
 * compose stage keeps one of each per worker); rendering never shares
 * either between threads.
 */
#ifndef PM_TEMPLATE_H
#define PM_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <vips/vips.h>

#include "core/status.h"
#include "image/image.h"

/* Bounds a template must keep (hostile files are refused with a reason). */
#define PM_TPL_MAX_FILE	   (256 * 1024) /* bytes of template JSON */
#define PM_TPL_MIN_SIDE	   16		/* canvas side, px */
#define PM_TPL_MAX_SIDE	   4096
#define PM_TPL_MAX_PIXELS  (4096 * 4096)
#define PM_TPL_MIN_FONT_PX 4
#define PM_TPL_MAX_FONT_PX 400
#define PM_TPL_MAX_LINES   12
#define PM_TPL_MAX_TEXT	   256	       /* bytes of static text (cta, brand) */
#define PM_TPL_MAX_FONT	   96	       /* bytes of a font description */
#define PM_TPL_MAX_IMAGE   (32u << 20) /* bytes of a background/logo file */
/* Bytes of row text used (longer titles are cut at a character boundary
 * before layout; the ellipsis then shows the cut). */
#define PM_TPL_MAX_ROW_TEXT 2048

typedef struct pm_rgba {
	uint8_t r, g, b, a;
} pm_rgba;

typedef struct pm_rect {
	int x, y, w, h;
} pm_rect;

typedef enum pm_align {
	PM_ALIGN_START,
	PM_ALIGN_CENTRE,
	PM_ALIGN_END
} pm_align;

typedef enum pm_tb_kind {
	PM_TB_TITLE,
	PM_TB_PRICE,
	PM_TB_CTA,
	PM_TB_BRAND,
	PM_TB_COUNT
} pm_tb_kind;

/* "title", "price", "cta", "brand". */
const char *pm_tb_name(pm_tb_kind k);

typedef struct pm_text_block {
	bool present;
	pm_rect box;		    /* on the canvas */
	char font[PM_TPL_MAX_FONT]; /* Pango/fontconfig description without
				       size: "Noto Sans Bold" */
	int size_min, size_max;	    /* px */
	int max_lines;		    /* 1..PM_TPL_MAX_LINES */
	pm_rgba color;
	pm_align halign, valign;
	bool uppercase;		    /* upper-case the text (any script) */
	char text[PM_TPL_MAX_TEXT]; /* cta: the static text; brand: used
				       when the row has no brand */
	bool has_fill;		    /* a filled (rounded) box behind */
	pm_rgba fill;
	int radius;  /* fill corner radius, px */
	int padding; /* text inset inside box, px */
} pm_text_block;

typedef enum pm_bg_kind { PM_BG_COLOR, PM_BG_GRADIENT, PM_BG_IMAGE } pm_bg_kind;
typedef enum pm_fit { PM_FIT_CONTAIN, PM_FIT_COVER } pm_fit;

#define PM_TPL_MAX_FORMATS 3

typedef struct pm_template {
	char name[64];	   /* "name" in the file, else the file's stem */
	char path[1024];   /* the file it came from ("" if from a string) */
	int width, height; /* canvas */
	pm_bg_kind bg;
	pm_rgba bg_color, grad_from, grad_to;
	double grad_angle;   /* degrees; 90 = top to bottom */
	char bg_image[1024]; /* absolute path (PM_BG_IMAGE) */
	/* product box */
	pm_rect product;
	pm_fit fit;
	int padding;
	bool shadow;
	int shadow_dx, shadow_dy;
	double shadow_blur;    /* radius, px */
	double shadow_opacity; /* 0..1 */
	pm_text_block text[PM_TB_COUNT];
	char currency[4]; /* default when the row has none, e.g. "EUR" */
	char locale[8];	  /* e.g. "de_DE" */
	bool has_logo;
	char logo_image[1024]; /* absolute path */
	pm_rect logo;
	pm_encode_opts enc[PM_TPL_MAX_FORMATS];
	int n_formats;
	/* Owned, in memory, NULL until made: the background (sRGB, 3
	 * bands, canvas size: an image cover-fitted by
	 * pm_template_load_images, a colour or gradient rendered by the
	 * first pm_ad_render) and the logo contain-fitted to its box (RGBA,
	 * pm_template_load_images). */
	VipsImage *bg_im, *logo_im;
} pm_template;

/* Parses and validates a template from JSON text. dir: the folder
 * relative image paths are resolved against (NULL = the current one).
 * Refuses unknown keys, out-of-range numbers, boxes outside the canvas and
 * over-long strings with PM_ERR_PIPELINE and a message naming the key. On
 * success *out is the caller's (pm_template_free). Loads no image. */
pm_status pm_template_parse(const char *json_text, size_t len, const char *dir,
			    pm_template **out, pm_err *err);
/* Reads path (at most PM_TPL_MAX_FILE bytes) and parses it; name defaults
 * to the file's stem. */
pm_status pm_template_load(const char *path, pm_template **out, pm_err *err);
/* Decodes the background and logo images, if any (bounded size). */
pm_status pm_template_load_images(pm_template *t, pm_err *err);
void pm_template_free(pm_template *t);

/* SHA-256 (hex) over the template file and the images it refers to, so a
 * pipeline's hash changes when any of them does. */
pm_status pm_template_digest(const pm_template *t, char hex[65], pm_err *err);

/* ---- prices (price.c) ---- */

/* Formats amount (as written in a catalog: "1234.5", "1234,50", "0",
 * "12") for currency (ISO 4217: EUR USD GBP JPY CHF SEK NOK DKK PLN CZK
 * CAD AUD CNY INR BRL) in locale (en_US en_GB en_IE de_DE de_AT de_CH fr_FR
 * fr_CH it_IT es_ES nl_NL sv_SE nb_NO da_DK pl_PL cs_CZ ja_JP zh_CN en_IN
 * pt_BR en_CA fr_CA en_AU; NULL/"" = en_US), rounded half up to the
 * currency's decimals (JPY none). UTF-8 into out. Refuses negative,
 * empty, non-numeric or over-long (more than 15 integer digits) amounts and
 * unknown currencies or locales with PM_ERR_CATALOG. Examples:
 * ("1234.5","EUR","de_DE") -> "1.234,50 €"; ("1234.5","USD","en_US") ->
 * "$1,234.50"; ("1234.5","JPY","ja_JP") -> "￥1,235". */
pm_status pm_price_format(const char *amount, const char *currency,
			  const char *locale, char *out, size_t out_sz,
			  pm_err *err);
/* Whether the currency / locale is in the table. */
bool pm_price_currency_known(const char *currency);
bool pm_price_locale_known(const char *locale);

/* ---- text layout (adtext.c) ---- */

/* A worker's text engine: its own Pango font map and context (Pango is not
 * thread-safe across one font map). */
typedef struct pm_adtext pm_adtext;
pm_status pm_adtext_new(pm_adtext **out, pm_err *err);
void pm_adtext_free(pm_adtext *a);

/* Whether a font description's family is installed (no fontconfig
 * substitution); *got is the family that would be used. */
bool pm_adtext_font_installed(pm_adtext *a, const char *font, char *got,
			      size_t got_sz);

typedef struct pm_textfit {
	int size;	/* px chosen */
	int lines;	/* lines laid out */
	bool truncated; /* over the line limit even at size_min: ellipsized */
	int missing;	/* characters no installed font has (drawn as boxes) */
	pm_rect ink;	/* inked pixels on the canvas (may be empty) */
	pm_rect region; /* where the rendered RGBA image goes on the canvas */
} pm_textfit;

/* Lays out text (plain UTF-8, never markup; control characters and runs
 * of white space become one space; invalid UTF-8 becomes U+FFFD) in b:
 * the largest size in [size_min, size_max] at which it fits the box within
 * max_lines, else size_min ellipsized to the lines that fit. Renders the
 * fill and the text into *out (RGBA, straight alpha, placed at
 * fit->region; caller unrefs). font: the description to use (b->font or a
 * fallback). */
pm_status pm_adtext_render(pm_adtext *a, const pm_text_block *b,
			   const char *font, const char *text, int canvas_w,
			   int canvas_h, pm_textfit *fit, VipsImage **out,
			   pm_err *err);

/* ---- rendering (adrender.c) ---- */

typedef struct pm_ad_row {
	const char *title, *price, *currency, *brand; /* NULL when absent */
} pm_ad_row;

/* Renders one ad: canvas (background), the product image (RGB or RGBA,
 * any size; fitted into the product box, drop shadow from its alpha), the
 * logo and the text blocks (title, price formatted for the row's currency
 * or the template's, call to action, brand). *out: sRGB, 3 bands, in
 * memory, t->width x t->height (caller unrefs). facts: a new JSON object
 * (caller decrefs): "product" [x, y, w, h] and per block {"size",
 * "lines", "truncated", "font" (the family used), "ink" [x, y, w, h],
 * "text" (price only), "font_fallback" (the family asked for, when it is
 * not installed), "missing_glyphs" (when > 0)}. A price that does not
 * parse fails with PM_ERR_CATALOG. The first call renders t's colour or
 * gradient background into t->bg_im (kept for the next ads). */
pm_status pm_ad_render(pm_adtext *a, pm_template *t, VipsImage *product,
		       const pm_ad_row *row, VipsImage **out, json_t **facts,
		       pm_err *err);

#endif
