#!/usr/bin/env bash
# Builds and caches everything the Hypervisor tests boot, under .cache/guest/ (gitignored):
#   testguest.elf            the freestanding CPL3 test guest (Tools/guest, system gcc, no libc)
#   vmlinuz                  the stock Debian kernel (linux-image-*-amd64, current version via apt)
#   vmlinux                  the uncompressed kernel ELF extracted from vmlinuz's XZ payload
#   initramfs.cpio.gz        busybox-static + a small /init (+ virtio modules)
#   kernel-version           the kernel ABI string, e.g. 6.1.0-56-amd64
# Idempotent: each artefact is rebuilt only when its inputs change. Usage:
#   build-guest.sh [--test-guest-only]
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="$root/.cache/guest"
mkdir -p "$cache"
log() { echo "build-guest: $*" >&2; }

# ---- 1. The test guest ----------------------------------------------------------------------
guest_sources=(start.S runtime.c pci.c virtio_blk.c hostile.c hostile_limits.c sequence.c random_io.c heartbeat.c virtio_net.c net.c memory_generations.c main.c guest.h guest.ld)
guest_flags=(-ffreestanding -nostdlib -static -fno-pie -no-pie -mgeneral-regs-only -mno-red-zone -O2
    -fno-stack-protector -fno-asynchronous-unwind-tables -fno-builtin -Wall -Wextra -Werror
    -Wno-unused-parameter -Wl,--build-id=none -Wl,--no-warn-rwx-segments)
stamp="$( (cd "$root/Tools/guest" && cat "${guest_sources[@]}"; echo "${guest_flags[*]}"; gcc --version | head -1) | sha256sum | cut -c1-16)"
if [[ ! -f "$cache/testguest.elf" || "$(cat "$cache/testguest.stamp" 2>/dev/null)" != "$stamp" ]]; then
    log "compiling the test guest"
    (cd "$root/Tools/guest" && gcc "${guest_flags[@]}" -T guest.ld -o "$cache/testguest.elf.tmp" \
        start.S runtime.c pci.c virtio_blk.c hostile.c hostile_limits.c sequence.c random_io.c heartbeat.c virtio_net.c net.c memory_generations.c main.c)
    mv "$cache/testguest.elf.tmp" "$cache/testguest.elf"
    echo "$stamp" > "$cache/testguest.stamp"
fi
[[ "${1:-}" == "--test-guest-only" ]] && exit 0

# ---- 2. The stock Debian kernel and busybox --------------------------------------------------
resolve_kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
package="$(resolve_kernel_package || true)"
if [[ -z "$package" ]]; then
    if [[ -f "$cache/kernel-version" && -f "$cache/vmlinux" ]]; then
        log "apt cannot resolve linux-image-amd64; keeping the cached kernel $(cat "$cache/kernel-version")"
        package="linux-image-$(cat "$cache/kernel-version")"
    else
        log "refreshing apt package lists"
        apt-get update -qq
        package="$(resolve_kernel_package)"
    fi
fi
[[ -n "$package" ]] || { log "cannot resolve the linux-image-amd64 dependency"; exit 1; }
abi="${package#linux-image-}"

downloads="$cache/downloads"
mkdir -p "$downloads"
fetch() { # fetch PACKAGE: downloads PACKAGE's .deb into $downloads unless one is there; prints its path
    local name="$1"
    if ! compgen -G "$downloads/${name}_*.deb" >/dev/null; then
        log "downloading $name"
        # A stale package list can name a version the mirror no longer has: refresh and retry once.
        (cd "$downloads" && { apt-get download -q "$name" >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get download -q "$name" >/dev/null; }; })
    fi
    compgen -G "$downloads/${name}_*.deb" | head -n1
}

if [[ ! -f "$cache/vmlinuz" || ! -f "$cache/vmlinux" || "$(cat "$cache/kernel-version" 2>/dev/null)" != "$abi" ]]; then
    deb="$(fetch "$package")"
    work="$(mktemp -d "$cache/kernel.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    log "extracting $abi from $(basename "$deb")"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" "./boot/vmlinuz-$abi" \
        --wildcards "./lib/modules/$abi/kernel/drivers/virtio/*" "./lib/modules/$abi/kernel/drivers/block/virtio_blk.ko"
    cp "$work/boot/vmlinuz-$abi" "$cache/vmlinuz.tmp"
    # The bzImage's protected-mode payload starts at (setup_sects + 1) * 512 + payload_offset.
    le() { od -An -t u"$2" -j "$1" -N "$2" "$cache/vmlinuz.tmp" | tr -d ' '; }
    setup_sects="$(le $((0x1f1)) 1)"; (( setup_sects == 0 )) && setup_sects=4
    payload_offset="$(le $((0x248)) 4)"
    payload_length="$(le $((0x24c)) 4)"
    start=$(( (setup_sects + 1) * 512 + payload_offset ))
    log "decompressing the XZ payload ($payload_length bytes at $start) into vmlinux"
    dd if="$cache/vmlinuz.tmp" iflag=skip_bytes,count_bytes skip="$start" count="$payload_length" bs=1M status=none \
        | xz -dc --single-stream > "$cache/vmlinux.tmp"
    [[ "$(head -c 4 "$cache/vmlinux.tmp" | od -An -t x1 | tr -d ' ')" == "7f454c46" ]] \
        || { log "the extracted payload is not an ELF file"; exit 1; }
    rm -rf "$cache/modules" && mkdir -p "$cache/modules"
    cp -r "$work/lib/modules/$abi" "$cache/modules/"
    mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
    mv "$cache/vmlinux.tmp" "$cache/vmlinux"
    echo "$abi" > "$cache/kernel-version"
    rm -f "$cache/initramfs.cpio.gz"
    find "$downloads" -name 'linux-image-*.deb' ! -name "${package}_*" -delete  # superseded kernels
fi

# ---- 3. The initramfs --------------------------------------------------------------------------
init_stamp="$( (cat "$root/Tools/guest/init.sh"; cat "$cache/kernel-version") | sha256sum | cut -c1-16)"
if [[ ! -f "$cache/initramfs.cpio.gz" || "$(cat "$cache/initramfs.stamp" 2>/dev/null)" != "$init_stamp" ]]; then
    deb="$(fetch busybox-static)"
    tree="$(mktemp -d "$cache/initramfs.XXXXXX")"
    log "building the initramfs with $(basename "$deb")"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tree" ./bin/busybox
    cp "$root/Tools/guest/init.sh" "$tree/init"
    chmod 755 "$tree/init" "$tree/bin/busybox"
    ln -s busybox "$tree/bin/sh"
    mkdir -p "$tree/lib/modules" "$tree/proc" "$tree/sys" "$tree/dev"
    cp -r "$cache/modules/." "$tree/lib/modules/"
    (cd "$tree" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet | gzip -9n) > "$cache/initramfs.cpio.gz.tmp"
    rm -rf "$tree"
    mv "$cache/initramfs.cpio.gz.tmp" "$cache/initramfs.cpio.gz"
    echo "$init_stamp" > "$cache/initramfs.stamp"
fi
log "ready in $cache (kernel $(cat "$cache/kernel-version"))"
