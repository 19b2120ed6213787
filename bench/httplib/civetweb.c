/* civetweb benchmark server.
 *   civetweb PORT FILE NUM_THREADS [TCP_NODELAY]
 * civetweb serves one connection per worker thread (a kept-alive connection
 * holds its thread), so NUM_THREADS must cover the client's connections.
 * TCP_NODELAY (default 1): civetweb's tcp_nodelay option. Its default, 0,
 * leaves Nagle on; headers and body then go out in two writes and each
 * response waits for the client's delayed ACK (~40 ms).
 * GET /health: small JSON; GET /file: FILE via mg_send_mime_file (sendfile
 * when the build allows it). */
#include <civetweb.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "common.h"

static const char *file_path;

static int health(struct mg_connection *c, void *cb)
{
	char buf[256];
	int n = bench_health(buf, sizeof buf);

	(void)cb;
	mg_send_http_ok(c, BENCH_JSON, n);
	mg_write(c, buf, (size_t)n);
	return 200;
}

static int file(struct mg_connection *c, void *cb)
{
	(void)cb;
	mg_send_mime_file(c, file_path, BENCH_WEBP);
	return 200;
}

int main(int argc, char **argv)
{
	char listen[64];
	struct mg_callbacks cbs;
	struct mg_context *ctx;
	sigset_t set;
	int sig;

	if (argc != 4 && argc != 5) {
		fprintf(stderr,
			"usage: %s PORT FILE NUM_THREADS [TCP_NODELAY]\n",
			argv[0]);
		return 2;
	}
	file_path = argv[2];
	bench_t0 = bench_now();
	snprintf(listen, sizeof listen, "127.0.0.1:%s", argv[1]);
	const char *opts[] = {"listening_ports",
			      listen,
			      "num_threads",
			      argv[3],
			      "enable_keep_alive",
			      "yes",
			      "keep_alive_timeout_ms",
			      "10000",
			      "listen_backlog",
			      "4096",
			      "tcp_nodelay",
			      argc == 5 ? argv[4] : "1",
			      NULL};

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	mg_init_library(0);
	memset(&cbs, 0, sizeof cbs);
	ctx = mg_start(&cbs, NULL, opts);
	if (!ctx) {
		fprintf(stderr, "mg_start failed\n");
		return 1;
	}
	mg_set_request_handler(ctx, "/health$", health, NULL);
	mg_set_request_handler(ctx, "/file$", file, NULL);
	fprintf(stderr,
		"civetweb %s, %s threads, tcp_nodelay %s, on %s (features: ssl "
		"%u, http2 %u, "
		"websocket %u)\n",
		mg_version(), argv[3], argc == 5 ? argv[4] : "1", listen,
		mg_check_feature(2), mg_check_feature(0x40),
		mg_check_feature(16));
	sigwait(&set, &sig);
	mg_stop(ctx);
	mg_exit_library();
	return 0;
}
