#!/usr/bin/env python3
"""30 unauthenticated connections, each declaring a 16 MiB body, sending 12 MiB of it
and stalling. Prints the gateway's RSS before, after sending, and while they stall."""
import socket, sys, time, threading

port, pid = int(sys.argv[1]), int(sys.argv[2])
N = int(sys.argv[3]) if len(sys.argv) > 3 else 30
HOLD = float(sys.argv[4]) if len(sys.argv) > 4 else 70
KEY = sys.argv[5] if len(sys.argv) > 5 else None          # send a valid key: the authenticated case
PATH = sys.argv[6] if len(sys.argv) > 6 else "/v1/messages"

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            yield line.split()[1]

def kb():
    r = dict(l.split(":") for l in open(f"/proc/{pid}/status").read().splitlines() if l.startswith(("VmRSS","VmHWM")))
    return int(r["VmRSS"].split()[0]) // 1024, int(r["VmHWM"].split()[0]) // 1024

sent = [0] * N
answers = [None] * N
socks = []
def worker(i):
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)
    s.settimeout(10)
    auth = f"Authorization: Bearer {KEY}\r\n" if KEY else ""
    head = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}"
            f"Content-Length: {16 << 20}\r\n\r\n").encode()
    chunk = b"a" * (1 << 20)
    try:
        s.sendall(head)
        for _ in range(12):
            s.sendall(chunk)
            sent[i] += len(chunk)
    except OSError as e:
        answers[i] = f"send stopped: {type(e).__name__}"
    try:
        s.settimeout(0.5)
        data = s.recv(200)
        if data:
            answers[i] = data.split(b"\r\n")[0].decode()
    except OSError as e:
        pass

print("RSS before (MB, peak):", kb())
t0 = time.time()
ts = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
[t.start() for t in ts]
[t.join() for t in ts]
print(f"sent {sum(sent) >> 20} MiB in {time.time()-t0:.1f}s; RSS after sending:", kb())
from collections import Counter
print("answers:", Counter(answers))
end = time.time() + HOLD
while time.time() < end:
    time.sleep(10)
    closed = 0
    for s in socks:
        try:
            s.setblocking(False)
            while True:  # drain what is left of an answer; b"" is the server's close
                d = s.recv(1 << 16)
                if d == b"":
                    closed += 1
                    break
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print(f"t+{time.time()-t0:.0f}s RSS:", kb(), f"connections closed by server: {closed}/{N}")
