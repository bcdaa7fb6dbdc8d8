/* SPDX-License-Identifier: MIT */
/* Unit tests for --trust-proxy's ranges and client-address walk (ctest). */
#include "proxy.h"

#include <string.h>

#include "check.h"

/* The client of one header line: X-Forwarded-For xff, or Forwarded fwd when xff is NULL. */
static const char *client(const char *peer, const char *xff, const char *fwd)
{
    static char out[RILL_PROXY_ADDR_CAP];
    const char *line = xff ? xff : fwd;
    rill_proxy_header(xff ? "x-forwarded-for" : "forwarded");
    const char *r = rill_proxy_client(peer, &line, line != NULL, out, sizeof out);
    rill_proxy_header("x-forwarded-for");
    return r;
}

static void test_ranges(void)
{
    CHECK(rill_proxy_trust("10.0.0.0/8") == 0);
    CHECK(rill_proxy_trust("127.0.0.1") == 0);
    CHECK(rill_proxy_trust("2001:db8::/32") == 0);
    CHECK(rill_proxy_trust("::1") == 0);
    CHECK(rill_proxy_trust("192.168.1.7/0") == 0 && (rill_proxy_reset(), 1));
    const char *bad[] = {
        "",         "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/-1",        "10.0.0.0/8x",
        "nonsense", "10.0.0",    "1.2.3.4/8/8", "[::1]",  "::ffff:1.2.3.4/104", "/8"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(rill_proxy_trust(bad[i]) == -1);
    CHECK(!rill_proxy_any());
}

static void test_walk(void)
{
    CHECK(strcmp(client("127.0.0.1", "1.2.3.4", NULL), "127.0.0.1") == 0); /* nothing trusted */
    rill_proxy_trust("10.0.0.0/8");
    rill_proxy_trust("127.0.0.1");
    rill_proxy_trust("::1");
    CHECK(strcmp(client("127.0.0.1", "1.2.3.4", NULL), "1.2.3.4") == 0);
    CHECK(strcmp(client("192.0.2.1", "1.2.3.4", NULL), "192.0.2.1") == 0); /* untrusted peer */
    CHECK(strcmp(client("127.0.0.1", "9.9.9.9, 1.2.3.4, 10.0.0.5", NULL), "1.2.3.4") == 0);
    CHECK(strcmp(client("127.0.0.1", "10.0.0.7,10.0.0.5", NULL), "10.0.0.7") == 0);
    CHECK(strcmp(client("::1", " 2001:db8::1 ", NULL), "2001:db8::1") == 0);
    CHECK(strcmp(client("::ffff:127.0.0.1", "1.2.3.4:5678", NULL), "1.2.3.4") == 0);
    CHECK(strcmp(client("127.0.0.1", "[2001:db8::2]:80", NULL), "2001:db8::2") == 0);
    CHECK(strcmp(client("127.0.0.1", "nonsense", NULL), "127.0.0.1") == 0);
    CHECK(strcmp(client("127.0.0.1", "1.2.3.4, nonsense", NULL), "127.0.0.1") == 0);
    CHECK(strcmp(client("127.0.0.1", "nonsense, 1.2.3.4", NULL), "1.2.3.4") == 0);
    CHECK(strcmp(client("127.0.0.1", ",,,", NULL), "127.0.0.1") == 0);
    CHECK(strcmp(client("127.0.0.1", "", NULL), "127.0.0.1") == 0);
    CHECK(strcmp(client("127.0.0.1", NULL, "for=5.6.7.8"), "5.6.7.8") == 0);
    CHECK(strcmp(client("127.0.0.1", NULL, "For=\"[2001:db8::1]:4711\";proto=https"),
                 "2001:db8::1") == 0);
    CHECK(strcmp(client("127.0.0.1", NULL, "for=5.6.7.8, for=10.0.0.1;by=10.0.0.2"), "5.6.7.8") ==
          0);
    CHECK(strcmp(client("127.0.0.1", NULL, "for=unknown"), "127.0.0.1") == 0);
    CHECK(strcmp(client("127.0.0.1", NULL, "proto=http"), "127.0.0.1") == 0);
    CHECK(strcmp(client("127.0.0.1", NULL, "for=\"[::1"), "127.0.0.1") == 0);
    /* quoted strings hide , ; and \" from the split (RFC 7239) */
    CHECK(strcmp(client("127.0.0.1", NULL, "for=1.2.3.4;host=\"x,for=6.6.6.6;y=\";proto=https"),
                 "1.2.3.4") == 0);
    CHECK(strcmp(client("127.0.0.1", NULL, "proto=http;host=\"x;for=6.6.6.6;y=\";for=1.2.3.4"),
                 "1.2.3.4") == 0);
    CHECK(strcmp(client("127.0.0.1", NULL, "for=1.2.3.4;host=\"a\\\",for=6.6.6.6\""), "1.2.3.4") ==
          0);
    const char *lines[2] = {"1.2.3.4", "10.0.0.9"}; /* two header lines: one list, in order */
    char out[RILL_PROXY_ADDR_CAP];
    CHECK(strcmp(rill_proxy_client("127.0.0.1", lines, 2, out, sizeof out), "1.2.3.4") == 0);
    rill_proxy_reset();
}

static void test_header(void)
{
    CHECK(rill_proxy_header("nonsense") == -1 && rill_proxy_header("") == -1);
    CHECK(strcmp(rill_proxy_header_name(), "X-Forwarded-For") == 0);
    CHECK(rill_proxy_header("Forwarded") == 0);
    CHECK(strcmp(rill_proxy_header_name(), "Forwarded") == 0);
    rill_proxy_reset();
    CHECK(strcmp(rill_proxy_header_name(), "X-Forwarded-For") == 0);
}

int main(void)
{
    test_ranges();
    test_walk();
    test_header();
    return check_report();
}
