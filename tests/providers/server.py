#!/usr/bin/env python3
"""server.py — a local stand-in for two image search APIs, for
tests/providers/test_providers.sh (python3 standard library only).

It speaks the documented request and answer shapes of:
  - the Google Custom Search JSON API, image search:
      GET /customsearch/v1?key=KEY&cx=CX&q=Q&searchType=image&num=N
      -> 200 {"kind": "customsearch#search", "items": [{"link": URL,
         "mime": "image/png", "image": {"width": W, "height": H, ...}}]}
      (no "items" member when nothing is found, as Google does); a wrong
      key -> 400 {"error": {"code": 400, "message": "API key not valid..."}}
      a missing cx or searchType other than image -> 400.
  - Bing Image Search v7:
      GET /v7.0/images/search?q=Q&count=N, header Ocp-Apim-Subscription-Key
      -> 200 {"_type": "Images", "value": [{"contentUrl": URL,
         "width": W, "height": H, ...}]}; a wrong key -> 401.
and serves the result images: GET /img/NAME-WxH.png is a solid-colour PNG
of W x H pixels (made here with zlib).

Results: for a query, 3 results; the first declared 120x90 (small), the
second 800x600, the third 400x300, all at /img/<slug>-<i>-WxH.png where
slug is made from the query. Faults chosen by a word in the query:
  NOTHING   -> no results (both APIs)
  MALFORMG  -> Google answers malformed JSON (Bing answers normally)
  SLOWG     -> Google answers (no results) after --slow seconds; logged
               on arrival (Bing answers normally)
and by POST /control {"faults": [{"api": "google"|"bing",
  "status": 429|500|503, "count": N, "retry_after": S}]}: the next N
requests to that API get that status (with Retry-After: S when given).
GET /control answers the request counts.

Every request is logged as one JSON line to --log: {"t": unix time,
"api": "google"|"bing"|"img"|"other", "q", "status", "fault", "n"
(results), "key_ok"}. Keys are never logged. Threads: one per connection
(ThreadingHTTPServer); the fault list and the log are guarded by one lock.

Usage: server.py --port-file FILE --log FILE --google-key K --bing-key K
       [--slow S]
"""
import argparse
import json
import re
import struct
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATE = {"faults": [], "counts": {}}
ARGS = None


def png(w, h, rgb):
    """A solid-colour 8-bit RGB PNG of w x h pixels."""
    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    row = b"\x00" + bytes(rgb) * w
    raw = zlib.compress(row * h, 6)
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def slug(q):
    s = re.sub(r"[^a-z0-9]+", "-", q.lower()).strip("-")
    return s[:40] or "q"


SIZES = [(120, 90), (800, 600), (400, 300)]


def results(base, q):
    if "NOTHING" in q:
        return []
    return [("%s/img/%s-%d-%dx%d.png" % (base, slug(q), i, w, h), w, h)
            for i, (w, h) in enumerate(SIZES)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def log(self, rec):
        rec["t"] = time.time()
        with LOCK:
            with open(ARGS.log, "a") as f:
                f.write(json.dumps(rec) + "\n")

    def send(self, status, body, ctype="application/json", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def take_fault(self, api):
        with LOCK:
            STATE["counts"][api] = STATE["counts"].get(api, 0) + 1
            for f in STATE["faults"]:
                if f.get("api") == api and f.get("count", 0) > 0:
                    f["count"] -= 1
                    return f
        return None

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if self.path != "/control":
            return self.send(404, "{}")
        with LOCK:
            STATE["faults"] = json.loads(body or b"{}").get("faults", [])
        self.send(200, "{}")

    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        qs = urllib.parse.parse_qs(u.query)
        base = "http://127.0.0.1:%d" % self.server.server_address[1]
        if u.path == "/control":
            with LOCK:
                return self.send(200, json.dumps(STATE["counts"]))
        if u.path.startswith("/img/"):
            m = re.search(r"-(\d+)x(\d+)\.png$", u.path)
            if not m:
                self.log({"api": "img", "path": u.path, "status": 404})
                return self.send(404, "not found", "text/plain")
            w, h = int(m.group(1)), int(m.group(2))
            rgb = (zlib.crc32(u.path.encode()) & 0xFF, 90, 160)
            self.log({"api": "img", "path": u.path, "status": 200})
            return self.send(200, png(w, h, rgb), "image/png")
        if u.path == "/customsearch/v1":
            return self.google(qs, base)
        if u.path == "/v7.0/images/search":
            return self.bing(qs, base)
        self.log({"api": "other", "path": u.path, "status": 404})
        self.send(404, "{}")

    def fault_answer(self, api, q, f):
        hdrs = []
        if f.get("retry_after") is not None:
            hdrs.append(("Retry-After", str(f["retry_after"])))
        self.log({"api": api, "q": q, "status": f["status"],
                  "fault": "injected", "n": 0, "key_ok": True})
        self.send(f["status"], json.dumps(
            {"error": {"code": f["status"], "message": "injected"}}),
            headers=hdrs)

    def google(self, qs, base):
        q = (qs.get("q") or [""])[0]
        key_ok = (qs.get("key") or [""])[0] == ARGS.google_key
        f = self.take_fault("google")
        if not key_ok:
            self.log({"api": "google", "q": q, "status": 400,
                      "fault": "bad_key", "n": 0, "key_ok": False})
            return self.send(400, json.dumps({"error": {
                "code": 400, "message": "API key not valid. Please pass "
                "a valid API key.", "status": "INVALID_ARGUMENT"}}))
        if not (qs.get("cx") or [""])[0] or \
                (qs.get("searchType") or [""])[0] != "image":
            self.log({"api": "google", "q": q, "status": 400,
                      "fault": "bad_request", "n": 0, "key_ok": True})
            return self.send(400, json.dumps({"error": {
                "code": 400, "message": "Invalid Value"}}))
        if f:
            return self.fault_answer("google", q, f)
        if "SLOWG" in q:
            # logged on arrival: the client gives up before the answer
            self.log({"api": "google", "q": q, "status": 200,
                      "fault": "slow", "n": 0, "key_ok": True})
            time.sleep(ARGS.slow)
            return self.send(200, json.dumps({"kind": "customsearch#search"}))
        if "MALFORMG" in q:
            self.log({"api": "google", "q": q, "status": 200,
                      "fault": "malformed", "n": 0, "key_ok": True})
            return self.send(200, '{"kind": "customsearch#search", "items": [')
        num = int((qs.get("num") or ["10"])[0])
        res = results(base, q)[:num]
        ans = {"kind": "customsearch#search",
               "searchInformation": {"totalResults": str(len(res))}}
        if res:
            ans["items"] = [{"kind": "customsearch#result", "title": q,
                             "link": url, "mime": "image/png",
                             "image": {"contextLink": base + "/page",
                                       "width": w, "height": h,
                                       "byteSize": 1000}}
                            for url, w, h in res]
        self.log({"api": "google", "q": q, "status": 200, "fault": None,
                  "n": len(res), "key_ok": True})
        self.send(200, json.dumps(ans))

    def bing(self, qs, base):
        q = (qs.get("q") or [""])[0]
        key_ok = self.headers.get("Ocp-Apim-Subscription-Key") == \
            ARGS.bing_key
        f = self.take_fault("bing")
        if not key_ok:
            self.log({"api": "bing", "q": q, "status": 401,
                      "fault": "bad_key", "n": 0, "key_ok": False})
            return self.send(401, json.dumps({"error": {
                "code": "401", "message": "Access denied due to invalid "
                "subscription key."}}))
        if f:
            return self.fault_answer("bing", q, f)
        count = int((qs.get("count") or ["35"])[0])
        res = results(base, q)[:count]
        ans = {"_type": "Images", "totalEstimatedMatches": len(res),
               "value": [{"name": q, "contentUrl": url,
                          "encodingFormat": "png", "width": w, "height": h}
                         for url, w, h in res]}
        self.log({"api": "bing", "q": q, "status": 200, "fault": None,
                  "n": len(res), "key_ok": True})
        self.send(200, json.dumps(ans))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--google-key", required=True)
    ap.add_argument("--bing-key", required=True)
    ap.add_argument("--slow", type=float, default=3.0)
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    with open(ARGS.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.replace(ARGS.port_file + ".tmp", ARGS.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
