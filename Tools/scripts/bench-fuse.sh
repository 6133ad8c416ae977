#!/usr/bin/env bash
# bench-fuse.sh — fio throughput of vmfs-fuse against libfuse's own passthrough_ll example and
# against the raw backing filesystem, in one run, with ratios vmfs-fuse / passthrough_ll.
#
#   Tools/scripts/bench-fuse.sh [--size 4G] [--runtime 10] [--repeat 3] [--modes "buffered direct"]
#                               [--scratch /var/tmp] [--vmfs-options OPTS] [--keep]
#
# Targets (all on the same backing filesystem, the one holding --scratch):
#   raw             a file on the backing filesystem itself
#   passthrough_ll  /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c, built here into the
#                   scratch directory (multi-threaded, clone_fd), exporting a backing directory
#   vmfs-fuse       a release build of vmfs-fuse on a VMFS image file (its data goes to the image
#                   with O_DIRECT)
# Tests (fio, one job): sequential 1 MiB write (overwrite of a laid-out file) and read, random
# 4 KiB read and write. Writes end with fsync (end_fsync=1) so that page-cache targets pay for
# durability too; the page cache is dropped before every test.
# Modes: buffered (psync, iodepth 1, through the page cache) and direct (O_DIRECT, libaio,
# iodepth 16 — how a VM with cache=none uses its disk).
# Each test runs --repeat times per target, targets interleaved; the median is reported (runs
# on a shared 2-vCPU VM vary by ±20%). A target that fails a test (passthrough_ll cannot take
# O_DIRECT writes: it hands the unaligned payload to an O_DIRECT file) shows "failed".
# Needs root (mounts, drop_caches), fio, gcc, pkg-config and libfuse3-dev.
set -euo pipefail

size=4G
runtime=10
repeat=3
modes="buffered direct"
scratch_base=/var/tmp
vmfs_options=""
keep=0
while (($#)); do
    case "$1" in
    --size) size=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --scratch) scratch_base=$2; shift 2 ;;
    --vmfs-options) vmfs_options=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-fuse: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ $EUID -eq 0 ]] || { echo "bench-fuse: needs root (FUSE mounts, drop_caches)" >&2; exit 1; }
for tool in fio gcc pkg-config fusermount3; do
    command -v "$tool" >/dev/null || { echo "bench-fuse: $tool is missing (run Tools/scripts/setup.sh)" >&2; exit 1; }
done
examples=/usr/share/doc/libfuse3-dev/examples
[[ -f $examples/passthrough_ll.c ]] || { echo "bench-fuse: $examples/passthrough_ll.c is missing (libfuse3-dev)" >&2; exit 1; }

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
echo "building release binaries..." >&2
swift build -c release --product vmfs-fuse >&2
swift build -c release --product mkfs.vmfs >&2
bin=$(swift build -c release --show-bin-path)

scratch=$(mktemp -d "$scratch_base/bench-fuse.XXXXXX")
pids=()
cleanup() {
    for mountpoint in "$scratch/pt" "$scratch/vm"; do
        if grep -q " $mountpoint " /proc/self/mounts 2>/dev/null; then fusermount3 -u "$mountpoint" || fusermount3 -u -z "$mountpoint" || true; fi
    done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if ((keep)); then echo "kept $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

# passthrough_ll, built from libfuse's example source into the scratch directory only.
mkdir -p "$scratch/src" "$scratch/raw" "$scratch/ptsrc" "$scratch/pt" "$scratch/vm"
cp "$examples/passthrough_ll.c" "$examples/passthrough_helpers.h" "$scratch/src/"
gcc -O2 -o "$scratch/passthrough_ll" "$scratch/src/passthrough_ll.c" $(pkg-config --cflags --libs fuse3)

wait_mounted() {
    for _ in $(seq 300); do
        grep -q " $1 " /proc/self/mounts && return 0
        sleep 0.05
    done
    echo "bench-fuse: $1 did not mount" >&2
    exit 1
}

"$scratch/passthrough_ll" -f -o "source=$scratch/ptsrc,clone_fd" "$scratch/pt" 2>"$scratch/passthrough_ll.log" &
pids+=($!)
wait_mounted "$scratch/pt"

bytes=$(numfmt --from=iec "$size")
image_size=$(( (bytes * 2 / 1073741824 + 2) ))G
"$bin/mkfs.vmfs" --size "$image_size" "$scratch/vmfs.img" >/dev/null
"$bin/vmfs-fuse" -f -o "host_id=bench${vmfs_options:+,$vmfs_options}" "$scratch/vmfs.img" "$scratch/vm" 2>"$scratch/vmfs-fuse.log" &
pids+=($!)
wait_mounted "$scratch/vm"

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# fio_run DIR MODE TEST → prints "MiB/s IOPS" of the job's direction
fio_run() {
    local dir=$1 mode=$2 test=$3
    local args=(--name="$test" --filename="$dir/bench.dat" --size="$size" --numjobs=1 --group_reporting
                --output-format=terse --terse-version=3)
    if [[ $mode == direct ]]; then args+=(--direct=1 --ioengine=libaio); else args+=(--direct=0 --ioengine=psync); fi
    case $test in
    seqwrite) args+=(--rw=write --bs=1M --end_fsync=1); [[ $mode == direct ]] && args+=(--iodepth=16) ;;
    seqread) args+=(--rw=read --bs=1M); [[ $mode == direct ]] && args+=(--iodepth=16) ;;
    randread) args+=(--rw=randread --bs=4k --runtime="$runtime" --time_based); [[ $mode == direct ]] && args+=(--iodepth=16) ;;
    randwrite) args+=(--rw=randwrite --bs=4k --runtime="$runtime" --time_based --end_fsync=1); [[ $mode == direct ]] && args+=(--iodepth=16) ;;
    esac
    drop_caches
    local line
    line=$(fio "${args[@]}" 2>/dev/null) || true
    if [[ -z $line ]] || [[ $(cut -d';' -f5 <<<"$line") != 0 ]]; then
        echo "failed failed"
        return
    fi
    case $test in
    *read) awk -F';' '{printf "%.1f %.0f\n", $7 / 1024, $8}' <<<"$line" ;;
    *write) awk -F';' '{printf "%.1f %.0f\n", $48 / 1024, $49}' <<<"$line" ;;
    esac
}

# median of the numbers on stdin ("failed" when any run failed)
median() {
    sort -g | awk '{ v[NR] = $1; if ($1 == "failed") bad = 1 } END {
        if (bad || NR == 0) { print "failed"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

targets=(raw passthrough_ll vmfs-fuse)
directory() {
    case $1 in raw) echo "$scratch/raw" ;; passthrough_ll) echo "$scratch/pt" ;; vmfs-fuse) echo "$scratch/vm" ;; esac
}

# Lay the file out once per target (not timed), so every test reads and overwrites real data.
for target in "${targets[@]}"; do
    fio --name=layout --filename="$(directory "$target")/bench.dat" --size="$size" --rw=write --bs=1M --direct=0 \
        --end_fsync=1 --output-format=terse >/dev/null
done

declare -A runs
for mode in $modes; do
    for test in seqwrite seqread randread randwrite; do
        for ((round = 0; round < repeat; round++)); do
            # rotate the order so no target always runs right after the same other one
            for ((index = 0; index < ${#targets[@]}; index++)); do
                target=${targets[(index + round) % ${#targets[@]}]}
                value=$(fio_run "$(directory "$target")" "$mode" "$test")
                runs[$mode,$test,$target]+="$value"$'\n'
                echo "  $mode $test $target (run $((round + 1))): $value" >&2
            done
        done
    done
done

echo
echo "fio, file of $size, random tests ${runtime}s, median of $repeat runs; $(nproc) CPUs; kernel $(uname -r);" \
    "backing: $(df --output=fstype "$scratch" | tail -1) on $(df --output=source "$scratch" | tail -1)"
echo "vmfs-fuse options: ${vmfs_options:-defaults}"
for mode in $modes; do
    echo
    if [[ $mode == direct ]]; then echo "== direct (O_DIRECT, libaio, iodepth 16)"; else echo "== buffered (psync, iodepth 1, page cache dropped before each test)"; fi
    printf "%-10s %-6s %12s %16s %12s %18s %10s\n" test unit raw passthrough_ll vmfs-fuse "vmfs/passthrough" "vmfs/raw"
    for test in seqwrite seqread randread randwrite; do
        if [[ $test == seq* ]]; then unit=MiB/s; field=1; else unit=IOPS; field=2; fi
        values=()
        for target in "${targets[@]}"; do
            values+=("$(printf '%s' "${runs[$mode,$test,$target]}" | awk 'NF' | cut -d' ' -f$field | median)")
        done
        ratio() { awk -v v="$1" -v p="$2" 'BEGIN { if (p + 0 > 0 && v + 0 > 0) printf "%.2fx", v / p; else print "n/a" }'; }
        printf "%-10s %-6s %12s %16s %12s %18s %10s\n" "$test" "$unit" "${values[0]}" "${values[1]}" "${values[2]}" \
            "$(ratio "${values[2]}" "${values[1]}")" "$(ratio "${values[2]}" "${values[0]}")"
    done
done
