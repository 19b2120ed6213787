/* cmd_search.c — `pixmill search text QUERY` (full-text over titles,
 * categories, attributes and the text in images, BM25-ranked, with
 * snippets and filters) and `pixmill search image FILE|ITEM` (nearest
 * images by embedding, cosine, and by perceptual hash, Hamming distance).
 *
 * An image FILE is decoded and embedded by the same stage code as a run
 * (engine/single.c with an embed + phash pipeline; nothing is written);
 * an ITEM (a sha256, an item key or a catalog id) uses its stored vector
 * and hash and is left out of its own results. The store's vectors of
 * the model are loaded into memory and scanned (engine/search.c).
 *
 * Threads: main thread only.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/util.h"
#include "engine/search.h"
#include "engine/single.h"
#include "ml/embed_model.h"
#include "stages/embed.h"
#include "stages/pipeline.h"
#include "store/store.h"

#define K_MAX 1000

typedef struct search_cli {
	const char *db;
	long long job;
	const char *category;
	const char *model; /* descriptor path; NULL = built-in */
	bool has_text, json;
	long limit; /* text hits; image hits per list */
} search_cli;

static int search_opt(int id, const char *arg, void *ud)
{
	search_cli *c = ud;

	switch (id) {
	case OPT_DB:
		c->db = arg;
		break;
	case OPT_JOB:
		return pm_cli_job("search", arg, &c->job);
	case OPT_CATEGORY:
		c->category = arg;
		break;
	case OPT_HAS_TEXT:
		c->has_text = true;
		break;
	case OPT_EMBED_MODEL:
		c->model = arg;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	case OPT_LIMIT:
	case OPT_K:
		if (pm_cli_long(arg, 1, K_MAX, &c->limit))
			return pm_cli_usage_error(
			    "search", "--limit / -k wants 1 to %d", K_MAX);
		break;
	}
	return 0;
}

/* Prints s on one line: runs of spaces and control characters (the
 * newlines of titles and OCR text) become one space. */
static void put_line(const char *s)
{
	bool space = false;

	for (; s && *s; s++) {
		bool sp = (unsigned char)*s <= 0x20;
		if (!sp)
			putchar(*s);
		else if (!space)
			putchar(' ');
		space = sp;
	}
}

/* ---- search text ---- */

typedef struct text_out {
	bool json;
	json_t *arr;
	int n;
} text_out;

static int text_hit(const pm_search_hit *h, void *ud)
{
	text_out *o = ud;

	o->n++;
	if (o->json) {
		json_array_append_new(
		    o->arr,
		    json_pack("{s:I,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:b,s:f}",
			      "job_id", (json_int_t)h->job_id, "key", h->key,
			      "id", h->id, "title", h->title, "category",
			      h->category, "image", h->image, "sha256",
			      h->sha256, "snippet", h->snippet, "has_text",
			      h->has_text, "score", h->score));
		return 0;
	}
	printf("%3d  %6.2f  job %-3lld %-16.16s ", o->n, h->score,
	       (long long)h->job_id, h->id ? h->id : h->key);
	put_line(h->title);
	putchar('\n');
	if (h->snippet && *h->snippet) {
		printf("     ");
		put_line(h->snippet);
		putchar('\n');
	}
	return 0;
}

static int search_text(search_cli *c, const char *text)
{
	char match[4200];
	pm_text_query q = {0};
	text_out o = {.json = c->json};
	pm_store *st = NULL;
	pm_err err = {{0}};
	pm_status s;
	bool tty = !c->json && isatty(1);

	if (strlen(text) > 4000 ||
	    !pm_store_fts_query(text, match, sizeof match))
		return pm_cli_usage_error(
		    "search", "text wants some words to search for");
	q.match = match;
	q.job_id = c->job;
	q.category = c->category;
	q.has_text = c->has_text;
	q.limit = (int)(c->limit ? c->limit : 20);
	q.mark_open = tty ? "\033[1m" : "[";
	q.mark_close = tty ? "\033[0m" : "]";
	s = pm_store_open_existing(c->db, &st, &err);
	if (!s) {
		o.arr = json_array();
		s = pm_store_search_text(st, &q, text_hit, &o, &err);
	}
	if (!s && c->json) {
		json_t *j =
		    json_pack("{s:s,s:o}", "query", text, "results", o.arr);
		char *t = json_dumps(j, JSON_INDENT(2));
		printf("%s\n", t ? t : "{}");
		free(t);
		json_decref(j);
		o.arr = NULL;
	} else if (!s && o.n == 0) {
		printf("no matches\n");
	}
	json_decref(o.arr);
	pm_store_close(st);
	if (s) {
		fprintf(stderr, "pixmill search: %s\n",
			err.msg[0] ? err.msg : pm_status_code(s));
		return pm_status_exit(s);
	}
	return 0;
}

/* ---- search image ---- */

/* What the query is: its source hash, pHash and vector. */
typedef struct query {
	char sha[65];
	uint64_t phash;
	bool has_phash;
	float *vec; /* malloc'd */
	int dim;
	char model[PM_EMBED_ID_MAX];
	bool stored; /* an item of the store: leave it out of its results */
} query;

static bool is_hex64(const char *s)
{
	return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* Embeds and hashes the image file at path (nothing is recorded). */
static pm_status query_file(search_cli *c, pm_store *st, const char *path,
			    query *q, pm_err *err)
{
	pm_pipeline *p = NULL;
	pm_pipeline_run *pr = NULL;
	pm_single_opts so = {0};
	pm_single_result res = {0};
	pm_limits lim;
	void *buf = NULL;
	size_t len = 0;
	json_t *embed = json_pack("{s:s}", "stage", "embed");
	json_t *pj;
	char *pjs;
	pm_status s;

	if (c->model)
		json_object_set_new(embed, "model", json_string(c->model));
	pj = json_pack("{s:s,s:[o,{s:s}]}", "name", "query", "stages", embed,
		       "stage", "phash");
	pjs = pj ? json_dumps(pj, JSON_COMPACT) : NULL;
	json_decref(pj);
	if (!pjs)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	pm_limits_default(&lim);
	s = pm_read_file(path, lim.max_bytes, &buf, &len, err);
	if (!s)
		s = pm_pipeline_parse(pjs, &p, err);
	if (!s)
		s = pm_pipeline_run_new(p, &pr, err);
	if (!s) {
		so.pipe = p;
		so.pr = pr;
		so.st = st;
		so.out_root = ".";
		so.limits = &lim;
		so.record = false;
		so.want_embedding = true;
		s = pm_single_process(&so, buf, len, &res, err);
	}
	if (!s) {
		snprintf(q->sha, sizeof q->sha, "%s", res.sha256);
		q->phash = res.phash;
		q->has_phash = res.has_phash;
		q->vec = res.embedding; /* ours now */
		q->dim = res.embedding_dim;
		snprintf(q->model, sizeof q->model, "%s", res.embedding_model);
		if (!q->vec)
			s = pm_fail(err, PM_ERR_INTERNAL,
				    "no embedding for the query");
	}
	free(pjs);
	free(buf);
	pm_pipeline_run_free(pr);
	pm_pipeline_free(p);
	return s;
}

typedef struct first_item {
	bool found;
	char sha[65];
	uint64_t phash;
	bool has_phash;
	int64_t job_id;
	char key[512], id[256], title[512], image[1024];
} first_item;

static int first_cb(const pm_asset_item *it, void *ud)
{
	first_item *f = ud;

	f->found = true;
	snprintf(f->sha, sizeof f->sha, "%s", it->sha256 ? it->sha256 : "");
	f->phash = it->phash;
	f->has_phash = it->has_phash;
	f->job_id = it->job_id;
	snprintf(f->key, sizeof f->key, "%s", it->key ? it->key : "");
	snprintf(f->id, sizeof f->id, "%s", it->id ? it->id : "");
	snprintf(f->title, sizeof f->title, "%s", it->title ? it->title : "");
	snprintf(f->image, sizeof f->image, "%s", it->image ? it->image : "");
	return 1;
}

/* The model id the query vector must match: the built-in's, or the
 * descriptor's model (opened just to read its id). */
static pm_status model_id(search_cli *c, char *out, size_t size, pm_err *err)
{
	pm_embed_model *m = NULL;
	pm_status s;

	if (!c->model) {
		snprintf(out, size, "%s", PM_EMBED_BUILTIN_ID);
		return PM_OK;
	}
	s = pm_embed_model_open(c->model, 1, &m, err);
	if (!s)
		snprintf(out, size, "%s", pm_embed_model_id(m));
	pm_embed_model_close(m);
	return s;
}

/* A stored item (sha256, item key or catalog id): its vector and hash. */
static pm_status query_item(search_cli *c, pm_store *st, const char *ref,
			    query *q, pm_err *err)
{
	first_item f = {0};
	pm_status s;

	if (is_hex64(ref))
		s = pm_store_asset_items(st, c->job, ref, first_cb, &f, err);
	else
		s = pm_store_find_items(st, c->job, ref, first_cb, &f, err);
	if (s)
		return s;
	if (!f.found)
		return pm_fail(err, PM_ERR_NOT_FOUND,
			       "%s: no such file, and no done item with this "
			       "sha256, key or id",
			       ref);
	snprintf(q->sha, sizeof q->sha, "%s", f.sha);
	q->phash = f.phash;
	q->has_phash = f.has_phash;
	q->stored = true;
	s = model_id(c, q->model, sizeof q->model, err);
	if (s)
		return s;
	q->vec = malloc(65536 * sizeof *q->vec);
	if (!q->vec)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	s = pm_store_embedding_get(st, q->sha, q->model, q->vec, 65536, &q->dim,
				   err);
	if (!s && q->dim == 0) {
		free(q->vec);
		q->vec = NULL; /* pHash results only */
	}
	return s;
}

/* Sources of --job's items, sorted, to filter the candidates. */
typedef struct sha_list {
	char (*sha)[65];
	size_t n, cap;
} sha_list;

static int list_cb(const pm_asset_item *it, void *ud)
{
	sha_list *l = ud;

	if (!it->sha256 || (l->n && strcmp(l->sha[l->n - 1], it->sha256) == 0))
		return 0; /* rows come ordered by sha256 */
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		char(*ns)[65] = realloc(l->sha, cap * sizeof *ns);
		if (!ns)
			return 1;
		l->sha = ns;
		l->cap = cap;
	}
	snprintf(l->sha[l->n++], 65, "%s", it->sha256);
	return 0;
}

static bool in_list(const sha_list *l, const char *sha)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = strcmp(l->sha[mid], sha);
		if (!cmp)
			return true;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

typedef struct vload {
	pm_vecset *vs;
	const sha_list *only; /* NULL = every source */
	pm_status s;
	pm_err *err;
} vload;

static int vload_cb(const char *sha, const float *vec, int dim, void *ud)
{
	vload *v = ud;

	if (dim != pm_vecset_dim(v->vs) || (v->only && !in_list(v->only, sha)))
		return 0;
	v->s = pm_vecset_add(v->vs, sha, vec, v->err);
	return v->s != PM_OK;
}

/* One result row: the hit's source and its first item (of job, if not
 * 0). */
static json_t *hit_json(pm_store *st, int64_t job, int rank, const char *sha,
			double score, int distance)
{
	first_item f = {0};
	pm_err e;

	pm_store_asset_items(st, job, sha, first_cb, &f, &e);
	return json_pack(
	    "{s:i,s:s,s:o,s:o,s:I,s:s?,s:s?,s:s?,s:s?}", "rank", rank, "sha256",
	    sha, "score", isnan(score) ? json_null() : json_real(score),
	    "distance", distance < 0 ? json_null() : json_integer(distance),
	    "job_id", (json_int_t)f.job_id, "key", f.found ? f.key : NULL, "id",
	    f.id[0] ? f.id : NULL, "title", f.title[0] ? f.title : NULL,
	    "image", f.found ? f.image : NULL);
}

static void print_hits(const char *head, json_t *arr)
{
	size_t i;
	json_t *h;

	printf("%s\n", head);
	if (!json_array_size(arr))
		printf("  (none)\n");
	json_array_foreach(arr, i, h)
	{
		json_t *sc = json_object_get(h, "score");
		json_t *d = json_object_get(h, "distance");
		const char *t = json_string_value(json_object_get(h, "title"));
		const char *im = json_string_value(json_object_get(h, "image"));
		char scs[16] = "     -", ds[8] = " -";
		if (json_is_real(sc))
			snprintf(scs, sizeof scs, "%6.4f", json_real_value(sc));
		if (json_is_integer(d))
			snprintf(ds, sizeof ds, "%2d",
				 (int)json_integer_value(d));
		printf("  %3d  cos %s  d %s  %.12s  ",
		       (int)json_integer_value(json_object_get(h, "rank")), scs,
		       ds, json_string_value(json_object_get(h, "sha256")));
		put_line(t);
		printf("%s", t && im ? "  " : "");
		put_line(im);
		putchar('\n');
	}
}

static int search_image(search_cli *c, const char *ref)
{
	query q = {0};
	pm_store *st = NULL;
	pm_vecset *vs = NULL;
	pm_hashset hs = {0};
	sha_list only = {0};
	pm_vec_hit *vh = NULL;
	pm_hash_hit *hh = NULL;
	json_t *emb = json_array(), *ph = json_array();
	pm_err err = {{0}};
	struct stat sb;
	int k = (int)(c->limit ? c->limit : 10), nv = 0, nh = 0;
	double t0 = pm_now(), t_load = 0, t_scan = 0;
	pm_status s;

	s = pm_store_open_existing(c->db, &st, &err);
	if (s)
		goto out;
	if (stat(ref, &sb) == 0 && S_ISREG(sb.st_mode))
		s = query_file(c, st, ref, &q, &err);
	else
		s = query_item(c, st, ref, &q, &err);
	if (s)
		goto out;
	if (c->job)
		s = pm_store_asset_items(st, c->job, NULL, list_cb, &only,
					 &err);
	vh = calloc((size_t)k, sizeof *vh);
	hh = calloc((size_t)k, sizeof *hh);
	if (!s && (!vh || !hh))
		s = pm_fail(&err, PM_ERR_NOMEM, "out of memory");
	if (!s && q.vec)
		s = pm_vecset_new(q.dim, &vs, &err);
	if (!s && vs) {
		vload v = {vs, c->job ? &only : NULL, PM_OK, &err};
		double t1 = pm_now();
		s = pm_store_embeddings(st, q.model, vload_cb, &v, &err);
		if (!s)
			s = v.s;
		t_load = pm_now() - t1;
	}
	if (!s)
		s = pm_hashset_load(st, &hs, &err);
	if (s)
		goto out;
	{
		double t1 = pm_now();
		const char *ex = q.stored ? q.sha : NULL;
		if (vs)
			nv = pm_vecset_topk(vs, q.vec, k, ex, vh);
		if (q.has_phash) {
			/* the job filter: drop other sources */
			if (c->job) {
				size_t m = 0;
				for (size_t i = 0; i < hs.n; i++)
					if (in_list(&only, hs.sha[i])) {
						hs.h[m] = hs.h[i];
						memmove(hs.sha[m], hs.sha[i],
							65);
						m++;
					}
				hs.n = m;
			}
			nh = pm_hashset_topk(&hs, q.phash, k, 64, ex, hh);
		}
		t_scan = pm_now() - t1;
	}
	for (int i = 0; i < nv; i++) {
		const char *sha = pm_vecset_sha(vs, vh[i].index);
		int d = -1;
		for (size_t j = 0; q.has_phash && j < hs.n; j++)
			if (strcmp(hs.sha[j], sha) == 0) {
				d = __builtin_popcountll(hs.h[j] ^ q.phash);
				break;
			}
		json_array_append_new(
		    emb, hit_json(st, c->job, i + 1, sha, vh[i].score, d));
	}
	for (int i = 0; i < nh; i++) {
		const char *sha = hs.sha[hh[i].index];
		double sc = NAN;
		for (size_t j = 0; vs && j < pm_vecset_count(vs); j++)
			if (strcmp(pm_vecset_sha(vs, j), sha) == 0) {
				sc = pm_vecset_score(vs, j, q.vec);
				break;
			}
		json_array_append_new(
		    ph, hit_json(st, c->job, i + 1, sha, sc, hh[i].distance));
	}
	if (c->json) {
		char hx[17];
		snprintf(hx, sizeof hx, "%016llx", (unsigned long long)q.phash);
		json_t *j =
		    json_pack("{s:{s:s,s:s,s:s?,s:s?,s:i,s:I,s:f,s:f},s:o,s:o}",
			      "query", "ref", ref, "sha256", q.sha, "phash",
			      q.has_phash ? hx : NULL, "model",
			      q.vec ? q.model : NULL, "dim", q.dim, "vectors",
			      (json_int_t)(vs ? pm_vecset_count(vs) : 0),
			      "load_ms", t_load * 1000, "scan_ms",
			      t_scan * 1000, "embedding", emb, "phash", ph);
		char *t = json_dumps(j, JSON_INDENT(2));
		printf("%s\n", t ? t : "{}");
		free(t);
		json_decref(j);
		emb = ph = NULL;
	} else {
		char head[200];
		printf("query %.12s%s, %zu vectors, %.1f ms\n", q.sha,
		       q.stored ? " (stored item, left out)" : "",
		       vs ? pm_vecset_count(vs) : 0, (pm_now() - t0) * 1000);
		snprintf(head, sizeof head, "by embedding (%s, cosine):",
			 q.vec ? q.model : "none stored for this item");
		print_hits(head, emb);
		print_hits("by perceptual hash (Hamming distance d):", ph);
	}
out:
	json_decref(emb);
	json_decref(ph);
	free(vh);
	free(hh);
	free(only.sha);
	free(q.vec);
	pm_vecset_free(vs);
	pm_hashset_clear(&hs);
	pm_store_close(st);
	if (s) {
		fprintf(stderr, "pixmill search: %s\n",
			err.msg[0] ? err.msg : pm_status_code(s));
		return pm_status_exit(s);
	}
	return 0;
}

int pm_cmd_search(int argc, char **argv)
{
	search_cli c = {.db = "pixmill-out/pixmill.db"};
	int i = pm_cli_parse("search", argc, argv, search_opt, &c);
	const char *verb;

	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (i + 2 != argc)
		return pm_cli_usage_error("search", "expected text QUERY or "
						    "image FILE|ITEM");
	verb = argv[i];
	if (strcmp(verb, "text") == 0)
		return search_text(&c, argv[i + 1]);
	if (strcmp(verb, "image") == 0) {
		if (c.category || c.has_text)
			return pm_cli_usage_error(
			    "search", "--category and --has-text are for "
				      "search text");
		return search_image(&c, argv[i + 1]);
	}
	return pm_cli_usage_error("search", "unknown search kind %s", verb);
}
