#!/usr/bin/env python3
"""server.py — a local stand-in for an OpenAI-compatible vision model, for
tests/vision/test_analyze.sh (python3 standard library only).

It implements POST /v1/chat/completions with the documented request and
answer shapes of the chat-completions API and checks every request: a
JSON object with a non-empty "model", "messages" with a system message
and a user message whose content parts hold a text part and an image_url
part, the image a data URL (data:image/jpeg;base64,...) that decodes as
a baseline JPEG (entropy-decoded here: the DC coefficients give the mean
colour), and a valid "response_format" if there is one. A request that
breaks any of this gets 400 with an OpenAI-style error body.

The answer is deterministic: the caption names the image's mean colour
("a mostly red image, 64x48 pixels"), the tags are the colour, the
orientation and "test"; with a catalog title in the prompt,
product_match is whether the title names that colour. usage counts
tokens as about 4 characters each.

Faults, with no special header:
  - API keys: with --keys, any other key gets 401 (OpenAI's shape).
  - the catalog title chooses an item's fault: MALFORMED (content is not
    JSON), SCHEMA (content breaks the schema), FLAKY (malformed unless
    the prompt says the previous answer was refused), BAD400 (a 400),
    SLOW (answers after --slow seconds), HUGE (a 5 MiB answer).
  - POST /control {"faults": [{"status": 429|500|503, "count": N,
    "after": M, "retry_after": S, "key": K}]}: after M more matching
    requests, the next N (with key K, or any) get that status (with
    Retry-After: S when given). GET /control answers the request count.

Every request is logged as one JSON line (time, key, status, title,
caption, fault) to --log. Threads: one per connection
(ThreadingHTTPServer, HTTP/1.1 keep-alive); the fault list, the counter
and the log are guarded by one lock.

Usage: server.py --port-file FILE --log FILE [--keys k1,k2] [--slow S]
"""
import argparse
import base64
import binascii
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"faults": [], "n": 0, "id": 0}
ARGS = None

# ---- a baseline JPEG entropy decoder (DC coefficients only) ----


class JpegError(Exception):
    pass


def jpeg_mean(data):
    """(width, height, (r, g, b) mean) of a baseline JPEG; raises JpegError."""
    if data[:2] != b"\xff\xd8":
        raise JpegError("no SOI marker")
    pos, n = 2, len(data)
    qt, dc_tabs, ac_tabs = {}, {}, {}
    frame, restart = None, 0
    while pos < n:
        if data[pos] != 0xFF:
            raise JpegError("expected a marker at %d" % pos)
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        m = data[pos]
        pos += 1
        if m == 0xD9:
            break
        if 0xD0 <= m <= 0xD7 or m == 0x01:
            continue
        if pos + 2 > n:
            raise JpegError("truncated segment")
        seglen = int.from_bytes(data[pos:pos + 2], "big")
        seg = data[pos + 2:pos + seglen]
        if seglen < 2 or len(seg) != seglen - 2:
            raise JpegError("truncated segment")
        pos += seglen
        if m == 0xDB:
            i = 0
            while i < len(seg):
                pq, tq = seg[i] >> 4, seg[i] & 15
                size = 128 if pq else 64
                vals = seg[i + 1:i + 1 + size]
                qt[tq] = int.from_bytes(vals[:2], "big") if pq else vals[0]
                i += 1 + size
        elif m in (0xC0, 0xC1):
            h = int.from_bytes(seg[1:3], "big")
            w = int.from_bytes(seg[3:5], "big")
            comps = []
            for k in range(seg[5]):
                cid, hv, tq = seg[6 + 3 * k:9 + 3 * k]
                comps.append({"id": cid, "h": hv >> 4, "v": hv & 15, "tq": tq})
            if not w or not h or not comps:
                raise JpegError("bad frame header")
            frame = (w, h, comps)
        elif m in (0xC2, 0xC3) or 0xC5 <= m <= 0xCF and m not in (0xC8, 0xCC):
            raise JpegError("not a baseline JPEG (SOF%d)" % (m - 0xC0))
        elif m == 0xC4:
            i = 0
            while i < len(seg):
                tc, th = seg[i] >> 4, seg[i] & 15
                counts = seg[i + 1:i + 17]
                syms = seg[i + 17:i + 17 + sum(counts)]
                table, code, k = {}, 0, 0
                for length in range(1, 17):
                    for _ in range(counts[length - 1]):
                        table[(length, code)] = syms[k]
                        code += 1
                        k += 1
                    code <<= 1
                (ac_tabs if tc else dc_tabs)[th] = table
                i += 17 + sum(counts)
        elif m == 0xDD:
            restart = int.from_bytes(seg[:2], "big")
        elif m == 0xDA:
            if frame is None:
                raise JpegError("scan before frame")
            sel = {}
            for k in range(seg[0]):
                cid, t = seg[1 + 2 * k:3 + 2 * k]
                sel[cid] = (t >> 4, t & 15)
            return decode_scan(data, pos, frame, sel, qt, dc_tabs, ac_tabs,
                               restart)
    raise JpegError("no image data")


def decode_scan(data, pos, frame, sel, qt, dc_tabs, ac_tabs, restart):
    w, h, comps = frame
    # entropy-coded bytes: unstuff FF00, split at RST markers
    chunks, cur, i, n = [], bytearray(), pos, len(data)
    while i < n:
        b = data[i]
        if b == 0xFF and i + 1 < n:
            nb = data[i + 1]
            if nb == 0:
                cur.append(0xFF)
                i += 2
                continue
            if 0xD0 <= nb <= 0xD7:
                chunks.append(bytes(cur))
                cur = bytearray()
                i += 2
                continue
            break
        cur.append(b)
        i += 1
    chunks.append(bytes(cur))
    hmax = max(c["h"] for c in comps)
    vmax = max(c["v"] for c in comps)
    if len(comps) == 1:
        units = [(comps[0], 1, 1)]
        n_mcu = ((w + 7) // 8) * ((h + 7) // 8)
    else:
        units = [(c, c["h"], c["v"]) for c in comps]
        n_mcu = ((w + 8 * hmax - 1) // (8 * hmax)) * ((h + 8 * vmax - 1) // (8 * vmax))
    sums = {c["id"]: [0.0, 0] for c in comps}
    for c in comps:
        if c["id"] not in sel or c["tq"] not in qt:
            raise JpegError("missing table")
    chunk_i, bits, bitpos = 0, chunks[0], 0
    pred = {c["id"]: 0 for c in comps}

    def getbit():
        nonlocal bitpos
        byte = bitpos >> 3
        if byte >= len(bits):
            return 1  # pad with ones, as decoders do
        v = (bits[byte] >> (7 - (bitpos & 7))) & 1
        bitpos += 1
        return v

    def decode(table):
        code = 0
        for length in range(1, 17):
            code = (code << 1) | getbit()
            s = table.get((length, code))
            if s is not None:
                return s
        raise JpegError("bad Huffman code")

    def receive(s):
        v = 0
        for _ in range(s):
            v = (v << 1) | getbit()
        if s and v < (1 << (s - 1)):
            v -= (1 << s) - 1
        return v

    for mcu in range(n_mcu):
        if restart and mcu and mcu % restart == 0:
            chunk_i += 1
            if chunk_i >= len(chunks):
                raise JpegError("missing restart marker")
            bits, bitpos = chunks[chunk_i], 0
            pred = {c["id"]: 0 for c in comps}
        for c, nh, nv in units:
            td, ta = sel[c["id"]]
            dct, act = dc_tabs.get(td), ac_tabs.get(ta)
            if dct is None or act is None:
                raise JpegError("missing Huffman table")
            for _ in range(nh * nv):
                t = decode(dct)
                if t > 11:
                    raise JpegError("bad DC size")
                pred[c["id"]] += receive(t)
                k = 1
                while k < 64:
                    rs = decode(act)
                    r, s = rs >> 4, rs & 15
                    if s == 0:
                        if r != 15:
                            break
                        k += 16
                        continue
                    k += r
                    receive(s)
                    k += 1
                acc = sums[c["id"]]
                acc[0] += pred[c["id"]] * qt[c["tq"]] / 8.0 + 128
                acc[1] += 1
        if (bitpos >> 3) > len(bits) + 2:
            raise JpegError("scan data ends early")
    means = [sums[c["id"]][0] / max(1, sums[c["id"]][1]) for c in comps]
    if len(means) == 1:
        y = means[0]
        return w, h, (y, y, y)
    y, cb, cr = means[0], means[1] - 128, means[2] - 128
    rgb = (y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb)
    return w, h, tuple(max(0.0, min(255.0, v)) for v in rgb)


PALETTE = [("red", (200, 30, 30)), ("green", (30, 160, 40)), ("blue", (30, 60, 200)),
           ("yellow", (230, 220, 40)), ("white", (245, 245, 245)), ("black", (10, 10, 10)),
           ("grey", (128, 128, 128)), ("orange", (240, 140, 20)), ("purple", (130, 40, 160))]


def colour_name(rgb):
    return min(PALETTE, key=lambda p: sum((a - b) ** 2 for a, b in zip(rgb, p[1])))[0]

# ---- the API ----


def api_error(status, message, etype="invalid_request_error", code=None):
    return status, {"error": {"message": message, "type": etype, "param": None, "code": code}}


def check_request(req):
    """(title, user_text, (w, h, rgb)) or raises ValueError(message)."""
    if not isinstance(req, dict):
        raise ValueError("the body must be a JSON object")
    if not isinstance(req.get("model"), str) or not req["model"]:
        raise ValueError("you must provide a model parameter")
    msgs = req.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("'messages' must be a non-empty array")
    roles = [m.get("role") if isinstance(m, dict) else None for m in msgs]
    if "system" not in roles or "user" not in roles:
        raise ValueError("expected a system and a user message")
    user = msgs[roles.index("user")]
    parts = user.get("content")
    if not isinstance(parts, list):
        raise ValueError("the user message's content must be an array of parts")
    text, image = None, None
    for p in parts:
        if not isinstance(p, dict):
            raise ValueError("a content part must be an object")
        if p.get("type") == "text" and isinstance(p.get("text"), str):
            text = p["text"]
        elif p.get("type") == "image_url" and isinstance(p.get("image_url"), dict):
            image = p["image_url"].get("url")
            if p["image_url"].get("detail", "auto") not in ("auto", "low", "high"):
                raise ValueError("bad image_url.detail")
        else:
            raise ValueError("unknown content part %r" % p.get("type"))
    if text is None or not isinstance(image, str):
        raise ValueError("expected a text part and an image_url part")
    prefix = "data:image/jpeg;base64,"
    if not image.startswith(prefix):
        raise ValueError("image_url.url must be a data:image/jpeg;base64 URL")
    try:
        raw = base64.b64decode(image[len(prefix):], validate=True)
        img = jpeg_mean(raw)
    except (binascii.Error, JpegError, IndexError, ValueError) as e:
        raise ValueError("Invalid image: %s" % e)
    rf = req.get("response_format")
    if rf is not None:
        t = rf.get("type") if isinstance(rf, dict) else None
        if t == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict) or not isinstance(js.get("name"), str) or \
               not isinstance(js.get("schema"), dict):
                raise ValueError("json_schema needs a name and a schema")
        elif t not in ("json_object", "text"):
            raise ValueError("bad response_format")
    system = msgs[roles.index("system")].get("content")
    if rf is not None and rf.get("type") == "json_object" and "JSON" not in (system or "") + text:
        raise ValueError("'messages' must contain the word 'json' to use json_object")
    title = None
    marker = "Catalog title: "
    if text.startswith(marker):
        dec = json.JSONDecoder()
        try:
            title, _ = dec.raw_decode(text[len(marker):])
        except ValueError:
            raise ValueError("the title is not a JSON string")
    return title, text, img


def answer(req, title, text, img):
    w, h, rgb = img
    col = colour_name(rgb)
    orient = "landscape" if w > h else "portrait" if h > w else "square"
    content = {"caption": "a mostly %s image, %dx%d pixels" % (col, w, h),
               "tags": [col, orient, "test"]}
    if title is not None:
        match = col in title.lower().split()
        content["product_match"] = match
        content["match_score"] = 0.9 if match else 0.1
    fault = None
    t = title or ""
    if "MALFORMED" in t:
        fault, body = "malformed", "Sure! Here is the JSON: {caption: oops"
    elif "SCHEMA" in t:
        fault, body = "schema", json.dumps({"caption": 42, "tags": "red"})
    elif "HUGE" in t:
        fault, body = "huge", json.dumps({"caption": "x" * (5 << 20), "tags": []})
    elif "FLAKY" in t and "previous answer was refused" not in text:
        fault, body = "flaky", "not json at all"
    else:
        body = json.dumps(content)
    with LOCK:
        STATE["id"] += 1
        rid = STATE["id"]
    out = {"id": "chatcmpl-%d" % rid, "object": "chat.completion", "created": int(time.time()),
           "model": req["model"],
           "choices": [{"index": 0, "message": {"role": "assistant", "content": body,
                                                "refusal": None},
                        "logprobs": None, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 85 + len(text) // 4,
                     "completion_tokens": max(1, len(body) // 4)}}
    out["usage"]["total_tokens"] = out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    return out, content["caption"] if fault is None else None, fault


def take_fault(key):
    """The injected fault for this request, or None (under LOCK)."""
    for f in STATE["faults"]:
        if f.get("key") not in (None, key) or f.get("count", 0) <= 0:
            continue
        if f.get("after", 0) > 0:
            f["after"] -= 1
            return None
        f["count"] -= 1
        return f
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        pass

    def send_json(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > 64 << 20:
            raise ValueError("body too large")
        return self.rfile.read(n)

    def do_GET(self):
        if self.path == "/control":
            with LOCK:
                self.send_json(200, {"requests": STATE["n"], "faults": STATE["faults"]})
        else:
            self.send_json(404, {"error": {"message": "not found"}})

    def log(self, rec):
        rec["t"] = time.time()
        with LOCK:
            STATE["n"] += 1
            with open(ARGS.log, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def do_POST(self):
        try:
            raw = self.read_body()
        except ValueError:
            self.send_json(413, {"error": {"message": "too large"}})
            return
        if self.path == "/control":
            with LOCK:
                STATE["faults"] = json.loads(raw or b"{}").get("faults", [])
            self.send_json(200, {"ok": True})
            return
        if self.path != "/v1/chat/completions":
            self.send_json(404, {"error": {"message": "Unknown request URL: %s" % self.path,
                                           "type": "invalid_request_error"}})
            return
        t0 = time.time()
        auth = self.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        rec = {"t0": t0, "key": key}
        if ARGS.keys is not None and key not in ARGS.keys:
            status, obj = api_error(401, "Incorrect API key provided: %s***." % key[:3],
                                    code="invalid_api_key")
            rec["status"] = status
            self.log(rec)
            self.send_json(status, obj)
            return
        with LOCK:
            f = take_fault(key)
        if f:
            hdr = [("Retry-After", str(f["retry_after"]))] if "retry_after" in f else []
            st = int(f["status"])
            rec.update(status=st, fault="injected")
            self.log(rec)
            self.send_json(st, {"error": {"message": "injected %d" % st,
                                          "type": "rate_limit_error" if st == 429 else "server_error"}},
                           hdr)
            return
        try:
            req = json.loads(raw)
            title, text, img = check_request(req)
        except ValueError as e:
            rec.update(status=400, error=str(e))
            self.log(rec)
            self.send_json(*api_error(400, str(e)))
            return
        rec["title"] = title
        if title and "BAD400" in title:
            rec.update(status=400, fault="bad400")
            self.log(rec)
            self.send_json(*api_error(400, "injected: the request was refused"))
            return
        if title and "SLOW" in title:
            time.sleep(ARGS.slow)
            rec["fault"] = "slow"
        out, caption, fault = answer(req, title, text, img)
        rec.update(status=200, caption=caption, model=req["model"])
        if fault:
            rec["fault"] = fault
        self.log(rec)
        try:
            self.send_json(200, out)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--keys", default=None, help="comma-separated accepted keys")
    ap.add_argument("--slow", type=float, default=3.0)
    ap.add_argument("--jpeg", help="print the mean colour of a JPEG file and exit")
    ARGS = ap.parse_args()
    if ARGS.jpeg:
        with open(ARGS.jpeg, "rb") as f:
            print(jpeg_mean(f.read()))
        return
    if ARGS.keys is not None:
        ARGS.keys = set(k for k in ARGS.keys.split(",") if k)
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.rename(tmp, ARGS.port_file)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
