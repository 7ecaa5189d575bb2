#!/usr/bin/env bash
# Fan-out benchmark: chatcore's release tcp_server side by side with nats-server.
#
# Runs the scenarios of the performance issue with examples/chat_bench against
# a fresh server for every run (loopback only), then prints one table: each
# figure for both servers and their ratio (chatcore / nats). Stops only the
# servers it started.
#
#   benches/fanout.sh                 # every scenario, one run each
#   RUNS=3 benches/fanout.sh          # median of three runs (for the README)
#   SCENARIOS="A D" benches/fanout.sh
#   SCENARIOS="A A-tls A-ws A-wss" NATS=0 benches/fanout.sh   # A over each transport
#   SCENARIOS="A-cluster A-nats B-cluster C-cluster W-cluster" benches/fanout.sh   # one room, 3 nodes
#
# Environment:
#   RUNS=1             runs per scenario and server; the table shows medians
#                      (lost/dup/misordered/disconnected: the worst run)
#   SCENARIOS="A B C D E F G"   (and A-tls, A-ws, A-wss, D-ws, ...: below)
#   DURATION=10        seconds of sending in A, B and C (D holds for 5 s)
#   CHAT_SERVER_ARGS=  extra tcp_server flags, e.g. "--io threads"
#   BASELINE=          another tcp_server binary (say, main's, built into
#                      another target dir) run side by side with this one:
#                      the table gets its figures and the ratio to them
#   BENCH_ARGS=        extra chat_bench flags, e.g. "--threads 1"
#   NATS=1             0 skips nats-server (also skipped if it is not installed:
#                      apt-get install nats-server)
#   OUT=target/fanout  where the raw JSON lines and server logs go
#
# Scenarios (2 cores, loader on the same machine):
#   A  100 members, 10 senders flat out (window 128, complete when every
#      member has the message), public
#   B  1000 members, 10 senders x 100 msg/s, public (1M deliveries/s)
#   C  1000 members, 100 senders flat out (window 128), private
#   D  10,000 members, idle (every join announced to all: ~50M join lines)
#   E  connect storm: 10,000 clients, 1,000 starting their connect at the
#      same moment (the next 1,000 once those have their reply, or after
#      5 s); the time until every client has its NAME (nats: the PONG to
#      CONNECT+PING), and the stragglers still without it after 30 s. The
#      clients hold without joining.
#   F  memory: 2,000 members that join and never read (4 KiB receive
#      buffers), one more sends 1 KB public lines flat out (200 KB in flight
#      at most) for 10 s and reads everything; the server's peak RSS, and
#      whether the sender was ever cut (chatcore only)
#   G  F with 10,000 members that never read
#
# One room across servers (benches/fanout_cluster.sh says more): a fresh
# nats-server (-js) and tcp_server nodes built --features nats, members
# spread over the nodes, every member's order of public lines checked.
#   A-cluster  A over 3 nodes; target >= 2M deliveries/s, 0 lost, 0 order
#              violations
#   A-nats     A on one node with --nats against the same node without it
#   B-cluster  B over 3 nodes: p99 of public lines across nodes
#   C-cluster  C over 3 nodes: whispers flat out across nodes
#   W-cluster  1000 members on 3 nodes, 100 senders x 10 whispers/s: p99 of
#              whispers across nodes
#
# Transports: a scenario of A to E followed by -tls, -ws or -wss (A-tls,
# A-ws, A-wss, D-ws, ...) runs the same load over that transport: the
# server is started with --tls-addr, --ws-addr and --wss-addr (port 0, its
# self-signed certificate) and chat_bench connects with --transport tls,
# ws or wss (it accepts any certificate unless given --tls-ca). Only
# chatcore runs them (nats-server speaks TCP). The table reports A-* and
# C-* as a ratio to the plain-TCP scenario of the same invocation (so list
# A with A-tls: SCENARIOS="A A-tls"), and D-* as memory per member, also
# next to D's when D ran. Targets on 2 cores: A-ws >= 0.7x A, A-tls >= 0.5x,
# A-wss >= 0.4x, with 0 lost; an idle member <= 4 KiB over ws, <= 24 KiB
# over tls and wss.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-1}
SCENARIOS=${SCENARIOS:-"A B C D E F G"}
DURATION=${DURATION:-10}
CHAT_SERVER_ARGS=${CHAT_SERVER_ARGS:-}
BENCH_ARGS=${BENCH_ARGS:-}
NATS=${NATS:-1}
BASELINE=${BASELINE:-}
OUT=${OUT:-target/fanout}
# Hard bound on one chat_bench run, whatever its own phase timeouts say.
RUN_TIMEOUT=${RUN_TIMEOUT:-400}
# Where cargo puts the binaries (CARGO_TARGET_DIR is honoured).
BIN=${CARGO_TARGET_DIR:-target}/release/examples

mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVER_PID=""
SERVER_PORT=""

stop_server() {
  if [[ -n "$SERVER_PID" ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

# The cluster scenarios (A-cluster, A-nats, B-cluster, C-cluster, W-cluster) and what
# they start: see that file.
# shellcheck source=benches/fanout_cluster.sh
. benches/fanout_cluster.sh
trap 'stop_server; cluster_stop' EXIT
trap 'stop_server; cluster_stop; exit 130' INT TERM

# Waits up to 10 s for a "host:port" at the end of a line matching $2 in file $1.
wait_port() {
  local file=$1 pattern=$2 line
  for _ in $(seq 200); do
    line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
    if [[ -n "$line" ]]; then
      SERVER_PORT=${line##*:}
      SERVER_PORT=${SERVER_PORT//[^0-9]/}
      return 0
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# The load of a scenario: "A" for A, A-tls, A-ws and A-wss.
scenario_base() { echo "${1%%-*}"; }

# The transport of a scenario: tcp, tls, ws or wss.
scenario_transport() {
  case $1 in
    *-*) echo "${1#*-}" ;;
    *) echo tcp ;;
  esac
}

# The first words of the server's line that gives a transport's port.
listening_pattern() {
  case $1 in
    tcp) echo '^Server listening on ' ;;
    tls) echo '^TLS listening on ' ;;
    ws) echo '^WebSocket listening on ' ;;
    wss) echo '^Secure WebSocket listening on ' ;;
  esac
}

# Server flags a scenario needs: G has one member more than the default
# client limit; the transports need their listeners (all three at once, so
# every transport scenario runs the same server).
scenario_server_args() {
  local args=""
  case $(scenario_base "$1") in
    G) args="--max-clients 10100" ;;
  esac
  if [[ $(scenario_transport "$1") != tcp ]]; then
    args="$args --tls-addr 127.0.0.1:0 --ws-addr 127.0.0.1:0 --wss-addr 127.0.0.1:0"
  fi
  echo "$args"
}

# Checks the names in SCENARIOS before anything runs.
check_scenario() {
  is_cluster_scenario "$1" && return 0
  case $(scenario_base "$1") in
    A | B | C | D | E | F | G) ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
  case $(scenario_transport "$1") in
    tcp) [[ "$1" != *-* ]] || { echo "unknown scenario $1 (say $(scenario_base "$1"))" >&2; exit 2; } ;;
    tls | ws | wss) ;;
    *) echo "unknown transport in scenario $1 (tls, ws or wss)" >&2; exit 2 ;;
  esac
  case $1 in
    F-* | G-*) echo "scenario $1: F and G run over TCP only" >&2; exit 2 ;;
  esac
}

start_server() { # $1 = chat|base|nats, $2 = log prefix, $3 = scenario
  local log="$OUT/$2"
  local extra pattern
  extra=$(scenario_server_args "$3")
  pattern=$(listening_pattern "$(scenario_transport "$3")")
  # The server's output is read for its port: never let a stale file answer.
  rm -f "$log.out" "$log.err"
  case $1 in
    chat)
      # shellcheck disable=SC2086
      "$BIN/tcp_server" --addr 127.0.0.1:0 $CHAT_SERVER_ARGS $extra \
        >"$log.out" 2>"$log.err" &
      SERVER_PID=$!
      wait_port "$log.out" "$pattern"
      ;;
    base)
      # shellcheck disable=SC2086
      "$BASELINE" --addr 127.0.0.1:0 $CHAT_SERVER_ARGS $extra \
        >"$log.out" 2>"$log.err" &
      SERVER_PID=$!
      wait_port "$log.out" "$pattern"
      ;;
    nats)
      nats-server -a 127.0.0.1 -p -1 >"$log.out" 2>&1 &
      SERVER_PID=$!
      wait_port "$log.out" 'Listening for client connections on '
      ;;
  esac
}

scenario_args() {
  case $(scenario_base "$1") in
    # --ack all: a message stays in flight until every member has it, so no
    # member can fall more than the window behind (with --ack echo a sender's
    # own copy frees its slot, and a loader hiccup can let the other members'
    # queues pass the server's 1 MiB slow-consumer limit).
    A) echo "--mode public --members 100 --senders 10 --window 128 --ack all --duration $DURATION" ;;
    B) echo "--mode public --members 1000 --senders 10 --rate 100 --duration $DURATION" ;;
    C) echo "--mode private --members 1000 --senders 100 --window 128 --duration $DURATION" ;;
    # Over the other transports each join notice is also framed or
    # encrypted for every member: joins are slower (D-tls about 4x on a
    # busy machine), so D-* gets more time to connect, within RUN_TIMEOUT.
    D)
      if [[ "$1" == D ]]; then
        echo "--mode idle --members 10000 --duration 5 --connect-timeout 120 --settle-timeout 120"
      else
        echo "--mode idle --members 10000 --duration 5 --connect-timeout 240 --settle-timeout 120"
      fi
      ;;
    E) echo "--mode storm --members 10000 --burst 1000 --burst-wait 5 --storm-timeout 30" ;;
    F) echo "--mode never-read --members 2000 --nr-line 1000 --nr-window 200000 --nr-rcvbuf 4096 --duration $DURATION --connect-timeout 120 --settle-timeout 120" ;;
    G) echo "--mode never-read --members 10000 --nr-line 1000 --nr-window 200000 --nr-rcvbuf 4096 --duration $DURATION --connect-timeout 120 --settle-timeout 120" ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}

for sc in $SCENARIOS; do
  check_scenario "$sc"
done

echo "== building the release tcp_server and chat_bench"
# The cluster scenarios need the nats feature; the other scenarios then
# run that same build (without --nats it serves as usual).
# shellcheck disable=SC2046
cargo build --release $(cluster_wanted && echo --features nats) --example tcp_server --example chat_bench

SERVERS="chat"
if [[ -n "$BASELINE" ]]; then
  [[ -x "$BASELINE" ]] || { echo "BASELINE=$BASELINE is not an executable" >&2; exit 2; }
  SERVERS="chat base"
fi
if [[ "$NATS" == 1 ]]; then
  if command -v nats-server >/dev/null 2>&1; then
    SERVERS="$SERVERS nats"
  else
    echo "nats-server not found (apt-get install nats-server): chatcore only" >&2
  fi
fi

# One JSON line per run, in $OUT/<scenario>.<server>.<run>.json; those of
# an earlier invocation (with more runs, say) must not count in this one's
# table.
for sc in $SCENARIOS; do
  rm -f "$OUT/$sc".*.json
done

# Runs come round by round: in each round every scenario runs once, and
# the servers take turns in it, so that a busy moment of the machine falls
# on no one server or transport alone (A and A-ws, run next to each other,
# compare within a round).
for run in $(seq "$RUNS"); do
  for sc in $SCENARIOS; do
    if is_cluster_scenario "$sc"; then
      cluster_run "$sc" "$run"
      continue
    fi
    for srv in $SERVERS; do
      # The never-read scenarios speak the chat protocol only; nats-server
      # speaks TCP only.
      if [[ "$srv" == nats && ( "$sc" == F || "$sc" == G || "$sc" == *-* ) ]]; then
        continue
      fi
      tag="$sc.$srv.$run"
      if ! start_server "$srv" "$tag.server" "$sc"; then
        echo "!! $tag: the $srv server did not start (see $OUT/$tag.server.*)" >&2
        stop_server
        continue
      fi
      proto=$srv
      [[ "$srv" == base ]] && proto=chat
      transport=""
      if [[ "$sc" == *-* ]]; then
        transport="--transport $(scenario_transport "$sc")"
      fi
      args="--addr 127.0.0.1:$SERVER_PORT --proto $proto $transport $(scenario_args "$sc") --server-pid $SERVER_PID --json $BENCH_ARGS"
      echo "== $tag: chat_bench $args"
      # shellcheck disable=SC2086
      timeout -k 5 "$RUN_TIMEOUT" "$BIN/chat_bench" $args \
        >"$OUT/$tag.json" 2>"$OUT/$tag.err" && rc=0 || rc=$?
      case $rc in
        0) ;;
        1) echo "   checks failed (see the table)" ;;
        *) echo "!! $tag: chat_bench exited with $rc: $(head -c 300 "$OUT/$tag.err")" ;;
      esac
      stop_server
    done
  done
done

# --- the table --------------------------------------------------------------

# field FILE KEY: a number from a chat_bench JSON line ("" if absent or null).
field() {
  [[ -s "$1" ]] || return 0
  sed -n "s/.*\"$2\":\\(-\\{0,1\\}[0-9][0-9.e+-]*\\).*/\\1/p" "$1" | head -n1
}

# agg SCENARIO SERVER KEY median|max|all: the figure over the runs ("all":
# the median, but nothing when a run lacks the figure, as E's time to all
# NAMEs does when a client never got one).
agg() {
  local vals=() v f files=0
  for f in "$OUT/$1.$2".*.json; do
    [[ -e "$f" ]] || continue
    files=$((files + 1))
    v=$(field "$f" "$3")
    [[ -n "$v" ]] && vals+=("$v")
  done
  ((${#vals[@]})) || { echo ""; return; }
  if [[ "$4" == all && ${#vals[@]} -ne $files ]]; then
    echo ""
    return
  fi
  printf '%s\n' "${vals[@]}" | sort -g | awk -v how="$4" '
    { a[NR] = $1 }
    END {
      if (how == "max") v = a[NR];
      else if (NR % 2) v = a[(NR + 1) / 2];
      else v = (a[NR / 2] + a[NR / 2 + 1]) / 2;
      print v
    }'
}

fmt() { # number, decimals
  [[ -n "$1" ]] && awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }' || printf -- "-"
}

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2fx", a / b }'
}

row() { # label scenario key how decimals target
  local c n b
  c=$(agg "$2" chat "$3" "$4")
  n=$(agg "$2" nats "$3" "$4")
  if [[ -n "$BASELINE" ]]; then
    b=$(agg "$2" base "$3" "$4")
    printf '%-6s %-28s %16s %16s %9s %16s %9s   %s\n' "$2" "$1" "$(fmt "$c" "$5")" "$(fmt "$n" "$5")" "$(ratio "$c" "$n")" "$(fmt "$b" "$5")" "$(ratio "$c" "$b")" "$6"
  else
    printf '%-6s %-28s %16s %16s %9s   %s\n' "$2" "$1" "$(fmt "$c" "$5")" "$(fmt "$n" "$5")" "$(ratio "$c" "$n")" "$6"
  fi
}

# vs_tcp label scenario key target: a transport scenario's figure as a ratio
# to the same figure of its plain-TCP scenario in this invocation (A-ws to
# A), in the chatcore (and baseline) column; "-" when that one did not run.
vs_tcp() {
  local base c t b bt
  base=$(scenario_base "$2")
  c=$(agg "$2" chat "$3" median)
  t=$(agg "$base" chat "$3" median)
  if [[ -n "$BASELINE" ]]; then
    b=$(agg "$2" base "$3" median)
    bt=$(agg "$base" base "$3" median)
    printf '%-6s %-28s %16s %16s %9s %16s %9s   %s\n' "$2" "$1" "$(ratio "$c" "$t")" "" "" "$(ratio "$b" "$bt")" "" "$4"
  else
    printf '%-6s %-28s %16s %16s %9s   %s\n' "$2" "$1" "$(ratio "$c" "$t")" "" "" "$4"
  fi
}

# The target of a transport scenario's ratio to TCP.
throughput_target() {
  case $(scenario_transport "$1") in
    ws) echo ">= 0.7x" ;;
    tls) echo ">= 0.5x" ;;
    wss) echo ">= 0.4x" ;;
  esac
}

# The target of D's RSS per idle member, in bytes.
idle_member_target() {
  case $(scenario_transport "$1") in
    tcp) echo "<= 2048" ;;
    ws) echo "<= 4096" ;;
    tls | wss) echo "<= 24576" ;;
  esac
}

echo
echo "== fan-out: chatcore tcp_server vs nats-server (median of $RUNS run(s); loss figures: worst run)"
if [[ -n "$BASELINE" ]]; then
  echo "   baseline: $BASELINE"
  printf '%-6s %-28s %16s %16s %9s %16s %9s   %s\n' "" "figure" "chatcore" "nats-server" "ratio" "baseline" "vs base" "target"
else
  printf '%-6s %-28s %16s %16s %9s   %s\n' "" "figure" "chatcore" "nats-server" "ratio" "target"
fi
for sc in $SCENARIOS; do
  if is_cluster_scenario "$sc"; then
    cluster_rows "$sc"
    continue
  fi
  tcp=1
  [[ "$sc" == *-* ]] && tcp=0
  base=$(scenario_base "$sc")
  case $base in
    A)
      if ((tcp)); then
        row "deliveries/s" "$sc" deliveries_per_sec median 0 ">= 1.5x nats"
      else
        row "deliveries/s" "$sc" deliveries_per_sec median 0 ""
        vs_tcp "deliveries/s vs A (tcp)" "$sc" deliveries_per_sec "$(throughput_target "$sc")"
      fi
      row "latency p99 ms" "$sc" p99_ms median 1 ""
      row "lost" "$sc" lost max 0 "0"
      row "server cpu s (run)" "$sc" server_cpu_run_secs median 2 ""
      # CPU per delivery holds still when other programs share the
      # machine, where deliveries/s does not; the loader's counts too, as
      # it shares the two cores with the server.
      row "server cpu ns/delivery" "$sc" server_cpu_ns_per_delivery median 1 ""
      row "loader cpu ns/delivery" "$sc" loader_cpu_ns_per_delivery median 1 ""
      ;;
    B)
      row "deliveries/s" "$sc" deliveries_per_sec median 0 "~1M"
      row "latency p50 ms" "$sc" p50_ms median 2 ""
      row "latency p99 ms" "$sc" p99_ms median 2 "<= 25"
      row "lost" "$sc" lost max 0 "0"
      row "server cpu s (run)" "$sc" server_cpu_run_secs median 2 ""
      ;;
    C)
      if ((tcp)); then
        row "messages/s" "$sc" messages_per_sec median 0 ">= 1.5x nats"
      else
        row "messages/s" "$sc" messages_per_sec median 0 ""
        vs_tcp "messages/s vs C (tcp)" "$sc" messages_per_sec ""
      fi
      row "latency p99 ms" "$sc" p99_ms median 1 ""
      row "lost" "$sc" lost max 0 "0"
      row "server cpu s (run)" "$sc" server_cpu_run_secs median 2 ""
      ;;
    D)
      if ((tcp)); then peak_target="<= 4096"; else peak_target=""; fi
      row "joined" "$sc" joined median 0 "10000"
      if ((tcp)); then joins_target=">= 1000"; else joins_target=""; fi
      row "joins/s" "$sc" joins_per_sec median 0 "$joins_target"
      row "join lines/s" "$sc" join_lines_per_sec median 0 ""
      row "join lines missing" "$sc" join_lines_missing max 0 "0"
      row "server RSS B/member, joined" "$sc" server_rss_per_member_bytes median 0 ""
      row "server RSS B/member, idle" "$sc" server_rss_per_idle_member_bytes median 0 "$(idle_member_target "$sc")"
      row "server RSS B/member, peak" "$sc" server_peak_rss_per_member_bytes median 0 "$peak_target"
      if ((!tcp)); then
        vs_tcp "idle RSS/member vs D (tcp)" "$sc" server_rss_per_idle_member_bytes ""
      fi
      row "server cpu s (connect)" "$sc" server_cpu_connect_secs median 2 ""
      ;;
    E)
      row "got NAME / PONG" "$sc" joined median 0 "10000"
      row "time to all NAMEs s" "$sc" storm_all_secs all 3 "every client"
      row "time to last reply s" "$sc" storm_last_secs median 3 ""
      row "slowest client s" "$sc" storm_slowest_secs median 3 ""
      row "stragglers" "$sc" stragglers max 0 "0"
      row "failed" "$sc" failed max 0 "0"
      ;;
    F | G)
      if [[ "$sc" == F ]]; then target="<= 64"; else target="<= 128"; fi
      row "never-readers joined" "$sc" joined median 0 ""
      row "never-readers cut" "$sc" cut median 0 "all"
      row "all cut after s" "$sc" all_cut_secs median 2 ""
      row "server peak RSS MiB" "$sc" server_peak_rss_mib median 1 "$target"
      row "sender lines/s" "$sc" sender_lines_per_sec median 0 ""
      row "sender lost" "$sc" lost max 0 "0"
      row "sender cut (runs)" "$sc" sender_cut_runs max 0 "0"
      ;;
  esac
  for key in dups misordered disconnected; do
    c=$(agg "$sc" chat "$key" max)
    n=$(agg "$sc" nats "$key" max)
    if [[ "${c:-0}" != 0 || "${n:-0}" != 0 ]]; then
      row "$key" "$sc" "$key" max 0 "0"
    fi
  done
done
echo
echo "raw results: $OUT/<scenario>.<server>.<run>.json"
