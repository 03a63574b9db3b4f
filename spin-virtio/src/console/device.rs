//! The virtio-console device logic.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::*;
use crate::device::{DeviceError, StateError, TYPE_CONSOLE, VirtioDevice, read_config_bytes};
use crate::memory::GuestMemory;
use crate::queue::Queue;

/// Largest piece moved between the guest and the backend at once.
const CHUNK: usize = 64 * 1024;

/// The host side of the console's ports.
///
/// End of file: `read` returning 0 only means "nothing now". To end a port's
/// input for good, return true from [`ConsoleBackend::input_closed`]: once the
/// guest has taken all input, the device tells it the host closed the port
/// (PORT_OPEN 0); the guest's reads then return end of file. In Linux a port
/// whose host side is closed also blocks the guest's writes, so close only
/// ports that carry input alone (or carry the end of input out of band, e.g.
/// on a control port).
pub trait ConsoleBackend: Send {
    /// Output of the guest on `port`. Returns how many bytes (a prefix of
    /// `data`) the host took; fewer than `data.len()` means "full now": the
    /// rest stays in the guest's buffer and is offered again on a later poll.
    fn write(&mut self, port: usize, data: &[u8]) -> usize;

    /// Input for the guest on `port`: fills a prefix of `buf` and returns its
    /// length; 0 means nothing now (asked again on a later poll).
    fn read(&mut self, port: usize, buf: &mut [u8]) -> usize;

    /// Whether the input of `port` has ended for good (see the trait's doc).
    fn input_closed(&mut self, port: usize) -> bool {
        let _ = port;
        false
    }
}

/// How a port is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// The port's name (`/sys/class/virtio-ports/*/name`); empty for none.
    pub name: String,
    /// Whether the guest should use it as a console (hvc).
    pub console: bool,
}

impl PortConfig {
    /// A named port that is not a console.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
            console: false,
        }
    }
}

/// A guest buffer the backend has only taken part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOutput {
    /// Head of the chain (still owned by the device).
    pub head: u16,
    /// Bytes of it already taken by the backend.
    pub offset: u64,
}

/// One port's state as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortState {
    /// Name announced with PORT_NAME.
    pub name: String,
    /// Announced as a console.
    pub console: bool,
    /// DEVICE_ADD was queued.
    pub added: bool,
    /// The driver answered PORT_READY.
    pub ready: bool,
    /// The guest has the port open.
    pub guest_open: bool,
    /// The guest was told the host side is open.
    pub host_open: bool,
    /// Output the backend has not fully taken yet.
    pub pending_output: Option<PendingOutput>,
}

/// The console's state as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleState {
    /// The ports.
    pub ports: Vec<PortState>,
    /// Whether MULTIPORT was negotiated.
    pub multiport: bool,
    /// Control messages waiting for a buffer of the driver's.
    pub control_out: VecDeque<Vec<u8>>,
}

/// virtio-console with named ports over a [`ConsoleBackend`].
pub struct ConsoleDevice {
    backend: Box<dyn ConsoleBackend>,
    state: ConsoleState,
    config: Vec<u8>,
    bounce: Vec<u8>,
}

impl ConsoleDevice {
    /// A console with these ports (port ids are their indices). At least one
    /// port is needed; the first is port 0.
    pub fn new(backend: Box<dyn ConsoleBackend>, ports: Vec<PortConfig>) -> Self {
        assert!(!ports.is_empty(), "a console needs at least one port");
        let mut config = vec![0u8; 12];
        config[4..8].copy_from_slice(&(ports.len() as u32).to_le_bytes());
        let ports = ports
            .into_iter()
            .map(|p| PortState {
                name: p.name,
                console: p.console,
                added: false,
                ready: false,
                guest_open: false,
                host_open: false,
                pending_output: None,
            })
            .collect();
        let state = ConsoleState {
            ports,
            multiport: false,
            control_out: VecDeque::new(),
        };
        Self {
            backend,
            state,
            config,
            bounce: vec![0; CHUNK],
        }
    }

    /// The device's state.
    pub fn state(&self) -> &ConsoleState {
        &self.state
    }

    /// Restores a saved state; the ports must be the ones this device was made with.
    pub fn set_state(&mut self, state: ConsoleState) -> Result<(), StateError> {
        let names = |s: &ConsoleState| {
            s.ports
                .iter()
                .map(|p| (p.name.clone(), p.console))
                .collect::<Vec<_>>()
        };
        if names(&state) != names(&self.state) {
            return Err(StateError(format!(
                "ports {:?}, device has {:?}",
                names(&state),
                names(&self.state)
            )));
        }
        self.state = state;
        Ok(())
    }

    /// The id of the port called `name`.
    pub fn port_id(&self, name: &str) -> Option<usize> {
        self.state.ports.iter().position(|p| p.name == name)
    }

    fn send_control(&mut self, msg: ControlMessage) {
        // Bounded: every message answers a once-per-port event.
        self.state.control_out.push_back(msg.encode());
    }

    /// Hands queued control messages to the driver's control receive buffers.
    fn flush_control(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let Some(q) = queues.get_mut(CONTROL_RX_QUEUE).filter(|q| q.ready) else {
            return Ok(());
        };
        while let Some(msg) = self.state.control_out.front() {
            let Some(chain) = q.pop(mem)? else { break };
            let n = chain.writer().write(mem, msg)?;
            if n < msg.len() {
                tracing::warn!(
                    len = msg.len(),
                    n,
                    "console control buffer too small; message cut"
                );
            }
            q.add_used(mem, chain.head, n as u32)?;
            self.state.control_out.pop_front();
        }
        Ok(())
    }

    /// Takes the driver's control messages.
    fn handle_control_tx(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let Some(q) = queues.get_mut(CONTROL_TX_QUEUE).filter(|q| q.ready) else {
            return Ok(());
        };
        for _ in 0..q.size {
            let Some(chain) = q.pop(mem)? else { break };
            let mut raw = [0u8; ControlMessage::HEADER_LEN];
            let n = chain.reader().read(mem, &mut raw)?;
            q.add_used(mem, chain.head, 0)?;
            match ControlMessage::decode(&raw[..n]) {
                Some(msg) => self.handle_control(msg),
                None => tracing::warn!(len = n, "short console control message"),
            }
        }
        Ok(())
    }

    fn handle_control(&mut self, msg: ControlMessage) {
        tracing::debug!(
            id = msg.id,
            event = msg.event,
            value = msg.value,
            "console control message"
        );
        let port = usize::try_from(msg.id)
            .ok()
            .filter(|&p| p < self.state.ports.len());
        match (msg.event, port) {
            (VIRTIO_CONSOLE_DEVICE_READY, _) => {
                if msg.value != 1 {
                    tracing::warn!("console driver failed to initialise");
                    return;
                }
                for id in 0..self.state.ports.len() {
                    if !std::mem::replace(&mut self.state.ports[id].added, true) {
                        self.send_control(ControlMessage::new(
                            id as u32,
                            VIRTIO_CONSOLE_DEVICE_ADD,
                            0,
                        ));
                    }
                }
            }
            (VIRTIO_CONSOLE_PORT_READY, Some(id)) => {
                if msg.value != 1 {
                    tracing::warn!(port = id, "console driver failed to add a port");
                    return;
                }
                let p = &mut self.state.ports[id];
                if std::mem::replace(&mut p.ready, true) {
                    return;
                }
                let (console, name) = (p.console, p.name.clone());
                p.host_open = true;
                if console {
                    self.send_control(ControlMessage::new(
                        id as u32,
                        VIRTIO_CONSOLE_CONSOLE_PORT,
                        1,
                    ));
                }
                if !name.is_empty() {
                    let mut m = ControlMessage::new(id as u32, VIRTIO_CONSOLE_PORT_NAME, 1);
                    m.payload = name.into_bytes();
                    self.send_control(m);
                }
                self.send_control(ControlMessage::new(id as u32, VIRTIO_CONSOLE_PORT_OPEN, 1));
            }
            (VIRTIO_CONSOLE_PORT_OPEN, Some(id)) => {
                self.state.ports[id].guest_open = msg.value != 0
            }
            (event, _) => tracing::warn!(id = msg.id, event, "unexpected console control message"),
        }
    }

    /// Moves the guest's output on `port` to the backend, as far as it takes it.
    fn drain_output(
        &mut self,
        port: usize,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let Some(q) = queues.get_mut(tx_queue(port)).filter(|q| q.ready) else {
            return Ok(());
        };
        // Each chain is visited once per call at most: bounded work.
        for _ in 0..=q.size {
            let pending = match self.state.ports[port].pending_output {
                Some(p) => p,
                None => match q.pop(mem)? {
                    Some(chain) => PendingOutput {
                        head: chain.head,
                        offset: 0,
                    },
                    None => return Ok(()),
                },
            };
            self.state.ports[port].pending_output = Some(pending);
            let chain = q.chain(mem, pending.head)?;
            let mut reader = chain.reader();
            reader.skip(pending.offset);
            let mut offset = pending.offset;
            let mut blocked = false;
            loop {
                let n = reader.read(mem, &mut self.bounce)?;
                if n == 0 {
                    break;
                }
                let taken = self.backend.write(port, &self.bounce[..n]).min(n);
                offset += taken as u64;
                if taken < n {
                    blocked = true;
                    break;
                }
            }
            if blocked {
                self.state.ports[port].pending_output = Some(PendingOutput {
                    head: pending.head,
                    offset,
                });
                return Ok(());
            }
            self.state.ports[port].pending_output = None;
            q.add_used(mem, pending.head, 0)?;
        }
        Ok(())
    }

    /// Moves host input for `port` into the guest's receive buffers.
    fn fill_input(
        &mut self,
        port: usize,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        let p = &self.state.ports[port];
        let open = p.guest_open || !self.state.multiport;
        if !open || !p.host_open {
            return Ok(());
        }
        let Some(q) = queues.get_mut(rx_queue(port)).filter(|q| q.ready) else {
            return Ok(());
        };
        let mut exhausted = false;
        for _ in 0..q.size {
            let Some(chain) = q.pop(mem)? else { break };
            let cap = chain.writable_len().min(CHUNK as u64) as usize;
            let n = if cap == 0 {
                0
            } else {
                self.backend.read(port, &mut self.bounce[..cap]).min(cap)
            };
            if n == 0 {
                q.undo_pop();
                exhausted = true;
                break;
            }
            chain.writer().write(mem, &self.bounce[..n])?;
            q.add_used(mem, chain.head, n as u32)?;
        }
        if exhausted && self.state.multiport && self.backend.input_closed(port) {
            self.state.ports[port].host_open = false;
            self.send_control(ControlMessage::new(
                port as u32,
                VIRTIO_CONSOLE_PORT_OPEN,
                0,
            ));
        }
        Ok(())
    }

    fn run_all(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        if self.state.multiport {
            self.handle_control_tx(queues, mem)?;
        }
        for port in 0..self.active_ports() {
            self.drain_output(port, queues, mem)?;
            self.fill_input(port, queues, mem)?;
        }
        self.flush_control(queues, mem)
    }

    fn active_ports(&self) -> usize {
        if self.state.multiport {
            self.state.ports.len()
        } else {
            1
        }
    }
}

impl VirtioDevice for ConsoleDevice {
    fn device_type(&self) -> u32 {
        TYPE_CONSOLE
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_CONSOLE_F_MULTIPORT
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; 2 * (self.state.ports.len() + 1)]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, features: u64) -> Result<(), DeviceError> {
        self.state.multiport = features & 1 << VIRTIO_CONSOLE_F_MULTIPORT != 0;
        if !self.state.multiport {
            // A single console port, connected both ways from the start.
            let p = &mut self.state.ports[0];
            p.ready = true;
            p.guest_open = true;
            p.host_open = true;
        }
        Ok(())
    }

    fn reset(&mut self) {
        for p in &mut self.state.ports {
            p.added = false;
            p.ready = false;
            p.guest_open = false;
            p.host_open = false;
            p.pending_output = None;
        }
        self.state.multiport = false;
        self.state.control_out.clear();
    }

    fn queue_notify(
        &mut self,
        queue: usize,
        queues: &mut [Queue],
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        match queue {
            CONTROL_TX_QUEUE => {
                self.handle_control_tx(queues, mem)?;
                // A port the guest just opened may have input waiting.
                for port in 0..self.active_ports() {
                    self.fill_input(port, queues, mem)?;
                }
            }
            CONTROL_RX_QUEUE => {}
            q => {
                let port = if q < 2 { 0 } else { q / 2 - 1 };
                if port < self.active_ports() {
                    if q % 2 == 0 {
                        self.fill_input(port, queues, mem)?;
                    } else {
                        self.drain_output(port, queues, mem)?;
                    }
                }
            }
        }
        self.flush_control(queues, mem)
    }

    fn poll(&mut self, queues: &mut [Queue], mem: &mut dyn GuestMemory) -> Result<(), DeviceError> {
        self.run_all(queues, mem)
    }
}
