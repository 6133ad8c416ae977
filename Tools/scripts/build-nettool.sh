#!/usr/bin/env bash
# Builds .cache/nettool/nettool (Tools/nettool/nettool.c): the host side of the network tests and
# benchmarks. Rebuilt only when its source changes. Prints the executable's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/.cache/nettool"
mkdir -p "$out"
source="$root/Tools/nettool/nettool.c"
stamp="$(sha256sum "$source" | cut -c1-16)"
if [[ ! -x "$out/nettool" || "$(cat "$out/nettool.stamp" 2>/dev/null)" != "$stamp" ]]; then
    gcc -O2 -Wall -Wextra -Werror -o "$out/nettool.tmp" "$source"
    mv "$out/nettool.tmp" "$out/nettool"
    echo "$stamp" > "$out/nettool.stamp"
fi
echo "$out/nettool"
