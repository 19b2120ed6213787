/* libmicrohttpd benchmark server.
 *   mhd PORT FILE MODE
 * MODE: pool        MHD_USE_INTERNAL_POLLING_THREAD|MHD_USE_EPOLL, pool of 2
 *       pool-turbo  the same plus MHD_USE_TURBO
 *       tpc         MHD_USE_THREAD_PER_CONNECTION (poll)
 * GET /health: small JSON; GET /file: FILE via MHD_create_response_from_fd
 * (sendfile), opened per request. */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

static const char *file_path;

static enum MHD_Result reply_simple(struct MHD_Connection *c, unsigned code,
				    const char *body)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
	    strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c,
			       const char *url, const char *method,
			       const char *version, const char *upload_data,
			       size_t *upload_data_size, void **con_cls)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	(void)cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	/* MHD calls the handler first with the headers only. A response queued
	 * in that first call is "early": MHD 0.9.75 then discards the rest of
	 * the request and closes the connection (no keep-alive). So answer on
	 * the second call, as MHD's examples do. */
	if (*con_cls == NULL) {
		static int first;
		*con_cls = &first;
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0)
		return reply_simple(c, MHD_HTTP_METHOD_NOT_ALLOWED, "");
	if (strcmp(url, "/health") == 0) {
		char buf[256];
		int n = bench_health(buf, sizeof buf);

		r = MHD_create_response_from_buffer((size_t)n, buf,
						    MHD_RESPMEM_MUST_COPY);
		if (!r)
			return MHD_NO;
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
					BENCH_JSON);
	} else if (strcmp(url, "/file") == 0) {
		struct stat st;
		int fd = open(file_path, O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			return reply_simple(c, MHD_HTTP_NOT_FOUND, "");
		if (fstat(fd, &st) != 0) {
			close(fd);
			return MHD_NO;
		}
		/* MHD owns fd from here (closed when the response goes). */
		r = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
		if (!r) {
			close(fd);
			return MHD_NO;
		}
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
					BENCH_WEBP);
	} else {
		return reply_simple(c, MHD_HTTP_NOT_FOUND, "");
	}
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

int main(int argc, char **argv)
{
	struct MHD_Daemon *d;
	unsigned flags;
	const char *mode;
	struct sockaddr_in addr;
	sigset_t set;
	int sig;

	if (argc != 4) {
		fprintf(stderr, "usage: %s PORT FILE pool|pool-turbo|tpc\n",
			argv[0]);
		return 2;
	}
	file_path = argv[2];
	mode = argv[3];
	bench_t0 = bench_now();
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL); /* MHD threads inherit */

	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)atoi(argv[1]));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (strcmp(mode, "tpc") == 0) {
		flags = MHD_USE_INTERNAL_POLLING_THREAD |
			MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL;
		d = MHD_start_daemon(flags, (uint16_t)atoi(argv[1]), NULL, NULL,
				     handler, NULL, MHD_OPTION_SOCK_ADDR, &addr,
				     MHD_OPTION_LISTEN_BACKLOG_SIZE,
				     (unsigned)SOMAXCONN, MHD_OPTION_END);
	} else {
		flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
		if (strcmp(mode, "pool-turbo") == 0)
			flags |= MHD_USE_TURBO;
		else if (strcmp(mode, "pool") != 0) {
			fprintf(stderr, "unknown mode %s\n", mode);
			return 2;
		}
		d = MHD_start_daemon(flags, (uint16_t)atoi(argv[1]), NULL, NULL,
				     handler, NULL, MHD_OPTION_SOCK_ADDR, &addr,
				     MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2,
				     MHD_OPTION_LISTEN_BACKLOG_SIZE,
				     (unsigned)SOMAXCONN, MHD_OPTION_END);
	}
	if (!d) {
		fprintf(stderr, "MHD_start_daemon failed\n");
		return 1;
	}
	fprintf(stderr, "mhd %s (MHD %s) on %s\n", mode, MHD_get_version(),
		argv[1]);
	sigwait(&set, &sig);
	MHD_stop_daemon(d);
	return 0;
}
