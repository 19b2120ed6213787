/* test_compose.c — unit tests for ad composition: the price table
 * (src/image/price.c), template validation (src/image/template.c), text
 * auto-fit, wrapping and ellipsis (src/image/adtext.c), rendering
 * (src/image/adrender.c), the row key (src/stages/row.c) and the compose
 * stage (src/stages/compose.c) through the pipeline API.
 *
 * Text layout is checked on the rendered pixels: every inked pixel of a
 * block must lie inside its box, for short, long and non-Latin titles
 * (Cyrillic, Greek, CJK, Hangul), and no character may fall back to a
 * missing-glyph box. Templates: templates/ of the repository, found from
 * this program's path (BUILD/tests/ -> ../../templates) or
 * $PIXMILL_TEMPLATES.
 *
 * Threads: single-threaded test program (the harness counters are not
 * atomic).
 */
#include "image/template.h"
#include "stages/pipeline.h"
#include "stages/stage.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

#define NBSP  "\xc2\xa0"
#define NNBSP "\xe2\x80\xaf"

static char tpl_dir[2048];

static void find_templates(void)
{
	const char *env = getenv("PIXMILL_TEMPLATES");
	char exe[1900];
	ssize_t n;
	struct stat st;

	if (env && env[0]) {
		snprintf(tpl_dir, sizeof tpl_dir, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(tpl_dir, sizeof tpl_dir, "%s/../../templates", exe);
		if (stat(tpl_dir, &st) == 0)
			return;
	}
	snprintf(tpl_dir, sizeof tpl_dir, "templates");
}

/* ---- prices ---- */

static void test_price(void)
{
	static const struct {
		const char *amount, *cur, *loc, *want;
	} ok[] = {
	    {"1234.5", "EUR", "de_DE", "1.234,50" NBSP "\xe2\x82\xac"},
	    {"1234.5", "USD", "en_US", "$1,234.50"},
	    {"1234.5", "USD", NULL, "$1,234.50"},
	    {"0", "USD", "en_US", "$0.00"},
	    {"0.00", "EUR", "de_DE", "0,00" NBSP "\xe2\x82\xac"},
	    {"0.005", "USD", "en_US", "$0.01"},
	    {"0.004", "USD", "en_US", "$0.00"},
	    {"9.995", "USD", "en_US", "$10.00"},
	    {"999.999", "EUR", "de_DE", "1.000,00" NBSP "\xe2\x82\xac"},
	    {"1234.5", "JPY", "ja_JP",
	     "\xef\xbf\xa5"
	     "1,235"},
	    {"1234", "JPY", "en_US",
	     "\xc2\xa5"
	     "1,234"},
	    {"0.4", "JPY", "en_US",
	     "\xc2\xa5"
	     "0"},
	    {"1234.5", "GBP", "en_GB",
	     "\xc2\xa3"
	     "1,234.50"},
	    {"1234.5", "CHF", "de_CH",
	     "CHF" NBSP "1\xe2\x80\x99"
	     "234.50"},
	    {"1234.5", "CHF", "en_US", "CHF" NBSP "1,234.50"},
	    {"1234567890.99", "EUR", "fr_FR",
	     "1" NNBSP "234" NNBSP "567" NNBSP "890,99" NBSP "\xe2\x82\xac"},
	    {"999999999999999", "USD", "en_US", "$999,999,999,999,999.00"},
	    {"1234", "EUR", "es_ES", "1234,00" NBSP "\xe2\x82\xac"},
	    {"12345", "EUR", "es_ES", "12.345,00" NBSP "\xe2\x82\xac"},
	    {"19,99", "EUR", "de_DE", "19,99" NBSP "\xe2\x82\xac"},
	    {"19,9", "EUR", "de_DE", "19,90" NBSP "\xe2\x82\xac"},
	    {"1,234.50", "USD", "en_US", "$1,234.50"},
	    {"1,234", "USD", "en_US", "$1,234.00"},
	    {"1,234,567", "USD", "en_US", "$1,234,567.00"},
	    {"007.5", "USD", "en_US", "$7.50"},
	    {" 12.50 ", "USD", "en_US", "$12.50"},
	    {"12.99", "SEK", "sv_SE", "12,99" NBSP "kr"},
	    {"12.99", "PLN", "pl_PL", "12,99" NBSP "z\xc5\x82"},
	    {"12.99", "EUR", "nl_NL", "\xe2\x82\xac" NBSP "12,99"},
	    {"12.99", "EUR", "de_AT", "\xe2\x82\xac" NBSP "12,99"},
	    {"12.99", "BRL", "pt_BR", "R$" NBSP "12,99"},
	    {"12.99", "CAD", "en_CA", "$12.99"},
	    {"12.99", "CAD", "en_US", "CA$12.99"},
	    {"12.99", "USD", "en_CA", "US$12.99"},
	    {"1500", "CZK", "cs_CZ", "1" NBSP "500,00" NBSP "K\xc4\x8d"},
	    {"12.99", "USD", "de_DE", "12,99" NBSP "$"},
	};
	static const struct {
		const char *amount, *cur, *loc;
	} bad[] = {
	    {"-5", "USD", "en_US"},
	    {"-0.01", "EUR", "de_DE"},
	    {"abc", "USD", "en_US"},
	    {"", "USD", "en_US"},
	    {"   ", "USD", "en_US"},
	    {NULL, "USD", "en_US"},
	    {"1.2.3", "USD", "en_US"},
	    {"12.", "USD", "en_US"},
	    {".5", "USD", "en_US"},
	    {"1e5", "USD", "en_US"},
	    {"1 234", "USD", "en_US"},
	    {"12,3456", "USD", "en_US"},
	    {"1,23,456", "USD", "en_US"},
	    {"+5", "USD", "en_US"},
	    {"1234567890123456", "USD", "en_US"},
	    {"\xd9\xa1\xd9\xa2", "USD", "en_US"}, /* Arabic-Indic digits */
	    {"0x10", "USD", "en_US"},
	    {"12.5", "XYZ", "en_US"},
	    {"12.5", NULL, "en_US"},
	    {"12.5", "usd", "en_US"},
	    {"12.5", "USD", "xx_XX"},
	    {"12.5", "USD", "en_US.UTF-8"},
	    {"NaN", "USD", "en_US"},
	    {"Infinity", "USD", "en_US"},
	};
	char out[128];
	pm_err e = {{0}};

	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
		pm_status s = pm_price_format(ok[i].amount, ok[i].cur,
					      ok[i].loc, out, sizeof out, &e);
		CHECK_INT(s, PM_OK);
		CHECK_STR(s ? e.msg : out, ok[i].want);
	}
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		pm_status s = pm_price_format(bad[i].amount, bad[i].cur,
					      bad[i].loc, out, sizeof out, &e);
		CHECK_INT(s, PM_ERR_CATALOG);
		CHECK(e.msg[0] != '\0');
	}
	/* too small an output buffer is an error, never an overflow */
	CHECK(pm_price_format("1234.5", "EUR", "de_DE", out, 5, &e) != PM_OK);
}

/* ---- text auto-fit ---- */

/* Pixels with alpha outside box (canvas coordinates); *inside those in. */
static long ink_outside(VipsImage *im, pm_rect region, pm_rect box,
			long *inside)
{
	VipsImage *m = vips_image_copy_memory(im);
	long out = 0;

	*inside = 0;
	for (int y = 0; y < vips_image_get_height(m); y++) {
		const unsigned char *p = VIPS_IMAGE_ADDR(m, 0, y);
		for (int x = 0; x < vips_image_get_width(m); x++) {
			int cx = region.x + x, cy = region.y + y;
			if (p[4 * x + 3] == 0)
				continue;
			if (cx < box.x || cy < box.y || cx >= box.x + box.w ||
			    cy >= box.y + box.h)
				out++;
			else
				(*inside)++;
		}
	}
	g_object_unref(m);
	return out;
}

static pm_text_block block(int x, int y, int w, int h, int lo, int hi,
			   int lines)
{
	pm_text_block b;

	memset(&b, 0, sizeof b);
	b.present = true;
	b.box = (pm_rect){x, y, w, h};
	snprintf(b.font, sizeof b.font, "Noto Sans Bold");
	b.size_min = lo;
	b.size_max = hi;
	b.max_lines = lines;
	b.color = (pm_rgba){20, 20, 20, 255};
	return b;
}

/* Renders text in b on an 1200x800 canvas; checks the ink is inside the
 * box and nothing is a missing glyph. Returns the fit. */
static pm_textfit fit_check(pm_adtext *a, const pm_text_block *b,
			    const char *text, const char *label)
{
	pm_textfit fit;
	VipsImage *im = NULL;
	pm_err e = {{0}};
	long in = 0, out;
	pm_status s =
	    pm_adtext_render(a, b, b->font, text, 1200, 800, &fit, &im, &e);

	CHECK_INT(s, PM_OK);
	if (s || !im) {
		fprintf(stderr, "%s: %s\n", label, e.msg);
		CHECK(im != NULL);
		return fit;
	}
	out = ink_outside(im, fit.region, b->box, &in);
	if (out)
		fprintf(stderr, "%s: %ld px outside the box (size %d)\n", label,
			out, fit.size);
	CHECK_INT(out, 0);
	CHECK(in > 50); /* something was drawn */
	CHECK(fit.lines >= 1 && fit.lines <= b->max_lines);
	CHECK(fit.size >= b->size_min && fit.size <= b->size_max);
	if (fit.missing)
		fprintf(stderr, "%s: %d missing glyphs\n", label, fit.missing);
	CHECK_INT(fit.missing, 0);
	/* the ink rectangle reported matches the box */
	CHECK(fit.ink.x >= b->box.x && fit.ink.y >= b->box.y &&
	      fit.ink.x + fit.ink.w <= b->box.x + b->box.w &&
	      fit.ink.y + fit.ink.h <= b->box.y + b->box.h);
	g_object_unref(im);
	return fit;
}

static void test_autofit(void)
{
	pm_adtext *a = NULL;
	pm_err e = {{0}};
	pm_text_block b = block(100, 100, 600, 170, 16, 90, 2);
	pm_textfit f_short, f_med, f_long, f;
	static const struct {
		const char *label, *text;
	} scripts[] = {
	    {"cyrillic", "Фруктовая корзина с яблоками и грушами, большая"},
	    {"greek", "Ελληνικό ελαιόλαδο εξαιρετικό παρθένο, 750 ml"},
	    {"chinese", "不锈钢保温杯 大容量 户外运动水杯"},
	    {"japanese", "ステンレス製ウォーターボトル 750ml 保冷24時間"},
	    {"korean", "스테인리스 물병 750ml 보냉 24시간"},
	    {"mixed", "Bottle Бутылка Μπουκάλι 水瓶 ボトル 물병"},
	    {"markup",
	     "<span foreground=\"red\">50%</span> & <b>off</b> &amp;"},
	    {"one long word",
	     "Donaudampfschifffahrtsgesellschaftskapitaenswitwenrente"
	     "nversicherungsanstalt"},
	    {"accents", "ÉCLAIR À LA CRÈME — Ångström Ødegaard Ñandú"},
	    {"arabic", "زجاجة ماء من الفولاذ المقاوم للصدأ"},
	    {"hebrew", "בקבוק מים מפלדת אל חלד"},
	    {"hindi", "स्टेनलेस स्टील पानी की बोतल"},
	    {"thai", "ขวดน้ำสแตนเลส ขนาด 750 มล."},
	    {"emoji-free symbols", "50% off — €9.99 → £8.49 © ™ ½"},
	};

	CHECK_INT(pm_adtext_new(&a, &e), PM_OK);
	if (!a)
		return;
	f_short = fit_check(a, &b, "Mug", "short");
	CHECK_INT(f_short.size, 90); /* a short title takes the largest size */
	CHECK(!f_short.truncated);
	CHECK_INT(f_short.lines, 1);
	f_med = fit_check(a, &b,
			  "Stainless steel water bottle, 750 ml, keeps cold "
			  "for 24 hours",
			  "medium");
	CHECK(f_med.size < f_short.size);
	CHECK(!f_med.truncated);
	f_long = fit_check(
	    a, &b,
	    "An extremely long product title that goes on and on describing "
	    "the castle of Maintenon in great detail, its gardens, its "
	    "aqueduct, its history, its owners over four centuries and "
	    "everything else a buyer could possibly want to know about it",
	    "long");
	CHECK_INT(f_long.size, 16); /* at the smallest size... */
	CHECK(f_long.truncated);    /* ...and ellipsized */
	CHECK_INT(f_long.lines, 2); /* at the line limit */
	for (size_t i = 0; i < sizeof scripts / sizeof *scripts; i++) {
		f = fit_check(a, &b, scripts[i].text, scripts[i].label);
		CHECK(!f.truncated);
	}
	/* a line limit of 1 in a short, narrow box: ellipsis on one line */
	{
		pm_text_block n = block(50, 600, 300, 60, 14, 40, 1);
		f = fit_check(a, &n,
			      "Wireless noise cancelling headphones with a "
			      "forty hour battery",
			      "one line");
		CHECK(f.truncated);
		CHECK_INT(f.lines, 1);
		CHECK_INT(f.size, 14);
	}
	/* alignment: centred and right-aligned text stays in the box */
	{
		pm_text_block c = block(700, 300, 400, 200, 12, 60, 3);
		c.halign = PM_ALIGN_CENTRE;
		c.valign = PM_ALIGN_CENTRE;
		fit_check(a, &c, "Centred title in the middle", "centre");
		c.halign = PM_ALIGN_END;
		c.valign = PM_ALIGN_END;
		f = fit_check(a, &c, "Right and bottom", "right");
		/* bottom-aligned: the ink ends near the box's bottom */
		CHECK(c.box.y + c.box.h - (f.ink.y + f.ink.h) < 30);
		/* right-aligned: the ink ends near the box's right edge */
		CHECK(c.box.x + c.box.w - (f.ink.x + f.ink.w) < 10);
	}
	/* upper-casing works on any script */
	{
		pm_text_block u = block(0, 0, 800, 100, 10, 40, 1);
		u.uppercase = true;
		fit_check(a, &u, "brand бренд βραντ", "upper");
	}
	/* nothing to draw: no image, no error */
	{
		VipsImage *im = (VipsImage *)1;
		CHECK_INT(pm_adtext_render(a, &b, b.font, " \t\n\x01 ", 1200,
					   800, &f, &im, &e),
			  PM_OK);
		CHECK(im == NULL);
	}
	/* a flood of combining marks: laid out, no error, stays on the
	 * canvas (its ink may pass the box: marks stack beyond any line) */
	{
		char z[1200] = "Z";
		VipsImage *im = NULL;
		for (int i = 0; i < 300; i++)
			strcat(z, "\xcc\x81"); /* U+0301 */
		strcat(z, "algo");
		CHECK_INT(
		    pm_adtext_render(a, &b, b.font, z, 1200, 800, &f, &im, &e),
		    PM_OK);
		CHECK(im != NULL && f.region.x >= 0 && f.region.y >= 0 &&
		      f.region.x + f.region.w <= 1200 &&
		      f.region.y + f.region.h <= 800);
		if (im)
			g_object_unref(im);
	}
	/* invalid UTF-8 and control characters do not break layout */
	fit_check(a, &b, "Bad \xff\xfe bytes\x1b[31m and\ttabs\r\nnewlines",
		  "invalid utf-8");
	pm_adtext_free(a);
}

/* ---- templates ---- */

static pm_status parse(const char *json, pm_template **t, pm_err *e)
{
	return pm_template_parse(json, strlen(json), "/tmp", t, e);
}

#define CANVAS	"\"canvas\":{\"width\":800,\"height\":600},"
#define PRODUCT "\"product\":{\"x\":0,\"y\":0,\"w\":400,\"h\":400},"
#define TITLE                                                                  \
	"\"title\":{\"x\":400,\"y\":0,\"w\":400,\"h\":200,\"size\":[10,60]}"

static void test_hostile_templates(void)
{
	static const struct {
		const char *json, *want; /* want: part of the message */
	} bad[] = {
	    {"not json at all", "not a JSON"},
	    {"[1,2,3]", "not a JSON object"},
	    {"", "not a JSON"},
	    {"{\"canvas\":{\"width\":100000,\"height\":100000}," PRODUCT
	     "\"text\":{" TITLE "}}",
	     "canvas.width"},
	    {"{\"canvas\":{\"width\":-5,\"height\":600}}", "canvas.width"},
	    {"{\"canvas\":{\"width\":800.5,\"height\":600}}", "canvas.width"},
	    {"{\"canvas\":{\"width\":\"800\",\"height\":600}}", "canvas.width"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE "},\"foo\":1}",
	     "unknown key \"foo\""},
	    {"{" CANVAS "\"product\":{\"x\":500,\"y\":0,\"w\":400,\"h\":400},"
	     "\"text\":{" TITLE "}}",
	     "leaves"},
	    {"{" CANVAS PRODUCT
	     "\"text\":{\"title\":{\"x\":0,\"y\":0,\"w\":100,\"h\":100,"
	     "\"size\":[80,10]}}}",
	     "size"},
	    {"{" CANVAS PRODUCT
	     "\"text\":{\"title\":{\"x\":0,\"y\":0,\"w\":100,\"h\":100,"
	     "\"size\":[1,100000]}}}",
	     "size"},
	    {"{" CANVAS PRODUCT
	     "\"text\":{\"title\":{\"x\":0,\"y\":0,\"w\":100,\"h\":100,"
	     "\"size\":[10,20],\"lines\":0}}}",
	     "lines"},
	    {"{" CANVAS PRODUCT
	     "\"text\":{\"title\":{\"x\":0,\"y\":0,\"w\":100,\"h\":100,"
	     "\"size\":[10,20],\"lines\":100000}}}",
	     "lines"},
	    {"{" CANVAS PRODUCT
	     "\"text\":{\"title\":{\"x\":0,\"y\":0,\"w\":100,\"h\":100,"
	     "\"size\":[10,20],\"color\":\"red\"}}}",
	     "colour"},
	    {"{" CANVAS PRODUCT
	     "\"text\":{\"title\":{\"x\":0,\"y\":0,\"w\":100,\"h\":100,"
	     "\"size\":[10,20],\"font\":\"Sans <b>\"}}}",
	     "font"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE
	     ",\"cta\":{\"x\":0,\"y\":500,\"w\":100,\"h\":50,"
	     "\"size\":[10,20]}}}",
	     "cta"},
	    {"{" CANVAS PRODUCT "\"text\":{}}", "title is required"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE "},\"name\":\"../x\"}",
	     "name"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE
	     "},\"background\":{\"color\":\"#fff\",\"image\":\"a.png\"}}",
	     "exactly one"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE
	     "},\"output\":{\"formats\":[\"gif\"]}}",
	     "formats"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE
	     "},\"output\":{\"formats\":[\"jpeg\",\"jpg\"]}}",
	     "twice"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE
	     "},\"price\":{\"currency\":\"XXX\"}}",
	     "currency"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE
	     "},\"price\":{\"locale\":\"tlh_QO\"}}",
	     "locale"},
	    {"{" CANVAS "\"product\":{\"x\":0,\"y\":0,\"w\":400,\"h\":400,"
	     "\"padding\":300},\"text\":{" TITLE "}}",
	     "padding"},
	    {"{" CANVAS "\"product\":{\"x\":0,\"y\":0,\"w\":400,\"h\":400,"
	     "\"shadow\":{\"opacity\":7}},\"text\":{" TITLE "}}",
	     "opacity"},
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE "}," CANVAS "}",
	     "not a JSON"}, /* duplicate key */
	    {"{" CANVAS PRODUCT "\"text\":{" TITLE
	     "},\"logo\":{\"x\":0,\"y\":0,\"w\":10,\"h\":10}}",
	     "logo.image"},
	};
	pm_template *t = NULL;
	pm_err e = {{0}};

	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		pm_status s = parse(bad[i].json, &t, &e);
		CHECK_INT(s, PM_ERR_PIPELINE);
		CHECK(t == NULL);
		if (!strstr(e.msg, bad[i].want))
			fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i,
				e.msg, bad[i].want);
		CHECK(strstr(e.msg, bad[i].want) != NULL);
	}
	/* a string longer than the limit */
	{
		char json[2048];
		char longtext[400];
		memset(longtext, 'x', sizeof longtext - 1);
		longtext[sizeof longtext - 1] = '\0';
		snprintf(json, sizeof json,
			 "{" CANVAS PRODUCT "\"text\":{" TITLE
			 ",\"cta\":{\"x\":0,\"y\":500,\"w\":100,\"h\":50,"
			 "\"size\":[10,20],\"text\":\"%s\"}}}",
			 longtext);
		CHECK_INT(parse(json, &t, &e), PM_ERR_PIPELINE);
		CHECK(strstr(e.msg, "longer") != NULL);
	}
	/* a file over the size limit, deep nesting */
	{
		size_t n = PM_TPL_MAX_FILE + 10;
		char *big = malloc(n + 1);
		memset(big, ' ', n);
		big[0] = '{';
		big[n - 1] = '}';
		big[n] = '\0';
		CHECK_INT(pm_template_parse(big, n, NULL, &t, &e),
			  PM_ERR_PIPELINE);
		for (size_t i = 0; i < 5000; i++)
			big[i] = '[';
		big[5000] = '\0';
		CHECK_INT(pm_template_parse(big, 5000, NULL, &t, &e),
			  PM_ERR_PIPELINE);
		free(big);
	}
	CHECK(pm_template_load("/nonexistent/tpl.json", &t, &e) != PM_OK);
	/* a logo file that is not there: parses, fails to load, clearly */
	CHECK_INT(parse("{" CANVAS PRODUCT "\"text\":{" TITLE
			"},\"logo\":{\"x\":0,\"y\":0,\"w\":10,\"h\":10,"
			"\"image\":\"no-such-logo.png\"}}",
			&t, &e),
		  PM_OK);
	if (t) {
		CHECK(pm_template_load_images(t, &e) != PM_OK);
		CHECK(strstr(e.msg, "no-such-logo.png") != NULL);
		pm_template_free(t);
		t = NULL;
	}
	/* a logo that is not an image */
	CHECK_INT(parse("{" CANVAS PRODUCT "\"text\":{" TITLE
			"},\"background\":{\"image\":\"/etc/hostname\"}}",
			&t, &e),
		  PM_OK);
	if (t) {
		CHECK_INT(pm_template_load_images(t, &e), PM_ERR_PIPELINE);
		pm_template_free(t);
		t = NULL;
	}
	/* the largest canvas allowed parses */
	CHECK_INT(parse("{\"canvas\":{\"width\":4096,\"height\":4096}," PRODUCT
			"\"text\":{" TITLE "}}",
			&t, &e),
		  PM_OK);
	pm_template_free(t);
	t = NULL;
}

/* A synthetic product: w x h, a coloured disc on transparency (alpha) or
 * a flat opaque picture. Caller unrefs. */
static VipsImage *product(int w, int h, bool alpha)
{
	VipsImage *bk = NULL, *rgb = NULL, *mask = NULL, *out = NULL;
	double mul[3] = {0, 0, 0}, add[3] = {200, 60, 40};

	vips_black(&bk, w, h, "bands", 3, NULL);
	vips_linear(bk, &rgb, mul, add, 3, "uchar", TRUE, NULL);
	if (!alpha) {
		g_object_unref(bk);
		return rgb;
	}
	vips_black(&mask, w, h, NULL);
	{
		VipsImage *m8 = NULL;
		double ink = 255;
		vips_cast_uchar(mask, &m8, NULL);
		vips_draw_circle(m8, &ink, 1, w / 2, h / 2, h / 4, "fill", TRUE,
				 NULL);
		vips_bandjoin2(rgb, m8, &out, NULL);
		g_object_unref(m8);
	}
	g_object_unref(bk);
	g_object_unref(rgb);
	g_object_unref(mask);
	return out;
}

static void test_shipped_templates(void)
{
	static const struct {
		const char *name;
		int w, h;
	} ship[] = {{"square", 1080, 1080},
		    {"landscape", 1200, 628},
		    {"story", 1080, 1920}};
	pm_adtext *a = NULL;
	pm_err e = {{0}};
	VipsImage *opaque = product(640, 480, false);
	VipsImage *cut = product(800, 800, true);

	CHECK_INT(pm_adtext_new(&a, &e), PM_OK);
	for (size_t i = 0; i < sizeof ship / sizeof *ship; i++) {
		char path[2200];
		pm_template *t = NULL;
		pm_ad_row row = {"Ceramic coffee mug, 350 ml", "12.5", "EUR",
				 "Acme"};
		snprintf(path, sizeof path, "%s/%s.json", tpl_dir,
			 ship[i].name);
		CHECK_INT(pm_template_load(path, &t, &e), PM_OK);
		if (!t) {
			fprintf(stderr, "%s: %s\n", path, e.msg);
			continue;
		}
		CHECK_STR(t->name, ship[i].name);
		CHECK_INT(t->width, ship[i].w);
		CHECK_INT(t->height, ship[i].h);
		CHECK_INT(pm_template_load_images(t, &e), PM_OK);
		/* a real ad has all four blocks */
		for (int k = 0; k < PM_TB_COUNT; k++)
			CHECK(t->text[k].present);
		for (int pass = 0; pass < 2; pass++) {
			VipsImage *ad = NULL;
			json_t *facts = NULL, *p;
			pm_status s = pm_ad_render(a, t, pass ? cut : opaque,
						   &row, &ad, &facts, &e);
			CHECK_INT(s, PM_OK);
			if (s) {
				fprintf(stderr, "%s: %s\n", path, e.msg);
				continue;
			}
			CHECK_INT(vips_image_get_width(ad), ship[i].w);
			CHECK_INT(vips_image_get_height(ad), ship[i].h);
			CHECK_INT(vips_image_get_bands(ad), 3);
			CHECK(json_object_get(facts, "title") != NULL);
			CHECK(json_object_get(facts, "cta") != NULL);
			CHECK(json_object_get(facts, "brand") != NULL);
			CHECK(!json_object_get(json_object_get(facts, "title"),
					       "font_fallback"));
			CHECK(json_is_string(json_object_get(
			    json_object_get(facts, "price"), "text")));
			/* the product lies inside its box; a cut-out is
			 * trimmed to its disc, so it comes out square */
			p = json_object_get(facts, "product");
			CHECK(json_array_size(p) == 4);
			{
				int px = (int)json_integer_value(
					json_array_get(p, 0)),
				    py = (int)json_integer_value(
					json_array_get(p, 1)),
				    pw = (int)json_integer_value(
					json_array_get(p, 2)),
				    ph = (int)json_integer_value(
					json_array_get(p, 3));
				CHECK(px >= t->product.x &&
				      py >= t->product.y &&
				      px + pw <= t->product.x + t->product.w &&
				      py + ph <= t->product.y + t->product.h);
				if (pass)
					CHECK(abs(pw - ph) <= 2);
			}
			/* each block's ink is inside its box */
			for (int k = 0; k < PM_TB_COUNT; k++) {
				json_t *bf = json_object_get(
				    facts, pm_tb_name((pm_tb_kind)k));
				json_t *ink = json_object_get(bf, "ink");
				pm_rect bx = t->text[k].box;
				int ix = (int)json_integer_value(
				    json_array_get(ink, 0));
				int iy = (int)json_integer_value(
				    json_array_get(ink, 1));
				int iw = (int)json_integer_value(
				    json_array_get(ink, 2));
				int ih = (int)json_integer_value(
				    json_array_get(ink, 3));
				CHECK(ix >= bx.x && iy >= bx.y &&
				      ix + iw <= bx.x + bx.w &&
				      iy + ih <= bx.y + bx.h);
			}
			/* the price text is the table's */
			{
				char want[64];
				pm_price_format("12.5", "EUR", t->locale, want,
						sizeof want, &e);
				CHECK_STR(json_string_value(json_object_get(
					      json_object_get(facts, "price"),
					      "text")),
					  want);
			}
			g_object_unref(ad);
			json_decref(facts);
		}
		/* a garbage price fails the ad clearly */
		{
			pm_ad_row badrow = {"Mug", "twelve", "EUR", NULL};
			VipsImage *ad = NULL;
			json_t *facts = NULL;
			CHECK_INT(pm_ad_render(a, t, opaque, &badrow, &ad,
					       &facts, &e),
				  PM_ERR_CATALOG);
			CHECK(ad == NULL && facts == NULL);
		}
		/* no price, no brand: still an ad (the template's) */
		{
			pm_ad_row bare = {"Mug", NULL, NULL, NULL};
			VipsImage *ad = NULL;
			json_t *facts = NULL;
			CHECK_INT(
			    pm_ad_render(a, t, opaque, &bare, &ad, &facts, &e),
			    PM_OK);
			CHECK(json_object_get(facts, "price") == NULL);
			if (ad)
				g_object_unref(ad);
			json_decref(facts);
		}
		pm_template_free(t);
	}
	g_object_unref(opaque);
	g_object_unref(cut);
	pm_adtext_free(a);
}

/* A font that is not installed: the ad still renders (fontconfig's
 * substitute) and the facts say so. Also a logo and an image background. */
static void test_font_fallback_and_images(void)
{
	char dir[] = "/tmp/pm-compose-XXXXXX", path[256], json[2048];
	pm_template *t = NULL;
	pm_adtext *a = NULL;
	pm_err e = {{0}};
	VipsImage *ad = NULL, *logo = product(200, 100, true);
	VipsImage *bg = product(300, 200, false);
	json_t *facts = NULL;
	pm_ad_row row = {"Fallback font title", "5", "USD", NULL};

	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/logo.png", dir);
	CHECK_INT(vips_image_write_to_file(logo, path, NULL), 0);
	snprintf(path, sizeof path, "%s/bg.jpg", dir);
	CHECK_INT(vips_image_write_to_file(bg, path, NULL), 0);
	snprintf(json, sizeof json,
		 "{" CANVAS PRODUCT "\"background\":{\"image\":\"bg.jpg\"},"
		 "\"logo\":{\"image\":\"logo.png\",\"x\":600,\"y\":500,"
		 "\"w\":200,\"h\":100},"
		 "\"text\":{\"title\":{\"x\":400,\"y\":0,\"w\":400,\"h\":200,"
		 "\"size\":[10,60],\"font\":\"No Such Family Xyzzy Bold\"}}}");
	CHECK_INT(pm_template_parse(json, strlen(json), dir, &t, &e), PM_OK);
	CHECK_INT(pm_adtext_new(&a, &e), PM_OK);
	if (t && a) {
		CHECK_INT(pm_template_load_images(t, &e), PM_OK);
		CHECK(t->bg_im && vips_image_get_width(t->bg_im) == 800 &&
		      vips_image_get_height(t->bg_im) == 600);
		CHECK(t->logo_im && vips_image_get_bands(t->logo_im) == 4);
		CHECK_INT(pm_ad_render(a, t, NULL, &row, &ad, &facts, &e),
			  PM_OK);
		CHECK(ad && vips_image_get_width(ad) == 800);
		CHECK_STR(
		    json_string_value(json_object_get(
			json_object_get(facts, "title"), "font_fallback")),
		    "No Such Family Xyzzy Bold");
		CHECK(!pm_adtext_font_installed(a, "No Such Family Xyzzy", NULL,
						0));
		CHECK(pm_adtext_font_installed(a, "Noto Sans Bold", NULL, 0));
		CHECK(pm_adtext_font_installed(a, "Nope, Noto Sans", NULL, 0));
		/* the logo's red is at its box's centre */
		if (ad) {
			double *px = NULL;
			int n = 0;
			vips_getpoint(ad, &px, &n, 700, 550, NULL);
			CHECK(n == 3 && px[0] > 150 && px[1] < 110);
			g_free(px);
		}
	}
	if (ad)
		g_object_unref(ad);
	json_decref(facts);
	pm_template_free(t);
	pm_adtext_free(a);
	g_object_unref(logo);
	g_object_unref(bg);
	snprintf(path, sizeof path, "rm -rf '%s'", dir);
	CHECK_INT(system(path), 0);
}

/* ---- the row key ---- */

static void test_row_key(void)
{
	pm_item_ctx a = {0}, b = {0};
	char ka[65], kb[65];
	const char *sha = "0123456789abcdef0123456789abcdef0123456789abcdef"
			  "0123456789abcdef";

	pm_ctx_set_row(&a, "Mug", "12.50",
		       "{\"Currency\":\"EUR\","
		       "\"brand\":\"Acme\",\"x\":\"y\"}");
	CHECK_STR(a.currency, "EUR");
	CHECK_STR(a.brand, "Acme");
	pm_ctx_set_row(&b, "Mug", "12.50",
		       "{\"currency\":\"EUR\",\"brand\":\"Acme\"}");
	pm_row_key(sha, &a, ka);
	pm_row_key(sha, &b, kb);
	CHECK_STR(ka, kb); /* same image, same text: one asset */
	CHECK(strcmp(ka, sha) != 0);
	pm_ctx_set_row(&b, "Mug!", "12.50",
		       "{\"currency\":\"EUR\",\"brand\":\"Acme\"}");
	pm_row_key(sha, &b, kb);
	CHECK(strcmp(ka, kb) != 0); /* another title */
	pm_ctx_set_row(&b, "Mug", "12.51",
		       "{\"currency\":\"EUR\",\"brand\":\"Acme\"}");
	pm_row_key(sha, &b, kb);
	CHECK(strcmp(ka, kb) != 0); /* another price */
	pm_ctx_set_row(&b, "Mug", "12.50",
		       "{\"currency\":\"USD\",\"brand\":\"Acme\"}");
	pm_row_key(sha, &b, kb);
	CHECK(strcmp(ka, kb) != 0); /* another currency */
	pm_ctx_set_row(&a, "", NULL, NULL);
	pm_ctx_set_row(&b, NULL, "", NULL);
	pm_row_key(sha, &a, ka);
	pm_row_key(sha, &b, kb);
	CHECK(strcmp(ka, kb) != 0); /* fields do not shift into each other */
	pm_ctx_set_row(&a, "Mug", NULL, "not json {");
	CHECK(a.currency == NULL && a.brand == NULL && a.row_attrs == NULL);
	pm_item_ctx_clear(&a);
	pm_item_ctx_clear(&b);
}

/* ---- the stage, through the pipeline API ---- */

static void test_stage(void)
{
	char dir[] = "/tmp/pm-compose-stage-XXXXXX", json[4096], p[4200];
	pm_pipeline *pipe = NULL;
	pm_pipeline_run *run = NULL;
	pm_err e = {{0}};
	pm_item_ctx ctx = {0};
	VipsImage *im = product(900, 600, false);
	json_t *ads;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(p, sizeof p, "%s/a", dir);
	CHECK_INT(pm_mkdirs(p, &e), PM_OK);
	snprintf(json, sizeof json,
		 "{\"stages\":[{\"stage\":\"compose\",\"template_dir\":\"%s\","
		 "\"formats\":[\"jpeg\",\"webp\"],\"quality\":80}]}",
		 tpl_dir);
	CHECK_INT(pm_pipeline_parse(json, &pipe, &e), PM_OK);
	if (!pipe) {
		fprintf(stderr, "pipeline: %s\n", e.msg);
		return;
	}
	CHECK(pm_pipeline_uses_row(pipe));
	CHECK_INT(pm_pipeline_decode_size(pipe), 990); /* story's box */
	CHECK(strstr(pm_pipeline_canonical(pipe), "digests") != NULL);
	CHECK_INT(pm_pipeline_run_new(pipe, &run, &e), PM_OK);
	ctx.image = im;
	ctx.out_root = dir;
	ctx.asset_dir = "a";
	CHECK_INT(pm_outstore_local_open(dir, dir, &ctx.outs, &e), PM_OK);
	ctx.sha256 = "00";
	pm_ctx_set_row(&ctx, "Stoneware mug 350 ml", "12.99 EUR",
		       "{\"brand\":\"Acme\"}");
	if (run) {
		CHECK_INT(pm_pipeline_run_item(run, &ctx, &e), PM_OK);
		CHECK_INT(ctx.n_outputs, 6);
		for (int i = 0; i < ctx.n_outputs; i++) {
			VipsImage *o;
			snprintf(p, sizeof p, "%s/%s", dir,
				 ctx.outputs[i].path);
			o = vips_image_new_from_file(p, NULL);
			CHECK(o != NULL);
			if (!o)
				continue;
			CHECK_INT(vips_image_get_width(o),
				  ctx.outputs[i].width);
			CHECK_INT(vips_image_get_height(o),
				  ctx.outputs[i].height);
			g_object_unref(o);
		}
		/* every template of the folder, by name: landscape, square,
		 * story; each in both formats */
		CHECK_STR(ctx.out_names[0], "ad-1200x628.jpg");
		CHECK_STR(ctx.out_names[1], "ad-1200x628.webp");
		CHECK_STR(ctx.out_names[2], "ad-1080x1080.jpg");
		CHECK_STR(ctx.out_names[5], "ad-1080x1920.webp");
		ads = json_object_get(ctx.meta, "ads");
		CHECK_STR(json_string_value(json_object_get(ads, "product")),
			  "image");
		CHECK(json_string_value(
			  json_object_get(ads, "product_reason")) != NULL);
		/* "12.99 EUR": the currency came from the price */
		{
			char want[64];
			pm_price_format("12.99", "EUR", "en_US", want,
					sizeof want, &e);
			CHECK_STR(json_string_value(json_object_get(
				      json_object_get(
					  json_object_get(
					      json_object_get(ads, "templates"),
					      "square"),
					  "price"),
				      "text")),
				  want);
		}
		/* a bad price fails the item with a catalog error */
		pm_item_ctx_clear(&ctx);
		pm_ctx_set_row(&ctx, "Mug", "-3", NULL);
		CHECK_INT(pm_pipeline_run_item(run, &ctx, &e), PM_ERR_CATALOG);
		pm_item_ctx_clear(&ctx);
	}
	pm_outstore_close(ctx.outs);
	pm_pipeline_run_free(run);
	pm_pipeline_free(pipe);
	/* params are checked when the pipeline loads */
	{
		static const char *const badp[] = {
		    "{\"stages\":[{\"stage\":\"compose\",\"bogus\":1}]}",
		    "{\"stages\":[{\"stage\":\"compose\",\"templates\":[]}]}",
		    "{\"stages\":[{\"stage\":\"compose\",\"templates\":"
		    "[\"no-such-template\"]}]}",
		    "{\"stages\":[{\"stage\":\"compose\",\"templates\":"
		    "[\"a b\"]}]}",
		    "{\"stages\":[{\"stage\":\"compose\",\"formats\":"
		    "[\"avif\"]}]}",
		    "{\"stages\":[{\"stage\":\"compose\",\"quality\":0}]}",
		    "{\"stages\":[{\"stage\":\"compose\",\"product\":\"x\"}]}",
		};
		for (size_t i = 0; i < sizeof badp / sizeof *badp; i++) {
			pm_pipeline *q = NULL;
			CHECK_INT(pm_pipeline_parse(badp[i], &q, &e),
				  PM_ERR_PIPELINE);
			CHECK(q == NULL);
		}
	}
	/* the built-in ads pipeline: cutout (fast), then compose */
	CHECK_INT(pm_pipeline_load("ads", &pipe, &e), PM_OK);
	if (pipe) {
		CHECK(strstr(pm_pipeline_canonical(pipe), "\"cutout\"") !=
		      NULL);
		CHECK(pm_pipeline_uses_row(pipe));
		pm_pipeline_free(pipe);
	} else
		fprintf(stderr, "ads: %s\n", e.msg);
	g_object_unref(im);
	snprintf(p, sizeof p, "rm -rf '%s'", dir);
	CHECK_INT(system(p), 0);
}

int main(int argc, char **argv)
{
	(void)argc;
	pm_image_preinit();
	if (VIPS_INIT(argv[0]))
		return 1;
	pm_image_global_init();
	find_templates();
	setenv("PIXMILL_TEMPLATES", tpl_dir, 1);
	test_price();
	test_autofit();
	test_hostile_templates();
	test_shipped_templates();
	test_font_fallback_and_images();
	test_row_key();
	test_stage();
	TEST_DONE();
}
