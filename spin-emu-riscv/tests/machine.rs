//! Whole-machine tests on tiny hand-written "kernels": SBI calls, the
//! console, shutdown with a reason, timer interrupts, stopping a guest that
//! loops forever, and rejecting bad kernels.

mod common;

use common::fake_image;
use spin_emu_riscv::host::{BufferConsole, StdClock};
use spin_emu_riscv::machine::{Machine, MachineConfig, MachineError, RunResult};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn machine(body: &str) -> (Machine, BufferConsole) {
    let console = BufferConsole::default();
    let m = Machine::new(
        &MachineConfig {
            ram_size: 64 << 20,
            ..Default::default()
        },
        &fake_image(body),
        None,
        Vec::new(),
        Box::new(console.clone()),
        Box::new(StdClock::default()),
    )
    .expect("machine");
    (m, console)
}

const SHUTDOWN_42: &str = r#"
    li a7, 0x53525354
    li a6, 0
    li a0, 0
    li a1, 42
    ecall
1:  j 1b
"#;

#[test]
fn console_and_shutdown_reason() {
    let (mut m, console) = machine(&format!(
        r#"
    li a7, 1          # legacy putchar
    li a0, 'h'
    ecall
    li a0, 'i'
    ecall
    li a7, 0x10       # base: probe SRST
    li a6, 3
    li a0, 0x53525354
    ecall
    addi a0, a1, '0'  # '1' if SRST is there
    li a7, 1
    ecall
    {SHUTDOWN_42}
"#
    ));
    assert_eq!(
        m.run(Some(1_000_000)),
        RunResult::Reset {
            reset_type: 0,
            reason: 42
        }
    );
    assert_eq!(console.0.lock().unwrap().as_slice(), b"hi1");
}

#[test]
fn timer_interrupt_wakes_wfi() {
    // Arm the timer 20 ms ahead, enable STIE + SIE, wait in WFI; the trap
    // handler shuts down with reason 42.
    let (mut m, _) = machine(&format!(
        r#"
    lla t0, handler
    csrw stvec, t0
    rdtime a0
    li t1, 200000
    add a0, a0, t1
    li a7, 0x54494d45
    li a6, 0
    ecall
    li t0, 0x20
    csrs sie, t0
    csrsi sstatus, 2
2:  wfi
    j 2b
    .balign 4
handler:
    csrr t0, scause
    li t1, 0x8000000000000005
    bne t0, t1, 2b
    {SHUTDOWN_42}
"#
    ));
    let t = Instant::now();
    assert_eq!(
        m.run(Some(100_000_000)),
        RunResult::Reset {
            reset_type: 0,
            reason: 42
        }
    );
    let dt = t.elapsed();
    assert!(dt >= Duration::from_millis(15), "woke too early: {dt:?}");
    assert!(
        m.cpu.instret < 1_000_000,
        "idled by spinning: {} instructions",
        m.cpu.instret
    );
}

#[test]
fn endless_loop_can_be_stopped() {
    let (mut m, _) = machine("1: j 1b");
    let stop = m.stop_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(m.run(None), RunResult::Stopped);
    t.join().unwrap();
    assert!(m.cpu.instret > 0);
}

#[test]
fn illegal_instruction_in_kernel_traps_to_stvec() {
    let (mut m, _) = machine(&format!(
        r#"
    lla t0, handler
    csrw stvec, t0
    .word 0xffffffff
    j .
    .balign 4
handler:
    csrr t0, scause
    li t1, 2
    bne t0, t1, .
    csrr t0, stval
    li t1, 0xffffffff
    bne t0, t1, .
    {SHUTDOWN_42}
"#
    ));
    assert_eq!(
        m.run(Some(1_000_000)),
        RunResult::Reset {
            reset_type: 0,
            reason: 42
        }
    );
}

#[test]
fn unmapped_physical_access_faults() {
    let (mut m, _) = machine(&format!(
        r#"
    lla t0, handler
    csrw stvec, t0
    li t0, 0x40000000
    ld t1, 0(t0)
    j .
    .balign 4
handler:
    csrr t0, scause
    li t1, 5
    bne t0, t1, .
    {SHUTDOWN_42}
"#
    ));
    assert_eq!(
        m.run(Some(1_000_000)),
        RunResult::Reset {
            reset_type: 0,
            reason: 42
        }
    );
}

#[test]
fn bad_kernels_are_rejected() {
    let r = Machine::new(
        &MachineConfig::default(),
        b"\x7fELF not an Image at all, just some bytes that are long enough to have a header",
        None,
        Vec::new(),
        Box::new(BufferConsole::default()),
        Box::new(StdClock::default()),
    );
    assert!(matches!(r, Err(MachineError::NotRiscvImage)));
    let big_initrd = vec![0u8; 80 << 20];
    let r = Machine::new(
        &MachineConfig {
            ram_size: 64 << 20,
            ..Default::default()
        },
        &fake_image("j ."),
        Some(&big_initrd),
        Vec::new(),
        Box::new(BufferConsole::default()),
        Box::new(StdClock::default()),
    );
    assert!(matches!(
        r,
        Err(MachineError::DoesNotFit {
            what: "the initrd",
            ..
        })
    ));
}

#[test]
fn random_code_never_panics_the_emulator() {
    // Random words as S-mode code, with stvec at the random code too: every
    // kind of trap, CSR access, SBI call and device access the bytes happen to
    // encode must be handled without a panic.
    let mut x = 0x0123_4567_89ab_cdefu64;
    for _ in 0..40 {
        let mut img = vec![0u8; 64];
        img[..4].copy_from_slice(&0x0400_006fu32.to_le_bytes());
        img[56..60].copy_from_slice(b"RSC\x05");
        for _ in 0..2048 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            img.extend_from_slice(&(x as u32).to_le_bytes());
        }
        let mut m = Machine::new(
            &MachineConfig {
                ram_size: 32 << 20,
                ..Default::default()
            },
            &img,
            None,
            Vec::new(),
            Box::new(BufferConsole::default()),
            Box::new(StdClock::default()),
        )
        .expect("machine");
        m.cpu.stvec = 0x8020_0040 + (x & 0x1ffc);
        let _ = m.run(Some(200_000));
    }
}
