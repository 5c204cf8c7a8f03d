/* URI parser: the accepted grammar and every way out of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "px_check.h"

#include "plexus/error.h"
#include "plexus/transport.h"

static px_uri u;

static int parse(const char *s)
{
    return px_uri_parse(s, &u);
}

/* Every string the parser returns must live inside u.buf. */
static int inside_buf(const char *s)
{
    return s >= u.buf && s + strlen(s) < u.buf + sizeof(u.buf);
}

START_TEST(tcp_ipv4)
{
    ck_assert_int_eq(parse("tcp://127.0.0.1:7000"), 0);
    ck_assert_str_eq(u.scheme, "tcp");
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 7000);
    ck_assert_int_eq(u.ipv6, 0);
    ck_assert_str_eq(u.path, "");
    ck_assert_uint_eq(u.n_opts, 0);
    ck_assert(inside_buf(u.scheme) && inside_buf(u.host) && inside_buf(u.path));
}
END_TEST

START_TEST(tcp_ipv6_port0)
{
    ck_assert_int_eq(parse("tcp://[::1]:0"), 0);
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 0);
    ck_assert_int_eq(u.ipv6, 1);
    ck_assert_int_eq(parse("tcp://[2001:db8::ffff:1.2.3.4]:65535"), 0);
    ck_assert_str_eq(u.host, "2001:db8::ffff:1.2.3.4");
    ck_assert_int_eq(u.port, 65535);
}
END_TEST

START_TEST(ipv6_zone)
{
    ck_assert_int_eq(parse("tcp://[fe80::1%eth0]:7000"), 0);
    ck_assert_str_eq(u.host, "fe80::1%eth0");
    ck_assert_int_eq(parse("tcp://[fe80::1%25eth0]:7000"), 0);
    ck_assert_str_eq(u.host, "fe80::1%eth0");
    ck_assert_int_eq(parse("tcp://[fe80::1%]:7000"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://[fe80::1%e/0]:7000"), -PX_EBADHOST);
}
END_TEST

START_TEST(hostname_and_case)
{
    ck_assert_int_eq(parse("TCP://Local_Host-1.example:80"), 0);
    ck_assert_str_eq(u.scheme, "tcp");
    ck_assert_str_eq(u.host, "Local_Host-1.example");
    ck_assert_int_eq(u.port, 80);
    ck_assert_int_eq(parse("rdma://10.0.0.1:7000"), 0);
    ck_assert_str_eq(u.scheme, "rdma");
    ck_assert_int_eq(parse("my+s.c-1://h"), 0);
    ck_assert_str_eq(u.scheme, "my+s.c-1");
    ck_assert_int_eq(u.port, -1);
}
END_TEST

START_TEST(unix_path)
{
    ck_assert_int_eq(parse("unix:///run/app.sock"), 0);
    ck_assert_str_eq(u.scheme, "unix");
    ck_assert_str_eq(u.host, "");
    ck_assert_int_eq(u.port, -1);
    ck_assert_str_eq(u.path, "/run/app.sock");
    ck_assert_int_eq(parse("tcp://h:1/a/b"), 0);
    ck_assert_str_eq(u.path, "/a/b");
    ck_assert_int_eq(parse("unix:///a b"), -PX_EBADPATH);
    ck_assert_int_eq(parse("unix://"), -PX_EBADPATH); /* a path is missing, not a host */
    ck_assert_int_eq(parse("unix:///a#frag"), -PX_EBADPATH);
}
END_TEST

START_TEST(shm_name)
{
    ck_assert_int_eq(parse("shm://name"), 0);
    ck_assert_str_eq(u.scheme, "shm");
    ck_assert_str_eq(u.host, "");
    ck_assert_str_eq(u.path, "name");
    ck_assert_int_eq(u.port, -1);
    ck_assert_int_eq(parse("SHM://seg-1.a_b?size=4096"), 0);
    ck_assert_str_eq(u.path, "seg-1.a_b");
    ck_assert_str_eq(px_uri_opt_get(&u, "size"), "4096");
    /* A colon is part of the name charset check, not a port. */
    ck_assert_int_eq(parse("shm://name:7000"), -PX_EBADPATH);
}
END_TEST

START_TEST(shm_bad)
{
    ck_assert_int_eq(parse("shm://"), -PX_EBADPATH);
    ck_assert_int_eq(parse("shm://?a=1"), -PX_EBADPATH);
    ck_assert_int_eq(parse("shm://a/b"), -PX_EBADPATH);
    ck_assert_int_eq(parse("shm://.."), -PX_EBADPATH);
    ck_assert_int_eq(parse("shm://."), -PX_EBADPATH);
    ck_assert_int_eq(parse("shm://a b"), -PX_EBADPATH);
    ck_assert_int_eq(parse("shm://[x]"), -PX_EBADPATH);
}
END_TEST

/* inproc:// is named the same way: a name, no host or path. */
START_TEST(inproc_name)
{
    ck_assert_int_eq(parse("inproc://svc-1"), 0);
    ck_assert_str_eq(u.scheme, "inproc");
    ck_assert_str_eq(u.host, "");
    ck_assert_str_eq(u.path, "svc-1");
    ck_assert_int_eq(u.port, -1);
    ck_assert_int_eq(parse("inproc://"), -PX_EBADPATH);
    ck_assert_int_eq(parse("inproc://a/b"), -PX_EBADPATH);
    ck_assert_int_eq(parse("inproc://host:1"), -PX_EBADPATH);
    ck_assert_int_eq(parse("inproc://.."), -PX_EBADPATH);
}
END_TEST

START_TEST(options)
{
    ck_assert_int_eq(parse("tcp://h:1?a=1&flag&c=x%2Fy%3d&empty="), 0);
    ck_assert_uint_eq(u.n_opts, 4);
    ck_assert_str_eq(u.opts[0].key, "a");
    ck_assert_str_eq(u.opts[0].value, "1");
    ck_assert_str_eq(px_uri_opt_get(&u, "flag"), "");
    ck_assert_str_eq(px_uri_opt_get(&u, "c"), "x/y=");
    ck_assert_str_eq(px_uri_opt_get(&u, "empty"), "");
    ck_assert_ptr_null(px_uri_opt_get(&u, "missing"));
    ck_assert_ptr_null(px_uri_opt_get(&u, "A"));
    ck_assert_ptr_null(px_uri_opt_get(NULL, "a"));
    for (unsigned i = 0; i < u.n_opts; i++)
        ck_assert(inside_buf(u.opts[i].key) && inside_buf(u.opts[i].value));
    ck_assert_int_eq(parse("tcp://h:1?v=a=b"), 0);
    ck_assert_str_eq(px_uri_opt_get(&u, "v"), "a=b");
}
END_TEST

static void build_opts(char *s, size_t cap, int n)
{
    strcpy(s, "tcp://h:1?");
    for (int i = 0; i < n; i++) {
        size_t l = strlen(s);
        snprintf(s + l, cap - l, "%sk%d=%d", i ? "&" : "", i, i);
    }
}

START_TEST(options_count)
{
    char s[512];
    build_opts(s, sizeof(s), PX_URI_MAX_OPTS);
    ck_assert_int_eq(parse(s), 0);
    ck_assert_uint_eq(u.n_opts, PX_URI_MAX_OPTS);
    ck_assert_str_eq(px_uri_opt_get(&u, "k15"), "15");
    build_opts(s, sizeof(s), PX_URI_MAX_OPTS + 1);
    ck_assert_int_eq(parse(s), -PX_EBADOPT);
    ck_assert_uint_eq(u.n_opts, 0);
}
END_TEST

START_TEST(options_bad)
{
    ck_assert_int_eq(parse("tcp://h:1?"), -PX_EBADOPT);
    ck_assert_int_eq(parse("tcp://h:1?a=1&"), -PX_EBADOPT);
    ck_assert_int_eq(parse("tcp://h:1?a=1&&b=2"), -PX_EBADOPT);
    ck_assert_int_eq(parse("tcp://h:1?=v"), -PX_EBADOPT);
    ck_assert_int_eq(parse("tcp://h:1?a=1&a=2"), -PX_EBADOPT);
    ck_assert_int_eq(parse("tcp://h:1?a=1&a"), -PX_EBADOPT);
    ck_assert_int_eq(parse("tcp://h:1?a b=1"), -PX_EBADOPT);
    ck_assert_int_eq(parse("tcp://h:1?a=x y"), -PX_EBADOPT);
    ck_assert_int_eq(parse("tcp://h:1?a=%zz"), -PX_EBADURI);
    ck_assert_int_eq(parse("tcp://h:1?a=%4"), -PX_EBADURI);
    ck_assert_int_eq(parse("tcp://h:1?a=%"), -PX_EBADURI);
    ck_assert_int_eq(parse("tcp://h:1?a=%00"), -PX_EBADURI);
}
END_TEST

START_TEST(port_bad)
{
    ck_assert_int_eq(parse("tcp://h:65536"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:70000"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:-1"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:x"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:+1"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:1 "), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:000001"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:99999999999999999999"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:1:2"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://[::1]:"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://[::1]:70000"), -PX_EBADPORT);
    ck_assert_int_eq(parse("tcp://h:00080"), 0);
    ck_assert_int_eq(u.port, 80);
}
END_TEST

START_TEST(host_bad)
{
    ck_assert_int_eq(parse("tcp://"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://:7000"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://[::1:7000"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://[::1"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://::1]:7000"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://h]:7000"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://[::1]x:1"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://[]:1"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://[1234]:1"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://[zz::1]:1"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://ho st:1"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://user@h:1"), -PX_EBADHOST);
    ck_assert_int_eq(parse("tcp://h\xc3\xa9:1"), -PX_EBADHOST);
}
END_TEST

START_TEST(scheme_bad)
{
    ck_assert_int_eq(parse("1tcp://h:1"), -PX_EBADSCHEME);
    ck_assert_int_eq(parse("t_cp://h:1"), -PX_EBADSCHEME);
    ck_assert_int_eq(parse("://h:1"), -PX_EBADSCHEME);
    ck_assert_int_eq(parse("+a://h:1"), -PX_EBADSCHEME);
    ck_assert_int_eq(parse("tc p://h:1"), -PX_EBADSCHEME);
}
END_TEST

START_TEST(structure_bad)
{
    ck_assert_int_eq(parse(""), -PX_EBADURI);
    ck_assert_int_eq(parse("tcp"), -PX_EBADURI);
    ck_assert_int_eq(parse("tcp:/h:1"), -PX_EBADURI);
    ck_assert_int_eq(parse("tcp//h:1"), -PX_EBADURI);
    ck_assert_int_eq(px_uri_parse(NULL, &u), -PX_EINVAL);
    ck_assert_int_eq(px_uri_parse("tcp://h:1", NULL), -PX_EINVAL);
}
END_TEST

/* unix:// plus a path of `len - 7` bytes: exactly `len` characters. */
static char *long_uri(size_t len)
{
    char *s = malloc(len + 1);
    memcpy(s, "unix://", 7);
    memset(s + 7, 'a', len - 7);
    s[7] = '/';
    s[len] = '\0';
    return s;
}

START_TEST(length_limit)
{
    char *s = long_uri(PX_URI_MAX);
    ck_assert_int_eq(parse(s), 0);
    ck_assert_uint_eq(strlen(u.path), PX_URI_MAX - 7);
    ck_assert(inside_buf(u.path));
    free(s);
    s = long_uri(PX_URI_MAX + 1);
    ck_assert_int_eq(parse(s), -PX_EBADURI);
    free(s);
    s = long_uri(100000);
    ck_assert_int_eq(parse(s), -PX_EBADURI);
    free(s);
}
END_TEST

/* The densest inputs (many separators, many empty values) still fit. */
START_TEST(buffer_worst_case)
{
    char s[PX_URI_MAX + 1];
    strcpy(s, "a://[::1%25e]:1/?");
    for (int i = 0; i < PX_URI_MAX_OPTS; i++) {
        size_t l = strlen(s);
        snprintf(s + l, sizeof(s) - l, "%s%c", i ? "&" : "", 'a' + i);
    }
    size_t l = strlen(s);
    memset(s + l, 'v', PX_URI_MAX - l);
    s[PX_URI_MAX] = '\0';
    /* The last key absorbs the padding: one long key. */
    ck_assert_int_eq(parse(s), 0);
    ck_assert_uint_eq(u.n_opts, PX_URI_MAX_OPTS);
    ck_assert_str_eq(u.host, "::1%e");
    ck_assert_str_eq(u.path, "/");
    ck_assert(inside_buf(u.opts[PX_URI_MAX_OPTS - 1].key));
}
END_TEST

START_TEST(error_resets)
{
    ck_assert_int_eq(parse("tcp://h:1?a=1"), 0);
    ck_assert_int_eq(parse("tcp://h:1?a=1&a=2"), -PX_EBADOPT);
    ck_assert_uint_eq(u.n_opts, 0);
    ck_assert_int_eq(u.port, -1);
    ck_assert_ptr_null(u.scheme);
    ck_assert_ptr_null(px_uri_opt_get(&u, "a"));
}
END_TEST

PX_CHECK_MAIN("uri", tcp_ipv4, tcp_ipv6_port0, ipv6_zone, hostname_and_case, unix_path, shm_name,
              shm_bad, inproc_name, options, options_count, options_bad, port_bad, host_bad,
              scheme_bad, structure_bad, length_limit, buffer_worst_case, error_resets)
