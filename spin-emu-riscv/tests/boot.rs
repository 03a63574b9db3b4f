//! Boots the real guest kernel with a tiny initramfs whose /init (a static C
//! program) prints, sleeps, prints again and powers off.
//!
//! The kernel is taken from `SPIN_RISCV_KERNEL`, else `$SPIN_ARTIFACTS` or the
//! workspace's `target/spin` (`guest/riscv64/Image`); without one the tests fail
//! and say how to build it.

mod common;

use spin_emu_riscv::host::{BufferConsole, StdClock};
use spin_emu_riscv::machine::{Clock, Machine, MachineConfig, RunResult};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const INIT: &str = r#"
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <sys/reboot.h>
int main(void) {
    printf("spin-boot-test: init running as pid %d\n", getpid());
    fflush(stdout);
    struct timespec t = { 0, 300 * 1000 * 1000 };
    nanosleep(&t, 0);
    printf("spin-boot-test: slept\n");
    fflush(stdout);
    reboot(RB_POWER_OFF);
    return 1;
}
"#;

fn kernel() -> PathBuf {
    let path = std::env::var_os("SPIN_RISCV_KERNEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("SPIN_ARTIFACTS")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/spin"))
                .join("guest/riscv64/Image")
        });
    assert!(
        path.is_file(),
        "no riscv64 guest kernel at {}: run `cargo xtask build-guest`",
        path.display()
    );
    path
}

/// A newc cpio archive of (name, mode, data) entries.
fn cpio(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut add = |ino: u32, name: &str, mode: u32, data: &[u8]| {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
    };
    for (i, (name, mode, data)) in entries.iter().enumerate() {
        add(i as u32 + 1, name, *mode, data);
    }
    add(0, "TRAILER!!!", 0, &[]);
    out
}

struct CountingClock(StdClock, Arc<AtomicU64>);

impl Clock for CountingClock {
    fn now_ns(&mut self) -> u64 {
        self.0.now_ns()
    }
    fn wait(&mut self, deadline_ns: u64) {
        let t = Instant::now();
        self.0.wait(deadline_ns);
        self.1
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

#[test]
fn kernel_boots_to_init_and_powers_off() {
    let kernel = std::fs::read(kernel()).unwrap();
    let init = common::compile("init", INIT, "c", &[]);
    let initrd = cpio(&[("dev", 0o040755, &[]), ("init", 0o100755, &init)]);
    let console = BufferConsole::default();
    let idle = Arc::new(AtomicU64::new(0));
    let mut m = Machine::new(
        &MachineConfig::default(),
        &kernel,
        Some(&initrd),
        Vec::new(),
        Box::new(console.clone()),
        Box::new(CountingClock(StdClock::default(), idle.clone())),
    )
    .unwrap();
    let t = Instant::now();
    let r = m.run(Some(2_000_000_000));
    let dt = t.elapsed();
    let out = String::from_utf8_lossy(&console.0.lock().unwrap()).into_owned();
    assert_eq!(
        r,
        RunResult::Reset {
            reset_type: 0,
            reason: 0
        },
        "console:\n{out}"
    );
    assert!(
        out.contains("spin-boot-test: init running as pid 1"),
        "console:\n{out}"
    );
    assert!(out.contains("spin-boot-test: slept"), "console:\n{out}");
    let idle = Duration::from_nanos(idle.load(Ordering::Relaxed));
    eprintln!(
        "boot + 300 ms sleep: {dt:?}, {} instructions, idle {idle:?}",
        m.cpu.instret
    );
    assert!(
        idle >= Duration::from_millis(200),
        "the guest's sleep must idle the host: {idle:?}"
    );
}

const VIRTIO_INIT: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/reboot.h>
int main(void) {
    mount("devtmpfs", "/dev", "devtmpfs", 0, 0);
    mount("sysfs", "/sys", "sysfs", 0, 0);
    int fd = -1;
    for (int i = 0; i < 200 && fd < 0; i++) {
        fd = open("/dev/vport0p0", O_RDWR);
        if (fd < 0) usleep(10000);
    }
    if (fd < 0) { printf("no virtio console port\n"); fflush(stdout); reboot(RB_POWER_OFF); }
    char name[64] = {0};
    int nfd = open("/sys/class/virtio-ports/vport0p0/name", O_RDONLY);
    if (nfd >= 0) { read(nfd, name, sizeof name - 1); close(nfd); }
    name[strcspn(name, "\n")] = 0;
    char msg[128];
    int n = snprintf(msg, sizeof msg, "hello over virtio on port '%s'\n", name);
    write(fd, msg, n);
    char in[64] = {0};
    int r = read(fd, in, sizeof in - 1);
    n = snprintf(msg, sizeof msg, "got %d bytes: %s", r, in);
    write(fd, msg, n);
    close(fd);
    reboot(RB_POWER_OFF);
    return 1;
}
"#;

#[derive(Clone, Default)]
struct Port(Arc<std::sync::Mutex<(Vec<u8>, Vec<u8>)>>);

impl spin_virtio::console::ConsoleBackend for Port {
    fn write(&mut self, _port: usize, data: &[u8]) -> usize {
        self.0.lock().unwrap().0.extend_from_slice(data);
        data.len()
    }
    fn read(&mut self, _port: usize, buf: &mut [u8]) -> usize {
        let mut g = self.0.lock().unwrap();
        let n = g.1.len().min(buf.len());
        buf[..n].copy_from_slice(&g.1[..n]);
        g.1.drain(..n);
        n
    }
}

#[test]
fn init_talks_to_a_virtio_console() {
    let kernel = std::fs::read(kernel()).unwrap();
    let init = common::compile("vinit", VIRTIO_INIT, "c", &[]);
    let initrd = cpio(&[
        ("dev", 0o040755, &[]),
        ("sys", 0o040755, &[]),
        ("init", 0o100755, &init),
    ]);
    let port = Port::default();
    port.0
        .lock()
        .unwrap()
        .1
        .extend_from_slice(b"ping from host\n");
    let dev = spin_virtio::console::ConsoleDevice::new(
        Box::new(port.clone()),
        vec![spin_virtio::console::PortConfig::named("spin-test")],
    );
    let transport = spin_virtio::MmioTransport::new(Box::new(dev));
    let console = BufferConsole::default();
    let mut m = Machine::new(
        &MachineConfig::default(),
        &kernel,
        Some(&initrd),
        vec![Box::new(transport)],
        Box::new(console.clone()),
        Box::new(StdClock::default()),
    )
    .unwrap();
    let r = m.run(Some(2_000_000_000));
    let out = String::from_utf8_lossy(&console.0.lock().unwrap()).into_owned();
    let got = String::from_utf8_lossy(&port.0.lock().unwrap().0).into_owned();
    assert_eq!(
        r,
        RunResult::Reset {
            reset_type: 0,
            reason: 0
        },
        "console:\n{out}"
    );
    assert_eq!(
        got, "hello over virtio on port 'spin-test'\ngot 15 bytes: ping from host\n",
        "console:\n{out}"
    );
}
