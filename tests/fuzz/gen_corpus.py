#!/usr/bin/env python3
"""Write the seed corpus of fuzz_frame, fuzz_uri and fuzz_handshake (run
from anywhere; the files are committed, rerun only to change them)."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def frame(type_, flags=0, hdr_len=0, channel=0, data_len=0, id_=0, aux=0,
          ext_len=0, version=1, magic=0x5850, reserved=0):
    return struct.pack("<HBBHHIIQIHH", magic, version, type_, flags, hdr_len,
                       channel, data_len, id_, aux, ext_len, reserved)


FRAMES = {
    "hello": frame(1, data_len=16, id_=1) + b"setup-data-bytes",
    "hello_ack": frame(2, data_len=4, aux=0) + b"okay",
    "request": frame(3, hdr_len=8, channel=1, data_len=64, id_=42) + bytes(72),
    "response_err": frame(4, channel=1, id_=42, aux=22),
    "oneway_receipt": frame(5, flags=1, hdr_len=4, data_len=4, id_=7) + b"hdr!data",
    "receipt": frame(6, id_=7),
    "cancel": frame(7, id_=42),
    "fin": frame(8),
    "fin_ack": frame(9),
    "keepalive_ext": frame(10, ext_len=16) + bytes(16),
    "bad_magic": frame(3, magic=0x1234),
    "bad_version": frame(3, version=2),
    "bad_type": frame(11),
    "bad_flags": frame(3, flags=1),
    "bad_reserved": frame(3, reserved=1),
    "control_payload": frame(8, data_len=1) + b"x",
    "huge_lengths": frame(3, hdr_len=0xFFFF, data_len=0xFFFFFFFF, ext_len=1025),
    "truncated": frame(3)[:17],
}

URIS = {
    "tcp4": "tcp://127.0.0.1:7000",
    "tcp6": "tcp://[::1]:0",
    "tcp6_zone": "tcp://[fe80::1%25eth0]:7000/p?iface=eth0",
    "tcp_name": "TCP://localhost:7000",
    "unix": "unix:///run/app.sock",
    "shm": "shm://name",
    "shm_opts": "shm://seg-1.a_b?size=4096&spin_us=50",
    "rdma": "rdma://10.0.0.1:7000?credits=64",
    "opts_escape": "tcp://h:1?a=1&flag&c=x%2Fy&d=",
    "bad_port": "tcp://h:70000",
    "bad_port_empty": "tcp://h:",
    "bad_bracket": "tcp://[::1:7000",
    "bad_scheme": "1tcp://h:1",
    "bad_opt_dup": "tcp://h:1?a=1&a=2",
    "bad_escape": "tcp://h:1?a=%zz",
    "no_sep": "tcp:/h:1",
    "too_long": "unix:///" + "a" * 1100,
}


HS_MAGIC = 0x53485850


def hello(min_v=1, max_v=1, depth=512, max_msg=64 << 20, max_hdr=4096,
          max_iov=64, keepalive=5000, token=0, uri=b"tcp://127.0.0.1:7000",
          priv=b"secret"):
    return (struct.pack("<IHHIQIIIQHH", HS_MAGIC, min_v, max_v, depth, max_msg,
                        max_hdr, max_iov, keepalive, token, len(uri),
                        len(priv)) + uri + priv)


def hello_ack(version=1, status=0, reason=0, depth=512, max_msg=64 << 20,
              max_hdr=4096, max_iov=64, keepalive=5000, token=77, data=b"",
              uris=()):
    b = struct.pack("<IHHiIQIIIQHH", HS_MAGIC, version, status, reason, depth,
                    max_msg, max_hdr, max_iov, keepalive, token, len(data),
                    len(uris)) + data
    for u in uris:
        b += struct.pack("<H", len(u)) + u
    return b


HANDSHAKE = {
    "hello": hello(),
    "hello_future": hello(min_v=2, max_v=3, priv=b""),
    "hello_join": hello(token=0x1234, priv=b""),
    "hello_truncated": hello()[:57],
    "hello_no_keepalive": hello(keepalive=0xFFFFFFFF, priv=b""),
    "hello_zero_limits": hello(max_msg=0, max_hdr=0, priv=b""),
    "ack_accept": hello_ack(data=b"welcome"),
    "ack_reject": hello_ack(status=1, reason=-1, data=b"go away"),
    "ack_redirect": hello_ack(status=2, uris=(b"tcp://10.0.0.1:1", b"unix:///x")),
    "ack_bad_version": hello_ack(version=2, data=b"x"),
    "zeros": bytes(64),
}


def write(sub, items):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    for name, data in items.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


write("frame", FRAMES)
def rec(kind, payload):
    """An shm ring record: 16-byte header, payload, padded to 64."""
    b = struct.pack("<IHHQ", len(payload), kind, 0, 0) + payload
    return b + bytes((-len(b)) % 64)


def ring(head, recs, tail=0):
    data = b"".join(recs)
    return struct.pack("<QQ", head if head is not None else len(data), tail) + data


SHM_RING = {
    "frames": ring(None, [rec(2, frame(3, hdr_len=4, data_len=8, id_=1) + bytes(12)),
                          rec(2, frame(5, id_=2))]),
    "pad_wrap": ring(None, [rec(1, bytes(100)), rec(2, frame(10))]),
    "head_past": ring(1 << 20, [rec(2, frame(10))]),
    "bad_len": struct.pack("<QQ", 64, 0) + struct.pack("<IHHQ", 0xFFFFFFF0, 2, 0, 0),
    "bad_kind": ring(None, [rec(9, bytes(8))]),
}


def desc(data_len, flags, segs):
    ext = struct.pack("<II", len(segs), flags) + b"".join(
        struct.pack("<" + "Q" * len(s_), *s_) for s_ in segs)
    return struct.pack("<IH", data_len, len(ext)) + ext


SHM_DESC = {
    "cma_one": desc(100, 0, [(0x1000, 100)]),
    "cma_two": desc(300, 0, [(0x1000, 100), (0x9000, 200)]),
    "cma_wrap": desc(32, 0, [(0xFFFFFFFFFFFFFFF0, 32)]),
    "cma_short": desc(300, 0, [(0x1000, 100)]),
    "pool_one": desc(4096, 1, [(7, 0, 4096)]),
    "bad_flags": desc(10, 5, [(1, 10)]),
}

SHM_RDV = {
    # magic, version, ring, flags, seg_len, probe, pid, pad; then memfd len, seal
    "hello_ok": struct.pack("<IIIIQQiI", 0x6d687370, 1, 262144, 0, 4096 + 2 * 262144,
                            0x1000, 1, 0) + struct.pack("<IB", 4096 + 2 * 262144, 1),
    "hello_unsealed": struct.pack("<IIIIQQiI", 0x6d687370, 1, 262144, 0, 4096 + 2 * 262144,
                                  0, 1, 0) + struct.pack("<IB", 4096 + 2 * 262144, 0),
    "hello_small_fd": struct.pack("<IIIIQQiI", 0x6d687370, 1, 262144, 0, 4096 + 2 * 262144,
                                  0, 1, 0) + struct.pack("<IB", 4096, 1),
    "reply_refused": struct.pack("<IIiIQiI", 0x6d687370, 1, 13, 0, 0, 1, 0),
    "reply_ok": struct.pack("<IIiIQiI", 0x6d687370, 1, 0, 0, 0, 1, 0),
}

STREAM = {
    "small": bytes([10, 0, 200, 0, 0xff, 3, 5, 7]),
    "large": bytes([0x10, 0x83, 0x40, 0x90, 0x05, 0x00, 0xff]) + bytes(range(0, 64, 3)),
    "mixed": bytes([1, 0, 0x20, 0xa0, 2, 0, 0xff, 0, 200, 1]),
    "bytewise": bytes([50, 0, 60, 0, 0xff]) + bytes([0] * 64),
}


def fz(type_, flags=0, hdr_len=0, data_len=0, id_=1, aux=0, ext_len=0):
    return bytes([type_, flags, hdr_len, data_len & 255, data_len >> 8, id_, aux, ext_len])


SESSION = {
    "server_hello_req": bytes([2]) + fz(3, hdr_len=4, data_len=10) + bytes(14),
    "server_no_hello": bytes([0]) + fz(3, data_len=5) + bytes(5),
    "server_fin": bytes([2]) + fz(8) + fz(3, id_=2),
    "server_cancel": bytes([2]) + fz(3, id_=5) + fz(7, id_=5) + fz(7, id_=6),
    "client_ack_resp": bytes([3]) + fz(4, id_=1) + fz(6, id_=2) + fz(9),
    "client_no_ack": bytes([1]) + fz(4, id_=1),
    "client_ack_fin": bytes([3]) + fz(8) + fz(4, aux=4, id_=1),
}

write("uri", URIS)
write("shm_ring", SHM_RING)
write("shm_desc", SHM_DESC)
write("shm_rdv", SHM_RDV)
write("stream", STREAM)
write("session", SESSION)
write("handshake", HANDSHAKE)
