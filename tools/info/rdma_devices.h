/* px-info -d (rdma_devices.c). */
#ifndef PX_INFO_RDMA_DEVICES_H
#define PX_INFO_RDMA_DEVICES_H

void print_rdma_devices(void);

#endif
