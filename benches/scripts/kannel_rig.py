#!/usr/bin/env python3
"""Helpers of benches/scripts/kannel.sh (standard library only).

  kannel_rig.py sink PORT
      A stand-in for goniec-sink when that binary is not built (it costs about
      ten times goniec-sink's CPU per callback): answers every request at once
      and counts it; GET /count answers {"requests": N, "final": F, "types":
      {...}}. Kannel calls a message's dlr-url with a GET, the report type in
      place of %d: 1 delivered, 2 undelivered, 4 buffered, 8 accepted by the
      SMSC, 16 rejected by the SMSC; a request with type=1, 2 or 16 in its query
      is final, as goniec-sink counts it.

  kannel_rig.py load HOST PORT COUNT CONCURRENCY DLR_BASE [DURATION_LIMIT]
      COUNT GETs to smsbox's /cgi-bin/sendsms over CONCURRENCY keep-alive
      connections (asyncio, raw HTTP/1.1), one SMS each, with goniec-load's
      text (UCS-2) and kind of distinct Polish mobile numbers (a fixed
      permutation of its 120,000,000 numbers), asking for the reports of
      dlr-mask DLR_MASK (env, default 31) at DLR_BASE?id=<n>&type=%d. No
      request is resent. Stops sending after DURATION_LIMIT seconds (default
      300). Prints one JSON line: sent, accepted (HTTP 202), errors by kind, the
      clock time of the first request, the send phase's seconds and rate, the
      latency p50/p99/max of the requests answered and its own CPU seconds.

  kannel_rig.py wait SINK_PORT ACCEPTED TIMEOUT STALL NAME=PID...
      Polls the sink's GET /count every 50 ms until it counted ACCEPTED final
      reports, for at most TIMEOUT seconds, or until no new one came for STALL
      seconds (Kannel drops a receipt it cannot match to a message: that
      message never gets a final report). Prints one JSON line: the sink's
      counts, the clock time of the poll that saw the last final report, and
      the processes' user + system CPU seconds (/proc/PID/stat) at that poll.
"""
import asyncio
import http.client
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse


def sink(port):
    lock = threading.Lock()
    st = {"requests": 0, "final": 0, "types": {}}

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, code, body=b""):
            self.send_response(code)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/count":
                with lock:
                    body = json.dumps(st).encode()
                return self.answer(200, body)
            t = urllib.parse.parse_qs(query).get("type", ["-"])[0]
            with lock:
                st["requests"] += 1
                st["types"][t] = st["types"].get(t, 0) + 1
                if t in ("1", "2", "16"):
                    st["final"] += 1
            self.answer(204)

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                st["requests"] += 1
            self.answer(204)

        def log_message(self, *a):
            pass

    class Server(http.server.ThreadingHTTPServer):
        # smsbox opens up to max-pending-requests connections at once: the
        # default backlog of 5 drops their SYNs (retried after 1 s, 3 s, ...).
        request_queue_size = 1024
        daemon_threads = True

    Server(("127.0.0.1", port), H).serve_forever()


# The recipients: goniec-load's numbering (benches/src/payload.rs), a fixed
# permutation n -> (A*n + B) mod 120,000,000 (A coprime to 2, 3 and 5).
PREFIXES = ["50", "51", "53", "57", "60", "66", "69", "72", "73", "78", "79", "88"]
DISTINCT = len(PREFIXES) * 10_000_000
A, B = 48_271_009, 12_345_678


def phone(n):
    r = (A * n + B) % DISTINCT
    return "+48%s%07d" % (PREFIXES[r % 12], r // 12)


async def load(host, port, count, conc, dlr_base, limit):
    q = urllib.parse.quote
    mask = os.environ.get("DLR_MASK", "31")
    head = ("/cgi-bin/sendsms?username=bench&password=benchpw&from=Goniec"
            "&coding=2&charset=UTF-8&dlr-mask=" + mask)
    next_n = 0
    lat = []
    res = {"sent": 0, "accepted": 0, "errors": {}}
    start = time.time()
    deadline = time.monotonic() + limit

    def err(kind):
        res["errors"][kind] = res["errors"].get(kind, 0) + 1

    async def worker():
        nonlocal next_n
        reader = writer = None
        while next_n < count and time.monotonic() < deadline:
            n = next_n
            next_n += 1
            text = "Dzień dobry, przypominamy o płatności 120,50 zł. Ref %d" % n
            url = "%s&to=%s&text=%s&dlr-url=%s" % (
                head, q(phone(n), safe=""), q(text, safe=""),
                q("%s?id=%d&type=%%d" % (dlr_base, n), safe=""))
            req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (url, host, port)).encode()
            t0 = time.monotonic()
            res["sent"] += 1
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(req)
                status_line = await asyncio.wait_for(reader.readline(), 30)
                if not status_line:
                    raise ConnectionError("closed")
                status = int(status_line.split()[1])
                length, close = 0, False
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = line.decode("latin-1").partition(":")
                    k = k.strip().lower()
                    if k == "content-length":
                        length = int(v)
                    elif k == "connection" and v.strip().lower() == "close":
                        close = True
                if length:
                    await reader.readexactly(length)
                lat.append(time.monotonic() - t0)
                if status == 202:
                    res["accepted"] += 1
                else:
                    err("http_%d" % status)
                if close:
                    writer.close()
                    writer = None
            except (OSError, ValueError, IndexError, asyncio.TimeoutError,
                    asyncio.IncompleteReadError) as e:
                err(type(e).__name__)
                if writer is not None:
                    writer.close()
                writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(conc)))
    send_s = time.time() - start
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 1) if lat else None

    res.update(first_send_t=start, send_s=round(send_s, 3),
               accepted_per_s=round(res["accepted"] / send_s, 1) if send_s else None,
               api_p50_ms=pct(0.50), api_p99_ms=pct(0.99),
               api_max_ms=round(lat[-1] * 1000, 1) if lat else None,
               cpu_s=round(time.process_time(), 2))
    print(json.dumps(res), flush=True)


def cpu_of(pid):
    try:
        with open("/proc/%s/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def wait(sink_port, accepted, timeout, stall, procs):
    conn = http.client.HTTPConnection("127.0.0.1", sink_port, timeout=10)
    start = last_move = time.monotonic()
    counts = {"requests": 0, "final": -1}
    out = {}
    while True:
        try:
            conn.request("GET", "/count")
            c = json.loads(conn.getresponse().read())
        except (OSError, ValueError, http.client.HTTPException):
            conn.close()
            c = counts
        now = time.monotonic()
        if c["final"] != counts["final"] or not out:
            out = {"last_final_t": time.time(),
                   "cpu": {name: cpu_of(pid) for name, pid in procs}}
            last_move = now
        counts = c
        if c["final"] >= accepted or now - start > timeout or now - last_move > stall:
            break
        time.sleep(0.05)
    out["sink"] = counts
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    a = sys.argv
    if len(a) == 3 and a[1] == "sink":
        sink(int(a[2]))
    elif len(a) in (7, 8) and a[1] == "load":
        limit = float(a[7]) if len(a) == 8 else 300.0
        asyncio.run(load(a[2], int(a[3]), int(a[4]), int(a[5]), a[6], limit))
    elif len(a) >= 6 and a[1] == "wait":
        wait(int(a[2]), int(a[3]), float(a[4]), float(a[5]), [x.split("=", 1) for x in a[6:]])
    else:
        sys.exit(__doc__)
