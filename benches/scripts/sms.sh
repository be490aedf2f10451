#!/bin/bash
# The end-to-end SMS figure (issue 13's scenario): a durable gateway (its own
# redis-server with AOF everysec on free loopback ports) with an SMPP connector
# to `goniec smsc-sim` sending receipts at once, every status change posted as a
# signed callback to a local sink; goniec-load waits until every message is
# delivered. Prints goniec-load's JSON line, the CPU seconds of the gateway and
# of Redis, Redis commands per message (INFO commandstats, script-internal
# commands included) and the callbacks the sink got. Needs
# `cargo build --release -p goniec-gateway -p goniec-benches` first.
#
# usage: benches/scripts/sms.sh [COUNT [CONCURRENCY [BATCH]]]
#   AF=true turns anti-fraud on; WC sets workers.concurrency (default 256).
set -u
COUNT=${1:-20000}; CONC=${2:-64}; BATCH=${3:-1}
. "$(dirname "$0")/common.sh"
CPORT=$(port)
start_redis
RECEIPT_DELAY=${RECEIPT_DELAY:-0s} start_smsc_sim
# The callback sink: answers 204 and counts (stdlib only).
python3 - "$CPORT" > "$D/sink.log" 2>&1 <<'PY' &
import sys, http.server, threading
n = 0; lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global n
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock: n += 1
        self.send_response(204); self.send_header("content-length", "0"); self.end_headers()
    def do_GET(self):
        body = str(n).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
CB_PID=$!
{ gateway_head
  echo "callback_url = \"http://127.0.0.1:$CPORT/cb\""
  echo "allow_private_callbacks = true"
  smpp_connector; } > "$D/g.toml"
start_gateway
redis-cli -p "$RPORT" CONFIG RESETSTAT >/dev/null
load --channel sms --count "$COUNT" --concurrency "$CONC" --batch "$BATCH"
sleep 2 # the last callbacks
calls=$(redis-cli -p "$RPORT" INFO commandstats | awk -F'[=,:]' '/^cmdstat_/ {s += $3} END {print s}')
echo "redis commands per message: $(python3 -c "print(round($calls / $COUNT, 1))") ($calls for $COUNT)"
echo "callbacks received: $(curl -s "http://127.0.0.1:$CPORT/")"
# user + system CPU seconds of a process, from /proc (ps rounds to seconds).
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
echo "cpu seconds: gateway $(cpu "$GPID") redis $(cpu "$RPID") smsc-sim $(cpu "$SPID")"
kill "$CB_PID"
finish
