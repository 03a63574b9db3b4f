//! Host-side implementations of [`Console`] and [`Clock`] on the standard
//! library, for native runs and tests.

use crate::machine::{Clock, Console};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A clock on `std::time::Instant` that idles with `thread::sleep`.
pub struct StdClock {
    origin: Instant,
    /// The longest single sleep, so the run loop regularly checks its stop flag.
    pub max_sleep: Duration,
}

impl Default for StdClock {
    fn default() -> Self {
        StdClock {
            origin: Instant::now(),
            max_sleep: Duration::from_millis(10),
        }
    }
}

impl Clock for StdClock {
    fn now_ns(&mut self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
    fn wait(&mut self, deadline_ns: u64) {
        let now = self.now_ns();
        if deadline_ns > now {
            std::thread::sleep(Duration::from_nanos(deadline_ns - now).min(self.max_sleep));
        }
    }
}

/// A console writing to the process's stdout.
#[derive(Default)]
pub struct StdoutConsole;

impl Console for StdoutConsole {
    fn write(&mut self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }
}

/// A console that collects the output in a shared buffer (for tests).
#[derive(Clone, Default)]
pub struct BufferConsole(pub Arc<Mutex<Vec<u8>>>);

impl Console for BufferConsole {
    fn write(&mut self, bytes: &[u8]) {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(bytes);
        }
    }
}
