# Shared by the bench rigs (sourced, not run): free ports, a durable
# redis-server, the SMSC simulator, the gateway config's common part, starting
# the gateway, and stopping only the processes the rig started.
#
# The binaries come from GONIEC_BIN (default target/release, relative to the
# repo root) and are copied into the run's own directory first, so a rebuild
# during the run cannot swap them: use "$GONIEC" and "$LOAD".
cd "$(dirname "$0")/../.." || exit 2
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
RPORT=$(port); SPORT=$(port); GPORT=$(port)
D=$(mktemp -d)
mkdir "$D/bin"
BIN=${GONIEC_BIN:-target/release}
if ! cp "$BIN/goniec" "$BIN/goniec-load" "$BIN/goniec-sink" "$D/bin/"; then
  echo "no goniec, goniec-load and goniec-sink in $BIN:" \
       "cargo build --release -p goniec-gateway -p goniec-benches, or set GONIEC_BIN" >&2
  rm -rf "$D"; exit 2
fi
GONIEC=$D/bin/goniec; LOAD=$D/bin/goniec-load; SINK=$D/bin/goniec-sink

# The callback receiver (goniec-sink) on $CPORT; `sink_count` prints its
# counters as "requests final callbacks".
start_sink() {
  CPORT=$(port)
  "$SINK" --listen "127.0.0.1:$CPORT" >> "$D/sink.log" 2>&1 &
  CB_PID=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$CPORT/count" >/dev/null && break; sleep 0.1; done
}
sink_count() {
  curl -s "http://127.0.0.1:$CPORT/count" | python3 -c 'import json,sys; c = json.load(sys.stdin); print(c["requests"], c["final"], c["callbacks"])'
}
# Wait (at most $1 seconds) until the sink has $2 final callbacks.
wait_sink_final() {
  local until=$(( $(date +%s) + $1 ))
  while [ "$(date +%s)" -lt "$until" ]; do
    [ "$(sink_count | cut -d' ' -f2)" -ge "$2" ] && return 0
    sleep 0.05
  done
  return 1
}

# Redis on $RPORT with AOF (everysec) in $D; starting it again on the same port
# and directory reloads what it had (the log is appended to).
start_redis() {
  redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync everysec --dir "$D" --daemonize no >> "$D/redis.log" 2>&1 &
  RPID=$!
}

# `goniec smsc-sim` on $SPORT with receipts after RECEIPT_DELAY (default 10ms)
# and its counters at http://127.0.0.1:$HPORT/stats (a free port unless set);
# SIM_ARGS adds simulator flags (e.g. "--throttle-every 10"); waits until the
# counters answer.
start_smsc_sim() {
  HPORT=${HPORT:-$(port)}
  "$GONIEC" smsc-sim --listen "127.0.0.1:$SPORT" --http "127.0.0.1:$HPORT" \
    --receipt-delay "${RECEIPT_DELAY:-10ms}" ${SIM_ARGS:-} >> "$D/sim.log" 2>&1 &
  SPID=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$HPORT/stats" >/dev/null && break; sleep 0.1; done
}

# The gateway config up to the connectors: Redis store, one transactional tenant
# whose API key is `benchkey`, the operator key `benchadmin`; AF=true turns anti-fraud on, WC sets
# workers.concurrency (default 256), CLAIM_IDLE workers.claim_idle (default 60s), GT
# server.worker_threads (default 0: one per core).
gateway_head() {
  cat <<EOT
[server]
listen = "127.0.0.1:$GPORT"
worker_threads = ${GT:-0}
[store]
backend = "redis"
url = "redis://127.0.0.1:$RPORT"
[workers]
concurrency = ${WC:-256}
${CLAIM_IDLE:+claim_idle = \"$CLAIM_IDLE\"}
[antifraud]
enabled = ${AF:-false}
[admin]
api_keys = ["sha256:1ab032981bdc7e95e606d88e634bfde4c324571080d2158409cdc1969e785651"]
[[tenants]]
name = "bench"
api_keys = ["sha256:eef8d74a9e97f0aeea7b748dab525bfabce315a3edb5f74dd4786282d738d3fb"]
webhook_secret = "bench-webhook-secret-0123456789"
policy = "transactional"
EOT
}

# An SMPP connector to the simulator on $SPORT and the SMS route to it;
# TPS sets the connector's rate (default unlimited); QUERY_AFTER,
# DEFAULT_VALIDITY and RECEIPT_GRACE its query_sm / no_receipt timing (defaults
# 10m, 48h, 1h).
smpp_connector() {
  cat <<EOT
[[connectors]]
name = "smsc"
kind = "smpp"
host = "127.0.0.1"
port = $SPORT
system_id = "goniec"
password = "secret"
binds = 4
window = 100
${TPS:+tps = \"$TPS\"}
${QUERY_AFTER:+query_after = \"$QUERY_AFTER\"}
${DEFAULT_VALIDITY:+default_validity = \"$DEFAULT_VALIDITY\"}
${RECEIPT_GRACE:+receipt_grace = \"$RECEIPT_GRACE\"}
[[routes]]
channel = "sms"
connector = "smsc"
EOT
}

# Start `goniec serve` (config $1, default $D/g.toml, listening on $2, default
# $GPORT, log appended to $3, default $D/gw.log) and wait until it is ready.
start_gateway() {
  local cfg=${1:-$D/g.toml} port=${2:-$GPORT} log=${3:-$D/gw.log}
  RUST_LOG=${GW_LOG:-warn} "$GONIEC" serve --config "$cfg" >> "$log" 2>&1 &
  GPID=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
}

# goniec-load against the gateway; prints its JSON line and the final statuses.
load() {
  "$LOAD" --url "http://127.0.0.1:$GPORT" --api-key benchkey \
    --wait-final --wait-timeout 300s --duration-limit 300s "$@" 2>"$D/load.err" | tail -n1
  grep -E "final statuses" "$D/load.err" | tail -2
}

# goniec-load without polling statuses: for the scenarios timed at the sink
# (sms.sh, cluster.sh), as kannel.sh's rig is, so that the gateway does not
# also answer a status poll per message inside the measured window (it did
# until 2026-12-05: about 8% of the gateway's CPU). `applied_statuses`
# prints the outcome afterwards.
load_sent() {
  "$LOAD" --url "http://127.0.0.1:$GPORT" --api-key benchkey \
    --duration-limit 300s "$@" 2>"$D/load.err" | tail -n1
}

# The status changes the gateway applied, by status, from its metrics
# (goniec_status_transitions_total), e.g. `delivered=20000 queued=... `.
applied_statuses() {
  curl -s -H 'Authorization: Bearer benchadmin' "http://127.0.0.1:$GPORT/metrics" | python3 -c '
import re, sys
n = {}
for line in sys.stdin:
    m = re.match(r"goniec_status_transitions_total\{(.*)\} (\S+)", line)
    if m:
        to = re.search(r"status=\"([a-z_]+)\"", m.group(1)).group(1)
        n[to] = n.get(to, 0) + int(float(m.group(2)))
print(" ".join(f"{k}={v}" for k, v in sorted(n.items())))'
}

# Wait (at most 120 s) for COUNT ($1) final callbacks since $2 (date +%s.%N)
# and print the rate: the issue's figure, from the first request to the last
# final callback.
report_final() {
  if wait_sink_final 120 "$1"; then
    echo "final callbacks/s: $(python3 -c "import time; print(round($1 / (time.time() - $2)))") (all $1 final callbacks in)"
  else
    echo "final callbacks: only $(sink_count | cut -d' ' -f2) of $1 within 120 s"
  fi
}

# User + system CPU seconds of a process and of its children it has reaped,
# from /proc (ps rounds to seconds): Redis forks a child for each AOF rewrite,
# real work for durability (until 2026-12-05 it was left out).
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15 + $16 + $17) / t}' "/proc/$1/stat"; }
# Redis's AOF: rewrites so far and the file's size.
aof_stats() {
  redis-cli -p "$1" INFO persistence | tr -d '\r' | awk -F: '/^aof_rewrites:/ {r = $2} /^aof_current_size:/ {s = $2} END {printf "%d rewrites, %.1f MB now", r, s / 1048576}'
}
# Peak resident memory (VmHWM) of a process, in MiB.
rss() { awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }

# CPU time of each process, then stop them (the gateway first, Redis last).
finish() {
  ps -o pid,time,cmd -p "$GPID,$SPID,$RPID" | cat
  kill "$GPID" "$SPID"; sleep 1; kill "$RPID"; wait 2>/dev/null
  rm -rf "$D"
}
