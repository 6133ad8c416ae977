/* PCI enumeration through configuration mechanism #1 (ports 0xCF8/0xCFC), bus 0, function 0. */
#include "guest.h"

static u32 address(int slot, int reg) { return 0x80000000u | (u32)slot << 11 | (u32)(reg & 0xfc); }

u32 pci_read32(int slot, int reg) {
    outl(0xcf8, address(slot, reg));
    return inl(0xcfc);
}

void pci_write32(int slot, int reg, u32 value) {
    outl(0xcf8, address(slot, reg));
    outl(0xcfc, value);
}

u16 pci_find_virtio_blk(int index, int verbose) {
    int found = 0;
    u16 result = 0;
    for (int slot = 0; slot < 32; slot++) {
        u32 id = pci_read32(slot, 0);
        if ((id & 0xffff) == 0xffff) continue;
        u32 class_code = pci_read32(slot, 8) >> 8;
        if (verbose) gprintf("pci 00:%02x.0 %04x:%04x class %06x\n", slot, id & 0xffff, id >> 16, class_code);
        if (id != 0x10011af4u) continue;
        if ((pci_read32(slot, 0x2c) >> 16) != 2) continue; /* subsystem id = virtio block */
        if (found++ != index) continue;
        u32 bar0 = pci_read32(slot, 0x10);
        if (!(bar0 & 1)) continue;
        pci_write32(slot, 0x04, pci_read32(slot, 0x04) | 0x5); /* I/O space + bus master */
        result = (u16)(bar0 & ~3u);
    }
    return result;
}

u16 pci_find_virtio_net(int index) {
    int found = 0;
    for (int slot = 0; slot < 32; slot++) {
        u32 id = pci_read32(slot, 0);
        if (id != 0x10001af4u || (pci_read32(slot, 0x2c) >> 16) != 1) continue; /* virtio, subsystem net */
        if (found++ != index) continue;
        u32 bar0 = pci_read32(slot, 0x10);
        if (!(bar0 & 1)) return 0;
        pci_write32(slot, 0x04, pci_read32(slot, 0x04) | 0x5);
        return (u16)(bar0 & ~3u);
    }
    return 0;
}
