/* gen_cards.c — renders the OCR test cards: every recipe of
 * tests/ocr/recipes.txt laid out with libvips/Pango in four variants,
 * deterministically (same files for the same inputs and fonts):
 *   clean   — dark text on a plain paper colour (odd recipes in a small
 *             size at a low resolution, to exercise the upscale);
 *   photo   — dark text straight over a real photo from the corpus,
 *             lightened so that text stays readable but the texture shows;
 *   rotated — clean layout turned by 2 to 6 degrees either way;
 *   noisy   — Gaussian noise, a slight blur and JPEG quality 55.
 * Fonts and sizes rotate through DejaVu, Liberation and FreeFont faces.
 *
 * usage: gen_cards RECIPES_TXT PHOTO_DIR OUT_DIR
 * Writes OUT_DIR/NN-<recipe>-<variant>.png|jpg, OUT_DIR/<card>.txt (the
 * text on it) and OUT_DIR/cards.tsv (file, recipe, variant, font, pt,
 * angle). Exit status 0 on success.
 *
 * Threads: one (main). Memory: every image is unreffed before the next
 * card; buffers are freed on every path.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#define MAX_RECIPES 64
#define MAX_PHOTOS  64

typedef struct recipe {
	char id[64];
	char *text; /* malloc'd */
} recipe;

static const char *const fonts[] = {
    "DejaVu Serif",    "Liberation Sans",	"FreeSerif",
    "DejaVu Sans",     "Liberation Serif",	"FreeSans",
    "Liberation Mono", "DejaVu Sans Condensed",
};
#define N_FONTS (int)(sizeof fonts / sizeof *fonts)

static int load_recipes(const char *path, recipe *r, int max)
{
	FILE *f = fopen(path, "r");
	char line[1024];
	int n = -1;
	size_t len = 0, cap = 0;
	int in_text = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof line, f)) {
		if (strncmp(line, "=== ", 4) == 0) {
			if (n + 1 >= max)
				break;
			n++;
			snprintf(r[n].id, sizeof r[n].id, "%.40s", line + 4);
			r[n].id[strcspn(r[n].id, "\r\n")] = '\0';
			r[n].text = NULL;
			len = cap = 0;
			in_text = 1;
			continue;
		}
		if (strncmp(line, "--- truth", 9) == 0) {
			in_text = 0;
			continue;
		}
		if (n < 0 || !in_text)
			continue;
		size_t l = strlen(line);
		if (len + l + 1 > cap) {
			cap = (len + l + 1) * 2;
			char *t = realloc(r[n].text, cap);
			if (!t) {
				fclose(f);
				return -1;
			}
			r[n].text = t;
		}
		memcpy(r[n].text + len, line, l + 1);
		len += l;
	}
	fclose(f);
	/* drop trailing blank lines */
	for (int i = 0; i <= n; i++) {
		char *t = r[i].text;
		size_t l = t ? strlen(t) : 0;
		while (l > 0 && (t[l - 1] == '\n' || t[l - 1] == ' '))
			t[--l] = '\0';
	}
	return n + 1;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_photos(const char *dir, char **out, int max)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d)) != NULL && n < max) {
		const char *e = strrchr(de->d_name, '.');
		if (!e || (strcmp(e, ".jpg") && strcmp(e, ".png")))
			continue;
		size_t l = strlen(dir) + strlen(de->d_name) + 2;
		out[n] = malloc(l);
		if (!out[n])
			break;
		snprintf(out[n], l, "%s/%s", dir, de->d_name);
		n++;
	}
	closedir(d);
	qsort(out, (size_t)n, sizeof *out, cmp_str);
	return n;
}

/* Pango markup for the text: first line bold and larger; & < > escaped.
 * Caller frees. */
static char *markup(const char *text)
{
	size_t cap = strlen(text) * 6 + 128, j = 0;
	char *m = malloc(cap);
	int first = 1;

	if (!m)
		return NULL;
	j +=
	    (size_t)snprintf(m, cap, "<span size=\"x-large\" weight=\"bold\">");
	for (const char *p = text; *p; p++) {
		if (first && *p == '\n') {
			j += (size_t)snprintf(m + j, cap - j, "</span>\n");
			first = 0;
			continue;
		}
		const char *esc = *p == '&'   ? "&amp;"
				  : *p == '<' ? "&lt;"
				  : *p == '>' ? "&gt;"
					      : NULL;
		if (esc)
			j += (size_t)snprintf(m + j, cap - j, "%s", esc);
		else
			m[j++] = *p;
	}
	if (first)
		j += (size_t)snprintf(m + j, cap - j, "</span>");
	m[j] = '\0';
	return m;
}

static uint32_t rng = 2463534242u;
static double urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return (rng & 0xffffff) / (double)0x1000000;
}

static int fail(const char *what)
{
	fprintf(stderr, "gen_cards: %s: %s\n", what, vips_error_buffer());
	return -1;
}

/* One card: text in font/pt at dpi over bg (NULL: paper colour), then the
 * variant's damage; saved to path. */
static int render(const char *text, const char *font, int pt, int dpi,
		  const char *photo, double lighten, double angle, int noisy,
		  const char *path)
{
	char fontdesc[128];
	char *mk = markup(text);
	VipsImage *mask = NULL, *bg = NULL, *card = NULL, *t = NULL;
	uint8_t *mp = NULL, *bp = NULL, *cp = NULL;
	size_t len;
	int ret = -1;
	int margin = dpi / 3;

	snprintf(fontdesc, sizeof fontdesc, "%s %d", font, pt);
	if (!mk)
		return -1;
	if (vips_text(&mask, mk, "font", fontdesc, "dpi", dpi, "width", dpi * 6,
		      NULL)) {
		ret = fail("text");
		goto out;
	}
	int tw = vips_image_get_width(mask), th = vips_image_get_height(mask);
	int w = tw + 2 * margin, h = th + 2 * margin;
	mp = vips_image_write_to_memory(mask, &len);
	if (!mp)
		goto out;
	if (photo) {
		if (vips_thumbnail(photo, &bg, w, "height", h, "crop",
				   VIPS_INTERESTING_CENTRE, "size",
				   VIPS_SIZE_FORCE, NULL)) {
			ret = fail("photo");
			goto out;
		}
		if (vips_image_get_bands(bg) != 3) {
			if (vips_colourspace(bg, &t, VIPS_INTERPRETATION_sRGB,
					     NULL)) {
				ret = fail("photo colour");
				goto out;
			}
			g_object_unref(bg);
			bg = t;
			t = NULL;
		}
		if (vips_image_get_bands(bg) > 3) {
			if (vips_extract_band(bg, &t, 0, "n", 3, NULL))
				goto out;
			g_object_unref(bg);
			bg = t;
			t = NULL;
		}
		bp = vips_image_write_to_memory(bg, &len);
		if (!bp || len != (size_t)w * h * 3)
			goto out;
	}
	cp = malloc((size_t)w * h * 3);
	if (!cp)
		goto out;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *o = cp + ((size_t)y * w + x) * 3;
			double base[3] = {247, 243, 232}; /* paper */
			if (bp) {
				const uint8_t *b = bp + ((size_t)y * w + x) * 3;
				for (int c = 0; c < 3; c++)
					base[c] = 255 - (255 - b[c]) * lighten;
			}
			double m = 0;
			int mx = x - margin, my = y - margin;
			if (mx >= 0 && my >= 0 && mx < tw && my < th)
				m = mp[(size_t)my * tw + mx] / 255.0;
			double ink[3] = {28, 24, 40};
			for (int c = 0; c < 3; c++) {
				double v = base[c] * (1 - m) + ink[c] * m;
				if (noisy) {
					double g = urand() + urand() + urand() +
						   urand() - 2;
					v += g * 30;
				}
				o[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
		}
	card = vips_image_new_from_memory(cp, (size_t)w * h * 3, w, h, 3,
					  VIPS_FORMAT_UCHAR);
	if (!card)
		goto out;
	card->Type = VIPS_INTERPRETATION_sRGB;
	if (noisy) {
		if (vips_gaussblur(card, &t, 0.7, NULL))
			goto out;
		g_object_unref(card);
		card = t;
		t = NULL;
	}
	if (angle != 0) {
		double paper[3] = {247, 243, 232};
		VipsArrayDouble *bgc = vips_array_double_new(paper, 3);
		int r = vips_rotate(card, &t, angle, "background", bgc, NULL);
		vips_area_unref(VIPS_AREA(bgc));
		if (r)
			goto out;
		g_object_unref(card);
		card = t;
		t = NULL;
	}
	if (strstr(path, ".jpg")) {
		if (vips_jpegsave(card, path, "Q", noisy ? 55 : 85, NULL)) {
			ret = fail("save");
			goto out;
		}
	} else if (vips_pngsave(card, path, NULL)) {
		ret = fail("save");
		goto out;
	}
	ret = 0;
out:
	free(mk);
	g_free(mp);
	g_free(bp);
	if (card)
		g_object_unref(card);
	free(cp); /* after card: it pointed into cp */
	if (mask)
		g_object_unref(mask);
	if (bg)
		g_object_unref(bg);
	if (t)
		g_object_unref(t);
	return ret;
}

int main(int argc, char **argv)
{
	recipe r[MAX_RECIPES];
	char *photos[MAX_PHOTOS];
	int nr, np, cards = 0;
	FILE *tsv;
	char path[4096];

	if (argc != 4) {
		fprintf(stderr,
			"usage: gen_cards RECIPES_TXT PHOTO_DIR OUT_DIR\n");
		return 2;
	}
	if (VIPS_INIT(argv[0]))
		return 1;
	vips_concurrency_set(1);
	nr = load_recipes(argv[1], r, MAX_RECIPES);
	if (nr <= 0) {
		fprintf(stderr, "gen_cards: no recipes in %s\n", argv[1]);
		return 1;
	}
	np = list_photos(argv[2], photos, MAX_PHOTOS);
	if (np == 0) {
		fprintf(stderr, "gen_cards: no photos in %s\n", argv[2]);
		return 1;
	}
	snprintf(path, sizeof path, "%s/cards.tsv", argv[3]);
	tsv = fopen(path, "w");
	if (!tsv) {
		perror(path);
		return 1;
	}
	fprintf(tsv, "file\trecipe\tvariant\tfont\tpt\tangle\n");
	static const char *const variants[] = {"clean", "photo", "rotated",
					       "noisy"};
	for (int i = 0; i < nr; i++)
		for (int v = 0; v < 4; v++) {
			int k = i * 4 + v;
			const char *font = fonts[(i * 3 + v) % N_FONTS];
			int pt = 12 + (k % 4);
			int dpi = 150;
			double angle = 0, lighten = 0;
			const char *photo = NULL;
			int noisy = 0;
			if (v == 0 && i % 2) { /* small text, low resolution */
				pt = 11;
				dpi = 96;
			}
			if (v == 1) {
				photo = photos[(i * 7) % np];
				lighten = 0.40 + 0.08 * (i % 4);
			}
			if (v == 2) {
				angle = (2 + i % 5) * (i % 2 ? -1.0 : 1.0);
				if (i % 3 == 0)
					angle += 0.5;
			}
			if (v == 3)
				noisy = 1;
			char name[160];
			snprintf(name, sizeof name, "%02d-%.40s-%s.%s", k,
				 r[i].id, variants[v],
				 (v == 1 || v == 3) ? "jpg" : "png");
			snprintf(path, sizeof path, "%s/%s", argv[3], name);
			if (render(r[i].text, font, pt, dpi, photo, lighten,
				   angle, noisy, path)) {
				fprintf(stderr, "gen_cards: card %s failed\n",
					name);
				return 1;
			}
			snprintf(path, sizeof path, "%s/%s.txt", argv[3], name);
			FILE *tf = fopen(path, "w");
			if (!tf) {
				perror(path);
				return 1;
			}
			fprintf(tf, "%s\n", r[i].text);
			fclose(tf);
			fprintf(tsv, "%s\t%s\t%s\t%s\t%d\t%.1f\n", name,
				r[i].id, variants[v], font, pt, angle);
			cards++;
		}
	fclose(tsv);
	for (int i = 0; i < nr; i++)
		free(r[i].text);
	for (int i = 0; i < np; i++)
		free(photos[i]);
	printf("gen_cards: %d cards in %s\n", cards, argv[3]);
	vips_shutdown();
	return 0;
}
