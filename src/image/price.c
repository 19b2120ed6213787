/* price.c — formats a catalog price for a currency and locale from a small
 * built-in table (CLDR-style patterns), so ads never depend on which C
 * locales a machine has installed.
 *
 * Threads: any thread; pure (reads constant tables, writes the caller's
 * buffers).
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "image/template.h"

#define NBSP  "\xc2\xa0"     /* U+00A0 no-break space */
#define NNBSP "\xe2\x80\xaf" /* U+202F narrow no-break space */

typedef struct cur_info {
	const char *code, *symbol; /* symbol used abroad */
	int decimals;
} cur_info;

static const cur_info currencies[] = {
    {"EUR", "\xe2\x82\xac", 2}, /* € */
    {"USD", "$", 2},
    {"GBP", "\xc2\xa3", 2}, /* £ */
    {"JPY", "\xc2\xa5", 0}, /* ¥ */
    {"CHF", "CHF", 2},
    {"SEK", "SEK", 2},
    {"NOK", "NOK", 2},
    {"DKK", "DKK", 2},
    {"PLN", "PLN", 2},
    {"CZK", "CZK", 2},
    {"CAD", "CA$", 2},
    {"AUD", "A$", 2},
    {"CNY", "CN\xc2\xa5", 2},
    {"INR", "\xe2\x82\xb9", 2}, /* ₹ */
    {"BRL", "R$", 2},
};

typedef struct loc_info {
	const char *name;
	const char *decimal, *group;
	int min_group;	 /* digits before grouping starts: 1 (1,234) or 2
			    (1234 but 12.345) */
	bool sym_before; /* currency symbol before the number */
	bool space;	 /* a no-break space between symbol and number */
} loc_info;

static const loc_info locales[] = {
    {"en_US", ".", ",", 1, true, false},
    {"en_GB", ".", ",", 1, true, false},
    {"en_IE", ".", ",", 1, true, false},
    {"en_CA", ".", ",", 1, true, false},
    {"en_AU", ".", ",", 1, true, false},
    {"en_IN", ".", ",", 1, true, false},
    {"zh_CN", ".", ",", 1, true, false},
    {"ja_JP", ".", ",", 1, true, false},
    {"de_DE", ",", ".", 1, false, true},
    {"de_AT", ",", ".", 1, true, true},
    {"de_CH", ".", "\xe2\x80\x99", 1, true, true}, /* 1’234.50 */
    {"fr_FR", ",", NNBSP, 1, false, true},
    {"fr_CH", ",", NNBSP, 1, false, true},
    {"fr_CA", ",", NBSP, 1, false, true},
    {"it_IT", ",", ".", 1, false, true},
    {"es_ES", ",", ".", 2, false, true},
    {"nl_NL", ",", ".", 1, true, true},
    {"pt_BR", ",", ".", 1, true, true},
    {"sv_SE", ",", NBSP, 1, false, true},
    {"nb_NO", ",", NBSP, 1, false, true},
    {"da_DK", ",", ".", 1, false, true},
    {"pl_PL", ",", NBSP, 2, false, true},
    {"cs_CZ", ",", NBSP, 1, false, true},
};

/* The symbol a currency has in its home locale(s). */
static const struct {
	const char *locale, *code, *symbol;
} home[] = {
    {"ja_JP", "JPY", "\xef\xbf\xa5"}, /* ￥ fullwidth */
    {"zh_CN", "CNY", "\xc2\xa5"},
    {"sv_SE", "SEK", "kr"},
    {"nb_NO", "NOK", "kr"},
    {"da_DK", "DKK", "kr."},
    {"pl_PL", "PLN", "z\xc5\x82"}, /* zł */
    {"cs_CZ", "CZK", "K\xc4\x8d"}, /* Kč */
    {"en_CA", "CAD", "$"},
    {"fr_CA", "CAD", "$"},
    {"en_AU", "AUD", "$"},
    {"en_CA", "USD", "US$"},
    {"fr_CA", "USD", "US$"},
    {"en_AU", "USD", "US$"},
};

static const cur_info *find_cur(const char *code)
{
	for (size_t i = 0; code && i < sizeof currencies / sizeof *currencies;
	     i++)
		if (strcmp(currencies[i].code, code) == 0)
			return &currencies[i];
	return NULL;
}

static const loc_info *find_loc(const char *name)
{
	if (!name || !*name)
		name = "en_US";
	for (size_t i = 0; i < sizeof locales / sizeof *locales; i++)
		if (strcmp(locales[i].name, name) == 0)
			return &locales[i];
	return NULL;
}

bool pm_price_currency_known(const char *currency)
{
	return find_cur(currency) != NULL;
}

bool pm_price_locale_known(const char *locale)
{
	return find_loc(locale) != NULL;
}

/* Parses amount into integer digits and fraction digits (both without
 * separators). Returns false on anything that is not a plain non-negative
 * decimal number (see pm_price_format). */
static bool split_amount(const char *s, char *ip, size_t ip_sz, char *fp,
			 size_t fp_sz)
{
	size_t n, a = 0, b, ni = 0, nf = 0;
	const char *dec = NULL;
	int dots = 0, commas = 0;
	char group_ch = 0;

	n = strlen(s);
	while (a < n && s[a] == ' ')
		a++;
	b = n;
	while (b > a && s[b - 1] == ' ')
		b--;
	if (a == b || b - a > 64)
		return false;
	for (size_t i = a; i < b; i++) {
		if (s[i] == '.')
			dots++;
		else if (s[i] == ',')
			commas++;
		else if (!isdigit((unsigned char)s[i]))
			return false; /* signs, letters, spaces inside */
	}
	if (dots > 1)
		return false;
	if (dots == 1) {
		dec = memchr(s + a, '.', b - a);
		group_ch = ',';
	} else if (commas == 1) {
		const char *c = memchr(s + a, ',', b - a);
		size_t after = (size_t)(s + b - c - 1);
		if (after == 1 || after == 2)
			dec = c; /* "19,99" */
		else
			group_ch = ','; /* "1,234" */
	} else if (commas > 1)
		group_ch = ',';
	/* Integer part: digits, with group separators every 3 digits. */
	{
		const char *end = dec ? dec : s + b;
		size_t run = 0, groups = 0;
		bool first = true;
		if (end == s + a)
			return false; /* ".5" */
		for (const char *p = s + a; p < end; p++) {
			if (*p == group_ch) {
				if (run == 0 || (!first && run != 3) ||
				    (first && run > 3))
					return false;
				first = false;
				run = 0;
				groups++;
				continue;
			}
			if (ni + 1 >= ip_sz)
				return false;
			ip[ni++] = *p;
			run++;
		}
		if (groups && run != 3)
			return false;
	}
	ip[ni] = '\0';
	if (dec) {
		for (const char *p = dec + 1; p < s + b; p++) {
			if (!isdigit((unsigned char)*p) || nf + 1 >= fp_sz)
				return false;
			fp[nf++] = *p;
		}
		if (nf == 0)
			return false; /* "12." */
	}
	fp[nf] = '\0';
	return true;
}

pm_status pm_price_format(const char *amount, const char *currency,
			  const char *locale, char *out, size_t out_sz,
			  pm_err *err)
{
	const cur_info *c = find_cur(currency);
	const loc_info *l = find_loc(locale);
	const char *sym;
	char ip[32], fp[16], num[128], digits[32];
	size_t nd, o = 0;
	uint64_t units = 0, scale = 1;
	int len;

	if (!c)
		return pm_fail(err, PM_ERR_CATALOG, "unknown currency \"%.8s\"",
			       currency ? currency : "");
	if (!l)
		return pm_fail(err, PM_ERR_CATALOG, "unknown locale \"%.16s\"",
			       locale);
	if (!amount || !split_amount(amount, ip, sizeof ip, fp, sizeof fp))
		return pm_fail(err, PM_ERR_CATALOG,
			       "price \"%.40s\" is not a non-negative number",
			       amount ? amount : "");
	/* strip leading zeros of the integer part ("007" -> "7") */
	{
		size_t z = 0;
		while (ip[z] == '0' && ip[z + 1])
			z++;
		memmove(ip, ip + z, strlen(ip + z) + 1);
	}
	if (strlen(ip) > 15 || strlen(fp) > 9)
		return pm_fail(err, PM_ERR_CATALOG,
			       "price \"%.40s\" has too many digits", amount);
	for (const char *p = ip; *p; p++)
		units = units * 10 + (uint64_t)(*p - '0');
	for (int i = 0; i < c->decimals; i++) {
		units = units * 10 + (uint64_t)(fp[i] ? fp[i] - '0' : 0);
		if (!fp[i])
			fp[i + 1] = '\0'; /* stay on the terminator */
		scale *= 10;
	}
	/* round half up on the first dropped digit */
	if (strlen(fp) > (size_t)c->decimals && fp[c->decimals] >= '5')
		units++;
	/* integer digits, then grouping */
	snprintf(digits, sizeof digits, "%llu",
		 (unsigned long long)(units / scale));
	nd = strlen(digits);
	for (size_t i = 0; i < nd; i++) {
		size_t left = nd - i;
		num[o++] = digits[i];
		if (left > 1 && (left - 1) % 3 == 0 &&
		    nd >= (size_t)(3 + l->min_group)) {
			size_t gl = strlen(l->group);
			memcpy(num + o, l->group, gl);
			o += gl;
		}
	}
	num[o] = '\0';
	if (c->decimals > 0) {
		snprintf(num + o, sizeof num - o, "%s%0*llu", l->decimal,
			 c->decimals, (unsigned long long)(units % scale));
	}
	sym = c->symbol;
	for (size_t i = 0; i < sizeof home / sizeof *home; i++)
		if (strcmp(home[i].locale, l->name) == 0 &&
		    strcmp(home[i].code, c->code) == 0)
			sym = home[i].symbol;
	if (l->sym_before) {
		bool sp =
		    l->space || isalpha((unsigned char)sym[strlen(sym) - 1]);
		len = snprintf(out, out_sz, "%s%s%s", sym, sp ? NBSP : "", num);
	} else
		len = snprintf(out, out_sz, "%s" NBSP "%s", num, sym);
	if (len < 0 || (size_t)len >= out_sz)
		return pm_fail(err, PM_ERR_INTERNAL,
			       "price buffer too small (%zu bytes)", out_sz);
	return PM_OK;
}
