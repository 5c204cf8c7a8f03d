/* URI parser: scheme://host:port/path?key=value&...
 *
 * Strict by design: every URI comes from configuration or, for redirects
 * and portals, from a peer, so anything not in the grammar is refused
 * rather than guessed at. All strings are copied into px_uri.buf; the
 * copy never needs more room than the text (each separator consumed pays
 * for one NUL), and the writer checks the bound anyway.
 */
#include <stdint.h>
#include <string.h>

#include "plexus/error.h"
#include "plexus/transport.h"

/* A bounded writer into px_uri.buf. */
typedef struct uri_out {
    char *buf;
    size_t len;
    size_t cap;
} uri_out;

/* A span of the input text. */
typedef struct span {
    const char *p;
    size_t n;
} span;

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_scheme_char(int c)
{
    return is_alpha(c) || is_digit(c) || c == '+' || c == '.' || c == '-';
}

/* Host names, IPv4 literals, shm names, interface zones and option keys. */
static int is_name_char(int c)
{
    return is_alpha(c) || is_digit(c) || c == '.' || c == '-' || c == '_';
}

static int is_ipv6_char(int c)
{
    return is_hex(c) || c == ':' || c == '.';
}

/* Printable ASCII without space; '#' is refused since fragments mean
 * nothing here and would otherwise be read as part of a path or value. */
static int is_text_char(int c)
{
    return c > 0x20 && c < 0x7f && c != '#';
}

static int hex_val(int c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

static int to_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

static const char *out_put(uri_out *o, const char *s, size_t n)
{
    if (o->cap - o->len < n + 1)
        return NULL;
    char *dst = o->buf + o->len;
    memcpy(dst, s, n);
    dst[n] = '\0';
    o->len += n + 1;
    return dst;
}

static int all_chars(span s, int (*pred)(int))
{
    for (size_t i = 0; i < s.n; i++)
        if (!pred((unsigned char)s.p[i]))
            return 0;
    return 1;
}

static int parse_scheme(span s, uri_out *o, px_uri *u)
{
    if (s.n == 0 || !is_alpha((unsigned char)s.p[0]) || !all_chars(s, is_scheme_char))
        return -PX_EBADSCHEME;
    char *dst = (char *)out_put(o, s.p, s.n);
    if (dst == NULL)
        return -PX_EBADURI;
    for (size_t i = 0; i < s.n; i++)
        dst[i] = (char)to_lower((unsigned char)dst[i]);
    u->scheme = dst;
    return 0;
}

/* Digits only: no sign, no space, at most 5 digits so it cannot overflow. */
static int parse_port(span s, int *port)
{
    if (s.n == 0 || s.n > 5 || !all_chars(s, is_digit))
        return -PX_EBADPORT;
    int v = 0;
    for (size_t i = 0; i < s.n; i++)
        v = v * 10 + (s.p[i] - '0');
    if (v > 65535)
        return -PX_EBADPORT;
    *port = v;
    return 0;
}

/* fe80::1%eth0, or fe80::1%25eth0 as RFC 6874 spells it inside a URI: the
 * "25" is the escaped '%', not part of the zone. */
static int parse_ipv6(span s, uri_out *o, px_uri *u)
{
    const char *pct = memchr(s.p, '%', s.n);
    span addr = {s.p, pct ? (size_t)(pct - s.p) : s.n};
    if (addr.n == 0 || !all_chars(addr, is_ipv6_char) || memchr(addr.p, ':', addr.n) == NULL)
        return -PX_EBADHOST;
    if (pct) {
        span zone = {pct + 1, s.n - addr.n - 1};
        if (zone.n > 2 && zone.p[0] == '2' && zone.p[1] == '5') {
            zone.p += 2;
            zone.n -= 2;
        }
        if (zone.n == 0 || !all_chars(zone, is_name_char))
            return -PX_EBADHOST;
        /* Store "addr%zone": the form getaddrinfo understands. */
        char tmp[PX_URI_MAX + 1];
        memcpy(tmp, addr.p, addr.n);
        tmp[addr.n] = '%';
        memcpy(tmp + addr.n + 1, zone.p, zone.n);
        u->host = out_put(o, tmp, addr.n + 1 + zone.n);
    } else {
        u->host = out_put(o, addr.p, addr.n);
    }
    u->ipv6 = 1;
    return u->host ? 0 : -PX_EBADURI;
}

/* host[:port] or [v6]:port. `port_part` receives what follows the host. */
static int parse_host(span auth, uri_out *o, px_uri *u, span *port_part)
{
    span host;
    const char *rest;
    if (auth.n > 0 && auth.p[0] == '[') {
        const char *close = memchr(auth.p, ']', auth.n);
        if (close == NULL)
            return -PX_EBADHOST;
        host = (span){auth.p + 1, (size_t)(close - auth.p - 1)};
        rest = close + 1;
        int rc = parse_ipv6(host, o, u);
        if (rc)
            return rc;
    } else {
        const char *colon = memchr(auth.p, ':', auth.n);
        host = (span){auth.p, colon ? (size_t)(colon - auth.p) : auth.n};
        rest = auth.p + host.n;
        if (!all_chars(host, is_name_char))
            return -PX_EBADHOST;
        u->host = out_put(o, host.p, host.n);
        if (u->host == NULL)
            return -PX_EBADURI;
    }
    size_t rest_n = auth.n - (size_t)(rest - auth.p);
    if (rest_n == 0) {
        *port_part = (span){NULL, 0};
        return 0;
    }
    if (rest[0] != ':')
        return -PX_EBADHOST; /* "[::1]x" */
    /* A port needs a host to belong to. */
    if (u->host[0] == '\0')
        return -PX_EBADHOST;
    *port_part = (span){rest + 1, rest_n - 1};
    return 0;
}

static int parse_authority_path(span s, uri_out *o, px_uri *u)
{
    size_t auth_n = 0;
    while (auth_n < s.n && s.p[auth_n] != '/')
        auth_n++;
    span auth = {s.p, auth_n};
    span path = {s.p + auth_n, s.n - auth_n};
    if (auth.n == 0 && path.n == 0) /* "unix://" lacks its path, "tcp://" its host */
        return strcmp(u->scheme, "unix") == 0 ? -PX_EBADPATH : -PX_EBADHOST;
    span port = {NULL, 0};
    int rc = parse_host(auth, o, u, &port);
    if (rc)
        return rc;
    if (port.p) {
        rc = parse_port(port, &u->port);
        if (rc)
            return rc;
    }
    if (!all_chars(path, is_text_char))
        return -PX_EBADPATH;
    u->path = out_put(o, path.p, path.n);
    return u->path ? 0 : -PX_EBADURI;
}

/* shm://name and inproc://name: the name is all there is, and it becomes a file or socket
 * name, so it is held to the plain-name charset (no '/', no "..").
 * A name of dots alone would name a directory. */
static int parse_shm_name(span s, uri_out *o, px_uri *u)
{
    if (s.n == 0 || !all_chars(s, is_name_char))
        return -PX_EBADPATH;
    size_t dots = 0;
    while (dots < s.n && s.p[dots] == '.')
        dots++;
    if (dots == s.n)
        return -PX_EBADPATH;
    u->host = out_put(o, "", 0);
    u->path = out_put(o, s.p, s.n);
    return u->path ? 0 : -PX_EBADURI;
}

/* Decode %XX into `dst` (room for s.n bytes); returns the decoded length or
 * -PX_EBADURI. %00 is refused: it would silently cut the value short. */
static int unescape(span s, char *dst)
{
    size_t n = 0;
    for (size_t i = 0; i < s.n; i++) {
        int c = (unsigned char)s.p[i];
        if (c == '%') {
            if (s.n - i < 3)
                return -PX_EBADURI;
            if (!is_hex((unsigned char)s.p[i + 1]) || !is_hex((unsigned char)s.p[i + 2]))
                return -PX_EBADURI;
            c = hex_val((unsigned char)s.p[i + 1]) * 16 + hex_val((unsigned char)s.p[i + 2]);
            if (c == 0)
                return -PX_EBADURI;
            i += 2;
        } else if (!is_text_char(c)) {
            return -PX_EBADOPT;
        }
        dst[n++] = (char)c;
    }
    return (int)n;
}

static int add_option(span item, uri_out *o, px_uri *u)
{
    const char *eq = memchr(item.p, '=', item.n);
    span key = {item.p, eq ? (size_t)(eq - item.p) : item.n};
    span val = {eq ? eq + 1 : item.p + item.n, eq ? item.n - key.n - 1 : 0};
    if (key.n == 0 || !all_chars(key, is_name_char))
        return -PX_EBADOPT;
    if (u->n_opts == PX_URI_MAX_OPTS)
        return -PX_EBADOPT;
    for (unsigned i = 0; i < u->n_opts; i++)
        if (strlen(u->opts[i].key) == key.n && memcmp(u->opts[i].key, key.p, key.n) == 0)
            return -PX_EBADOPT;
    char tmp[PX_URI_MAX + 1];
    int vn = unescape(val, tmp);
    if (vn < 0)
        return vn;
    const char *k = out_put(o, key.p, key.n);
    /* "?key" costs one NUL, not two: its value is the key's terminator. */
    const char *v = k && eq ? out_put(o, tmp, (size_t)vn) : k ? k + key.n : NULL;
    if (v == NULL)
        return -PX_EBADURI;
    u->opts[u->n_opts++] = (px_uri_opt){k, v};
    return 0;
}

/* "k=v&k2&k3=": a '?' promises at least one option, so "?" alone, "&&"
 * and a trailing '&' all have an empty key. */
static int parse_options(span s, uri_out *o, px_uri *u)
{
    const char *end = s.p + s.n;
    const char *p = s.p;
    for (;;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        span item = {p, amp ? (size_t)(amp - p) : (size_t)(end - p)};
        int rc = add_option(item, o, u);
        if (rc)
            return rc;
        if (amp == NULL)
            return 0;
        p = amp + 1;
    }
}

static void uri_reset(px_uri *u)
{
    u->scheme = u->host = u->path = NULL;
    u->port = -1;
    u->ipv6 = 0;
    u->n_opts = 0;
}

int px_uri_parse(const char *text, px_uri *out)
{
    if (text == NULL || out == NULL)
        return -PX_EINVAL;
    uri_reset(out);
    size_t len = strnlen(text, PX_URI_MAX + 1);
    if (len == 0 || len > PX_URI_MAX)
        return -PX_EBADURI;
    const char *sep = strstr(text, "://");
    if (sep == NULL)
        return -PX_EBADURI;
    uri_out o = {out->buf, 0, sizeof(out->buf)};
    int rc = parse_scheme((span){text, (size_t)(sep - text)}, &o, out);
    if (rc)
        return rc;
    const char *body = sep + 3;
    const char *q = strchr(body, '?');
    span rest = {body, q ? (size_t)(q - body) : strlen(body)};
    if (strcmp(out->scheme, "shm") == 0 || strcmp(out->scheme, "inproc") == 0)
        rc = parse_shm_name(rest, &o, out);
    else
        rc = parse_authority_path(rest, &o, out);
    if (rc == 0 && q)
        rc = parse_options((span){q + 1, strlen(q + 1)}, &o, out);
    if (rc)
        uri_reset(out);
    return rc;
}

const char *px_uri_opt_get(const px_uri *uri, const char *key)
{
    if (uri == NULL || key == NULL)
        return NULL;
    for (unsigned i = 0; i < uri->n_opts && i < PX_URI_MAX_OPTS; i++)
        if (strcmp(uri->opts[i].key, key) == 0)
            return uri->opts[i].value;
    return NULL;
}
