/* test_recipe.c — the recipe parser (src/analysis/recipe.c): a table of
 * ingredient lines with the quantity, unit, name and notes each must give
 * (typed lines, the hard ones, and OCR-ish noise), servings lines, unit
 * spellings, whole recipes, and hostile bytes.
 *
 * Threads: main thread only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/recipe.h"
#include "test.h"

#define NOQ (-1.0) /* no quantity expected */

static const struct {
	const char *line;
	double qty, qty_max; /* NOQ: none; qty_max 0: not a range */
	const char *unit;    /* "" none */
	const char *name;
	const char *notes; /* "" none */
} lines[] = {
    {"1½ cups (350 ml) milk, warmed", 1.5, 0, "cup", "milk", "350 ml, warmed"},
    {"2-3 tbsp olive oil", 2, 3, "tbsp", "olive oil", ""},
    {"2 to 3 tbsp olive oil", 2, 3, "tbsp", "olive oil", ""},
    {"2 – 3 Tbsp olive oil", 2, 3, "tbsp", "olive oil", ""},
    {"salt and pepper to taste", NOQ, 0, "", "salt and pepper", "to taste"},
    {"1 (14 oz) can tomatoes", 1, 0, "can", "tomatoes", "14 oz"},
    {"3 large eggs, beaten", 3, 0, "", "eggs", "large, beaten"},
    {"½ tsp. salt", 0.5, 0, "tsp", "salt", ""},
    {"1/2 tsp salt", 0.5, 0, "tsp", "salt", ""},
    {"1 1/2 cups flour", 1.5, 0, "cup", "flour", ""},
    {"1-1/2 cups flour", 1.5, 0, "cup", "flour", ""},
    {"1 ½ cups flour", 1.5, 0, "cup", "flour", ""},
    {"¾ cup sugar", 0.75, 0, "cup", "sugar", ""},
    {"⅓ cup water", 1.0 / 3, 0, "cup", "water", ""},
    {"⅔ cup cream", 2.0 / 3, 0, "cup", "cream", ""},
    {"⅛ tsp nutmeg", 0.125, 0, "tsp", "nutmeg", ""},
    {"¼ teaspoon cayenne pepper", 0.25, 0, "tsp", "cayenne pepper", ""},
    {"2 Tablespoons butter, softened", 2, 0, "tbsp", "butter", "softened"},
    {"2 T. butter", 2, 0, "tbsp", "butter", ""},
    {"2 t. vanilla extract", 2, 0, "tsp", "vanilla extract", ""},
    {"500 grams plain flour", 500, 0, "g", "plain flour", ""},
    {"200g dark chocolate, chopped", 200, 0, "g", "dark chocolate", "chopped"},
    {"1.5 kg potatoes, peeled and diced", 1.5, 0, "kg", "potatoes",
     "peeled and diced"},
    {"1,5 l stock", 1.5, 0, "l", "stock", ""},
    {"250 ml whole milk", 250, 0, "ml", "whole milk", ""},
    {"2 dl cream", 2, 0, "dl", "cream", ""},
    {"5 cl rum", 5, 0, "cl", "rum", ""},
    {"100 mg saffron", 100, 0, "mg", "saffron", ""},
    {"8 oz. cream cheese, at room temperature", 8, 0, "oz", "cream cheese",
     "at room temperature"},
    {"4 fl oz double cream", 4, 0, "fl oz", "double cream", ""},
    {"2 lbs ground beef", 2, 0, "lb", "ground beef", ""},
    {"1 pound carrots", 1, 0, "lb", "carrots", ""},
    {"a pinch of salt", 1, 0, "pinch", "salt", ""},
    {"pinch of nutmeg", NOQ, 0, "pinch", "nutmeg", ""},
    {"1 dash Worcestershire sauce", 1, 0, "dash", "Worcestershire sauce", ""},
    {"3 cloves garlic, minced", 3, 0, "clove", "garlic", "minced"},
    {"2 slices bread", 2, 0, "slice", "bread", ""},
    {"4 pieces chicken", 4, 0, "piece", "chicken", ""},
    {"1 can (400 g) chickpeas, drained", 1, 0, "can", "chickpeas",
     "400 g, drained"},
    {"2 onions, finely diced", 2, 0, "", "onions", "finely diced"},
    {"1 red pepper (optional)", 1, 0, "", "red pepper", "optional"},
    {"fresh parsley, for garnish", NOQ, 0, "", "fresh parsley", "for garnish"},
    {"- 2 cups rice", 2, 0, "cup", "rice", ""},
    {"• 1 cup peas", 1, 0, "cup", "peas", ""},
    {"one large onion", 1, 0, "", "onion", "large"},
    {"three carrots", 3, 0, "", "carrots", ""},
    {"2 or 3 sprigs thyme", 2, 3, "sprig", "thyme", ""},
    {"1 heaped tsp cumin", 1, 0, "tsp", "cumin", "heaped"},
    {"2 tsps baking soda", 2, 0, "tsp", "baking soda", ""},
    {"3 TBSP honey", 3, 0, "tbsp", "honey", ""},
    {"1 cup (2 sticks) butter, melted", 1, 0, "cup", "butter",
     "2 sticks, melted"},
    /* OCR-ish noise */
    {"11/2 cups milk", 1.5, 0, "cup", "milk", ""},
    {"21/4 cups flour", 2.25, 0, "cup", "flour", ""},
    {"l tsp salt", 1, 0, "tsp", "salt", ""},
    {"I cup sugar", 1, 0, "cup", "sugar", ""},
    {"e 2 eggs", 2, 0, "", "eggs", ""},
    {"2  cups   flour ,  sifted", 2, 0, "cup", "flour", "sifted"},
    {"1 1⁄2 cups oats", 1.5, 0, "cup", "oats", ""},
    {"2 tbsp. olive oil.", 2, 0, "tbsp", "olive oil", ""},
    {"| tsp baking powder", 1, 0, "tsp", "baking powder", ""},
    {"| egg", 1, 0, "", "egg", ""},
    {"] tbsp milk", 1, 0, "tbsp", "milk", ""},
    {"1% cups milk", 1.5, 0, "cup", "milk", ""},    /* OCR of 1½ */
    {"2 % cups water", 2.5, 0, "cup", "water", ""}, /* OCR of 2 ½ */
};

static void test_lines(void)
{
	for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
		pm_ingredient g;
		bool ok = pm_recipe_ingredient(lines[i].line,
					       strlen(lines[i].line), true, &g);
		if (!ok) {
			fprintf(stderr, "not an ingredient: %s\n",
				lines[i].line);
			CHECK(ok);
			continue;
		}
		bool qok = lines[i].qty == NOQ
			       ? !g.has_qty
			       : g.has_qty && fabs(g.qty - lines[i].qty) < 1e-6;
		bool mok = fabs(g.qty_max - lines[i].qty_max) < 1e-6;
		if (!qok || !mok)
			fprintf(stderr, "%s: qty %g-%g (has %d)\n",
				lines[i].line, g.qty, g.qty_max, g.has_qty);
		CHECK(qok);
		CHECK(mok);
		CHECK_STR(g.unit, lines[i].unit);
		CHECK_STR(g.name, lines[i].name);
		CHECK_STR(g.notes, lines[i].notes);
	}
}

static void test_not_ingredients(void)
{
	static const char *const no[] = {
	    "1. Whisk the flour and sugar.",
	    "2) Stir in the milk.",
	    "Preheat the oven to 180C and grease a tin.",
	    "",
	    "   ",
	    "12:30",
	    "50% cocoa",
	    "---",
	    "(",
	    "1/0 cups",
	};
	for (size_t i = 0; i < sizeof no / sizeof *no; i++) {
		pm_ingredient g;
		bool r = pm_recipe_ingredient(no[i], strlen(no[i]), false, &g);
		if (r)
			fprintf(stderr, "read as ingredient: %s (name %s)\n",
				no[i], g.name);
		CHECK(!r);
	}
}

static void test_units(void)
{
	static const struct {
		const char *w, *u;
	} u[] = {
	    {"Tbsp", "tbsp"},	  {"tablespoons", "tbsp"},
	    {"T.", "tbsp"},	  {"T", "tbsp"},
	    {"t", "tsp"},	  {"tsp.", "tsp"},
	    {"Teaspoons", "tsp"}, {"grams", "g"},
	    {"g", "g"},		  {"Kilograms", "kg"},
	    {"ML", "ml"},	  {"litres", "l"},
	    {"liter", "l"},	  {"cups", "cup"},
	    {"C.", "cup"},	  {"ounces", "oz"},
	    {"lbs", "lb"},	  {"pinches", "pinch"},
	    {"dashes", "dash"},	  {"cloves", "clove"},
	    {"tins", "can"},	  {"slices", "slice"},
	    {"pcs", "piece"},	  {"bunches", "bunch"},
	    {"leaves", "leaf"},
	};
	for (size_t i = 0; i < sizeof u / sizeof *u; i++) {
		const char *got = pm_recipe_unit(u[i].w, strlen(u[i].w));
		CHECK_STR(got, u[i].u);
	}
	CHECK(pm_recipe_unit("flour", 5) == NULL);
	CHECK(pm_recipe_unit("", 0) == NULL);
	CHECK(pm_recipe_unit("eggs", 4) == NULL);
}

static void test_servings(void)
{
	static const struct {
		const char *line;
		double lo, hi;
	} s[] = {
	    {"Serves 4-6", 4, 6},      {"Serves 4", 4, 4},
	    {"Servings: 8", 8, 8},     {"Makes 12", 12, 12},
	    {"Yield: 2 loaves", 2, 2}, {"4 servings", 4, 4},
	    {"SERVES 2 TO 3", 2, 3},   {"Serves: about 6", 6, 6},
	    {"For 4 people", 4, 4},    {"Serves |", 1, 1}, /* OCR's 1 */
	};
	for (size_t i = 0; i < sizeof s / sizeof *s; i++) {
		double lo = 0, hi = 0;
		bool ok =
		    pm_recipe_servings(s[i].line, strlen(s[i].line), &lo, &hi);
		CHECK(ok);
		if (!ok || lo != s[i].lo || hi != s[i].hi)
			fprintf(stderr, "%s: %g-%g\n", s[i].line, lo, hi);
		CHECK(lo == s[i].lo && hi == s[i].hi);
	}
	double lo, hi;
	CHECK(!pm_recipe_servings("Serve hot with rice", 19, &lo, &hi));
	CHECK(!pm_recipe_servings("2 cups flour", 12, &lo, &hi));
	CHECK(!pm_recipe_servings("For the sauce:", 14, &lo, &hi));
}

static const char *ingr_field(json_t *r, size_t i, const char *k)
{
	return json_string_value(json_object_get(
	    json_array_get(json_object_get(r, "ingredients"), i), k));
}

static void test_whole(void)
{
	const char *text = "Classic Pancakes\n"
			   "Serves 4-6\n"
			   "\n"
			   "INGREDIENTS\n"
			   "1 1/2 cups (190 g) plain flour\n"
			   "2 tbsp sugar\n"
			   "\n"
			   "salt and pepper to taste\n"
			   "For the topping:\n"
			   "maple syrup\n"
			   "\n"
			   "Method:\n"
			   "1. Whisk the dry ingredients\n"
			   "together in a large bowl.\n"
			   "\n"
			   "2. Add the milk.\n"
			   "3. Cook until golden.\n";
	json_t *r = pm_recipe_parse(text, strlen(text));
	CHECK(r != NULL);
	CHECK_STR(json_string_value(json_object_get(r, "title")),
		  "Classic Pancakes");
	json_t *sv = json_object_get(r, "servings");
	CHECK(json_real_value(json_object_get(sv, "min")) == 4);
	CHECK(json_real_value(json_object_get(sv, "max")) == 6);
	CHECK_INT(json_array_size(json_object_get(r, "ingredients")), 4);
	CHECK_STR(ingr_field(r, 0, "name"), "plain flour");
	CHECK_STR(ingr_field(r, 0, "unit"), "cup");
	CHECK_STR(ingr_field(r, 0, "notes"), "190 g");
	CHECK_STR(ingr_field(r, 2, "name"), "salt and pepper");
	CHECK_STR(ingr_field(r, 3, "name"), "maple syrup");
	json_t *st = json_object_get(r, "steps");
	CHECK_INT(json_array_size(st), 3);
	CHECK_STR(json_string_value(json_array_get(st, 0)),
		  "Whisk the dry ingredients together in a large bowl.");
	CHECK_STR(json_string_value(json_array_get(st, 2)),
		  "Cook until golden.");
	json_decref(r);

	/* no headings: quantities and numbered steps are enough; OCR slips
	 * in the heading */
	const char *t2 = "Tomato Soup\n2 tbsp olive oil\n1 onion, chopped\n"
			 "Directlons\nSoften the onion in the oil.\n"
			 "Add the tomatoes and simmer.\n";
	r = pm_recipe_parse(t2, strlen(t2));
	CHECK_STR(json_string_value(json_object_get(r, "title")),
		  "Tomato Soup");
	CHECK_INT(json_array_size(json_object_get(r, "ingredients")), 2);
	CHECK_INT(json_array_size(json_object_get(r, "steps")), 2);
	json_decref(r);

	/* empty and NULL */
	r = pm_recipe_parse("", 0);
	CHECK(json_is_null(json_object_get(r, "title")));
	CHECK_INT(json_array_size(json_object_get(r, "ingredients")), 0);
	json_decref(r);
	r = pm_recipe_parse(NULL, 5);
	CHECK(r != NULL);
	json_decref(r);
}

/* Any bytes: valid UTF-8 out, bounded, no crash. */
static void test_hostile(void)
{
	unsigned seed = 12345;
	size_t n = 200000;
	char *buf = malloc(n);
	int valid = 0;

	for (int round = 0; round < 50; round++) {
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			unsigned v = seed >> 16;
			/* mostly recipe-ish bytes, some anything */
			const char *alpha = "0123456789 /-.,()\n½tbspcupgTo";
			buf[i] = v % 4 ? alpha[v % 31] : (char)(v & 0xff);
		}
		json_t *r =
		    pm_recipe_parse(buf, round % 2 ? n : (size_t)round * 997);
		char *d = r ? json_dumps(r, 0) : NULL;
		valid += d != NULL;
		CHECK(json_array_size(json_object_get(r, "ingredients")) <=
		      PM_RECIPE_MAX_ITEMS);
		free(d);
		json_decref(r);
	}
	CHECK_INT(valid, 50);
	/* a line of one huge word, invalid UTF-8, NULs */
	memset(buf, 'a', n);
	buf[100] = '\0';
	buf[200] = (char)0xff;
	buf[300] = (char)0xe2;
	json_t *r = pm_recipe_parse(buf, n);
	CHECK(r != NULL);
	json_decref(r);
	pm_ingredient g;
	memcpy(buf, "1 \xe2\x85", 4);
	CHECK(!pm_recipe_ingredient(buf, 4, true, &g) || g.has_qty);
	free(buf);
}

/* The OCR test cards' recipes (tests/ocr/recipes.txt), parsed from
 * their clean text, give exactly the hand-labelled ingredients: the
 * parser's share of the card evaluation's errors is zero. Run from the
 * repository root (as scripts/test.sh does); skipped elsewhere. */
static void test_card_truth(void)
{
	FILE *f = fopen("tests/ocr/recipes.txt", "r");
	char line[512];
	char *text = NULL;
	size_t tlen = 0;
	int state = 0, recipes = 0; /* 1 text, 2 truth */
	json_t *r = NULL;
	size_t idx = 0;

	if (!f) {
		printf("  (tests/ocr/recipes.txt not found: skipped)\n");
		return;
	}
	text = malloc(65536);
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "=== ", 4) == 0) {
			if (r) /* no ingredient beyond the truth */
				CHECK_INT(json_array_size(json_object_get(
					      r, "ingredients")),
					  idx);
			json_decref(r);
			r = NULL;
			state = 1;
			tlen = 0;
			recipes++;
			continue;
		}
		if (state == 1 && strcmp(line, "--- truth") == 0) {
			r = pm_recipe_parse(text, tlen);
			idx = 0;
			state = 2;
			continue;
		}
		if (state == 1) {
			size_t l = strlen(line);
			if (tlen + l + 2 < 65536) {
				memcpy(text + tlen, line, l);
				tlen += l;
				text[tlen++] = '\n';
			}
			continue;
		}
		if (state != 2 || !line[0] || line[0] == '#')
			continue;
		char q[32] = "", qm[32] = "", unit[32] = "", name[128] = "";
		sscanf(line, "%31[^|]", q);
		const char *p1 = strchr(line, '|');
		const char *p2 = p1 ? strchr(p1 + 1, '|') : NULL;
		const char *p3 = p2 ? strchr(p2 + 1, '|') : NULL;
		if (!p3)
			continue;
		snprintf(qm, sizeof qm, "%.*s", (int)(p2 - p1 - 1), p1 + 1);
		snprintf(unit, sizeof unit, "%.*s", (int)(p3 - p2 - 1), p2 + 1);
		snprintf(name, sizeof name, "%s", p3 + 1);
		if (p1 == line)
			q[0] = '\0';
		json_t *g =
		    json_array_get(json_object_get(r, "ingredients"), idx++);
		json_t *jq = json_object_get(g, "qty");
		bool ok = g != NULL;
		if (ok && q[0])
			ok = json_is_real(jq) &&
			     fabs(json_real_value(jq) - atof(q)) < 0.01;
		else if (ok)
			ok = json_is_null(jq);
		if (ok && qm[0])
			ok = fabs(json_real_value(
				      json_object_get(g, "qty_max")) -
				  atof(qm)) < 0.01;
		const char *u = json_string_value(json_object_get(g, "unit"));
		if (ok)
			ok = unit[0] ? u && strcmp(u, unit) == 0 : u == NULL;
		const char *n = json_string_value(json_object_get(g, "name"));
		if (ok)
			ok = n && strcmp(n, name) == 0;
		if (!ok)
			fprintf(
			    stderr, "card truth: %s: got %s\n", line,
			    g ? json_string_value(json_object_get(g, "text"))
			      : "(none)");
		CHECK(ok);
	}
	if (r)
		CHECK_INT(json_array_size(json_object_get(r, "ingredients")),
			  idx);
	json_decref(r);
	free(text);
	fclose(f);
	CHECK(recipes >= 10);
}

int main(void)
{
	test_lines();
	test_not_ingredients();
	test_units();
	test_servings();
	test_whole();
	test_hostile();
	test_card_truth();
	TEST_DONE();
}
