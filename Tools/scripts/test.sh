#!/usr/bin/env bash
# Sets up the machine (apt packages, guest images) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
Tools/scripts/setup.sh
if [[ -x Tools/scripts/build-guest.sh ]]; then Tools/scripts/build-guest.sh; fi
swift build --build-tests
# Suites run one after another: several of them start many host processes each, and on a
# 2-core machine running them side by side would only make their timing checks noisy.
swift test --skip-build --no-parallel "$@"
# Every fuzz target for about a minute from its committed corpus with a fixed seed
# (docs/FUZZING.md): a crash, a hang, a leak or a write outside the device fails the run.
# Open-ended exploration is `fuzz.sh run` / `fuzz.sh long`. FUZZ_SECONDS=0 leaves it out.
fuzz_seconds=${FUZZ_SECONDS:-60}
if ((fuzz_seconds > 0)); then Tools/scripts/fuzz.sh ci "$fuzz_seconds"; fi
