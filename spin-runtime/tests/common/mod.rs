//! Helpers shared by the runtime's tests.

#![allow(dead_code)] // each test file uses its own subset

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use spin_runtime::{Arch, ImageSource, Runtime};

/// A writer that collects what the container writes.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    /// What was written, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// The busybox test image that `cargo xtask build-guest` makes.
pub fn busybox() -> ImageSource {
    let root = std::env::var_os("SPIN_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/spin"));
    ImageSource::ImageFile(root.join("images/busybox-riscv64.sqfs"))
}

/// A riscv64 runtime with the workspace's guest files.
pub fn runtime() -> Runtime {
    Runtime::new(Arch::Riscv64).unwrap_or_else(|e| panic!("{e}"))
}
