#!/bin/sh
# Live-migration benchmark (issue 11): guests of 256 MiB, 1 GiB and 4 GiB at dirty rates of about
# 0, 50 and 500 MB/s, migrated back and forth between two VMMs over authenticated TCP streams on
# the loopback interface. Prints, per migration: downtime measured by the VMMs (pause → resume)
# and by the guest (largest gap in its 1 ms TSC loop), total time, rounds, pages per round, bytes
# sent ÷ RAM and ÷ non-zero memory, link throughput, dirty rate; then medians and p99s.
#
#   Benchmarks/migration/bench-migration.sh [MIGRATIONS] [SIZES_MiB] [RATES_MBps]
#   e.g. Benchmarks/migration/bench-migration.sh 20 "256 1024 4096" "0 50 500"
set -eu
cd "$(dirname "$0")/../.."
migrations=${1:-10}
sizes=${2:-"256 1024 4096"}
rates=${3:-"0 50 500"}
Tools/scripts/build-guest.sh >/dev/null
swift build -c release --product migration-bench >/dev/null
bench=$(swift build -c release --show-bin-path)/migration-bench
for size in $sizes; do
    for rate in $rates; do
        "$bench" --image .cache/guest/testguest.elf --memory-mib "$size" --dirty-mbps "$rate" --migrations "$migrations"
        echo
    done
done
