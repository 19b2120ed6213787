/* recipe.c — the recipe parser (see recipe.h): recipe text, typed or from
 * OCR, to title, servings, ingredients and steps.
 *
 * It works line by line on a cleaned copy of the input: valid UTF-8 only,
 * dashes and the fraction slash folded to ASCII, runs of blanks collapsed.
 * A line is a heading ("Ingredients", "Method", "Directions"... with OCR
 * slips of one letter), a servings line, the title (the first line with
 * letters that is nothing else), an ingredient (inside an ingredients
 * section any short line; outside, a line that starts with a quantity or
 * a unit) or a step (numbered, or any line after a method heading).
 * Quantities: integers, decimals (1.5, 1,5), fractions (1/2, 1 1/2, 1-1/2),
 * vulgar fractions (½ ¼ ¾ ⅓ ⅔ ⅛..., also "1½"), ranges (2-3, 2 to 3, 2 or
 * 3), number words (one..twelve, a/an before a unit, half), and OCR's
 * habits: dropping the space in "1 1/2" ("11/2" reads as 1 1/2) and
 * reading "1½" as "1%" (before a unit it reads as 1.5).
 *
 * Everything is bounded (recipe.h); no recursion; the only allocations are
 * the cleaned copy and the JSON.
 *
 * Threads: any thread, at once; no shared state (tables are const).
 */
#include "analysis/recipe.h"

#include "core/util.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- text cleaning ---- */

/* Cleaned copy of text: valid UTF-8; CR, tab, other C0 controls and DEL
 * to space or newline; invalid bytes to '?'; en/em dashes and minus to
 * '-', fraction slash to '/', no-break space to ' '. Caller frees. */
static char *clean(const char *text, size_t len, size_t *out_len)
{
	const unsigned char *p = (const unsigned char *)text;
	char *o;
	size_t j = 0;

	if (len > PM_RECIPE_MAX_INPUT)
		len = PM_RECIPE_MAX_INPUT;
	o = malloc(len + 1);
	if (!o)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t l = pm_utf8_len(p + i, len - i);
		if (l == 0) {
			o[j++] = '?';
			i++;
			continue;
		}
		if (l == 1) {
			unsigned char c = p[i++];
			if (c == '\r')
				o[j++] = '\n';
			else if (c == '\n')
				o[j++] = '\n';
			else if (c < 0x20 || c == 0x7f)
				o[j++] = ' ';
			else
				o[j++] = (char)c;
			continue;
		}
		if (l == 3 && p[i] == 0xe2 && p[i + 1] == 0x80 &&
		    (p[i + 2] == 0x90 || p[i + 2] == 0x91 || p[i + 2] == 0x92 ||
		     p[i + 2] == 0x93 || p[i + 2] == 0x94)) {
			o[j++] = '-'; /* hyphens, figure/en/em dash */
		} else if (l == 3 && p[i] == 0xe2 && p[i + 1] == 0x88 &&
			   p[i + 2] == 0x92) {
			o[j++] = '-'; /* minus sign */
		} else if (l == 3 && p[i] == 0xe2 && p[i + 1] == 0x81 &&
			   p[i + 2] == 0x84) {
			o[j++] = '/'; /* fraction slash */
		} else if (l == 2 && p[i] == 0xc2 && p[i + 1] == 0xa0) {
			o[j++] = ' ';
		} else {
			memcpy(o + j, p + i, l);
			j += l;
		}
		i += l;
	}
	o[j] = '\0';
	*out_len = j;
	return o;
}

/* Copies at most cap-1 bytes of s[0..n) to dst, cut on a UTF-8 boundary
 * (s is valid UTF-8), NUL-terminated. */
static void copy_field(char *dst, size_t cap, const char *s, size_t n)
{
	if (cap == 0)
		return;
	if (n >= cap) {
		n = cap - 1;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* Appends ", " and s[0..n) to a notes field (bounded). */
static void add_note(char *notes, size_t cap, const char *s, size_t n)
{
	size_t have = strlen(notes);
	char tmp[PM_RECIPE_MAX_FIELD];

	while (n > 0 && (s[0] == ' ' || s[0] == ',' || s[0] == ';'))
		s++, n--;
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == ',' ||
			 s[n - 1] == ';' || s[n - 1] == '.'))
		n--;
	if (n == 0)
		return;
	if (have && have + 2 < cap) {
		notes[have++] = ',';
		notes[have++] = ' ';
		notes[have] = '\0';
	}
	if (have + 1 >= cap)
		return;
	copy_field(tmp, cap - have, s, n);
	memcpy(notes + have, tmp, strlen(tmp) + 1);
}

static bool is_space(char c)
{
	return c == ' ';
}

static bool is_alpha_byte(char c)
{
	/* ASCII letters, and any byte of a multi-byte character (letters
	 * such as é count; vulgar fractions are tested before this). */
	return isalpha((unsigned char)c) || ((unsigned char)c & 0x80);
}

static bool has_letter(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (isalpha((unsigned char)s[i]))
			return true;
	return false;
}

/* ---- quantities ---- */

static const struct {
	const char *utf8;
	double v;
} vulgar[] = {
    {"\xc2\xbd", 0.5},	       {"\xc2\xbc", 0.25},
    {"\xc2\xbe", 0.75},	       {"\xe2\x85\x93", 1.0 / 3},
    {"\xe2\x85\x94", 2.0 / 3}, {"\xe2\x85\x95", 0.2},
    {"\xe2\x85\x96", 0.4},     {"\xe2\x85\x97", 0.6},
    {"\xe2\x85\x98", 0.8},     {"\xe2\x85\x99", 1.0 / 6},
    {"\xe2\x85\x9a", 5.0 / 6}, {"\xe2\x85\x9b", 0.125},
    {"\xe2\x85\x9c", 0.375},   {"\xe2\x85\x9d", 0.625},
    {"\xe2\x85\x9e", 0.875},
};

/* A vulgar fraction at p (before end): its value and byte length. */
static size_t vulgar_at(const char *p, const char *end, double *v)
{
	for (size_t i = 0; i < sizeof vulgar / sizeof *vulgar; i++) {
		size_t l = strlen(vulgar[i].utf8);
		if ((size_t)(end - p) >= l &&
		    memcmp(p, vulgar[i].utf8, l) == 0) {
			*v = vulgar[i].v;
			return l;
		}
	}
	return 0;
}

/* Up to 7 digits at *p as an integer; advances. */
static bool digits(const char **p, const char *end, long *v)
{
	const char *q = *p;
	long x = 0;
	int n = 0;

	while (q < end && isdigit((unsigned char)*q)) {
		if (n < 7)
			x = x * 10 + (*q - '0');
		n++;
		q++;
	}
	if (n == 0)
		return false;
	*v = x;
	*p = q;
	return true;
}

/* A plain fraction a/b at *p (b != 0); advances. */
static bool fraction(const char **p, const char *end, long *a, long *b)
{
	const char *q = *p;

	if (!digits(&q, end, a) || q >= end || *q != '/')
		return false;
	q++;
	if (!digits(&q, end, b) || *b == 0)
		return false;
	*p = q;
	return true;
}

/* Tesseract's eng model reads "1½" as "1%" and "2 ½" as "2 %" (measured
 * in DejaVu Sans, Liberation Serif and FreeSans): "%" or " %" at p,
 * then a space and a unit word. *len: bytes of the "%" part. */
static bool ocr_half(const char *p, const char *end, size_t *len)
{
	const char *q = p;

	if (q < end && *q == ' ')
		q++;
	if (q >= end || *q != '%' || q + 2 >= end || q[1] != ' ')
		return false;
	const char *w = q + 2;
	size_t wl = 0;
	while (w + wl < end && isalpha((unsigned char)w[wl]))
		wl++;
	if (wl < 2 || !pm_recipe_unit(w, wl))
		return false;
	*len = (size_t)(q + 1 - p);
	return true;
}

/* One number at *p: 3, 1.5, 1,5, .5, 1/2, 11/2 (OCR for 1 1/2), ½, 1½,
 * 1 ½, 1 1/2, 1-1/2. Advances past it. */
static bool number(const char **pp, const char *end, double *out)
{
	const char *p = *pp, *q;
	double v, f;
	long a, b;
	size_t l;

	if ((l = vulgar_at(p, end, &v)) != 0) {
		*pp = p + l;
		*out = v;
		return true;
	}
	q = p;
	if (fraction(&q, end, &a, &b)) {
		if (a >= 10 && a > b &&
		    (b == 2 || b == 3 || b == 4 || b == 8) && a % 10 < b &&
		    a % 10 > 0 && a < 100)
			v = (double)(a / 10) + (double)(a % 10) / b;
		else
			v = (double)a / b;
		*pp = q;
		*out = v;
		return true;
	}
	q = p;
	if (q < end && *q == '.' && q + 1 < end &&
	    isdigit((unsigned char)q[1])) {
		a = 0;
	} else if (!digits(&q, end, &a)) {
		return false;
	}
	v = (double)a;
	/* decimal part: "1.5"; "1,5" only with 1-2 digits (not "1,000") */
	if (q + 1 < end && (*q == '.' || *q == ',') &&
	    isdigit((unsigned char)q[1])) {
		const char *d = q + 1;
		long frac;
		const char *ds = d;
		digits(&d, end, &frac);
		size_t nd = (size_t)(d - ds);
		if (*q == '.' || nd <= 2) {
			double scale = 1;
			for (size_t i = 0; i < nd && i < 7; i++)
				scale *= 10;
			v += frac / scale;
			q = d;
		}
	}
	/* attached vulgar fraction: 1½; and OCR's reading of it, "1%" or
	 * "1 %", taken only before a unit ("50% cocoa" stays out) */
	if (ocr_half(q, end, &l)) {
		v += 0.5;
		q += l;
	} else if ((l = vulgar_at(q, end, &f)) != 0) {
		v += f;
		q += l;
	} else if (q + 1 < end && (*q == ' ' || *q == '-')) {
		/* mixed number: 1 1/2, 1-1/2, 1 ½ */
		const char *r = q + 1;
		long c, d;
		if ((l = vulgar_at(r, end, &f)) != 0 && *q == ' ') {
			v += f;
			q = r + l;
		} else if (fraction(&r, end, &c, &d) && c < d) {
			v += (double)c / d;
			q = r;
		}
	}
	*pp = q;
	*out = v;
	return true;
}

static const char *const num_words[] = {
    "one",   "two",   "three", "four", "five",	 "six",
    "seven", "eight", "nine",  "ten",  "eleven", "twelve",
};

/* Length of the word (letters, apostrophes, inner dots and hyphens) at
 * p. */
static size_t word_len(const char *p, const char *end)
{
	const char *q = p;

	while (q < end && (is_alpha_byte(*q) || *q == '\'' ||
			   (*q == '.' && q > p && q + 1 < end &&
			    isalpha((unsigned char)q[1])) ||
			   (*q == '-' && q > p && q + 1 < end &&
			    isalpha((unsigned char)q[1]))))
		q++;
	return (size_t)(q - p);
}

/* ---- units ---- */

static const struct {
	const char *canon;
	const char *forms; /* space-separated, lower case, singular */
} units[] = {
    {"g", "g gr grm gram gramme"},
    {"kg", "kg kilo kilogram kilogramme kgs"},
    {"mg", "mg milligram milligramme"},
    {"ml", "ml millilitre milliliter mls mi"}, /* mi: OCR for ml */
    {"l", "l litre liter ltr lt"},
    {"dl", "dl decilitre deciliter"},
    {"cl", "cl centilitre centiliter"},
    {"tsp", "tsp teaspoon tsps tspn ts teasp"},
    {"tbsp", "tbsp tablespoon tbsps tbs tbl tbls tblsp tbspn tablesp"},
    {"cup", "cup c"},
    {"fl oz", "floz"},
    {"oz", "oz ounce ozs"},
    {"lb", "lb pound lbs"},
    {"pint", "pint pt"},
    {"quart", "quart qt"},
    {"gallon", "gallon gal"},
    {"pinch", "pinch pinche"},
    {"dash", "dash dashe"},
    {"drop", "drop"},
    {"clove", "clove"},
    {"can", "can tin"},
    {"jar", "jar"},
    {"slice", "slice"},
    {"piece", "piece pc pcs"},
    {"stick", "stick"},
    {"bunch", "bunch bunche"},
    {"sprig", "sprig"},
    {"handful", "handful"},
    {"package", "package packet pkg pack"},
    {"sheet", "sheet"},
    {"head", "head"},
    {"stalk", "stalk"},
    {"leaf", "leaf leave"},
    {"knob", "knob"},
    {"cm", "cm centimetre centimeter"},
    {"inch", "inch inche in"},
};

static const char *unit_lookup(const char *w)
{
	size_t n = strlen(w);

	for (size_t i = 0; i < sizeof units / sizeof *units; i++) {
		const char *f = units[i].forms;
		while (*f) {
			size_t l = strcspn(f, " ");
			if (l == n && memcmp(f, w, n) == 0)
				return units[i].canon;
			f += l;
			while (*f == ' ')
				f++;
		}
	}
	return NULL;
}

const char *pm_recipe_unit(const char *word, size_t len)
{
	char w[32];
	const char *u;

	while (len > 0 && word[len - 1] == '.')
		len--;
	if (len == 0 || len >= sizeof w)
		return NULL;
	/* The case-sensitive classics: T = tablespoon, t = teaspoon. */
	if (len == 1 && word[0] == 'T')
		return "tbsp";
	if (len == 1 && word[0] == 't')
		return "tsp";
	if (len == 3 && memcmp(word, "Tsp", 3) == 0)
		return "tsp";
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)word[i] >= 0x80)
			return NULL;
		w[i] = (char)tolower((unsigned char)word[i]);
	}
	w[len] = '\0';
	/* "fl. oz" arrives here as "fl.oz" or "floz" */
	if (strcmp(w, "fl.oz") == 0)
		return "fl oz";
	if ((u = unit_lookup(w)) != NULL)
		return u;
	if (len > 2 && w[len - 1] == 's') {
		w[len - 1] = '\0';
		if ((u = unit_lookup(w)) != NULL)
			return u;
		if (len > 3 && w[len - 2] == 'e') {
			w[len - 2] = '\0';
			if ((u = unit_lookup(w)) != NULL)
				return u;
		}
	}
	return NULL;
}

static bool word_is(const char *p, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(p, w, n) == 0;
}

static bool size_word(const char *p, size_t n)
{
	static const char *const sz[] = {
	    "small",	"medium",  "large",   "big",   "extra-large",
	    "jumbo",	"heaped",  "heaping", "level", "scant",
	    "generous", "rounded", "good",
	};
	for (size_t i = 0; i < sizeof sz / sizeof *sz; i++)
		if (word_is(p, n, sz[i]))
			return true;
	return false;
}

/* ---- ingredients ---- */

static const char *skip_sp(const char *p, const char *end)
{
	while (p < end && is_space(*p))
		p++;
	return p;
}

/* Strips list bullets and OCR's renderings of them at the start. */
static const char *skip_bullet(const char *p, const char *end)
{
	for (int k = 0; k < 3; k++) {
		p = skip_sp(p, end);
		if (p >= end)
			break;
		/* '|' is kept: OCR reads a lone "1" as '|' (see quantity) */
		if (*p == '-' || *p == '*' || *p == '+' || *p == '~' ||
		    *p == '>' || *p == '_' || *p == '=') {
			p++;
			continue;
		}
		if (end - p >= 3 && (unsigned char)p[0] == 0xe2 &&
		    (unsigned char)p[1] == 0x80 &&
		    ((unsigned char)p[2] == 0xa2 ||
		     (unsigned char)p[2] == 0xa3)) { /* • ‣ */
			p += 3;
			continue;
		}
		if (end - p >= 3 && (unsigned char)p[0] == 0xe2 &&
		    (unsigned char)p[1] == 0x96 &&
		    ((unsigned char)p[2] == 0xaa ||
		     (unsigned char)p[2] == 0xa0)) { /* ▪ ■ */
			p += 3;
			continue;
		}
		if (end - p >= 2 && (unsigned char)p[0] == 0xc2 &&
		    ((unsigned char)p[1] == 0xb7 ||
		     (unsigned char)p[1] == 0xab ||
		     (unsigned char)p[1] == 0xb0)) { /* · « ° */
			p += 2;
			continue;
		}
		/* "e " or "o " as a bullet, only before a number */
		if (end - p >= 3 && (*p == 'e' || *p == 'o' || *p == '.') &&
		    p[1] == ' ' &&
		    (isdigit((unsigned char)p[2]) ||
		     vulgar_at(p + 2, end, &(double){0}))) {
			p += 2;
			continue;
		}
		break;
	}
	return skip_sp(p, end);
}

/* A quantity with an optional range at *p; advances. */
static bool quantity(const char **pp, const char *end, double *lo, double *hi)
{
	const char *p = *pp, *q;
	double a, b;
	size_t wl;

	*hi = 0;
	if (number(&p, end, &a)) {
		/* range: 2-3, 2 - 3, 2 to 3, 2 or 3 */
		q = skip_sp(p, end);
		if (q < end && *q == '-')
			q = skip_sp(q + 1, end);
		else if (end - q > 3 && (strncasecmp(q, "to ", 3) == 0 ||
					 strncasecmp(q, "or ", 3) == 0))
			q = skip_sp(q + 3, end);
		else
			q = NULL;
		if (q && number(&q, end, &b) && b > a) {
			*hi = b;
			p = q;
		}
		*lo = a;
		*pp = p;
		return true;
	}
	wl = word_len(p, end);
	for (size_t i = 0; i < sizeof num_words / sizeof *num_words; i++)
		if (word_is(p, wl, num_words[i])) {
			*lo = (double)(i + 1);
			*pp = p + wl;
			return true;
		}
	if (word_is(p, wl, "half")) {
		q = skip_sp(p + wl, end);
		size_t l2 = word_len(q, end);
		if (word_is(q, l2, "a") || word_is(q, l2, "an"))
			q += l2;
		*lo = 0.5;
		*pp = q;
		return true;
	}
	/* OCR reads a lone "1" as '|' or ']' */
	if (p < end && (*p == '|' || *p == ']')) {
		q = p + 1;
		if (q == end ||
		    (*q == ' ' && q + 1 < end && is_alpha_byte(q[1]))) {
			*lo = 1;
			*pp = q;
			return true;
		}
		return false;
	}
	/* "a pinch", "an 8 oz can": a/an count as 1 only before a unit or a
	 * size word; OCR's "l"/"I" for 1 only before a unit. */
	if (word_is(p, wl, "a") || word_is(p, wl, "an") ||
	    word_is(p, wl, "l") || word_is(p, wl, "I")) {
		size_t skip = wl;
		q = skip_sp(p + skip, end);
		size_t l2 = word_len(q, end);
		bool is_a = wl && tolower((unsigned char)p[0]) == 'a';
		if (l2 &&
		    (pm_recipe_unit(q, l2) || (is_a && size_word(q, l2)))) {
			*lo = 1;
			*pp = p + skip;
			return true;
		}
	}
	return false;
}

/* Tails that are notes, not part of the name. */
static const char *const note_tails[] = {
    "to taste",	  "for serving",  "for garnish", "to garnish", "for dusting",
    "for frying", "for greasing", "to serve",	 "as needed",  "if needed",
    "optional",	  "or to taste",  "plus extra",	 "plus more",
};

static bool trim_tail(const char *name, size_t *n, char *notes, size_t cap)
{
	for (size_t i = 0; i < sizeof note_tails / sizeof *note_tails; i++) {
		size_t l = strlen(note_tails[i]);
		if (*n > l &&
		    strncasecmp(name + *n - l, note_tails[i], l) == 0 &&
		    name[*n - l - 1] == ' ') {
			/* "salt and pepper, to taste" was split at the comma
			 * already; here the tail has no comma. Look back for
			 * "plus extra for serving": take from "plus". */
			size_t start = *n - l;
			add_note(notes, cap, name + start, *n - start);
			*n = start;
			while (*n > 0 &&
			       (name[*n - 1] == ' ' || name[*n - 1] == ','))
				(*n)--;
			return true;
		}
	}
	return false;
}

/* ingredient() on a cleaned line (see clean()). */
static bool ingredient(const char *line, size_t len, bool loose,
		       pm_ingredient *out)
{
	const char *p, *end, *q;
	char name[PM_RECIPE_MAX_FIELD];
	size_t nn = 0;

	memset(out, 0, sizeof *out);
	if (len > PM_RECIPE_MAX_INPUT)
		len = PM_RECIPE_MAX_INPUT;
	p = line;
	end = line + len;
	/* callers hand in cleaned text; a line from elsewhere may not be:
	 * stop at the first NUL or newline. */
	q = memchr(p, '\0', len);
	if (q)
		end = q;
	q = memchr(p, '\n', (size_t)(end - p));
	if (q)
		end = q;
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	p = skip_bullet(p, end);
	if (p >= end || end - p > 160)
		return false;

	out->has_qty = quantity(&p, end, &out->qty, &out->qty_max);
	if (out->has_qty && p < end && (*p == '.' || *p == ')') &&
	    (p + 1 >= end || p[1] == ' '))
		return false; /* "1. Whisk" / "2) Stir": a numbered step */
	if (out->has_qty && p < end && (*p == '%' || *p == ':' || *p == '/'))
		return false; /* "50% cocoa", "12:30", "1/0" */
	/* words after the quantity: parentheticals, size words, one unit */
	for (int k = 0; k < 6 && p < end; k++) {
		const char *w = skip_sp(p, end);
		if (w < end && *w == '(') {
			const char *c = memchr(w, ')', (size_t)(end - w));
			if (!c)
				break;
			add_note(out->notes, sizeof out->notes, w + 1,
				 (size_t)(c - w - 1));
			p = c + 1;
			continue;
		}
		size_t wl = word_len(w, end);
		if (wl == 0)
			break;
		/* "fl oz", "fl. oz", "fluid ounces" */
		if (!out->unit[0] &&
		    (word_is(w, wl, "fl") || word_is(w, wl, "fl.") ||
		     word_is(w, wl, "fluid"))) {
			const char *w2 = skip_sp(w + wl, end);
			if (w2 < end && *w2 == '.')
				w2 = skip_sp(w2 + 1, end);
			size_t l2 = word_len(w2, end);
			const char *u2 = pm_recipe_unit(w2, l2);
			if (u2 && strcmp(u2, "oz") == 0) {
				snprintf(out->unit, sizeof out->unit, "fl oz");
				p = w2 + l2;
				if (p < end && *p == '.')
					p++;
				continue;
			}
		}
		const char *u = out->unit[0] ? NULL : pm_recipe_unit(w, wl);
		/* a bare single-letter unit (c, t, T, l, g) only right after
		 * a quantity */
		if (u && wl == 1 && !out->has_qty)
			u = NULL;
		if (u && out->has_qty) {
			snprintf(out->unit, sizeof out->unit, "%s", u);
			p = w + wl;
			if (p < end && *p == '.')
				p++;
			continue;
		}
		if (u && !out->has_qty && k == 0 &&
		    (strcmp(u, "pinch") == 0 || strcmp(u, "dash") == 0 ||
		     strcmp(u, "handful") == 0 || strcmp(u, "sprig") == 0 ||
		     strcmp(u, "bunch") == 0 || strcmp(u, "knob") == 0)) {
			/* "pinch of salt" */
			snprintf(out->unit, sizeof out->unit, "%s", u);
			p = w + wl;
			continue;
		}
		if (size_word(w, wl) && (out->has_qty || out->unit[0])) {
			add_note(out->notes, sizeof out->notes, w, wl);
			p = w + wl;
			continue;
		}
		break;
	}
	p = skip_sp(p, end);
	if (end - p > 3 && strncasecmp(p, "of ", 3) == 0 &&
	    (out->unit[0] || out->has_qty))
		p += 3;
	/* name up to the first comma outside parentheses; parentheticals
	 * and the rest go to notes */
	q = p;
	while (q < end) {
		if (*q == '(') {
			const char *c = memchr(q, ')', (size_t)(end - q));
			if (!c)
				c = end;
			add_note(out->notes, sizeof out->notes, q + 1,
				 (size_t)(c - q - 1));
			q = c < end ? c + 1 : end;
			continue;
		}
		if (*q == ',' || *q == ';')
			break;
		if (nn + 1 < sizeof name)
			name[nn++] = *q;
		q++;
	}
	if (q < end)
		add_note(out->notes, sizeof out->notes, q + 1,
			 (size_t)(end - q - 1));
	/* tidy the name: spaces, stray punctuation, note tails */
	size_t s0 = 0;
	while (s0 < nn && (name[s0] == ' ' || name[s0] == '-' ||
			   name[s0] == ':' || name[s0] == '.'))
		s0++;
	while (nn > s0 && (name[nn - 1] == ' ' || name[nn - 1] == '.' ||
			   name[nn - 1] == '-' || name[nn - 1] == ':' ||
			   name[nn - 1] == '*'))
		nn--;
	size_t n = nn - s0;
	char *nm = name + s0;
	char tail[PM_RECIPE_MAX_FIELD] = "";
	if (trim_tail(nm, &n, tail, sizeof tail)) {
		/* the tail goes first: it was written before the comma part */
		char rest[PM_RECIPE_MAX_FIELD];
		snprintf(rest, sizeof rest, "%s", out->notes);
		out->notes[0] = '\0';
		add_note(out->notes, sizeof out->notes, tail, strlen(tail));
		add_note(out->notes, sizeof out->notes, rest, strlen(rest));
	}
	/* collapse doubled spaces left by removed parentheticals */
	size_t j = 0;
	for (size_t i = 0; i < n; i++)
		if (!(nm[i] == ' ' && (j == 0 || out->name[j - 1] == ' ')) &&
		    j + 1 < sizeof out->name)
			out->name[j++] = nm[i];
	while (j > 0 && out->name[j - 1] == ' ')
		j--;
	/* keep the name on a UTF-8 boundary */
	while (j > 0 && ((unsigned char)out->name[j - 1] & 0xc0) == 0xc0)
		j--;
	out->name[j] = '\0';
	if (!has_letter(out->name, j))
		return false;
	if (out->has_qty || out->unit[0])
		return true;
	if (!loose)
		return false;
	/* loose: a short line of a few words, not a sub-heading */
	int words = 1;
	for (size_t i = 0; i < j; i++)
		words += out->name[i] == ' ';
	if (len > 0 && line[len - 1] == ':')
		return false;
	return words <= 8 && end - line <= 80;
}

bool pm_recipe_ingredient(const char *line, size_t len, bool loose,
			  pm_ingredient *out)
{
	size_t cl;
	char *c;
	bool r;

	memset(out, 0, sizeof *out);
	if (!line)
		return false;
	c = clean(line, len > 4096 ? 4096 : len, &cl);
	if (!c)
		return false;
	r = ingredient(c, cl, loose, out);
	free(c);
	return r;
}

/* ---- servings, headings, steps ---- */

bool pm_recipe_servings(const char *line, size_t len, double *lo, double *hi)
{
	static const char *const pre[] = {
	    "serves", "serving",  "servings", "yield", "yields",
	    "makes",  "portions", "feeds",    "for",   "portion",
	    "serve",  "quantity", "amount",
	};
	static const char *const post[] = {
	    "servings", "serving", "portions", "people", "persons", "serves",
	};
	const char *p, *end = line + (len > 200 ? 200 : len);
	size_t wl;

	p = skip_sp(line, end);
	if (end - p > 80)
		return false;
	wl = word_len(p, end);
	for (size_t i = 0; i < sizeof pre / sizeof *pre; i++) {
		if (!word_is(p, wl, pre[i]))
			continue;
		const char *q = p + wl;
		while (q < end &&
		       (*q == ' ' || *q == ':' || *q == '-' || *q == '.'))
			q++;
		size_t l2 = word_len(q, end);
		if (word_is(q, l2, "about") || word_is(q, l2, "approx") ||
		    word_is(q, l2, "approximately") || word_is(q, l2, "up"))
			q = skip_sp(q + l2, end);
		l2 = word_len(q, end);
		if (word_is(q, l2, "to"))
			q = skip_sp(q + l2, end);
		if (quantity(&q, end, lo, hi) && *lo > 0 && *lo < 1000) {
			if (*hi == 0)
				*hi = *lo;
			/* "for 4" needs a servings-like word or nothing after
			 */
			if (i == 8) {
				const char *r = skip_sp(q, end);
				size_t l3 = word_len(r, end);
				if (r < end && !word_is(r, l3, "people") &&
				    !word_is(r, l3, "persons") &&
				    !word_is(r, l3, "servings"))
					return false;
			}
			return true;
		}
		return false;
	}
	const char *q = p;
	if (quantity(&q, end, lo, hi) && *lo > 0 && *lo < 1000) {
		q = skip_sp(q, end);
		size_t l2 = word_len(q, end);
		for (size_t i = 0; i < sizeof post / sizeof *post; i++)
			if (word_is(q, l2, post[i])) {
				if (*hi == 0)
					*hi = *lo;
				return true;
			}
	}
	return false;
}

/* Edit distance of two short lowercase strings, capped at 3. */
static int small_dist(const char *a, size_t na, const char *b, size_t nb)
{
	int d[24][24];

	if (na > 22 || nb > 22)
		return 3;
	for (size_t i = 0; i <= na; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= nb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= na; i++)
		for (size_t j = 1; j <= nb; j++) {
			int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			if (d[i - 1][j] + 1 < c)
				c = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < c)
				c = d[i][j - 1] + 1;
			d[i][j] = c;
		}
	return d[na][nb] > 3 ? 3 : d[na][nb];
}

enum { H_NONE, H_INGR, H_METHOD };

/* Is the line a section heading? Lower-cased, bullets and trailing ':'
 * stripped; one-letter OCR slips allowed on words of 6+ letters. */
static int heading(const char *line, size_t len)
{
	static const struct {
		const char *w;
		int kind;
	} heads[] = {
	    {"ingredients", H_INGR},	  {"ingredient", H_INGR},
	    {"you will need", H_INGR},	  {"you'll need", H_INGR},
	    {"what you need", H_INGR},	  {"shopping list", H_INGR},
	    {"method", H_METHOD},	  {"directions", H_METHOD},
	    {"instructions", H_METHOD},	  {"preparation", H_METHOD},
	    {"steps", H_METHOD},	  {"procedure", H_METHOD},
	    {"how to make it", H_METHOD}, {"how to make", H_METHOD},
	    {"to make", H_METHOD},	  {"cooking", H_METHOD},
	    {"direction", H_METHOD},	  {"instruction", H_METHOD},
	};
	char low[32];
	size_t n = 0;
	const char *p = line, *end = line + len;

	while (p < end && (*p == ' ' || *p == '#' || *p == '*' || *p == '='))
		p++;
	while (end > p && (end[-1] == ' ' || end[-1] == ':' || end[-1] == '.' ||
			   end[-1] == '*' || end[-1] == '#' || end[-1] == '-'))
		end--;
	if (end - p >= (long)sizeof low || end == p)
		return H_NONE;
	for (; p < end; p++)
		low[n++] = (char)tolower((unsigned char)*p);
	low[n] = '\0';
	for (size_t i = 0; i < sizeof heads / sizeof *heads; i++) {
		size_t l = strlen(heads[i].w);
		if (l == n && memcmp(low, heads[i].w, n) == 0)
			return heads[i].kind;
		if (l >= 6 && n + 1 >= l && n <= l + 1 &&
		    small_dist(low, n, heads[i].w, l) <= 1)
			return heads[i].kind;
	}
	return H_NONE;
}

/* "1. Whisk", "2) Stir", "Step 3: Bake", "Step 3". Returns the offset of
 * the step text, or -1. */
static long numbered(const char *line, size_t len)
{
	const char *p = line, *end = line + len;
	long v;
	size_t wl = word_len(p, end);
	bool step = false;

	if (word_is(p, wl, "step")) {
		p = skip_sp(p + wl, end);
		step = true;
	}
	if (!digits(&p, end, &v) || v > 99)
		return -1;
	if (p < end && (*p == '.' || *p == ')' || *p == ':'))
		p++;
	else if (!step)
		return -1;
	if (p < end && *p != ' ')
		return -1;
	p = skip_sp(p, end);
	if (p < end && !is_alpha_byte(*p) && !step)
		return -1;
	return (long)(p - line);
}

/* ---- the whole recipe ---- */

static json_t *jstr(const char *s, size_t n)
{
	char buf[PM_RECIPE_MAX_FIELD * 4];
	copy_field(buf, sizeof buf, s, n);
	json_t *j = json_string(buf);
	return j ? j : json_string("");
}

static json_t *ingredient_json(const char *line, size_t len,
			       const pm_ingredient *g)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "text", jstr(line, len));
	if (g->has_qty) {
		json_object_set_new(o, "qty",
				    json_real(round(g->qty * 1e4) / 1e4));
		if (g->qty_max > 0)
			json_object_set_new(
			    o, "qty_max",
			    json_real(round(g->qty_max * 1e4) / 1e4));
	} else {
		json_object_set_new(o, "qty", json_null());
	}
	json_object_set_new(o, "unit",
			    g->unit[0] ? json_string(g->unit) : json_null());
	json_object_set_new(o, "name", jstr(g->name, strlen(g->name)));
	json_object_set_new(o, "notes",
			    g->notes[0] ? jstr(g->notes, strlen(g->notes))
					: json_null());
	return o;
}

/* Step text grows as lines join; kept bounded. */
static void step_append(json_t *steps, const char *s, size_t n, bool join)
{
	char buf[4 * PM_RECIPE_MAX_FIELD + 8];
	size_t have = 0;

	if (n == 0)
		return;
	if (join && json_array_size(steps) > 0) {
		json_t *last =
		    json_array_get(steps, json_array_size(steps) - 1);
		have = strlen(json_string_value(last));
		if (have + 2 >= 4 * PM_RECIPE_MAX_FIELD)
			return;
		memcpy(buf, json_string_value(last), have);
		/* a word broken by a hyphen at the line end joins up */
		if (have > 0 && buf[have - 1] == '-')
			have--;
		else
			buf[have++] = ' ';
		copy_field(buf + have, sizeof buf - 8 - have, s, n);
		json_array_set_new(steps, json_array_size(steps) - 1,
				   json_string(buf));
		return;
	}
	if (json_array_size(steps) >= PM_RECIPE_MAX_ITEMS)
		return;
	copy_field(buf, sizeof buf - 8, s, n);
	json_array_append_new(steps, json_string(buf));
}

json_t *pm_recipe_parse(const char *text, size_t len)
{
	size_t cl;
	char *c = clean(text ? text : "", text ? len : 0, &cl);
	json_t *root, *ingr, *steps;
	json_t *title = NULL, *serv = NULL;
	int section = H_NONE, lines = 0;
	bool in_step = false, steps_numbered = false;
	char line[PM_RECIPE_MAX_FIELD * 2];

	if (!c)
		return NULL;
	root = json_object();
	ingr = json_array();
	steps = json_array();
	if (!root || !ingr || !steps) {
		json_decref(root);
		json_decref(ingr);
		json_decref(steps);
		free(c);
		return NULL;
	}
	for (char *p = c; p < c + cl && lines < PM_RECIPE_MAX_LINES;) {
		char *nl = memchr(p, '\n', (size_t)(c + cl - p));
		char *e = nl ? nl : c + cl;
		size_t n = 0;
		lines++;
		/* collapse blanks; cut very long lines on a UTF-8 boundary */
		for (char *q = p; q < e; q++) {
			if (*q == ' ' && (n == 0 || line[n - 1] == ' '))
				continue;
			if (n + 1 >= sizeof line)
				break;
			line[n++] = *q;
		}
		while (n > 0 && line[n - 1] == ' ')
			n--;
		while (n > 0 && ((unsigned char)line[n - 1] & 0xc0) == 0xc0)
			n--;
		line[n] = '\0';
		p = nl ? nl + 1 : e;

		if (n == 0) {
			if (!steps_numbered)
				in_step = false;
			continue;
		}
		int h = heading(line, n);
		if (h != H_NONE) {
			section = h;
			in_step = false;
			continue;
		}
		double lo, hi;
		if (!serv && section != H_METHOD &&
		    pm_recipe_servings(line, n, &lo, &hi)) {
			serv = json_pack("{s:f,s:f}", "min", lo, "max", hi);
			continue;
		}
		pm_ingredient g;
		long so = numbered(line, n);
		if (!title && section == H_NONE && json_array_size(ingr) == 0 &&
		    json_array_size(steps) == 0 && so < 0 &&
		    has_letter(line, n) && !ingredient(line, n, false, &g)) {
			title = jstr(line, n);
			continue;
		}
		if (section == H_METHOD) {
			if (so >= 0) {
				steps_numbered = true;
				step_append(steps, line + so, n - (size_t)so,
					    false);
				in_step = true;
			} else {
				/* unnumbered: a new step after a blank line
				 * or a finished sentence starting a new one */
				bool join = in_step;
				if (!steps_numbered && in_step &&
				    json_array_size(steps) > 0) {
					const char *last =
					    json_string_value(json_array_get(
						steps,
						json_array_size(steps) - 1));
					size_t ll = strlen(last);
					char lc = ll ? last[ll - 1] : ' ';
					if ((lc == '.' || lc == '!' ||
					     lc == '?') &&
					    isupper((unsigned char)line[0]))
						join = false;
				}
				if (has_letter(line, n))
					step_append(steps, line, n, join);
				in_step = true;
			}
			continue;
		}
		bool loose = section == H_INGR;
		if (so < 0 && json_array_size(ingr) < PM_RECIPE_MAX_ITEMS &&
		    ingredient(line, n, loose, &g)) {
			json_t *o = ingredient_json(line, n, &g);
			if (o)
				json_array_append_new(ingr, o);
			continue;
		}
		if (so >= 0) { /* numbered steps without a heading */
			section = H_METHOD;
			steps_numbered = true;
			step_append(steps, line + so, n - (size_t)so, false);
			in_step = true;
		}
	}
	free(c);
	json_object_set_new(root, "title", title ? title : json_null());
	json_object_set_new(root, "servings", serv ? serv : json_null());
	json_object_set_new(root, "ingredients", ingr);
	json_object_set_new(root, "steps", steps);
	return root;
}
