#!/usr/bin/env bash
# Benchmark (not a test): VMFSCore sequential 1 MiB write/read and 4 KiB random read, against fio on
# a raw image file on the same filesystem, in the same run. Both use O_DIRECT at queue depth 1.
#   SIZE=2G BENCH_DIR=/var/tmp/vmfs-bench Tools/scripts/bench-core.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${SIZE:-2G}
RANDOM_SECONDS=${RANDOM_SECONDS:-10}
DIR=${BENCH_DIR:-/var/tmp/vmfs-bench}
Tools/scripts/setup.sh
mkdir -p "$DIR"
for product in vmfs-bench mkfs.vmfs; do swift build -c release --product "$product" >/dev/null; done
BIN=$(swift build -c release --show-bin-path)

fio_bw() { python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; d=j["write"] if j["write"]["bw_bytes"]>0 else j["read"]; print("%.1f %.1f" % (d["bw_bytes"]/1e6, d["iops"]))'; }

raw="$DIR/raw.img"
common=(--filename="$raw" --size="$SIZE" --direct=1 --ioengine=psync --iodepth=1 --output-format=json --name=bench)
max() { python3 -c "print(max($1, $2))"; }
raw_pass() {  # one pass of the raw measurements; the better of two passes (before and after vmfs) is kept
    rm -f "$raw"
    read -r w _ < <(fio "${common[@]}" --rw=write --bs=1M --end_fsync=1 | fio_bw)
    read -r o _ < <(fio "${common[@]}" --rw=write --bs=1M --end_fsync=1 | fio_bw)
    read -r r _ < <(fio "${common[@]}" --rw=read --bs=1M | fio_bw)
    read -r _ i < <(fio "${common[@]}" --rw=randread --bs=4k --time_based --runtime="$RANDOM_SECONDS" | fio_bw)
    rm -f "$raw"
    raw_write=$(max "${raw_write:-0}" "$w"); raw_over=$(max "${raw_over:-0}" "$o"); raw_read=$(max "${raw_read:-0}" "$r"); raw_rand_iops=$(max "${raw_rand_iops:-0}" "$i")
}
raw_pass

volume="$DIR/volume.img"
rm -f "$volume"
"$BIN/mkfs.vmfs" --size 64G --label bench "$volume" >/dev/null
out=$("$BIN/vmfs-bench" core --volume "$volume" --size "$SIZE" --random-seconds "$RANDOM_SECONDS")
rm -f "$volume"
raw_pass
value() { echo "$out" | awk -v name="$1" -v key="$2" '$1=="RESULT" && $2==name { for (i=3;i<=NF;i++) { split($i,kv,"="); if (kv[1]==key) print kv[2] } }'; }
v_write=$(value seq-write MBps); v_over=$(value seq-overwrite MBps); v_read=$(value seq-read MBps)
v_rand_iops=$(value rand-read-4k IOPS); v_p50=$(value rand-read-4k p50_us); v_p99=$(value rand-read-4k p99_us)
ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
echo "VMFSCore vs raw image file (fio, O_DIRECT, QD1; raw = better of a pass before and after), $SIZE, $(date -u +%F)"
printf '%-34s %12s %12s %8s\n' "test" "raw" "vmfs" "ratio"
printf '%-34s %10s MB/s %7s MB/s %8s\n' "seq write 1 MiB (new file/blocks)" "$raw_write" "$v_write" "$(ratio "$v_write" "$raw_write")"
printf '%-34s %10s MB/s %7s MB/s %8s\n' "seq write 1 MiB (overwrite)" "$raw_over" "$v_over" "$(ratio "$v_over" "$raw_over")"
printf '%-34s %10s MB/s %7s MB/s %8s\n' "seq read 1 MiB" "$raw_read" "$v_read" "$(ratio "$v_read" "$raw_read")"
printf '%-34s %10s IOPS %7s IOPS %8s\n' "random read 4 KiB" "$raw_rand_iops" "$v_rand_iops" "$(ratio "$v_rand_iops" "$raw_rand_iops")"
echo "vmfs random read latency: p50 ${v_p50} us, p99 ${v_p99} us"
