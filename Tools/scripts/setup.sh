#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian bookworm machine (idempotent, quick when
# everything is present). Used by the README's two commands and by CI.
set -euo pipefail

packages=(
    pkg-config gcc make
    libfuse3-dev fuse3          # vmfs-fuse (libfuse3 low-level API) and fusermount3
    liburing-dev libaio-dev     # io_uring block I/O
    fio                         # benchmarks and verify tests
    qemu-utils                  # qemu-img: a real client in the FUSE tests
    util-linux e2fsprogs xfsprogs btrfs-progs  # losetup, signatures mkfs.vmfs must refuse to overwrite
    busybox-static cpio xz-utils # guest initramfs for the Linux boot-path check
    spin                        # model check of the descriptor-lock protocol (Tools/model)
    iproute2 curl               # host agents in network namespaces (ip netns, nsenter) and their API in tests
    libiscsi-dev libiscsi-bin   # iSCSI LUNs in user space (iscsi:// devices); iscsi-perf for benchmarks
    tgt istgt sg3-utils         # real iSCSI targets for tests and the demo (istgt executes COMPARE AND WRITE, tgt does not); sg_persist
    nftables                    # virtual switches: security policy as bridge-family rules (docs/NETWORKING.md)
)

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python tools the tests run (pinned), in a virtual environment of the project's own.
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.cache/venv"
python_tools=(schemathesis==4.32.5)
if [[ ! -x "$venv/bin/schemathesis" ]]; then
    echo "setup: installing ${python_tools[*]} into .cache/venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${python_tools[@]}"
fi

# The FUSE tests mount as root; make sure the device node exists and fusermount3 is usable.
[[ -e /dev/fuse ]] || echo "setup: warning: /dev/fuse is missing; FUSE tests will skip" >&2
[[ -e /dev/kvm ]] || echo "setup: warning: /dev/kvm is missing; KVM tests will skip" >&2
exit 0
