#!/usr/bin/env bash
# Hypervisor benchmark (not a test): measures, with a release build of vm-run and the test guest,
#   1. process start → first guest instruction (the guest's entry marker, timestamped by the VMM),
#   2. VMM memory overhead: VmRSS of the VMM minus the guest RAM the guest touched (mincore),
#   3. virtio-blk sequential throughput in the guest vs the same I/O on a raw file in the same run.
# Usage: Benchmarks/hypervisor/bench.sh [total-MiB] [request-KiB] [requests-per-notify]
# (each notify is one port-I/O exit; on kvm_pvm an exit from CPL3 costs tens of µs)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
total_mib="${1:-512}"
request_kib="${2:-1024}"
depth="${3:-32}"
runs=5

Tools/scripts/build-guest.sh --test-guest-only
# Linked statically against the Swift runtime, as a VMM is deployed: one self-contained binary
# whose resident memory is only the runtime pages it touches (shared libswiftCore and
# libFoundationEssentials cost ~3.5 MiB more resident per process).
build=(-c release --static-swift-stdlib --build-path .build/static)
swift build "${build[@]}" --product vm-run >/dev/null
vmrun="$(swift build "${build[@]}" --show-bin-path)/vm-run"
guest=".cache/guest/testguest.elf"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/hv-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "== start to first guest instruction (hello workload, 1 vCPU, 64 MiB), $runs runs"
starts=()
overheads=()
privates=()
for _ in $(seq "$runs"); do
    launched="$(date +%s%N)"
    out="$("$vmrun" --guest "$guest" --workload 0 --memory 64 --report)"
    first="$(awk '$1 == "marker" && $2 == 1 { print $8; exit }' <<<"$out")"
    starts+=($(( (first - launched) / 1000 )))
    rss="$(awk '$1 == "vmm_rss_bytes" { print $2 }' <<<"$out")"
    guest_bytes="$(awk '$1 == "guest_resident_bytes" { print $2 }' <<<"$out")"
    overheads+=($(( (rss - guest_bytes) / 1024 )))
    anon="$(awk '$1 == "vmm_rss_anon_bytes" { print $2 }' <<<"$out")"
    privates+=($(( (anon - guest_bytes) / 1024 )))
done
echo "start→first instruction: median $(printf '%s\n' "${starts[@]}" | median) µs (runs: ${starts[*]} µs)"
echo "VMM overhead (VmRSS − guest-touched RAM): median $(printf '%s\n' "${overheads[@]}" | median) KiB (runs: ${overheads[*]} KiB)"
echo "  of which private (RssAnon − guest-touched RAM): median $(printf '%s\n' "${privates[@]}" | median) KiB; the rest is file-backed text and data of the binary and libc"

echo "== virtio-blk sequential throughput: ${total_mib} MiB in ${request_kib} KiB requests, $depth per notify, $runs runs"
disk="$work/disk.img"
total=$(( total_mib * 1024 * 1024 ))
request=$(( request_kib * 1024 ))
mbps() { awk -v b="$total" -v ns="$1" 'BEGIN { printf "%.0f", b / 1048576 / (ns / 1e9) }'; }
ratio() { awk -v g="$1" -v r="$2" 'BEGIN { printf "%.2f", r / g }'; }
gw=(); gr=(); rw=(); rr=(); wratio=(); rratio=()
for _ in $(seq "$runs"); do
    rm -f "$disk" && truncate -s "$total" "$disk"
    out="$("$vmrun" --guest "$guest" --workload 6 --memory 128 --disk "$disk" --arguments "$total" "$request" "$depth" --report --raw-baseline)"
    marker() { awk -v c="$1" '$1 == "marker" && $2 == c { print $6; exit }' <<<"$out"; }
    guest_write_ns=$(( $(marker 17) - $(marker 16) ))
    guest_read_ns=$(( $(marker 19) - $(marker 18) ))
    raw_write_ns="$(awk '$1 == "raw_write_ns" { print $2 }' <<<"$out")"
    raw_read_ns="$(awk '$1 == "raw_read_ns" { print $2 }' <<<"$out")"
    gw+=("$(mbps "$guest_write_ns")"); rw+=("$(mbps "$raw_write_ns")"); wratio+=("$(ratio "$guest_write_ns" "$raw_write_ns")")
    gr+=("$(mbps "$guest_read_ns")"); rr+=("$(mbps "$raw_read_ns")"); rratio+=("$(ratio "$guest_read_ns" "$raw_read_ns")")
done
echo "write+flush MiB/s: guest ${gw[*]}; raw file ${rw[*]}; ratio median $(printf '%s\n' "${wratio[@]}" | median) (${wratio[*]})"
echo "read MiB/s:        guest ${gr[*]}; raw file ${rr[*]}; ratio median $(printf '%s\n' "${rratio[@]}" | median) (${rratio[*]})"
