#!/bin/busybox sh
# /init of the test initramfs: announce, mount the basics, load virtio-blk if the modules are here.
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo "guest-init: busybox initramfs running on $(/bin/busybox uname -r)"
for module in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
    path=$(/bin/busybox find /lib/modules -name "$module.ko" 2>/dev/null | /bin/busybox head -n1)
    [ -n "$path" ] && /bin/busybox insmod "$path"
done
/bin/busybox ls /dev/vd* 2>/dev/null
echo "guest-init: done, powering off"
/bin/busybox poweroff -f
