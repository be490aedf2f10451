#!/usr/bin/env python3
"""Helpers of benches/scripts/kannel.sh (standard library only).

  kannel_rig.py sink PORT
      The delivery-report sink: answers every request 200 at once and counts
      them. Kannel calls a message's dlr-url with a GET; kannel.sh gives each
      message the URL /dlr?n=<message number>&t=%d, Kannel putting the report
      type in place of %d (1 delivered, 2 undelivered, 4 buffered, 8 accepted
      by the SMSC, 16 rejected by the SMSC; 1, 2 and 16 are final).
      GET /stats answers the counters as JSON: callbacks, their types, the
      messages with a final report (distinct), repeated finals, and the clock
      time of the last new final report; GET /finals just the number of
      messages with a final report.

  kannel_rig.py load HOST PORT COUNT CONCURRENCY DLR_BASE [DURATION_LIMIT]
      COUNT GETs to smsbox's /cgi-bin/sendsms over CONCURRENCY keep-alive
      connections (asyncio, raw HTTP/1.1), one SMS each, the same text and the
      same kind of distinct Polish mobile numbers as goniec-load (a fixed
      permutation of the 120,000,000 numbers), asking for every report
      (dlr-mask, default 31, env DLR_MASK) at DLR_BASE?n=<n>&t=%d. Stops
      sending after DURATION_LIMIT seconds (default 300). Prints one JSON line:
      sent, accepted (HTTP 202), errors by kind, the clock time of the first
      request, the send phase's seconds and rate, the latency p50/p99/max and
      its own CPU seconds.

  kannel_rig.py wait SINK_PORT ACCEPTED TIMEOUT STALL NAME=PID...
      Polls the sink every 0.2 s until it has a final report for ACCEPTED
      messages, for at most TIMEOUT seconds, or until no new one came for STALL
      seconds (Kannel drops a receipt it cannot match: that message never gets
      one). Prints a JSON map of the processes' user + system CPU seconds
      (/proc/PID/stat) at the last poll that saw the count move (or the first).
"""
import asyncio
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse

FINAL_TYPES = 1 | 2 | 16  # delivered, undelivered, rejected by the SMSC


def sink(port):
    lock = threading.Lock()
    st = {"callbacks": 0, "types": {}, "finals": 0, "repeated_finals": 0,
          "last_final_t": None, "other": 0}
    final_seen = set()

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, body=b"ok", ctype="text/plain"):
            self.send_response(200)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/stats":
                with lock:
                    body = json.dumps(st).encode()
                return self.answer(body, "application/json")
            if path == "/finals":
                return self.answer(str(st["finals"]).encode())
            q = urllib.parse.parse_qs(query)
            now = time.time()
            with lock:
                st["callbacks"] += 1
                t = q.get("t", ["?"])[0]
                st["types"][t] = st["types"].get(t, 0) + 1
                try:
                    final = int(t) & FINAL_TYPES
                except ValueError:
                    final = 0
                if final:
                    n = q.get("n", [""])[0]
                    if n in final_seen:
                        st["repeated_finals"] += 1
                    else:
                        final_seen.add(n)
                        st["finals"] += 1
                        st["last_final_t"] = now
            self.answer()

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            with lock:
                st["other"] += 1
            self.answer()

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
    head = "/cgi-bin/sendsms?username=bench&password=benchpw&from=Goniec&coding=2&charset=UTF-8&dlr-mask=" + mask
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
                q("%s?n=%d&t=%%d" % (dlr_base, n), safe=""))
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
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", sink_port, timeout=10)
    start = last_move = time.monotonic()
    last = -1
    snap = {}
    while True:
        try:
            conn.request("GET", "/finals")
            n = int(conn.getresponse().read())
        except (OSError, ValueError, http.client.HTTPException):
            conn.close()
            n = last
        now = time.monotonic()
        if n != last:
            snap = {name: cpu_of(pid) for name, pid in procs}
            last, last_move = n, now
        if n >= accepted or now - start > timeout or now - last_move > stall:
            break
        time.sleep(0.2)
    print(json.dumps(snap), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sink":
        sink(int(sys.argv[2]))
    elif len(sys.argv) in (7, 8) and sys.argv[1] == "load":
        h, p, c, k, base = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
        limit = float(sys.argv[7]) if len(sys.argv) == 8 else 300.0
        asyncio.run(load(h, p, c, k, base, limit))
    elif len(sys.argv) >= 7 and sys.argv[1] == "wait":
        procs = [a.split("=", 1) for a in sys.argv[6:]]
        wait(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), procs)
    else:
        sys.exit(__doc__)
