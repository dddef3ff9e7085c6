#!/usr/bin/env bash
# Runs every check the project has, in the order a failure is cheapest to
# find: formatting, lints, unit/property/simulation/integration tests, a
# short fuzzing run of the network decoders, the simulation report, then
# the Debian packages (built and their contents checked).
#
# While the tests run (most of them wait on real processes, timers and
# network namespaces, leaving the CPU idle), a background job at the
# lowest CPU priority installs the missing tools (cargo-fuzz, cargo-deb),
# builds the fuzz targets, builds and checks the amd64 Debian package, and
# cross-builds, checks and unpacks the arm64 (Raspberry Pi) one; the later
# sections wait for it and show its output. On a fresh machine that takes
# minutes of compiling off the critical path. One of those sections runs
# the unpacked arm64 binary under qemu in a room of x86 nodes
# (firmware-node/tests/arm64_node_under_qemu.rs), which the main test run
# skips.
#
# Installs no system packages: on a fresh machine run `sudo bash .ci/run`,
# which installs them and then runs this script. Run as root, or the
# network-namespace tests skip loudly (with CI=true they fail instead).
#
# Knobs (environment):
#   AUTOHARMONIZE_SEEDS         simulation seeds per random-fault test (default 300)
#   AUTOHARMONIZE_FUZZ_SECONDS  seconds per fuzz target (default 15; 0 skips fuzzing)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FUZZ_SECONDS="${AUTOHARMONIZE_FUZZ_SECONDS:-15}"
FUZZ_TARGETS=(decode_message open_envelope exchange_message)
# cargo-fuzz release installed when it is missing; bump deliberately.
CARGO_FUZZ_VERSION=0.13.2

LOG_DIR="$(mktemp -d)"
PREP_PID=
# Where the background job unpacks the arm64 package; the qemu test runs
# the node binary inside it.
ARM64_ROOT="$LOG_DIR/arm64-package"
# On any exit, stop the background job (its own process group) if it
# still runs, then remove the logs.
cleanup() {
    if [[ -n $PREP_PID ]]; then
        kill -- "-$PREP_PID" 2>/dev/null || true
    fi
    rm -rf "$LOG_DIR"
}
trap cleanup EXIT
START=$SECONDS
SECTION_START=

# Prints a section header, and how long the previous section took.
section() {
    if [[ -n $SECTION_START ]]; then
        printf '     (%ds)\n' "$((SECONDS - SECTION_START))"
    fi
    SECTION_START=$SECONDS
    printf '\n==== %s ====\n' "$*"
}

section "format (cargo fmt --check)"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check

section "lints (cargo clippy -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings

# The background job: tools, fuzz targets, the Debian packages. setsid
# gives it a process group of its own, so cleanup() can stop all of it.
export FUZZ_SECONDS CARGO_FUZZ_VERSION ARM64_ROOT
setsid nice -n 19 bash -c '
    set -euo pipefail
    # setsid made a new session, and with the kernel'"'"'s autogroup
    # scheduling (on by default) each session is weighed as a whole: a
    # niced job in its own session still takes half the CPU from the test
    # build. Lowering the autogroup'"'"'s own weight keeps it in the idle time.
    echo 19 >/proc/self/autogroup 2>/dev/null || true
    if [[ "$FUZZ_SECONDS" -ne 0 ]]; then
        if ! cargo fuzz --version >/dev/null 2>&1; then
            echo "cargo-fuzz is missing: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
            cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
        fi
        # cargo-fuzz needs unstable rustc flags (sanitizers, coverage
        # instrumentation); RUSTC_BOOTSTRAP lets the stable toolchain
        # accept them.
        RUSTC_BOOTSTRAP=1 cargo fuzz build
        echo "==== fuzz targets built"
    fi
    bash scripts/build-deb.sh --check
    # The Raspberry Pi package, cross-built like a release; its binary is
    # what the qemu test runs. build-deb.sh prints the .deb path last.
    echo "==== arm64 package"
    bash scripts/build-deb.sh --arch arm64 --check >"$ARM64_ROOT.out"
    cat "$ARM64_ROOT.out"
    dpkg-deb -x "$(tail -n 1 "$ARM64_ROOT.out")" "$ARM64_ROOT"
    echo "unpacked into $ARM64_ROOT"
' >"$LOG_DIR/prepare.log" 2>&1 &
PREP_PID=$!

# Waits for the background job (once); on failure shows its log and stops.
prepared=false
wait_prepared() {
    $prepared && return 0
    if ! wait "$PREP_PID"; then
        PREP_PID=
        cat "$LOG_DIR/prepare.log"
        echo "the background build (tools, fuzz targets, Debian packages) failed: log above" >&2
        exit 1
    fi
    PREP_PID=
    prepared=true
}

section "tests (cargo test --workspace)"
# tee keeps the output visible; pipefail keeps cargo's exit status.
# The chaos soak and the arm64 node under qemu run apart, below.
cargo test --workspace -- --skip chaos_soak_keeps_every_invariant \
    --skip arm64_node_joins_follows_and_plays_under_qemu 2>&1 | tee "$LOG_DIR/test.log"

section "arm64 node under qemu (the arm64 package's binary among x86 nodes)"
# Needs the package the background job cross-builds. The test fails under
# CI=true if the binary is missing; it asserts states, not emulated timing.
wait_prepared
AUTOHARMONIZE_ARM64_NODE="$ARM64_ROOT/usr/bin/autoharmonize-node" \
    cargo test --workspace --test arm64_node_under_qemu 2>&1 | tee -a "$LOG_DIR/test.log"

section "chaos soak (2 minutes, fixed seeds; after the background build)"
# Its invariants include "no xrun" and the sync bound, which hold on a
# speaker; on the VMs this project's CI uses, real-time threads miss
# deadlines while unrelated work keeps both virtual CPUs busy, even at
# nice 19 (docs/chaos.md). So it runs once the background job is done.
wait_prepared
cargo test -p autoharmonize-tests --test chaos_soak 2>&1 | tee -a "$LOG_DIR/test.log"

section "fuzz smoke (cargo fuzz, ${FUZZ_SECONDS}s per target)"
if [[ "$FUZZ_SECONDS" -eq 0 ]]; then
    echo "skipped: AUTOHARMONIZE_FUZZ_SECONDS=0"
else
    wait_prepared
    # Built by the background job; cargo-fuzz rebuilds nothing here, but
    # needs the same unstable flags to agree.
    export RUSTC_BOOTSTRAP=1
    for target in "${FUZZ_TARGETS[@]}"; do
        # The first directory collects new inputs (ignored by git); the
        # committed seeds are read only (a target without seeds starts
        # from nothing).
        mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
        log="$LOG_DIR/fuzz-$target.log"
        if cargo fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
            -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 >"$log" 2>&1; then
            printf '%s: ' "$target"
            grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1
        else
            echo "$target: FAILED (crash input saved under fuzz/artifacts/$target/)"
            tail -n 80 "$log"
            exit 1
        fi
    done
    unset RUSTC_BOOTSTRAP
fi

section "simulation report (8 nodes, 30 s)"
# The test profile's build of this binary (dependencies optimised) is
# already there from `cargo test`; the run is deterministic, so a release
# build would only cost CI minutes. Benchmarks use --release. Not `cargo
# run -p`: it resolves features for one package and rebuilds dozens of
# crates; `--workspace --bins --tests` names the units `cargo test` built.
cargo build --workspace --bins --tests --quiet
"${CARGO_TARGET_DIR:-target}/debug/simulate" --nodes 8 --seconds 30

section "Debian packages (amd64 and arm64: built with cargo-deb, contents checked)"
wait_prepared
# Built and checked by the background job: its output.
sed -n '/^==== fuzz targets built/,$p' "$LOG_DIR/prepare.log" | sed 1d
[[ "$FUZZ_SECONDS" -ne 0 ]] || cat "$LOG_DIR/prepare.log"

section "done in $((SECONDS - START))s"
# Where the test time goes: the slowest test binaries (cargo runs them one
# after another; each prints its own wall time).
echo "slowest test binaries:"
awk '/^ *Running / { name = $2; if (match($0, /deps\/[^)]*/)) name = name " (" substr($0, RSTART + 5, RLENGTH - 5) ")" }
     /^test result:/ { for (i = 1; i <= NF; i++) if ($i == "in") { t = $(i+1); sub(/s$/, "", t); printf "%8.1fs  %s\n", t, name } }' \
    "$LOG_DIR/test.log" | sort -rn | sed -n '1,12p'
# One closing line over every `cargo test` binary, so the totals are the
# last thing printed.
awk '/^test result:/ { for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$LOG_DIR/test.log"
