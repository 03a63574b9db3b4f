//! The hart: architectural state, the fetch/decode cache and the execute loop.

mod exec;

use crate::bus::Bus;
use crate::decode::{Insn, Op, decode};
use crate::mmu::Access;
use crate::mmu::Tlb;

/// Privilege levels.
pub mod privilege {
    /// User mode.
    pub const U: u8 = 0;
    /// Supervisor mode.
    pub const S: u8 = 1;
    /// Machine mode.
    pub const M: u8 = 3;
}

/// Exception causes (mcause/scause values without the interrupt bit).
pub mod cause {
    /// Instruction access fault.
    pub const FETCH_ACCESS: u64 = 1;
    /// Illegal instruction.
    pub const ILLEGAL: u64 = 2;
    /// Breakpoint.
    pub const BREAKPOINT: u64 = 3;
    /// Load address misaligned (AMOs/LR only).
    pub const LOAD_MISALIGNED: u64 = 4;
    /// Load access fault.
    pub const LOAD_ACCESS: u64 = 5;
    /// Store/AMO address misaligned.
    pub const STORE_MISALIGNED: u64 = 6;
    /// Store/AMO access fault.
    pub const STORE_ACCESS: u64 = 7;
    /// Environment call from U-mode.
    pub const ECALL_U: u64 = 8;
    /// Environment call from S-mode.
    pub const ECALL_S: u64 = 9;
    /// Environment call from M-mode.
    pub const ECALL_M: u64 = 11;
    /// Instruction page fault.
    pub const FETCH_PAGE: u64 = 12;
    /// Load page fault.
    pub const LOAD_PAGE: u64 = 13;
    /// Store/AMO page fault.
    pub const STORE_PAGE: u64 = 15;
}

/// Interrupt bits of mip/mie.
pub mod irq {
    /// Supervisor software interrupt.
    pub const SSIP: u64 = 1 << 1;
    /// Machine software interrupt.
    pub const MSIP: u64 = 1 << 3;
    /// Supervisor timer interrupt.
    pub const STIP: u64 = 1 << 5;
    /// Machine timer interrupt.
    pub const MTIP: u64 = 1 << 7;
    /// Supervisor external interrupt.
    pub const SEIP: u64 = 1 << 9;
    /// Machine external interrupt.
    pub const MEIP: u64 = 1 << 11;
}

/// mstatus bits.
pub mod mstatus {
    /// S-mode interrupt enable.
    pub const SIE: u64 = 1 << 1;
    /// M-mode interrupt enable.
    pub const MIE: u64 = 1 << 3;
    /// Previous SIE.
    pub const SPIE: u64 = 1 << 5;
    /// Previous MIE.
    pub const MPIE: u64 = 1 << 7;
    /// Previous privilege for sret.
    pub const SPP: u64 = 1 << 8;
    /// Previous privilege for mret (2 bits).
    pub const MPP_SHIFT: u32 = 11;
    /// Floating-point state (2 bits).
    pub const FS: u64 = 3 << 13;
    /// Modify privilege of loads/stores.
    pub const MPRV: u64 = 1 << 17;
    /// Permit supervisor access to user memory.
    pub const SUM: u64 = 1 << 18;
    /// Make executable readable.
    pub const MXR: u64 = 1 << 19;
    /// Trap virtual memory.
    pub const TVM: u64 = 1 << 20;
    /// Timeout wait.
    pub const TW: u64 = 1 << 21;
    /// Trap sret.
    pub const TSR: u64 = 1 << 22;
    /// State dirty summary.
    pub const SD: u64 = 1 << 63;
}

/// A synchronous exception raised by an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    /// The cause code.
    pub cause: u64,
    /// The trap value (faulting address or instruction bits).
    pub tval: u64,
}

impl Exception {
    /// An exception with cause and tval.
    #[inline]
    pub fn new(cause: u64, tval: u64) -> Exception {
        Exception { cause, tval }
    }
}

/// Why [`Cpu::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The instruction budget ran out (or a state change asked for a check).
    Budget,
    /// An `ecall` that traps to M-mode: the emulator itself handles it (SBI or a
    /// user-mode syscall). `pc` still points at the `ecall`.
    Ecall {
        /// The privilege the ecall came from.
        from: u8,
    },
    /// A WFI with no interrupt pending.
    Wfi,
    /// A trap to M-mode that no M-mode software handles (mtvec is 0).
    MachineTrap {
        /// The cause (with the interrupt bit for interrupts).
        cause: u64,
        /// The trap value.
        tval: u64,
        /// The pc of the trap.
        pc: u64,
    },
}

/// Slots of one page in the decoded-page cache: one per 2-byte offset, then
/// two `PageEnd` sentinels reached by running off the end of the page (after
/// an instruction ending at the page end, or one crossing into the next page).
pub(crate) const PAGE_SLOTS: usize = 2048 + 2;
/// Most pages with decoded instructions kept at once (24 MiB of cache).
const MAX_CODE_PAGES: usize = 1024;
pub(crate) const NO_PAGE: u64 = u64::MAX;
/// The slot of `code` for an instruction that crosses a page boundary (not
/// cached), followed by two `PageEnd` sentinels; pages start after it.
const SCRATCH: usize = 0;
const PAGES_START: usize = 3;

/// One RISC-V hart plus the bus it is attached to.
pub struct Cpu {
    /// Integer registers (x0 is kept at 0), then a scratch register that
    /// decoded instructions write instead of x0 ([`crate::decode::XZR`]).
    pub x: [u64; 33],
    /// Floating-point registers (singles NaN-boxed).
    pub f: [u64; 32],
    /// Program counter.
    pub pc: u64,
    /// Current privilege level.
    pub privilege: u8,
    /// Accrued FP exception flags.
    pub fflags: u8,
    /// Dynamic FP rounding mode.
    pub frm: u8,
    /// mstatus (sstatus is a view of it).
    pub mstatus: u64,
    /// Machine trap-vector base.
    pub mtvec: u64,
    /// Supervisor trap-vector base.
    pub stvec: u64,
    /// Machine exception pc.
    pub mepc: u64,
    /// Supervisor exception pc.
    pub sepc: u64,
    /// Machine trap cause.
    pub mcause: u64,
    /// Supervisor trap cause.
    pub scause: u64,
    /// Machine trap value.
    pub mtval: u64,
    /// Supervisor trap value.
    pub stval: u64,
    /// Machine scratch.
    pub mscratch: u64,
    /// Supervisor scratch.
    pub sscratch: u64,
    /// Exception delegation.
    pub medeleg: u64,
    /// Interrupt delegation.
    pub mideleg: u64,
    /// Interrupt enables.
    pub mie: u64,
    /// Interrupt pending bits.
    pub mip: u64,
    /// Address translation and protection.
    pub satp: u64,
    /// Counter enables for S-mode.
    pub mcounteren: u64,
    /// Counter enables for U-mode.
    pub scounteren: u64,
    /// Machine environment configuration.
    pub menvcfg: u64,
    /// Supervisor environment configuration.
    pub senvcfg: u64,
    /// LR reservation (physical address) if any.
    pub reservation: Option<u64>,
    /// Instructions executed (cycle and instret read this).
    pub instret: u64,
    /// The `time` counter at the start of the current slice (10 MHz ticks).
    pub time: u64,
    /// Set by WFI; cleared by the run loop when an interrupt is pending.
    pub wfi: bool,
    /// The physical address space.
    pub bus: Bus,
    pub(crate) tlb: Tlb,
    slice_end: u64,
    slice_start: u64,
    /// Per RAM page: 1 + its slot in `code`, or 0.
    code_slot: Vec<u32>,
    /// Decoded instructions, `PAGE_SLOTS` per slot (a page of RAM).
    code: Vec<Insn>,
    /// Parallel to `code`: the number of instructions from a decoded
    /// instruction to the end of its block. Kept when a page is dropped, so
    /// that a block that wrote its own page can still uncount its tail.
    code_n: Vec<u16>,
    free_slots: Vec<u32>,
    /// Virtual page number of the page instructions are fetched from, or NO_PAGE.
    pub(crate) fetch_vpn: u64,
    /// Index in `code` of the first slot of the fetch page.
    fetch_base: usize,
    /// Offset in RAM of the fetch page.
    fetch_off: usize,
}

impl Cpu {
    /// A hart in M-mode at pc 0 attached to `bus`.
    pub fn new(bus: Bus) -> Cpu {
        let pages = bus.ram.size().div_ceil(4096);
        let mut cpu = Cpu {
            x: [0; 33],
            f: [0; 32],
            pc: 0,
            privilege: privilege::M,
            fflags: 0,
            frm: 0,
            mstatus: 0,
            mtvec: 0,
            stvec: 0,
            mepc: 0,
            sepc: 0,
            mcause: 0,
            scause: 0,
            mtval: 0,
            stval: 0,
            mscratch: 0,
            sscratch: 0,
            medeleg: 0,
            mideleg: 0,
            mie: 0,
            mip: 0,
            satp: 0,
            mcounteren: 0,
            scounteren: 0,
            menvcfg: 0,
            senvcfg: 0,
            reservation: None,
            instret: 0,
            time: 0,
            wfi: false,
            bus,
            tlb: Tlb::new(),
            slice_end: 0,
            slice_start: 0,
            code_slot: vec![0; pages],
            code: vec![Insn::UNDECODED, Insn::PAGE_END, Insn::PAGE_END],
            code_n: vec![0; PAGES_START],
            free_slots: Vec::new(),
            fetch_vpn: NO_PAGE,
            fetch_base: 0,
            fetch_off: 0,
        };
        cpu.update_tlb_key();
        cpu
    }

    /// Ends the current slice after this instruction (for state changes that
    /// need the run loop: interrupt enables, device writes, ...).
    #[inline]
    pub(crate) fn end_slice(&mut self) {
        self.slice_end = 0;
    }

    /// The `time` value as seen by the guest: the slice's time, advanced by a
    /// lower bound of the time the instructions executed since took (1 per
    /// nanosecond), so that successive reads increase without running ahead
    /// of the host clock.
    pub fn guest_time(&self) -> u64 {
        self.time + (self.instret - self.slice_start) / 100
    }

    /// Changes the privilege level (and the TLB keys that depend on it).
    #[inline]
    pub(crate) fn set_privilege(&mut self, p: u8) {
        self.privilege = p;
        self.fetch_vpn = NO_PAGE;
        self.update_tlb_key();
    }

    /// The interrupt to take now, if any (cause without the interrupt bit).
    pub fn pending_interrupt(&self) -> Option<u64> {
        let pending = self.mip & self.mie;
        if pending == 0 {
            return None;
        }
        let m = pending & !self.mideleg;
        let m_on = self.privilege < privilege::M || self.mstatus & mstatus::MIE != 0;
        if m_on && m != 0 {
            return Some(highest(m));
        }
        let s = pending & self.mideleg;
        let s_on = self.privilege < privilege::S
            || (self.privilege == privilege::S && self.mstatus & mstatus::SIE != 0);
        if s_on && s != 0 {
            return Some(highest(s));
        }
        None
    }

    /// Executes up to `budget` instructions (a few more when the budget ends
    /// inside a block), taking pending interrupts first.
    pub fn run(&mut self, budget: u64) -> Exit {
        self.sync_code();
        if let Some(c) = self.pending_interrupt() {
            self.wfi = false;
            if let Some(e) = self.trap(c | 1 << 63, 0) {
                return e;
            }
        }
        if self.wfi {
            if self.mip & self.mie == 0 {
                return Exit::Wfi;
            }
            self.wfi = false;
        }
        self.slice_start = self.instret;
        self.slice_end = self.instret + budget;
        self.run_blocks()
    }

    /// Decodes the block starting at slot `idx` of the fetch page (the
    /// instructions up to a control transfer, the end of the page, or an
    /// already decoded slot) and fills in the counts of the slots decoded.
    /// Returns the first instruction. An instruction crossing into the next
    /// page is decoded every time and not cached.
    #[cold]
    #[inline(never)]
    pub(crate) fn decode_block(&mut self, pc: u64, si: usize) -> Result<usize, Exception> {
        let base = self.fetch_base;
        let idx = si - base;
        let page = self.bus.ram.page_from(self.fetch_off);
        let read16 = |off: usize| u16::from_le_bytes([page[off], page[off + 1]]) as u32;
        let mut decoded = 0usize;
        let mut after = 0u16;
        let mut i = idx;
        while i < 2048 {
            if self.code[base + i].op != Op::Undecoded {
                after = self.code_n[base + i];
                break;
            }
            let off = 2 * i;
            let lo = read16(off);
            let raw = if lo & 3 != 3 {
                lo
            } else if i == 2047 {
                break;
            } else {
                lo | read16(off + 2) << 16
            };
            let insn = decode(raw);
            self.code[base + i] = insn;
            decoded += 1;
            i += insn.len() as usize / 2;
            if insn.op.ends_block() {
                break;
            }
        }
        if decoded == 0 {
            // Crosses into the next page: decoded into the scratch slot,
            // followed by `PageEnd` sentinels.
            self.code[SCRATCH] = decode(self.fetch_slow(pc)?);
            self.code_n[SCRATCH] = 1;
            return Ok(SCRATCH);
        }
        let mut i = idx;
        for k in 0..decoded {
            self.code_n[base + i] = (decoded - k) as u16 + after;
            i += self.code[base + i].len() as usize / 2;
        }
        Ok(si)
    }

    /// Makes the page of `pc` the current fetch page if the fetch TLB maps it
    /// and it has decoded instructions already; false otherwise.
    #[inline(always)]
    pub(crate) fn enter_code_page_fast(&mut self, pc: u64) -> bool {
        let e = self.tlb.x[Tlb::index(pc)];
        if e.tag != self.tlb.key_x(pc) || !self.bus.ram.dirty_code.is_empty() {
            return false;
        }
        let slot = self.code_slot[e.off >> 12];
        if slot == 0 {
            return false;
        }
        self.fetch_vpn = pc >> 12;
        self.fetch_base = PAGES_START + (slot as usize - 1) * PAGE_SLOTS;
        self.fetch_off = e.off;
        true
    }

    /// Makes the page of `pc` the current fetch page, creating its decoded-page slot.
    #[cold]
    #[inline(never)]
    pub(crate) fn enter_code_page(&mut self, pc: u64) -> Result<(), Exception> {
        self.sync_code();
        let e = self.tlb.x[Tlb::index(pc)];
        let off = if e.tag == self.tlb.key_x(pc) {
            e.off
        } else {
            let pa = self.translate(pc, Access::Exec)?;
            self.bus
                .ram
                .offset(pa & !0xfff, 4096)
                .ok_or(Exception::new(cause::FETCH_ACCESS, pc))?
        };
        let page = off >> 12;
        let slot = match self.code_slot[page] {
            0 => {
                let slot = self.alloc_code_slot();
                self.code_slot[page] = slot as u32 + 1;
                self.bus.ram.mark_code(page);
                // Stores to this page must now take the slow path.
                self.tlb.flush_writes();
                slot
            }
            s => s as usize - 1,
        };
        self.fetch_vpn = pc >> 12;
        self.fetch_base = PAGES_START + slot * PAGE_SLOTS;
        self.fetch_off = off;
        Ok(())
    }

    fn alloc_code_slot(&mut self) -> usize {
        if let Some(s) = self.free_slots.pop() {
            return s as usize;
        }
        let used = (self.code.len() - PAGES_START) / PAGE_SLOTS;
        if used < MAX_CODE_PAGES {
            self.code.extend_from_slice(&[Insn::UNDECODED; 2048]);
            self.code.extend_from_slice(&[Insn::PAGE_END; 2]);
            self.code_n.resize(self.code.len(), 0);
            return used;
        }
        // Full: drop every decoded page.
        for s in 0..used {
            self.clear_code_slot(s);
        }
        self.code_slot.fill(0);
        self.bus.ram.clear_code();
        self.fetch_vpn = NO_PAGE;
        self.free_slots = (1..used as u32).rev().collect();
        0
    }

    fn clear_code_slot(&mut self, slot: usize) {
        let start = PAGES_START + slot * PAGE_SLOTS;
        self.code[start..start + 2048].fill(Insn::UNDECODED);
    }

    /// Drops the decoded instructions of code pages written since the last call.
    #[inline]
    pub(crate) fn sync_code(&mut self) {
        if self.bus.ram.dirty_code.is_empty() {
            return;
        }
        let dirty = std::mem::take(&mut self.bus.ram.dirty_code);
        for &page in &dirty {
            let slot = std::mem::take(&mut self.code_slot[page as usize]);
            if slot != 0 {
                self.clear_code_slot(slot as usize - 1);
                self.free_slots.push(slot - 1);
            }
        }
        self.bus.ram.dirty_code = dirty;
        self.bus.ram.dirty_code.clear();
        self.fetch_vpn = NO_PAGE;
    }

    /// The raw bits of the instruction at pc, as far as they can be read
    /// without side effects (for the tval of illegal-instruction traps).
    pub(crate) fn current_insn_bits(&self) -> u32 {
        if self.pc >> 12 != self.fetch_vpn {
            return 0;
        }
        let off = (self.pc & 0xfff) as usize;
        let d = self.bus.ram.page_from(self.fetch_off);
        let lo = u16::from_le_bytes([d[off], d[off + 1]]) as u32;
        if lo & 3 != 3 {
            lo
        } else if self.pc & 0xfff == 0xffe {
            0
        } else {
            lo | (u16::from_le_bytes([d[off + 2], d[off + 3]]) as u32) << 16
        }
    }

    /// An illegal-instruction exception for the instruction at pc.
    #[cold]
    pub(crate) fn illegal_insn(&self) -> Exception {
        Exception::new(cause::ILLEGAL, self.current_insn_bits() as u64)
    }

    #[cold]
    fn fetch_slow(&mut self, pc: u64) -> Result<u32, Exception> {
        let lo = self.fetch16(pc)? as u32;
        if lo & 3 != 3 {
            return Ok(lo);
        }
        let hi = self.fetch16(pc.wrapping_add(2))? as u32;
        Ok(lo | hi << 16)
    }

    fn fetch16(&mut self, va: u64) -> Result<u16, Exception> {
        let pa = self.translate(va, Access::Exec)?;
        match self.bus.ram.offset(pa, 2) {
            // pc is even: two bytes never cross a page.
            Some(off) => Ok(u16::from_le_bytes(self.bus.ram.get(off))),
            None => Err(Exception::new(cause::FETCH_ACCESS, va)),
        }
    }

    /// Takes a trap (exception or interrupt when bit 63 of `cause` is set).
    /// Returns an exit for traps the emulator handles itself (M-mode ecalls,
    /// traps to an M-mode with no handler).
    pub fn trap(&mut self, cause: u64, tval: u64) -> Option<Exit> {
        let interrupt = cause >> 63 != 0;
        let code = cause & !(1 << 63);
        let deleg = if interrupt {
            self.mideleg
        } else {
            self.medeleg
        };
        self.reservation = None;
        if self.privilege <= privilege::S && (deleg >> code) & 1 != 0 {
            self.scause = cause;
            self.sepc = self.pc;
            self.stval = tval;
            let mut s = self.mstatus;
            s = (s & !mstatus::SPIE)
                | if s & mstatus::SIE != 0 {
                    mstatus::SPIE
                } else {
                    0
                };
            s = (s & !mstatus::SPP)
                | if self.privilege == privilege::S {
                    mstatus::SPP
                } else {
                    0
                };
            s &= !mstatus::SIE;
            self.mstatus = s;
            let base = self.stvec & !3;
            self.pc = if interrupt && self.stvec & 3 == 1 {
                base.wrapping_add(4 * code)
            } else {
                base
            };
            self.set_privilege(privilege::S);
            return None;
        }
        if !interrupt && matches!(code, cause::ECALL_U | cause::ECALL_S | cause::ECALL_M) {
            return Some(Exit::Ecall {
                from: self.privilege,
            });
        }
        if self.mtvec == 0 {
            return Some(Exit::MachineTrap {
                cause,
                tval,
                pc: self.pc,
            });
        }
        self.mcause = cause;
        self.mepc = self.pc;
        self.mtval = tval;
        let mut s = self.mstatus;
        s = (s & !mstatus::MPIE)
            | if s & mstatus::MIE != 0 {
                mstatus::MPIE
            } else {
                0
            };
        s = (s & !(3 << mstatus::MPP_SHIFT)) | (self.privilege as u64) << mstatus::MPP_SHIFT;
        s &= !mstatus::MIE;
        self.mstatus = s;
        let base = self.mtvec & !3;
        self.pc = if interrupt && self.mtvec & 3 == 1 {
            base.wrapping_add(4 * code)
        } else {
            base
        };
        self.set_privilege(privilege::M);
        None
    }

    // ------------------------------------------------------------ memory

    #[inline(always)]
    fn load<const N: usize>(&mut self, va: u64) -> Result<u64, Exception> {
        match self.load_fast::<N>(va) {
            Some(v) => Ok(v),
            None => self.load_slow(va, N as u8),
        }
    }

    /// A load through the TLB from RAM within one page; `None` when it needs
    /// the slow path.
    #[inline(always)]
    fn load_fast<const N: usize>(&self, va: u64) -> Option<u64> {
        let e = self.tlb.r[Tlb::index(va)];
        if e.tag == self.tlb.key(va) && (va & 0xfff) as usize <= 4096 - N {
            let off = e.off + (va & 0xfff) as usize;
            let mut b = [0u8; 8];
            b[..N].copy_from_slice(&self.bus.ram.get::<N>(off));
            return Some(u64::from_le_bytes(b));
        }
        None
    }

    #[inline(always)]
    fn store<const N: usize>(&mut self, va: u64, val: u64) -> Result<(), Exception> {
        if self.store_fast::<N>(va, val) {
            return Ok(());
        }
        self.store_slow(va, N as u8, val)
    }

    /// A store through the TLB to RAM that holds no decoded code; false when
    /// it needs the slow path.
    #[inline(always)]
    fn store_fast<const N: usize>(&mut self, va: u64, val: u64) -> bool {
        let e = self.tlb.w[Tlb::index(va)];
        if e.tag == self.tlb.key(va) && (va & 0xfff) as usize <= 4096 - N {
            let off = e.off + (va & 0xfff) as usize;
            self.bus.ram.put(off, &val.to_le_bytes()[..N]);
            return true;
        }
        false
    }

    #[cold]
    fn load_slow(&mut self, va: u64, size: u8) -> Result<u64, Exception> {
        if (va & 0xfff) + size as u64 > 0x1000 {
            let mut v = 0u64;
            for i in 0..size as u64 {
                v |= self.load_slow(va.wrapping_add(i), 1)? << (8 * i);
            }
            return Ok(v);
        }
        let pa = self.translate(va, Access::Read)?;
        if pa & (size as u64 - 1) != 0 && self.bus.ram.offset(pa, size as u64).is_none() {
            // Misaligned device access: byte by byte.
            let mut v = 0u64;
            for i in 0..size as u64 {
                let b = self
                    .bus
                    .read(pa.wrapping_add(i), 1)
                    .ok_or(Exception::new(cause::LOAD_ACCESS, va))?;
                v |= b << (8 * i);
            }
            return Ok(v);
        }
        self.bus
            .read(pa, size)
            .ok_or(Exception::new(cause::LOAD_ACCESS, va))
    }

    #[cold]
    pub(crate) fn store_slow(&mut self, va: u64, size: u8, val: u64) -> Result<(), Exception> {
        if (va & 0xfff) + size as u64 > 0x1000 {
            // Check every byte's translation first so a fault leaves memory untouched.
            for i in 0..size as u64 {
                self.translate(va.wrapping_add(i), Access::Write)?;
            }
            for i in 0..size as u64 {
                self.store_slow(va.wrapping_add(i), 1, val >> (8 * i))?;
            }
            return Ok(());
        }
        let pa = self.translate(va, Access::Write)?;
        if self.bus.ram.offset(pa, size as u64).is_none() {
            self.end_slice();
            if pa & (size as u64 - 1) != 0 {
                for i in 0..size as u64 {
                    self.bus
                        .write(pa.wrapping_add(i), 1, val >> (8 * i))
                        .ok_or(Exception::new(cause::STORE_ACCESS, va))?;
                }
                return Ok(());
            }
        }
        let r = self
            .bus
            .write(pa, size, val)
            .ok_or(Exception::new(cause::STORE_ACCESS, va));
        self.sync_code();
        r
    }

    /// Reads guest virtual memory as the current privilege would (used by harnesses).
    pub fn read_virt(&mut self, va: u64, buf: &mut [u8]) -> Result<(), Exception> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.load::<1>(va.wrapping_add(i as u64))? as u8;
        }
        Ok(())
    }

    /// Writes guest virtual memory as the current privilege would (used by harnesses).
    pub fn write_virt(&mut self, va: u64, buf: &[u8]) -> Result<(), Exception> {
        for (i, b) in buf.iter().enumerate() {
            self.store::<1>(va.wrapping_add(i as u64), *b as u64)?;
        }
        Ok(())
    }
}

fn highest(bits: u64) -> u64 {
    const ORDER: [u64; 6] = [11, 3, 7, 9, 1, 5];
    for c in ORDER {
        if bits & (1 << c) != 0 {
            return c;
        }
    }
    bits.trailing_zeros() as u64
}
