//! Control and status registers: access checks, reads and writes.

use crate::cpu::{Cpu, Exception, irq, mstatus, privilege};

/// CSR numbers used by the emulator.
#[allow(missing_docs)]
pub mod num {
    pub const FFLAGS: u16 = 0x001;
    pub const FRM: u16 = 0x002;
    pub const FCSR: u16 = 0x003;
    pub const CYCLE: u16 = 0xc00;
    pub const TIME: u16 = 0xc01;
    pub const INSTRET: u16 = 0xc02;
    pub const SSTATUS: u16 = 0x100;
    pub const SIE: u16 = 0x104;
    pub const STVEC: u16 = 0x105;
    pub const SCOUNTEREN: u16 = 0x106;
    pub const SENVCFG: u16 = 0x10a;
    pub const SSCRATCH: u16 = 0x140;
    pub const SEPC: u16 = 0x141;
    pub const SCAUSE: u16 = 0x142;
    pub const STVAL: u16 = 0x143;
    pub const SIP: u16 = 0x144;
    pub const SATP: u16 = 0x180;
    pub const MSTATUS: u16 = 0x300;
    pub const MISA: u16 = 0x301;
    pub const MEDELEG: u16 = 0x302;
    pub const MIDELEG: u16 = 0x303;
    pub const MIE: u16 = 0x304;
    pub const MTVEC: u16 = 0x305;
    pub const MCOUNTEREN: u16 = 0x306;
    pub const MENVCFG: u16 = 0x30a;
    pub const MCOUNTINHIBIT: u16 = 0x320;
    pub const MSCRATCH: u16 = 0x340;
    pub const MEPC: u16 = 0x341;
    pub const MCAUSE: u16 = 0x342;
    pub const MTVAL: u16 = 0x343;
    pub const MIP: u16 = 0x344;
    pub const MCYCLE: u16 = 0xb00;
    pub const MINSTRET: u16 = 0xb02;
    pub const MVENDORID: u16 = 0xf11;
    pub const MARCHID: u16 = 0xf12;
    pub const MIMPID: u16 = 0xf13;
    pub const MHARTID: u16 = 0xf14;
    pub const MCONFIGPTR: u16 = 0xf15;
}

/// misa: RV64 with A, C, D, F, I, M, S, U.
pub const MISA_VALUE: u64 =
    2 << 62 | 1 | 1 << 2 | 1 << 3 | 1 << 5 | 1 << 8 | 1 << 12 | 1 << 18 | 1 << 20;

const SSTATUS_MASK: u64 = mstatus::SIE
    | mstatus::SPIE
    | mstatus::SPP
    | mstatus::FS
    | mstatus::SUM
    | mstatus::MXR
    | mstatus::SD
    | 3 << 32;
const MSTATUS_WRITABLE: u64 = mstatus::SIE
    | mstatus::MIE
    | mstatus::SPIE
    | mstatus::MPIE
    | mstatus::SPP
    | 3 << mstatus::MPP_SHIFT
    | mstatus::FS
    | mstatus::MPRV
    | mstatus::SUM
    | mstatus::MXR
    | mstatus::TVM
    | mstatus::TW
    | mstatus::TSR;
const S_INTS: u64 = irq::SSIP | irq::STIP | irq::SEIP;
const M_INTS: u64 = S_INTS | irq::MSIP | irq::MTIP | irq::MEIP;

impl Cpu {
    fn counter_allowed(&self, csr: u16) -> bool {
        let bit = 1u64 << (csr & 31);
        match self.privilege {
            privilege::M => true,
            privilege::S => self.mcounteren & bit != 0,
            _ => self.mcounteren & bit != 0 && self.scounteren & bit != 0,
        }
    }

    pub(crate) fn fs_enabled(&self) -> bool {
        self.mstatus & mstatus::FS != 0
    }

    pub(crate) fn mark_fs_dirty(&mut self) {
        self.mstatus |= mstatus::FS;
    }

    /// Reads a CSR with the access checks of the current privilege.
    pub(crate) fn csr_read(&mut self, csr: u16) -> Result<u64, Exception> {
        if ((csr >> 8) & 3) as u8 > self.privilege {
            return Err(self.illegal_insn());
        }
        use num::*;
        let v = match csr {
            FFLAGS | FRM | FCSR => {
                if !self.fs_enabled() {
                    return Err(self.illegal_insn());
                }
                match csr {
                    FFLAGS => self.fflags as u64,
                    FRM => self.frm as u64,
                    _ => (self.frm as u64) << 5 | self.fflags as u64,
                }
            }
            CYCLE | TIME | INSTRET | 0xc03..=0xc1f => {
                if !self.counter_allowed(csr) {
                    return Err(self.illegal_insn());
                }
                match csr {
                    TIME => self.guest_time(),
                    CYCLE | INSTRET => self.instret,
                    _ => 0,
                }
            }
            SSTATUS => self.read_mstatus() & SSTATUS_MASK,
            SIE => self.mie & self.mideleg,
            STVEC => self.stvec,
            SCOUNTEREN => self.scounteren,
            SENVCFG => self.senvcfg,
            SSCRATCH => self.sscratch,
            SEPC => self.sepc,
            SCAUSE => self.scause,
            STVAL => self.stval,
            SIP => self.mip & self.mideleg,
            SATP => {
                if self.privilege == privilege::S && self.mstatus & mstatus::TVM != 0 {
                    return Err(self.illegal_insn());
                }
                self.satp
            }
            MSTATUS => self.read_mstatus(),
            MISA => MISA_VALUE,
            MEDELEG => self.medeleg,
            MIDELEG => self.mideleg,
            MIE => self.mie,
            MTVEC => self.mtvec,
            MCOUNTEREN => self.mcounteren,
            MENVCFG => self.menvcfg,
            MSCRATCH => self.mscratch,
            MEPC => self.mepc,
            MCAUSE => self.mcause,
            MTVAL => self.mtval,
            MIP => self.mip,
            MCYCLE | MINSTRET => self.instret,
            MVENDORID | MARCHID | MIMPID | MHARTID | MCONFIGPTR => 0,
            MCOUNTINHIBIT | 0x323..=0x33f | 0xb03..=0xb1f | 0x3a0..=0x3ef => 0,
            _ => return Err(self.illegal_insn()),
        };
        Ok(v)
    }

    fn read_mstatus(&self) -> u64 {
        let mut s = self.mstatus | 2 << 32 | 2 << 34;
        if s & mstatus::FS == mstatus::FS {
            s |= mstatus::SD;
        } else {
            s &= !mstatus::SD;
        }
        s
    }

    /// Writes a CSR with the access checks of the current privilege.
    pub(crate) fn csr_write(&mut self, csr: u16, v: u64) -> Result<(), Exception> {
        if ((csr >> 8) & 3) as u8 > self.privilege || csr >> 10 == 3 {
            return Err(self.illegal_insn());
        }
        use num::*;
        match csr {
            FFLAGS | FRM | FCSR => {
                if !self.fs_enabled() {
                    return Err(self.illegal_insn());
                }
                match csr {
                    FFLAGS => self.fflags = (v & 0x1f) as u8,
                    FRM => self.frm = (v & 7) as u8,
                    _ => {
                        self.fflags = (v & 0x1f) as u8;
                        self.frm = ((v >> 5) & 7) as u8;
                    }
                }
                self.mark_fs_dirty();
            }
            SSTATUS => {
                let m = SSTATUS_MASK & MSTATUS_WRITABLE;
                self.set_mstatus((self.mstatus & !m) | (v & m));
            }
            SIE => {
                self.mie = (self.mie & !self.mideleg) | (v & self.mideleg & S_INTS);
                self.end_slice();
            }
            STVEC => self.stvec = v & !2,
            SCOUNTEREN => self.scounteren = v & 0xffff_ffff,
            SENVCFG => self.senvcfg = 0,
            SSCRATCH => self.sscratch = v,
            SEPC => self.sepc = v & !1,
            SCAUSE => self.scause = v,
            STVAL => self.stval = v,
            SIP => {
                let m = irq::SSIP & self.mideleg;
                self.mip = (self.mip & !m) | (v & m);
                self.end_slice();
            }
            SATP => {
                if self.privilege == privilege::S && self.mstatus & mstatus::TVM != 0 {
                    return Err(self.illegal_insn());
                }
                let mode = v >> 60;
                if matches!(mode, 0 | 8 | 9 | 10) {
                    // ASIDs are not implemented (ASIDLEN = 0): bits 59:44 read as zero.
                    self.satp = v & (0xf << 60 | ((1 << 44) - 1));
                    self.flush_tlb();
                }
            }
            MSTATUS => {
                self.set_mstatus((self.mstatus & !MSTATUS_WRITABLE) | (v & MSTATUS_WRITABLE))
            }
            MISA => {}
            MEDELEG => self.medeleg = v & 0xb3ff,
            MIDELEG => {
                self.mideleg = v & S_INTS;
                self.end_slice();
            }
            MIE => {
                self.mie = v & M_INTS;
                self.end_slice();
            }
            MTVEC => self.mtvec = v & !2,
            MCOUNTEREN => self.mcounteren = v & 0xffff_ffff,
            MENVCFG => self.menvcfg = 0,
            MSCRATCH => self.mscratch = v,
            MEPC => self.mepc = v & !1,
            MCAUSE => self.mcause = v,
            MTVAL => self.mtval = v,
            MIP => {
                let m = irq::SSIP | irq::STIP | irq::SEIP;
                self.mip = (self.mip & !m) | (v & m);
                self.end_slice();
            }
            // The counters stay monotonic: writes are ignored.
            MCYCLE | MINSTRET => {}
            MCOUNTINHIBIT | 0x323..=0x33f | 0xb03..=0xb1f | 0x3a0..=0x3ef => {}
            _ => return Err(self.illegal_insn()),
        }
        Ok(())
    }

    /// Sets mstatus, keeping the derived state (TLB keys, interrupt checks) in step.
    pub(crate) fn set_mstatus(&mut self, v: u64) {
        let old = self.mstatus;
        self.mstatus = v & !mstatus::SD;
        if (old ^ self.mstatus)
            & (mstatus::SUM | mstatus::MXR | mstatus::MPRV | 3 << mstatus::MPP_SHIFT)
            != 0
        {
            self.update_tlb_key();
        }
        if (old ^ self.mstatus) & (mstatus::SIE | mstatus::MIE) != 0 {
            self.end_slice();
        }
    }
}
