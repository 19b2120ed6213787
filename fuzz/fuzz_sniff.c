/* fuzz_sniff.c — libFuzzer target for the format sniffer: pm_sniff must
 * never read past len (ASan checks: libFuzzer's input buffer is exactly
 * len bytes) and must always give a format pm_format_name can name; the
 * name/MIME/parse round trip must agree with it.
 *
 * Threads: libFuzzer calls the entry point from one thread.
 */
#include "image/image.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pm_format f = pm_sniff(data, size);
	if ((unsigned)f >= PM_FMT_COUNT)
		abort();
	const char *name = pm_format_name(f);
	if (!name || pm_format_parse(name) != f || !pm_format_mime(f))
		abort();
	(void)pm_format_decodable(f);
	/* the input as a format name: parse must not crash, and whatever it
	 * returns must name back to itself */
	char s[32];
	size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
	memcpy(s, data, n);
	s[n] = '\0';
	pm_format g = pm_format_parse(s);
	if ((unsigned)g >= PM_FMT_COUNT ||
	    pm_format_parse(pm_format_name(g)) != g)
		abort();
	return 0;
}
