#!/usr/bin/env bash
# Benchmark (not a test): VMFS on an iSCSI LUN served by a tgtd of this script's own, on loopback.
#   - lock acquire + release latency (median, p99) per atomic update method (ats, scsi2, paxos);
#   - 8-host hand-off rate per method (8 host processes, each its own iSCSI session, one counter);
#   - sequential 1 MiB reads and random 4 KiB reads at queue depth 1 through VMFSCore, as a ratio
#     to libiscsi's own iscsi-perf with the same transfer size and depth against the same target,
#     measured in the same run. (Debian's libiscsi-bin has iscsi-perf but no iscsi-dd, and
#     iscsi-perf only reads, so writes have no baseline here.)
# Environment: BENCH_DIR (scratch, default /var/tmp/vmfs-bench-iscsi), SECONDS_PER_RUN (default 10),
# BUILD_PATH (a separate SwiftPM scratch path for the release build, default .build).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${BENCH_DIR:-/var/tmp/vmfs-bench-iscsi}
RUN=${SECONDS_PER_RUN:-10}
Tools/scripts/setup.sh
mkdir -p "$DIR"
build=(swift build -c release ${BUILD_PATH:+--scratch-path "$BUILD_PATH"})
for product in vmfs-bench mkfs.vmfs vmfs-testhost; do "${build[@]}" --product "$product" >/dev/null; done
BIN=$("${build[@]}" --show-bin-path)
value() { awk -v name="$2" -v key="$3" '$1=="RESULT" && $2==name { for (i=3;i<=NF;i++) { split($i,kv,"="); if (kv[1]==key) print kv[2] } }' <<<"$1"; }
field() { tr ' ' '\n' <<<"$1" | awk -F= -v key="$2" '$1==key { print $2 }'; }

# A tgtd of our own on a free loopback port; one 8 GiB thin LUN backed by a sparse file.
control=$((20000 + RANDOM % 10000))
port=$((30000 + RANDOM % 10000))
iqn=iqn.2026-11.org.vmfs-sw.bench:lun
image="$DIR/lun.img"
rm -f "$image"
truncate -s 8G "$image"
/usr/sbin/tgtd -f -C "$control" --iscsi "portal=127.0.0.1:$port" >"$DIR/tgtd.log" 2>&1 &
tgtd=$!
# istgt for ATS: tgt does not execute COMPARE AND WRITE. One 8 GiB LUN 0 on loopback.
istgt_port=$((40000 + RANDOM % 10000))
istgt_image="$DIR/istgt-lun.img"
rm -f "$istgt_image"
truncate -s 8G "$istgt_image"
: >"$DIR/istgt-auth.conf"
cat >"$DIR/istgt.conf" <<EOF
[Global]
  NodeBase "iqn.2026-11.org.vmfs-sw.bench"
  PidFile $DIR/istgt.pid
  AuthFile $DIR/istgt-auth.conf
  MediaDirectory $DIR
  DiscoveryAuthMethod None
  MaxSessions 64
  MaxConnections 4
  MaxR2T 32
  MaxOutstandingR2T 16
  FirstBurstLength 262144
  MaxBurstLength 1048576
  MaxRecvDataSegmentLength 262144
  InitialR2T Yes
  ImmediateData Yes
[UnitControl]
  AuthMethod None
  Portal UC1 127.0.0.1:$((istgt_port + 1))
  Netmask 127.0.0.1
[PortalGroup1]
  Portal DA1 127.0.0.1:$istgt_port
[InitiatorGroup1]
  InitiatorName "ALL"
  Netmask 127.0.0.0/8
[LogicalUnit1]
  TargetName ats
  Mapping PortalGroup1 InitiatorGroup1
  AuthMethod None
  UnitType Disk
  QueueDepth 32
  LUN0 Storage $istgt_image 8192MB
EOF
/usr/sbin/istgt -c "$DIR/istgt.conf" -D -q >"$DIR/istgt.log" 2>&1 &
istgt=$!
cleanup() {
    kill -KILL "$tgtd" "$istgt" 2>/dev/null || true  # tgtd ignores SIGTERM while it has sessions
    wait "$tgtd" "$istgt" 2>/dev/null || true
    rm -f "/var/run/tgtd/socket.$control"*
}
trap cleanup EXIT
admin() { /usr/sbin/tgtadm -C "$control" --lld iscsi "$@"; }
for _ in $(seq 100); do admin --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
admin --op new --mode target --tid 1 -T "$iqn"
admin --op new --mode logicalunit --tid 1 --lun 1 -b "$image"
admin --op bind --mode target --tid 1 -I ALL
url="iscsi://127.0.0.1:$port/$iqn/1"
# One timing for every method: Disk Paxos needs D >= 3T + 2H, which VMware's 3 s / 16 s / 8 s is not.
timing=(--heartbeat-interval 1000 --dead-interval 8000 --io-timeout 2000)
ats_url="iscsi://127.0.0.1:$istgt_port/iqn.2026-11.org.vmfs-sw.bench:ats/0"
for _ in $(seq 100); do iscsi-inq "$ats_url" >/dev/null 2>&1 && break; sleep 0.1; done
echo "Targets on loopback: tgtd $(/usr/sbin/tgtd --version 2>/dev/null || true) (scsi2, paxos, throughput), istgt (ats); LUNs of 8 GiB on sparse files"

for method in ats scsi2 paxos; do
    lun=$url
    [[ $method == ats ]] && lun=$ats_url
    "$BIN/mkfs.vmfs" --force --atomic-update "$method" --journal-size 1M "${timing[@]}" "$lun" >"$DIR/mkfs-$method.out"
    out=$("$BIN/vmfs-testhost" lock-bench "$lun" --host-id "bench-$method" --iterations 500)
    echo "[$method] lock acquire+release (open + close read-write), 500 cycles, one host:" \
         "median $(field "$out" median_us) us, p99 $(field "$out" p99_us) us," \
         "$(field "$out" reads_per_cycle) sector reads and $(field "$out" atomic_updates_per_cycle) atomic updates per cycle"
    start=$(date +%s%N)
    pids=()
    for i in $(seq 0 7); do
        "$BIN/vmfs-testhost" counter "$lun" --host-id "bench-$method-$i" --file lockbench --increments 30 >"$DIR/counter-$method-$i.out" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    end=$(date +%s%N)
    # lock-bench left "lockbench" empty (0); the largest value any host wrote is the final count.
    count=$(grep -ho 'last_value=[0-9]*' "$DIR"/counter-"$method"-*.out | cut -d= -f2 | sort -n | tail -1)
    elapsed_ms=$(((end - start) / 1000000))
    echo "[$method] 8 hosts x 30 increments under one lock: count $count (expected 240), ${elapsed_ms} ms," \
         "$(python3 -c "print('%.1f' % (240 / ($elapsed_ms / 1000)))") hand-offs/s (process start-up and mount included)"
done

# Throughput: VMFSCore (a file on the volume) against iscsi-perf (the raw LUN), same target, same run.
# iscsi-perf prints "iops average N" every second; it runs until interrupted.
perf() {  # $1 = label, rest = iscsi-perf flags; prints bytes/s from the last average
    local blocks=$2
    local line
    line=$(timeout -s INT "$RUN" iscsi-perf "${@:3}" -b "$blocks" "$url" 2>&1 | tr '\r' '\n' | grep -o 'iops average [0-9]*' | tail -1 || true)
    local iops=${line##* }
    python3 -c "print(${iops:-0} * $blocks * 512)"
}
"$BIN/mkfs.vmfs" --force --atomic-update paxos --journal-size 1M "${timing[@]}" "$url" >/dev/null
core=$("$BIN/vmfs-bench" core --volume "$url" --size 2G --random-seconds "$RUN")
vmfs_seq=$(python3 -c "print($(value "$core" seq-read MBps) * 1e6)")
vmfs_rand=$(python3 -c "print($(value "$core" rand-read-4k IOPS) * 4096)")
# The LUN's first GiBs now hold the file just read, so iscsi-perf reads allocated data as VMFSCore did.
raw_seq=$(perf seq 2048 -m 1)
raw_rand=$(perf rand 8 -m 1 -r)
ratio() { python3 -c "print('%.2f' % ($1 / $2) if $2 > 0 else 'n/a')"; }
mb() { python3 -c "print('%.1f' % ($1 / 1e6))"; }
echo "VMFSCore on the LUN: seq write $(value "$core" seq-write MBps) MB/s, overwrite $(value "$core" seq-overwrite MBps) MB/s," \
     "seq read $(mb "$vmfs_seq") MB/s, random 4 KiB read $(value "$core" rand-read-4k IOPS) IOPS" \
     "(p50 $(value "$core" rand-read-4k p50_us) us, p99 $(value "$core" rand-read-4k p99_us) us)"
echo "iscsi-perf on the same LUN: seq read 1 MiB QD1 $(mb "$raw_seq") MB/s, random 4 KiB QD1 $(mb "$raw_rand") MB/s"
echo "Ratio VMFSCore / iscsi-perf: sequential read $(ratio "$vmfs_seq" "$raw_seq"), random 4 KiB read $(ratio "$vmfs_rand" "$raw_rand") (goal >= 0.9)"
