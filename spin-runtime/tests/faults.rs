//! Misbehaving guests: they end or are stopped, and neither the host process
//! nor other containers are harmed.

mod common;

use common::{Capture, busybox, runtime};

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counts bytes and checks they are all zero, keeping none.
#[derive(Clone, Default)]
struct ZeroCounter {
    bytes: Arc<AtomicU64>,
    nonzero: Arc<AtomicU64>,
}

impl Write for ZeroCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        let bad = buf.iter().filter(|&&b| b != 0).count() as u64;
        self.nonzero.fetch_add(bad, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_gigabyte_of_stdout_streams_through_without_being_kept() {
    let counter = ZeroCounter::default();
    let status = runtime()
        .container(busybox())
        .command(["dd", "if=/dev/zero", "bs=1M", "count=1024"])
        .stdout(counter.clone())
        .stderr(Capture::default())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0);
    assert_eq!(counter.bytes.load(Ordering::Relaxed), 1 << 30);
    assert_eq!(counter.nonzero.load(Ordering::Relaxed), 0);
}

#[test]
fn filling_the_root_fails_with_no_space_and_the_container_goes_on() {
    let out = Capture::default();
    let status = runtime()
        .container(busybox())
        .command([
            "sh",
            "-c",
            "dd if=/dev/zero of=/fill bs=1M 2>/dev/null; echo dd=$?; rm /fill; echo ok > /after; cat /after",
        ])
        .memory_mib(128)
        .stdout(out.clone())
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.code(), 0);
    assert_eq!(out.text(), "dd=1\nok\n");
}

#[test]
fn a_fork_bomb_is_stopped_and_a_neighbour_is_unharmed() {
    let rt = runtime();
    std::thread::scope(|s| {
        let bomb = s.spawn(|| {
            rt.container(busybox())
                .command(["sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 1000"])
                .memory_mib(128)
                .timeout(Duration::from_secs(20))
                .stdout(Capture::default())
                .stderr(Capture::default())
                .run()
        });
        let out = Capture::default();
        let neighbour = rt
            .container(busybox())
            .command(["sh", "-c", "echo fine"])
            .stdout(out.clone())
            .run()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(neighbour.code(), 0);
        assert_eq!(out.text(), "fine\n");
        let bomb = bomb.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        // Either the time limit stopped it or the guest's kernel ended it.
        assert!(bomb.stopped() || bomb.code() != 0, "{bomb:?}");
    });
}
