/* The task cache; see task.h. */
#include <stdlib.h>
#include <string.h>

#include "session/layer.h"
#include "session/task.h"

#define SLAB_TASKS 64

/* One slab of tasks; owned by the cache, freed with the context. */
typedef struct task_slab {
    struct task_slab *next;
    px_task tasks[SLAB_TASKS];
} task_slab;

void task_cache_fini(task_cache *tc)
{
    while (tc->slabs) {
        task_slab *s = tc->slabs;
        tc->slabs = s->next;
        free(s);
    }
}

int task_cache_grow(task_cache *tc)
{
    task_slab *s = calloc(1, sizeof(*s));
    if (!s)
        return -1;
    s->next = tc->slabs;
    tc->slabs = s;
    tc->n_slabs++;
    for (int i = SLAB_TASKS - 1; i >= 0; i--) {
        s->tasks[i].send.tp_next = (px_tp_send *)(void *)tc->free; /* send is first */
        tc->free = &s->tasks[i];
    }
    return 0;
}
