/* fuzz_duration.c — libFuzzer target for the duration parser
 * (src/core/util.c: pm_parse_duration), which reads `queue prune
 * --older-than` from the command line (and cron lines). Invariants: the
 * result is -1 (refused) or a finite number of seconds in [0, 100
 * years]; an accepted text is decimal digits with at most one point,
 * then at most one of the units s, m, h, d.
 *
 * Threads: libFuzzer calls LLVMFuzzerTestOneInput from one thread.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	double v;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	v = pm_parse_duration(s);
	if (v != -1) {
		size_t n = strspn(s, "0123456789."), dots = 0;
		if (!isfinite(v) || v < 0 || v > 100.0 * 365 * 86400)
			abort();
		for (size_t i = 0; i < n; i++)
			dots += s[i] == '.';
		if (n == 0 || dots > 1 || n == dots)
			abort();
		if (s[n] && (!strchr("smhd", s[n]) || s[n + 1]))
			abort();
	}
	free(s);
	return 0;
}
