#!/usr/bin/env bash
# Sets up the machine (apt packages, guest images) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/../.."
Tools/scripts/setup.sh
if [[ -x Tools/scripts/build-guest.sh ]]; then Tools/scripts/build-guest.sh; fi
swift build --build-tests
swift test --skip-build "$@"
