"""Tiny SMP client for tests (python3 stdlib only): CBOR subset, SMP framing, UDP transport.

Independent of fotagw's C code on purpose: the tests drive fotagw-sim with it, and other helpers'
tests may reuse it to talk to the simulator directly.
"""
import hashlib
import socket
import struct
import time

# ---- CBOR (the subset SMP uses) ---------------------------------------------------------------


def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    if n < 0x100:
        return bytes([major << 5 | 24, n])
    if n < 0x10000:
        return bytes([major << 5 | 25]) + struct.pack(">H", n)
    if n < 0x100000000:
        return bytes([major << 5 | 26]) + struct.pack(">I", n)
    return bytes([major << 5 | 27]) + struct.pack(">Q", n)


def cbor_enc(v):
    if v is True:
        return b"\xf5"
    if v is False:
        return b"\xf4"
    if v is None:
        return b"\xf6"
    if isinstance(v, int):
        return _head(0, v) if v >= 0 else _head(1, -1 - v)
    if isinstance(v, (bytes, bytearray)):
        return _head(2, len(v)) + bytes(v)
    if isinstance(v, str):
        b = v.encode()
        return _head(3, len(b)) + b
    if isinstance(v, (list, tuple)):
        return _head(4, len(v)) + b"".join(cbor_enc(x) for x in v)
    if isinstance(v, dict):
        return _head(5, len(v)) + b"".join(cbor_enc(k) + cbor_enc(x) for k, x in v.items())
    raise TypeError(type(v))


class CborError(Exception):
    pass


def _dec(b, i):
    if i >= len(b):
        raise CborError("short")
    ib = b[i]
    major, info = ib >> 5, ib & 31
    i += 1
    if info == 31:
        if major not in (2, 3, 4, 5):
            if ib == 0xFF:
                raise CborError("unexpected break")
            raise CborError("bad indefinite")
        if major in (2, 3):
            parts = []
            while b[i] != 0xFF:
                p, i = _dec(b, i)
                parts.append(p)
            return (b"".join(parts) if major == 2 else "".join(parts)), i + 1
        out = [] if major == 4 else {}
        while True:
            if i >= len(b):
                raise CborError("short")
            if b[i] == 0xFF:
                return out, i + 1
            if major == 4:
                x, i = _dec(b, i)
                out.append(x)
            else:
                k, i = _dec(b, i)
                x, i = _dec(b, i)
                out[k] = x
    if info < 24:
        n = info
    elif info in (24, 25, 26, 27):
        w = 1 << (info - 24)
        if i + w > len(b):
            raise CborError("short")
        n = int.from_bytes(b[i:i + w], "big")
        i += w
    else:
        raise CborError("bad info")
    if major == 0:
        return n, i
    if major == 1:
        return -1 - n, i
    if major in (2, 3):
        if i + n > len(b):
            raise CborError("short")
        s = b[i:i + n]
        return (bytes(s) if major == 2 else s.decode()), i + n
    if major == 4:
        out = []
        for _ in range(n):
            x, i = _dec(b, i)
            out.append(x)
        return out, i
    if major == 5:
        out = {}
        for _ in range(n):
            k, i = _dec(b, i)
            x, i = _dec(b, i)
            out[k] = x
        return out, i
    if major == 7:
        return {20: False, 21: True, 22: None}.get(info, ("simple", info)), i
    raise CborError("unsupported major %d" % major)


def cbor_dec(b):
    v, i = _dec(b, 0)
    return v


def cbor_is_indefinite_map(b):
    return len(b) > 0 and b[0] == 0xBF

# ---- SMP --------------------------------------------------------------------------------------


OP_READ, OP_READ_RSP, OP_WRITE, OP_WRITE_RSP = 0, 1, 2, 3


def smp_pack(op, group, cid, payload, seq=0, ver=1, raw=False):
    body = payload if raw else cbor_enc(payload)
    return struct.pack(">BBHHBB", (ver << 3) | op, 0, len(body), group, seq, cid) + body


def smp_unpack(pkt):
    if len(pkt) < 8:
        raise CborError("short header")
    b0, flags, ln, group, seq, cid = struct.unpack(">BBHHBB", pkt[:8])
    if len(pkt) != 8 + ln:
        raise CborError("length mismatch %d vs %d" % (len(pkt), 8 + ln))
    return {"op": b0 & 7, "ver": (b0 >> 3) & 3, "group": group, "seq": seq, "id": cid,
            "raw": pkt[8:], "body": cbor_dec(pkt[8:]) if ln else {}}


class SmpTimeout(Exception):
    pass


class UdpClient:
    """One device over SMP/UDP. request() is stop-and-wait; send()/recv() allow pipelining."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, ver=1):
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.timeout = timeout
        self.seq = 0
        self.ver = ver

    def close(self):
        self.sock.close()

    def next_seq(self):
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def send(self, op, group, cid, payload, seq=None, ver=None, raw=False):
        if seq is None:
            seq = self.next_seq()
        self.sock.sendto(smp_pack(op, group, cid, payload, seq, self.ver if ver is None else ver,
                                  raw), self.addr)
        return seq

    def send_raw(self, data):
        self.sock.sendto(data, self.addr)

    def recv(self, timeout=None):
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data, _ = self.sock.recvfrom(65536)
        except socket.timeout:
            raise SmpTimeout()
        return smp_unpack(data)

    def request(self, op, group, cid, payload=None, timeout=None, ver=None):
        seq = self.send(op, group, cid, {} if payload is None else payload, ver=ver)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SmpTimeout()
            rsp = self.recv(left)
            if rsp["seq"] == seq:
                return rsp

    # convenience
    def echo(self, s, **kw):
        return self.request(OP_WRITE, 0, 0, {"d": s}, **kw)["body"]

    def params(self, **kw):
        return self.request(OP_READ, 0, 6, {}, **kw)["body"]

    def state(self, **kw):
        return self.request(OP_READ, 1, 0, {}, **kw)["body"]

    def state_write(self, hash=None, confirm=False, **kw):
        p = {"confirm": confirm}
        if hash is not None:
            p["hash"] = hash
        return self.request(OP_WRITE, 1, 0, p, **kw)["body"]

    def reset(self, **kw):
        return self.request(OP_WRITE, 0, 5, {}, **kw)["body"]

    def erase(self, slot=None, **kw):
        return self.request(OP_WRITE, 1, 5, {} if slot is None else {"slot": slot}, **kw)["body"]

    def upload(self, image_bytes, image=0, chunk=None, window=1, first_timeout=30.0,
               sha=True, upgrade=None, buf_size=2475, stats=None):
        """Uploads with a window of `window` requests in flight; returns the last response
        body. Chunks fill buf_size (SMP header and CBOR overhead counted) unless given.
        stats (a dict) gets counts: answers, max_inflight, stalls (timeouts) and queued (answers
        that came while other requests were still in flight: the device had work waiting)."""
        if stats is None:
            stats = {}
        stats.update(answers=0, max_inflight=0, stalls=0, queued=0)
        if chunk is None:
            chunk = (buf_size - 32) & ~3
        total = len(image_bytes)
        digest = hashlib.sha256(image_bytes).digest()
        first_len = max(32, min(chunk, buf_size - 80))
        first = {"image": image, "len": total, "off": 0,
                 "data": image_bytes[:first_len]}
        if sha:
            first["sha"] = digest
        if upgrade is not None:
            first["upgrade"] = upgrade
        rsp = self.request(OP_WRITE, 1, 1, first, timeout=first_timeout)["body"]
        if "off" not in rsp:
            return rsp
        off = rsp["off"]
        last = rsp
        inflight = {}
        nxt = off
        resync = False
        stalls = 0
        while off < total:
            while not resync and len(inflight) < window and nxt < total:
                data = image_bytes[nxt:nxt + chunk]
                seq = self.send(OP_WRITE, 1, 1, {"off": nxt, "data": data})
                inflight[seq] = nxt + len(data)
                nxt += len(data)
            stats["max_inflight"] = max(stats["max_inflight"], len(inflight))
            try:
                r = self.recv()
            except SmpTimeout:
                stalls += 1
                stats["stalls"] = stalls
                if stalls > 5:
                    raise
                inflight.clear()
                nxt = off
                resync = False
                continue
            if r["seq"] not in inflight:
                continue
            expect = inflight.pop(r["seq"])
            stats["answers"] += 1
            stats["queued"] += 1 if inflight else 0
            body = r["body"]
            if "off" not in body:
                return body
            last = body
            off = max(off, body["off"])
            if body["off"] != expect:
                resync = True
            if resync and not inflight:
                resync = False
                nxt = off
        return last


def image_hash(image_bytes):
    """The SHA256 TLV value of an MCUboot image (what image state reports as hash)."""
    hdr_size, prot = struct.unpack("<HH", image_bytes[8:12])
    img_size = struct.unpack("<I", image_bytes[12:16])[0]
    off = hdr_size + img_size + prot
    magic, tot = struct.unpack("<HH", image_bytes[off:off + 4])
    p = off + 4
    while p < off + tot:
        t, n = struct.unpack("<HH", image_bytes[p:p + 4])
        if t == 0x10:
            return image_bytes[p + 4:p + 4 + n]
        p += 4 + n
    return None


def slots(state_body):
    """{(image, slot): entry} from an image state response."""
    return {(e.get("image", 0), e["slot"]): e for e in state_body.get("images", [])}
