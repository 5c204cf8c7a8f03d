/* The session layer's per-context state (ctx->layer_priv): the task cache,
 * the server sessions whose server is gone, and, in debug builds, the
 * quarantine of retired handles. Created by px_server_bind() or
 * px_session_create() on a context's first use of the layer, freed by
 * px_ctx_destroy() through layer_fini. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "plexus/error.h"
#include "session/internal.h"
#include "session/layer.h"

/* Debug builds keep this many retired conns and sessions poisoned (their
 * magic says dead) before really freeing the oldest. */
#define QUARANTINE 1024

static void layer_fini(void *priv)
{
    px_layer *l = priv;
    task_cache_fini(&l->tasks);
    for (unsigned i = 0; i < l->n_quarantined && i < QUARANTINE; i++)
        free(l->quarantine[i]);
    free(l->quarantine);
    free(l);
}

/* px_ctx_destroy: end the server sessions nobody owns any more. Returns
 * how many are still alive (their teardown runs from the deferred work the
 * caller runs next). */
static unsigned layer_quiesce(void *priv)
{
    px_layer *l = priv;
    unsigned n = 0;
    nexus_close_unused(&l->links); /* lingering shared links */
    for (px_list *sn = l->orphans.next; sn != &l->orphans; sn = sn->next, n++) {
        px_session *s = PX_CONTAINER_OF(sn, px_session, server_link);
        for (px_list *cn = s->conns.next; cn != &s->conns; cn = cn->next) {
            px_conn *c = PX_CONTAINER_OF(cn, px_conn, session_link);
            if (c->state != CS_DEAD && !c->abort_queued)
                px_conn_disconnect(c);
        }
    }
    return n;
}

int layer_ensure(px_ctx *ctx)
{
    if (ctx->layer_priv)
        return 0;
    px_layer *l = calloc(1, sizeof(*l));
    if (!l)
        return -PX_ENOMEM;
    px_list_init(&l->orphans);
    px_list_init(&l->conns);
    px_list_init(&l->links);
    ctx->layer_priv = l;
    ctx->layer_fini = layer_fini;
    ctx->layer_quiesce = layer_quiesce;
    return 0;
}

void layer_adopt_orphan(px_ctx *ctx, px_session *s)
{
    px_list_del(&s->server_link);
    px_list_push_back(&layer_of(ctx)->orphans, &s->server_link);
}

void layer_retire(px_ctx *ctx, void *obj, uint32_t *magic, size_t size)
{
#ifdef NDEBUG
    (void)ctx;
    (void)magic;
    (void)size;
    free(obj);
#else
    /* Poisoned but kept: a stale handle reads PX_DEAD_MAGIC, not freed
     * memory. Everything but the magic is scribbled over so a use that
     * skips the check fails loudly. */
    px_layer *l = layer_of(ctx);
    memset(obj, 0xdb, size);
    *magic = PX_DEAD_MAGIC;
    if (!l->quarantine) {
        l->quarantine = calloc(QUARANTINE, sizeof(*l->quarantine));
        if (!l->quarantine) {
            free(obj);
            return;
        }
    }
    unsigned slot = l->n_quarantined % QUARANTINE;
    if (l->n_quarantined >= QUARANTINE)
        free(l->quarantine[slot]);
    l->quarantine[slot] = obj;
    l->n_quarantined++;
#endif
}
