//! The virtio-9p device logic.

use serde::{Deserialize, Serialize};

use super::*;
use crate::device::{DeviceError, TYPE_9P, VirtioDevice, read_config_bytes};
use crate::memory::GuestMemory;
use crate::queue::{DescriptorChain, Queue};

/// The 9P2000.L server behind the device (in spin: a host import).
pub trait FsBackend: Send {
    /// Answers one T-message (`request`, size field included) with one
    /// R-message appended to `response` (which comes in empty).
    fn call(&mut self, request: &[u8], response: &mut Vec<u8>);
}

/// A 9P device's state as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct P9State {
    /// Requests answered.
    pub requests: u64,
    /// Chains returned unanswered (malformed requests).
    pub malformed: u64,
}

/// virtio-9p over an [`FsBackend`].
pub struct P9Device {
    backend: Box<dyn FsBackend>,
    config: Vec<u8>,
    state: P9State,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl P9Device {
    /// A 9P transport exporting `backend` under mount tag `tag` (cut to
    /// [`MAX_TAG_LEN`] bytes).
    pub fn new(backend: Box<dyn FsBackend>, tag: &str) -> Self {
        let tag = &tag.as_bytes()[..tag.len().min(MAX_TAG_LEN)];
        let mut config = (tag.len() as u16).to_le_bytes().to_vec();
        config.extend_from_slice(tag);
        Self {
            backend,
            config,
            state: P9State::default(),
            request: Vec::new(),
            response: Vec::new(),
        }
    }

    /// The device's state.
    pub fn state(&self) -> &P9State {
        &self.state
    }

    /// Restores a saved state.
    pub fn set_state(&mut self, state: P9State) {
        self.state = state;
    }

    /// Answers one chain; returns the used length (0: malformed, unanswered).
    fn answer(
        &mut self,
        chain: &DescriptorChain,
        mem: &mut dyn GuestMemory,
    ) -> Result<u32, DeviceError> {
        let mut reader = chain.reader();
        let mut head = [0u8; 7];
        if reader.read(mem, &mut head)? < head.len() {
            tracing::warn!("9p request shorter than a message header");
            return Ok(0);
        }
        let size = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
        if !(7..=MAX_MESSAGE_LEN).contains(&size) || u64::from(size) > chain.readable_len() {
            tracing::warn!(
                size,
                readable = chain.readable_len(),
                "9p request of bad size"
            );
            return Ok(0);
        }
        self.request.clear();
        self.request.extend_from_slice(&head);
        self.request.resize(size as usize, 0);
        reader.read(mem, &mut self.request[7..])?;
        self.response.clear();
        self.backend.call(&self.request, &mut self.response);
        let room = chain.writable_len();
        if self.response.len() as u64 > room || self.response.len() < 7 {
            tracing::warn!(
                len = self.response.len(),
                room,
                "9p reply does not fit; answered with Rlerror"
            );
            self.response.clear();
            self.response.extend_from_slice(&11u32.to_le_bytes());
            self.response.push(RLERROR);
            self.response.extend_from_slice(&head[5..7]);
            self.response.extend_from_slice(&EMSGSIZE.to_le_bytes());
            if room < 11 {
                return Ok(0);
            }
        }
        let n = chain.writer().write(mem, &self.response)?;
        Ok(n as u32)
    }
}

impl VirtioDevice for P9Device {
    fn device_type(&self) -> u32 {
        TYPE_9P
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_9P_MOUNT_TAG
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
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
        let q = queues
            .get_mut(queue)
            .ok_or_else(|| DeviceError::Other(format!("no queue {queue}")))?;
        for _ in 0..q.size {
            let Some(chain) = q.pop(mem)? else { break };
            let len = self.answer(&chain, mem)?;
            if len == 0 {
                self.state.malformed += 1;
            } else {
                self.state.requests += 1;
            }
            q.add_used(mem, chain.head, len)?;
        }
        Ok(())
    }
}
