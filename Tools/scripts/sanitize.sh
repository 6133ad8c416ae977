#!/usr/bin/env bash
# The unit and cluster suites under AddressSanitizer and ThreadSanitizer (docs/FUZZING.md).
#
#   Tools/scripts/sanitize.sh [address|thread|all] [FILTER]
#   TIMING_SCALE=N Tools/scripts/sanitize.sh ...   (default 2 under ASan, 8 under TSan)
#
# Each sanitizer builds the package and its tests into its own scratch path (.build-address,
# .build-thread: debug builds, every module and every tool the tests start instrumented) and
# runs the suites FILTER selects (default: VMFSCoreTests, ToolTests' cluster tests,
# HypervisorTests) one after another. The suites' output goes to $SANITIZE_WORK (default
# /var/tmp/vmfs-sanitize)/SANITIZER.log and every process's reports (the test runner's and
# those of the tools and host processes the tests start) to $SANITIZE_WORK/SANITIZER/report.PID;
# the script fails when a suite fails or a sanitizer reported anything. ThreadSanitizer takes
# Tools/sanitize/tsan-suppressions.txt (Swift's Mutex is invisible to it on Linux; see there).
# Not part of CI: both builds and runs take about half an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."

which=${1:-all}
filter=${2:-'^(VMFSCoreTests\.|ToolTests\.ClusterTests/|HypervisorTests\.)'}
WORK=${SANITIZE_WORK:-/var/tmp/vmfs-sanitize}
mkdir -p "$WORK"
Tools/scripts/setup.sh
if [[ -x Tools/scripts/build-guest.sh ]]; then Tools/scripts/build-guest.sh; fi

# The Swift runtime's backtracer reads memory the sanitizers watch; their own reports suffice.
export SWIFT_BACKTRACE=enable=no
suppressions="$PWD/Tools/sanitize/tsan-suppressions.txt"

run() {
    local sanitizer=$1 log="$WORK/$1.log" reports_dir="$WORK/$1"
    rm -rf "$reports_dir"
    mkdir -p "$reports_dir"
    # Leaks are checked by the fuzzers (per input); here a test process that ends with threads
    # or caches alive is not an error. A process goes on after a report; all are collected.
    export ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:print_summary=1:log_path=$reports_dir/report"
    # Instrumented hosts are slower (ASan about 2×, TSan 5–15×): the cluster tests stretch their
    # heartbeat intervals and waits by this factor, or hosts fence themselves, as they must.
    local scale=2
    [[ $sanitizer == thread ]] && scale=8
    export VMFS_TEST_TIMING_SCALE=${TIMING_SCALE:-$scale}
    export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:history_size=4:suppressions=$suppressions:log_path=$reports_dir/report"
    echo "sanitize: building with --sanitize $sanitizer (.build-$sanitizer)" >&2
    swift build --build-tests --sanitize "$sanitizer" --scratch-path ".build-$sanitizer"
    echo "sanitize: running $filter under $sanitizer (log: $log)" >&2
    local status=0
    swift test --skip-build --sanitize "$sanitizer" --scratch-path ".build-$sanitizer" --no-parallel \
        --filter "$filter" >"$log" 2>&1 || status=$?
    local reports
    reports=$(cat "$reports_dir"/report.* 2>/dev/null | grep -cE "^(WARNING: ThreadSanitizer|==[0-9]+==ERROR: AddressSanitizer)" || true)
    cat "$reports_dir"/report.* 2>/dev/null | grep -E "^SUMMARY: (Thread|Address)Sanitizer" | sort | uniq -c | sort -rn | head -20 >&2 || true
    grep -E "Test run with|tests? (passed|failed)|issues?\)" "$log" | tail -3 >&2 || true
    echo "sanitize: $sanitizer: suite exit $status, $reports sanitizer report(s)" >&2
    [[ $status -eq 0 && $reports -eq 0 ]]
}

failed=0
case "$which" in
    address|thread) run "$which" || failed=1 ;;
    all) for sanitizer in address thread; do run "$sanitizer" || failed=1; done ;;
    *) echo "usage: $0 [address|thread|all] [FILTER]" >&2; exit 2 ;;
esac
exit "$failed"
