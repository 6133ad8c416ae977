#!/usr/bin/env bash
# The main job: installs what it needs, builds, and demonstrates the stack on an image file used
# as the shared LUN: format it, use it from several hosts at once, lose a host and recover it,
# check it, and run a VM whose disk lives on it.
#   DEMO_DIR=/var/tmp/vmfs-demo Tools/scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${DEMO_DIR:-/var/tmp/vmfs-demo}
Tools/scripts/setup.sh
Tools/scripts/build-guest.sh --test-guest-only >/dev/null
echo "== building (debug) =="
swift build 2>&1 | tail -1
BIN=$(swift build --show-bin-path)
PATH="$BIN:$PATH"
step() { printf '\n== %s ==\n' "$*"; }
cleanup() {
    [[ -n "${holder:-}" ]] && kill -9 "$holder" 2>/dev/null || true
    for m in "$DIR/host-a" "$DIR/host-b"; do mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
mkdir -p "$DIR"
LUN="$DIR/lun0.img"
rm -f "$LUN"

step "mkfs.vmfs: a 64 GiB sparse image as the shared LUN (fast heartbeat timing for the demo)"
mkfs.vmfs --size 64G --label datastore1 --heartbeat-interval 500 --dead-interval 4000 --io-timeout 1500 "$LUN"
ls -ls "$LUN"

step "host esx-a imports a file; host esx-b lists and exports it (no FUSE needed)"
head -c $((3 << 20)) /dev/urandom > "$DIR/payload.bin"
vmfs put "$LUN" "$DIR/payload.bin" payload.bin --host-id esx-a
vmfs ls -l "$LUN"
vmfs get "$LUN" payload.bin "$DIR/payload.back" --host-id esx-b
cmp "$DIR/payload.bin" "$DIR/payload.back" && echo "esx-b read exactly what esx-a wrote"

step "vmfs-fuse: the LUN mounted on two hosts at once"
mkdir -p "$DIR/host-a" "$DIR/host-b"
vmfs-fuse -o host_id=esx-a "$LUN" "$DIR/host-a"
vmfs-fuse -o host_id=esx-b "$LUN" "$DIR/host-b"
echo "hello from esx-a" > "$DIR/host-a/note.txt"
echo "esx-b reads: $(cat "$DIR/host-b/note.txt")"
cp "$DIR/payload.bin" "$DIR/host-b/copy.bin"
cmp "$DIR/payload.bin" "$DIR/host-a/copy.bin" && echo "esx-a reads exactly what esx-b copied in"
mv "$DIR/host-a/copy.bin" "$DIR/host-a/renamed.bin"
ls -l "$DIR/host-b"
exec 3>>"$DIR/host-a/note.txt"          # esx-a keeps the file open for writing: exclusive lock
vmfs locks "$LUN"
if echo "from esx-b" 2>"$DIR/err.txt" >>"$DIR/host-b/note.txt"; then echo "unexpected: esx-b could write"; exit 1; fi
echo "esx-b is refused while esx-a has the file open: $(sed 's/.*: //' "$DIR/err.txt")"
exec 3>&-
echo "from esx-b" >>"$DIR/host-b/note.txt" && echo "after esx-a closed it, esx-b appends: $(tr '\n' '|' <"$DIR/host-a/note.txt")"
fusermount3 -u "$DIR/host-a"
fusermount3 -u "$DIR/host-b"
vmfs hosts "$LUN"

step "a host holds a file open for writing; the others see the host and the lock"
vmfs-testhost hold "$LUN" --host-id esx-c --file busy.vmdk --create > "$DIR/holder.out" 2>&1 &
holder=$!
until grep -q READY "$DIR/holder.out"; do sleep 0.1; done
vmfs hosts "$LUN"
vmfs locks "$LUN"
vmfs rm "$LUN" busy.vmdk --host-id esx-a || echo "(refused, as it must be: the file is in use on esx-c)"

step "esx-c dies (SIGKILL); esx-a recovers it: journal replayed, locks freed"
kill -9 "$holder"; wait "$holder" 2>/dev/null || true; holder=
vmfs recover "$LUN" --host-id esx-a
vmfs locks "$LUN"

step "fsck.vmfs -n: the volume is consistent"
fsck.vmfs -n "$LUN"

step "a VM whose disk lives on the volume (test guest on 2 vCPUs writing a pattern across its 8 GiB thin disk)"
vmctl create --volume "$LUN" --name vm1 --vcpus 2 --memory 64M --disk 8G \
    --guest .cache/guest/testguest.elf --workload diskWritePattern --args 4242,32 --host-id esx-a
vmctl run --volume "$LUN" vm1 --host-id esx-a
vmctl list --volume "$LUN" --host-id esx-b
vmfs ls -l "$LUN"
fsck.vmfs -n "$LUN"

step "done: the image is $LUN ($(du -h "$LUN" | cut -f1) on disk for a 64 GiB volume)"
