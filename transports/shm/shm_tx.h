/* Send-side details shared by shm_tx.c and shm_bulk.c. */
#ifndef PX_TRANSPORTS_SHM_SHM_TX_H
#define PX_TRANSPORTS_SHM_SHM_TX_H

#include "transports/shm/shm.h"

/* tp_priv[0] bits */
#define TX_MODE      0xffu
#define TX_BULK      2u /* not decided yet between the three below */
#define TX_CMA       3u
#define TX_CHUNKED   4u
#define TX_POOL      5u     /* from announced px_mem_alloc() regions; acked like CMA */
#define TX_HEAD_DONE 0x100u /* chunked: the CHUNKED head record is written */

/* Publish sealed records and wake the consumer if it sleeps. */
void shm_tx_publish(shm_conn *c);

#endif
