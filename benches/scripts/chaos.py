#!/usr/bin/env python3
"""Helpers for benches/scripts/chaos.sh (standard library only).

  sample OUT --gw NAME=PORT... --sim PORT   timeline: one JSON line every 200 ms
  wait-accepted N --gw PORT... [--min-s S]  until the gateways accepted N messages
  kill-sim STATS_PORT PID OUT EVENTS        read the simulator's /stats, kill -9, note the time
  forward LISTEN_PORT TARGET_FILE           TCP forwarder to the port named in a file
  census REDIS_PORT PREFIX OUT              every message record in Redis: statuses
  report DIR NAME                           one scenario's figures (line + JSON row)
  table RESULTS                             the final table; exit 1 if lost or stuck

Nothing here starts or stops a process except `kill-sim`, which kills the PID
it is given (the simulator chaos.sh started).
"""

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.request

FINAL = ("delivered", "undeliverable", "expired", "failed", "rejected", "cancelled", "read")


def http_get(port, path, timeout=0.5):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.read().decode()
    except Exception:
        return None


METRIC = re.compile(r'^(goniec_[a-z_]+)(?:\{([^}]*)\})? ([0-9.eE+-]+)$')


def gateway_counters(port):
    """The counters the timeline needs from one gateway's /metrics, or None if it is down."""
    text = http_get(port, "/metrics")
    if text is None:
        return None
    c = {"final": 0, "submitted": 0, "accepted": 0, "reclaimed": 0}
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name == "goniec_status_transitions_total":
            st = re.search(r'status="([^"]+)"', labels)
            if st and st.group(1) in FINAL:
                c["final"] += value
            elif st and st.group(1) == "submitted":
                c["submitted"] += value
        elif name == "goniec_messages_accepted_total":
            c["accepted"] += value
        elif name == "goniec_queue_reclaimed_total" and 'lane="sms"' in labels:
            c["reclaimed"] += value
    return {k: int(v) for k, v in c.items()}


def sim_counters(port):
    text = http_get(port, "/stats")
    if text is None:
        return None
    try:
        s = json.loads(text)
        return {"submits": s["submits"], "acked": s["receipts_acked"]}
    except (ValueError, KeyError):
        return None


def cmd_sample(argv):
    out, gws, sim = argv[0], {}, None
    i = 1
    while i < len(argv):
        if argv[i] == "--gw":
            name, port = argv[i + 1].split("=")
            gws[name] = int(port)
        elif argv[i] == "--sim":
            sim = int(argv[i + 1])
        i += 2
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    # Bounded: chaos.sh stops it; 30 minutes is a backstop should it not.
    deadline = time.time() + 1800
    with open(out, "a") as f:
        while not stop and time.time() < deadline:
            t0 = time.time()
            row = {"t": t0, "gw": {n: gateway_counters(p) for n, p in gws.items()}}
            if sim:
                row["sim"] = sim_counters(sim)
            f.write(json.dumps(row) + "\n")
            f.flush()
            time.sleep(max(0.0, 0.2 - (time.time() - t0)))


def cmd_wait_accepted(argv):
    want = int(argv[0])
    ports = [int(argv[i + 1]) for i in range(1, len(argv), 2) if argv[i] == "--gw"]
    min_s = next((float(argv[i + 1]) for i in range(1, len(argv), 2) if argv[i] == "--min-s"), 0)
    start, seen = time.time(), 0
    while time.time() - start < 120:
        seen = sum((gateway_counters(p) or {}).get("accepted", 0) for p in ports)
        if seen >= want and time.time() - start >= min_s:
            return 0
        time.sleep(0.05)
    print(f"chaos: only {seen} of {want} messages accepted after 120 s; faulting anyway", file=sys.stderr)
    return 0


def cmd_kill_sim(argv):
    port, pid, out, events = int(argv[0]), int(argv[1]), argv[2], argv[3]
    stats = http_get(port, "/stats", timeout=2)
    # Right after the read: submits accepted in between are not counted (see README).
    t = time.time()
    os.kill(pid, signal.SIGKILL)
    with open(out, "w") as f:
        f.write(stats or "null")
    with open(events, "a") as f:
        f.write(f"fault {t:.6f}\n")


def cmd_forward(argv):
    listen, target_file = int(argv[0]), argv[1]

    async def pump(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def handle(cr, cw):
        try:
            with open(target_file) as f:
                target = int(f.read().strip())
            ur, uw = await asyncio.open_connection("127.0.0.1", target)
        except (OSError, ValueError):
            cw.close()
            return
        await asyncio.gather(pump(cr, uw), pump(ur, cw))

    async def main():
        srv = await asyncio.start_server(handle, "127.0.0.1", listen, reuse_address=True)
        async with srv:
            await asyncio.sleep(1800)  # bounded backstop; chaos.sh stops it

    asyncio.run(main())


class Redis:
    """Just enough RESP for SCAN and pipelined HMGET."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.s.makefile("rb")

    def send(self, *cmds):
        buf = bytearray()
        for cmd in cmds:
            buf += b"*%d\r\n" % len(cmd)
            for a in cmd:
                a = a if isinstance(a, bytes) else str(a).encode()
                buf += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(buf)
        return [self.read() for _ in cmds]

    def read(self):
        line = self.f.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b"-"):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"unexpected RESP: {line!r}")


def cmd_census(argv):
    port, prefix, out = int(argv[0]), argv[1], argv[2]
    r = Redis(port)
    keys, cursor = [], "0"
    while True:
        cursor, batch = r.send(["SCAN", cursor, "MATCH", f"{prefix}:*:m:*", "COUNT", 2000])[0]
        keys += batch
        if cursor == "0":
            break
    keys = sorted(set(keys))
    by_status, reached, nonfinal = {}, 0, []
    for i in range(0, len(keys), 1000):
        chunk = keys[i:i + 1000]
        for key, (status, events) in zip(chunk, r.send(*[["HMGET", k, "s", "e"] for k in chunk])):
            status = status or "?"
            by_status[status] = by_status.get(status, 0) + 1
            evs = [json.loads(l) for l in (events or "").splitlines() if l.strip()]
            if any(e.get("status") == "submitted" for e in evs):
                reached += 1
            if status not in FINAL:
                nonfinal.append({"id": key.split(":m:", 1)[1], "status": status, "events": evs})
    with open(out, "w") as f:
        json.dump({"stored": len(keys), "by_status": by_status, "reached_smsc": reached,
                   "nonfinal_count": len(nonfinal), "nonfinal": nonfinal[:20]}, f)


# --- report ---------------------------------------------------------------

STALL_PART = re.compile(r"^\s*(\d+) (.*)$")
STALL_STATUS = (("held by anti-fraud", "held"), ("scheduled for later", "scheduled"),
                ("queued, not yet sent", "queued"), ("sent, waiting for a delivery receipt", "submitted"))


def parse_loader(path):
    """goniec-load's stdout JSON and the stderr lines about what is not final."""
    with open(path + ".out") as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    summary = json.loads(lines[-1]) if lines else {}
    pending, statuses, errors = {}, {}, {}
    with open(path + ".err") as f:
        for line in f:
            if line.startswith("final statuses: "):
                statuses = json.loads(line[len("final statuses: "):])
            elif line.startswith("errors: "):
                errors = json.loads(line[len("errors: "):])
            m = re.match(r"^(\d+) messages still not final at timeout: (.*)$", line.strip())
            if m and not m.group(2).startswith("no status could be read"):
                for part in m.group(2).split("; "):
                    pm = STALL_PART.match(part)
                    if pm:
                        label = next((s for text, s in STALL_STATUS if pm.group(2).startswith(text)), pm.group(2))
                        pending[label] = pending.get(label, 0) + int(pm.group(1))
    return summary, pending, statuses, errors


def read_events(path):
    ev = {}
    with open(path) as f:
        for line in f:
            name, t = line.split()
            ev[name] = float(t)
    return ev


def cumulative(rows, pick):
    """[(t, total)] of a counter summed over processes that may restart or die: a
    drop of a process's value means a new process counting from zero."""
    last, total, out = {}, 0, []
    for row in rows:
        for name, c in row["gw"].items() if pick != "sim" else [("sim", row.get("sim"))]:
            if c is None:
                continue
            v = c[pick] if pick != "sim" else c["submits"]
            prev = last.get(name)
            total += v if prev is None else (v - prev if v >= prev else v)
            last[name] = v
        out.append((row["t"], total))
    return out


def at(series, t):
    """The value of a sampled counter at time t, linear between samples."""
    if not series or t <= series[0][0]:
        return series[0][1] if series else 0
    for (t0, v0), (t1, v1) in zip(series, series[1:]):
        if t0 <= t <= t1:
            return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return series[-1][1]


def cmd_report(argv):
    d, name = argv[0], argv[1]
    ev = read_events(os.path.join(d, "events"))
    with open(os.path.join(d, "timeline.jsonl")) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    fault, end = ev["fault"], ev["fault_end"]

    loaders = sorted(p[:-4] for p in os.listdir(d) if p.startswith("load-") and p.endswith(".out"))
    accepted = final = lost = stuck = throttled = 0
    last_final, pending_all, statuses_all, errors_all = None, {}, {}, {}
    per_loader, incomplete = [], []
    for lp in loaders:
        s, pending, statuses, errors = parse_loader(os.path.join(d, lp))
        if s.get("final") is None:
            incomplete.append(lp)  # no summary line: the loader did not finish
        per_loader.append(f"{lp[5:]} {s.get('accepted')} accepted/{s.get('final')} final")
        throttled += s.get("throttled") or 0
        accepted += s.get("accepted") or 0
        final += s.get("final") or 0
        not_final = s.get("not_final") or 0
        seen = sum(pending.values())
        stuck += min(seen, not_final)
        lost += max(0, not_final - seen)
        for src, dst in ((pending, pending_all), (statuses, statuses_all), (errors, errors_all)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        start = ev.get(lp + "_start")
        if start and s.get("final") and s.get("final_per_s"):
            t = start + s["final"] / s["final_per_s"]
            last_final = t if last_final is None else max(last_final, t)

    with open(os.path.join(d, "census.json")) as f:
        census = json.load(f)
    # A 202 whose record is not in Redis is lost, whatever the loader saw.
    lost = max(lost, accepted - census["stored"])

    # Duplicates: submit_sm the SMSC accepted minus the messages it accepted. Counted
    # where it is complete: at the simulator, unless it was the one killed (its
    # last count cannot be read at the instant of a kill -9); then at the gateway,
    # which lived through it: submit_sm answered OK, over both SMSC lives.
    outcomes = {}
    with open(os.path.join(d, "metrics-end.txt")) as f:
        for l in f:
            m = re.match(r'^goniec_connector_submits_total\{[^}]*outcome="([a-z_]+)"[^}]*\} ([0-9.eE+]+)$', l)
            if m:
                outcomes[m.group(1)] = outcomes.get(m.group(1), 0) + int(float(m.group(2)))
    with open(os.path.join(d, "sim-end.json")) as f:
        sim_total = json.load(f)["submits"]
    if os.path.exists(os.path.join(d, "sim-before-kill.json")):
        with open(os.path.join(d, "sim-before-kill.json")) as f:
            s = json.load(f)
        sim_total += s["submits"] if s else 0
        dup, dup_from = outcomes.get("ok", 0) - census["reached_smsc"], "gateway's OK answers"
    else:
        dup, dup_from = sim_total - census["reached_smsc"], "SMSC's count"

    fin = cumulative(rows, "final")
    pre_rate = (at(fin, fault) - at(fin, fault - 1.0)) / 1.0
    # Recovered: the deliveries of the last second are back at half the rate of
    # the second before the fault (the first sample from the fault's end on).
    recovery = next((t - end for t, _ in fin
                     if t >= end and pre_rate > 0 and at(fin, t) - at(fin, t - 1.0) >= 0.5 * pre_rate), None)
    sims = cumulative(rows, "sim")
    base = at(sims, end)
    first = next((t - end for t, v in sims if t >= end and v > base), None)
    rec = cumulative(rows, "reclaimed")
    base = at(rec, fault)
    takeover = next((t - fault for t, v in rec if t >= fault and v > base), None)

    r = {
        "incomplete": incomplete,
        "scenario": name, "accepted": accepted, "stored": census["stored"], "final": final,
        "lost": lost, "stuck": stuck, "dup": dup, "pre_rate": round(pre_rate),
        "recovery_s": recovery, "first_submit_s": first, "takeover_s": takeover,
        "all_final_s": None if last_final is None else last_final - end,
        "down_s": end - fault, "sim_submits": sim_total, "reached_smsc": census["reached_smsc"],
        "not_final_in_store": census["nonfinal_count"],
        "pending_statuses": pending_all, "final_statuses": statuses_all, "send_errors": errors_all,
    }
    with open(os.path.join(os.path.dirname(d), "results.jsonl"), "a") as f:
        f.write(json.dumps(r) + "\n")
    print(line(r))
    print(f"  loaders: {', '.join(per_loader)}; refused 429/503 (not resent): {throttled}; "
          f"send errors: {json.dumps(errors_all)}")
    print(f"  statuses: final {json.dumps(statuses_all)}; not final {json.dumps(pending_all)}; "
          f"store census {json.dumps(census['by_status'])}")
    print(f"  submit_sm: the SMSC counted {sim_total}, the {'surviving ' if name.startswith('two') else ''}"
          f"gateway's outcomes {json.dumps(outcomes)}, for {census['reached_smsc']} messages "
          f"(dup from the {dup_from})")
    if incomplete:
        print(f"  INCOMPLETE: no summary from {', '.join(incomplete)} (see its .err)")
    if census["nonfinal"]:
        print("  not final in the store (first 3 of %d):" % census["nonfinal_count"])
        for m in census["nonfinal"][:3]:
            print("   ", json.dumps(m))


def fmt(v):
    return "-" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))


COLS = ("scenario", "accepted", "stored", "final", "lost", "stuck", "dup",
        "pre_rate", "recovery_s", "first_submit_s", "takeover_s", "all_final_s")


def line(r):
    return "chaos: " + " ".join(f"{c}={fmt(r[c])}" for c in COLS)


def cmd_table(argv):
    with open(argv[0]) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    cells = [[fmt(r[c]) for c in COLS] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(COLS)]
    print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(COLS, widths))))
    for x in cells:
        print("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(x, widths))))
    bad = [r["scenario"] for r in rows if r["lost"] > 0 or r["stuck"] > 0 or r["incomplete"]]
    if bad:
        print(f"FAIL: lost or stuck messages (or an unfinished loader) in {', '.join(bad)}")
        return 1
    print(f"OK: 0 lost and 0 stuck in all {len(rows)} scenarios")
    return 0


if __name__ == "__main__":
    cmds = {"sample": cmd_sample, "wait-accepted": cmd_wait_accepted, "kill-sim": cmd_kill_sim,
            "forward": cmd_forward, "census": cmd_census, "report": cmd_report, "table": cmd_table}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    sys.exit(cmds[sys.argv[1]](sys.argv[2:]) or 0)
