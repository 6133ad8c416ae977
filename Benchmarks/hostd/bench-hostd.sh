#!/usr/bin/env bash
# Benchmarks of the host agent (issue "host agent"), release builds, on this machine:
#  1. guest virtio-blk through the agent's disk channel vs fio on a raw file of the same filesystem
#     (same request sizes and queue depths): sequential 1 MiB write+flush and read, random 4 KiB
#     read and write;
#  2. API latency of GET /v1/vms with 200 VMs registered across 4 volumes (p50/p99);
#  3. power-on latency through the API: request -> first guest instruction;
#  4. vmhostd resident memory with 0 and 50 running (idle) VMs.
# Usage: Benchmarks/hostd/bench-hostd.sh [WORKDIR]   (default /tmp/bench-hostd; needs root, /dev/kvm, fio)
#        BENCH_DISK_ONLY=1 runs part 1 alone.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-/tmp/bench-hostd}"
cd "$root"
Tools/scripts/build-guest.sh --test-guest-only >/dev/null
for product in vmhostd vmx vmctl vmfs mkfs.vmfs; do
    swift build -c release --product "$product" > /tmp/bench-hostd-build.log 2>&1 || { grep -E "error" /tmp/bench-hostd-build.log | head -20; exit 1; }
done
bin="$(swift build -c release --show-bin-path)"
guest="$root/.cache/guest/testguest.elf"
bench="python3 $root/Benchmarks/hostd/hostd_bench.py"

rm -rf "$work"; mkdir -p "$work"
cleanup() { pkill -f "vmhostd --config $work" 2>/dev/null || true; sleep 1; pkill -9 -f "$work" 2>/dev/null || true; }
trap cleanup EXIT
volumes=(ds1 ds2 ds3 ds4)
for v in "${volumes[@]}"; do
    "$bin/mkfs.vmfs" --size 16G --label "$v" "$work/$v.img" >/dev/null
    "$bin/vmfs" put --host-id uploader "$work/$v.img" "$guest" guest.elf
done
{
    echo '[host]'; echo 'id = "bench01"'; echo "state_directory = \"$work/state\""; echo "run_directory = \"$work/run\""
    echo "vmx = \"$bin/vmx\""
    for v in "${volumes[@]}"; do echo '[[volume]]'; echo "name = \"$v\""; echo "device = \"$work/$v.img\""; done
} > "$work/hostd.toml"
"$bin/vmhostd" --config "$work/hostd.toml" > "$work/hostd.log" 2>&1 &
socket="$work/run/hostd.sock"
for _ in $(seq 100); do [[ -S "$socket" ]] && break; sleep 0.1; done
api() { curl -sf --unix-socket "$socket" -X "$1" -H 'Content-Type: application/json' "http://agent$2" ${3:+-d "$3"}; }
wait_task() { local id; id="$(sed -n 's/.*"id" *: *"\(task-[0-9]*\)".*/\1/p' | head -1)"
    until api GET "/v1/tasks/$id?waitSeconds=30" | grep -q '"state" : "success"'; do
        api GET "/v1/tasks/$id" | grep -q '"state" : "error"' && { api GET "/v1/tasks/$id" >&2; exit 1; }; done; }
create() { # NAME VOLUME WORKLOAD ARGS DISK_BYTES
    api POST /v1/vms "{\"volume\":\"$2\",\"name\":\"$1\",\"vcpus\":1,\"memoryBytes\":67108864,\"diskBytes\":[$5],\"boot\":{\"type\":\"testGuest\",\"image\":\"guest.elf\",\"workload\":\"$3\",\"arguments\":[$4]}}" | wait_task
}
set_workload() { # NAME VOLUME WORKLOAD ARGS(comma separated)
    api GET "/v1/volumes/$2/files/$1.vmx" | sed "s/^testguest.workload = .*/testguest.workload = \"$3\"/; s/^testguest.args = .*/testguest.args = \"$4\"/" > "$work/$1.vmx"
    curl -sf --unix-socket "$socket" -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$work/$1.vmx" "http://agent/v1/volumes/$2/files/$1.vmx?replace=true" >/dev/null
}
mbps() { python3 -c "print(f'{$1 / ($2 / 1e9) / 1e6:.0f}')"; }
iops() { python3 -c "print(f'{$1 / ($2 / 1e9):.0f}')"; }

echo "== 1. guest disk through the agent vs fio on a raw file (same filesystem) =="
gib=$((1 << 30)); requests=20000
create disk ds1 diskThroughput "$gib,1048576,8" "$gib"
seq_write_ns=$($bench "$socket" disk disk 0x10 0x11)
set_workload disk ds1 diskThroughput "$gib,1048576,8"
seq_read_ns=$($bench "$socket" disk disk 0x12 0x13)
set_workload disk ds1 diskRandom "$requests,4096,16,7,0"
rand_read_ns=$($bench "$socket" disk disk 0x14 0x15)
set_workload disk ds1 diskRandom "$requests,4096,16,7,1"
rand_write_ns=$($bench "$socket" disk disk 0x14 0x15)
raw="$work/raw.img"
fio_bw() { fio --name=raw --filename="$raw" --size=1G --direct=1 --ioengine=libaio --output-format=json "$@" \
    | python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print(j['write']['bw_bytes'] or j['read']['bw_bytes'])"; }
fio_iops() { fio --name=raw --filename="$raw" --size=1G --direct=1 --ioengine=libaio --output-format=json "$@" \
    | python3 -c "import json,sys; j=json.load(sys.stdin)['jobs'][0]; print(int(j['write']['iops'] or j['read']['iops']))"; }
raw_seq_write=$(fio_bw --rw=write --bs=1M --iodepth=8 --end_fsync=1)
raw_seq_read=$(fio_bw --rw=read --bs=1M --iodepth=8)
raw_rand_read=$(fio_iops --rw=randread --bs=4k --iodepth=16 --number_ios=$requests)
raw_rand_write=$(fio_iops --rw=randwrite --bs=4k --iodepth=16 --number_ios=$requests)
g_sw=$(mbps $gib "$seq_write_ns"); g_sr=$(mbps $gib "$seq_read_ns")
g_rr=$(iops $requests "$rand_read_ns"); g_rw=$(iops $requests "$rand_write_ns")
r_sw=$((raw_seq_write / 1000000)); r_sr=$((raw_seq_read / 1000000))
printf "%-34s %12s %12s %8s\n" test raw guest ratio
printf "%-34s %9s MB/s %7s MB/s %8s\n" "sequential write 1 MiB, QD8 +flush" "$r_sw" "$g_sw" "$(python3 -c "print(f'{$g_sw/$r_sw:.2f}')")"
printf "%-34s %9s MB/s %7s MB/s %8s\n" "sequential read 1 MiB, QD8" "$r_sr" "$g_sr" "$(python3 -c "print(f'{$g_sr/$r_sr:.2f}')")"
printf "%-34s %8s IOPS %7s IOPS %8s\n" "random read 4 KiB, QD16" "$raw_rand_read" "$g_rr" "$(python3 -c "print(f'{$g_rr/$raw_rand_read:.2f}')")"
printf "%-34s %8s IOPS %7s IOPS %8s\n" "random write 4 KiB, QD16" "$raw_rand_write" "$g_rw" "$(python3 -c "print(f'{$g_rw/$raw_rand_write:.2f}')")"

[[ ${BENCH_DISK_ONLY:-0} == 1 ]] && exit 0
echo "== 2/4. 200 registered VMs across 4 volumes; agent memory =="
echo "vmhostd resident with 1 VM registered, none running: $($bench "$socket" rss) MiB"
for v in "${volumes[@]}"; do
    for i in $(seq 1 50); do create "idle-$v-$i" "$v" idle "" 1048576 >/dev/null; done
done
echo "vmhostd resident with 201 VMs registered, none running: $($bench "$socket" rss) MiB"
$bench "$socket" list-latency 300
echo "== 3. power-on latency =="
$bench "$socket" power-on-latency idle-ds2-1 10
echo "== 4. 50 running VMs =="
for i in $(seq 1 50); do api POST "/v1/vms/idle-ds$(( (i - 1) % 4 + 1 ))-$(( (i - 1) / 4 + 1 ))/power-on" | wait_task; done
sleep 2
echo "vmhostd resident with 50 VMs running: $($bench "$socket" rss) MiB"
$bench "$socket" list-latency 300
