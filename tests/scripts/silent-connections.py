#!/usr/bin/env python3
"""Slow bodies against a running worker: opens N connections (from PER_IP connections per
127.0.x.200 source address), each sending a POST head with content-length 100000 and one byte of
body, then silence; prints the worker's RSS and descriptors, probes /healthz from another address,
and counts over 12 s how many were answered (408) and closed. Every socket is closed at exit;
loopback only.

    python3 tests/scripts/silent-connections.py 127.0.0.1 18700 5000 <worker pid> 500

The README's figures for --body-timeout and the connection caps come from this script (with the
worker started by hand, e.g. under `prlimit --nofile=256:256`).
"""
import socket, sys, time, os, json
api=(sys.argv[1], int(sys.argv[2])); n=int(sys.argv[3]); pid=int(sys.argv[4]); per_ip=int(sys.argv[5])
def rss(): 
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return l.split()[1]+" kB"
def fds(): return len(os.listdir(f"/proc/{pid}/fd"))
socks=[]
t0=time.time()
for i in range(n):
    s=socket.socket(); s.bind((f"127.0.{1+i//per_ip}.{200}",0)); s.settimeout(5)
    try:
        s.connect(api)
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{" % (api[0].encode(), api[1]))
    except Exception as e: print("connect", i, e); 
    socks.append(s)
print(f"opened {n} in {time.time()-t0:.1f}s; worker rss {rss()} fds {fds()}")
def probe():
    s=socket.socket(); s.bind(("127.0.99.1",0)); s.settimeout(3)
    try:
        s.connect(api); s.sendall(b"GET /healthz HTTP/1.1\r\nhost: %s:%d\r\nconnection: close\r\n\r\n"% (api[0].encode(), api[1]))
        d=s.recv(4096); return d.split(b"\r\n\r\n",1)[-1].decode()[:200] if d else "closed"
    except Exception as e: return f"no answer: {e}"
    finally: s.close()
print("probe:", probe())
for k in range(12):
    time.sleep(1)
    for s in socks: s.setblocking(False)
    answered=closed=0
    for s in socks:
        try:
            d=s.recv(65536)
            if d==b"": closed+=1
            elif b" 408 " in d[:20]: answered+=1
        except BlockingIOError: pass
        except Exception: closed+=1
    print(f"t={time.time()-t0:.0f}s: 408 seen on {answered} more, closed {closed}; worker rss {rss()} fds {fds()}; probe {probe()}")
