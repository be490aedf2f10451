#!/usr/bin/env python3
"""One 10,000-item batch; prints the gateway's RSS and peak RSS (VmHWM) before and after."""
import json, random, sys, time, urllib.request

port, pid, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def kb():
    r = dict(l.split(":") for l in open(f"/proc/{pid}/status").read().splitlines() if l.startswith(("VmRSS","VmHWM")))
    return int(r["VmRSS"].split()[0]) // 1024, int(r["VmHWM"].split()[0]) // 1024
random.seed(7)
msgs = [{"channel": "sms", "to": f"+4850{random.randrange(10**7):07d}",
         "text": f"Dzień dobry, przypominamy o płatności {i} zł. Zapłać dziś."} for i in range(10000)]
body = json.dumps({"messages": msgs}).encode()
# Warm up first (number metadata, regex caches, connection pools are built once per
# process), so the peak below is what the batch itself costs.
warm = json.dumps({"messages": [dict(m, to=f"+4860{i:07d}") for i, m in enumerate(msgs[:200])]}).encode()
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/messages/batch", data=warm,
    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"}), timeout=60).read()
time.sleep(3)
print(f"body {len(body)/1e6:.1f} MB; RSS before (MB, peak):", kb())
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/messages/batch", data=body,
    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
t0 = time.time()
try:
    r = urllib.request.urlopen(req, timeout=120); code = r.status; out = json.loads(r.read())
except urllib.error.HTTPError as e:
    code = e.code; out = json.loads(e.read())
print(f"{code} in {time.time()-t0:.1f}s accepted={out.get('accepted')} rejected={out.get('rejected')}")
print("RSS right after (MB, peak):", kb())
time.sleep(5)
print("RSS 5 s later (MB, peak):", kb())
