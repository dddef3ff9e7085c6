#!/usr/bin/env bash
# CPU of the node built for the Raspberry Pi (the arm64 package's binary,
# run under qemu-aarch64-static) beside the native amd64 build, on the same
# material in the same run: what emulation costs on this machine, and the
# per-thread split. Emulated CPU time is not a Pi's CPU time (see
# docs/deploy.md, "What a speaker costs"); the native figure is the one to
# compare with docs/benchmarks.md.
#
#   sudo bash scripts/bench-arm64.sh [--seconds N] [--write docs/benchmarks.md]
#
# Needs what the CI installs (.ci/run: the arm64 cross toolchain,
# libasound2-dev:arm64, qemu-user-static) plus `flac`, installed from
# Debian if missing. Each node is alone in its own room on loopback (static
# peers none, no mDNS), plays a 48 kHz 16-bit stereo FLAC stem to the paced
# null output; first a paused window (the mesh, timers and silence), then a
# playing one. CPU is utime+stime from /proc over each window, per process
# and per thread. Then the native build alone under valgrind's callgrind:
# instructions per second, per thread, paused and playing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_TO_MEASURE=60
PAUSED_SECONDS=30
WRITE=
while [[ $# -gt 0 ]]; do
    case $1 in
        --seconds) SECONDS_TO_MEASURE=$2; shift 2 ;;
        --write) WRITE=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
done

for bin in qemu-aarch64-static curl python3; do
    command -v "$bin" >/dev/null || { echo "missing $bin (sudo bash .ci/run installs it)" >&2; exit 1; }
done
if ! command -v flac >/dev/null; then
    [[ $EUID -eq 0 ]] || { echo "missing flac; run as root" >&2; exit 1; }
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends flac >/dev/null
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cargo build --release -q -p autoharmonize-node
NATIVE=target/release/autoharmonize-node
deb=$(bash scripts/build-deb.sh --arch arm64 | tail -n 1)
dpkg-deb -x "$deb" "$work/arm64"
ARM64=$work/arm64/usr/bin/autoharmonize-node

# The material of bench-audio.sh: detuned partials, an envelope per beat,
# some noise, so FLAC works about as hard as on a real stem.
total=$((PAUSED_SECONDS + SECONDS_TO_MEASURE + 30))
python3 scripts/bench-stem.py "$work/stem.wav" "$total"
mkdir -p "$work/media/bench"
flac -s -5 -o "$work/media/bench/music.flac" "$work/stem.wav"
head -c 32 /dev/urandom | base64 >"$work/secret"; chmod 600 "$work/secret"

# start NAME MESH_PORT STATUS_PORT PROGRAM...
start() {
    local name=$1 mesh=$2 status=$3; shift 3
    "$@" --secret-file "$work/secret" --state-dir "$work/state-$name" \
        --media-dir "$work/media" --track bench --channel 0 --output null --no-mdns \
        --listen "127.0.0.1:$mesh" --status-listen "127.0.0.1:$status" --log-level warn \
        >"$work/$name.log" 2>&1 &
    pids+=("$!")
}
start native 27810 27811 "$NATIVE"
native_pid=${pids[-1]}
start arm64 27820 27821 qemu-aarch64-static "$ARM64"
arm64_pid=${pids[-1]}

cast() {
    curl -sf -XPOST "127.0.0.1:$1/cast" -H 'content-type: application/json' -d "$2" >/dev/null
}
# Each node is alone: its room forms within ~1 s (the emulated one later).
for port in 27811 27821; do
    for _ in $(seq 1 300); do
        cast "$port" '{"event":"volume","channel":"all","gain":100}' && break
        sleep 0.1
    done
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
threads() {
    for t in /proc/"$1"/task/*; do
        printf '%s %s\n' "$(tr ' ' '_' <"$t/comm")" "$(awk '{print $14 + $15}' "$t/stat")"
    done
}
hz=$(getconf CLK_TCK)
pct() { python3 -c "print(f'{($2-$1)/$hz/$3*100:.2f}')" ; }
# window NAME SECONDS: CPU of each process and of each arm64 thread.
declare -A cpu
window() {
    local name=$1 secs=$2
    local n0 a0 t0 n1 a1 t1
    threads "$arm64_pid" >"$work/threads0"
    threads "$native_pid" >"$work/nthreads0"
    n0=$(ticks "$native_pid"); a0=$(ticks "$arm64_pid"); t0=$(date +%s.%N)
    sleep "$secs"
    n1=$(ticks "$native_pid"); a1=$(ticks "$arm64_pid"); t1=$(date +%s.%N)
    threads "$arm64_pid" >"$work/threads1"
    threads "$native_pid" >"$work/nthreads1"
    local el; el=$(python3 -c "print($t1-$t0)")
    cpu[$name-native]=$(pct "$n0" "$n1" "$el")
    cpu[$name-arm64]=$(pct "$a0" "$a1" "$el")
    cpu[$name-threads]=$(python3 - "$work" "$hz" "$el" <<'EOF'
import collections, sys
work, hz, el = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def load(f):
    d = collections.Counter()
    for line in open(f):
        name, ticks = line.split()
        d[name] += int(ticks)
    return d
out = []
for label, pre in (("native", "n"), ("arm64", "")):
    a, b = load(f"{work}/{pre}threads0"), load(f"{work}/{pre}threads1")
    parts = sorted(((b[k] - a.get(k, 0)) / hz / el * 100, k) for k in b)
    parts = [f"{k} {v:.2f} %" for v, k in reversed(parts) if v >= 0.05]
    out.append(f"{label}: " + ", ".join(parts))
print("; ".join(out))
EOF
)
}
sleep 10
window paused "$PAUSED_SECONDS"
cast 27811 '{"event":"play","channel":"all"}'
cast 27821 '{"event":"play","channel":"all"}'
sleep 5
window playing "$SECONDS_TO_MEASURE"

audio() {
    curl -sf "127.0.0.1:$1/status" | python3 -c "import json,sys; a=json.load(sys.stdin).get('audio') or {}; print(f\"{a.get('frames_written', 0)} frames written, {a.get('underruns', '?')} underruns, {a.get('xruns', '?')} xruns\")"
}
native_audio=$(audio 27811); arm64_audio=$(audio 27821)
kill "$native_pid" "$arm64_pid" 2>/dev/null || true

# Instructions, which a slower core runs too: the native build under
# callgrind (user-space instructions only, no kernel time), 20 s paused
# then 30 s playing, counted per thread between callgrind_control's zero
# and dump. It must keep up with real time under valgrind; the frames it
# wrote in each window say whether it did.
instructions=
if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
    cg=$work/callgrind
    mkdir -p "$cg"
    valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$cg/out.%p" \
        "$NATIVE" --secret-file "$work/secret" --state-dir "$work/state-cg" \
        --media-dir "$work/media" --track bench --channel 0 --output null --no-mdns \
        --listen 127.0.0.1:27830 --status-listen 127.0.0.1:27831 --log-level warn \
        >"$work/cg.log" 2>&1 &
    cg_pid=$!; pids+=("$cg_pid")
    for _ in $(seq 1 600); do
        cast 27831 '{"event":"volume","channel":"all","gain":100}' && break
        sleep 0.1
    done
    frames() { curl -sf 127.0.0.1:27831/status | python3 -c "import json,sys; print(json.load(sys.stdin)['audio']['frames_written'])"; }
    sleep 10
    callgrind_control -z "$cg_pid" >/dev/null; f0=$(frames)
    sleep 20
    callgrind_control -d paused "$cg_pid" >/dev/null; f1=$(frames)
    cast 27831 '{"event":"play","channel":"all"}'
    sleep 5
    callgrind_control -z "$cg_pid" >/dev/null; f2=$(frames)
    sleep 30
    callgrind_control -d playing "$cg_pid" >/dev/null; f3=$(frames)
    kill "$cg_pid" 2>/dev/null || true
    wait "$cg_pid" 2>/dev/null || true
    instructions=$(python3 - "$cg" "$f0" "$f1" "$f2" "$f3" <<'EOF'
import glob, re, sys
cg, f0, f1, f2, f3 = sys.argv[1], *map(int, sys.argv[2:])
names = {1: "mesh (main)", 3: "ah-audio-out", 4: "ah-audio-dec"}
out = []
for part, label, secs, frames in ((1, "paused", 20, f1 - f0), (2, "playing", 30, f3 - f2)):
    per = {}
    for f in glob.glob(f"{cg}/out.*.{part}-*"):
        text = open(f).read()
        t = int(re.search(r"^thread: (\d+)", text, re.M).group(1))
        n = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
        per[t] = per.get(t, 0) + n
    total = sum(per.values()) / secs / 1e6
    split = ", ".join(f"{names.get(t, f'thread {t}')} {n / secs / 1e6:.1f}" for t, n in sorted(per.items()) if n)
    out.append(f"{label}: {total:.1f} M instructions/s ({split}); {frames / 48000:.1f} s of frames written in the {secs} s window")
print("; ".join(out))
EOF
)
fi
factor_paused=$(python3 -c "print(f'{${cpu[paused-arm64]}/max(${cpu[paused-native]},0.01):.1f}')")
factor_playing=$(python3 -c "print(f'{${cpu[playing-arm64]}/max(${cpu[playing-native]},0.01):.1f}')")

cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
report="Command: \`sudo bash scripts/bench-arm64.sh --seconds $SECONDS_TO_MEASURE --write docs/benchmarks.md\`  
Machine: $cpu_model, $(nproc) cores, shared; $(qemu-aarch64-static --version | head -1). Both nodes ran at the same time, each alone in a room on loopback, playing a 48 kHz 16-bit stereo FLAC stem (synthesised) to the paced null output: the native amd64 release build and the arm64 package's binary under qemu-user. Windows: ${PAUSED_SECONDS} s paused after a 10 s warm-up, then ${SECONDS_TO_MEASURE} s playing. Native: $native_audio; arm64: $arm64_audio (totals at the end). Emulated CPU is this machine's cost of emulating the node, not a Raspberry Pi's (docs/deploy.md).

| node | paused (% of one core) | playing (% of one core) |
|---|---|---|
| amd64, native | ${cpu[paused-native]} % | ${cpu[playing-native]} % |
| arm64 under qemu-user | ${cpu[paused-arm64]} % | ${cpu[playing-arm64]} % |
| ratio | ${factor_paused}x | ${factor_playing}x |

Per thread while playing: ${cpu[playing-threads]}.

Native build under callgrind (x86-64 user-space instructions, no kernel): ${instructions:-not measured (valgrind missing)}.
"
echo "$report"
if [[ -n $WRITE ]]; then
    python3 - "$WRITE" "$report" <<'EOF'
import sys
path, body = sys.argv[1], sys.argv[2]
begin, end = "<!-- bench-arm64:begin -->", "<!-- bench-arm64:end -->"
try:
    old = open(path).read()
except FileNotFoundError:
    old = ""
block = f"{begin}\n{body}{end}"
a, b = old.find(begin), old.find(end)
new = old[:a] + block + old[b + len(end):] if 0 <= a < b else f"{old}\n## The arm64 build under emulation (CPU)\n\n{block}\n"
open(path, "w").write(new)
EOF
    echo "wrote $WRITE"
fi
