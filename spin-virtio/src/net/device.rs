//! The virtio-net device logic.

use serde::{Deserialize, Serialize};

use super::*;
use crate::device::{DeviceError, TYPE_NET, VirtioDevice, read_config_bytes};
use crate::memory::GuestMemory;
use crate::queue::Queue;

/// The host side of the network card.
pub trait NetBackend: Send {
    /// Takes one Ethernet frame the guest sent (without the virtio header).
    /// The backend may drop it, as a congested link would.
    fn send(&mut self, frame: &[u8]);

    /// Moves the next frame waiting for the guest into `buf` (at least
    /// [`MAX_FRAME_LEN`] bytes) and returns its length; 0 if none waits.
    /// Called only when the guest has a receive buffer posted.
    fn recv(&mut self, buf: &mut [u8]) -> usize;
}

/// A network card's state as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// Frames sent by the guest.
    pub tx_frames: u64,
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Frames dropped (too long, or no room in the guest's buffer).
    pub dropped: u64,
}

/// virtio-net over a [`NetBackend`].
pub struct NetDevice {
    backend: Box<dyn NetBackend>,
    config: Vec<u8>,
    state: NetState,
    frame: Vec<u8>,
}

impl NetDevice {
    /// A card with MAC address `mac`, link up.
    pub fn new(backend: Box<dyn NetBackend>, mac: [u8; 6]) -> Self {
        let mut config = vec![0u8; 8];
        config[0..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        Self {
            backend,
            config,
            state: NetState::default(),
            frame: vec![0; NET_HDR_LEN + MAX_FRAME_LEN],
        }
    }

    /// The device's state.
    pub fn state(&self) -> &NetState {
        &self.state
    }

    /// Restores a saved state.
    pub fn set_state(&mut self, state: NetState) {
        self.state = state;
    }

    fn transmit(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let Some(q) = queues.get_mut(TX_QUEUE).filter(|q| q.ready) else {
            return Ok(());
        };
        for _ in 0..q.size {
            let Some(chain) = q.pop(mem)? else { break };
            let len = chain.readable_len();
            if len < NET_HDR_LEN as u64 || len > (NET_HDR_LEN + MAX_FRAME_LEN) as u64 {
                tracing::debug!(len, "virtio-net: dropped a transmitted frame of bad length");
                self.state.dropped += 1;
            } else {
                let n = chain.reader().read(mem, &mut self.frame[..len as usize])?;
                self.backend.send(&self.frame[NET_HDR_LEN..n]);
                self.state.tx_frames += 1;
            }
            q.add_used(mem, chain.head, 0)?;
        }
        Ok(())
    }

    fn receive(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let Some(q) = queues.get_mut(RX_QUEUE).filter(|q| q.ready) else {
            return Ok(());
        };
        for _ in 0..q.size {
            let Some(chain) = q.pop(mem)? else { break };
            let n = self
                .backend
                .recv(&mut self.frame[NET_HDR_LEN..])
                .min(MAX_FRAME_LEN);
            if n == 0 {
                q.undo_pop();
                break;
            }
            let total = NET_HDR_LEN + n;
            if chain.writable_len() < total as u64 {
                tracing::debug!(
                    len = n,
                    room = chain.writable_len(),
                    "virtio-net: guest buffer too small; frame dropped"
                );
                self.state.dropped += 1;
                q.add_used(mem, chain.head, 0)?;
                continue;
            }
            // No offloads: flags, gso_type, hdr_len, gso_size, csum_* zero; num_buffers 1.
            self.frame[..NET_HDR_LEN].fill(0);
            self.frame[10..12].copy_from_slice(&1u16.to_le_bytes());
            chain.writer().write(mem, &self.frame[..total])?;
            q.add_used(mem, chain.head, total as u32)?;
            self.state.rx_frames += 1;
        }
        Ok(())
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 2]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn reset(&mut self) {}

    fn queue_notify(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        match queue {
            TX_QUEUE => self.transmit(queues, mem),
            RX_QUEUE => self.receive(queues, mem),
            _ => Ok(()),
        }
    }

    fn poll(&mut self, queues: &mut [Queue], mem: &mut dyn GuestMemory) -> Result<(), DeviceError> {
        self.transmit(queues, mem)?;
        self.receive(queues, mem)
    }
}
