/* h2o (libh2o-evloop) benchmark server.
 *   h2o PORT FILE NTHREADS
 * One h2o_context_t and evloop per thread, each with its own listening
 * socket on the same port (SO_REUSEPORT: the kernel spreads connections),
 * sharing one h2o_globalconf_t, as the h2o server does per thread.
 * GET /health: small JSON; GET /file: FILE via h2o's file handler
 * (h2o_file_register_file; it pread()s into buffers, no sendfile). The
 * open-file cache is off so that the file is opened per request, as in the
 * other servers. */
#define H2O_USE_LIBUV 0
#include <errno.h>
#include <h2o.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

#include "common.h"

#define MAX_THREADS 16

static h2o_globalconf_t config;
static int port;

typedef struct thread_ctx {
	h2o_context_t ctx;
	h2o_accept_ctx_t accept_ctx;
} thread_ctx;

static thread_ctx threads[MAX_THREADS];

static int health(h2o_handler_t *self, h2o_req_t *req)
{
	char buf[256];
	int n;

	(void)self;
	if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")))
		return -1;
	n = bench_health(buf, sizeof buf);
	req->res.status = 200;
	req->res.reason = "OK";
	req->res.content_length = (size_t)n; /* else h2o sends it chunked */
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE,
		       NULL, H2O_STRLIT(BENCH_JSON));
	h2o_send_inline(req, buf, (size_t)n); /* copies into req->pool */
	return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
	thread_ctx *t = listener->data;
	h2o_socket_t *sock;

	if (err != NULL)
		return;
	if ((sock = h2o_evloop_socket_accept(listener)) == NULL)
		return;
	h2o_accept(&t->accept_ctx, sock);
}

static void *thread_main(void *arg)
{
	thread_ctx *t = arg;
	struct sockaddr_in addr;
	int fd, one = 1;
	h2o_socket_t *sock;

	h2o_context_init(&t->ctx, h2o_evloop_create(), &config);
	t->accept_ctx.ctx = &t->ctx;
	t->accept_ctx.hosts = config.hosts;

	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	addr.sin_port = htons((uint16_t)port);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
	    bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
	    listen(fd, SOMAXCONN) != 0) {
		perror("listen");
		exit(1);
	}
	sock = h2o_evloop_socket_create(t->ctx.loop, fd,
					H2O_SOCKET_FLAG_DONT_READ);
	sock->data = t;
	h2o_socket_read_start(sock, on_accept);
	while (h2o_evloop_run(t->ctx.loop, INT32_MAX) == 0)
		;
	return NULL;
}

int main(int argc, char **argv)
{
	h2o_hostconf_t *hostconf;
	h2o_pathconf_t *pathconf;
	h2o_handler_t *handler;
	h2o_mimemap_t *mimemap;
	h2o_mimemap_type_t *webp;
	pthread_t tid[MAX_THREADS];
	int nthreads, i;
	sigset_t set;
	int sig;

	if (argc != 4) {
		fprintf(stderr, "usage: %s PORT FILE NTHREADS\n", argv[0]);
		return 2;
	}
	port = atoi(argv[1]);
	nthreads = atoi(argv[3]);
	if (nthreads < 1 || nthreads > MAX_THREADS)
		return 2;
	bench_t0 = bench_now();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	h2o_config_init(&config);
	config.filecache.capacity = 0;
	hostconf = h2o_config_register_host(
	    &config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	pathconf = h2o_config_register_path(hostconf, "/health", 0);
	handler = h2o_create_handler(pathconf, sizeof *handler);
	handler->on_req = health;
	mimemap = h2o_mimemap_create();
	h2o_mimemap_define_mimetype(mimemap, "webp", BENCH_WEBP, NULL);
	webp = h2o_mimemap_get_type_by_extension(
	    mimemap, h2o_iovec_init(H2O_STRLIT("webp")));
	h2o_file_register_file(h2o_config_register_path(hostconf, "/file", 0),
			       argv[2], webp, 0);

	for (i = 0; i < nthreads; i++)
		pthread_create(&tid[i], NULL, thread_main, &threads[i]);
	fprintf(stderr, "h2o (libh2o-evloop %s) %d threads on 127.0.0.1:%d\n",
		H2O_VERSION, nthreads, port);
	sigwait(&set, &sig);
	return 0; /* no orderly shutdown: the benchmark only needs it gone */
}
