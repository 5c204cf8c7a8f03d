/* plexus — fast messaging between processes and hosts.
 *
 * The umbrella header: include this one. Request/reply and one-way
 * messages over tcp://, unix://, shm:// and rdma:// behind one API; see
 * plexus/session.h for the object model and the exactly-once rule.
 */
#ifndef PLEXUS_PLEXUS_H
#define PLEXUS_PLEXUS_H

#include "plexus/api.h"

#include "plexus/error.h"
#include "plexus/log.h"
#include "plexus/context.h"
#include "plexus/memory.h"
#include "plexus/session.h"

#define PX_VERSION_MAJOR 0
#define PX_VERSION_MINOR 1
#define PX_VERSION_PATCH 0

#ifdef __cplusplus
extern "C" {
#endif

/* "0.1.0" */
PX_API const char *px_version(void);

#ifdef __cplusplus
}
#endif
#endif
