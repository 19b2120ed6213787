#!/usr/bin/env python3
"""origin.py — a small programmable HTTP origin for the fetch engine tests.

Run: python3 tests/fetch/origin.py [PORT]   (0 or nothing: any free port)
Binds 127.0.0.1 only and prints the port on the first line of stdout.
Python standard library only. Threads: one per connection
(ThreadingHTTPServer, HTTP/1.1 keep-alive); the counters are under a lock.

Paths (every path also takes ?delay=MS, a wait before answering):
  /img/NAME[?size=N]       N bytes (default 1000) of a pattern derived from
                           NAME (see body_for), ETag and Last-Modified; 304 to
                           a matching If-None-Match or If-Modified-Since
  /status/CODE[?times=N]   answers CODE the first N times (default: always)
                           for this exact path+query, then 200 "ok"
  /retry-after/N[?after=S&date=1]
                           429 with Retry-After: S (default 1; an HTTP-date
                           if date=1) N times, then 200 "ok"
  /reset[?times=N]         closes the connection with a TCP reset N times
                           (default 1), then 200 "ok"
  /slow                    Content-Length 1000, drips 10 bytes/s
  /big[?size=N]            Content-Length N (default 100 MiB), then zeros
  /big-chunked             chunked, endless 64 KiB chunks
  /redirect?to=URL[&code=C]  C (default 302) with Location: URL
  /loop                    302 to itself, forever
  /headers                 the request headers, one "name: value" a line
  /hang                    reads the request, never answers
  /count?path=P            how many requests P (path+query) received
  /count?max_active=HOST   most requests from Host HOST answered at once
  /count?max_per_sec=HOST  most requests from HOST in any 1 s window
  /count                   JSON: {"counts": {...}, "max_active": {host: n},
                           "max_per_sec": {host: n}, "total": n}
  /stats/reset             forgets counts and maxima
  /file/NAME[?fault=F&times=N&tag=T]
                           the file NAME from the folder in $ORIGIN_ROOT
                           (real images for end-to-end runs), with an ETag
                           (its SHA-256) and 304 to a matching If-None-Match;
                           the first N requests of this path+query get fault
                           F instead: an HTTP code (500, 503, 408...), 429
                           (with Retry-After: 1), reset (TCP reset) or
                           truncate (half the body, then close). T only
                           makes URLs distinct.
  /html                    200 with Content-Type text/html (an error page
                           served as success, as some origins do)
Requests to /count, /stats and /headers are not counted.
"""
import email.utils
import hashlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
LAST_MODIFIED_TS = email.utils.parsedate_to_datetime(LAST_MODIFIED).timestamp()

lock = threading.Lock()
counts = {}  # path+query -> requests
active = {}  # Host header -> requests being answered now
max_active = {}
arrivals = {}  # Host header -> recent arrival times (for max_per_sec)
max_per_sec = {}
total = 0


def body_for(name, size):
    """The bytes of /img/NAME: byte i is (i * 7 + len(NAME) * 13 +
    first byte of NAME) % 251. test_fetch.c computes the same."""
    seed = len(name) * 13 + (name.encode()[0] if name else 0)
    return bytes((i * 7 + seed) % 251 for i in range(size))


def etag_for(name, size):
    return '"' + hashlib.sha256(f"{name}:{size}".encode()).hexdigest()[:16] + '"'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def send_plain(self, code, text, extra=None):
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        global total
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        key = self.path
        host = self.headers.get("Host", "?").rsplit(":", 1)[0]
        counted = not (path.startswith("/count") or path.startswith("/stats")
                       or path == "/headers")
        if counted:
            now = time.monotonic()
            with lock:
                counts[key] = counts.get(key, 0) + 1
                total += 1
                active[host] = active.get(host, 0) + 1
                max_active[host] = max(max_active.get(host, 0), active[host])
                arr = [t for t in arrivals.get(host, []) if t > now - 1.0]
                arr.append(now)
                arrivals[host] = arr
                max_per_sec[host] = max(max_per_sec.get(host, 0), len(arr))
                nth = counts[key]
        try:
            if "delay" in q:
                time.sleep(int(q["delay"]) / 1000.0)
            self.route(path, q, key, nth if counted else 0)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            if counted:
                with lock:
                    active[host] -= 1

    def route(self, path, q, key, nth):
        if path.startswith("/file/") and nth <= int(q.get("times", "0")):
            fault = q.get("fault", "503")
            if fault == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
            elif fault == "429":
                self.send_plain(429, "slow down", {"Retry-After": "1"})
            elif fault == "truncate":
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                self.wfile.write(b"\xff\xd8\xff" + b"\0" * 1000)
                self.close_connection = True
            else:
                self.send_plain(int(fault), "injected fault")
            return
        if path.startswith("/file/"):
            root = os.environ.get("ORIGIN_ROOT", ".")
            name = os.path.basename(path[6:])
            try:
                with open(os.path.join(root, name), "rb") as f:
                    data = f.read()
            except OSError:
                self.send_plain(404, "not found")
                return
            etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
            if self.headers.get("If-None-Match", "").strip() == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            ctype = {"png": "image/png", "webp": "image/webp",
                     "gif": "image/gif"}.get(name.rsplit(".", 1)[-1], "image/jpeg")
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", etag)
            self.end_headers()
            self.wfile.write(data)
        elif path == "/html":
            data = b"<html><body>Sorry, not found</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif path.startswith("/img/"):
            name = path[5:]
            size = int(q.get("size", "1000"))
            etag = etag_for(name, size)
            inm = self.headers.get("If-None-Match")
            ims = self.headers.get("If-Modified-Since")
            fresh = False
            if inm is not None:
                fresh = inm.strip() == etag or inm.strip() == "*"
            elif ims is not None:
                try:
                    t = email.utils.parsedate_to_datetime(ims).timestamp()
                    fresh = t >= LAST_MODIFIED_TS
                except (TypeError, ValueError):
                    fresh = False
            if fresh:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", LAST_MODIFIED)
                self.end_headers()
                return
            data = body_for(name, size)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", LAST_MODIFIED)
            self.end_headers()
            self.wfile.write(data)
        elif path.startswith("/status/"):
            code = int(path[8:])
            times = int(q.get("times", "1000000000"))
            if nth <= times:
                self.send_plain(code, f"status {code}\n")
            else:
                self.send_plain(200, "ok")
        elif path.startswith("/retry-after/"):
            times = int(path[13:])
            after = int(q.get("after", "1"))
            if nth <= times:
                if q.get("date") == "1":
                    ra = email.utils.formatdate(time.time() + after,
                                                usegmt=True)
                else:
                    ra = str(after)
                self.send_plain(429, "slow down\n", {"Retry-After": ra})
            else:
                self.send_plain(200, "ok")
        elif path == "/reset":
            if nth <= int(q.get("times", "1")):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            self.send_plain(200, "ok")
        elif path == "/slow":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/big":
            size = int(q.get("size", str(100 << 20)))
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"\0" * 65536
            left = size
            while left > 0:
                n = min(left, len(chunk))
                self.wfile.write(chunk[:n])
                left -= n
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * 65536
            head = b"%x\r\n" % len(chunk)
            while True:
                self.wfile.write(head + chunk + b"\r\n")
        elif path == "/redirect":
            code = int(q.get("code", "302"))
            self.send_plain(code, "moved\n", {"Location": q.get("to", "/")})
        elif path == "/loop":
            self.send_plain(302, "again\n", {"Location": "/loop"})
        elif path == "/headers":
            text = "".join(f"{k.lower()}: {v}\n" for k, v in self.headers.items())
            self.send_plain(200, text)
        elif path == "/hang":
            # Never answer, but end when the client goes away, so a hung
            # request does not count as active forever.
            deadline = time.monotonic() + 3600
            while time.monotonic() < deadline:
                r, _, _ = select.select([self.connection], [], [], 0.2)
                if r and not self.connection.recv(1, socket.MSG_PEEK):
                    break
            self.close_connection = True
        elif path == "/count":
            with lock:
                if "path" in q:
                    text = str(counts.get(q["path"], 0))
                elif "max_active" in q:
                    text = str(max_active.get(q["max_active"], 0))
                elif "max_per_sec" in q:
                    text = str(max_per_sec.get(q["max_per_sec"], 0))
                else:
                    text = json.dumps({"counts": counts,
                                       "max_active": max_active,
                                       "max_per_sec": max_per_sec,
                                       "total": total})
            self.send_plain(200, text)
        elif path == "/stats/reset":
            with lock:
                counts.clear()
                max_active.clear()
                max_per_sec.clear()
                arrivals.clear()
            self.send_plain(200, "ok")
        else:
            self.send_plain(404, "not found\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def handle_error(self, request, client_address):
        # Clients that abort (size limits, timeouts) are expected here.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    srv = Server(("127.0.0.1", port), Handler)
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
