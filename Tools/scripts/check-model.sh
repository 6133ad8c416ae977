#!/usr/bin/env bash
# Checks Tools/model/slot-ownership.pml (who holds a file descriptor's lock on one host)
# exhaustively with spin (Debian package `spin`, installed by Tools/scripts/setup.sh).
#
#   Tools/scripts/check-model.sh            the protocol as built: exits 0 when spin finds no
#                                           assertion violation and no invalid end state
#   Tools/scripts/check-model.sh --before   the protocol before issue 10: exits 0 when spin finds
#                                           the race, and prints its shortest counterexample
set -euo pipefail
cd "$(dirname "$0")/../.."
model="$(pwd)/Tools/model/slot-ownership.pml"
command -v spin >/dev/null || { echo "check-model: spin is not installed (Tools/scripts/setup.sh installs it)" >&2; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp "$model" "$scratch/"
cd "$scratch"
model=slot-ownership.pml
if [[ "${1:-}" == "--before" ]]; then
    spin -DFIXED=0 -a "$model" >/dev/null
    cc -O2 -DSAFETY -DREACH -o pan pan.c
    # -i: iterative search for the shortest counterexample.
    ./pan -i >pan.out 2>&1 || true
    grep -E "assertion violated|errors:" pan.out | tail -3
    if ! grep -q "errors: 0" pan.out && [[ -e slot-ownership.pml.trail ]]; then
        echo "--- shortest counterexample (spin -t):"
        spin -DFIXED=0 -t -p "$model" 2>/dev/null | grep -E "^ *[0-9]+:.*proc|assertion" | sed 's/slot-ownership.pml://' | tail -60
        echo "check-model: the protocol before issue 10 violates its invariants (as expected)"
        exit 0
    fi
    echo "check-model: spin found no violation in the old protocol" >&2
    exit 1
fi
spin -DFIXED=1 -a "$model" >/dev/null
cc -O2 -DSAFETY -o pan pan.c
./pan >pan.out 2>&1 || true
grep -E "errors:|states, stored" pan.out
if grep -q "errors: 0" pan.out; then
    echo "check-model: no assertion violation, no invalid end state in any interleaving"
    exit 0
fi
cat pan.out >&2
exit 1
