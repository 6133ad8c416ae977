#!/usr/bin/env bash
# Namespace soak: hours of the namespace stress checker (Tests/FuseTests/Helpers/nscheck.c)
# against one volume mounted by two vmfs-fuse hosts, with hosts and daemons SIGKILLed at random.
#
#   Tools/scripts/soak-namespace.sh [-d minutes] [-o operations per round] [-p workers per host]
#                                   [-k percent of rounds with a kill] [-w work directory]
#
# Every round: mount hosts A and B, run the checker (create, open-for-write, write, truncate,
# fsync, fchmod/futimens, close, read, stat, readdir, rename with replace/noreplace/exchange,
# unlink, including of open files) with PROCS workers per host. In a round with a kill, the
# checker SIGKILLs one host's daemon after a random time, half of the time with that host's
# workers (a host crash), otherwise alone (a daemon crash under running processes); the other
# host goes on, waits out the dead interval and recovers the dead one. The killed host is then
# mounted again with the same identity (it replays its own journal if nobody has yet), the
# checker verifies every surviving file through both mounts (files the killed workers owned
# may keep any consistent prefix of what was written since their last fsync). Then both hosts
# unmount and `fsck.vmfs -n` must find the volume clean. The volume carries over from round to
# round, and so do the files and the model of their contents.
#
# Stops at the first failure, keeping the work directory (image, daemon logs, checker output).
# Prints rounds, operations, kills and the time taken.
set -euo pipefail

minutes=60
operations=5000
workers=4
kill_percent=50
work=""
while getopts "d:o:p:k:w:" option; do
    case "$option" in
        d) minutes=$OPTARG ;;
        o) operations=$OPTARG ;;
        p) workers=$OPTARG ;;
        k) kill_percent=$OPTARG ;;
        w) work=$OPTARG ;;
        *) sed -n '2,22p' "$0"; exit 2 ;;
    esac
done

cd "$(dirname "$0")/../.."
root=$(pwd)
[[ $(id -u) == 0 && -e /dev/fuse ]] || { echo "soak-namespace: needs root and /dev/fuse" >&2; exit 2; }
work=${work:-$(mktemp -d /var/tmp/vmfs-soak-namespace.XXXXXX)}
mkdir -p "$work/a" "$work/b" "$work/bin"
# A copy of the binaries: a rebuild of the work tree during the soak does not change them.
for product in vmfs-fuse mkfs.vmfs fsck.vmfs; do swift build --product "$product" >/dev/null; done
cp "$(swift build --show-bin-path)"/{vmfs-fuse,mkfs.vmfs,fsck.vmfs} "$work/bin/"
bin="$work/bin"
cc -O2 -Wall -Werror -o "$work/nscheck" "$root/Tests/FuseTests/Helpers/nscheck.c" -lpthread
image="$work/volume.img"
model="$work/model"
log="$work/soak.log"
rm -f "$image" "$model"
# Short heartbeat timing, so that a killed host is declared dead (and recovered) in 2 s.
"$bin/mkfs.vmfs" --size 8G --journal-size 4M --heartbeat-interval 200 --dead-interval 2000 --io-timeout 600 "$image" >/dev/null

declare -A daemon
mount_host() {  # host directory
    local host=$1
    "$bin/vmfs-fuse" -f -o "auto_unmount,host_id=$host,lock_wait_ms=200" "$image" "$work/$host" 2>>"$work/vmfs-fuse-$host.log" &
    daemon[$host]=$!
    for _ in $(seq 150); do mountpoint -q "$work/$host" && return 0; sleep 0.1; done
    echo "soak-namespace: host $host did not mount" >&2
    return 1
}

unmount_host() {  # host
    local host=$1
    if mountpoint -q "$work/$host"; then fusermount3 -u "$work/$host" || fusermount3 -u -z "$work/$host"; fi
    wait "${daemon[$host]}" 2>/dev/null || true
}

# After a kill: the dead daemon's mount point is gone or disconnected; clean it up.
bury_host() {  # host
    local host=$1
    wait "${daemon[$host]}" 2>/dev/null || true
    fusermount3 -u -z "$work/$host" 2>/dev/null || true
    for _ in $(seq 50); do mountpoint -q "$work/$host" || return 0; sleep 0.1; done
}

failed() {
    echo "soak-namespace: FAILED in round $round: $1 (work directory $work kept)" | tee -a "$log" >&2
    for host in a b; do unmount_host "$host" || true; done
    exit 1
}

started=$(date +%s)
deadline=$((started + minutes * 60))
round=0
total_operations=0
kills=0
echo "soak-namespace: $minutes min, $operations operations per round, $workers workers per host; work directory $work" | tee "$log"
while (( $(date +%s) < deadline )); do
    round=$((round + 1))
    seed=$((RANDOM * 32768 + RANDOM))
    mount_host a || failed "mount A"
    mount_host b || failed "mount B"
    kill_args=()
    if (( RANDOM % 100 < kill_percent )); then
        # The checker needs a few seconds for a round; kill somewhere in the first half.
        kill_args=(-k $((1000 + RANDOM % 4000)) -P "${daemon[a]},${daemon[b]}")
    fi
    set +e
    "$work/nscheck" run -q -m "$model" -S "$seed" -N "$operations" -p "$workers" -L 262144 -D 100 \
        "${kill_args[@]}" "$work/a" "$work/b" >"$work/round.out" 2>&1
    status=$?
    set -e
    cat "$work/round.out" >>"$log"
    done_operations=$(sed -n 's/^\(OK\|KILLED after\) \([0-9]*\) operations.*/\2/p' "$work/round.out" | head -1)
    total_operations=$((total_operations + ${done_operations:-0}))
    if (( status == 3 )); then
        kills=$((kills + 1))
        for host in a b; do
            if ! kill -0 "${daemon[$host]}" 2>/dev/null; then
                bury_host "$host"
                mount_host "$host" || failed "remount of killed host $host"
            fi
        done
        "$work/nscheck" verify -q -m "$model" "$work/a" "$work/b" >>"$log" 2>&1 || failed "verify after the kill (seed $seed)"
    elif (( status != 0 )); then
        failed "checker (seed $seed): $(tail -5 "$work/round.out")"
    fi
    unmount_host a
    unmount_host b
    if ! "$bin/fsck.vmfs" -n "$image" >"$work/fsck.out" 2>&1; then
        cat "$work/fsck.out" >>"$log"
        failed "fsck.vmfs -n: $(tail -3 "$work/fsck.out")"
    fi
    echo "round $round: seed $seed, ${done_operations:-0} operations$([[ $status == 3 ]] && echo ", host killed"); $(tail -1 "$work/fsck.out")" >>"$log"
done
elapsed=$(( $(date +%s) - started ))
echo "soak-namespace: OK: $round rounds, $total_operations operations, $kills hosts or daemons killed, $elapsed s" | tee -a "$log"
