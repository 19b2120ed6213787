/* cmd_queue.c — `pixmill queue prune`: upkeep of the shared queue (the
 * store's queue and queue_events tables that `run --enqueue-only`,
 * `serve --enqueue` and `pixmill worker` use). prune deletes the queue
 * rows and attempt history of jobs that finished (done, failed,
 * cancelled) longer ago than --older-than; their items and results stay.
 * Meant for cron (docs/FLEET.md).
 *
 * Exit codes: 0 ok (also when nothing was old enough), 2 usage or a job
 * that is not finished, 3 no such job, 4 store error.
 *
 * Threads: main thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/util.h"
#include "store/store.h"

typedef struct queue_cli {
	const char *db;
	const char *older; /* --older-than as given, for messages */
	double older_s;
	long long job;
	bool dry_run, json;
} queue_cli;

static int queue_opt(int id, const char *arg, void *ud)
{
	queue_cli *c = ud;

	switch (id) {
	case OPT_DB:
		if (!arg[0])
			return pm_cli_usage_error("queue",
						  "--db wants a store");
		c->db = arg;
		break;
	case OPT_OLDER_THAN:
		c->older_s = pm_parse_duration(arg);
		if (c->older_s < 0)
			return pm_cli_usage_error(
			    "queue",
			    "--older-than wants a duration such as 7d, 12h, "
			    "30m or 90s (got '%s')",
			    arg);
		c->older = arg;
		break;
	case OPT_JOB:
		return pm_cli_job("queue", arg, &c->job);
	case OPT_DRY_RUN:
		c->dry_run = true;
		break;
	case OPT_JSON:
		c->json = true;
		break;
	}
	return 0;
}

int pm_cmd_queue(int argc, char **argv)
{
	queue_cli c = {.db = "pixmill-out/pixmill.db",
		       .older = "7d",
		       .older_s = 7 * 86400.0};
	pm_queue_pruned pr = {0};
	pm_store *st = NULL;
	pm_err err = {{0}};
	pm_status s;
	const char *verb;
	int i = pm_cli_parse("queue", argc, argv, queue_opt, &c);

	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (i >= argc)
		return pm_cli_usage_error("queue", "expected an action: prune");
	verb = argv[i++];
	if (strcmp(verb, "prune"))
		return pm_cli_usage_error("queue", "unknown action %s", verb);
	if (i < argc)
		return pm_cli_usage_error("queue", "unexpected argument %s",
					  argv[i]);
	/* a read-only open first: a mistyped SQLite path is an error, not
	 * a new empty store */
	s = pm_store_open(c.db, true, &st, &err);
	pm_store_close(st);
	st = NULL;
	if (!s)
		s = pm_store_open(c.db, false, &st, &err);
	if (!s)
		s = pm_store_queue_prune(st, c.job, c.older_s, c.dry_run, &pr,
					 &err);
	if (s)
		goto out;
	if (c.json) {
		json_t *o = json_pack(
		    "{s:b,s:s,s:f,s:I,s:I,s:I,s:I}", "dry_run", c.dry_run,
		    "older_than", c.older, "older_than_s", c.older_s, "job",
		    (json_int_t)c.job, "jobs", (json_int_t)pr.jobs, "rows",
		    (json_int_t)pr.rows, "events", (json_int_t)pr.events);
		char *txt = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
		printf("%s\n", txt ? txt : "{}");
		free(txt);
		json_decref(o);
	} else if (pr.jobs == 0 && c.job) {
		printf("nothing to prune: job %lld has no queue rows left, "
		       "finished less than %s ago, or a worker still holds "
		       "a row of it\n",
		       c.job, c.older);
	} else if (pr.jobs == 0) {
		printf("nothing to prune: no job that finished more than %s "
		       "ago has queue rows left\n",
		       c.older);
	} else {
		printf("%s %lld queue rows and %lld events of %lld finished "
		       "job%s (older than %s)%s\n",
		       c.dry_run ? "would delete" : "deleted",
		       (long long)pr.rows, (long long)pr.events,
		       (long long)pr.jobs, pr.jobs == 1 ? "" : "s", c.older,
		       c.dry_run ? "; nothing deleted (--dry-run)" : "");
	}
out:
	if (s)
		fprintf(stderr, "pixmill queue: %s\n",
			err.msg[0] ? err.msg : pm_status_code(s));
	pm_store_close(st);
	return s ? pm_status_exit(s) : 0;
}
