/* The host services table every transport instance gets (tp_host.c). */
#ifndef PX_CORE_TP_HOST_H
#define PX_CORE_TP_HOST_H

#include "plexus/transport.h"

extern const px_tp_host_ops px_tp_host_table;

#endif
