/* recipe_stage.c — the recipe stage: parses the text the ocr stage found
 * (ctx->meta["ocr"]["text"]) into ctx->meta["recipe"] with
 * analysis/recipe.c: title, servings, ingredients, steps.
 *
 * A stage of its own rather than a parameter of ocr, so that the OCR
 * result (and its pipeline hash) stays the same whether or not recipes
 * are wanted, and so that other text sources can feed it later. It needs
 * an ocr stage before it in the pipeline; without one it fails the item
 * with a pipeline error saying so.
 *
 * Threads: init/process/fini on one worker thread; no state.
 */
#include <string.h>

#include "analysis/recipe.h"
#include "stages/stage.h"

static pm_status recipe_check(json_t *params, pm_err *err)
{
	(void)params;
	(void)err;
	return PM_OK;
}

/* The stage reads no pixels; asks for a small decode so that a pipeline
 * of recipe alone (which fails each item for want of OCR text) does not
 * decode at full size. */
static int recipe_decode_size(const json_t *params)
{
	(void)params;
	return 64;
}

static pm_status recipe_init(const json_t *params, void **state, pm_err *err)
{
	(void)params;
	(void)err;
	*state = NULL;
	return PM_OK;
}

static pm_status recipe_process(void *state, pm_item_ctx *ctx, pm_err *err)
{
	json_t *text =
	    json_object_get(json_object_get(ctx->meta, "ocr"), "text");
	json_t *r;

	(void)state;
	if (!json_is_string(text))
		return pm_fail(err, PM_ERR_PIPELINE,
			       "recipe: no OCR text (put an ocr stage before "
			       "the recipe stage)");
	r = pm_recipe_parse(json_string_value(text), json_string_length(text));
	if (!r)
		return pm_fail(err, PM_ERR_NOMEM, "recipe: out of memory");
	json_object_set_new(ctx->meta, "recipe", r);
	return PM_OK;
}

const pm_stage_vt pm_stage_recipe = {
    .name = "recipe",
    .version = 1,
    .check = recipe_check,
    .decode_size = recipe_decode_size,
    .init = recipe_init,
    .process = recipe_process,
};
