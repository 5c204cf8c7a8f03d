/* px-info -d: the RDMA devices this host has, their ports and the limits
 * the rdma:// transport works within (queue depths, inline size, READs in
 * flight), read with libibverbs directly, as ibv_devinfo would. */
#include <stdio.h>

#include "rdma_devices.h"

#if PX_INFO_RDMA
#include <infiniband/verbs.h>

static const char *port_state(enum ibv_port_state s)
{
    switch (s) {
    case IBV_PORT_ACTIVE:
        return "active";
    case IBV_PORT_DOWN:
        return "down";
    case IBV_PORT_INIT:
        return "init";
    case IBV_PORT_ARMED:
        return "armed";
    default:
        return "other";
    }
}

static const char *link_layer(uint8_t l)
{
    return l == IBV_LINK_LAYER_ETHERNET     ? "Ethernet (RoCE/iWARP)"
           : l == IBV_LINK_LAYER_INFINIBAND ? "InfiniBand"
                                            : "unspecified";
}

static void print_device(struct ibv_device *dev)
{
    struct ibv_context *ctx = ibv_open_device(dev);
    if (!ctx) {
        printf("  %s: cannot open: %m\n", ibv_get_device_name(dev));
        return;
    }
    struct ibv_device_attr a;
    if (ibv_query_device(ctx, &a)) {
        printf("  %s: cannot query: %m\n", ibv_get_device_name(dev));
        ibv_close_device(ctx);
        return;
    }
    printf("  %s (%s)\n", ibv_get_device_name(dev), ibv_node_type_str(dev->node_type));
    printf("    max_qp_wr %d, max_sge %d, max_cqe %d, max_qp_rd_atom %d, "
           "max_qp_init_rd_atom %d, max_mr_size %llu, max_srq_wr %d\n",
           a.max_qp_wr, a.max_sge, a.max_cqe, a.max_qp_rd_atom, a.max_qp_init_rd_atom,
           (unsigned long long)a.max_mr_size, a.max_srq_wr);
    for (uint8_t p = 1; p <= a.phys_port_cnt; p++) {
        struct ibv_port_attr pa;
        if (ibv_query_port(ctx, p, &pa))
            continue;
        printf("    port %u: %s, %s, active MTU %d, max message %u\n", p, port_state(pa.state),
               link_layer(pa.link_layer), 128 << pa.active_mtu, pa.max_msg_sz);
    }
    ibv_close_device(ctx);
}

void print_rdma_devices(void)
{
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    printf("RDMA devices\n");
    if (!list || n == 0)
        printf("  none (rdma:// needs one: a NIC with RoCE, iWARP or InfiniBand, or soft-RoCE: "
               "rdma link add rxe0 type rxe netdev <if>)\n");
    for (int i = 0; i < n; i++)
        print_device(list[i]);
    if (list)
        ibv_free_device_list(list);
}
#else
void print_rdma_devices(void)
{
    printf("RDMA devices\n  not listed: px-info was built without rdma-core\n");
}
#endif
