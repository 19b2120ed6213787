/* recipe.h — recipe text (typed, or OCR output with its noise) to
 * structure: title, servings, ingredient lines (quantity, normalised
 * unit, name, notes) and steps.
 *
 * The parser takes any bytes: input is bounded (first PM_RECIPE_MAX_INPUT
 * bytes, PM_RECIPE_MAX_LINES lines, PM_RECIPE_MAX_ITEMS ingredients and
 * steps, fields cut at PM_RECIPE_MAX_FIELD bytes on a UTF-8 boundary),
 * invalid UTF-8 and control bytes are replaced, and every string it puts
 * into JSON is valid UTF-8.
 *
 * Threads: any thread, at once; no shared state.
 */
#ifndef PM_RECIPE_H
#define PM_RECIPE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define PM_RECIPE_MAX_INPUT (64 * 1024)
#define PM_RECIPE_MAX_LINES 2000
#define PM_RECIPE_MAX_ITEMS 200
#define PM_RECIPE_MAX_FIELD 256

typedef struct pm_ingredient {
	bool has_qty;
	double qty;	/* the quantity, or the low end of a range */
	double qty_max; /* high end of a range; 0 if not a range */
	char unit[16];	/* canonical unit ("g", "tbsp", "cup"...), "" if none */
	char name[PM_RECIPE_MAX_FIELD];
	char notes[PM_RECIPE_MAX_FIELD]; /* "350 ml, warmed", "" if none */
} pm_ingredient;

/* Parses one ingredient line (len bytes, need not be NUL-terminated; any
 * bytes). Returns true if it reads as an ingredient: it starts with a
 * quantity or a unit, or (loose) has a short name with a "to taste"-like
 * tail. With loose false, only lines that start with a quantity or a unit
 * count; with loose true (inside an "Ingredients" section) any short line
 * with a name does. */
bool pm_recipe_ingredient(const char *line, size_t len, bool loose,
			  pm_ingredient *out);

/* Reads a servings line ("Serves 4", "Serves 4-6", "Makes 12",
 * "Yield: 2 loaves", "4 servings"). True and *lo, *hi (equal if not a
 * range) if it is one. */
bool pm_recipe_servings(const char *line, size_t len, double *lo, double *hi);

/* Canonical unit for a word ("Tbsp", "tablespoons", "T.", "grams"...), or
 * NULL. len bytes of word. */
const char *pm_recipe_unit(const char *word, size_t len);

/* Parses a whole recipe. Returns a new object (caller owns: json_decref):
 *   {"title": str|null, "servings": {"min": n, "max": n}|null,
 *    "ingredients": [{"text", "qty"|null, "qty_max"?, "unit"|null,
 *                     "name", "notes"|null}, ...],
 *    "steps": [str, ...]}
 * NULL only when out of memory. */
json_t *pm_recipe_parse(const char *text, size_t len);

#endif
