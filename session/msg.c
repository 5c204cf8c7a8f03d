/* Answering, releasing, canceling and timing out messages. */
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
        return t->auto_answered ? t->reason : -PX_EALREADY;
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
    s->owner_checked = 1; /* conn_check_out() passed above */
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
    px_list_del(&t->link); /* conn->resp_held, or nothing once the conn is gone */
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

/* ---- giving up: cancel and timeout ------------------------------------------- */

static void cancels_fn(px_deferred *d)
{
    conn_flush_cancels(PX_CONTAINER_OF(d, px_conn, cancel_d));
}

void conn_flush_cancels(px_conn *c)
{
    px_list *n;
    while ((n = px_list_pop_front(&c->cancels)) != NULL) {
        px_msg *m = msg_of_link(n);
        conn_complete_error(c, m, msg_priv_of(m)->reason);
    }
}

static void on_req_timer(px_ctimer *timer);

void conn_init_cancels(px_conn *c)
{
    px_list_init(&c->cancels);
    px_deferred_init(&c->cancel_d, cancels_fn);
    px_ctimer_init(c->ctx, &c->req_timer, on_req_timer);
}

/* The request will not be answered for the application: it ends with
 * `reason` (-PX_ECANCELED, -PX_ETIMEDOUT) from the loop. One in flight
 * keeps its slot until the responder answers the CANCEL we send (or the
 * slot expires), and its reply buffer is never written after the error:
 * a reply already landing there finishes first, then the error comes. */
void conn_give_up(px_conn *c, px_msg *m, int reason)
{
    msg_priv *mp = msg_priv_of(m);
    px_task *t = mp->state == MS_IN_FLIGHT ? mp->task : NULL;
    mp->state = MS_CANCELED;
    mp->reason = reason;
    if (!t) { /* still pending: it never left */
        px_list_del(&mp->link);
        c->pending_bytes -= mp->bytes;
        c->stats.queued_bytes = c->pending_bytes;
    }
    if (t) {
        t->state = TS_CANCELED;
        t->reason = reason;
        t->cancel_tick = c->ticks;
        c->n_canceled++;
        if (!t->rx_into_app)
            t->msg = NULL; /* else completed by the reply's arrival, once it has landed */
    }
    if (!t || !t->rx_into_app) {
        mp->task = NULL;
        px_list_push_back(&c->cancels, &mp->link);
        px_ctx_defer(c->ctx, &c->cancel_d);
    }
    /* Last: a link that dies sending it completes everything above once. */
    if (t)
        conn_send_id_frame(c, PX_FT_CANCEL, t->send.hdr.id);
}

int px_cancel(px_msg *req)
{
    if (!req)
        return -PX_EINVAL;
    msg_priv *mp = msg_priv_of(req);
    if (mp->frame_type != PX_FT_REQUEST)
        return -PX_EINVAL; /* never sent, a one-way message, or a delivery */
    if (mp->state == MS_PENDING ||
        (mp->state == MS_IN_FLIGHT && mp->task->state == TS_AWAIT_RESPONSE)) {
        conn_give_up(mp->conn, req, -PX_ECANCELED);
        return 0;
    }
    return -PX_EALREADY;
}

/* Requests with a timeout: one timer per connection, armed for the
 * earliest deadline; when it fires every request past its deadline is
 * given up and the timer re-armed for the next. Only connections whose
 * requests carry a timeout pay for it. */
void conn_arm_deadline(px_conn *c, uint64_t deadline_ns)
{
    if (c->req_deadline && c->req_deadline <= deadline_ns)
        return;
    c->req_deadline = deadline_ns;
    uint64_t now = px_now_ns();
    px_ctimer_start(&c->req_timer, deadline_ns > now ? deadline_ns - now : 0, 0);
}

/* Give up `m` if its deadline has passed; else fold it into *next. */
static void check_deadline(px_conn *c, px_msg *m, uint64_t now, uint64_t *next)
{
    uint64_t d = msg_priv_of(m)->deadline_ns;
    if (!d)
        return;
    if (d <= now)
        conn_give_up(c, m, -PX_ETIMEDOUT);
    else if (!*next || d < *next)
        *next = d;
}

static void on_req_timer(px_ctimer *timer)
{
    px_conn *c = PX_CONTAINER_OF(timer, px_conn, req_timer);
    uint64_t now = px_now_ns(), next = 0;
    c->req_deadline = 0;
    for (px_list *n = c->pending.next; n != &c->pending;) {
        px_msg *m = msg_of_link(n);
        n = n->next; /* giving up unlinks it */
        check_deadline(c, m, now, &next);
    }
    for (px_list *n = c->awaiting.next; n != &c->awaiting && c->state != CS_DEAD; n = n->next) {
        px_task *t = PX_CONTAINER_OF(n, px_task, link);
        if (t->state == TS_AWAIT_RESPONSE)
            check_deadline(c, t->msg, now, &next);
    }
    if (next && c->state != CS_DEAD)
        conn_arm_deadline(c, next);
}
