/* Receive-side helpers shared by shm_rx.c and shm_bulk.c. */
#ifndef PX_TRANSPORTS_SHM_SHM_RX_H
#define PX_TRANSPORTS_SHM_SHM_RX_H

#include "transports/shm/shm.h"

/* Publish the rx tail unless pinned. */
void shm_rx_release(shm_conn *c);
/* Wake the producer if it waits for room or acks. */
void shm_rx_wake_producer(shm_conn *c);
/* `more` for the frame just consumed. */
uint32_t shm_rx_more(shm_conn *c);
/* RX_ASSIGN for c->rx; *own: we supplied the buffer. 0, or -1 when gone. */
int shm_rx_assign(shm_conn *c, int *own);
int shm_rx_deliver_assigned(shm_conn *c, int own);
void shm_rx_own_trim(shm_conn *c);

#endif
