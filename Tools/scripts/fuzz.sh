#!/usr/bin/env bash
# Coverage-guided fuzzing of the project's parsers, decoders and hostile-input paths (libFuzzer,
# AddressSanitizer). See docs/FUZZING.md.
#
#   Tools/scripts/fuzz.sh build                 build every target (scratch path .build-fuzz)
#   Tools/scripts/fuzz.sh run [SECONDS] [TARGET...]
#                                               run each target (all by default) for SECONDS
#                                               (60) from its committed corpus; fails on any
#                                               crash, hang (> 10 s per input, not counting
#                                               time waiting for a CPU), leak or write outside
#                                               the device
#   Tools/scripts/fuzz.sh ci [SECONDS] [TARGET...]
#                                               what CI runs: like run, but from the committed
#                                               seeds alone with a fixed seed (FUZZ_SEED, 1), so
#                                               a run explores the same inputs in the same order
#                                               on every machine and a finding fails every run
#                                               that gets as far, not one in N
#   Tools/scripts/fuzz.sh long [SECONDS] [TARGET...]
#                                               the long structure-aware run: volume-image by
#                                               default, 3600 s, at nice 10, corpus kept in
#                                               $FUZZ_WORK/long-corpus (default FUZZ_WORK:
#                                               /var/tmp/vmfs-fuzz; short runs keep theirs in
#                                               $FUZZ_WORK/corpus)
#   Tools/scripts/fuzz.sh seeds                 regenerate the committed seed corpora
#   Tools/scripts/fuzz.sh list                  the targets
#
# Findings (crash-*, timeout-*, leak-*, oom-* inputs) go to $FUZZ_WORK/artifacts; reproduce one
# with .build-fuzz/release/fuzz-TARGET ARTIFACT. The last "#N DONE cov: C ft: F" line of each run
# is printed (executions, edges and features reached); each run's log is kept in
# $FUZZ_WORK/logs/TARGET-DATE-TIME.log.
set -euo pipefail
cd "$(dirname "$0")/../.."

# volume-image-interrupted is fuzz-volume-image with a 150 ms watchdog budget: mounts, checks,
# recoveries and repairs are stopped at every step, which is how the stop paths are fuzzed.
TARGETS=(decoders journal-replay volume-image volume-image-interrupted virtqueue vm-files fuse-operations)
WORK=${FUZZ_WORK:-/var/tmp/vmfs-fuzz}
# FUZZ_SCRATCH: another build directory, e.g. for a short run beside a long one.
SCRATCH=${FUZZ_SCRATCH:-.build-fuzz}
BIN=$SCRATCH/release
# SwiftPM's --sanitize fuzzer links libFuzzer's main into the executables; the -Xswiftc/-Xcc
# flags put the coverage and comparison instrumentation into every module, not only the targets.
BUILD_FLAGS=(--package-path Fuzz --scratch-path "$SCRATCH" -c release
             --sanitize fuzzer --sanitize address
             -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=fuzzer-no-link,address
             -Xswiftc -enable-testing)
# -rss_limit_mb: ASan's shadow and the image copies stay well below it.
FUZZ_FLAGS=(-rss_limit_mb=6144 -print_final_stats=1)
# A hang is an input that runs longer than 10 s. The targets that mount, check and replay
# (volume-image, journal-replay, fuse-operations) interrupt legitimate waits after 3 s and
# report a hang themselves at 10 s (Watchdog), both measured without the time the input waited
# for a CPU, so a fuzzer starved on a busy machine reports no false hangs; libFuzzer's
# wall-clock -timeout stays behind them at 60 s. The other targets never wait: -timeout=10.
# Structured inputs (a few edits and a script of operations) need room at once: without
# -len_control=0 libFuzzer grows the length limit from the longest seed only slowly, and the
# slow targets never get past it.
target_flags() {
    case "$1" in
        volume-image*) echo "-timeout=60 -max_len=512 -len_control=0" ;;
        journal-replay|fuse-operations) echo "-timeout=60 -max_len=1024 -len_control=0" ;;
        decoders) echo "-timeout=10 -max_len=4100" ;;
        *) echo "-timeout=10 -max_len=8192" ;;
    esac
}
# A trap is reported by libFuzzer and ASan; the Swift runtime's own backtracer would read
# memory ASan does not expect it to and drown the report.
export SWIFT_BACKTRACE=enable=no

# Every product of the fuzz package is a fuzz target: one build makes them all.
build() { swift build "${BUILD_FLAGS[@]}"; }

# Image files of fuzzers that are gone (a crashed fuzzer leaves its /dev/shm/vmfs-fuzz-PID-*.img).
remove_stale_images() {
    local image pid
    for image in /dev/shm/vmfs-fuzz-*.img "${VMFS_FUZZ_SCRATCH:-/tmp}"/vmfs-fuzz-*.img; do
        [[ -e $image ]] || continue
        pid=${image##*/vmfs-fuzz-}
        pid=${pid%%-*}
        [[ -d /proc/$pid ]] || rm -f "$image"
    done
}

# The executable (and seed corpus) of a target, and the environment it runs with.
binary_of() { echo "${1%-interrupted}"; }
budget_of() { [[ $1 == *-interrupted ]] && echo 150 || echo 3000; }

# run SECONDS NICENESS CORPORA TARGET...: runs each target, keeping what it finds in
# $WORK/CORPORA/TARGET; returns non-zero if any found something. EXTRA_FLAGS go to every target.
EXTRA_FLAGS=()
run() {
    local seconds=$1 niceness=$2 corpora=$3
    shift 3
    local targets=("$@") failed=0
    ((${#targets[@]})) || targets=("${TARGETS[@]}")
    mkdir -p "$WORK/artifacts" "$WORK/logs"
    for target in "${targets[@]}"; do
        local corpus="$WORK/$corpora/$target" log
        log="$WORK/logs/$target-$(date +%Y%m%d-%H%M%S).log"
        mkdir -p "$corpus"
        echo "fuzz: $target for ${seconds}s" >&2
        # shellcheck disable=SC2046
        if ! VMFS_FUZZ_BUDGET_MS=$(budget_of "$target") nice -n "$niceness" "$BIN/fuzz-$(binary_of "$target")" "${FUZZ_FLAGS[@]}" ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"} \
                $(target_flags "$target") -max_total_time="$seconds" -artifact_prefix="$WORK/artifacts/$target-" \
                "$corpus" "Fuzz/Corpus/$(binary_of "$target")" >"$log" 2>&1; then
            echo "fuzz: $target FAILED (log: $log)" >&2
            grep -E "ERROR|==[0-9]+==|fuzz oracle|fuzz hang|Fatal error|SUMMARY|Test unit written" "$log" | head -20 >&2 || true
            failed=1
        fi
        local done_line
        done_line=$(grep -E "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true)
        echo "fuzz: $target: ${done_line:-no DONE line}" >&2
    done
    remove_stale_images
    return "$failed"
}

command=${1:-run}
shift || true
case "$command" in
    build) build "$@" ;;
    run)
        seconds=${1:-60}
        shift || true
        build
        run "$seconds" 0 corpus "$@"
        ;;
    ci)
        seconds=${1:-60}
        shift || true
        build
        # A fresh working corpus each time: what earlier runs kept would change what this one
        # explores.
        rm -rf "$WORK/ci-corpus"
        EXTRA_FLAGS=(-seed="${FUZZ_SEED:-1}")
        run "$seconds" 0 ci-corpus "$@"
        ;;
    long)
        seconds=${1:-3600}
        shift || true
        (($#)) || set -- volume-image
        build
        # The run uses a copy of the executables, so that rebuilding meanwhile (a short run, a
        # fix) does not replace the file a fuzzer is running.
        mkdir -p "$WORK/bin"
        for target in "$@"; do cp "$BIN/fuzz-$(binary_of "$target")" "$WORK/bin/"; done
        BIN=$WORK/bin
        # Its own corpus: libFuzzer runs every input of the corpora it is given before its time
        # limit counts, and a short run must not first replay the thousands a long run kept.
        run "$seconds" 10 long-corpus "$@"
        ;;
    seeds)
        build
        for target in "${TARGETS[@]}"; do
            [[ $target == "$(binary_of "$target")" ]] || continue
            # regression-* inputs (findings kept as seeds) stay.
            find "Fuzz/Corpus/$target" -type f ! -name 'regression-*' -delete 2>/dev/null || true
            VMFS_FUZZ_WRITE_SEEDS="Fuzz/Corpus/$target" "$BIN/fuzz-$target"
        done
        ;;
    list) printf '%s\n' "${TARGETS[@]}" ;;
    *) echo "usage: $0 build|run|ci|long|seeds|list (see the header of this script)" >&2; exit 2 ;;
esac
