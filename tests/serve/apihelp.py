#!/usr/bin/env python3
"""apihelp.py — the Python side of tests/serve/test_api.sh: JSON fields,
polling, paging, the OpenAPI/doc comparison, Server-Sent Events, and raw
sockets (slow clients, huge headers, garbage). Standard library only.

Usage: apihelp.py COMMAND ARGS... (see each cmd_* below). Headers are given
as "Name: value" arguments. Nothing here asserts: it prints what it saw and
the shell script compares.
"""
import gzip
import json
import re
import socket
import sys
import time
import urllib.error
import urllib.request


def get_json(url, headers, timeout=30):
    req = urllib.request.Request(url)
    for h in headers:
        k, v = h.split(":", 1)
        req.add_header(k.strip(), v.strip())
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except Exception:
            return e.code, None


def cmd_jf(path, expr):
    """Prints eval(expr) with d = the JSON in path (or <error ...>)."""
    try:
        with open(path, "rb") as f:
            d = json.load(f)
        print(eval(expr, {"d": d, "json": json}))
    except Exception as e:  # the script shows this as the value got
        print(f"<error {type(e).__name__}: {e}>")


def cmd_wait(url, expr, timeout, *headers):
    """Polls url until eval(expr) on its JSON is true; prints the last JSON.
    Exit 0 when it became true, 1 on timeout, 2 when nothing listens any
    more (the server died: no use waiting)."""
    end = time.monotonic() + float(timeout)
    d, refused = None, 0
    while True:
        try:
            _, d = get_json(url, headers)
            refused = 0
            if d is not None and eval(expr, {"d": d}):
                print(json.dumps(d))
                return 0
        except Exception:
            # refused, reset, a bad URL: after 10 in a row, stop waiting
            refused += 1
            if refused >= 10:
                print(json.dumps(d))
                return 2
        if time.monotonic() > end:
            print(json.dumps(d))
            return 1
        time.sleep(0.2)


def cmd_pages(url, limit, *headers):
    """Walks url?limit=N&cursor=... to the end; prints
    {"keys": [...], "ids": [...], "pages": n, "states": [...], "error": ...}."""
    keys, ids, states, pages, cursor, err = [], [], [], 0, None, None
    sep = "&" if "?" in url else "?"
    while pages < 10000:
        u = f"{url}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        st, d = get_json(u, headers)
        pages += 1
        if st != 200 or not isinstance(d, dict):
            err = f"page {pages}: HTTP {st}"
            break
        for it in d.get("items", []):
            keys.append(it.get("key"))
            ids.append(it.get("id"))
            states.append(it.get("state"))
        cursor = d.get("next_cursor")
        if cursor is None:
            break
    print(json.dumps({"keys": keys, "ids": ids, "pages": pages, "states": states,
                      "error": err}))


def doc_routes(doc_path):
    """(METHOD, path) pairs of docs/API.md: the ### headings and the rows
    of the operations table."""
    heads, table = set(), set()
    meth = r"(GET|POST|PUT|DELETE|PATCH|HEAD|OPTIONS)"
    for line in open(doc_path, encoding="utf-8"):
        m = re.match(r"^###\s+`" + meth + r"\s+([^`?\s]+)", line)
        if m:
            heads.add((m.group(1), m.group(2)))
        m = re.match(r"^\|\s*`" + meth + r"\s+(/[^`?\s]*)`", line)
        if m:
            table.add((m.group(1), m.group(2)))
    return heads, table


def cmd_openapi(doc_path, spec_path):
    """Compares the doc's routes with the OpenAPI document. Prints the
    differences; exit 0 when there are none."""
    spec = json.load(open(spec_path))
    ops = set()
    for p, item in spec.get("paths", {}).items():
        for m in item:
            if m.lower() in ("get", "post", "put", "delete", "patch",
                             "head", "options"):
                ops.add((m.upper(), p))
    heads, table = doc_routes(doc_path)
    doc = heads | table
    problems = []
    if len(heads) < 10:
        problems.append(f"only {len(heads)} ### route headings in the doc")
    if len(table) < 5:
        problems.append(f"only {len(table)} routes in the doc's table")
    for m, p in sorted(doc - ops):
        problems.append(f"in the doc, not in openapi.json: {m} {p}")
    for m, p in sorted(ops - doc):
        problems.append(f"in openapi.json, not in the doc: {m} {p}")
    print("; ".join(problems) if problems else
          f"{len(doc)} routes agree")
    return 1 if problems else 0


def cmd_sse(path, job_id):
    """Parses a captured event stream; prints a JSON summary."""
    text = open(path, encoding="utf-8", errors="replace").read()
    events, bad = [], 0
    for block in re.split(r"\r?\n\r?\n", text):
        ev, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                ev = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if ev is None and not data:
            continue
        try:
            d = json.loads("\n".join(data))
            if d.get("id") != int(job_id):
                bad += 1
        except Exception:
            bad += 1
            d = {}
        events.append((ev, d.get("state")))
    print(json.dumps({
        "progress": sum(1 for e in events if e[0] == "progress"),
        "end": sum(1 for e in events if e[0] == "end"),
        "last": events[-1][0] if events else None,
        "last_state": events[-1][1] if events else None,
        "bad_data": bad,
        "other": sorted({e[0] for e in events} - {"progress", "end"},
                        key=str)}))


def cmd_burst(url, n, *headers):
    """n requests at once on one keep-alive connection; prints
    [[status, retry_after, error_code], ...]."""
    import http.client
    from urllib.parse import urlsplit
    u = urlsplit(url)
    out = []
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    hd = dict((h.split(":", 1)[0].strip(), h.split(":", 1)[1].strip())
              for h in headers)
    for _ in range(int(n)):
        try:
            conn.request("GET", u.path + ("?" + u.query if u.query else ""),
                         headers=hd)
            r = conn.getresponse()
            body = r.read()
            code = None
            try:
                code = json.loads(body)["error"]["code"]
            except Exception:
                pass
            out.append([r.status, r.getheader("Retry-After"), code])
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port,
                                                  timeout=30)
        except Exception as e:
            out.append([0, None, str(e)])
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    print(json.dumps(out))


def read_until_close(s, limit):
    """Reads until the peer closes; returns (bytes, closed, seconds)."""
    t0 = time.monotonic()
    buf = b""
    s.settimeout(limit)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return buf, True, time.monotonic() - t0
            buf += b
    except (ConnectionResetError, BrokenPipeError):
        return buf, True, time.monotonic() - t0
    except socket.timeout:
        return buf, False, time.monotonic() - t0


def cmd_slow(host, port, limit):
    """Sends half a request line and nothing more; prints
    "closed SECONDS" or "open"."""
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"GET /health/live HT")
    _, closed, dt = read_until_close(s, float(limit))
    s.close()
    print(f"closed {dt:.1f}" if closed else "open")


def cmd_bigheader(host, port, size):
    """A request with one header of SIZE bytes; prints "status NNN" (the
    first answer's status) and/or "closed", or "open"."""
    s = socket.create_connection((host, int(port)), timeout=10)
    req = (b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " +
           b"a" * int(size) + b"\r\n\r\n")
    try:
        s.sendall(req)
    except (ConnectionResetError, BrokenPipeError):
        pass
    buf, closed, _ = read_until_close(s, 30)
    s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
    parts = []
    if m:
        parts.append("status " + m.group(1).decode())
    parts.append("closed" if closed else "open")
    print(" ".join(parts))


def cmd_garbage(host, port):
    """Sends binary garbage and a bad request line; prints what came back."""
    out = []
    payloads = [bytes(range(256)) * 4 + b"\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 300,
                b"GET /\x00\xff HTTP/9.9\r\n\r\n",
                b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\nabc",
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
    for p in payloads:
        try:
            s = socket.create_connection((host, int(port)), timeout=10)
            try:
                s.sendall(p)
            except (ConnectionResetError, BrokenPipeError):
                pass
            buf, closed, _ = read_until_close(s, 20)
            s.close()
            m = re.match(rb"HTTP/1\.[01] (\d{3})", buf)
            out.append(m.group(1).decode() if m else
                       ("closed" if closed else "open"))
        except OSError as e:
            out.append(f"error:{e}")
    print(" ".join(out))


def cmd_gunzip(path, out):
    """Decodes a gzip body (python's gzip) into out."""
    with open(path, "rb") as f, open(out, "wb") as g:
        g.write(gzip.decompress(f.read()))


def cmd_brotli(path, out):
    """Decodes a br body with the python brotli module; exit 2 if absent."""
    try:
        import brotli
    except ImportError:
        return 2
    with open(path, "rb") as f, open(out, "wb") as g:
        g.write(brotli.decompress(f.read()))
    return 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    rc = globals()["cmd_" + cmd](*args)
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
