/* probe.c — GET /metrics and GET /health for processes other than serve
 * (`pixmill worker --listen`). See probe.h.
 *
 * Threads: the request callback runs on libmicrohttpd's one internal
 * thread; start and stop on the owner's thread. The probe's own state is
 * written once, before the daemon starts.
 */
#include "serve/probe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "core/metrics.h"
#include "serve/httputil.h"

/* a scraper, a health checker and a curl or two */
#define PROBE_CONNS	   8
#define PROBE_CONN_TIMEOUT 10 /* seconds */

struct pm_probe {
	struct MHD_Daemon *d;
	pm_probe_health_fn health;
	void *ud;
};

/* Queues code with body (owned: freed by libmicrohttpd, or here on
 * failure) of type ctype. */
static enum MHD_Result reply(struct MHD_Connection *c, unsigned code,
			     char *body, size_t len, const char *ctype,
			     const char *route)
{
	struct MHD_Response *r;
	enum MHD_Result ret;
	char cs[8];

	if (!body) {
		code = 500;
		len = 0;
	}
	r = MHD_create_response_from_buffer_with_free_callback(
	    len, body ? body : (char *)"", body ? free : NULL);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (code == 405)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	snprintf(cs, sizeof cs, "%u", code);
	pm_metric_inc(PM_M_HTTP_REQUESTS, route, cs, 1);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload_data,
				  size_t *upload_size, void **req_cls)
{
	pm_probe *p = cls;
	const char *route = "(unmatched)";
	bool known = url && (strcmp(url, "/metrics") == 0 ||
			     strcmp(url, "/health") == 0);

	(void)version;
	(void)upload_data;
	(void)upload_size;
	(void)req_cls;
	if (known)
		route = url;
	/* answered on the first call: a body, if any, is never read (the
	 * connection is closed after the answer) */
	if (!known)
		return reply(c, 404, strdup("not found\n"), 10,
			     "text/plain; charset=utf-8", route);
	if (!method || (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
			strcmp(method, MHD_HTTP_METHOD_HEAD) != 0))
		return reply(c, 405, strdup("method not allowed\n"), 19,
			     "text/plain; charset=utf-8", route);
	if (strcmp(url, "/metrics") == 0) {
		size_t len = 0;
		char *txt = pm_metrics_render(&len);
		return reply(c, 200, txt, len,
			     "text/plain; version=0.0.4; charset=utf-8", route);
	}
	{
		int code = 200;
		json_t *h = p->health(p->ud, &code);
		char *txt = h ? json_dumps(h, JSON_COMPACT) : NULL;
		json_decref(h);
		return reply(c, (unsigned)code, txt, txt ? strlen(txt) : 0,
			     "application/json", route);
	}
}

pm_status pm_probe_start(const char *spec, pm_probe_health_fn health, void *ud,
			 unsigned *port, pm_probe **out, pm_err *err)
{
	struct sockaddr_storage sa;
	const union MHD_DaemonInfo *di;
	pm_probe *p;

	*out = NULL;
	if (!pm_http_parse_listen(spec, &sa, err))
		return PM_ERR_USAGE;
	p = calloc(1, sizeof *p);
	if (!p)
		return pm_fail(err, PM_ERR_NOMEM, "out of memory");
	p->health = health;
	p->ud = ud;
	p->d = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
		(sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
	    0, NULL, NULL, on_request, p, MHD_OPTION_SOCK_ADDR, &sa,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)PROBE_CONNS,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PROBE_CONNS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)PROBE_CONN_TIMEOUT,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024),
	    MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
	if (!p->d) {
		int e = errno;
		free(p);
		return pm_fail(err, PM_ERR_IO, "cannot listen on %s: %s", spec,
			       strerror(e));
	}
	di = MHD_get_daemon_info(p->d, MHD_DAEMON_INFO_BIND_PORT);
	if (port)
		*port = di ? di->port : 0;
	*out = p;
	return PM_OK;
}

void pm_probe_stop(pm_probe *p)
{
	if (!p)
		return;
	MHD_stop_daemon(p->d);
	free(p);
}
