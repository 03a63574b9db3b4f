//! The device tree handed to the kernel, generated with `vm-fdt`.

use crate::bus::{MMIO_BASE, MMIO_STRIDE, PLIC_BASE, PLIC_SIZE};
use crate::plic::NUM_SOURCES;
use vm_fdt::{Error, FdtWriter};

/// Timebase of the `time` CSR in Hz.
pub const TIMEBASE_HZ: u32 = 10_000_000;

const INTC_PHANDLE: u32 = 1;
const PLIC_PHANDLE: u32 = 2;

/// What the device tree describes.
#[derive(Clone, Debug)]
pub struct FdtConfig {
    /// RAM base address.
    pub ram_base: u64,
    /// RAM size in bytes.
    pub ram_size: u64,
    /// Kernel command line.
    pub cmdline: String,
    /// Initrd location (start, end) if any.
    pub initrd: Option<(u64, u64)>,
    /// Number of virtio-mmio devices (at `MMIO_BASE + i * MMIO_STRIDE`, PLIC source 1 + i).
    pub num_devices: usize,
}

/// Builds the flattened device tree blob.
pub fn build(cfg: &FdtConfig) -> Result<Vec<u8>, Error> {
    let mut f = FdtWriter::new()?;
    let root = f.begin_node("")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_string("compatible", "spin,riscv-virtio")?;
    f.property_string("model", "spin riscv64")?;

    let chosen = f.begin_node("chosen")?;
    f.property_string("bootargs", &cfg.cmdline)?;
    if let Some((start, end)) = cfg.initrd {
        f.property_u64("linux,initrd-start", start)?;
        f.property_u64("linux,initrd-end", end)?;
    }
    f.end_node(chosen)?;

    let cpus = f.begin_node("cpus")?;
    f.property_u32("#address-cells", 1)?;
    f.property_u32("#size-cells", 0)?;
    f.property_u32("timebase-frequency", TIMEBASE_HZ)?;
    let cpu = f.begin_node("cpu@0")?;
    f.property_string("device_type", "cpu")?;
    f.property_u32("reg", 0)?;
    f.property_string("status", "okay")?;
    f.property_string("compatible", "riscv")?;
    f.property_string("riscv,isa", "rv64imafdc_zicsr_zifencei")?;
    f.property_string("riscv,isa-base", "rv64i")?;
    let exts = ["i", "m", "a", "f", "d", "c", "zicntr", "zicsr", "zifencei"];
    f.property_string_list(
        "riscv,isa-extensions",
        exts.iter().map(|s| s.to_string()).collect(),
    )?;
    f.property_string("mmu-type", "riscv,sv57")?;
    let intc = f.begin_node("interrupt-controller")?;
    f.property_u32("#interrupt-cells", 1)?;
    f.property_null("interrupt-controller")?;
    f.property_string("compatible", "riscv,cpu-intc")?;
    f.property_phandle(INTC_PHANDLE)?;
    f.end_node(intc)?;
    f.end_node(cpu)?;
    f.end_node(cpus)?;

    let mem = f.begin_node(&format!("memory@{:x}", cfg.ram_base))?;
    f.property_string("device_type", "memory")?;
    f.property_array_u64("reg", &[cfg.ram_base, cfg.ram_size])?;
    f.end_node(mem)?;

    let soc = f.begin_node("soc")?;
    f.property_u32("#address-cells", 2)?;
    f.property_u32("#size-cells", 2)?;
    f.property_string("compatible", "simple-bus")?;
    f.property_null("ranges")?;

    let plic = f.begin_node(&format!("plic@{PLIC_BASE:x}"))?;
    f.property_string_list(
        "compatible",
        vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()],
    )?;
    f.property_array_u64("reg", &[PLIC_BASE, PLIC_SIZE])?;
    f.property_u32("#address-cells", 0)?;
    f.property_u32("#interrupt-cells", 1)?;
    f.property_null("interrupt-controller")?;
    // Context 0: M-mode external interrupt (11), context 1: S-mode (9).
    f.property_array_u32("interrupts-extended", &[INTC_PHANDLE, 11, INTC_PHANDLE, 9])?;
    f.property_u32("riscv,ndev", NUM_SOURCES - 1)?;
    f.property_phandle(PLIC_PHANDLE)?;
    f.end_node(plic)?;

    for i in 0..cfg.num_devices {
        let addr = MMIO_BASE + i as u64 * MMIO_STRIDE;
        let dev = f.begin_node(&format!("virtio_mmio@{addr:x}"))?;
        f.property_string("compatible", "virtio,mmio")?;
        f.property_array_u64("reg", &[addr, MMIO_STRIDE])?;
        f.property_u32("interrupt-parent", PLIC_PHANDLE)?;
        f.property_u32("interrupts", 1 + i as u32)?;
        f.end_node(dev)?;
    }
    f.end_node(soc)?;
    f.end_node(root)?;
    f.finish()
}
