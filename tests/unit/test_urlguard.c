/* test_urlguard.c — table-driven tests of the SSRF guard (src/fetch):
 * the address classifier over every refused range and its neighbours, the
 * IPv6 forms that embed IPv4 addresses, the allow list (hosts, CIDRs,
 * allow_private), and the URL checks (schemes, userinfo, garbage).
 * Threads: main thread only.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>

#include "fetch/urlguard.h"
#include "test.h"

/* Fills ss from a textual IPv4 or IPv6 address. */
static const struct sockaddr *addr(const char *text,
				   struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(80);
	} else if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(80);
	} else {
		fprintf(stderr, "bad test address %s\n", text);
		abort();
	}
	return (const struct sockaddr *)ss;
}

typedef struct addr_case {
	const char *addr;
	bool allowed;
	const char *why; /* a word the refusal must contain */
} addr_case;

static const addr_case default_cases[] = {
    /* public */
    {"8.8.8.8", true, NULL},
    {"1.1.1.1", true, NULL},
    {"93.184.216.34", true, NULL},
    {"2606:4700:4700::1111", true, NULL},
    {"2a00:1450:4001:80b::200e", true, NULL},
    /* unspecified 0.0.0.0/8 and :: */
    {"0.0.0.0", false, "unspecified"},
    {"0.1.2.3", false, "unspecified"},
    {"::", false, "unspecified"},
    /* loopback */
    {"127.0.0.1", false, "loopback"},
    {"127.255.255.254", false, "loopback"},
    {"::1", false, "loopback"},
    {"128.0.0.1", true, NULL},
    {"126.255.255.255", true, NULL},
    /* private 10/8 */
    {"10.0.0.5", false, "private"},
    {"10.255.255.255", false, "private"},
    {"11.0.0.0", true, NULL},
    {"9.255.255.255", true, NULL},
    /* private 172.16/12 */
    {"172.16.0.1", false, "private"},
    {"172.31.255.255", false, "private"},
    {"172.15.255.255", true, NULL},
    {"172.32.0.0", true, NULL},
    /* private 192.168/16 */
    {"192.168.0.1", false, "private"},
    {"192.168.255.255", false, "private"},
    {"192.167.255.255", true, NULL},
    {"192.169.0.0", true, NULL},
    /* link-local */
    {"169.254.169.254", false, "link-local"},
    {"169.254.0.0", false, "link-local"},
    {"169.253.255.255", true, NULL},
    {"169.255.0.0", true, NULL},
    {"fe80::1", false, "link-local"},
    {"febf:ffff::1", false, "link-local"},
    /* CGNAT 100.64/10 */
    {"100.64.0.0", false, "carrier-grade"},
    {"100.127.255.255", false, "carrier-grade"},
    {"100.63.255.255", true, NULL},
    {"100.128.0.0", true, NULL},
    /* multicast, broadcast, reserved */
    {"224.0.0.1", false, "multicast"},
    {"239.255.255.255", false, "multicast"},
    {"223.255.255.255", true, NULL},
    {"255.255.255.255", false, "broadcast"},
    {"240.0.0.1", false, "reserved"},
    {"198.18.0.1", false, "reserved"},
    {"192.0.0.8", false, "reserved"},
    {"192.0.2.1", false, "reserved"},
    {"ff02::1", false, "multicast"},
    {"ff0e::1", false, "multicast"},
    /* IPv6 private: unique local fc00::/7, site-local */
    {"fc00::1", false, "private"},
    {"fd12:3456:789a::1", false, "private"},
    {"fbff:ffff::1", true, NULL},
    {"fec0::1", false, "private"},
    {"2001:db8::1", false, "reserved"},
    {"100::1", false, "reserved"},
    /* IPv4-mapped ::ffff:0:0/96 */
    {"::ffff:127.0.0.1", false, "IPv4-mapped"},
    {"::ffff:10.0.0.5", false, "private"},
    {"::ffff:169.254.169.254", false, "link-local"},
    {"::ffff:100.64.1.1", false, "carrier-grade"},
    {"::ffff:0.0.0.0", false, "unspecified"},
    {"::ffff:224.0.0.1", false, "multicast"},
    {"::ffff:7f00:1", false, "loopback"},
    {"::ffff:8.8.8.8", true, NULL},
    /* IPv4-compatible ::a.b.c.d and IPv4-translated ::ffff:0:a.b.c.d */
    {"::127.0.0.1", false, "IPv4-compatible"},
    {"::10.1.2.3", false, "private"},
    {"::8.8.8.8", true, NULL},
    {"::ffff:0:127.0.0.1", false, "IPv4-translated"},
    {"::ffff:0:192.168.1.1", false, "private"},
    /* NAT64 64:ff9b::/96 */
    {"64:ff9b::127.0.0.1", false, "NAT64"},
    {"64:ff9b::a00:5", false, "private"},
    {"64:ff9b::169.254.169.254", false, "link-local"},
    {"64:ff9b::8.8.8.8", true, NULL},
    {"64:ff9b:1::1", false, "private"},
    /* 6to4 and Teredo */
    {"2002:7f00:1::1", false, "6to4"},
    {"2002:a00:1::", false, "private"},
    {"2002:808:808::1", true, NULL},
    {"2001:0:4136:e378:8000:63bf:80ff:fffe", false, "Teredo"},
};

static void test_classifier(void)
{
	pm_urlguard *g = NULL;
	pm_err e;
	char why[400];
	struct sockaddr_storage ss;

	CHECK_INT(pm_urlguard_new(false, NULL, &g, &e), PM_OK);
	for (size_t i = 0; i < sizeof default_cases / sizeof *default_cases;
	     i++) {
		const addr_case *c = &default_cases[i];
		bool got = pm_urlguard_addr_allowed(addr(c->addr, &ss), g, why,
						    sizeof why);
		if (got != c->allowed)
			fprintf(stderr,
				"address %s: allowed=%d, want %d (%s)\n",
				c->addr, got, c->allowed, why);
		CHECK(got == c->allowed);
		if (!c->allowed) {
			if (!strstr(why, c->why))
				fprintf(stderr, "address %s: \"%s\" lacks %s\n",
					c->addr, why, c->why);
			CHECK(strstr(why, c->why) != NULL);
			CHECK(strncmp(why, "refused: ", 9) == 0);
			CHECK(strstr(why, "--allow-private") != NULL);
		} else {
			CHECK_STR(why, "");
		}
	}
	/* The exact wording of the common case. */
	pm_urlguard_addr_allowed(addr("10.0.0.5", &ss), g, why, sizeof why);
	CHECK_STR(why, "refused: 10.0.0.5 is a private address (use "
		       "--allow-private or --allow-host)");
	pm_urlguard_addr_allowed(addr("::ffff:127.0.0.1", &ss), g, why,
				 sizeof why);
	CHECK(strstr(why, "::ffff:127.0.0.1") && strstr(why, "of 127.0.0.1"));
	/* A tiny why buffer truncates, never overflows; NULL is fine. */
	char tiny[8];
	CHECK(!pm_urlguard_addr_allowed(addr("127.0.0.1", &ss), g, tiny,
					sizeof tiny));
	CHECK_INT(strlen(tiny), 7);
	CHECK(!pm_urlguard_addr_allowed(addr("127.0.0.1", &ss), g, NULL, 0));
	/* Another family is refused. */
	struct sockaddr un = {.sa_family = AF_UNIX};
	CHECK(!pm_urlguard_addr_allowed(&un, g, why, sizeof why));
	CHECK(!pm_urlguard_addr_allowed(NULL, g, why, sizeof why));
	/* No guard at all still refuses private addresses. */
	CHECK(!pm_urlguard_addr_allowed(addr("10.0.0.1", &ss), NULL, why,
					sizeof why));
	CHECK(pm_urlguard_addr_allowed(addr("8.8.8.8", &ss), NULL, why,
				       sizeof why));
	pm_urlguard_free(g);

	/* allow_private opens every range. */
	CHECK_INT(pm_urlguard_new(true, NULL, &g, &e), PM_OK);
	for (size_t i = 0; i < sizeof default_cases / sizeof *default_cases;
	     i++)
		CHECK(pm_urlguard_addr_allowed(addr(default_cases[i].addr, &ss),
					       g, why, sizeof why));
	CHECK(pm_urlguard_host_allowed(g, "anything.example"));
	pm_urlguard_free(g);
}

typedef struct allow_case {
	const char *addr;
	bool allowed;
} allow_case;

static void test_allow_list(void)
{
	pm_urlguard *g = NULL;
	pm_err e;
	char why[400];
	struct sockaddr_storage ss;
	static const allow_case cases[] = {
	    {"10.1.2.3", true},		/* 10.0.0.0/8 */
	    {"11.1.2.3", true},		/* public anyway */
	    {"192.168.1.7", true},	/* single address */
	    {"192.168.1.8", false},	/* its neighbour */
	    {"172.20.5.5", true},	/* 172.20.0.0/16 */
	    {"172.21.0.1", false},	/* outside that /16 */
	    {"127.0.0.1", false},	/* not listed */
	    {"::ffff:10.9.9.9", true},	/* mapped form of a listed CIDR */
	    {"64:ff9b::a09:909", true}, /* NAT64 form of 10.9.9.9 */
	    {"fd00::1", true},		/* fd00::/8 */
	    {"fc00::1", false},		/* fc00::/7 minus fd00::/8 */
	    {"::1", true},		/* [::1] */
	    {"fe80::1", false},
	};
	CHECK_INT(pm_urlguard_new(false,
				  "intranet.example, *.corp.example,"
				  "10.0.0.0/8 192.168.1.7,172.20.0.0/16,"
				  "fd00::/8,[::1],Media.Local.",
				  &g, &e),
		  PM_OK);
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		bool got = pm_urlguard_addr_allowed(addr(cases[i].addr, &ss), g,
						    why, sizeof why);
		if (got != cases[i].allowed)
			fprintf(stderr, "allow list, %s: %d want %d\n",
				cases[i].addr, got, cases[i].allowed);
		CHECK(got == cases[i].allowed);
	}
	/* Hosts: exact names, "*." suffixes, case and trailing dots. */
	CHECK(pm_urlguard_host_allowed(g, "intranet.example"));
	CHECK(pm_urlguard_host_allowed(g, "INTRANET.example"));
	CHECK(!pm_urlguard_host_allowed(g, "www.intranet.example"));
	CHECK(!pm_urlguard_host_allowed(g, "intranet.example.evil"));
	CHECK(pm_urlguard_host_allowed(g, "a.corp.example"));
	CHECK(pm_urlguard_host_allowed(g, "a.b.corp.example"));
	CHECK(!pm_urlguard_host_allowed(g, "corp.example"));
	CHECK(!pm_urlguard_host_allowed(g, "evilcorp.example"));
	CHECK(pm_urlguard_host_allowed(g, "media.local"));
	CHECK(!pm_urlguard_host_allowed(g, NULL));
	/* connect_allowed: the host name opens any address... */
	CHECK(pm_urlguard_connect_allowed(
	    g, "intranet.example", addr("127.0.0.1", &ss), why, sizeof why));
	/* ...and another name does not. */
	CHECK(!pm_urlguard_connect_allowed(
	    g, "example.com", addr("127.0.0.1", &ss), why, sizeof why));
	CHECK(strstr(why, "loopback") != NULL);
	pm_urlguard_free(g);

	/* Bad entries are usage errors. */
	static const char *bad[] = {"10.0.0.0/33",	"::/129",  "10.0.0.0/",
				    "10.0.0.0/x",	"ho st/1", "a:b",
				    "http://x.example", "*.",	   "exa$mple"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		g = NULL;
		CHECK_INT(pm_urlguard_new(false, bad[i], &g, &e), PM_ERR_USAGE);
		CHECK(g == NULL);
	}
	/* Empty lists are fine. */
	CHECK_INT(pm_urlguard_new(false, "", &g, &e), PM_OK);
	pm_urlguard_free(g);
	CHECK_INT(pm_urlguard_new(false, " , ,", &g, &e), PM_OK);
	pm_urlguard_free(g);
}

typedef struct url_case {
	const char *url;
	pm_status want;
	const char *host; /* for PM_OK */
} url_case;

static void test_urls(void)
{
	static const url_case cases[] = {
	    {"http://example.com/a.jpg", PM_OK, "example.com"},
	    {"https://cdn.example.com:8443/x/y.png?v=1#f", PM_OK,
	     "cdn.example.com"},
	    {"HTTPS://EXAMPLE.COM/A.JPG", PM_OK, "example.com"},
	    {"http://example.com./a", PM_OK, "example.com"},
	    {"http://127.0.0.1:8080/img", PM_OK, "127.0.0.1"},
	    {"http://[::1]:8080/img", PM_OK, "::1"},
	    {"http://[::ffff:127.0.0.1]/", PM_OK, "::ffff:127.0.0.1"},
	    {"http://[::ffff:7f00:1]/", PM_OK, "::ffff:7f00:1"},
	    {"http://0x7f.1/", PM_OK, "127.0.0.1"},
	    {"http://ex%41mple.com/", PM_OK, "example.com"},
	    {"http:///path", PM_OK, "path"},		/* curl is lenient */
	    {"http://2130706433/", PM_OK, "127.0.0.1"}, /* normalised */
	    /* other schemes */
	    {"ftp://example.com/a.jpg", PM_ERR_UNSUPPORTED, NULL},
	    {"file:///etc/passwd", PM_ERR_UNSUPPORTED, NULL},
	    {"gopher://example.com/", PM_ERR_UNSUPPORTED, NULL},
	    {"dict://127.0.0.1:11211/stat", PM_ERR_UNSUPPORTED, NULL},
	    {"ldap://example.com/", PM_ERR_UNSUPPORTED, NULL},
	    {"javascript:alert(1)", PM_ERR_UNSUPPORTED, NULL},
	    {"data:image/png;base64,AAAA", PM_ERR_UNSUPPORTED, NULL},
	    {"httpx://example.com/", PM_ERR_UNSUPPORTED, NULL},
	    /* userinfo */
	    {"http://user@example.com/", PM_ERR_UNSUPPORTED, NULL},
	    {"http://user:pass@example.com/", PM_ERR_UNSUPPORTED, NULL},
	    {"http://example.com@10.0.0.1/", PM_ERR_UNSUPPORTED, NULL},
	    {"http://:@example.com/", PM_ERR_UNSUPPORTED, NULL},
	    {"http://@example.com/", PM_ERR_UNSUPPORTED, NULL},
	    {"https://a%40b:c@example.com/", PM_ERR_UNSUPPORTED, NULL},
	    /* garbage */
	    {"", PM_ERR_CATALOG, NULL},
	    {"not a url", PM_ERR_CATALOG, NULL},
	    {"example.com/a.jpg", PM_ERR_CATALOG, NULL},
	    {"http://", PM_ERR_CATALOG, NULL},
	    {"localhost:8080/a", PM_ERR_CATALOG, NULL}, /* host:port */
	    {"example.com:80/a", PM_ERR_CATALOG, NULL},
	    {"http://exa mple.com/", PM_ERR_CATALOG, NULL},
	    {"http://example.com/\r\nX-Injected: 1", PM_ERR_CATALOG, NULL},
	    {"http://example.com/\ta", PM_ERR_CATALOG, NULL},
	    {"http://[::1/", PM_ERR_CATALOG, NULL},
	    {"http://example.com:99999/", PM_ERR_CATALOG, NULL},
	    {"//example.com/a", PM_ERR_CATALOG, NULL},
	    {"/local/path.jpg", PM_ERR_CATALOG, NULL},
	};
	pm_err e;
	char host[256];

	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		e.msg[0] = '\0';
		pm_status s =
		    pm_urlguard_url_host(cases[i].url, host, sizeof host, &e);
		if (s != cases[i].want)
			fprintf(stderr, "url \"%s\": %s (%s), want %s\n",
				cases[i].url, pm_status_code(s), e.msg,
				pm_status_code(cases[i].want));
		CHECK_INT(s, cases[i].want);
		CHECK_INT(pm_urlguard_check_url(cases[i].url, &e), s);
		if (s == PM_OK && cases[i].host)
			CHECK_STR(host, cases[i].host);
		if (s != PM_OK)
			CHECK(e.msg[0] != '\0');
	}
	CHECK_INT(pm_urlguard_check_url(NULL, &e), PM_ERR_CATALOG);
	/* Messages name the problem. */
	pm_urlguard_check_url("ftp://example.com/", &e);
	CHECK(strstr(e.msg, "ftp") != NULL);
	pm_urlguard_check_url("http://u:p@example.com/", &e);
	CHECK(strstr(e.msg, "userinfo") != NULL);
	/* Over-long URLs are refused before parsing; a long host does not fit
	 * a small buffer. */
	size_t n = 9000;
	char *big = malloc(n + 1);
	memcpy(big, "http://example.com/", 19);
	memset(big + 19, 'a', n - 19);
	big[n] = '\0';
	CHECK_INT(pm_urlguard_check_url(big, &e), PM_ERR_CATALOG);
	big[4000] = '\0';
	CHECK_INT(pm_urlguard_check_url(big, &e), PM_OK);
	char small[8];
	CHECK_INT(pm_urlguard_url_host("http://example.com/", small,
				       sizeof small, &e),
		  PM_ERR_CATALOG);
	free(big);
}

int main(void)
{
	test_classifier();
	test_allow_list();
	test_urls();
	TEST_DONE();
}
