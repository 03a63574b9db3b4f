//! The whole machine: a hart, RAM at 0x8000_0000, the PLIC, virtio-mmio
//! devices, the SBI and the run loop. The kernel `Image` is entered in S-mode
//! with a0 = hart id and a1 = the device tree's address.

use crate::bus::{Bus, MmioDevice, Ram};
use crate::cpu::{Cpu, Exit, irq, privilege};
use crate::fdt::{self, FdtConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use thiserror::Error;

/// Guest physical address of RAM.
pub const RAM_BASE: u64 = 0x8000_0000;
/// Offset of the kernel from the start of RAM (2 MiB, the Image's `text_offset`).
pub const KERNEL_OFFSET: u64 = 0x20_0000;
/// Instructions per slice between checks of time, devices and the stop flag.
pub const SLICE: u64 = 1 << 15;

/// Where the console's bytes go: implemented by the host.
pub trait Console {
    /// Output from the guest.
    fn write(&mut self, bytes: &[u8]);
    /// One byte of input for the guest, if any is ready.
    fn read(&mut self) -> Option<u8> {
        None
    }
}

/// Time and idling: implemented by the host (natively or through wasm imports).
pub trait Clock {
    /// A monotonic clock in nanoseconds.
    fn now_ns(&mut self) -> u64;
    /// Blocks until `deadline_ns` (on the `now_ns` clock) or an external event,
    /// whichever comes first. Returning early is always allowed.
    fn wait(&mut self, deadline_ns: u64);
}

/// Errors preparing a machine.
#[derive(Debug, Error)]
pub enum MachineError {
    /// The kernel file is not a RISC-V Linux `Image`.
    #[error("the kernel is not a riscv64 Linux Image (bad header magic)")]
    NotRiscvImage,
    /// Kernel, initrd and device tree do not fit in RAM.
    #[error("{what} of {size} bytes does not fit in {ram} bytes of guest RAM")]
    DoesNotFit {
        /// What did not fit.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The RAM size.
        ram: u64,
    },
    /// The device tree could not be built.
    #[error("building the device tree: {0}")]
    Fdt(String),
}

/// How the machine is built.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub ram_size: u64,
    /// Kernel command line.
    pub cmdline: String,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            ram_size: 256 << 20,
            cmdline: "console=hvc0 earlycon=sbi no4lvl quiet panic=-1".into(),
        }
    }
}

/// Why [`Machine::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    /// The guest asked for a system reset through SBI (SRST or legacy shutdown).
    Reset {
        /// SRST reset type: 0 shutdown, 1 cold reboot, 2 warm reboot.
        reset_type: u32,
        /// SRST reset reason: 0 none, 1 system failure, others vendor-specific.
        reason: u32,
    },
    /// The stop flag was raised by the host.
    Stopped,
    /// The instruction budget given to `run` is used up; `run` may be called again.
    Budget,
    /// The guest trapped into M-mode, which has no software: the machine is dead.
    Crashed {
        /// The trap cause.
        cause: u64,
        /// The trap value.
        tval: u64,
        /// Where it happened.
        pc: u64,
    },
}

/// The emulated machine.
pub struct Machine {
    /// The hart and its bus.
    pub cpu: Cpu,
    pub(crate) console: Box<dyn Console>,
    clock: Box<dyn Clock>,
    /// SBI timer compare value (in `time` ticks).
    pub(crate) timecmp: u64,
    start_ns: u64,
    stop: Arc<AtomicBool>,
    pub(crate) reset: Option<RunResult>,
}

impl Machine {
    /// Builds a machine with `kernel` (a riscv64 `Image`), an optional initrd,
    /// and virtio-mmio devices, ready to boot.
    pub fn new(
        config: &MachineConfig,
        kernel: &[u8],
        initrd: Option<&[u8]>,
        devices: Vec<Box<dyn MmioDevice>>,
        console: Box<dyn Console>,
        mut clock: Box<dyn Clock>,
    ) -> Result<Machine, MachineError> {
        if kernel.len() < 64 || &kernel[56..60] != b"RSC\x05" {
            return Err(MachineError::NotRiscvImage);
        }
        let ram_size = config.ram_size;
        let too_big = |what, size| MachineError::DoesNotFit {
            what,
            size,
            ram: ram_size,
        };
        if !(16 << 20..=1 << 40).contains(&ram_size) {
            return Err(too_big("RAM", ram_size));
        }
        let image_size = u64::from_le_bytes(kernel[16..24].try_into().unwrap_or_default())
            .max(kernel.len() as u64);
        let kernel_end = KERNEL_OFFSET + image_size;
        if kernel_end > ram_size {
            return Err(too_big("the kernel", image_size));
        }
        let mut ram = Ram::new(RAM_BASE, ram_size as usize);
        ram.write_bytes(RAM_BASE + KERNEL_OFFSET, kernel)
            .ok_or(too_big("the kernel", image_size))?;

        // The device tree at the top of RAM, the initrd below it.
        let dtb_reserve: u64 = 64 << 10;
        let dtb_addr = RAM_BASE + ram_size - dtb_reserve;
        let initrd_range = match initrd {
            Some(data) => {
                let len = data.len() as u64;
                let start = (dtb_addr
                    .checked_sub(len)
                    .ok_or(too_big("the initrd", len))?)
                    & !0xfff;
                if start < RAM_BASE + kernel_end.next_multiple_of(0x20_0000) + (16 << 20) {
                    return Err(too_big("the initrd", len));
                }
                ram.write_bytes(start, data)
                    .ok_or(too_big("the initrd", len))?;
                Some((start, start + len))
            }
            None => None,
        };
        let dtb = fdt::build(&FdtConfig {
            ram_base: RAM_BASE,
            ram_size,
            cmdline: config.cmdline.clone(),
            initrd: initrd_range,
            num_devices: devices.len(),
        })
        .map_err(|e| MachineError::Fdt(e.to_string()))?;
        if dtb.len() as u64 > dtb_reserve {
            return Err(MachineError::Fdt("device tree too large".into()));
        }
        ram.write_bytes(dtb_addr, &dtb)
            .ok_or(MachineError::Fdt("device tree does not fit".into()))?;

        let mut bus = Bus::new(ram);
        bus.devices = devices;
        let mut cpu = Cpu::new(bus);
        cpu.pc = RAM_BASE + KERNEL_OFFSET;
        cpu.x[10] = 0;
        cpu.x[11] = dtb_addr;
        // What an SBI firmware would set up before entering the kernel.
        cpu.medeleg = 0xb1ff; // every exception but ecalls from S/M
        cpu.mideleg = irq::SSIP | irq::STIP | irq::SEIP;
        cpu.mcounteren = 7;
        // OpenSBI also opens cycle/time/instret to U-mode; Linux never writes scounteren.
        cpu.scounteren = 7;
        cpu.set_privilege(privilege::S);
        let start_ns = clock.now_ns();
        Ok(Machine {
            cpu,
            console,
            clock,
            timecmp: u64::MAX,
            start_ns,
            stop: Arc::new(AtomicBool::new(false)),
            reset: None,
        })
    }

    /// A flag that makes [`Machine::run`] return [`RunResult::Stopped`] when set
    /// (checked between slices, so within microseconds).
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Guest `time` in ticks now.
    fn now_ticks(&mut self) -> u64 {
        (self.clock.now_ns().saturating_sub(self.start_ns))
            / (1_000_000_000 / fdt::TIMEBASE_HZ as u64)
    }

    fn ticks_to_ns(&self, ticks: u64) -> u64 {
        ticks
            .saturating_mul(1_000_000_000 / fdt::TIMEBASE_HZ as u64)
            .saturating_add(self.start_ns)
    }

    fn update_time_and_irqs(&mut self, poll: bool) {
        let t = self.now_ticks().max(self.cpu.guest_time());
        self.cpu.time = t;
        if t >= self.timecmp {
            self.cpu.mip |= irq::STIP;
        } else {
            self.cpu.mip &= !irq::STIP;
        }
        self.cpu.bus.update_interrupts(poll);
        let plic = &self.cpu.bus.plic;
        let mut mip = self.cpu.mip & !(irq::SEIP | irq::MEIP);
        if plic.irq_pending(1) {
            mip |= irq::SEIP;
        }
        if plic.irq_pending(0) {
            mip |= irq::MEIP;
        }
        self.cpu.mip = mip;
    }

    /// Runs the guest until it resets, the stop flag is raised, it crashes, or
    /// `max_instructions` (if given) have been executed.
    pub fn run(&mut self, max_instructions: Option<u64>) -> RunResult {
        let limit = max_instructions.map(|m| self.cpu.instret.saturating_add(m));
        let mut slices = 0u64;
        loop {
            if let Some(r) = self.reset {
                tracing::info!(?r, instructions = self.cpu.instret, "guest reset");
                return r;
            }
            if self.stop.load(Ordering::Relaxed) {
                return RunResult::Stopped;
            }
            let budget = match limit {
                Some(l) if self.cpu.instret >= l => return RunResult::Budget,
                Some(l) => (l - self.cpu.instret).min(SLICE),
                None => SLICE,
            };
            slices += 1;
            self.update_time_and_irqs(slices.is_multiple_of(4));
            match self.cpu.run(budget) {
                Exit::Budget => {}
                Exit::Ecall { from } if from == privilege::S => crate::sbi::handle(self),
                Exit::Ecall { from } => {
                    return RunResult::Crashed {
                        cause: 8 + from as u64,
                        tval: 0,
                        pc: self.cpu.pc,
                    };
                }
                Exit::Wfi => self.idle(),
                Exit::MachineTrap { cause, tval, pc } => {
                    tracing::warn!(cause, tval, pc, "trap to M-mode: machine halted");
                    return RunResult::Crashed { cause, tval, pc };
                }
            }
        }
    }

    fn idle(&mut self) {
        self.update_time_and_irqs(true);
        if self.cpu.mip & self.cpu.mie != 0 {
            return;
        }
        let deadline = if self.timecmp == u64::MAX {
            u64::MAX
        } else {
            self.ticks_to_ns(self.timecmp)
        };
        self.clock.wait(deadline);
    }
}
