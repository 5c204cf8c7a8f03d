/* The transports compiled into libplexus. The registry registers each of
 * them once, on the first px_transport_find()/px_transport_foreach(); shm
 * and rdma add their tables here. */
#ifndef PX_TRANSPORTS_BUILTIN_H
#define PX_TRANSPORTS_BUILTIN_H

#include "plexus/transport.h"

/* tcp:// and unix:// (transports/tcp/). */
extern const px_transport px_tcp_transport;
/* shm:// (transports/shm/). */
extern const px_transport px_shm_transport;
#if PX_HAVE_RDMA
/* rdma:// (transports/rdma/), when built with rdma-core. */
extern const px_transport px_rdma_transport;
#endif

#endif
