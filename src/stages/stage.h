/* stage.h — the stage interface and the per-item context stages work on.
 *
 * A stage is a vtable: a name, a version, a parameter check, per-worker
 * init/fini, and process(ctx). The engine decodes each image once, at the
 * largest size any stage of the pipeline asks for (decode_size), and hands
 * the in-memory sRGB image to every stage in order. Stages add outputs
 * (files), numbers and JSON facts to the context; the engine turns the
 * context into one store record. Later stages (ocr, cutout, embed, analyze,
 * compose) are new files that fill in this same vtable.
 *
 * Threads: init, process and fini run on one worker thread, with that
 * thread's own state; a stage's state is never shared between workers.
 * check and decode_size may run on any thread (they read params only).
 */
#ifndef PM_STAGE_H
#define PM_STAGE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/status.h"
#include "image/image.h"
#include "store/outstore.h"
#include "store/store.h"

#define PM_MAX_OUTPUTS 32

typedef struct pm_item_ctx {
	/* inputs, set by the engine; not owned by the stage */
	const void *src; /* source bytes */
	size_t src_len;
	const char *sha256; /* hex SHA-256 of src */
	const pm_header *header;
	VipsImage *image;      /* decoded once: sRGB, 8-bit, EXIF-oriented, in
				  memory, long edge <= decode size; owned by the
				  engine */
	const char *out_root;  /* absolute output root (for messages: files
				  are written and read through outs) */
	const char *asset_dir; /* this asset's folder, relative to out_root:
				  the prefix of its outputs' keys */
	pm_outstore *outs;     /* where outputs go (store/outstore.h); shared
				  by every worker, owned by the engine; NULL
				  when the pipeline makes no files (search) */
	bool sync;	       /* make each output durable before it is put
				  (--durability file) */
	bool keep_meta;	       /* copy metadata into outputs */
	const char *title;     /* the row's title or NULL; not owned */
	/* the row's price (as written), currency and brand (the "currency"
	 * and "brand" columns), NULL when absent; set by pm_ctx_set_row
	 * (stages/row.c): price not owned, currency/brand point into
	 * row_attrs, which the context owns */
	const char *price, *currency, *brand;
	json_t *row_attrs;
	/* ads: the run's chosen-image registry (verify stage's duplicate
	 * penalty; owned by the engine, shared by every worker, locks
	 * itself) and this row's record key; NULL outside a batch run */
	struct pm_verify_seen *seen;
	const char *row_key;
	bool more_candidates; /* the row has image candidates after this */
	/* no acceptable image (every candidate failed or was rejected):
	 * image is NULL and only stages with `placeholder` set run; the
	 * engine records why under meta "placeholder" */
	bool placeholder;

	/* results, filled by stages; strings are owned by the context */
	pm_output_rec outputs[PM_MAX_OUTPUTS];
	char out_names[PM_MAX_OUTPUTS][32];
	char out_paths[PM_MAX_OUTPUTS][160];
	char out_sha[PM_MAX_OUTPUTS][65];
	int n_outputs;
	uint64_t phash;
	bool has_phash;
	char *colors_json; /* malloc'd by the colors stage */
	double sharpness;  /* NAN until the quality stage runs */
	json_t *meta;	   /* extra facts (object), owned by the context */
	float *embedding;  /* embed stage: embedding_dim floats, L2-normalised,
			      malloc'd, owned by the context; NULL if none */
	int embedding_dim;
	char embedding_model[40]; /* id of the model that made it */
} pm_item_ctx;

typedef struct pm_stage_vt {
	const char *name;
	int version; /* bump when outputs change for the same params */
	/* Validates params (a JSON object) and fills defaults into it. */
	pm_status (*check)(json_t *params, pm_err *err);
	/* Long edge the stage needs from the decoded image (0 = any). */
	int (*decode_size)(const json_t *params);
	pm_status (*init)(const json_t *params, void **state, pm_err *err);
	pm_status (*process)(void *state, pm_item_ctx *ctx, pm_err *err);
	void (*fini)(void *state);
	/* true when outputs depend on the row's text (title, price,
	 * currency, brand), not only on the image: the engine then keys the
	 * asset on both (pm_row_key), so two rows with the same image but
	 * different text get their own outputs */
	bool uses_row;
	/* true when the stage runs for a placeholder item (ctx->placeholder:
	 * no image, ctx->image NULL); other stages are skipped for it. A
	 * pipeline with such a stage gets a placeholder instead of a failure
	 * when no image will do (see pm_pipeline_placeholders). */
	bool placeholder;
} pm_stage_vt;

/* Registered stages, by name; NULL if unknown. */
const pm_stage_vt *pm_stage_find(const char *name);
/* Comma-separated list of stage names, for messages and --help. */
const char *pm_stage_names(void);

/* Adds an output file to ctx: encodes nothing, only records and writes.
 * name like "512.webp"; puts buf under the key asset_dir/name in
 * ctx->outs (atomically, see outstore.h). */
pm_status pm_ctx_add_output(pm_item_ctx *ctx, const char *name,
			    const char *format, int width, int height,
			    const void *buf, size_t len, pm_err *err);

extern const pm_stage_vt pm_stage_thumbnail;
extern const pm_stage_vt pm_stage_phash;
extern const pm_stage_vt pm_stage_colors;
extern const pm_stage_vt pm_stage_quality;
extern const pm_stage_vt pm_stage_ocr;	  /* stages/ocr.c */
extern const pm_stage_vt pm_stage_recipe; /* stages/recipe_stage.c */
extern const pm_stage_vt pm_stage_embed;
extern const pm_stage_vt pm_stage_cutout;  /* stages/cutout.c */
extern const pm_stage_vt pm_stage_compose; /* stages/compose.c */

/* Sets ctx's row fields (stages/row.c): title and price point at the
 * caller's strings (which must outlive ctx's use); currency and brand come
 * from attrs_json (the record's other columns, keys matched without case)
 * parsed into ctx->row_attrs. Any argument may be NULL. */
void pm_ctx_set_row(pm_item_ctx *ctx, const char *title, const char *price,
		    const char *attrs_json);
/* The asset key of a pipeline that uses the row: hex SHA-256 over the
 * source's hash and ctx's title, price, currency and brand (an absent field
 * and an empty one differ). */
void pm_row_key(const char *src_sha, const pm_item_ctx *ctx, char out[65]);
extern const pm_stage_vt pm_stage_analyze;
extern const pm_stage_vt pm_stage_verify; /* stages/verify.c */

#endif
