/* URI <-> socket address for rdma://, the URI options, errno mapping.
 *
 * rdma://host:port names an IP address of an RDMA device (RoCE, iWARP, or
 * IPoIB for InfiniBand): rdma_cm resolves it to the device and a route.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transports/rdma/rdma.h"

int rdma_err(int e)
{
    switch (e) {
    case ENOMEM:
        return -PX_ENOMEM;
    case EADDRINUSE:
        return -PX_EADDRINUSE;
    case EADDRNOTAVAIL:
    case ENODEV:
        return -PX_EADDRNOTAVAIL;
    case ECONNREFUSED:
        return -PX_ECONNREFUSED;
    case ETIMEDOUT:
        return -PX_ETIMEDOUT;
    case ENETUNREACH:
    case ENETDOWN:
        return -PX_ENETUNREACH;
    case EHOSTUNREACH:
    case EHOSTDOWN:
        return -PX_EHOSTUNREACH;
    case ECONNRESET:
        return -PX_ECONNRESET;
    case EAFNOSUPPORT:
        return -PX_EAFNOSUPPORT;
    case EACCES:
    case EPERM:
        return -PX_EACCES;
    case EMFILE:
        return -PX_EMFILE;
    case ENFILE:
        return -PX_ENFILE;
    case EINVAL:
        return -PX_EINVAL;
    default:
        return -PX_EIO;
    }
}

/* The options: what each takes, checked in one place (rdma_opts_parse). */
static const struct {
    const char *name;
    uint32_t lo, hi, def;
    size_t off;
} opt_range[] = {
    {"eager", 1024, 1u << 20, 8192, offsetof(rdma_opts, eager)},
    {"rq", 2, 4096, 64, offsetof(rdma_opts, rq)},
    {"sq", 2, 4096, 80, offsetof(rdma_opts, sq)},
    {"inline", 0, 1024, 128, offsetof(rdma_opts, inline_sz)},
    {"srq", 0, 1, 0, offsetof(rdma_opts, srq)},
};
#define N_OPTS (sizeof opt_range / sizeof opt_range[0])

const px_tp_option rdma_options[] = {
    {"eager", "<bytes> 1024..1048576", "8192", "16384", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "bytes of one receive buffer and send slot: frames that fit go by SEND, larger ones by "
     "rendezvous (the receiver RDMA-READs the data); at least the largest header plus 1 KiB"},
    {"rq", "2..4096", "64", "128", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "receive buffers posted per connection: the credits the peer may send ahead"},
    {"sq", "2..4096", "80", "128", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "send slots per connection: SENDs in flight before a send waits for completions"},
    {"inline", "<bytes> 0..1024", "128", "256", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "max_inline asked of the queue pair (the device may give less; px-info shows it): "
     "SENDs this small are copied into the work request"},
    {"srq", "0|1", "0", "1", PX_TP_OPT_CONNECT | PX_TP_OPT_LISTEN,
     "1: receive from one shared queue of 1024 buffers per device (memory follows traffic, "
     "not connections; rq then defaults to 16 and sq to 24); 0: a queue per connection"},
    {NULL, NULL, NULL, NULL, 0, NULL},
};

static int parse_u32(const char *s, uint32_t *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-' || s[0] == '+' || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int rdma_opts_parse(const px_uri *uri, rdma_opts *out)
{
    unsigned given = 0;
    for (size_t i = 0; i < N_OPTS; i++)
        *(uint32_t *)(void *)((char *)out + opt_range[i].off) = opt_range[i].def;
    for (unsigned k = 0; k < uri->n_opts; k++) {
        const px_uri_opt *o = &uri->opts[k];
        size_t i = 0;
        while (i < N_OPTS && strcmp(o->key, opt_range[i].name) != 0)
            i++;
        if (i == N_OPTS) {
            PX_TP_LOG(PX_LOG_WARN, "rdma://: unknown option '%s' (eager, rq, sq, inline, srq)",
                      o->key);
            return -PX_EBADOPT;
        }
        uint32_t v;
        if (parse_u32(o->value, &v) < 0 || v < opt_range[i].lo || v > opt_range[i].hi) {
            PX_TP_LOG(PX_LOG_WARN, "rdma://: option %s=%s: a number %u..%u is expected", o->key,
                      o->value, opt_range[i].lo, opt_range[i].hi);
            return -PX_EBADOPT;
        }
        *(uint32_t *)(void *)((char *)out + opt_range[i].off) = v;
        given |= 1u << i;
    }
    /* A shared queue's connections keep small windows and slot rings: the
     * pool, not each connection, holds the burst. */
    if (out->srq) {
        if (!(given & (1u << 1)))
            out->rq = 16;
        if (!(given & (1u << 2)))
            out->sq = 24;
    }
    return 0;
}

static int ip_check(const px_uri *uri, int passive)
{
    if (!uri->host[0]) {
        PX_TP_LOG(PX_LOG_WARN,
                  "rdma://: no host given (rdma://10.0.0.1:7000, rdma://[fe80::1]:7000)");
        return -PX_EBADHOST;
    }
    if (uri->port < 0 || uri->port > 65535 || (!passive && uri->port == 0)) {
        PX_TP_LOG(PX_LOG_WARN, "rdma://%s: %s", uri->host,
                  uri->port < 0 ? "no port given (rdma://host:port)"
                                : "port 0 can only be listened on (it picks a free port)");
        return -PX_EBADPORT;
    }
    if (uri->path[0] && strcmp(uri->path, "/") != 0) {
        PX_TP_LOG(PX_LOG_WARN, "rdma://%s:%d%s: rdma:// takes no path", uri->host, uri->port,
                  uri->path);
        return -PX_EBADPATH;
    }
    return 0;
}

int rdma_check_uri(const px_uri *uri, int listener)
{
    int rc = ip_check(uri, listener);
    if (rc)
        return rc;
    rdma_opts o;
    return rdma_opts_parse(uri, &o);
}

/* Numeric hosts never touch the resolver; names go through getaddrinfo,
 * which blocks (as for tcp://): callers that care pass numeric hosts. */
int rdma_addr_from_uri(const px_uri *uri, int passive, struct sockaddr_storage *out)
{
    int rc = ip_check(uri, passive);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)out;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)out;
    if (!uri->ipv6 && inet_pton(AF_INET, uri->host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)uri->port);
        return 0;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = (passive ? AI_PASSIVE : 0) | AI_NUMERICSERV,
                             .ai_family = uri->ipv6 ? AF_INET6 : AF_UNSPEC};
    if (uri->ipv6)
        hints.ai_flags |= AI_NUMERICHOST;
    char port[8];
    snprintf(port, sizeof port, "%d", uri->port);
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(uri->host, port, &hints, &ai);
    if (g != 0 || !ai) {
        PX_TP_LOG(PX_LOG_WARN, "rdma://%s: %s", uri->host, gai_strerror(g));
        return -PX_EBADHOST;
    }
    memcpy(out, ai->ai_addr, ai->ai_addrlen);
    (void)in6;
    freeaddrinfo(ai);
    return 0;
}

int rdma_addr_to_uri(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    int port, n;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        n = snprintf(buf, len, "rdma://%s:%d", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        n = snprintf(buf, len, "rdma://[%s]:%d", host, port);
    } else {
        n = snprintf(buf, len, "rdma://");
    }
    return n;
}
