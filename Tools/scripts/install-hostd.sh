#!/usr/bin/env bash
# Installs the host agent on this machine: release builds of vmhostd and vmx into /usr/local/bin,
# the systemd unit, and /etc/vmfs/hostd.toml from the example when none exists. Then:
#   $EDITOR /etc/vmfs/hostd.toml && systemctl enable --now vmhostd
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release --product vmhostd
swift build -c release --product vmx
swift build -c release --product vmctl
bin="$(swift build -c release --show-bin-path)"
install -m 0755 "$bin/vmhostd" "$bin/vmx" "$bin/vmctl" /usr/local/bin/
install -d -m 0755 /etc/vmfs
[[ -f /etc/vmfs/hostd.toml ]] || install -m 0600 Tools/vmhostd/hostd.toml.example /etc/vmfs/hostd.toml
install -m 0644 Tools/vmhostd/vmhostd.service /etc/systemd/system/vmhostd.service
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then systemctl daemon-reload; fi
echo "installed; edit /etc/vmfs/hostd.toml, then: systemctl enable --now vmhostd"
