/* The transport registry: which table serves which URI scheme.
 *
 * The only process-global mutable state of plexus. A fixed array guarded by
 * a mutex: registration is rare (start-up, first use of a plugin scheme) and
 * lookups happen once per listen/connect, so nothing here is on a data path.
 * Tables are never unregistered, so a pointer handed out stays valid for the
 * life of the process (plugins are never dlclose()d once registered). */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "plexus/transport.h"
#include "transports/builtin.h"

#ifndef PX_PLUGIN_DEFAULT_DIR
#define PX_PLUGIN_DEFAULT_DIR "/usr/local/lib/plexus"
#endif

#define REG_MAX 16

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
/* Serialises plugin loading; separate from reg_lock because a plugin's init
 * calls px_transport_register(). */
static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static const px_transport *reg[REG_MAX];
static unsigned reg_n;

static int table_valid(const px_transport *t)
{
    if (!t || t->abi != PX_TRANSPORT_ABI || !t->name || !t->schemes || !t->schemes[0])
        return 0;
    if (!t->init || !t->fini || !t->get_caps || !t->check_uri || !t->listen || !t->listener_uri ||
        !t->listener_close || !t->connect || !t->accept || !t->reject || !t->send || !t->close ||
        !t->peer_uri || !t->rx_pause || !t->conn_free || !t->listener_free || !t->stop_io ||
        !t->flush)
        return 0;
    /* A region registered with no way to deregister it would leak; a remote
     * key comes from a registration. */
    if (!t->mem_register != !t->mem_deregister || !t->rkey_pack != !t->rkey_unpack ||
        (t->rkey_pack && !t->mem_register))
        return 0;
    for (const char *const *s = t->schemes; *s; s++)
        if (!**s)
            return 0;
    return 1;
}

static const px_transport *lookup_locked(const char *scheme)
{
    for (unsigned i = 0; i < reg_n; i++)
        for (const char *const *s = reg[i]->schemes; *s; s++)
            if (strcmp(*s, scheme) == 0)
                return reg[i];
    return NULL;
}

int px_transport_register(const px_transport *ops)
{
    if (!table_valid(ops))
        return -PX_EINVAL;
    int rc = 0;
    pthread_mutex_lock(&reg_lock);
    for (const char *const *s = ops->schemes; *s && rc == 0; s++)
        if (lookup_locked(*s))
            rc = -PX_EEXIST;
    if (rc == 0 && reg_n == REG_MAX)
        rc = -PX_ETOOMANY;
    if (rc == 0)
        reg[reg_n++] = ops;
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

static void register_builtins(void)
{
    int rc = px_transport_register(&px_tcp_transport);
    if (rc)
        PX_LOGE("registering the built-in tcp transport failed: %d", rc);
    rc = px_transport_register(&px_shm_transport);
    if (rc)
        PX_LOGE("registering the built-in shm transport failed: %d", rc);
#if PX_HAVE_RDMA
    rc = px_transport_register(&px_rdma_transport);
    if (rc)
        PX_LOGE("registering the built-in rdma transport failed: %d", rc);
#endif
}

static const px_transport *find_registered(const char *scheme)
{
    pthread_mutex_lock(&reg_lock);
    const px_transport *t = lookup_locked(scheme);
    pthread_mutex_unlock(&reg_lock);
    return t;
}

/* The scheme becomes part of a file name: only the URI scheme alphabet is
 * allowed, so "../x" can never name a file outside the plugin directory. */
static int scheme_is_safe(const char *scheme)
{
    if (!*scheme || strlen(scheme) > 64)
        return 0;
    for (const char *p = scheme; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' ||
              *p == '.'))
            return 0;
    return 1;
}

static void load_plugin(const char *dir, const char *scheme)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/libplexus-%s.so", dir, scheme);
    if (n < 0 || (size_t)n >= sizeof path) {
        PX_LOGW("plugin path for scheme '%s' too long", scheme);
        return;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        PX_LOGD("no plugin for scheme '%s': %s", scheme, dlerror());
        return;
    }
    int (*init)(void);
    *(void **)&init = dlsym(h, "px_transport_plugin_init");
    if (!init) {
        PX_LOGW("%s: no px_transport_plugin_init", path);
        dlclose(h);
        return;
    }
    int rc = init();
    if (rc) {
        /* Whatever it registered before failing stays in use: keep it mapped. */
        PX_LOGW("%s: px_transport_plugin_init failed: %d", path, rc);
        return;
    }
    if (!find_registered(scheme))
        PX_LOGW("%s loaded but does not serve scheme '%s'", path, scheme);
}

const char *px_transport_plugin_dir(void)
{
    /* $PX_PLUGIN_DIR, else where plexus installs its own plugins. */
    const char *dir = getenv("PX_PLUGIN_DIR");
    return dir && *dir ? dir : PX_PLUGIN_DEFAULT_DIR;
}

const px_transport *px_transport_find(const char *scheme)
{
    if (!scheme)
        return NULL;
    pthread_once(&builtin_once, register_builtins);
    const px_transport *t = find_registered(scheme);
    if (t)
        return t;
    const char *dir = px_transport_plugin_dir();
    if (!scheme_is_safe(scheme))
        return NULL;
    pthread_mutex_lock(&plugin_lock);
    /* Another thread may have loaded it while we waited. */
    t = find_registered(scheme);
    if (!t) {
        load_plugin(dir, scheme);
        t = find_registered(scheme);
    }
    pthread_mutex_unlock(&plugin_lock);
    return t;
}

/* Schemes plexus knows that this build may lack, and what to do about it. */
static const struct {
    const char *scheme;
    const char *why;
} unbuilt[] = {
#if !PX_HAVE_RDMA
    {"rdma", "rdma:// was not built into this plexus: rebuild it with rdma-core present "
             "(apt-get install libibverbs-dev librdmacm-dev)"},
#endif
    {NULL, NULL},
};

int px_transport_lookup(const char *scheme, const px_transport **out)
{
    const px_transport *t = px_transport_find(scheme);
    if (t) {
        *out = t;
        return 0;
    }
    for (size_t i = 0; scheme && unbuilt[i].scheme; i++) {
        if (strcmp(scheme, unbuilt[i].scheme) == 0) {
            PX_LOGW("%s", unbuilt[i].why);
            return -PX_ENOTBUILT;
        }
    }
    PX_LOGW("no transport serves scheme '%s' (built in: tcp, unix, shm; others load from "
            "$PX_PLUGIN_DIR or %s as libplexus-<scheme>.so)",
            scheme ? scheme : "(null)", PX_PLUGIN_DEFAULT_DIR);
    return -PX_EBADSCHEME;
}

int px_transport_check_uri(const char *text, int listener)
{
    px_uri u;
    int rc = px_uri_parse(text, &u);
    if (rc < 0) {
        PX_LOGW("'%s': %s", text ? text : "(null)", px_strerror(rc));
        return rc;
    }
    const px_transport *t;
    rc = px_transport_lookup(u.scheme, &t);
    if (rc == 0 && t->check_uri)
        rc = t->check_uri(&u, listener);
    return rc;
}

int px_transport_foreach(void (*fn)(const px_transport *ops, void *arg), void *arg)
{
    const px_transport *snap[REG_MAX];
    pthread_once(&builtin_once, register_builtins);
    /* Call fn on a snapshot, outside the lock, so it may use the registry. */
    pthread_mutex_lock(&reg_lock);
    unsigned n = reg_n;
    memcpy(snap, reg, n * sizeof snap[0]);
    pthread_mutex_unlock(&reg_lock);
    if (fn)
        for (unsigned i = 0; i < n; i++)
            fn(snap[i], arg);
    return (int)n;
}
