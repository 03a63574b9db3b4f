//! A RISC-V 64 (RV64GC) system emulator for spin's Linux guest.
//!
//! The core is a fast interpreter: instructions are decoded once into a
//! per-physical-page cache (dropped when the page is written, by the CPU or
//! by device DMA), loads and stores go through a TLB that maps virtual pages
//! straight to offsets in guest RAM, and time, devices and interrupts are
//! looked at between slices of instructions.
//!
//! - [`cpu::Cpu`]: one hart and its bus; [`cpu::Cpu::run`] executes a slice.
//! - [`machine::Machine`]: the whole system (RAM, PLIC, devices, SBI, device
//!   tree) booting a Linux `Image` in S-mode; the host provides a
//!   [`machine::Console`] and a [`machine::Clock`].
//! - [`bus::MmioDevice`]: a device on the bus; implemented for
//!   `spin_virtio::MmioTransport` (device i at `0x1000_1000 + i * 0x1000`,
//!   PLIC interrupt `1 + i`, announced as `virtio,mmio` in the device tree).
//! - [`user`]: runs a static riscv64 Linux ELF in U-mode with a few syscalls
//!   (for differential tests against `qemu-riscv64`).
//! - [`host`]: `std` implementations of the host traits for native runs.

#![warn(missing_docs)]

pub mod bus;
pub mod cpu;
pub mod csr;
pub mod decode;
pub mod fdt;
pub mod fpu;
pub mod host;
pub mod machine;
pub mod mmu;
pub mod plic;
pub mod sbi;
pub mod user;
