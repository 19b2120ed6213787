/* cmd_dlq.c — `pixmill dlq list|show|retry`: the dead-letter queue, i.e.
 * the items that failed for good (after their attempts), with their reasons;
 * `retry` sends them back so the next run of their job processes them.
 *
 * Threads: main thread only.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli/cli.h"
#include "store/store.h"

typedef struct dlq_cli {
	const char *db;
	const char *reason;
	long long job;
	long limit;
	bool json;
} dlq_cli;

static int dlq_opt(int id, const char *arg, void *ud)
{
	dlq_cli *c = ud;

	switch (id) {
	case OPT_DB:
		c->db = arg;
		break;
	case OPT_REASON:
		c->reason = arg;
		break;
	case OPT_JOB:
		return pm_cli_job("dlq", arg, &c->job);
	case OPT_LIMIT:
		if (pm_cli_long(arg, 1, LONG_MAX, &c->limit))
			return pm_cli_usage_error("dlq",
						  "--limit wants a count");
		break;
	case OPT_JSON:
		c->json = true;
		break;
	}
	return 0;
}

typedef struct dlq_out {
	bool json, full;
	json_t *arr;
	int n;
} dlq_out;

static int dlq_item(const pm_failed_info *fi, void *ud)
{
	dlq_out *o = ud;

	o->n++;
	if (o->json) {
		json_array_append_new(
		    o->arr,
		    json_pack("{s:I,s:s,s:s?,s:s,s:s?,s:i,s:f,s:s}", "job",
			      (json_int_t)fi->job_id, "key", fi->key, "image",
			      fi->image, "code", fi->code, "error", fi->error,
			      "attempts", fi->attempts, "updated", fi->updated,
			      "catalog", fi->catalog));
	} else if (o->full) {
		char when[32];
		time_t t = (time_t)fi->updated;
		struct tm tm;
		localtime_r(&t, &tm);
		strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
		printf("job       %lld (%s)\nkey       %s\nimage     %s\n"
		       "code      %s\nattempts  %d\nupdated   %s\nerror     "
		       "%s\n\n",
		       (long long)fi->job_id, fi->catalog, fi->key,
		       fi->image ? fi->image : "-", fi->code, fi->attempts,
		       when, fi->error ? fi->error : "");
	} else {
		printf("%-5lld %-14s %-16s %.100s\n", (long long)fi->job_id,
		       fi->key, fi->code, fi->error ? fi->error : "");
	}
	return 0;
}

int pm_cmd_dlq(int argc, char **argv)
{
	dlq_cli c = {.db = "pixmill-out/pixmill.db"};
	dlq_out out = {0};
	pm_store *st = NULL;
	pm_err err = {{0}};
	pm_status s;
	const char *verb, *key = NULL;
	int i = pm_cli_parse("dlq", argc, argv, dlq_opt, &c);

	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (i >= argc)
		return pm_cli_usage_error("dlq", "expected list, show KEY or "
						 "retry");
	verb = argv[i++];
	if (strcmp(verb, "show") == 0) {
		if (i >= argc)
			return pm_cli_usage_error("dlq", "show wants an item "
							 "KEY (see dlq list)");
		key = argv[i++];
	} else if (strcmp(verb, "list") && strcmp(verb, "retry")) {
		return pm_cli_usage_error("dlq", "unknown action %s", verb);
	}
	if (i < argc)
		return pm_cli_usage_error("dlq", "unexpected argument %s",
					  argv[i]);
	s = pm_store_open(c.db, strcmp(verb, "retry") != 0, &st, &err);
	if (s)
		goto out;
	if (strcmp(verb, "retry") == 0) {
		int64_t n = 0;
		s = pm_store_retry_failed(st, c.job, c.reason, NULL, &n, &err);
		if (s)
			goto out;
		if (c.json)
			printf("{\"sent_back\": %lld}\n", (long long)n);
		else
			printf("%lld failed items sent back; run their "
			       "catalog again with the same options to "
			       "process them\n",
			       (long long)n);
		goto out;
	}
	out.json = c.json;
	out.full = key != NULL;
	out.arr = json_array();
	s = pm_store_failed(st, c.job, c.reason, key, key ? 0 : (int)c.limit,
			    dlq_item, &out, &err);
	if (!s && c.json) {
		char *txt = json_dumps(out.arr, JSON_INDENT(2));
		printf("%s\n", txt ? txt : "[]");
		free(txt);
	} else if (!s && out.n == 0) {
		printf(key ? "no failed item %s\n" : "no failed items%s\n",
		       key ? key : "");
		if (key)
			s = PM_ERR_NOT_FOUND;
	}
	json_decref(out.arr);
out:
	if (s)
		fprintf(stderr, "pixmill dlq: %s\n",
			err.msg[0] ? err.msg : pm_status_code(s));
	pm_store_close(st);
	return s ? pm_status_exit(s) : 0;
}
