/* Answering, releasing and canceling messages. */
#include <string.h>

#include "plexus/error.h"
#include "session/internal.h"
#include "session/task.h"

int px_send_response(px_msg *req)
{
    if (!req)
        return -PX_EINVAL;
    msg_priv *mp = msg_priv_of(req);
    if (mp->state != MS_DELIVERED || req->type != PX_MSG_REQUEST)
        return -PX_EINVAL;
    px_task *t = mp->task;
    px_conn *c = mp->conn;
    if (t->released)
        return t->auto_answered ? -PX_ESHUTDOWN : -PX_EALREADY;
    if (c->state == CS_DEAD || !c->tp)
        return -PX_ENOTCONN;
    uint64_t data_len;
    int rc = conn_check_out(c, req, &data_len);
    if (rc < 0)
        return rc;
    px_tp_send *s = &t->send;
    memset(&s->hdr, 0, sizeof(s->hdr));
    s->hdr.version = PX_WIRE_VERSION;
    s->hdr.type = PX_FT_RESPONSE;
    s->hdr.id = t->peer_id;
    s->hdr.hdr_len = (uint16_t)req->out.header_len;
    s->hdr.data_len = (uint32_t)data_len;
    s->app_hdr = req->out.header;
    s->data = req->out.iov;
    s->data_count = req->out.iov_count;
    t->state = TS_RESPONDING;
    t->released = 1;
    t->in_transport = 1;
    rc = conn_tp_send(c, s);
    if (rc < 0) {
        t->state = TS_DELIVERED;
        t->released = 0;
        t->in_transport = 0;
        return rc;
    }
    c->stats.bytes_sent += req->out.header_len + data_len;
    return 0;
}

int px_release_msg(px_msg *msg)
{
    if (!msg)
        return -PX_EINVAL;
    msg_priv *mp = msg_priv_of(msg);
    if (mp->state != MS_DELIVERED)
        return -PX_EINVAL;
    px_task *t = mp->task;
    px_conn *c = mp->conn;
    if (t->released && !t->auto_answered)
        return -PX_EALREADY;
    if (msg->type == PX_MSG_REQUEST && !t->released && c->tp) {
        /* Not answering would leave the requester waiting forever. */
        t->released = 1;
        return rx_respond_error(c, t, -PX_EPEER);
    }
    t->released = 1;
    t->auto_answered = 0;
    if (c->delivering != msg && !t->in_transport)
        rx_release(c, t);
    return 0;
}

int px_release_response(px_msg *req)
{
    if (!req)
        return -PX_EINVAL;
    msg_priv *mp = msg_priv_of(req);
    if (mp->state != MS_RESPONSE_HELD)
        return -PX_EINVAL;
    px_task *t = mp->task;
    tx_task_finish(mp->ctx, t);
    req->in.iov = mp->app_in_iov;
    req->in.iov_count = mp->app_in_count;
    req->in.header = NULL;
    req->in.header_len = 0;
    req->in.data_len = 0;
    mp->state = MS_IDLE;
    mp->task = NULL;
    mp->conn = NULL;
    return 0;
}

static void cancels_fn(px_deferred *d)
{
    conn_flush_cancels(PX_CONTAINER_OF(d, px_conn, cancel_d));
}

void conn_flush_cancels(px_conn *c)
{
    px_list *n;
    while ((n = px_list_pop_front(&c->cancels)) != NULL) {
        px_msg *m = msg_of_link(n);
        conn_complete_error(c, m, -PX_ECANCELED);
    }
}

void conn_init_cancels(px_conn *c)
{
    px_list_init(&c->cancels);
    px_deferred_init(&c->cancel_d, cancels_fn);
}

int px_cancel(px_msg *req)
{
    if (!req)
        return -PX_EINVAL;
    msg_priv *mp = msg_priv_of(req);
    px_conn *c = mp->conn;
    if (mp->frame_type != PX_FT_REQUEST)
        return mp->state == MS_IDLE ? -PX_EALREADY : -PX_EINVAL;
    if (mp->state == MS_PENDING) {
        px_list_del(&mp->link);
        c->pending_bytes -= mp->bytes;
    } else if (mp->state == MS_IN_FLIGHT && mp->task->state == TS_AWAIT_RESPONSE) {
        /* The task stays to swallow the response when it comes. */
        mp->task->state = TS_CANCELED;
        mp->task->msg = NULL;
    } else {
        return -PX_EALREADY;
    }
    mp->state = MS_CANCELED;
    mp->task = NULL;
    px_list_push_back(&c->cancels, &mp->link);
    px_ctx_defer(c->ctx, &c->cancel_d);
    return 0;
}
