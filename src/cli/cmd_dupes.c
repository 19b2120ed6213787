/* cmd_dupes.c — `pixmill dupes`: groups of duplicate images among the
 * done items (of one job or of all), as a table or JSON.
 *
 *   exact  items whose sources have the same SHA-256 (the same bytes under
 *          several rows); the first item in catalog order is kept
 *   near   distinct sources whose perceptual hashes are within --threshold
 *          bits (Hamming distance), joined transitively (union-find over
 *          every pair: n^2/2 popcounts, ~50 ms at 10k sources); the source
 *          with the most pixels is kept, then the sharpest (the quality
 *          stage's Laplacian variance), then the largest file
 *
 * Threads: main thread only.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "store/store.h"

typedef struct dupes_cli {
	const char *db;
	long long job;
	int threshold;
	bool json;
} dupes_cli;

static int dupes_opt(int id, const char *arg, void *ud)
{
	dupes_cli *c = ud;
	long v;

	switch (id) {
	case OPT_DB:
		c->db = arg;
		break;
	case OPT_JOB:
		return pm_cli_job("dupes", arg, &c->job);
	case OPT_THRESHOLD:
		if (pm_cli_long(arg, 0, 64, &v))
			return pm_cli_usage_error("dupes",
						  "--threshold wants 0 to 64");
		c->threshold = (int)v;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	}
	return 0;
}

/* One done item. */
typedef struct ditem {
	int64_t job_id;
	char *key, *image, *title; /* malloc'd */
} ditem;

/* One distinct source and its items [first, first + count). */
typedef struct dsrc {
	char sha[65];
	int width, height;
	int64_t bytes;
	uint64_t phash;
	bool has_phash;
	double sharpness;
	size_t first, count;
	size_t parent; /* union-find */
} dsrc;

typedef struct dset {
	ditem *it;
	size_t n_it, cap_it;
	dsrc *src;
	size_t n_src, cap_src;
	bool oom;
} dset;

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int item_cb(const pm_asset_item *a, void *ud)
{
	dset *d = ud;

	if (!a->sha256)
		return 0;
	if (d->n_it == d->cap_it) {
		size_t cap = d->cap_it ? 2 * d->cap_it : 256;
		ditem *n = realloc(d->it, cap * sizeof *n);
		if (!n)
			return d->oom = true;
		d->it = n;
		d->cap_it = cap;
	}
	if (!d->n_src || strcmp(d->src[d->n_src - 1].sha, a->sha256)) {
		if (d->n_src == d->cap_src) {
			size_t cap = d->cap_src ? 2 * d->cap_src : 256;
			dsrc *n = realloc(d->src, cap * sizeof *n);
			if (!n)
				return d->oom = true;
			d->src = n;
			d->cap_src = cap;
		}
		dsrc *s = &d->src[d->n_src];
		memset(s, 0, sizeof *s);
		snprintf(s->sha, sizeof s->sha, "%s", a->sha256);
		s->first = d->n_it;
		s->parent = d->n_src;
		d->n_src++;
	}
	/* The same source under several pipelines: keep the best facts. */
	dsrc *s = &d->src[d->n_src - 1];
	if ((int64_t)a->width * a->height > (int64_t)s->width * s->height) {
		s->width = a->width;
		s->height = a->height;
	}
	if (a->bytes > s->bytes)
		s->bytes = a->bytes;
	if (a->has_phash && !s->has_phash) {
		s->phash = a->phash;
		s->has_phash = true;
	}
	if (s->count == 0 ||
	    (!isnan(a->sharpness) &&
	     (isnan(s->sharpness) || a->sharpness > s->sharpness)))
		s->sharpness = a->sharpness;
	s->count++;
	ditem *it = &d->it[d->n_it++];
	it->job_id = a->job_id;
	it->key = dup_or_null(a->key);
	it->image = dup_or_null(a->image);
	it->title = dup_or_null(a->title);
	return 0;
}

static size_t uf_find(dsrc *s, size_t i)
{
	while (s[i].parent != i) {
		s[i].parent = s[s[i].parent].parent;
		i = s[i].parent;
	}
	return i;
}

/* Whether a is a better keeper than b: more pixels, sharper, bigger. */
static bool better(const dsrc *a, const dsrc *b)
{
	int64_t pa = (int64_t)a->width * a->height,
		pb = (int64_t)b->width * b->height;
	double sa = isnan(a->sharpness) ? -1 : a->sharpness,
	       sb = isnan(b->sharpness) ? -1 : b->sharpness;

	if (pa != pb)
		return pa > pb;
	if (sa != sb)
		return sa > sb;
	if (a->bytes != b->bytes)
		return a->bytes > b->bytes;
	return strcmp(a->sha, b->sha) < 0;
}

static json_t *items_json(const dset *d, const dsrc *s)
{
	json_t *arr = json_array();

	for (size_t i = s->first; i < s->first + s->count; i++)
		json_array_append_new(
		    arr, json_pack("{s:I,s:s?,s:s?,s:s?}", "job_id",
				   (json_int_t)d->it[i].job_id, "key",
				   d->it[i].key, "image", d->it[i].image,
				   "title", d->it[i].title));
	return arr;
}

/* A near group: members sorted keeper first, then by distance to it. */
typedef struct member {
	size_t src;
	int distance;
} member;

static int cmp_member(const void *a, const void *b)
{
	const member *x = a, *y = b;

	if (x->distance != y->distance)
		return x->distance - y->distance;
	return (x->src > y->src) - (x->src < y->src);
}

typedef struct group {
	size_t root, n;
	member *m;
} group;

static int cmp_group(const void *a, const void *b)
{
	const group *x = a, *y = b;

	if (x->n != y->n)
		return x->n < y->n ? 1 : -1;
	return (x->root > y->root) - (x->root < y->root);
}

static const char *show(const char *s)
{
	return s ? s : "-";
}

int pm_cmd_dupes(int argc, char **argv)
{
	dupes_cli c = {.db = "pixmill-out/pixmill.db", .threshold = 6};
	dset d = {0};
	pm_store *st = NULL;
	pm_err err = {{0}};
	pm_status s;
	group *g = NULL;
	size_t ng = 0, n_exact = 0;
	json_t *exact = json_array(), *near = json_array();
	int i = pm_cli_parse("dupes", argc, argv, dupes_opt, &c);

	if (i == -2 || i < 0) {
		json_decref(exact);
		json_decref(near);
		return i == -2 ? 0 : 2;
	}
	if (i < argc) {
		json_decref(exact);
		json_decref(near);
		return pm_cli_usage_error("dupes", "unexpected argument %s",
					  argv[i]);
	}
	s = pm_store_open_existing(c.db, &st, &err);
	if (!s)
		s = pm_store_asset_items(st, c.job, NULL, item_cb, &d, &err);
	if (!s && d.oom)
		s = pm_fail(&err, PM_ERR_NOMEM, "out of memory");
	if (s)
		goto out;

	/* exact: one source, several items */
	for (size_t k = 0; k < d.n_src; k++) {
		const dsrc *x = &d.src[k];
		if (x->count < 2)
			continue;
		n_exact++;
		json_array_append_new(
		    exact,
		    json_pack("{s:s,s:I,s:o,s:{s:I,s:s?}}", "sha256", x->sha,
			      "count", (json_int_t)x->count, "items",
			      items_json(&d, x), "keep", "job_id",
			      (json_int_t)d.it[x->first].job_id, "key",
			      d.it[x->first].key));
	}

	/* near: union-find over every pair within the threshold */
	for (size_t a = 0; a < d.n_src; a++) {
		if (!d.src[a].has_phash)
			continue;
		for (size_t b = a + 1; b < d.n_src; b++)
			if (d.src[b].has_phash &&
			    __builtin_popcountll(d.src[a].phash ^
						 d.src[b].phash) <=
				c.threshold) {
				size_t ra = uf_find(d.src, a),
				       rb = uf_find(d.src, b);
				if (ra != rb)
					d.src[rb].parent = ra;
			}
	}
	g = calloc(d.n_src ? d.n_src : 1, sizeof *g);
	if (!g) {
		s = pm_fail(&err, PM_ERR_NOMEM, "out of memory");
		goto out;
	}
	{
		/* group index per root */
		size_t *gi = malloc((d.n_src ? d.n_src : 1) * sizeof *gi);
		if (!gi) {
			s = pm_fail(&err, PM_ERR_NOMEM, "out of memory");
			goto out;
		}
		for (size_t k = 0; k < d.n_src; k++)
			gi[k] = (size_t)-1;
		for (size_t k = 0; k < d.n_src; k++) {
			size_t r = uf_find(d.src, k);
			if (gi[r] == (size_t)-1) {
				gi[r] = ng;
				g[ng++].root = r;
			}
			g[gi[r]].n++;
		}
		for (size_t k = 0; k < ng; k++) {
			g[k].m =
			    g[k].n > 1 ? calloc(g[k].n, sizeof(member)) : NULL;
			if (g[k].n > 1 && !g[k].m) {
				free(gi);
				s = pm_fail(&err, PM_ERR_NOMEM,
					    "out of memory");
				goto out;
			}
			g[k].n = 0;
		}
		for (size_t k = 0; k < d.n_src; k++) {
			group *x = &g[gi[uf_find(d.src, k)]];
			if (x->m)
				x->m[x->n].src = k;
			x->n++;
		}
		free(gi);
	}
	qsort(g, ng, sizeof *g, cmp_group);
	for (size_t k = 0; k < ng && g[k].n > 1; k++) {
		group *x = &g[k];
		size_t keep = x->m[0].src;
		json_t *mem = json_array();
		for (size_t j = 1; j < x->n; j++)
			if (better(&d.src[x->m[j].src], &d.src[keep]))
				keep = x->m[j].src;
		for (size_t j = 0; j < x->n; j++)
			x->m[j].distance = x->m[j].src == keep
					       ? -1 /* sorts first */
					       : __builtin_popcountll(
						     d.src[keep].phash ^
						     d.src[x->m[j].src].phash);
		qsort(x->m, x->n, sizeof *x->m, cmp_member);
		for (size_t j = 0; j < x->n; j++) {
			const dsrc *m = &d.src[x->m[j].src];
			json_array_append_new(
			    mem, json_pack("{s:s,s:b,s:i,s:i,s:i,s:I,s:o,s:o}",
					   "sha256", m->sha, "keep", j == 0,
					   "distance", j ? x->m[j].distance : 0,
					   "width", m->width, "height",
					   m->height, "bytes",
					   (json_int_t)m->bytes, "sharpness",
					   isnan(m->sharpness)
					       ? json_null()
					       : json_real(m->sharpness),
					   "items", items_json(&d, m)));
		}
		json_array_append_new(near, json_pack("{s:s,s:o}", "keep",
						      d.src[keep].sha,
						      "members", mem));
	}

	if (c.json) {
		json_t *j = json_pack(
		    "{s:i,s:o,s:I,s:I,s:o,s:o}", "threshold", c.threshold,
		    "job", c.job ? json_integer(c.job) : json_null(), "items",
		    (json_int_t)d.n_it, "sources", (json_int_t)d.n_src, "exact",
		    exact, "near", near);
		char *t = json_dumps(j, JSON_INDENT(2));
		printf("%s\n", t ? t : "{}");
		free(t);
		json_decref(j);
		exact = near = NULL;
		goto out;
	}
	printf("%zu items, %zu distinct images\n", d.n_it, d.n_src);
	printf("\nexact duplicates (same bytes): %zu group%s\n", n_exact,
	       n_exact == 1 ? "" : "s");
	{
		size_t gi;
		json_t *e;
		json_array_foreach(exact, gi, e)
		{
			size_t ii;
			json_t *it;
			printf("  %.12s  %d items\n",
			       json_string_value(json_object_get(e, "sha256")),
			       (int)json_integer_value(
				   json_object_get(e, "count")));
			json_array_foreach(json_object_get(e, "items"), ii, it)
			    printf("    %s  job %-3d %-12s %s\n",
				   ii ? "    " : "keep",
				   (int)json_integer_value(
				       json_object_get(it, "job_id")),
				   show(json_string_value(
				       json_object_get(it, "key"))),
				   show(json_string_value(
				       json_object_get(it, "image"))));
		}
	}
	printf("\nnear duplicates (pHash distance <= %d): %zu group%s\n",
	       c.threshold, json_array_size(near),
	       json_array_size(near) == 1 ? "" : "s");
	{
		size_t gi;
		json_t *e;
		json_array_foreach(near, gi, e)
		{
			size_t mi;
			json_t *m;
			printf("  group %zu\n", gi + 1);
			json_array_foreach(json_object_get(e, "members"), mi, m)
			{
				json_t *sh = json_object_get(m, "sharpness");
				json_t *its = json_object_get(m, "items");
				char shs[24] = "-";
				if (json_is_real(sh))
					snprintf(shs, sizeof shs, "%.1f",
						 json_real_value(sh));
				printf(
				    "    %s  %.12s  d %2d  %5dx%-5d sharp %-8s "
				    "%s%s\n",
				    mi ? "    " : "keep",
				    json_string_value(
					json_object_get(m, "sha256")),
				    (int)json_integer_value(
					json_object_get(m, "distance")),
				    (int)json_integer_value(
					json_object_get(m, "width")),
				    (int)json_integer_value(
					json_object_get(m, "height")),
				    shs,
				    show(json_string_value(json_object_get(
					json_array_get(its, 0), "image"))),
				    json_array_size(its) > 1 ? " (+more)" : "");
			}
		}
	}
out:
	json_decref(exact);
	json_decref(near);
	for (size_t k = 0; k < ng; k++)
		free(g[k].m);
	free(g);
	for (size_t k = 0; k < d.n_it; k++) {
		free(d.it[k].key);
		free(d.it[k].image);
		free(d.it[k].title);
	}
	free(d.it);
	free(d.src);
	pm_store_close(st);
	if (s) {
		fprintf(stderr, "pixmill dupes: %s\n",
			err.msg[0] ? err.msg : pm_status_code(s));
		return pm_status_exit(s);
	}
	return 0;
}
