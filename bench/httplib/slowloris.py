#!/usr/bin/env python3
"""slowloris.py PORT [N] [SECONDS]: holds N connections that send an
unfinished request header, one byte a second, then times a normal
GET /health on a fresh connection every second. Prints one line per probe:
seconds since start, probe latency in ms or 'timeout' (2 s), and how many of
the N connections the server has closed so far. A qualitative check of
thread-per-connection designs (one header-trickling client per worker thread
stalls the server); not part of the timed benchmark."""
import socket, sys, time

port = int(sys.argv[1])
n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
dur = int(sys.argv[3]) if len(sys.argv) > 3 else 8
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    s.setblocking(False)
    conns.append(s)
t0 = time.time()
closed = set()
while time.time() - t0 < dur:
    for i, s in enumerate(conns):
        if i in closed:
            continue
        try:
            s.send(b"X")
            try:
                if s.recv(4096) == b"":
                    closed.add(i)
            except BlockingIOError:
                pass
        except OSError:
            closed.add(i)
    p = socket.create_connection(("127.0.0.1", port))
    p.settimeout(2)
    t = time.time()
    try:
        p.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        ok = p.recv(64).startswith(b"HTTP/1.1 200")
        res = "%.1f ms" % ((time.time() - t) * 1e3) if ok else "error"
    except socket.timeout:
        res = "timeout"
    p.close()
    print("t=%4.1fs probe %-9s closed %d/%d" % (time.time() - t0, res, len(closed), n), flush=True)
    time.sleep(1)
