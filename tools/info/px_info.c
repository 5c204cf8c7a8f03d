/* px-info — what this plexus is, and what it can do: as ucx_info and fi_info.
 *
 *   px-info [-v] [-t] [-o] [-c] [-d] [-h]
 *
 *   (none)  everything below
 *   -v      the version and how the library was built
 *   -t      the transports and their schemes: built in or plugin, loaded
 *           or not and why
 *   -o      every URI option of every transport, its default and meaning
 *   -c      the context defaults (px_ctx_opts resolved from zeros) and the
 *           range each field accepts
 *   -d      the RDMA devices, their ports and limits (what rdma:// can use)
 *   -h      this help
 *
 * Plugins load from $PX_PLUGIN_DIR, else the installed plugin directory,
 * as they would in an application. Uses the public API alone. Exit 0;
 * 2 for bad usage.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <plexus/plexus.h>
#include <plexus/transport.h>

#include "rdma_devices.h"

#define MAX_TP      32
#define REASON_LEN  512
#define PLUGIN_NAME "libplexus-"

/* ---- the transports: what is registered, what a plugin lookup says ------ */

/* A scheme plexus or the plugin directory names, and what became of it. */
typedef struct scheme_info {
    char scheme[64];
    const px_transport *tp; /* NULL: not available */
    int builtin;
    char reason[REASON_LEN]; /* why not, or where from */
} scheme_info;

static scheme_info schemes[MAX_TP];
static unsigned n_schemes;

/* Transports registered before any plugin was looked up: the built-in ones. */
static const px_transport *builtin_tp[MAX_TP];
static unsigned n_builtin;

static void note_builtin(const px_transport *t, void *arg)
{
    (void)arg;
    if (n_builtin < MAX_TP)
        builtin_tp[n_builtin++] = t;
}

static int is_builtin(const px_transport *t)
{
    for (unsigned i = 0; i < n_builtin; i++)
        if (builtin_tp[i] == t)
            return 1;
    return 0;
}

/* The last line plexus logged while looking a scheme up, without its
 * "plexus[level] file:line: " prefix. */
static void keep_reason(px_log_level level, const char *msg, void *user)
{
    (void)level;
    const char *p = strstr(msg, "] ");
    if (p && (p = strstr(p + 2, ": ")) != NULL)
        msg = p + 2;
    snprintf((char *)user, REASON_LEN, "%s", msg);
}

static scheme_info *scheme_add(const char *scheme)
{
    for (unsigned i = 0; i < n_schemes; i++)
        if (strcmp(schemes[i].scheme, scheme) == 0)
            return NULL;
    if (n_schemes == MAX_TP || strlen(scheme) >= sizeof schemes[0].scheme)
        return NULL;
    scheme_info *s = &schemes[n_schemes++];
    memset(s, 0, sizeof *s);
    snprintf(s->scheme, sizeof s->scheme, "%s", scheme);
    return s;
}

/* Call px_transport_lookup (find: 0) or px_transport_find (1), keeping the
 * last line plexus logs meanwhile in `reason`. */
static int lookup_quietly(const char *scheme, int find, const px_transport **out, char *reason)
{
    px_log_level saved = px_log_get_level();
    px_log_set_level(PX_LOG_DEBUG);
    px_log_set_hook(keep_reason, reason);
    int rc = 0;
    if (find)
        rc = (*out = px_transport_find(scheme)) != NULL ? 0 : -PX_EBADSCHEME;
    else
        rc = px_transport_lookup(scheme, out);
    px_log_set_hook(NULL, NULL);
    px_log_set_level(saved);
    return rc;
}

/* Look a scheme up as an application would (loading its plugin), keeping
 * what plexus says about it: the loader's reason for a plugin it did not
 * load, or why this version lacks a scheme plexus knows (rdma). */
static void scheme_probe(const char *scheme)
{
    scheme_info *s = scheme_add(scheme);
    if (!s)
        return;
    if (lookup_quietly(scheme, 1, &s->tp, s->reason) != 0) {
        char why[REASON_LEN] = "";
        int rc = lookup_quietly(scheme, 0, &s->tp, why);
        if (rc == -PX_ENOTBUILT)
            snprintf(s->reason, sizeof s->reason, "%s", why);
        else if (!s->reason[0])
            snprintf(s->reason, sizeof s->reason, "%s", px_strerror(rc));
        s->tp = NULL;
        return;
    }
    s->builtin = is_builtin(s->tp);
    if (s->builtin)
        s->reason[0] = '\0';
    else
        snprintf(s->reason, sizeof s->reason, "%s/" PLUGIN_NAME "%s.so", px_transport_plugin_dir(),
                 scheme);
}

static void add_registered(const px_transport *t, void *arg)
{
    (void)arg;
    for (const char *const *sc = t->schemes; *sc; sc++) {
        scheme_info *s = scheme_add(*sc);
        if (s) {
            s->tp = t;
            s->builtin = is_builtin(t);
        }
    }
}

static int by_name(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* The plugins in the plugin directory: libplexus-<scheme>.so. */
static void probe_plugin_dir(void)
{
    DIR *d = opendir(px_transport_plugin_dir());
    if (!d)
        return;
    char found[MAX_TP][64];
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAX_TP) {
        size_t len = strlen(e->d_name), pre = strlen(PLUGIN_NAME);
        if (len <= pre + 3 || strncmp(e->d_name, PLUGIN_NAME, pre) != 0 ||
            strcmp(e->d_name + len - 3, ".so") != 0 || len - pre - 3 >= sizeof found[0])
            continue;
        memcpy(found[n], e->d_name + pre, len - pre - 3);
        found[n][len - pre - 3] = '\0';
        n++;
    }
    closedir(d);
    /* In name order, so the output is the same from run to run. */
    qsort(found, n, sizeof found[0], by_name);
    for (unsigned i = 0; i < n; i++)
        scheme_probe(found[i]);
}

static void discover(void)
{
    /* Nothing is loaded yet: what is registered now is built in. */
    px_transport_foreach(note_builtin, NULL);
    px_transport_foreach(add_registered, NULL);
    /* The plugin plexus ships, rdma (which plexus knows of), then whatever
     * else the plugin directory holds. */
    scheme_probe("inproc");
    scheme_probe("rdma");
    probe_plugin_dir();
}

/* ---- -v ------------------------------------------------------------------ */

static void print_version(void)
{
    const px_build_info *b = px_get_build_info();
    const char *env = getenv("PX_PLUGIN_DIR");
    printf("plexus %s\n", px_version());
    printf("  %-18s %s\n", "build type", b->build_type[0] ? b->build_type : "(not given)");
    printf("  %-18s %s\n", "compiler", b->compiler[0] ? b->compiler : "(not given)");
    printf("  %-18s %s\n", "rdma-core",
           b->rdma ? "found at build time (rdma:// is built in)" : "not found at build time");
    printf("  %-18s %s\n", "fault injection", b->fault_injection ? "compiled in (PX_FAULT)" : "no");
    printf("  %-18s %s\n", "sanitizers", b->sanitizers[0] ? b->sanitizers : "none");
    printf("  %-18s %s\n", "plugin dir", b->plugin_dir);
    if (env && *env)
        printf("  %-18s %s\n", "$PX_PLUGIN_DIR", env);
    else
        printf("  %-18s %s\n", "$PX_PLUGIN_DIR", "(unset)");
}

/* ---- -t ------------------------------------------------------------------ */

static void print_schemes_of(const px_transport *t, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *sc = t->schemes; *sc && used < len; sc++) {
        int n = snprintf(buf + used, len - used, "%s%s://", used ? " " : "", *sc);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static void print_transports(void)
{
    printf("transports (plugins from %s)\n", px_transport_plugin_dir());
    printf("  %-8s %-7s %-18s %s\n", "scheme", "kind", "transport", "state");
    for (unsigned i = 0; i < n_schemes; i++) {
        const scheme_info *s = &schemes[i];
        if (!s->tp) {
            printf("  %-8s %-7s %-18s not available: %s\n", s->scheme,
                   strcmp(s->scheme, "rdma") == 0 ? "-" : "plugin", "-", s->reason);
            continue;
        }
        if (s->builtin)
            printf("  %-8s %-7s %-18s loaded\n", s->scheme, "builtin", s->tp->name);
        else
            printf("  %-8s %-7s %-18s loaded from %s\n", s->scheme, "plugin", s->tp->name,
                   s->reason[0] ? s->reason : "a plugin");
    }
}

/* ---- -o ------------------------------------------------------------------ */

static void print_options(void)
{
    printf("URI options (scheme://...?name=value&name=value)\n");
    const px_transport *done[MAX_TP];
    unsigned n_done = 0;
    for (unsigned i = 0; i < n_schemes; i++) {
        const px_transport *t = schemes[i].tp;
        if (!t)
            continue;
        int seen = 0;
        for (unsigned j = 0; j < n_done; j++)
            seen |= done[j] == t;
        if (seen)
            continue;
        done[n_done++] = t;
        char sch[256];
        print_schemes_of(t, sch, sizeof sch);
        printf("\n  %s (transport %s)\n", sch, t->name);
        if (!t->options) {
            printf("    (this transport does not describe its options)\n");
            continue;
        }
        if (!t->options[0].name) {
            printf("    (takes no options)\n");
            continue;
        }
        for (const px_tp_option *o = t->options; o->name; o++) {
            const char *where = (o->where & PX_TP_OPT_CONNECT) && (o->where & PX_TP_OPT_LISTEN)
                                    ? "connect, listen"
                                : o->where & PX_TP_OPT_CONNECT ? "connect"
                                : o->where & PX_TP_OPT_LISTEN  ? "listen"
                                                               : "-";
            printf("    %s=%s\n", o->name, o->values ? o->values : "<value>");
            printf("        default: %s; in: %s\n", o->def ? o->def : "-", where);
            printf("        %s\n", o->doc ? o->doc : "");
        }
    }
}

/* ---- -c ------------------------------------------------------------------ */

typedef struct field {
    const char *name;
    size_t off;
    unsigned size; /* 4 or 8 */
    const char *unit;
    const char *note; /* what 0 / the extreme means */
} field;

#define F(n, u, note)                                                                              \
    {                                                                                              \
#n, offsetof(px_ctx_opts, n), sizeof(((px_ctx_opts *)0)->n), u, note                       \
    }

static const field fields[] = {
    F(poll_us, "us", "0: sleep at once, never spin"),
    F(queue_depth, "requests", "in flight per connection"),
    F(max_queued_bytes, "bytes", "waiting behind a full queue, per connection"),
    F(max_msg_size, "bytes", "message data, either way"),
    F(max_header_size, "bytes", "application header"),
    F(max_iov, "iovecs", "data segments per message"),
    F(inline_threshold, "bytes", "at most this: delivered in place"),
    F(max_sessions, "sessions", "per server"),
    F(buf_cache_bytes, "bytes", "freed receive buffers kept for reuse"),
    F(keepalive_ms, "ms", "4294967295 (PX_KEEPALIVE_OFF): no check"),
    F(handshake_timeout_ms, "ms", "connect + HELLO + on_new_session"),
    F(request_timeout_ms, "ms", "0: no timeout"),
    F(max_rx_held_bytes, "bytes", "received data held per connection"),
    F(share_links, "0/1", "1: sessions to one URI share a link"),
    F(link_linger_ms, "ms", "a shared link kept after its last user"),
};

static uint64_t field_get(const px_ctx_opts *o, const field *f)
{
    const char *p = (const char *)o + f->off;
    if (f->size == 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 67108864 -> "64 MiB"; "" when not a whole number of KiB. */
static void human(uint64_t v, const char *unit, char *buf, size_t len)
{
    buf[0] = '\0';
    if (strcmp(unit, "bytes") != 0 || v < 1024)
        return;
    static const char *const sfx[] = {"KiB", "MiB", "GiB", "TiB"};
    unsigned i = 0;
    uint64_t x = v;
    while (x % 1024 == 0 && x >= 1024 && i < 4) {
        x /= 1024;
        i++;
    }
    if (i)
        snprintf(buf, len, "(%" PRIu64 " %s)", x, sfx[i - 1]);
}

static void print_ctx_defaults(void)
{
    px_ctx_opts def, lo, hi;
    int rc = px_ctx_opts_resolve(NULL, &def);
    px_ctx_opts_limits(&lo, &hi);
    printf("context defaults (px_ctx_opts: a zero field means this; range accepted)\n");
    if (rc) {
        printf("  (px_ctx_opts_resolve failed: %s)\n", px_strerror(rc));
        return;
    }
    printf("  %-21s %12s %-10s %-9s %-24s %s\n", "field", "default", "", "unit", "range", "note");
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const field *f = &fields[i];
        uint64_t v = field_get(&def, f), l = field_get(&lo, f), h = field_get(&hi, f);
        uint64_t type_max = f->size == 8 ? UINT64_MAX : UINT32_MAX;
        char hv[32], range[64];
        human(v, f->unit, hv, sizeof hv);
        if (h == type_max)
            snprintf(range, sizeof range, ">= %" PRIu64, l);
        else
            snprintf(range, sizeof range, "%" PRIu64 "..%" PRIu64, l, h);
        printf("  %-21s %12" PRIu64 " %-10s %-9s %-24s %s\n", f->name, v, hv, f->unit, range,
               f->note);
    }
}

/* ---- main ---------------------------------------------------------------- */

static void usage(FILE *to)
{
    fprintf(to, "usage: px-info [-v] [-t] [-o] [-c] [-d] [-h]\n"
                "  (none)  everything\n"
                "  -v      version and build configuration\n"
                "  -t      transports and schemes: built in or plugin, loaded or not and why\n"
                "  -o      URI options of every transport, with defaults\n"
                "  -c      context defaults (px_ctx_opts) and their ranges\n"
                "  -d      RDMA devices, their ports and limits\n"
                "  -h      this help\n"
                "Plugins load from $PX_PLUGIN_DIR, else the installed plugin directory.\n");
}

int main(int argc, char **argv)
{
    int v = 0, t = 0, o = 0, c = 0, d = 0, ch;
    opterr = 0;
    while ((ch = getopt(argc, argv, "vtocdh")) != -1) {
        switch (ch) {
        case 'v':
            v = 1;
            break;
        case 't':
            t = 1;
            break;
        case 'o':
            o = 1;
            break;
        case 'c':
            c = 1;
            break;
        case 'd':
            d = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "px-info: unknown option '-%c'\n", optopt);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "px-info: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!v && !t && !o && !c && !d)
        v = t = o = c = d = 1;
    if (t || o)
        discover();
    int sep = 0;
    if (v) {
        print_version();
        sep = 1;
    }
    if (t) {
        printf("%s", sep ? "\n" : "");
        print_transports();
        sep = 1;
    }
    if (o) {
        printf("%s", sep ? "\n" : "");
        print_options();
        sep = 1;
    }
    if (c) {
        printf("%s", sep ? "\n" : "");
        print_ctx_defaults();
        sep = 1;
    }
    if (d) {
        printf("%s", sep ? "\n" : "");
        print_rdma_devices();
    }
    return 0;
}
