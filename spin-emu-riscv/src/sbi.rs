//! The supervisor binary interface, implemented by the emulator itself: an
//! `ecall` from S-mode lands here instead of in M-mode firmware.

use crate::cpu::irq;
use crate::machine::{Machine, RunResult};

/// Error codes.
const SUCCESS: i64 = 0;
const ERR_FAILED: i64 = -1;
const ERR_NOT_SUPPORTED: i64 = -2;
const ERR_INVALID_PARAM: i64 = -3;
const ERR_ALREADY_AVAILABLE: i64 = -6;

/// Extension ids.
const EXT_BASE: u64 = 0x10;
const EXT_TIME: u64 = 0x5449_4d45;
const EXT_IPI: u64 = 0x0073_5049;
const EXT_RFENCE: u64 = 0x5246_4e43;
const EXT_HSM: u64 = 0x0048_534d;
const EXT_SRST: u64 = 0x5352_5354;
const EXT_DBCN: u64 = 0x4442_434e;

/// Implementation id reported by `sbi_get_impl_id` (not a registered one).
const IMPL_ID: i64 = 0x5350_494e;

fn supported(ext: u64) -> bool {
    matches!(
        ext,
        0..=8 | EXT_BASE | EXT_TIME | EXT_IPI | EXT_RFENCE | EXT_HSM | EXT_SRST | EXT_DBCN
    )
}

/// Handles the SBI call in a0..a7 of the machine's hart and returns to the caller.
pub fn handle(m: &mut Machine) {
    let x = m.cpu.x;
    let (ext, fid) = (x[17], x[16]);
    let (a0, a1, a2) = (x[10], x[11], x[12]);
    m.cpu.pc = m.cpu.pc.wrapping_add(4);
    // Legacy extensions return a single value in a0.
    if ext <= 8 {
        let ret: i64 = match ext {
            0 => {
                set_timer(m, a0);
                0
            }
            1 => {
                m.console.write(&[a0 as u8]);
                0
            }
            2 => m.console.read().map_or(-1, |b| b as i64),
            3 => {
                m.cpu.mip &= !irq::SSIP;
                0
            }
            4 => {
                m.cpu.mip |= irq::SSIP;
                0
            }
            5..=7 => {
                m.cpu.flush_tlb();
                0
            }
            _ => {
                m.reset = Some(RunResult::Reset {
                    reset_type: 0,
                    reason: 0,
                });
                0
            }
        };
        m.cpu.x[10] = ret as u64;
        return;
    }
    let (err, val): (i64, i64) = match (ext, fid) {
        (EXT_BASE, 0) => (SUCCESS, 2 << 24),
        (EXT_BASE, 1) => (SUCCESS, IMPL_ID),
        (EXT_BASE, 2) => (SUCCESS, 1),
        (EXT_BASE, 3) => (SUCCESS, supported(a0) as i64),
        (EXT_BASE, 4..=6) => (SUCCESS, 0),
        (EXT_TIME, 0) => {
            set_timer(m, a0);
            (SUCCESS, 0)
        }
        (EXT_IPI, 0) => {
            // hart_mask (a0) relative to hart_mask_base (a1); all-ones base = every hart.
            if a1 == u64::MAX || (a1 == 0 && a0 & 1 != 0) {
                m.cpu.mip |= irq::SSIP;
            }
            (SUCCESS, 0)
        }
        (EXT_RFENCE, 0..=6) => {
            m.cpu.flush_tlb();
            (SUCCESS, 0)
        }
        (EXT_HSM, 0) => (
            if a0 == 0 {
                ERR_ALREADY_AVAILABLE
            } else {
                ERR_INVALID_PARAM
            },
            0,
        ),
        (EXT_HSM, 1) => (ERR_FAILED, 0),
        (EXT_HSM, 2) => {
            if a0 == 0 {
                (SUCCESS, 0)
            } else {
                (ERR_INVALID_PARAM, 0)
            }
        }
        (EXT_HSM, 3) => {
            if a0 as u32 == 0 {
                // Default retentive suspend: behaves like WFI.
                m.cpu.wfi = m.cpu.mip & m.cpu.mie == 0;
                (SUCCESS, 0)
            } else {
                (ERR_NOT_SUPPORTED, 0)
            }
        }
        (EXT_SRST, 0) => {
            if a0 <= 2 || (0xf000_0000..=0xffff_ffff).contains(&a0) {
                m.reset = Some(RunResult::Reset {
                    reset_type: a0 as u32,
                    reason: a1 as u32,
                });
                (SUCCESS, 0)
            } else {
                (ERR_INVALID_PARAM, 0)
            }
        }
        (EXT_DBCN, 0) => {
            // write(num_bytes, base_lo, base_hi): physical addresses.
            let addr = a1 | a2 << 32;
            let mut buf = vec![0u8; a0.min(1 << 16) as usize];
            if m.cpu.bus.ram.read_bytes(addr, &mut buf).is_some() {
                m.console.write(&buf);
                (SUCCESS, buf.len() as i64)
            } else {
                (ERR_INVALID_PARAM, 0)
            }
        }
        (EXT_DBCN, 1) => {
            let addr = a1 | a2 << 32;
            let mut n = 0u64;
            while n < a0 {
                let Some(b) = m.console.read() else { break };
                if m.cpu
                    .bus
                    .ram
                    .write_bytes(addr.wrapping_add(n), &[b])
                    .is_none()
                {
                    break;
                }
                n += 1;
            }
            (SUCCESS, n as i64)
        }
        (EXT_DBCN, 2) => {
            m.console.write(&[a0 as u8]);
            (SUCCESS, 0)
        }
        _ => {
            tracing::debug!(ext = format_args!("{ext:#x}"), fid, "unsupported SBI call");
            (ERR_NOT_SUPPORTED, 0)
        }
    };
    m.cpu.x[10] = err as u64;
    m.cpu.x[11] = val as u64;
}

fn set_timer(m: &mut Machine, when: u64) {
    m.timecmp = when;
    m.cpu.mip &= !irq::STIP;
}
