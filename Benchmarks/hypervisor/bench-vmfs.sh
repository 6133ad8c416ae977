#!/usr/bin/env bash
# Hypervisor benchmark with the VM on a VMFS volume (not a test): `vmctl run` from process start to
# the guest's first instruction (includes joining the volume and taking the VM's locks), VMM memory
# beyond guest RAM, and guest virtio-blk sequential throughput on a thin VMFS disk as a ratio to the
# raw device: fio with O_DIRECT, the same request size, queue depth 1, on a file of the same
# filesystem, measured in the same run (VMFS uses O_DIRECT on its device too).
# Usage: Benchmarks/hypervisor/bench-vmfs.sh [total-MiB] [request-KiB] [requests-per-notify]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
total_mib="${1:-512}"
request_kib="${2:-1024}"
depth="${3:-32}"
runs=5
Tools/scripts/setup.sh
Tools/scripts/build-guest.sh --test-guest-only >/dev/null
# Static Swift runtime, as deployed (see bench.sh).
build=(-c release --static-swift-stdlib --build-path .build/static)
for product in vmctl vm-run mkfs.vmfs; do swift build "${build[@]}" --product "$product" >/dev/null; done
bin="$(swift build "${build[@]}" --show-bin-path)"
guest=".cache/guest/testguest.elf"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/hv-vmfs-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
lun="$work/lun.img"
"$bin/mkfs.vmfs" --size 16G "$lun" >/dev/null
total=$(( total_mib * 1024 * 1024 ))
request=$(( request_kib * 1024 ))
"$bin/vmctl" create --volume "$lun" --name hello --memory 64M --disk 64M --guest "$guest" --workload hello >/dev/null
"$bin/vmctl" create --volume "$lun" --name disk --memory 128M --disk "${total_mib}M" --guest "$guest" --workload diskThroughput \
    --args "$total,$request,$depth" >/dev/null

echo "== vmctl run (VM on VMFS): process start to first guest instruction, 1 vCPU, 64 MiB, $runs runs"
starts=(); overheads=()
for _ in $(seq "$runs"); do
    launched="$(date +%s%N)"
    out="$("$bin/vmctl" run --volume "$lun" --quiet --report hello)"
    first="$(awk '$1 == "marker" && $2 == 1 { print $8; exit }' <<<"$out")"
    starts+=($(( (first - launched) / 1000 )))
    rss="$(awk '$1 == "vmm_vmrss_bytes" { print $2 }' <<<"$out")"
    overheads+=($(( rss / 1024 )))
done
echo "start→first instruction: median $(printf '%s\n' "${starts[@]}" | median) µs (runs: ${starts[*]} µs)"
echo "vmctl VmRSS (guest touches < 1 MiB of its 64 MiB): median $(printf '%s\n' "${overheads[@]}" | median) KiB"

echo "== virtio-blk on a thin VMFS disk: ${total_mib} MiB in ${request_kib} KiB requests, $depth per notify, $runs runs"
mbps() { awk -v b="$total" -v ns="$1" 'BEGIN { printf "%.0f", b / 1048576 / (ns / 1e9) }'; }
ratio() { awk -v g="$1" -v r="$2" 'BEGIN { printf "%.2f", r / g }'; }
wr=(); rd=(); wratio=(); rratio=()
for _ in $(seq "$runs"); do
    raw="$work/raw.img"; rm -f "$raw"
    fio_ns() { python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; d=j["write"] if j["write"]["io_bytes"]>0 else j["read"]; print(int(d["runtime"])*1000000)'; }
    common=(--name=raw --filename="$raw" --size="$total" --bs="${request_kib}k" --direct=1 --ioengine=psync --output-format=json)
    raw_write_ns="$(fio "${common[@]}" --rw=write --end_fsync=1 | fio_ns)"
    raw_read_ns="$(fio "${common[@]}" --rw=read | fio_ns)"
    rm -f "$raw"
    out="$("$bin/vmctl" run --volume "$lun" --quiet --report disk)"
    marker() { awk -v c="$1" '$1 == "marker" && $2 == c { print $6; exit }' <<<"$out"; }
    write_ns=$(( $(marker 17) - $(marker 16) )); read_ns=$(( $(marker 19) - $(marker 18) ))
    wr+=("$(mbps "$write_ns")/$(mbps "$raw_write_ns")"); rd+=("$(mbps "$read_ns")/$(mbps "$raw_read_ns")")
    wratio+=("$(ratio "$write_ns" "$raw_write_ns")"); rratio+=("$(ratio "$read_ns" "$raw_read_ns")")
done
echo "write+flush MiB/s guest-on-VMFS/raw: ${wr[*]}; ratio median $(printf '%s\n' "${wratio[@]}" | median) (${wratio[*]})"
echo "read MiB/s guest-on-VMFS/raw:        ${rd[*]}; ratio median $(printf '%s\n' "${rratio[@]}" | median) (${rratio[*]})"
