/* The session layer's per-context state; see layer.c. */
#ifndef PX_SESSION_LAYER_H
#define PX_SESSION_LAYER_H

#include "session/task.h"

typedef struct px_layer {
    task_cache tasks;
    px_list orphans;   /* px_session.server_link: server sessions of unbound servers */
    void **quarantine; /* debug builds: retired handles, a ring */
    unsigned n_quarantined;
    px_list conns;        /* every px_conn of the context (px_conn.layer_link) */
    px_conn_stats closed; /* the counters of its connections already freed */
    uint64_t conns_opened, conns_closed;
    px_list links;         /* client links others may join (px_nexus.layer_link) */
    uint64_t links_opened; /* every link the context made or accepted */
    uint64_t links_open;
} px_layer;

/* Create the context's layer state if it has none. Returns 0; -PX_ENOMEM. */
int layer_ensure(px_ctx *ctx);
/* The context's layer state (layer_ensure() ran before). */
px_layer *layer_of(px_ctx *ctx);

#endif
