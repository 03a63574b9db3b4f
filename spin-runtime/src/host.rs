//! The host side of `spin_v1` (see `spin_virtio::host_abi`): what one running
//! container's emulator module may reach.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use spin_init::host::ControlSession;
use spin_net::{FrameEndpoint, NetworkHandle};
use spin_p9::P9Server;
use spin_virtio::host_abi::{
    EVENT_INPUT, EVENT_STOP, MODULE, PORT_CONTROL, PORT_KERNEL, PORT_STDERR, PORT_STDIN,
    PORT_STDOUT,
};
use spin_virtio::p9::{EMSGSIZE, FsBackend, RLERROR};
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;

/// Stdin bytes queued for the guest before the reader waits.
const STDIN_BUFFER: usize = 1 << 20;
/// How much of the kernel console is kept for error messages.
const KERNEL_LOG_KEEP: usize = 16 * 1024;

/// State shared between a running container and the threads that feed or stop it.
#[derive(Default)]
pub(crate) struct Signals {
    state: Mutex<SignalState>,
    wake: Condvar,
}

#[derive(Default)]
struct SignalState {
    stop: bool,
    stdin: VecDeque<u8>,
    stdin_ended: bool,
    /// The guest was told that stdin ended (so idling need not wake for it).
    stdin_eof_sent: bool,
}

impl Signals {
    /// Asks the container to stop and wakes it if it idles.
    pub(crate) fn stop(&self) {
        self.state.lock().expect("signals poisoned").stop = true;
        self.wake.notify_all();
    }

    pub(crate) fn stop_requested(&self) -> bool {
        self.state.lock().expect("signals poisoned").stop
    }

    /// Wakes the container if it idles, so that it looks for input (network frames).
    pub(crate) fn wake(&self) {
        // Taken so that a wake between `wait`'s check and its sleep is not lost.
        let _guard = self.state.lock().expect("signals poisoned");
        self.wake.notify_all();
    }

    /// Marks the end of the container's stdin (once the queued bytes are read).
    pub(crate) fn end_stdin(&self) {
        self.state.lock().expect("signals poisoned").stdin_ended = true;
        self.wake.notify_all();
    }

    /// Queues stdin bytes for the guest.
    /// Blocks while the guest has [`STDIN_BUFFER`] bytes unread, so that a
    /// fast producer cannot fill the host's memory.
    pub(crate) fn push_stdin(&self, data: &[u8]) {
        let mut s = self.state.lock().expect("signals poisoned");
        while s.stdin.len() >= STDIN_BUFFER && !s.stop {
            s = self.wake.wait(s).expect("signals poisoned");
        }
        s.stdin.extend(data);
        self.wake.notify_all();
    }
}

/// Everything the imports of one container touch.
pub(crate) struct ContainerHost {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) control: ControlSession,
    pub(crate) stdout: Box<dyn Write + Send>,
    pub(crate) stderr: Box<dyn Write + Send>,
    pub(crate) signals: Arc<Signals>,
    pub(crate) kernel_log: VecDeque<u8>,
    pub(crate) limits: wasmtime::StoreLimits,
    pub(crate) net: Option<NetHost>,
    /// The 9p servers of the mounts, by share number.
    pub(crate) shares: Vec<P9Server>,
    /// Request and reply buffers kept between 9p calls.
    pub(crate) fs_request: Vec<u8>,
    pub(crate) fs_reply: Vec<u8>,
}

/// A container's running network: the guest's side of its frame queues.
pub(crate) struct NetHost {
    pub(crate) endpoint: FrameEndpoint,
    /// Keeps the network running; dropped with the container.
    pub(crate) _handle: NetworkHandle,
}

impl ContainerHost {
    fn console_write(&mut self, port: u32, data: &[u8]) -> usize {
        match port {
            PORT_CONTROL => self.control.feed(data),
            PORT_STDOUT => {
                // A closed reader is the caller's choice: the output is dropped.
                let _ = self
                    .stdout
                    .write_all(data)
                    .and_then(|_| self.stdout.flush());
            }
            PORT_STDERR => {
                let _ = self
                    .stderr
                    .write_all(data)
                    .and_then(|_| self.stderr.flush());
            }
            PORT_KERNEL => {
                self.kernel_log.extend(data);
                let excess = self.kernel_log.len().saturating_sub(KERNEL_LOG_KEEP);
                self.kernel_log.drain(..excess);
                tracing::trace!(target: "spin::guest", "{}", String::from_utf8_lossy(data));
            }
            _ => {}
        }
        data.len()
    }

    fn console_read(&mut self, port: u32, buf: &mut [u8]) -> i32 {
        match port {
            PORT_CONTROL => self.control.take_input(buf) as i32,
            PORT_STDIN => {
                let mut s = self.signals.state.lock().expect("signals poisoned");
                if s.stdin.is_empty() && s.stdin_ended {
                    s.stdin_eof_sent = true;
                    return -1;
                }
                let n = buf.len().min(s.stdin.len());
                for (dst, src) in buf.iter_mut().zip(s.stdin.drain(..n)) {
                    *dst = src;
                }
                if n > 0 {
                    // The reader may wait for room (see `push_stdin`).
                    self.signals.wake.notify_all();
                }
                n as i32
            }
            _ => 0,
        }
    }

    fn wait(&mut self, timeout_ns: u64) -> u32 {
        let net = self.net.as_ref().map(|n| &n.endpoint);
        let events = |s: &SignalState, control: &ControlSession| {
            let mut e = 0;
            if s.stop {
                e |= EVENT_STOP;
            }
            let eof_pending = s.stdin_ended && !s.stdin_eof_sent;
            if !s.stdin.is_empty()
                || eof_pending
                || control.has_input()
                || net.is_some_and(|n| n.has_frames())
            {
                e |= EVENT_INPUT;
            }
            e
        };
        let timeout = Duration::from_nanos(timeout_ns);
        let signals = self.signals.clone();
        let guard = signals.state.lock().expect("signals poisoned");
        let now = events(&guard, &self.control);
        if now != 0 || timeout.is_zero() {
            return now;
        }
        let control = &self.control;
        let (guard, _) = signals
            .wake
            .wait_timeout_while(guard, timeout, |s| events(s, control) == 0)
            .expect("signals poisoned");
        events(&guard, &self.control)
    }

    /// Answers one 9P message for share `share` into `out`; returns the reply's length.
    fn fs_call(&mut self, share: u32, request: &[u8], out: &mut [u8]) -> usize {
        let Some(server) = self.shares.get_mut(share as usize) else {
            return 0;
        };
        let mut reply = std::mem::take(&mut self.fs_reply);
        reply.clear();
        server.call(request, &mut reply);
        let n = if reply.len() <= out.len() {
            out[..reply.len()].copy_from_slice(&reply);
            reply.len()
        } else {
            // Cannot happen with the msize the server negotiated; answered as
            // the device would, rather than cut.
            let tag = request.get(5..7).unwrap_or(&[0xff, 0xff]);
            let mut e = Vec::with_capacity(11);
            e.extend_from_slice(&11u32.to_le_bytes());
            e.push(RLERROR);
            e.extend_from_slice(tag);
            e.extend_from_slice(&EMSGSIZE.to_le_bytes());
            let n = e.len().min(out.len());
            out[..n].copy_from_slice(&e[..n]);
            n
        };
        self.fs_reply = reply;
        n
    }

    fn net_send(&mut self, frame: &[u8]) {
        if let Some(net) = &self.net {
            // A full queue drops the frame, as a congested link would; TCP resends.
            net.endpoint.send_to_network(frame);
        }
    }

    fn net_recv(&mut self, buf: &mut [u8]) -> usize {
        self.net
            .as_ref()
            .and_then(|n| n.endpoint.try_recv_from_network(buf))
            .unwrap_or(0)
    }

    /// The last lines of the kernel console (for error messages).
    pub(crate) fn kernel_log_text(&self) -> String {
        let bytes: Vec<u8> = self.kernel_log.iter().copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Guest memory of the calling module, or a trap.
fn memory(caller: &mut Caller<'_, ContainerHost>) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(wasmtime::Error::msg(
            "the emulator module exports no memory",
        )),
    }
}

/// A checked range of the module's memory.
fn range(data_len: usize, ptr: u32, len: u32) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as usize;
    let end = start
        .checked_add(len as usize)
        .filter(|&e| e <= data_len)
        .ok_or_else(|| wasmtime::Error::msg("spin_v1 call with a buffer outside memory"))?;
    Ok(start..end)
}

/// Adds the `spin_v1` imports to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ContainerHost>) -> wasmtime::Result<()> {
    linker.func_wrap(
        MODULE,
        "console_write",
        |mut caller: Caller<'_, ContainerHost>,
         port: u32,
         ptr: u32,
         len: u32|
         -> wasmtime::Result<u32> {
            let mem = memory(&mut caller)?;
            let (data, host) = mem.data_and_store_mut(&mut caller);
            let r = range(data.len(), ptr, len)?;
            Ok(host.console_write(port, &data[r]) as u32)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "console_read",
        |mut caller: Caller<'_, ContainerHost>,
         port: u32,
         ptr: u32,
         cap: u32|
         -> wasmtime::Result<i32> {
            let mem = memory(&mut caller)?;
            let (data, host) = mem.data_and_store_mut(&mut caller);
            let r = range(data.len(), ptr, cap)?;
            Ok(host.console_read(port, &mut data[r]))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "wait",
        |mut caller: Caller<'_, ContainerHost>, timeout_ns: u64| -> u32 {
            caller.data_mut().wait(timeout_ns)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "net_send",
        |mut caller: Caller<'_, ContainerHost>, ptr: u32, len: u32| -> wasmtime::Result<()> {
            let mem = memory(&mut caller)?;
            let (data, host) = mem.data_and_store_mut(&mut caller);
            let r = range(data.len(), ptr, len)?;
            host.net_send(&data[r]);
            Ok(())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "net_recv",
        |mut caller: Caller<'_, ContainerHost>, ptr: u32, cap: u32| -> wasmtime::Result<u32> {
            let mem = memory(&mut caller)?;
            let (data, host) = mem.data_and_store_mut(&mut caller);
            let r = range(data.len(), ptr, cap)?;
            Ok(host.net_recv(&mut data[r]) as u32)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fs_call",
        |mut caller: Caller<'_, ContainerHost>,
         share: u32,
         req: u32,
         req_len: u32,
         resp: u32,
         cap: u32|
         -> wasmtime::Result<u32> {
            let mem = memory(&mut caller)?;
            let (data, host) = mem.data_and_store_mut(&mut caller);
            let req = range(data.len(), req, req_len)?;
            let resp = range(data.len(), resp, cap)?;
            // The request is copied out: both ranges live in the same memory.
            let mut request = std::mem::take(&mut host.fs_request);
            request.clear();
            request.extend_from_slice(&data[req]);
            let n = host.fs_call(share, &request, &mut data[resp]);
            host.fs_request = request;
            Ok(n as u32)
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use spin_virtio::host_abi::{PORT_CONTROL, PORT_NAMES, PORT_STDERR, PORT_STDIN, PORT_STDOUT};

    #[test]
    fn port_numbers_name_the_ports_init_looks_for() {
        assert_eq!(PORT_NAMES[PORT_CONTROL as usize], spin_init::CONTROL_PORT);
        assert_eq!(PORT_NAMES[PORT_STDOUT as usize], spin_init::STDOUT_PORT);
        assert_eq!(PORT_NAMES[PORT_STDERR as usize], spin_init::STDERR_PORT);
        assert_eq!(PORT_NAMES[PORT_STDIN as usize], spin_init::STDIN_PORT);
    }
}
