//! The devices of a spin guest, in the order every emulator maps them.
//!
//! Order matters to the guest: the first block device is `/dev/vda` (the image).
//! Each emulator maps transport `i` at its own base address plus `i * MMIO_SIZE`
//! with interrupt line `first_irq + i`, and announces them (device tree on riscv64,
//! kernel command line on x86-64).

use crate::MmioTransport;
use crate::block::{BlockBackend, BlockDevice};
use crate::console::{ConsoleBackend, ConsoleDevice, PortConfig};
use crate::net::{NetBackend, NetDevice};
use crate::p9::{FsBackend, P9Device};

/// What a guest is given; absent parts get no device.
#[derive(Default)]
pub struct GuestDevices {
    /// The root image (`/dev/vda`).
    pub disk: Option<Box<dyn BlockBackend>>,
    /// The multiport console and its ports.
    pub console: Option<(Box<dyn ConsoleBackend>, Vec<PortConfig>)>,
    /// The network card and its MAC address.
    pub net: Option<(Box<dyn NetBackend>, [u8; 6])>,
    /// 9p shares, each with its mount tag.
    pub shares: Vec<(String, Box<dyn FsBackend>)>,
}

impl GuestDevices {
    /// The transports, in mapping order: disk, console, network, shares.
    pub fn into_transports(self) -> Vec<MmioTransport> {
        let mut out = Vec::new();
        if let Some(disk) = self.disk {
            out.push(MmioTransport::new(Box::new(BlockDevice::new(
                disk,
                "spin-image",
            ))));
        }
        if let Some((backend, ports)) = self.console {
            out.push(MmioTransport::new(Box::new(ConsoleDevice::new(
                backend, ports,
            ))));
        }
        if let Some((backend, mac)) = self.net {
            out.push(MmioTransport::new(Box::new(NetDevice::new(backend, mac))));
        }
        for (tag, backend) in self.shares {
            out.push(MmioTransport::new(Box::new(P9Device::new(backend, &tag))));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::VecBlockBackend;
    use crate::device::{TYPE_BLOCK, TYPE_CONSOLE};

    struct NoConsole;
    impl ConsoleBackend for NoConsole {
        fn write(&mut self, _port: usize, data: &[u8]) -> usize {
            data.len()
        }
        fn read(&mut self, _port: usize, _buf: &mut [u8]) -> usize {
            0
        }
    }

    #[test]
    fn disk_comes_first() {
        let devices = GuestDevices {
            disk: Some(Box::new(VecBlockBackend::new(vec![0; 4096], true))),
            console: Some((Box::new(NoConsole), vec![PortConfig::named("a")])),
            ..GuestDevices::default()
        };
        let types: Vec<u32> = devices
            .into_transports()
            .iter()
            .map(|t| t.device_type())
            .collect();
        assert_eq!(types, vec![TYPE_BLOCK, TYPE_CONSOLE]);
    }
}
