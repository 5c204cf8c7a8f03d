/* URI <-> socket address for tcp:// and unix://, URI options, and the
 * errno -> PX_E mapping. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transports/tcp/tcp.h"

int tcp_err(int e)
{
    switch (e) {
    case EPERM:
    case ENOENT:
    case EINTR:
    case EIO:
    case EBADF:
    case EAGAIN:
    case ENOMEM:
    case EACCES:
    case EFAULT:
    case EBUSY:
    case EEXIST:
    case EINVAL:
    case ENFILE:
    case EMFILE:
    case ENOSPC:
    case EPIPE:
    case ERANGE:
    case ENAMETOOLONG:
    case ENOSYS:
    case EPROTO:
    case EMSGSIZE:
    case EPROTONOSUPPORT:
    case EOPNOTSUPP:
    case EAFNOSUPPORT:
    case EADDRINUSE:
    case EADDRNOTAVAIL:
    case ENETUNREACH:
    case ECONNABORTED:
    case ECONNRESET:
    case ENOBUFS:
    case EISCONN:
    case ENOTCONN:
    case ESHUTDOWN:
    case ETIMEDOUT:
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case EALREADY:
    case ECANCELED:
        return -e; /* the PX_E code is this errno value */
    case ENETDOWN:
        return -PX_ENETUNREACH;
    case EHOSTDOWN:
        return -PX_EHOSTUNREACH;
    default:
        return -PX_EIO;
    }
}

/* unix:// names a socket file by its absolute path: unix:///run/app.sock.
 * Everything wrong with one is a path error, said in those words. */
static int unix_path_check(const px_uri *uri)
{
    if (uri->host[0] || uri->port != -1) {
        PX_TP_LOG(PX_LOG_WARN,
                  "unix://%s%s%s: the path must be absolute, as in unix:///run/app.sock", uri->host,
                  uri->port != -1 ? ":..." : "", uri->path);
        return -PX_EBADPATH;
    }
    size_t n = strlen(uri->path);
    if (n == 0) {
        PX_TP_LOG(PX_LOG_WARN, "unix://: no socket path given (unix:///run/app.sock)");
        return -PX_EBADPATH;
    }
    if (n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        PX_TP_LOG(PX_LOG_WARN,
                  "unix://%s: the path is %zu bytes, over the %zu a socket path may have",
                  uri->path, n, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
        return -PX_ENAMETOOLONG;
    }
    return 0;
}

static int unix_addr(const px_uri *uri, tcp_sockaddr *out)
{
    int rc = unix_path_check(uri);
    if (rc)
        return rc;
    size_t n = strlen(uri->path);
    memset(out, 0, sizeof *out);
    out->u.un.sun_family = AF_UNIX;
    memcpy(out->u.un.sun_path, uri->path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

/* tcp://host:port, port 0 only to listen (an ephemeral port). */
static int ip_check(const px_uri *uri, int passive)
{
    if (!uri->host[0]) {
        PX_TP_LOG(PX_LOG_WARN, "tcp://: no host given (tcp://127.0.0.1:7000, tcp://[::1]:7000)");
        return -PX_EBADHOST;
    }
    if (uri->port < 0 || uri->port > 65535 || (!passive && uri->port == 0)) {
        PX_TP_LOG(PX_LOG_WARN, "tcp://%s: %s", uri->host,
                  uri->port < 0 ? "no port given (tcp://host:port)"
                                : "port 0 can only be listened on (it picks a free port)");
        return -PX_EBADPORT;
    }
    if (uri->path[0] && strcmp(uri->path, "/") != 0) {
        PX_TP_LOG(PX_LOG_WARN, "tcp://%s:%d%s: tcp:// takes no path", uri->host, uri->port,
                  uri->path);
        return -PX_EBADPATH;
    }
    return 0;
}

/* Numeric addresses never touch the resolver; names go through getaddrinfo,
 * which blocks: callers that care pass numeric hosts. */
static int ip_addr(const px_uri *uri, int passive, tcp_sockaddr *out)
{
    int rc = ip_check(uri, passive);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    if (!uri->ipv6 && inet_pton(AF_INET, uri->host, &out->u.in.sin_addr) == 1) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons((uint16_t)uri->port);
        out->len = sizeof out->u.in;
        return 0;
    }
    if (uri->ipv6 && inet_pton(AF_INET6, uri->host, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons((uint16_t)uri->port);
        out->len = sizeof out->u.in6;
        return 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    hints.ai_family = uri->ipv6 ? AF_INET6 : AF_UNSPEC;
    /* A bracketed host is an address (maybe with a %scope), never a name. */
    hints.ai_flags = (passive ? AI_PASSIVE : 0) | (uri->ipv6 ? AI_NUMERICHOST : AI_ADDRCONFIG);
    char port[8];
    snprintf(port, sizeof port, "%d", uri->port);
    struct addrinfo *res = NULL;
    rc = getaddrinfo(uri->host, port, &hints, &res);
    if (rc != 0 || !res) {
        PX_TP_LOG(PX_LOG_WARN, "tcp: cannot resolve '%s': %s", uri->host, gai_strerror(rc));
        return rc == EAI_MEMORY ? -PX_ENOMEM : -PX_EBADHOST;
    }
    if (res->ai_addrlen > sizeof out->u) {
        freeaddrinfo(res);
        return -PX_EAFNOSUPPORT;
    }
    memcpy(&out->u, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int tcp_addr_from_uri(const px_uri *uri, int passive, tcp_sockaddr *out)
{
    if (strcmp(uri->scheme, "unix") == 0)
        return unix_addr(uri, out);
    if (strcmp(uri->scheme, "tcp") == 0)
        return ip_addr(uri, passive, out);
    return -PX_EBADSCHEME;
}

int tcp_addr_to_uri(const tcp_sockaddr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    int n;
    switch (a->u.sa.sa_family) {
    case AF_INET:
        inet_ntop(AF_INET, &a->u.in.sin_addr, host, sizeof host);
        n = snprintf(buf, len, "tcp://%s:%u", host, ntohs(a->u.in.sin_port));
        break;
    case AF_INET6:
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, host, sizeof host);
        n = snprintf(buf, len, "tcp://[%s]:%u", host, ntohs(a->u.in6.sin6_port));
        break;
    case AF_UNIX: {
        /* An unnamed (client) unix socket has no path: "unix://". */
        size_t plen =
            a->len > offsetof(struct sockaddr_un, sun_path)
                ? strnlen(a->u.un.sun_path, a->len - offsetof(struct sockaddr_un, sun_path))
                : 0;
        n = snprintf(buf, len, "unix://%.*s", (int)plen, a->u.un.sun_path);
        break;
    }
    default:
        return -PX_EAFNOSUPPORT;
    }
    if (n < 0 || (size_t)n >= len)
        return -PX_ENOSPC;
    return n;
}

static int opt_int(const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi)
        return -PX_EBADOPT;
    *out = (int)x;
    return 0;
}

int tcp_opts_parse(const px_uri *uri, tcp_opts *out)
{
    *out = (tcp_opts){.nodelay = 1};
    for (unsigned i = 0; i < uri->n_opts; i++) {
        const char *k = uri->opts[i].key, *v = uri->opts[i].value;
        int rc;
        if (strcmp(k, "nodelay") == 0)
            rc = opt_int(v, 0, 1, &out->nodelay);
        else if (strcmp(k, "sndbuf") == 0)
            rc = opt_int(v, 1, 1 << 30, &out->sndbuf);
        else if (strcmp(k, "rcvbuf") == 0)
            rc = opt_int(v, 1, 1 << 30, &out->rcvbuf);
        else
            rc = -PX_EBADOPT;
        if (rc) {
            PX_TP_LOG(PX_LOG_WARN,
                      "%s://: option '%s=%s' %s (known: nodelay=0|1, sndbuf=<bytes>, "
                      "rcvbuf=<bytes>)",
                      uri->scheme, k, v,
                      strcmp(k, "nodelay") && strcmp(k, "sndbuf") && strcmp(k, "rcvbuf")
                          ? "is unknown"
                          : "has a bad value");
            return rc;
        }
    }
    return 0;
}

int tcp_check_uri(const px_uri *uri, int listener)
{
    tcp_opts o;
    int rc;
    if (strcmp(uri->scheme, "unix") == 0)
        rc = unix_path_check(uri);
    else
        rc = ip_check(uri, listener);
    return rc ? rc : tcp_opts_parse(uri, &o);
}

/* Best effort: a socket that refuses a tuning option still works. */
void tcp_opts_apply(int fd, int family, const tcp_opts *o)
{
    if (family != AF_UNIX)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &o->nodelay, sizeof o->nodelay);
    if (o->sndbuf)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof o->sndbuf);
    if (o->rcvbuf)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &o->rcvbuf, sizeof o->rcvbuf);
}
