#!/usr/bin/env bash
# CPU and memory of one node playing a 48 kHz stereo FLAC stem, side by side
# with Snapcast's snapclient playing the same music in the same run
# (issue 5's target: less CPU and less memory than snapclient).
#
#   sudo bash scripts/bench-audio.sh [--seconds N] [--write docs/benchmarks.md]
#
# Installs snapserver, snapclient and flac from Debian if missing (daemons
# are kept from starting). Everything runs on loopback: the node with
# static peers and no mDNS, snapserver bound to 127.0.0.1. Both players
# write to a null output paced in real time (the node: `null`, paced like a
# device; snapclient: its `file` player to `null`), so neither needs a
# sound card and the comparison covers decoding, resampling/sync and
# output pacing. CPU is utime+stime from /proc over the measuring window
# (after a 10 s warm-up); memory is VmRSS and Pss at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_TO_MEASURE=60
WRITE=
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) SECONDS_TO_MEASURE=$2; shift 2 ;;
        --write) WRITE=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done

need=()
for bin in snapclient snapserver flac curl python3; do
    command -v "$bin" >/dev/null || need+=("$bin")
done
if [[ ${#need[@]} -gt 0 ]]; then
    [[ $EUID -eq 0 ]] || { echo "missing ${need[*]}; run as root" >&2; exit 1; }
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi

cargo build --release -q -p autoharmonize-node
NODE=target/release/autoharmonize-node

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Music-like test material: a few detuned partials with an envelope per
# beat and some noise, so FLAC works about as hard as on a real stem.
total=$((SECONDS_TO_MEASURE + 30))
python3 scripts/bench-stem.py "$work/stem.wav" "$total"
mkdir -p "$work/media/bench"
flac -s -5 -o "$work/media/bench/music.flac" "$work/stem.wav"
flac -s -d --force-raw-format --endian=little --sign=signed -o "$work/music.pcm" "$work/media/bench/music.flac"

# --- the node ---------------------------------------------------------
head -c 32 /dev/urandom | base64 >"$work/secret"; chmod 600 "$work/secret"
"$NODE" --secret-file "$work/secret" --state-dir "$work/state" --media-dir "$work/media" \
    --track bench --channel 0 --output null --no-mdns \
    --listen 127.0.0.1:27710 --status-listen 127.0.0.1:27711 --log-level warn \
    >"$work/node.log" 2>&1 &
node_pid=$!; pids+=("$node_pid")

# --- snapserver + snapclient -----------------------------------------
cat >"$work/snapserver.conf" <<EOF
[server]
datadir = $work/snapdata
[http]
enabled = false
[tcp]
enabled = false
[stream]
bind_to_address = 127.0.0.1
port = 27704
source = file://$work/music.pcm?name=bench&sampleformat=48000:16:2
codec = flac
[logging]
sink = null
EOF
mkdir -p "$work/snapdata"
snapserver -c "$work/snapserver.conf" >"$work/snapserver.log" 2>&1 &
pids+=("$!")
sleep 1
snapclient -h 127.0.0.1 -p 27704 --player file:filename=null --logsink null \
    --hostID bench >"$work/snapclient.log" 2>&1 &
client_pid=$!; pids+=("$client_pid")

# Start the node's music: it is alone, so its room forms within ~10 s.
for _ in $(seq 1 150); do
    if curl -sf -XPOST 127.0.0.1:27711/cast -H 'content-type: application/json' \
        -d '{"event":"volume","channel":"all","gain":100}' >/dev/null 2>&1; then break; fi
    sleep 0.1
done
sleep 0.3
curl -sf -XPOST 127.0.0.1:27711/cast -H 'content-type: application/json' \
    -d '{"event":"play","channel":"all"}' >/dev/null

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/$3"; }
sleep 10
n0=$(ticks "$node_pid"); c0=$(ticks "$client_pid"); t0=$(date +%s.%N)
sleep "$SECONDS_TO_MEASURE"
n1=$(ticks "$node_pid"); c1=$(ticks "$client_pid"); t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
node_cpu=$(python3 -c "print(f'{($n1-$n0)/$hz/($t1-$t0)*100:.2f}')")
client_cpu=$(python3 -c "print(f'{($c1-$c0)/$hz/($t1-$t0)*100:.2f}')")
node_rss=$(kib "$node_pid" VmRSS status); client_rss=$(kib "$client_pid" VmRSS status)
node_pss=$(kib "$node_pid" Pss smaps_rollup); client_pss=$(kib "$client_pid" Pss smaps_rollup)
status=$(curl -sf 127.0.0.1:27711/status || echo '{}')
playing=$(python3 -c "import json,sys; a=json.loads(sys.argv[1]).get('audio') or {}; print(a.get('frames_written', 0), a.get('underruns', '?'), a.get('xruns', '?'))" "$status")
read -r frames underruns xruns <<<"$playing"

cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
report="Command: \`sudo bash scripts/bench-audio.sh --seconds $SECONDS_TO_MEASURE --write docs/benchmarks.md\`  
Machine: $cpu_model, $(nproc) cores, shared; both players ran at the same time, measured over the same $SECONDS_TO_MEASURE s after a 10 s warm-up. Material: a 48 kHz 16-bit stereo FLAC stem (synthesised, $total s). The node plays it from disk (symphonia, rubato, renderer, output thread, paced null output); snapclient $(snapclient --version 2>/dev/null | head -1 | awk '{print $NF}') receives the same music from a local snapserver as FLAC (its default codec) and plays it to its \`file\` player writing to null. Node during the window: $frames frames written in total, $underruns underruns, $xruns xruns.

| player | CPU (% of one core) | VmRSS | Pss |
|---|---|---|---|
| autoharmonize-node | $node_cpu % | $node_rss KiB | $node_pss KiB |
| snapclient | $client_cpu % | $client_rss KiB | $client_pss KiB |
"
echo "$report"
if [[ -n $WRITE ]]; then
    python3 - "$WRITE" "$report" <<'EOF'
import sys
path, body = sys.argv[1], sys.argv[2]
begin, end = "<!-- bench-audio:begin -->", "<!-- bench-audio:end -->"
try:
    old = open(path).read()
except FileNotFoundError:
    old = ""
block = f"{begin}\n{body}{end}"
a, b = old.find(begin), old.find(end)
new = old[:a] + block + old[b + len(end):] if 0 <= a < b else f"{old}\n## Audio: node vs snapclient (CPU, memory)\n\n{block}\n"
open(path, "w").write(new)
EOF
    echo "wrote $WRITE"
fi
