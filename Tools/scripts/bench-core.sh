#!/usr/bin/env bash
# Benchmark (not a test): VMFSCore sequential 1 MiB write/read and 4 KiB random read, against fio on
# a raw image file on the same filesystem, in the same run. Both use O_DIRECT at queue depth 1.
# The virtual disks of these machines are noisy, so raw and VMFS runs alternate for ROUNDS rounds
# and medians are compared.
#   SIZE=2G ROUNDS=3 BENCH_DIR=/var/tmp/vmfs-bench Tools/scripts/bench-core.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE=${SIZE:-2G}
ROUNDS=${ROUNDS:-3}
RANDOM_SECONDS=${RANDOM_SECONDS:-5}
DIR=${BENCH_DIR:-/var/tmp/vmfs-bench}
Tools/scripts/setup.sh
mkdir -p "$DIR"
for product in vmfs-bench mkfs.vmfs; do swift build -c release --product "$product" >/dev/null; done
BIN=$(swift build -c release --show-bin-path)

fio_bw() { python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; d=j["write"] if j["write"]["bw_bytes"]>0 else j["read"]; print("%.1f %.1f" % (d["bw_bytes"]/1e6, d["iops"]))'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
value() { awk -v name="$2" -v key="$3" '$1=="RESULT" && $2==name { for (i=3;i<=NF;i++) { split($i,kv,"="); if (kv[1]==key) print kv[2] } }' <<<"$1"; }

raw="$DIR/raw.img"
volume="$DIR/volume.img"
common=(--filename="$raw" --size="$SIZE" --direct=1 --ioengine=psync --iodepth=1 --output-format=json --name=bench)
rw=(); ro=(); rr=(); ri=(); vw=(); vo=(); vr=(); vi=(); p50=(); p99=()
for round in $(seq "$ROUNDS"); do
    rm -f "$raw"
    read -r w _ < <(fio "${common[@]}" --rw=write --bs=1M --end_fsync=1 | fio_bw)
    read -r o _ < <(fio "${common[@]}" --rw=write --bs=1M --end_fsync=1 | fio_bw)
    read -r r _ < <(fio "${common[@]}" --rw=read --bs=1M | fio_bw)
    read -r _ i < <(fio "${common[@]}" --rw=randread --bs=4k --time_based --runtime="$RANDOM_SECONDS" | fio_bw)
    rm -f "$raw"
    rw+=("$w"); ro+=("$o"); rr+=("$r"); ri+=("$i")
    rm -f "$volume"
    "$BIN/mkfs.vmfs" --size 64G --label bench "$volume" >/dev/null
    out=$("$BIN/vmfs-bench" core --volume "$volume" --size "$SIZE" --random-seconds "$RANDOM_SECONDS")
    rm -f "$volume"
    vw+=("$(value "$out" seq-write MBps)"); vo+=("$(value "$out" seq-overwrite MBps)"); vr+=("$(value "$out" seq-read MBps)")
    vi+=("$(value "$out" rand-read-4k IOPS)"); p50+=("$(value "$out" rand-read-4k p50_us)"); p99+=("$(value "$out" rand-read-4k p99_us)")
done
m() { printf '%s\n' "$@" | median; }
ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
row() { printf '%-34s %10s %-4s %10s %-4s %6s   (raw: %s; vmfs: %s)\n' "$1" "$(m $2)" "$4" "$(m $3)" "$4" "$(ratio "$(m $3)" "$(m $2)")" "$2" "$3"; }
echo "VMFSCore vs raw image file (fio), O_DIRECT, QD1, $SIZE, medians of $ROUNDS alternating rounds, $(date -u +%F)"
printf '%-34s %15s %15s %6s\n' "test" "raw" "vmfs" "ratio"
row "seq write 1 MiB (new blocks)" "${rw[*]}" "${vw[*]}" "MB/s"
row "seq write 1 MiB (overwrite)" "${ro[*]}" "${vo[*]}" "MB/s"
row "seq read 1 MiB" "${rr[*]}" "${vr[*]}" "MB/s"
row "random read 4 KiB" "${ri[*]}" "${vi[*]}" "IOPS"
echo "vmfs random read latency: p50 $(m "${p50[@]}") us, p99 $(m "${p99[@]}") us"
