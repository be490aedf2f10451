#!/bin/bash
# Kannel (Debian's `kannel`: bearerbox + smsbox) on sms.sh's scenario, for a
# Goniec/Kannel ratio measured on the same machine in the same run: HTTP load ->
# smsbox /cgi-bin/sendsms -> bearerbox -> SMPP (one transceiver bind, window
# MAX_PENDING) -> `goniec smsc-sim` sending receipts at once -> every delivery
# report (dlr-mask 31: accepted by the SMSC, then delivered) as a GET of the
# message's dlr-url to goniec-sink, as sms.sh's callbacks go (a stdlib Python
# sink stands in when goniec-sink is not built). The load (stdlib Python,
# asyncio, keep-alive) sends COUNT single SMS at concurrency CONC with the text
# and kind of distinct recipients goniec-load uses; the rig waits until the sink
# got a final report for every accepted message (polled every 50 ms, as sms.sh
# does). Everything binds to 127.0.0.1 on free ports; only the processes
# started here are stopped, by PID.
#
# It prints one JSON line: messages accepted, seconds from the first sendsms
# request to the poll that saw the last final report, final reports/s (sms.sh's
# "final callbacks/s"), callbacks, the CPU seconds of bearerbox, smsbox,
# smsc-sim, the sink and the load (from /proc, counted from just before the
# load to that poll) and the CPU ms per message of bearerbox + smsbox. Needs
# `goniec` and preferably `goniec-sink` (GONIEC_BIN, default target/release:
# `cargo build --release -p goniec-gateway -p goniec-benches`) and Kannel.
#
# usage: benches/scripts/kannel.sh [COUNT [CONCURRENCY]]   (default 20000 64)
#   STORE=none|file  bearerbox's message store (default none; file: store-type
#                    file in the run's directory, written and flushed per
#                    message, no fsync)
#   MAX_PENDING      the smsc's max-pending-submits, its SMPP window (default
#                    100, a Goniec bind's window; at 50 and below a bind waits
#                    ~30 ms per window with receipts at once: 50 gives ~1,500/s)
#   BINDS            smsc groups (binds) to the simulator (default 1: with more,
#                    a receipt can come in on another bind before Kannel handled
#                    its submit_sm_resp, and Kannel drops it as unknown)
#   DLR_MASK         dlr-mask of each message (default 31)
#   RECEIPT_DELAY    the simulator's receipt delay (default 0s)
#   WAIT_TIMEOUT     seconds to wait for the final reports (default 300)
#   STALL            stop waiting when no final report came for this long (30 s)
#   SINK=python      the stdlib sink even when goniec-sink is there
#   KANNEL_LOG       Kannel's log level (default 3, errors; 0 and 1 log numbers)
#   KEEP=1           keep the run's directory (config, logs) and print its path
set -u
COUNT=${1:-${COUNT:-20000}}; CONC=${2:-${CONC:-64}}
STORE=${STORE:-none}; MAX_PENDING=${MAX_PENDING:-100}; BINDS=${BINDS:-1}
WAIT_TIMEOUT=${WAIT_TIMEOUT:-300}; STALL=${STALL:-30}
cd "$(dirname "$0")/../.." || exit 2
for b in bearerbox smsbox; do
  command -v "$b" >/dev/null 2>&1 || { echo "sudo apt-get install -y kannel" >&2; exit 2; }
done
case $STORE in none|file) ;; *) echo "STORE must be none or file" >&2; exit 2;; esac
RIG=$PWD/benches/scripts/kannel_rig.py

# A free loopback port, never one of Kannel's or Redis's defaults.
port() {
  local p
  while :; do
    p=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    case $p in 6379|13000|13001|13002|13003|13013) ;; *) echo "$p"; return;; esac
  done
}
# simulator, its HTTP, callback sink, bearerbox admin, bearerbox<->smsbox,
# and sendsms.
SPORT=$(port); HPORT=$(port); CPORT=$(port); APORT=$(port); BPORT=$(port); QPORT=$(port)
D=$(mktemp -d)
PIDS=()
cleanup() {
  local p i
  # smsbox first, then bearerbox, the sink and the simulator; what is still
  # there (and still this shell's child) half a second later is killed.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  sleep 0.5
  for p in "${PIDS[@]}"; do
    [ "$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null)" = "$$" ] && kill -9 "$p" 2>/dev/null
  done
  wait 2>/dev/null
  if [ "${KEEP:-}" = 1 ]; then echo "kept: $D" >&2; else rm -rf "$D"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The binaries are copied first, like common.sh does, so a rebuild cannot swap
# them.
mkdir "$D/bin"
BIN=${GONIEC_BIN:-target/release}
if ! cp "$BIN/goniec" "$D/bin/"; then
  echo "no goniec in $BIN: cargo build --release -p goniec-gateway, or set GONIEC_BIN" >&2
  exit 2
fi
SINK_KIND=python
[ "${SINK:-}" != python ] && cp "$BIN/goniec-sink" "$D/bin/" 2>/dev/null && SINK_KIND=goniec-sink

# user + system CPU seconds of a process, from /proc (ps rounds to seconds).
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Wait until a command succeeds, at most $1 tenths of a second.
until_ok() { local n=$1; shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done; return 1; }
# Wait like until_ok while process $1 lives.
while_alive() {
  local pid=$1 n=$2; shift 2
  for _ in $(seq "$n"); do
    kill -0 "$pid" 2>/dev/null || return 1
    "$@" && return 0; sleep 0.1
  done; return 1
}

# `goniec smsc-sim` as common.sh's start_smsc_sim starts it (default system_id
# goniec, password secret), receipts at once as in sms.sh.
"$D/bin/goniec" smsc-sim --listen "127.0.0.1:$SPORT" --http "127.0.0.1:$HPORT" \
  --receipt-delay "${RECEIPT_DELAY:-0s}" >> "$D/sim.log" 2>&1 &
SPID=$!; PIDS+=("$SPID")
until_ok 50 curl -sf "http://127.0.0.1:$HPORT/stats" -o /dev/null || { echo "smsc-sim did not start" >&2; exit 1; }

if [ "$SINK_KIND" = goniec-sink ]; then
  "$D/bin/goniec-sink" --listen "127.0.0.1:$CPORT" >> "$D/sink.log" 2>&1 &
else
  python3 "$RIG" sink "$CPORT" >> "$D/sink.log" 2>&1 &
fi
CB_PID=$!; PIDS+=("$CB_PID")
until_ok 50 curl -sf "http://127.0.0.1:$CPORT/count" -o /dev/null || { echo "sink did not start" >&2; exit 1; }

# Kannel's config. msg-id-type 0x03: the simulator's ids are hex both in
# submit_sm_resp (00000001A3) and in the receipts (receipted_message_id 1a3), so
# Kannel must compare them as numbers; by default it compares the strings and
# finds no message for any receipt. Logs at level 3 (errors), as the info level
# writes every sendsms URL (with its number) and every PDU.
{
  cat <<EOT
group = core
admin-port = $APORT
admin-interface = 127.0.0.1
admin-password = bench
admin-allow-ip = "127.0.0.1"
smsbox-port = $BPORT
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
box-deny-ip = "*.*.*.*"
log-file = "$D/bearerbox.log"
log-level = ${KANNEL_LOG:-3}
dlr-storage = internal
EOT
  [ "$STORE" = file ] && printf 'store-type = file\nstore-location = "%s"\n' "$D/kannel.store"
  for i in $(seq "$BINDS"); do
    cat <<EOT

group = smsc
smsc = smpp
smsc-id = sim
smsc-admin-id = sim$i
host = 127.0.0.1
port = $SPORT
receive-port = 0
transceiver-mode = true
smsc-username = goniec
smsc-password = secret
system-type = ""
interface-version = 34
msg-id-type = 0x03
max-pending-submits = $MAX_PENDING
enquire-link-interval = 30
reconnect-delay = 2
EOT
  done
  cat <<EOT

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $BPORT
sendsms-port = $QPORT
sendsms-interface = 127.0.0.1
log-file = "$D/smsbox.log"
log-level = ${KANNEL_LOG:-3}

group = sendsms-user
username = bench
password = benchpw
max-messages = 1

group = sms-service
keyword = default
text = "unused"
EOT
} > "$D/kannel.conf"

admin() { curl -sf "http://127.0.0.1:$APORT/$1?password=bench"; }
smsc_online() { [ "$(admin status.txt | grep -c '(online')" -ge "$BINDS" ]; }
smsbox_connected() { admin status.txt | grep -q 'smsbox:'; }

bearerbox -v "${KANNEL_LOG:-3}" "$D/kannel.conf" >> "$D/bearerbox.out" 2>&1 &
BB_PID=$!; PIDS+=("$BB_PID")
while_alive "$BB_PID" 150 smsc_online || { echo "bearerbox's smsc did not come online:" >&2; grep -v 'PANIC: .*(' "$D/bearerbox.out" | tail -3 >&2; exit 1; }
smsbox -v "${KANNEL_LOG:-3}" "$D/kannel.conf" >> "$D/smsbox.out" 2>&1 &
SB_PID=$!; PIDS+=("$SB_PID")
while_alive "$SB_PID" 150 smsbox_connected || { echo "smsbox did not connect:" >&2; grep -v 'PANIC: .*(' "$D/smsbox.out" | tail -3 >&2; exit 1; }
until_ok 50 curl -s -o /dev/null "http://127.0.0.1:$QPORT/" || { echo "no sendsms port" >&2; exit 1; }

procs="bearerbox=$BB_PID smsbox=$SB_PID smsc_sim=$SPID sink=$CB_PID"
cpu_all() { local x; printf '{'; for x in $procs; do printf '"%s":%s,' "${x%%=*}" "$(cpu "${x#*=}")"; done; printf '"_":0}'; }
CPU0=$(cpu_all)
python3 "$RIG" load 127.0.0.1 "$QPORT" "$COUNT" "$CONC" "http://127.0.0.1:$CPORT/dlr" 300 \
  > "$D/load.json" 2> "$D/load.err"
accepted=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["accepted"])' "$D/load.json") \
  || { echo "the load failed:" >&2; tail -5 "$D/load.err" >&2; exit 1; }
# shellcheck disable=SC2086 # $procs is a list of NAME=PID words
python3 "$RIG" wait "$CPORT" "$accepted" "$WAIT_TIMEOUT" "$STALL" $procs > "$D/wait.json"
for x in $procs; do kill -0 "${x#*=}" 2>/dev/null || echo "${x%%=*} died during the run" >&2; done
curl -sf "http://127.0.0.1:$HPORT/stats" > "$D/sim.json"

python3 - "$D" "$STORE" "$MAX_PENDING" "$BINDS" "$SINK_KIND" "$CPU0" <<'PY'
import json, sys
d, store, window, binds, sink_kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
c0 = json.loads(sys.argv[6])
load = json.load(open(d + "/load.json"))
w = json.load(open(d + "/wait.json"))
sim = json.load(open(d + "/sim.json"))
c1, sink = w["cpu"], w["sink"]
cpu = {k: round(c1[k] - c0[k], 2) if c1.get(k) is not None else None for k in c0 if k != "_"}
cpu["load"] = load["cpu_s"]
final = max(sink["final"], 0)
secs = w["last_final_t"] - load["first_send_t"] if final else None
kannel = (cpu["bearerbox"] or 0) + (cpu["smsbox"] or 0)
print(json.dumps({
    "system": "kannel", "store": store, "window": window, "binds": binds, "sink": sink_kind,
    "messages": load["accepted"], "sent": load["sent"], "errors": load["errors"],
    "accepted_per_s": load["accepted_per_s"], "api_p50_ms": load["api_p50_ms"],
    "api_p99_ms": load["api_p99_ms"],
    "final": final, "not_final": load["accepted"] - final,
    "seconds": round(secs, 2) if secs else None,
    "final_per_s": round(final / secs, 1) if secs else None,
    "callbacks": sink["requests"],
    "sim_submits": sim.get("submits"), "sim_receipts_acked": sim.get("receipts_acked"),
    "cpu_s": cpu,
    "kannel_cpu_ms_per_msg": round(kannel * 1000 / load["accepted"], 3) if load["accepted"] else None,
}))
PY
