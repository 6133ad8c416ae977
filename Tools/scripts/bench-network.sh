#!/usr/bin/env bash
# Benchmark (not a test): a test guest's NIC over a virtual switch against two host processes over
# the same kernel bridge, measured in the same run (docs/NETWORKING.md).
#
#   namespace H ("the host"): an internal virtual switch (bridge vb…v0, made by `vmctl run
#     --network-config`), the VM's TAP port on it, and two veths into it;
#   namespace P (10.77.0.1) and namespace Q (10.77.0.3): host processes (nettool) behind those veths;
#   the guest is 10.77.0.2.
#
# Reports, for 1472- and 64-byte UDP payloads: guest → P and Q → P (baseline) in bit/s and packets/s
# and their ratio; P → guest packets/s (counted by the guest) against P → Q; and the CPU time the
# VMM's NIC threads (vmm-net0-rx/-tx) spent per packet. Needs root and /dev/kvm.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DIR=${BENCH_DIR:-/var/tmp/vmfs-bench-network}
COUNT=${BENCH_PACKETS:-200000}
Tools/scripts/setup.sh >/dev/null
mkdir -p "$DIR"
for product in vmctl mkfs.vmfs; do swift build -c release --product "$product" >/dev/null; done
BIN=$(swift build -c release --show-bin-path)
GUEST=$(Tools/scripts/build-guest.sh --test-guest-only >/dev/null; echo "$ROOT/.cache/guest/testguest.elf")
NETTOOL=$(Tools/scripts/build-nettool.sh)
ID=$$
H=nbh$ID P=nbp$ID Q=nbq$ID
cleanup() {
    for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
    for ns in $H $P $Q; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
for ns in $H $P $Q; do ip netns add "$ns"; ip -n "$ns" link set lo up; done

cat > "$DIR/network.toml" <<'EOF'
[[vswitch]]
name = "bench"
[[portgroup]]
name = "Bench"
vswitch = "bench"
EOF
volume="$DIR/bench.img"
rm -f "$volume"
"$BIN/mkfs.vmfs" --size 2G "$volume" >/dev/null
export VMFS_HOST_ID=bench-network
ip4() { local IFS=.; set -- $1; echo $(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 )); }
GUEST_IP=$(ip4 10.77.0.2) P_IP=$(ip4 10.77.0.1)

# A first VM run makes the switch's bridge; the veths are attached to it afterwards.
"$BIN/vmctl" create --volume "$volume" --name probe --guest "$GUEST" --workload hello --memory 64M --network Bench >/dev/null
ip netns exec $H "$BIN/vmctl" run --volume "$volume" --network-config "$DIR/network.toml" --quiet probe >/dev/null || true
bridge=$(ip -n $H -j link show type bridge | python3 -c 'import json,sys; print([l["ifname"] for l in json.load(sys.stdin) if l["ifname"].startswith("vb")][0])')
for pair in "$P 10.77.0.1" "$Q 10.77.0.3"; do
    set -- $pair
    ip link add "x$1" type veth peer name eth0 netns "$1"
    ip link set "x$1" netns $H
    ip -n $H link set "x$1" master "$bridge" up
    ip -n "$1" addr add "$2/24" dev eth0
    ip -n "$1" link set eth0 up
done
field() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1==k {print $2}'; }
ratio() { python3 -c "print('%.2f' % ($1 / $2 if $2 else 0))"; }
cpu_ticks() {  # CPU ticks (user + system) of the NIC threads of process $1
    local total=0
    for task in /proc/"$1"/task/*; do
        if grep -q '^vmm-net0' "$task/comm" 2>/dev/null; then
            total=$(( total + $(awk '{print $14 + $15}' "$task/stat") ))
        fi
    done
    echo "$total"
}

run_guest_send() {  # $1 = payload bytes; prints the receiver's summary line, sets VMM_TICKS
    local size=$1 name="send$1"
    "$BIN/vmctl" create --volume "$volume" --name "$name" --guest "$GUEST" --workload udpSend --memory 64M --network Bench \
        --args "$GUEST_IP,$P_IP,9,$COUNT,$size,0,4,40000" >/dev/null
    ip netns exec $P "$NETTOOL" recv 9 60 until-idle > "$DIR/recv.out" &
    local receiver=$!
    sleep 0.3
    ip netns exec $H "$BIN/vmctl" run --volume "$volume" --network-config "$DIR/network.toml" --quiet --time-limit 55 "$name" >/dev/null &
    local vm=$! before=0 after=0
    sleep 0.5
    local pid; pid=$(pgrep -n -f "vmctl run .* $name\$" || true)
    [[ -n $pid ]] && before=$(cpu_ticks "$pid")
    while kill -0 "$vm" 2>/dev/null; do
        [[ -n $pid ]] && after=$(cpu_ticks "$pid") || true
        sleep 0.2
    done
    wait "$receiver" 2>/dev/null || true
    VMM_TICKS=$(( after - before ))
    grep '^recv' "$DIR/recv.out" || echo "recv received=0"
}

echo "Guest → host process over the vSwitch vs host process → host process over the same bridge ($COUNT datagrams each):"
for size in 1472 64; do
    # Baseline first: Q → P, as fast as the sender can.
    ip netns exec $P "$NETTOOL" recv 9 30 until-idle > "$DIR/base.out" &
    receiver=$!
    sleep 0.3
    ip netns exec $Q "$NETTOOL" send 10.77.0.1 9 0 "$COUNT" "$size" >/dev/null
    wait "$receiver" 2>/dev/null || true
    base=$(grep '^recv' "$DIR/base.out" || echo "recv received=0")
    guest=$(run_guest_send "$size")
    hz=$(getconf CLK_TCK)
    received=$(field "$guest" received)
    echo "  payload $size B: guest $(field "$guest" l2_bits_per_second) bit/s $(field "$guest" packets_per_second) pkt/s" \
         "(received $received, lost $(field "$guest" lost));" \
         "host processes $(field "$base" l2_bits_per_second) bit/s $(field "$base" packets_per_second) pkt/s" \
         "(received $(field "$base" received)); ratio $(ratio "$(field "$guest" packets_per_second)" "$(field "$base" packets_per_second)")"
    echo "    VMM NIC threads: $(python3 -c "print('%.2f' % ($VMM_TICKS * 1e6 / $hz / $received) if $received else 'n/a')") us CPU per packet" \
         "($VMM_TICKS ticks at $hz Hz)"
done

echo "Host process → guest (the guest counts the stream; 64-byte payloads at 20 000 pkt/s for 5 s):"
"$BIN/vmctl" create --volume "$volume" --name sink --guest "$GUEST" --workload netResponder --memory 64M --network Bench \
    --args "$GUEST_IP,7,20000" >/dev/null
ip netns exec $H "$BIN/vmctl" run --volume "$volume" --network-config "$DIR/network.toml" --time-limit 20 sink > "$DIR/sink.out" 2>&1 &
vm=$!
sleep 3
ip netns exec $P ping -c 1 -W 5 10.77.0.2 >/dev/null || true
ip netns exec $P "$NETTOOL" send 10.77.0.2 7 20000 100000 64 >/dev/null
sleep 1
kill -INT "$vm" 2>/dev/null || true; wait "$vm" 2>/dev/null || true
echo "  guest: $(grep 'net: udp received' "$DIR/sink.out" | tail -1)"
ip netns exec $P "$NETTOOL" recv 7 10 until-idle > "$DIR/base2.out" &
receiver=$!
sleep 0.3
ip netns exec $Q "$NETTOOL" send 10.77.0.1 7 20000 100000 64 >/dev/null
wait "$receiver" 2>/dev/null || true
echo "  host process: $(grep '^recv' "$DIR/base2.out")"
