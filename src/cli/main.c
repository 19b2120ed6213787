/* main.c — pixmill's entry point: the option table, the subcommand table,
 * the generic parser, and help generated from the tables.
 *
 * Threads: main thread only.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <vips/vips.h>

#include "cli/cli.h"
#include "core/util.h"
#include "image/image.h"

/* jemalloc reads this at start-up (MALLOC_CONF in the environment still
 * overrides it). Measured on the 28-photo corpus, 2 workers (see
 * docs/BENCHMARKS.md): progressive JPEG decoding zeroes a coefficient
 * buffer of ~3 bytes per source pixel per image, and on this VM each first
 * touch of a 4 KiB page costs ~15 us, so page faults were a third of the
 * run. Transparent huge pages cut faults tenfold and wall time ~1.8x
 * (1.15 s -> 0.63 s). One arena (the workers' small allocations go through
 * per-thread caches anyway) keeps peak RSS at ~125 MB instead of ~180 MB
 * with four. No oversize arena: it purges big buffers at once, so the next
 * image faults them in again. Dirty pages go back to the OS after 5 s, so
 * RSS follows the working set on long runs. Harmless with another malloc. */
const char *malloc_conf = "oversize_threshold:0,narenas:1,thp:always,"
			  "metadata_thp:auto,dirty_decay_ms:5000,"
			  "muzzy_decay_ms:0,background_thread:true";

/* The one option table. `cmds` lists the subcommands that take the
 * option; the same row feeds getopt_long, --help and docs/OPTIONS.md. */
const pm_opt pm_opts[] = {
    {"run status inspect dlq queue serve hash-key models search dupes worker",
     "help", 'h', NULL, NULL, "show this help and exit", OPT_HELP},
    {"run", "out", 'o', "DIR", "pixmill-out",
     "output root: thumbnails, manifests and (by default) the database",
     OPT_OUT},
    {"run status dlq queue serve search dupes", "db", 0, "FILE|URL",
     "OUT/pixmill.db",
     "store: an SQLite file (or sqlite:PATH), or a PostgreSQL URL "
     "postgres://USER[:PASSWORD]@HOST[:PORT]/DB (libpq; passwords are "
     "masked in output)",
     OPT_DB},
    {"worker", "db", 0, "URL", "required",
     "the shared store the jobs were enqueued in: a PostgreSQL URL, or an "
     "SQLite file for workers on one machine",
     OPT_DB},
    {"worker", "out", 'o', "DIR", "the job's output root",
     "output root on this machine, when the shared root is mounted "
     "elsewhere than where the job was enqueued",
     OPT_OUT},
    {"run", "pipeline", 'p', "NAME|FILE", "thumbnails",
     "built-in pipeline (thumbnails, hashes, ocr, recipes, cutout, ads, "
     "catalog) "
     "or a pipeline JSON file",
     OPT_PIPELINE},
    {"run serve worker", "workers", 'j', "N", "number of cores",
     "image worker threads (libvips runs 1 thread in each)", OPT_WORKERS},
    {"run worker", "memory-limit", 'm', "SIZE", "none",
     "throttle workers to stay under this RSS, e.g. 512M, 2G",
     OPT_MEMORY_LIMIT},
    {"run", "format", 'f', "KIND", "auto",
     "catalog kind: auto, csv, jsonl, list, folder", OPT_FORMAT},
    {"run", "sizes", 's', "LIST", "128,512,1024",
     "thumbnail long edges in px, never enlarged", OPT_SIZES},
    {"run", "formats", 'F', "LIST", "webp",
     "output formats: webp, jpeg, png, avif", OPT_FORMATS},
    {"run", "quality", 'q', "1-100", "webp 80, jpeg 82, avif 50",
     "quality of every lossy output format", OPT_QUALITY},
    {"run serve worker", "templates", 0, "DIR",
     "PIXMILL_TEMPLATES or templates/",
     "folder of ad templates for the compose stage (docs/TEMPLATES.md)",
     OPT_TEMPLATES},
    {"run inspect serve worker", "max-bytes", 0, "SIZE", "256M",
     "refuse sources larger than this", OPT_MAX_BYTES},
    {"run inspect serve worker", "max-pixels", 0, "N", "100000000",
     "refuse images with more pixels (checked before decoding)",
     OPT_MAX_PIXELS},
    {"run inspect serve worker", "max-dimension", 0, "PX", "30000",
     "refuse images wider or taller than this", OPT_MAX_DIM},
    {"run serve worker", "min-dimension", 0, "PX", "0 (any)",
     "refuse images whose short edge is under PX; a row with several "
     "image candidates (image_urls) takes the next one",
     OPT_MIN_DIM},
    {"run inspect serve worker", "max-frames", 0, "N", "1000",
     "refuse files with more frames or pages", OPT_MAX_FRAMES},
    {"run serve worker", "durability", 0, "MODE", "file",
     "file: fsync each output before rename; batch: one syncfs per "
     "commit; none: leave it to the OS",
     OPT_DURABILITY},
    {"run", "keep-metadata", 0, NULL, NULL,
     "keep EXIF, XMP and ICC in outputs (dropped by default)", OPT_KEEP_META},
    {"run", "no-dedup", 0, NULL, NULL,
     "process identical source bytes again instead of once", OPT_NO_DEDUP},
    {"run", "retry-failed", 0, NULL, NULL,
     "also redo items that failed in an earlier run", OPT_RETRY_FAILED},
    {"run", "all-files", 0, NULL, NULL,
     "folders: take every file, not only image file names", OPT_ALL_FILES},
    {"run", "refresh", 0, NULL, NULL,
     "re-check done http(s) images with conditional requests (ETag, "
     "Last-Modified); unchanged ones cost a 304, changed ones are redone",
     OPT_REFRESH},
    {"run serve worker", "allow-private", 0, NULL, NULL,
     "fetch from private, loopback and link-local addresses (refused by "
     "default: SSRF guard)",
     OPT_ALLOW_PRIVATE},
    {"run serve worker", "allow-host", 0, "LIST", NULL,
     "hosts and CIDRs fetched even when private, e.g. "
     "intranet.example,10.1.0.0/16",
     OPT_ALLOW_HOST},
    {"run serve worker", "max-transfers", 0, "N", "64",
     "http(s) transfers at once", OPT_MAX_TRANSFERS},
    {"run serve worker", "per-host", 0, "N", "8",
     "transfers at once to one host", OPT_PER_HOST},
    {"run serve worker", "per-host-rps", 0, "R", "10",
     "requests per second to one host (0: no limit)", OPT_PER_HOST_RPS},
    {"run serve worker", "host-limit", 0, "LIST", NULL,
     "per-host overrides of the two above, HOST=N[/RPS] comma-separated; "
     "HOST may be *.domain, e.g. cdn.example=32/200,*.shop.example=2/1",
     OPT_HOST_LIMIT},
    {"run serve worker", "search-provider", 0, "SPEC", NULL,
     "an image search provider for rows that name no image, tried in the "
     "order given (repeatable): google|bing[,name=N][,endpoint=URL]"
     "[,key=env:VAR][,cx=ID][,rps=2][,quota=REQ_PER_DAY][,max=10]"
     "[,query=title+brand][,timeout=10][,attempts=3] (docs/PROVIDERS.md)",
     OPT_SEARCH_PROVIDER},
    {"run serve worker", "ca-file", 0, "FILE", "the system's",
     "PEM certificates trusted for https origins (an intranet CA)",
     OPT_CA_FILE},
    {"run serve worker", "connect-timeout", 0, "SEC", "10", "connect timeout",
     OPT_CONNECT_TIMEOUT},
    {"run serve worker", "timeout", 0, "SEC", "60", "whole-transfer timeout",
     OPT_TIMEOUT},
    {"run serve worker", "max-attempts", 0, "N", "4",
     "requests per URL before it fails (backoff with jitter between; "
     "Retry-After honoured)",
     OPT_MAX_ATTEMPTS},
    {"run serve worker", "breaker-failures", 0, "N", "5",
     "consecutive failures that open a host's circuit (0: no breaker)",
     OPT_BREAKER_FAILURES},
    {"run serve worker", "breaker-open", 0, "SEC", "30",
     "how long an open circuit waits before one probe request",
     OPT_BREAKER_OPEN},
    {"run", "progress", 0, "MODE", "auto",
     "auto (bar on a TTY, else lines), bar, plain, none", OPT_PROGRESS},
    {"run", "queue-depth", 0, "N", "4 x workers",
     "items held in each queue between threads", OPT_QUEUE_DEPTH},
    {"run serve worker", "url-cache", 0, "MIB", "64",
     "memory for bodies of URLs fetched this run, so a URL on many rows is "
     "downloaded once (0: only merge requests in flight)",
     OPT_URL_CACHE},
    {"run", "quiet", 0, NULL, NULL, "no progress, no summary", OPT_QUIET},
    {"run", "enqueue-only", 0, NULL, NULL,
     "do not process: put the catalog's records in the store's shared queue "
     "for `pixmill worker` processes (same job as a local run; "
     "re-running adds only what is missing)",
     OPT_ENQUEUE_ONLY},
    {"run", "priority", 0, "N", "0",
     "--enqueue-only: queue priority of the records; workers take higher "
     "first and leave a job for one of higher priority",
     OPT_PRIORITY},
    {"serve", "enqueue", 0, NULL, NULL,
     "jobs posted to /api/jobs are not run here but enqueued in the shared "
     "store (--db) for `pixmill worker` processes",
     OPT_ENQUEUE},
    {"worker", "pipelines", 0, "LIST", "any",
     "only jobs of these pipelines (names, comma-separated)", OPT_PIPELINES},
    {"worker", "lease", 0, "SEC", "30",
     "lease of each claim; renewed every third of it while the worker "
     "lives, taken over by other workers once expired",
     OPT_LEASE},
    {"worker", "batch", 0, "N", "4 x workers", "records claimed at once",
     OPT_BATCH},
    {"worker", "id", 0, "NAME", "HOST:PID",
     "this worker's name in leases, logs, manifests and the attempt history",
     OPT_ID},
    {"worker", "exit-when-idle", 0, NULL, NULL,
     "exit once nothing is queued or claimed (tests, batch jobs) instead of "
     "waiting for more",
     OPT_EXIT_WHEN_IDLE},
    {"run status inspect dlq queue search dupes models worker", "json", 0, NULL,
     NULL, "machine-readable JSON on stdout", OPT_JSON},
    {"run serve worker", "verbose", 'v', NULL, NULL, "log every failed item",
     OPT_VERBOSE},
    {"run serve status worker", "redis", 0, "URL", "none",
     "share rate limits, a lookup cache and progress with a fleet through "
     "Redis: redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] or unix:///PATH "
     "(optional: when it is down, local limits and the store apply; "
     "docs/REDIS.md)",
     OPT_REDIS},
    {"status", "watch", 0, NULL, NULL,
     "print the fleet's progress messages live (needs --redis; --limit N: "
     "stop after N messages)",
     OPT_WATCH},
    {"status dlq search", "limit", 'n', "N", "20",
     "show at most N jobs (dlq: items; search: hits, image: 10)", OPT_LIMIT},
    {"dlq search dupes status queue", "job", 0, "ID", "every job",
     "only this job's items (status: only this job; queue prune: only this "
     "job's queue rows)",
     OPT_JOB},
    {"queue", "older-than", 0, "DURATION", "7d",
     "prune: only jobs that finished (done, failed, cancelled) longer ago "
     "than this: N seconds, or Ns, Nm, Nh, Nd (0: any finished job)",
     OPT_OLDER_THAN},
    {"queue", "dry-run", 0, NULL, NULL,
     "prune: count what would be deleted, delete nothing", OPT_DRY_RUN},
    {"status", "item", 0, "KEY", NULL,
     "with --job: the item's attempt history in the shared queue (claims, "
     "expired leases, retries, result)",
     OPT_ITEM},
    {"search", "k", 'k', "N", "10",
     "search image: nearest images per list (same as --limit)", OPT_K},
    {"search", "category", 0, "NAME", "any",
     "search text: only items of this category (exact)", OPT_CATEGORY},
    {"search", "has-text", 0, NULL, NULL,
     "search text: only items whose image has OCR text", OPT_HAS_TEXT},
    {"search", "model", 0, "FILE", "built-in",
     "search image: ONNX model descriptor the vectors were made with",
     OPT_EMBED_MODEL},
    {"dupes", "threshold", 't', "N", "6",
     "near duplicates: pHash Hamming distance at most N (0-64)", OPT_THRESHOLD},
    {"dlq", "reason", 0, "CODE", "any",
     "only items that failed with this code (e.g. io_error, decode_error)",
     OPT_REASON},
    {"serve", "listen", 'l', "ADDR:PORT", "127.0.0.1:8080",
     "address and port to serve on: an IPv4 address, :PORT (every IPv4 "
     "address) or [IPv6]:PORT (port 0: any free port)",
     OPT_LISTEN},
    {"serve", "data", 'd', "DIR", "pixmill-data",
     "data folder: database, outputs (DIR/out) and submitted catalogs",
     OPT_DATA},
    {"serve", "config", 'c', "FILE", NULL,
     "JSON config: API keys, rate limit, CORS, body and queue limits "
     "(docs/API.md)",
     OPT_CONFIG},
    {"serve", "http-threads", 0, "N", "number of cores",
     "HTTP threads (epoll, one event loop each)", OPT_HTTP_THREADS},
    {"serve", "db-pool", 0, "N", "HTTP threads, at most 4",
     "store connections the HTTP threads share (1-256): a request borrows "
     "one and gives it back when answered; past 5 s of waiting it gets "
     "503 (docs/POSTGRES.md)",
     OPT_DB_POOL},
    {"worker", "listen", 0, "ADDR:PORT", "off",
     "serve GET /metrics (Prometheus) and GET /health on this address: "
     "127.0.0.1:9464, :9464 (every IPv4 address), [::1]:9464; port 0: any "
     "free port (docs/FLEET.md)",
     OPT_LISTEN},
    {"serve worker", "port-file", 0, "FILE", NULL,
     "write the port served on to FILE once listening (for scripts)",
     OPT_PORT_FILE},
    {"models", "models-dir", 0, "DIR",
     "$PIXMILL_MODELS, else "
     "$XDG_DATA_HOME/pixmill/models, else ~/.local/share/pixmill/models",
     "where downloaded models are kept", OPT_MODELS_DIR},
    {"models", "accept-license", 0, NULL, NULL,
     "install: accept the model's licence (ISNet: AGPL-3.0) without asking",
     OPT_ACCEPT_LICENSE},
    {"models", "threads", 0, "N", "1", "mask: ONNX Runtime intra-op threads",
     OPT_THREADS},
    {"models", "repeat", 0, "N", "1",
     "mask: run the model N times and report each time (benchmarks)",
     OPT_REPEAT},
    {"help", "markdown", 0, NULL, NULL,
     "print the options reference as Markdown", OPT_MARKDOWN},
    {NULL, NULL, 0, NULL, NULL, NULL, 0},
};

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

const pm_cmd pm_cmds[] = {
    {"run", "CATALOG",
     "process a catalog (CSV, JSON Lines, list of paths, or folder); "
     "resumable",
     pm_cmd_run},
    {"status", "", "show jobs and their counts", pm_cmd_status},
    {"inspect", "FILE", "show what pixmill sees in one image", pm_cmd_inspect},
    {"dlq", "list|show KEY|retry",
     "the dead-letter queue: items that failed for good, and sending them "
     "back",
     pm_cmd_dlq},
    {"queue", "prune",
     "upkeep of the shared queue: prune deletes the queue rows and attempt "
     "history of finished jobs (items and results stay)",
     pm_cmd_queue},
    {"search", "text QUERY | image FILE|ITEM",
     "full-text search (titles, attributes, OCR text) or nearest images "
     "(embedding, pHash)",
     pm_cmd_search},
    {"dupes", "",
     "groups of exact (SHA-256) and near (pHash) duplicates, with a keep "
     "suggestion",
     pm_cmd_dupes},
    {"serve", "",
     "HTTP API, dashboard and metrics, with the workers in-process",
     pm_cmd_serve},
    {"hash-key", "",
     "read an API key on stdin, print the SHA-256 to put in the serve "
     "config",
     pm_cmd_hash_key},
    {"worker", "",
     "take jobs from a shared store's queue and process them (many "
     "machines, one PostgreSQL)",
     pm_cmd_worker},
    {"models", "list|install NAME|mask IMAGE [OUT]",
     "downloaded models (ISNet for the cutout stage): list, install, try",
     pm_cmd_models},
    {"help", "[COMMAND]", "show help for pixmill or a command", cmd_help},
    {"version", "", "print the version", cmd_version},
    {NULL, NULL, NULL, NULL},
};

static bool in_cmd(const pm_opt *o, const char *cmd)
{
	size_t n = strlen(cmd);

	for (const char *p = o->cmds; (p = strstr(p, cmd)); p += n)
		if ((p == o->cmds || p[-1] == ' ') &&
		    (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

int pm_cli_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end || errno || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int pm_cli_job(const char *cmd, const char *arg, long long *job)
{
	long v;

	if (pm_cli_long(arg, 1, LONG_MAX, &v))
		return pm_cli_usage_error(cmd, "--job wants a job id");
	*job = v;
	return 0;
}

int pm_cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pixmill %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'pixmill %s --help'.\n", cmd);
	return 2;
}

int pm_cli_parse(const char *cmd, int argc, char **argv,
		 int (*on_opt)(int id, const char *arg, void *ud), void *ud)
{
	struct option lo[64];
	char so[128];
	int n = 0, ns = 0, c;

	/* GNU argument permutation (options after positionals) is what users
	 * expect; a leading ':' makes getopt report missing values. */
	so[ns++] = ':';
	for (const pm_opt *o = pm_opts; o->name; o++) {
		if (!in_cmd(o, cmd))
			continue;
		lo[n].name = o->name;
		lo[n].has_arg = o->arg ? required_argument : no_argument;
		lo[n].flag = NULL;
		lo[n].val = o->id;
		n++;
		if (o->short_name) {
			so[ns++] = o->short_name;
			if (o->arg)
				so[ns++] = ':';
		}
	}
	memset(&lo[n], 0, sizeof lo[n]);
	so[ns] = '\0';
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		int id = c;
		if (c == '?') {
			if (optopt)
				return pm_cli_usage_error(
					   cmd, "unknown option -%c", optopt),
				       -1;
			return pm_cli_usage_error(cmd, "unknown option %s",
						  argv[optind - 1]),
			       -1;
		}
		if (c == ':')
			return pm_cli_usage_error(cmd, "%s needs a value",
						  argv[optind - 1]),
			       -1;
		if (c < OPT_HELP) /* a short option: find its id */
			for (const pm_opt *o = pm_opts; o->name; o++)
				if (o->short_name == c && in_cmd(o, cmd))
					id = o->id;
		if (id == OPT_HELP) {
			pm_cli_help(cmd, false);
			return -2;
		}
		if (on_opt(id, optarg, ud))
			return -1;
	}
	return optind;
}

static const pm_cmd *find_cmd(const char *name)
{
	for (const pm_cmd *c = pm_cmds; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

static void help_overview(void)
{
	printf(
	    "pixmill %s — turns image catalogs into thumbnails, web formats, "
	    "hashes and records.\n\n"
	    "Usage: pixmill COMMAND [OPTIONS] [ARGS]\n\nCommands:\n",
	    PM_VERSION);
	for (const pm_cmd *c = pm_cmds; c->name; c++)
		printf("  %-9s %s\n", c->name, c->summary);
	printf("\nRun 'pixmill COMMAND --help' for a command's options.\n"
	       "Exit codes: 0 ok, 1 some items failed, 2 usage, 3 bad input, "
	       "4 store or I/O, 5 internal, 130 interrupted.\n");
}

/* One Markdown table cell: '|' escaped so "NAME|FILE" stays one cell. */
static void md_cell(const char *s)
{
	putchar(' ');
	for (; s && *s; s++) {
		if (*s == '|')
			putchar('\\');
		putchar(*s);
	}
	printf(" |");
}

void pm_cli_help(const char *cmd, bool markdown)
{
	const pm_cmd *c = find_cmd(cmd);

	if (!c) {
		help_overview();
		return;
	}
	if (markdown) {
		printf("## pixmill %s %s\n\n%s.\n\n", c->name, c->args,
		       c->summary);
		printf("| option | value | default | meaning |\n"
		       "|---|---|---|---|\n");
	} else {
		printf("Usage: pixmill %s [OPTIONS] %s\n%s.\n\nOptions:\n",
		       c->name, c->args, c->summary);
	}
	for (const pm_opt *o = pm_opts; o->name; o++) {
		char left[64];
		if (!in_cmd(o, cmd))
			continue;
		if (markdown) {
			if (o->short_name)
				printf("| `-%c`, `--%s` |", o->short_name,
				       o->name);
			else
				printf("| `--%s` |", o->name);
			md_cell(o->arg);
			md_cell(o->deflt);
			md_cell(o->help);
			printf("\n");
			continue;
		}
		if (o->short_name)
			snprintf(left, sizeof left, "-%c, --%s%s%s",
				 o->short_name, o->name, o->arg ? " " : "",
				 o->arg ? o->arg : "");
		else
			snprintf(left, sizeof left, "    --%s%s%s", o->name,
				 o->arg ? " " : "", o->arg ? o->arg : "");
		printf("  %-28s %s", left, o->help);
		if (o->deflt)
			printf(" [%s]", o->deflt);
		printf("\n");
	}
	if (markdown)
		printf("\n");
}

static int help_opt(int id, const char *arg, void *ud)
{
	(void)arg;
	if (id == OPT_MARKDOWN)
		*(bool *)ud = true;
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	bool md = false;
	int i = pm_cli_parse("help", argc, argv, help_opt, &md);

	if (i < 0)
		return i == -2 ? 0 : 2;
	if (md) {
		printf("# pixmill options reference\n\n"
		       "Generated by `pixmill help --markdown` from the option "
		       "table in src/cli/main.c; do not edit by hand.\n\n");
		for (const pm_cmd *c = pm_cmds; c->name; c++)
			if (strcmp(c->name, "help") &&
			    strcmp(c->name, "version"))
				pm_cli_help(c->name, true);
		printf("## Exit codes\n\n| code | meaning |\n|---|---|\n"
		       "| 0 | everything done |\n"
		       "| 1 | the run finished but some items failed "
		       "(see `pixmill status`) |\n"
		       "| 2 | usage error |\n"
		       "| 3 | bad input: catalog, pipeline or image file |\n"
		       "| 4 | store or I/O error, or the output folder is "
		       "locked by another run |\n"
		       "| 5 | internal error |\n"
		       "| 130 | interrupted (run again to resume) |\n");
		printf("\n## Environment\n\n| variable | meaning |\n"
		       "|---|---|\n"
		       "| `NO_COLOR` | no colour in terminal output |\n"
		       "| `PIXMILL_MODELS` | where models are kept "
		       "(`--models-dir`) |\n"
		       "| `PIXMILL_TEMPLATES` | ad templates folder "
		       "(`--templates`) |\n"
		       "| `PIXMILL_VISION_KEYS` | vision API keys, "
		       "comma-separated (never on the command line) |\n"
		       "| `PIXMILL_REDIS_PASSWORD` | the password of a "
		       "`--redis` URL that has none (keeps it off the "
		       "command line) |\n"
		       "| `PIXMILL_ORT_ARENA=0/1`, "
		       "`PIXMILL_ORT_MEM_PATTERN=0/1` | "
		       "ONNX Runtime memory arena / memory pattern off or on "
		       "(default: arena on for ISNet only, pattern off) |\n"
		       "| `PIXMILL_ISNET_FP16=1` | run ISNet's fp16 graph as "
		       "shipped (default: widened to fp32 at load) |\n"
		       "| `PIXMILL_VISION_URL`, `PIXMILL_VISION_MODEL` | the "
		       "vision endpoint and model of the `analyze` stage; the "
		       "`catalog` pipeline includes `analyze` only when both "
		       "are set |\n"
		       "| `PIXMILL_ORT_PROFILE=PREFIX` | ONNX "
		       "Runtime per-operator profile to PREFIX_DATE.json |\n"
		       "| `PIXMILL_NPM` | the npm used by `models install` |\n"
		       "| `PIXMILL_EXIT_GRACE` | seconds library shutdown may "
		       "take after a command before the process leaves "
		       "without it (default 20) |\n"
		       "| `PIXMILL_DRAIN_GRACE` | seconds `serve` may take to "
		       "drain after SIGTERM before it leaves with exit code 5 "
		       "and names the step it was stuck in (default 150) |\n"
		       "| `TESSDATA_PREFIX` | Tesseract language data |\n");
		return 0;
	}
	if (i < argc && find_cmd(argv[i]))
		pm_cli_help(argv[i], false);
	else
		help_overview();
	return 0;
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("pixmill %s (%s), libvips %s\n", PM_VERSION, PM_GITREV,
	       vips_version_string());
	return 0;
}

/* libvips warns on stderr about every odd file ("unknown EXIF resolution
 * unit"); with thousands of images that drowns the progress. Failures
 * already reach the item's error; warnings go to the debug log. */
static void vips_log_handler(const gchar *domain, GLogLevelFlags level,
			     const gchar *msg, gpointer ud)
{
	(void)level;
	(void)ud;
	pm_log(PM_LOG_DEBUG, "%s: %s", domain ? domain : "glib", msg);
}

double pm_cli_t0;

/* How long the library shutdown after a command (vips_shutdown, then the
 * exit handlers of libvips, ONNX Runtime, Tesseract/libgomp, jemalloc) may
 * take before the process leaves without it: PIXMILL_EXIT_GRACE seconds,
 * default 20. Everything pixmill persists is committed and closed before
 * the command returns, so skipping them loses nothing; it turns a rare
 * hang at exit (seen once in the API tests after "stopped cleanly", never
 * reproduced by hand) into a prompt exit with the command's own code and a
 * line on stderr that says so. */
static int exit_rc;
static unsigned exit_grace = 20;

static void *exit_watchdog(void *arg)
{
	static const char msg[] =
	    "pixmill: library shutdown did not finish in time "
	    "(PIXMILL_EXIT_GRACE); leaving without it\n";
	(void)arg;
	sleep(exit_grace);
	if (write(2, msg, sizeof msg - 1) < 0) {
		/* nothing more to do: we are leaving */
	}
	_exit(exit_rc);
	return NULL;
}

/* Arms exit_watchdog; if no thread can be made, exits as usual. */
static void arm_exit_watchdog(int rc)
{
	pthread_t t;
	pthread_attr_t a;

	const char *g = getenv("PIXMILL_EXIT_GRACE");

	exit_rc = rc;
	if (g && *g) {
		char *end;
		long v = strtol(g, &end, 10);
		if (*end == 0 && v >= 1 && v <= 3600)
			exit_grace = (unsigned)v;
	}
	if (pthread_attr_init(&a))
		return;
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, exit_watchdog, NULL) != 0)
		pm_log(PM_LOG_DEBUG, "exit watchdog: no thread");
	pthread_attr_destroy(&a);
}

int main(int argc, char **argv)
{
	const pm_cmd *c;
	int rc;

	pm_cli_t0 = pm_now();
	if (argc < 2) {
		help_overview();
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		help_overview();
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(0, NULL);
	c = find_cmd(argv[1]);
	if (!c) {
		fprintf(
		    stderr,
		    "pixmill: unknown command '%s'\nTry 'pixmill --help'.\n",
		    argv[1]);
		return 2;
	}
	pm_image_preinit();
	if (VIPS_INIT(argv[0])) {
		fprintf(stderr, "pixmill: libvips failed to start: %s\n",
			vips_error_buffer());
		return 5;
	}
	pm_image_global_init();
	g_log_set_handler("VIPS",
			  G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE |
			      G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG,
			  vips_log_handler, NULL);
	rc = c->fn(argc - 1, argv + 1);
	fflush(NULL); /* the watchdog's _exit does not flush stdio */
	arm_exit_watchdog(rc);
	vips_shutdown();
	return rc;
}
