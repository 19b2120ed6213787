/* fuzz_template.c — libFuzzer target: ad template JSON (hostile template
 * files) through pm_template_parse, and the same bytes as a price amount
 * through pm_price_format (every currency/locale pair is not needed: one
 * of each decimal style). Must never crash, leak or read out of bounds.
 *
 * Threads: libFuzzer's single thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pm_template *t = NULL;
	pm_err e;
	char out[128], *s;

	if (pm_template_parse((const char *)data, size, "/nonexistent", &t,
			      &e) == PM_OK)
		pm_template_free(t); /* no digest: it reads the files named */
	if (size > 256)
		return 0;
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	(void)pm_price_format(s, "EUR", "de_DE", out, sizeof out, &e);
	(void)pm_price_format(s, "JPY", "ja_JP", out, sizeof out, &e);
	(void)pm_price_format(s, "CHF", "de_CH", out, sizeof out, &e);
	(void)pm_price_format("12.5", s, s, out, sizeof out, &e);
	free(s);
	return 0;
}
