#!/usr/bin/env bash
# HA failover timeline (issue "HA"): three host agents in network namespaces sharing one volume;
# N protected idle VMs on the first host, which is killed (kill -9 of its agent and VMMs). The
# survivors' failover record gives, from the kill: detected -> locks recovered -> each VM's first
# guest instruction. Runs for every D in HA_BENCH_DEAD_MS (default 16000 = the project's and
# VMware's default, and 2000) and every N in HA_BENCH_VMS (default 1,10,30). Goal: every VM's
# first instruction within D + 2 s of the failure.
# Usage: Benchmarks/ha/bench-failover.sh [RESULTS-FILE]   (needs root, /dev/kvm, netns)
# The agents, VMMs and tools are release builds (VMFS_TOOLS_DIR points the test harness at them);
# the harness itself is the debug test build.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/Benchmarks/ha/results-$(date +%Y-%m-%d).txt}"
cd "$root"
if [[ -x Tools/scripts/build-guest.sh ]]; then Tools/scripts/build-guest.sh --test-guest-only >/dev/null; fi
swift build --build-tests > /tmp/bench-failover-build.log 2>&1 || { grep -E "error" /tmp/bench-failover-build.log | head -20; exit 1; }
for product in vmhostd vmx vmctl vmfs mkfs.vmfs; do
    swift build -c release --product "$product" >> /tmp/bench-failover-build.log 2>&1 || { grep -E "error" /tmp/bench-failover-build.log | head -20; exit 1; }
done
export VMFS_TOOLS_DIR="$(swift build -c release --show-bin-path)"
tmp="$(mktemp)"
HA_BENCH=1 HA_BENCH_OUT="$tmp" swift test --skip-build --filter HAFailoverBenchmark 2>&1 | grep -E "HA bench|✘|error" || true
[[ -s "$tmp" ]] || { echo "bench-failover: no results (see the output above)" >&2; exit 1; }
{ echo "# HA failover timeline, $(date -u +%FT%TZ), $(nproc) cores; times from the kill"; cat "$tmp"; } > "$out"
rm -f "$tmp"
cat "$out"
