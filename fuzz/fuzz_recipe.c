/* fuzz_recipe.c — libFuzzer target for the recipe parser
 * (src/analysis/recipe.c): any bytes must parse without a crash or an
 * out-of-bounds read (ASan: libFuzzer's buffer is exactly size bytes),
 * give an object whose strings are valid UTF-8 (json_dumps succeeds) and
 * whose lists stay within the documented bounds; every ingredient line
 * parsed on its own must also keep its fields NUL-terminated and bounded.
 *
 * Threads: libFuzzer calls the entry point from one thread.
 */
#include "analysis/recipe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *r = pm_recipe_parse((const char *)data, size);
	if (!r)
		abort(); /* only on out of memory */
	char *d = json_dumps(r, 0);
	if (!d)
		abort(); /* invalid UTF-8 or a broken structure */
	free(d);
	if (json_array_size(json_object_get(r, "ingredients")) >
		PM_RECIPE_MAX_ITEMS ||
	    json_array_size(json_object_get(r, "steps")) > PM_RECIPE_MAX_ITEMS)
		abort();
	json_decref(r);

	pm_ingredient g;
	if (pm_recipe_ingredient((const char *)data, size, size & 1, &g)) {
		if (strnlen(g.name, sizeof g.name) >= sizeof g.name ||
		    strnlen(g.notes, sizeof g.notes) >= sizeof g.notes ||
		    strnlen(g.unit, sizeof g.unit) >= sizeof g.unit ||
		    g.name[0] == '\0')
			abort();
	}
	double lo, hi;
	if (pm_recipe_servings((const char *)data, size, &lo, &hi) &&
	    (lo <= 0 || hi < lo))
		abort();
	(void)pm_recipe_unit((const char *)data, size);
	return 0;
}
