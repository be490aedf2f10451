#!/usr/bin/env python3
"""Single messages with N unused vars (default 900,000, ~13 MB: under the default
single-message limit), P at once; prints status and the gateway's RSS / peak RSS."""
import json, sys, time, urllib.request, threading

port, pid, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
N = int(sys.argv[4]) if len(sys.argv) > 4 else 900_000
P = int(sys.argv[5]) if len(sys.argv) > 5 else 1
def kb():
    r = dict(l.split(":") for l in open(f"/proc/{pid}/status").read().splitlines() if l.startswith(("VmRSS","VmHWM")))
    return int(r["VmRSS"].split()[0]) // 1024, int(r["VmHWM"].split()[0]) // 1024
vars_ = {f"v{i}": "x" for i in range(N)}
body = json.dumps({"channel": "sms", "to": "+48501234567", "template": "Dzień dobry {{v0}}", "vars": vars_}).encode()
print(f"body {len(body)/1e6:.1f} MB x {P}; RSS before (MB, peak):", kb())
out = []
def one():
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/messages", data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        r = urllib.request.urlopen(req, timeout=120); out.append((r.status, json.loads(r.read()).get("status")))
    except urllib.error.HTTPError as e:
        out.append((e.code, json.loads(e.read()).get("code")))
t0 = time.time()
ts = [threading.Thread(target=one) for _ in range(P)]
[t.start() for t in ts]; [t.join() for t in ts]
print(f"answers {out} in {time.time()-t0:.1f}s; RSS after (MB, peak):", kb())
