//! `spin_v1`: the imports through which an emulator compiled to wasm reaches its host.
//!
//! An emulator module is a WASI command. Its devices' backends are these imports,
//! which the runtime (the only crate that knows wasmtime) provides:
//!
//! | import | signature (wasm) | meaning |
//! |---|---|---|
//! | `console_write` | `(port: i32, ptr: i32, len: i32) -> i32` | guest output on `port`; returns how many bytes the host took (fewer, even 0, is backpressure) |
//! | `console_read` | `(port: i32, ptr: i32, cap: i32) -> i32` | input for the guest on `port`: bytes written, 0 for none now, -1 when it has ended |
//! | `net_send` | `(ptr: i32, len: i32)` | one Ethernet frame from the guest |
//! | `net_recv` | `(ptr: i32, cap: i32) -> i32` | one Ethernet frame for the guest: its length, 0 for none |
//! | `fs_call` | `(share: i32, req: i32, req_len: i32, resp: i32, resp_cap: i32) -> i32` | one 9P2000.L message for share number `share`; returns the reply's length |
//! | `wait` | `(timeout_ns: i64) -> i32` | blocks until input may be waiting, a stop is asked, or the timeout passes; returns [`EVENT_INPUT`] / [`EVENT_STOP`] bits |
//!
//! Ports are numbered as in [`PORT_CONTROL`], [`PORT_STDOUT`], [`PORT_STDERR`] and
//! [`PORT_KERNEL`]. The module name carries the version: an incompatible change
//! gets `spin_v2`, and a runtime may offer both.

/// The import module name.
pub const MODULE: &str = "spin_v1";

/// The control port (`spin.control`): the run spec in, the exit report out.
pub const PORT_CONTROL: u32 = 0;
/// The container's stdout (`spin.stdout`).
pub const PORT_STDOUT: u32 = 1;
/// The container's stderr (`spin.stderr`).
pub const PORT_STDERR: u32 = 2;
/// The container's stdin (`spin.stdin`): input only; when the host's input ends
/// the port closes and the guest reads end of file.
pub const PORT_STDIN: u32 = 3;
/// The kernel's console (diagnostics only; output only; not a virtio port).
pub const PORT_KERNEL: u32 = 4;

/// The names of the console ports, indexed by their `PORT_*` number (the guest's
/// init finds them by these names).
pub const PORT_NAMES: [&str; 4] = ["spin.control", "spin.stdout", "spin.stderr", "spin.stdin"];

/// The console ports of a spin guest, in `PORT_*` order.
pub fn console_ports() -> Vec<crate::console::PortConfig> {
    PORT_NAMES.map(crate::console::PortConfig::named).to_vec()
}

/// `wait` result bit: input (console, network) may be waiting.
pub const EVENT_INPUT: u32 = 1;
/// `wait` result bit: the host asks the machine to stop.
pub const EVENT_STOP: u32 = 2;

/// The imports and the device backends built on them (wasm32 only).
#[cfg(target_arch = "wasm32")]
pub mod wasm {
    use super::PORT_NAMES;
    use crate::console::ConsoleBackend;
    use crate::net::NetBackend;
    use crate::p9::FsBackend;

    #[link(wasm_import_module = "spin_v1")]
    unsafe extern "C" {
        #[link_name = "console_write"]
        fn spin_console_write(port: u32, ptr: *const u8, len: usize) -> usize;
        #[link_name = "console_read"]
        fn spin_console_read(port: u32, ptr: *mut u8, cap: usize) -> i32;
        #[link_name = "net_send"]
        fn spin_net_send(ptr: *const u8, len: usize);
        #[link_name = "net_recv"]
        fn spin_net_recv(ptr: *mut u8, cap: usize) -> usize;
        #[link_name = "fs_call"]
        fn spin_fs_call(
            share: u32,
            req: *const u8,
            req_len: usize,
            resp: *mut u8,
            resp_cap: usize,
        ) -> usize;
        #[link_name = "wait"]
        fn spin_wait(timeout_ns: u64) -> u32;
    }

    /// Writes guest output for `port`; returns how many bytes the host took.
    pub fn console_write(port: u32, data: &[u8]) -> usize {
        // SAFETY: the pointer and length describe a live slice the host only reads.
        unsafe { spin_console_write(port, data.as_ptr(), data.len()) }.min(data.len())
    }

    /// Reads input for `port`: `Some(n)` bytes (0 = none now), `None` once it has ended.
    pub fn console_read(port: u32, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: the pointer and capacity describe a live slice the host may fill.
        let n = unsafe { spin_console_read(port, buf.as_mut_ptr(), buf.len()) };
        (n >= 0).then(|| (n as usize).min(buf.len()))
    }

    /// Blocks until input may be waiting, a stop is asked, or `timeout_ns` passes.
    pub fn wait(timeout_ns: u64) -> u32 {
        // SAFETY: no memory is shared with the host.
        unsafe { spin_wait(timeout_ns) }
    }

    /// The console device's backend on the `console_*` imports; port ids are
    /// the `PORT_*` numbers.
    #[derive(Debug, Default)]
    pub struct ImportConsole {
        ended: [bool; PORT_NAMES.len()],
    }

    impl ConsoleBackend for ImportConsole {
        fn write(&mut self, port: usize, data: &[u8]) -> usize {
            console_write(port as u32, data)
        }

        fn read(&mut self, port: usize, buf: &mut [u8]) -> usize {
            match console_read(port as u32, buf) {
                Some(n) => n,
                None => {
                    if let Some(e) = self.ended.get_mut(port) {
                        *e = true;
                    }
                    0
                }
            }
        }

        fn input_closed(&mut self, port: usize) -> bool {
            self.ended.get(port).copied().unwrap_or(false)
        }
    }

    /// The network device's backend on `net_send` / `net_recv`.
    #[derive(Debug, Default)]
    pub struct ImportNet;

    impl NetBackend for ImportNet {
        fn send(&mut self, frame: &[u8]) {
            // SAFETY: the pointer and length describe a live slice the host only reads.
            unsafe { spin_net_send(frame.as_ptr(), frame.len()) }
        }

        fn recv(&mut self, buf: &mut [u8]) -> usize {
            // SAFETY: the pointer and capacity describe a live slice the host may fill.
            unsafe { spin_net_recv(buf.as_mut_ptr(), buf.len()) }.min(buf.len())
        }
    }

    /// A 9p device's backend on `fs_call`, for share number `share`.
    #[derive(Debug)]
    pub struct ImportFs {
        /// The share's number (its order in the host's list of mounts).
        pub share: u32,
        /// The largest reply accepted (the guest's msize).
        pub max_reply: usize,
    }

    impl FsBackend for ImportFs {
        fn call(&mut self, request: &[u8], response: &mut Vec<u8>) {
            response.clear();
            response.resize(self.max_reply, 0);
            // SAFETY: both pointers and lengths describe live slices; the host
            // writes at most `max_reply` bytes into the response.
            let n = unsafe {
                spin_fs_call(
                    self.share,
                    request.as_ptr(),
                    request.len(),
                    response.as_mut_ptr(),
                    response.len(),
                )
            };
            response.truncate(n.min(self.max_reply));
        }
    }
}
