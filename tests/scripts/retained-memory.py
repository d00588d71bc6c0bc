#!/usr/bin/env python3
"""Memory of a worker that keeps outcomes: one worker (started here, stopped at the end) runs
10,000 echo jobs of 64 KiB (DATA=bytes to change it) sent with ?wait=true over one connection,
and its RSS before and after is printed beside the retained-outcome gauges. Loopback only.

    python3 tests/scripts/retained-memory.py target/debug/worker 18600 [worker flags...]

The README's figures for --retain-bytes and --max-output-bytes come from this script.
"""
import http.client, json, subprocess, sys, time, os
binary, port = sys.argv[1], int(sys.argv[2])
extra = sys.argv[3:]
p = subprocess.Popen([binary, "--api", f"127.0.0.1:{port}", "--gossip", f"127.0.0.1:{port+1}",
                      "--node-id", "m1", "--slots", "2"] + extra,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def rss():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
try:
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/healthz"); c.getresponse().read(); break
        except OSError:
            time.sleep(0.1)
    before = rss()
    body = json.dumps({"kind": "echo", "data": "x" * int(os.environ.get("DATA", "65536"))})
    t0 = time.time()
    for i in range(10000):
        c.request("POST", "/v1/jobs?wait=true", body, {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
    after = rss()
    c.request("GET", "/metrics"); m = c.getresponse().read().decode()
    g = {l.split()[0]: l.split()[1] for l in m.splitlines() if l.startswith("hearsay_jobs_retained")}
    print(f"{binary} {' '.join(extra)}: RSS {before} MB -> {after} MB after 10000 x 64 KiB echo jobs ({time.time()-t0:.0f} s); {g}")
finally:
    p.terminate(); p.wait()
