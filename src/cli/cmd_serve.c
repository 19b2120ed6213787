/* cmd_serve.c — `pixmill serve` (options into pm_serve_opts, signals) and
 * `pixmill hash-key` (the SHA-256 of an API key for the serve config).
 *
 * Threads: main thread; the signal handler only calls pm_serve_stop (and
 * _exit on a third signal).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "fleet/fleet.h"
#include "core/util.h"
#include "serve/serve.h"

typedef struct serve_cli {
	pm_run_cli run; /* the options serve shares with run */
	pm_serve_opts o;
} serve_cli;

static int serve_opt(int id, const char *arg, void *ud)
{
	serve_cli *c = ud;
	char *end;
	long v;

	switch (id) {
	case OPT_LISTEN:
		c->o.listen = arg;
		return 0;
	case OPT_DATA:
		c->o.data = arg;
		return 0;
	case OPT_CONFIG:
		c->o.config = arg;
		return 0;
	case OPT_PORT_FILE:
		c->o.port_file = arg;
		return 0;
	case OPT_ENQUEUE:
		c->o.enqueue = true;
		return 0;
	case OPT_HTTP_THREADS:
		v = strtol(arg, &end, 10);
		if (end == arg || *end || v < 1 || v > 256)
			return pm_cli_usage_error(
			    "serve", "--http-threads wants 1 to 256");
		c->o.http_threads = (int)v;
		return 0;
	case OPT_DB_POOL:
		v = strtol(arg, &end, 10);
		if (end == arg || *end || v < 1 || v > 256)
			return pm_cli_usage_error("serve",
						  "--db-pool wants 1 to 256");
		c->o.db_pool = (int)v;
		return 0;
	}
	return pm_cli_run_opt(id, arg, &c->run);
}

static void on_signal(int sig)
{
	static volatile sig_atomic_t hits;

	(void)sig;
	if (hits++ >= 2) {
		static const char msg[] = "\npixmill: stopped hard; unfinished "
					  "jobs resume at the next start\n";
		if (write(2, msg, sizeof msg - 1) < 0) {
			/* nothing more to do in a signal handler */
		}
		_exit(130);
	}
	pm_serve_stop();
}

int pm_cmd_serve(int argc, char **argv)
{
	serve_cli c;
	pm_err err = {{0}};
	pm_status s;
	struct sigaction sa;
	int i;

	memset(&c, 0, sizeof c);
	pm_run_opts_default(&c.run.o);
	c.run.cmd = "serve";
	pm_serve_opts_default(&c.o);
	i = pm_cli_parse("serve", argc, argv, serve_opt, &c);
	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (i != argc)
		return pm_cli_usage_error("serve", "unexpected argument %s",
					  argv[i]);
	c.o.db = c.run.o.db;
	c.o.workers = c.run.o.workers;
	c.o.limits = c.run.o.limits;
	c.o.min_dimension = c.run.o.min_dimension;
	c.o.fetch = c.run.o.fetch;
	c.o.fetch.breaker_wait = true;
	memcpy(c.o.providers, c.run.o.providers, sizeof c.o.providers);
	c.o.n_providers = c.run.o.n_providers;
	c.o.durability = c.run.o.durability;
	if (c.o.enqueue && !c.o.db)
		return pm_cli_usage_error("serve", "--enqueue wants --db: the "
						   "store the workers share");
	pm_log_setup(c.run.verbose ? PM_LOG_DEBUG : PM_LOG_INFO, -1);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	s = pm_fleet_start(c.run.redis, NULL, &err);
	if (!s)
		s = pm_fleet_feed_start(&err);
	if (!s)
		s = pm_serve(&c.o, &err);
	pm_fleet_feed_stop();
	pm_fleet_stop();
	pm_cli_run_free(&c.run);
	if (s) {
		pm_log(PM_LOG_ERROR, "%s", err.msg);
		return pm_status_exit(s);
	}
	pm_log(PM_LOG_INFO, "stopped cleanly");
	return 0;
}

int pm_cmd_hash_key(int argc, char **argv)
{
	char key[4096], hex[65];
	size_t n;
	int i = pm_cli_parse("hash-key", argc, argv, NULL, NULL);

	if (i == -2)
		return 0;
	if (i < 0)
		return 2;
	if (isatty(0))
		fprintf(stderr, "API key (then Enter): ");
	if (!fgets(key, sizeof key, stdin)) {
		fprintf(stderr, "pixmill hash-key: no key on stdin\n");
		return 2;
	}
	n = strcspn(key, "\r\n");
	key[n] = 0;
	if (n < 16) {
		fprintf(stderr, "pixmill hash-key: use a key of at least 16 "
				"characters (e.g. openssl rand -hex 24)\n");
		return 2;
	}
	pm_http_key_hash(key, n, hex);
	printf("%s\n", hex);
	return 0;
}
