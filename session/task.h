/* Tasks come from a per-context cache that grows in slabs and never
 * shrinks: the steady state allocates nothing, and memory follows the work
 * in flight rather than the number of connections. */
#ifndef PX_SESSION_TASK_H
#define PX_SESSION_TASK_H

#include "session/internal.h"

struct task_slab;

/* The cache, part of the context's layer state. */
typedef struct task_cache {
    struct task_slab *slabs;
    px_task *free; /* threaded through task.send.tp_next */
    size_t n_slabs;
} task_cache;

void task_cache_fini(task_cache *tc);
/* Add a slab of free tasks. 0; -1 when memory is exhausted. */
int task_cache_grow(task_cache *tc);

/* task_get() and task_put() are inline, in session/layer.h. */

#endif
