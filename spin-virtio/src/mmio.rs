//! The virtio-mmio transport, version 2 (virtio 1.2 §4.2.2): the register file
//! a driver sees in the device's 4 KiB window, the device status state machine,
//! and the interrupt line.
//!
//! How an emulator wires one device: map [`MMIO_SIZE`] bytes at an address of
//! its choice (announced in its device tree as `virtio,mmio` with an interrupt,
//! or on x86 with `virtio_mmio.device=4K@ADDR:IRQ`), route loads and stores in
//! that window to [`MmioTransport::read`] / [`MmioTransport::write`] with the
//! offset from the window's start, drive the device's interrupt line from
//! [`MmioTransport::interrupt_pending`] after each write and each
//! [`MmioTransport::poll`], and call `poll` from the main loop (and when the
//! host signals input) so the device can take host input.
//!
//! On riscv64 each device is a device-tree node such as
//!
//! ```text
//! virtio_mmio@10001000 {
//!     compatible = "virtio,mmio";
//!     reg = <0x0 0x10001000 0x0 0x1000>;
//!     interrupt-parent = <&plic>;
//!     interrupts = <1>;
//! };
//! ```
//!
//! with one interrupt source per device (the line is level-triggered: high
//! while the interrupt status register is non-zero; the driver lowers it by
//! writing InterruptACK). Registers take aligned 32-bit accesses; an emulator
//! that sees a 64-bit access should split it in two (low word first).

use serde::{Deserialize, Serialize};

use crate::device::{
    DeviceError, StateError, VIRTIO_F_RING_INDIRECT_DESC, VIRTIO_F_VERSION_1, VirtioDevice,
};
use crate::memory::GuestMemory;
use crate::queue::Queue;

/// Size of a virtio-mmio device's register window.
pub const MMIO_SIZE: u64 = 0x1000;

/// "virt" in little-endian: the MagicValue register.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// The virtio-mmio version implemented (modern only).
pub const MMIO_VERSION: u32 = 2;
/// The VendorID register: "SPIN" in little-endian.
pub const VENDOR_ID: u32 = 0x4e49_5053;

/// Register offsets of virtio-mmio version 2.
pub mod regs {
    /// Magic value (R).
    pub const MAGIC_VALUE: u64 = 0x000;
    /// Version (R).
    pub const VERSION: u64 = 0x004;
    /// Device id (R).
    pub const DEVICE_ID: u64 = 0x008;
    /// Vendor id (R).
    pub const VENDOR_ID: u64 = 0x00c;
    /// Device features, 32 bits selected by DEVICE_FEATURES_SEL (R).
    pub const DEVICE_FEATURES: u64 = 0x010;
    /// Device features word selector (W).
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    /// Driver features, 32 bits selected by DRIVER_FEATURES_SEL (W).
    pub const DRIVER_FEATURES: u64 = 0x020;
    /// Driver features word selector (W).
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    /// Queue selector (W).
    pub const QUEUE_SEL: u64 = 0x030;
    /// Maximum size of the selected queue, 0 if it does not exist (R).
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    /// Size of the selected queue (W).
    pub const QUEUE_NUM: u64 = 0x038;
    /// Selected queue ready (RW).
    pub const QUEUE_READY: u64 = 0x044;
    /// Queue notifier (W).
    pub const QUEUE_NOTIFY: u64 = 0x050;
    /// Interrupt status (R).
    pub const INTERRUPT_STATUS: u64 = 0x060;
    /// Interrupt acknowledge (W).
    pub const INTERRUPT_ACK: u64 = 0x064;
    /// Device status (RW).
    pub const STATUS: u64 = 0x070;
    /// Descriptor table address, low 32 bits (W).
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    /// Descriptor table address, high 32 bits (W).
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    /// Available ring address, low 32 bits (W).
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    /// Available ring address, high 32 bits (W).
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    /// Used ring address, low 32 bits (W).
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    /// Used ring address, high 32 bits (W).
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    /// Shared memory region selector (W).
    pub const SHM_SEL: u64 = 0x0ac;
    /// Shared memory region length, low (R): all ones, there is none.
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    /// Shared memory region length, high (R).
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    /// Shared memory region base, low (R).
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    /// Shared memory region base, high (R).
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    /// Queue reset (RW; VIRTIO_F_RING_RESET is not offered).
    pub const QUEUE_RESET: u64 = 0x0c0;
    /// Configuration atomicity value (R).
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    /// Start of device configuration space.
    pub const CONFIG: u64 = 0x100;
}

/// Device status bit: the guest found the device.
pub const STATUS_ACKNOWLEDGE: u32 = 1;
/// Device status bit: the guest has a driver for it.
pub const STATUS_DRIVER: u32 = 2;
/// Device status bit: the driver is ready.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Device status bit: feature negotiation is complete.
pub const STATUS_FEATURES_OK: u32 = 8;
/// Device status bit: the device hit an error and needs a reset.
pub const STATUS_DEVICE_NEEDS_RESET: u32 = 64;
/// Device status bit: the driver gave up on the device.
pub const STATUS_FAILED: u32 = 128;

/// Interrupt status bit: used buffers were returned.
pub const INT_USED_RING: u32 = 1;
/// Interrupt status bit: the configuration changed (or the device needs a reset).
pub const INT_CONFIG: u32 = 2;

/// The transport's registers and queues as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioState {
    /// Selected device features word.
    pub device_features_sel: u32,
    /// Selected driver features word.
    pub driver_features_sel: u32,
    /// Features the driver wrote.
    pub driver_features: u64,
    /// Selected queue.
    pub queue_sel: u32,
    /// Device status.
    pub status: u32,
    /// Interrupt status (the line is high while non-zero).
    pub interrupt_status: u32,
    /// Configuration generation.
    pub config_generation: u32,
    /// The device's queues.
    pub queues: Vec<Queue>,
}

/// A virtio device behind a virtio-mmio (version 2) register window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    state: MmioState,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device.device_type())
            .field("state", &self.state)
            .finish()
    }
}

impl MmioTransport {
    /// Puts `device` behind a fresh register window (status 0, no queue ready).
    pub fn new(device: Box<dyn VirtioDevice>) -> Self {
        let queues = device
            .queue_max_sizes()
            .into_iter()
            .map(Queue::new)
            .collect();
        Self {
            device,
            state: MmioState {
                device_features_sel: 0,
                driver_features_sel: 0,
                driver_features: 0,
                queue_sel: 0,
                status: 0,
                interrupt_status: 0,
                config_generation: 0,
                queues,
            },
        }
    }

    /// Puts `device` (already restored to its own saved state) behind a
    /// register window restored from `state` (a snapshot taken with
    /// [`MmioTransport::state`]).
    pub fn with_state(device: Box<dyn VirtioDevice>, state: MmioState) -> Result<Self, StateError> {
        let max = device.queue_max_sizes();
        let saved: Vec<u16> = state.queues.iter().map(|q| q.max_size).collect();
        if max != saved {
            return Err(StateError(format!("queues {saved:?}, device has {max:?}")));
        }
        Ok(Self { device, state })
    }

    /// The virtio device id.
    pub fn device_type(&self) -> u32 {
        self.device.device_type()
    }

    /// The device behind the transport.
    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    /// The device behind the transport, mutably.
    pub fn device_mut(&mut self) -> &mut dyn VirtioDevice {
        self.device.as_mut()
    }

    /// The device as its concrete type, if it is a `T`.
    pub fn device_as<T: VirtioDevice>(&self) -> Option<&T> {
        let any: &dyn std::any::Any = self.device.as_ref();
        any.downcast_ref()
    }

    /// The device as its concrete type, mutably, if it is a `T`.
    pub fn device_as_mut<T: VirtioDevice>(&mut self) -> Option<&mut T> {
        let any: &mut dyn std::any::Any = self.device.as_mut();
        any.downcast_mut()
    }

    /// The transport's registers and queues.
    pub fn state(&self) -> &MmioState {
        &self.state
    }

    /// All features offered: the device's plus VERSION_1 and indirect descriptors.
    pub fn offered_features(&self) -> u64 {
        self.device.features() | 1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_F_RING_INDIRECT_DESC
    }

    /// Level of the device's interrupt line.
    pub fn interrupt_pending(&self) -> bool {
        self.state.interrupt_status != 0
    }

    /// Whether the driver finished initialisation and the device is working.
    pub fn is_active(&self) -> bool {
        let s = self.state.status;
        s & STATUS_DRIVER_OK != 0 && s & (STATUS_DEVICE_NEEDS_RESET | STATUS_FAILED) == 0
    }

    /// Reads a register or device configuration space. Registers take 32-bit
    /// accesses only (others read 0); configuration space takes 1, 2 and 4.
    pub fn read(&mut self, offset: u64, size: u8) -> u32 {
        if offset >= regs::CONFIG {
            if !matches!(size, 1 | 2 | 4) || offset.saturating_add(u64::from(size)) > MMIO_SIZE {
                tracing::warn!(offset, size, "bad virtio-mmio config read");
                return 0;
            }
            let mut b = [0u8; 4];
            self.device
                .read_config(offset - regs::CONFIG, &mut b[..usize::from(size)]);
            return u32::from_le_bytes(b);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            tracing::warn!(offset, size, "bad virtio-mmio register read");
            return 0;
        }
        let st = &self.state;
        let queue = st.queues.get(st.queue_sel as usize);
        match offset {
            regs::MAGIC_VALUE => MAGIC_VALUE,
            regs::VERSION => MMIO_VERSION,
            regs::DEVICE_ID => self.device.device_type(),
            regs::VENDOR_ID => VENDOR_ID,
            regs::DEVICE_FEATURES => match st.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            regs::QUEUE_NUM_MAX => queue.map_or(0, |q| u32::from(q.max_size)),
            regs::QUEUE_NUM => queue.map_or(0, |q| u32::from(q.size)),
            regs::QUEUE_READY => queue.map_or(0, |q| u32::from(q.ready)),
            regs::INTERRUPT_STATUS => st.interrupt_status,
            regs::STATUS => st.status,
            regs::QUEUE_DESC_LOW => queue.map_or(0, |q| q.desc_table as u32),
            regs::QUEUE_DESC_HIGH => queue.map_or(0, |q| (q.desc_table >> 32) as u32),
            regs::QUEUE_DRIVER_LOW => queue.map_or(0, |q| q.avail_ring as u32),
            regs::QUEUE_DRIVER_HIGH => queue.map_or(0, |q| (q.avail_ring >> 32) as u32),
            regs::QUEUE_DEVICE_LOW => queue.map_or(0, |q| q.used_ring as u32),
            regs::QUEUE_DEVICE_HIGH => queue.map_or(0, |q| (q.used_ring >> 32) as u32),
            regs::SHM_LEN_LOW | regs::SHM_LEN_HIGH | regs::SHM_BASE_LOW | regs::SHM_BASE_HIGH => {
                u32::MAX
            }
            regs::QUEUE_RESET => 0,
            regs::CONFIG_GENERATION => st.config_generation,
            _ => {
                tracing::debug!(
                    offset,
                    "read of a write-only or unknown virtio-mmio register"
                );
                0
            }
        }
    }

    /// Writes a register or device configuration space; a queue notification
    /// runs the device right away (it may raise the interrupt).
    pub fn write(&mut self, offset: u64, size: u8, value: u32, mem: &mut dyn GuestMemory) {
        if offset >= regs::CONFIG {
            if !matches!(size, 1 | 2 | 4) || offset.saturating_add(u64::from(size)) > MMIO_SIZE {
                tracing::warn!(offset, size, "bad virtio-mmio config write");
                return;
            }
            let b = value.to_le_bytes();
            self.device
                .write_config(offset - regs::CONFIG, &b[..usize::from(size)]);
            return;
        }
        if size != 4 || !offset.is_multiple_of(4) {
            tracing::warn!(offset, size, "bad virtio-mmio register write");
            return;
        }
        match offset {
            regs::DEVICE_FEATURES_SEL => self.state.device_features_sel = value,
            regs::DRIVER_FEATURES_SEL => self.state.driver_features_sel = value,
            regs::DRIVER_FEATURES => self.write_driver_features(value),
            regs::QUEUE_SEL => self.state.queue_sel = value,
            regs::QUEUE_NUM => {
                self.with_idle_queue(|q| q.size = value.min(u32::from(u16::MAX)) as u16)
            }
            regs::QUEUE_DESC_LOW => self.with_idle_queue(|q| set_low(&mut q.desc_table, value)),
            regs::QUEUE_DESC_HIGH => self.with_idle_queue(|q| set_high(&mut q.desc_table, value)),
            regs::QUEUE_DRIVER_LOW => self.with_idle_queue(|q| set_low(&mut q.avail_ring, value)),
            regs::QUEUE_DRIVER_HIGH => self.with_idle_queue(|q| set_high(&mut q.avail_ring, value)),
            regs::QUEUE_DEVICE_LOW => self.with_idle_queue(|q| set_low(&mut q.used_ring, value)),
            regs::QUEUE_DEVICE_HIGH => self.with_idle_queue(|q| set_high(&mut q.used_ring, value)),
            regs::QUEUE_READY => self.write_queue_ready(value, mem),
            regs::QUEUE_NOTIFY => self.notify(value, mem),
            regs::INTERRUPT_ACK => self.state.interrupt_status &= !value,
            regs::STATUS => self.write_status(value, mem),
            regs::SHM_SEL | regs::QUEUE_RESET => {}
            _ => tracing::debug!(
                offset,
                value,
                "write to a read-only or unknown virtio-mmio register"
            ),
        }
    }

    /// Lets the device take host input (frames, console input) and finish
    /// pending work. Returns true if it raised an interrupt.
    pub fn poll(&mut self, mem: &mut dyn GuestMemory) -> bool {
        if !self.is_active() {
            return false;
        }
        let result = self.device.poll(&mut self.state.queues, mem);
        self.after_device(result, mem)
    }

    fn write_driver_features(&mut self, value: u32) {
        let s = self.state.status;
        if s & STATUS_DRIVER == 0 || s & STATUS_FEATURES_OK != 0 {
            tracing::warn!(status = s, "driver features written outside negotiation");
            return;
        }
        let f = &mut self.state.driver_features;
        match self.state.driver_features_sel {
            0 => *f = (*f & !0xffff_ffff) | u64::from(value),
            1 => *f = (*f & 0xffff_ffff) | u64::from(value) << 32,
            sel => tracing::debug!(sel, value, "driver features beyond 64 bits ignored"),
        }
    }

    /// Applies `f` to the selected queue if it exists and is not ready.
    fn with_idle_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        match self.state.queues.get_mut(self.state.queue_sel as usize) {
            Some(q) if !q.ready => f(q),
            Some(_) => tracing::warn!(queue = self.state.queue_sel, "configuring a ready queue"),
            None => tracing::warn!(
                queue = self.state.queue_sel,
                "configuring a queue that does not exist"
            ),
        }
    }

    fn write_queue_ready(&mut self, value: u32, mem: &mut dyn GuestMemory) {
        let sel = self.state.queue_sel;
        let indirect = self.state.driver_features & 1 << VIRTIO_F_RING_INDIRECT_DESC != 0;
        let Some(q) = self.state.queues.get_mut(sel as usize) else {
            tracing::warn!(queue = sel, "QueueReady for a queue that does not exist");
            return;
        };
        if value == 0 {
            q.ready = false;
            return;
        }
        if q.ready {
            return;
        }
        if let Err(e) = q.validate() {
            tracing::warn!(queue = sel, error = %e, "driver enabled an invalid queue; left disabled");
            return;
        }
        q.ready = true;
        q.next_avail = 0;
        q.next_used = 0;
        q.signal_pending = false;
        q.indirect = indirect;
        // A queue enabled after DRIVER_OK may already hold buffers.
        if self.is_active() {
            self.notify(sel, mem);
        }
    }

    fn notify(&mut self, queue: u32, mem: &mut dyn GuestMemory) {
        if !self.is_active() {
            tracing::debug!(queue, "notification while the device is not active");
            return;
        }
        let index = queue as usize;
        if !self.state.queues.get(index).is_some_and(|q| q.ready) {
            tracing::debug!(queue, "notification of a queue that is not ready");
            return;
        }
        let result = self.device.queue_notify(index, &mut self.state.queues, mem);
        self.after_device(result, mem);
    }

    /// Turns a device call's outcome into interrupts; returns true if it raised one.
    fn after_device(&mut self, result: Result<(), DeviceError>, mem: &mut dyn GuestMemory) -> bool {
        let before = self.state.interrupt_status;
        if let Err(e) = result {
            self.fail(e);
            return self.state.interrupt_status & !before != 0;
        }
        let mut used = false;
        let mut error = None;
        for q in self.state.queues.iter_mut() {
            match q.take_signal(mem) {
                Ok(s) => used |= s,
                Err(e) => error = Some(e),
            }
        }
        if used {
            self.state.interrupt_status |= INT_USED_RING;
        }
        if self.device.take_config_changed() {
            self.state.config_generation = self.state.config_generation.wrapping_add(1);
            self.state.interrupt_status |= INT_CONFIG;
        }
        if let Some(e) = error {
            self.fail(e.into());
        }
        self.state.interrupt_status & !before != 0
    }

    /// The device hit a fault: it needs a reset, and the driver is told.
    fn fail(&mut self, error: DeviceError) {
        tracing::warn!(device = self.device.device_type(), %error, "virtio device needs reset");
        self.state.status |= STATUS_DEVICE_NEEDS_RESET;
        if self.state.status & STATUS_DRIVER_OK != 0 {
            self.state.interrupt_status |= INT_CONFIG;
        }
    }

    fn reset(&mut self) {
        self.device.reset();
        let st = &mut self.state;
        st.queues.iter_mut().for_each(Queue::reset);
        st.status = 0;
        st.interrupt_status = 0;
        st.driver_features = 0;
        st.device_features_sel = 0;
        st.driver_features_sel = 0;
        st.queue_sel = 0;
    }

    fn write_status(&mut self, value: u32, mem: &mut dyn GuestMemory) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.state.status & !STATUS_DEVICE_NEEDS_RESET;
        let mut new = value & !STATUS_DEVICE_NEEDS_RESET;
        if new & old != old {
            tracing::warn!(
                old,
                new,
                "driver cleared status bits without a reset; ignored"
            );
            return;
        }
        let added = new & !old;
        let order = [
            STATUS_ACKNOWLEDGE,
            STATUS_DRIVER,
            STATUS_FEATURES_OK,
            STATUS_DRIVER_OK,
        ];
        for (i, bit) in order.iter().enumerate().skip(1) {
            if added & bit != 0 && order[..i].iter().any(|b| new & b == 0) {
                tracing::warn!(old, new, "status bit set out of order; ignored");
                new &= !bit;
            }
        }
        if added & STATUS_FEATURES_OK != 0 && new & STATUS_FEATURES_OK != 0 {
            let f = self.state.driver_features;
            let unknown = f & !self.offered_features();
            if f & 1 << VIRTIO_F_VERSION_1 == 0 || unknown != 0 {
                tracing::warn!(features = f, unknown, "feature set refused");
                new &= !(STATUS_FEATURES_OK | STATUS_DRIVER_OK);
            }
        }
        let activate = added & STATUS_DRIVER_OK != 0 && new & STATUS_DRIVER_OK != 0;
        self.state.status = new | (self.state.status & STATUS_DEVICE_NEEDS_RESET);
        if activate {
            if let Err(e) = self.device.activate(self.state.driver_features) {
                self.fail(e);
                return;
            }
            // Buffers may have been made available before DRIVER_OK.
            for i in 0..self.state.queues.len() {
                if self.state.queues[i].ready && self.is_active() {
                    self.notify(i as u32, mem);
                }
            }
        }
    }
}

fn set_low(v: &mut u64, value: u32) {
    *v = (*v & !0xffff_ffff) | u64::from(value);
}

fn set_high(v: &mut u64, value: u32) {
    *v = (*v & 0xffff_ffff) | u64::from(value) << 32;
}
