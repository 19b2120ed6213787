/* cli.h — the command line: one option table for every subcommand, from
 * which the parser, `--help` and docs/OPTIONS.md are all generated.
 *
 * Threads: main thread only.
 */
#ifndef PM_CLI_H
#define PM_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

/* Option ids: one per distinct option across subcommands. */
enum {
	OPT_HELP = 1000,
	OPT_OUT,
	OPT_DB,
	OPT_PIPELINE,
	OPT_WORKERS,
	OPT_MEMORY_LIMIT,
	OPT_FORMAT,
	OPT_SIZES,
	OPT_FORMATS,
	OPT_QUALITY,
	OPT_TEMPLATES,
	OPT_MAX_BYTES,
	OPT_MAX_PIXELS,
	OPT_MAX_DIM,
	OPT_MAX_FRAMES,
	OPT_DURABILITY,
	OPT_KEEP_META,
	OPT_NO_DEDUP,
	OPT_RETRY_FAILED,
	OPT_ALL_FILES,
	OPT_QUIET,
	OPT_JSON,
	OPT_PROGRESS,
	OPT_QUEUE_DEPTH,
	OPT_URL_CACHE,
	OPT_HOST_LIMIT,
	OPT_CA_FILE,
	OPT_VERBOSE,
	OPT_LIMIT,
	OPT_MARKDOWN,
	OPT_ALLOW_PRIVATE,
	OPT_ALLOW_HOST,
	OPT_MAX_TRANSFERS,
	OPT_PER_HOST,
	OPT_PER_HOST_RPS,
	OPT_CONNECT_TIMEOUT,
	OPT_TIMEOUT,
	OPT_MAX_ATTEMPTS,
	OPT_REASON,
	OPT_REFRESH,
	OPT_BREAKER_FAILURES,
	OPT_BREAKER_OPEN,
	OPT_JOB,
	OPT_LISTEN,
	OPT_DATA,
	OPT_CONFIG,
	OPT_HTTP_THREADS,
	OPT_DB_POOL,
	OPT_PORT_FILE,
	OPT_MIN_DIM,
	OPT_CATEGORY,
	OPT_HAS_TEXT,
	OPT_K,
	OPT_EMBED_MODEL,
	OPT_THRESHOLD,
	OPT_MODELS_DIR,
	OPT_ACCEPT_LICENSE,
	OPT_THREADS,
	OPT_REPEAT,
	OPT_SEARCH_PROVIDER,
	OPT_ENQUEUE_ONLY,
	OPT_PRIORITY,
	OPT_PIPELINES,
	OPT_LEASE,
	OPT_BATCH,
	OPT_ID,
	OPT_EXIT_WHEN_IDLE,
	OPT_ENQUEUE,
	OPT_ITEM,
	OPT_REDIS,
	OPT_WATCH,
	OPT_OLDER_THAN,
	OPT_DRY_RUN,
};

typedef struct pm_opt {
	const char *cmds;  /* space-separated subcommands it belongs to */
	const char *name;  /* long name, without -- */
	char short_name;   /* 0 if none */
	const char *arg;   /* metavar, or NULL for a flag */
	const char *deflt; /* default as shown to users, or NULL */
	const char *help;  /* one line */
	int id;
} pm_opt;

typedef struct pm_cmd {
	const char *name;
	const char *args;    /* positional arguments, for usage */
	const char *summary; /* one line */
	int (*fn)(int argc, char **argv);
} pm_cmd;

extern const pm_opt pm_opts[];
/* pm_now() at the start of main, before libvips starts. */
extern double pm_cli_t0;
extern const pm_cmd pm_cmds[];

/* Parses argv for cmd with getopt_long built from pm_opts. Calls
 * on_opt(id, optarg, ud) for each option; returns the index of the first
 * positional argument, or -1 after printing an error (usage). --help
 * prints the command's help and returns -2. */
int pm_cli_parse(const char *cmd, int argc, char **argv,
		 int (*on_opt)(int id, const char *arg, void *ud), void *ud);
void pm_cli_help(const char *cmd, bool markdown);
/* A whole decimal number in [lo, hi] into *out: 0, or -1 if malformed or
 * out of range (the caller says which option wanted what). */
int pm_cli_long(const char *s, long lo, long hi, long *out);
/* --job ID for cmd: *job = the id (>= 1), or a usage error's exit code. */
int pm_cli_job(const char *cmd, const char *arg, long long *job);
/* Error about usage, then "try pixmill CMD --help". Returns exit code 2. */
int pm_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#include "engine/run.h"
#include "fleet/fleet.h"

/* The options of `run` that other commands share (serve takes the engine,
 * limit and fetch options): on_opt for pm_cli_parse with a pm_run_cli. */
typedef struct pm_run_cli {
	pm_run_opts o;
	bool quiet, verbose;
	int progress_set;
	bool enqueue_only; /* run --enqueue-only */
	const char *cmd;   /* for error messages */
	const char *redis; /* --redis URL (src/fleet/fleet.h), or NULL */
} pm_run_cli;
int pm_cli_run_opt(int id, const char *arg, void *ud);
/* Frees the search providers --search-provider made (after the runs). */
void pm_cli_run_free(pm_run_cli *c);
/* The Redis part of a summary (run, worker): pm_cli_print_fleet prints it
 * on stderr (nothing when Redis is off); pm_cli_fleet_json returns a new
 * object (the caller's). */
void pm_cli_print_fleet(const pm_fleet_stats *f);
json_t *pm_cli_fleet_json(const pm_fleet_stats *f);

/* One provider's counters (a run's, or a day's from the store) as a JSON
 * object (a new reference), and as one line of text on f. */
json_t *pm_cli_provider_json(const pm_provider_day *d);
void pm_cli_provider_line(FILE *f, const char *indent,
			  const pm_provider_day *d);

int pm_cmd_run(int argc, char **argv);
int pm_cmd_serve(int argc, char **argv);
int pm_cmd_hash_key(int argc, char **argv);
int pm_cmd_status(int argc, char **argv);
int pm_cmd_inspect(int argc, char **argv);
int pm_cmd_dlq(int argc, char **argv);
int pm_cmd_queue(int argc, char **argv);
int pm_cmd_search(int argc, char **argv);
int pm_cmd_dupes(int argc, char **argv);
int pm_cmd_models(int argc, char **argv);
int pm_cmd_worker(int argc, char **argv);

#endif
