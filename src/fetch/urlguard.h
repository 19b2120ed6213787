/* urlguard.h — the SSRF guard of the network fetch engine: which URLs may be
 * fetched at all, and which addresses a connection may be opened to.
 *
 * Two checks, at two moments:
 *   - before a request (the catalog URL and every redirect target):
 *     pm_urlguard_check_url accepts only well-formed http/https URLs
 *     without userinfo (user:pass@host);
 *   - when libcurl is about to open a socket (CURLOPT_OPENSOCKETFUNCTION in
 *     fetch.c): pm_urlguard_connect_allowed classifies the very address the
 *     socket will connect to. Because the check runs on the resolved address
 *     of each connection, DNS rebinding and redirects to other hosts are
 *     covered too: the address checked is the address used.
 * Refused by default: loopback, private (RFC 1918, fc00::/7, fec0::/10),
 * link-local, CGNAT 100.64/10, multicast, unspecified, broadcast and the
 * reserved 240/4, benchmarking 198.18/15 and IETF 192.0.0/24 ranges, plus
 * every IPv6 form that embeds an IPv4 address (IPv4-mapped ::ffff:a.b.c.d,
 * IPv4-compatible ::a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d, NAT64
 * 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32), judged by the IPv4
 * address they embed. allow_private opens everything; the allow list opens
 * named hosts ("intranet.example", "*.corp.example") and CIDRs
 * ("10.0.0.0/8", "fd00::/8", "192.168.1.7").
 *
 * Threads: a pm_urlguard is immutable after pm_urlguard_new, so any number
 * of threads may use one at once; every function here is otherwise pure.
 */
#ifndef PM_URLGUARD_H
#define PM_URLGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/status.h"

typedef struct pm_urlguard pm_urlguard;

/* Builds a guard. allow_list is NULL or a comma- (or space-) separated list
 * of host names, "*.suffix" host patterns, IP addresses and CIDRs; it is
 * copied. PM_ERR_USAGE for a malformed entry. *out is owned by the caller
 * (pm_urlguard_free). */
pm_status pm_urlguard_new(bool allow_private, const char *allow_list,
			  pm_urlguard **out, pm_err *err);
void pm_urlguard_free(pm_urlguard *g);

/* Checks a URL before any request: PM_OK for an absolute http or https URL
 * with a host and no userinfo. PM_ERR_UNSUPPORTED for another scheme or for
 * userinfo, PM_ERR_CATALOG for a malformed URL (or one over 8 KiB, or a
 * host name over 255 bytes). */
pm_status pm_urlguard_check_url(const char *url, pm_err *err);
/* Same check; on success also writes the URL's host, lowercase and without
 * the brackets of an IPv6 literal, into host (PM_ERR_CATALOG if it does not
 * fit). */
pm_status pm_urlguard_url_host(const char *url, char *host, size_t host_len,
			       pm_err *err);

/* True if host (as returned by pm_urlguard_url_host) is on the allow list
 * by name, or the guard allows private addresses. */
bool pm_urlguard_host_allowed(const pm_urlguard *g, const char *host);

/* True if a connection to sa (AF_INET or AF_INET6) is allowed by g: a
 * public address, or allow_private, or an address inside an allow-listed
 * CIDR. When refused, why gets the reason, e.g. "refused: 10.0.0.5 is a
 * private address (use --allow-private or --allow-host)". */
bool pm_urlguard_addr_allowed(const struct sockaddr *sa, const pm_urlguard *g,
			      char *why, size_t why_len);

/* The whole connect-time decision: host allowed by name, or address allowed.
 * host may be NULL. */
bool pm_urlguard_connect_allowed(const pm_urlguard *g, const char *host,
				 const struct sockaddr *sa, char *why,
				 size_t why_len);

#endif
