//! Execution of one decoded instruction.

use super::{Cpu, Exception, Exit, cause, mstatus, privilege};
use crate::decode::{Insn, Op};
use crate::fpu::{self, Flags, Rounding};
use crate::mmu::Access;

const BOX: u64 = 0xffff_ffff_0000_0000;

#[inline(always)]
fn sx32(v: u64) -> u64 {
    v as i32 as i64 as u64
}

/// The upper halves of the M extension's 128-bit products (calls in wasm).
fn mul_high(op: Op, a: u64, b: u64) -> u64 {
    match op {
        Op::Mulh => ((a as i64 as i128 * b as i64 as i128) >> 64) as u64,
        Op::Mulhsu => ((a as i64 as i128).wrapping_mul(b as i128) >> 64) as u64,
        _ => ((a as u128 * b as u128) >> 64) as u64,
    }
}

/// The M extension's other multiplications and divisions.
#[inline(always)]
fn muldiv(op: Op, a: u64, b: u64) -> u64 {
    use Op::*;
    match op {
        Mul => a.wrapping_mul(b),
        Div => {
            if b == 0 {
                u64::MAX
            } else {
                (a as i64).wrapping_div(b as i64) as u64
            }
        }
        Divu => a.checked_div(b).unwrap_or(u64::MAX),
        Rem => {
            if b == 0 {
                a
            } else {
                (a as i64).wrapping_rem(b as i64) as u64
            }
        }
        Remu => {
            if b == 0 {
                a
            } else {
                a % b
            }
        }
        Mulw => sx32((a as u32).wrapping_mul(b as u32) as u64),
        Divw => {
            let (x, y) = (a as i32, b as i32);
            if y == 0 {
                u64::MAX
            } else {
                x.wrapping_div(y) as i64 as u64
            }
        }
        Divuw => {
            let (x, y) = (a as u32, b as u32);
            x.checked_div(y).map_or(u64::MAX, |q| sx32(q as u64))
        }
        Remw => {
            let (x, y) = (a as i32, b as i32);
            if y == 0 {
                x as i64 as u64
            } else {
                x.wrapping_rem(y) as i64 as u64
            }
        }
        _ => {
            let (x, y) = (a as u32, b as u32);
            if y == 0 {
                sx32(x as u64)
            } else {
                sx32((x % y) as u64)
            }
        }
    }
}

/// Why [`Cpu::run_inline`] stopped.
enum Stop {
    /// The instruction at slot `si` (at `pc`) needs [`Cpu::execute_general`].
    Slow { si: usize, pc: u64 },
    /// Control goes to a block the inline loop does not enter: on another
    /// page, not decoded yet, or after the end of the slice.
    Jump(u64),
}

/// Where the run loop goes on after [`Cpu::execute_general`].
enum Flow {
    /// The next instruction of the block.
    Next,
    /// A new block at this pc.
    Jump(u64),
    /// This pc, leaving the block because its instruction changed decoded
    /// code or fetching (the rest of the block is uncounted).
    Leave(u64),
}

impl Cpu {
    #[inline(always)]
    fn fs(&self, r: u8) -> u32 {
        let v = self.f[r as usize];
        if v & BOX == BOX {
            v as u32
        } else {
            fpu::CANONICAL_NAN32
        }
    }

    #[inline(always)]
    fn set_fs(&mut self, r: u8, v: u32) {
        self.f[r as usize] = BOX | v as u64;
        self.mark_fs_dirty();
    }

    #[inline(always)]
    fn set_fd(&mut self, r: u8, v: u64) {
        self.f[r as usize] = v;
        self.mark_fs_dirty();
    }

    fn rounding(&self, rm: u8) -> Result<Rounding, Exception> {
        let r = if rm == 7 { self.frm } else { rm };
        Rounding::from_bits(r).ok_or_else(|| self.illegal_insn())
    }

    fn amo<const W: bool>(
        &mut self,
        d: Insn,
        f: impl Fn(u64, u64) -> u64,
    ) -> Result<(), Exception> {
        let size: u8 = if W { 4 } else { 8 };
        let va = self.x[d.rs1 as usize];
        if va & (size as u64 - 1) != 0 {
            return Err(Exception::new(cause::STORE_MISALIGNED, va));
        }
        let pa = self.translate(va, Access::Write)?;
        let old = self
            .bus
            .read(pa, size)
            .ok_or(Exception::new(cause::STORE_ACCESS, va))?;
        let src = self.x[d.rs2() as usize];
        let (old, new) = if W {
            (sx32(old), f(sx32(old), sx32(src)))
        } else {
            (old, f(old, src))
        };
        self.bus
            .write(pa, size, new)
            .ok_or(Exception::new(cause::STORE_ACCESS, va))?;
        self.sync_code();
        self.x[d.rd as usize] = old;
        Ok(())
    }

    fn lr(&mut self, d: Insn, size: u8) -> Result<(), Exception> {
        let va = self.x[d.rs1 as usize];
        if va & (size as u64 - 1) != 0 {
            return Err(Exception::new(cause::LOAD_MISALIGNED, va));
        }
        let pa = self.translate(va, Access::Read)?;
        let v = self
            .bus
            .read(pa, size)
            .ok_or(Exception::new(cause::LOAD_ACCESS, va))?;
        self.x[d.rd as usize] = if size == 4 { sx32(v) } else { v };
        self.reservation = Some(pa);
        Ok(())
    }

    fn sc(&mut self, d: Insn, size: u8) -> Result<(), Exception> {
        let va = self.x[d.rs1 as usize];
        if va & (size as u64 - 1) != 0 {
            return Err(Exception::new(cause::STORE_MISALIGNED, va));
        }
        let pa = self.translate(va, Access::Write)?;
        let ok = self.reservation == Some(pa);
        self.reservation = None;
        if ok {
            self.bus
                .write(pa, size, self.x[d.rs2() as usize])
                .ok_or(Exception::new(cause::STORE_ACCESS, va))?;
            self.sync_code();
        }
        self.x[d.rd as usize] = !ok as u64;
        Ok(())
    }

    fn csr_op(&mut self, d: Insn) -> Result<(), Exception> {
        let csr = (d.imm & 0xfff) as u16;
        let src = match d.op {
            Op::Csrrw | Op::Csrrs | Op::Csrrc => self.x[d.rs1 as usize],
            _ => d.rs1 as u64,
        };
        let writes = matches!(d.op, Op::Csrrw | Op::Csrrwi) || d.rs1 != 0;
        let reads = !matches!(d.op, Op::Csrrw | Op::Csrrwi) || d.rd() != 0;
        let old = if reads {
            self.csr_read(csr)?
        } else {
            // csrrw to x0 still needs the privilege check of a read.
            if ((csr >> 8) & 3) as u8 > self.privilege {
                return Err(self.illegal_insn());
            }
            0
        };
        if writes {
            let new = match d.op {
                Op::Csrrw | Op::Csrrwi => src,
                Op::Csrrs | Op::Csrrsi => old | src,
                _ => old & !src,
            };
            self.csr_write(csr, new)?;
        }
        self.x[d.rd as usize] = old;
        Ok(())
    }

    /// Runs blocks until the slice ends (`slice_end`), a trap needs the
    /// emulator, or WFI.
    ///
    /// At the entry of a block the instructions up to its end are counted at
    /// once (`code_n`), then executed without further checks. Most
    /// instructions run in [`Cpu::run_inline`], which makes no calls (so that
    /// the compiler keeps its state in registers, which matters in wasm,
    /// where calls clobber every register); the others come back here and go
    /// through [`Cpu::execute_general`]. A trap or a store into decoded code
    /// inside a block uncounts the rest of the block.
    pub(super) fn run_blocks(&mut self) -> Exit {
        let mut pc = self.pc;
        'outer: loop {
            if self.instret >= self.slice_end {
                break;
            }
            let mut si = match self.block_entry(pc) {
                Ok(si) => si,
                Err(e) => {
                    self.instret += 1;
                    self.pc = pc;
                    if let Some(exit) = self.trap(e.cause, e.tval) {
                        return exit;
                    }
                    pc = self.pc;
                    continue;
                }
            };
            self.instret += self.code_n[si] as u64;
            let mut here = pc;
            loop {
                let base = here.wrapping_sub((si as u64) << 1);
                (si, here) = match self.run_inline(si, base) {
                    Stop::Jump(target) => {
                        pc = target;
                        continue 'outer;
                    }
                    Stop::Slow { si, pc } => (si, pc),
                };
                self.pc = here;
                let flow = match self.execute_general(si, here) {
                    Ok(flow) => flow,
                    Err(e) => {
                        self.instret -= self.code_n[si] as u64 - 1;
                        self.pc = here;
                        if let Some(exit) = self.trap(e.cause, e.tval) {
                            return exit;
                        }
                        pc = self.pc;
                        continue 'outer;
                    }
                };
                match flow {
                    Flow::Next => {
                        let len = self.code[si].len();
                        si += len as usize >> 1;
                        here = here.wrapping_add(len);
                    }
                    Flow::Jump(target) => {
                        pc = target;
                        continue 'outer;
                    }
                    Flow::Leave(target) => {
                        self.instret -= self.code_n[si] as u64 - 1;
                        pc = target;
                        continue 'outer;
                    }
                }
            }
        }
        self.pc = pc;
        if self.wfi { Exit::Wfi } else { Exit::Budget }
    }

    /// Executes the block at slot `si` (already counted), whose slots are
    /// `base + 2 * slot` in the guest's address space, and the blocks of the
    /// same page it branches to while the slice lasts, until an instruction
    /// needs [`Cpu::execute_general`] or control leaves the page.
    ///
    /// Makes no calls: everything that may need one (slow memory accesses,
    /// i128 arithmetic, FP, system operations, the end of the page) stops.
    #[inline(never)]
    fn run_inline(&mut self, mut si: usize, mut base: u64) -> Stop {
        use Op::*;
        loop {
            // One instruction; the loop runs two per iteration, so that each
            // has its own dispatch (better predicted).
            macro_rules! step {
                () => {{
                    // SAFETY: `si` starts at a slot of the fetch page (or at the
                    // scratch slot) and moves forward by 1 or 2 slots after each
                    // instruction that does not end the block, so at most to one
                    // of the two `PageEnd` sentinels after the page's (or the
                    // scratch slot's) 2048 slots, which stop the loop. A branch
                    // moves it to a slot of the fetch page. `code` never shrinks.
                    let insn = unsafe { *self.code.get_unchecked(si) };
                    let rd = insn.rd as usize;
                    let imm = insn.imm as i64 as u64;
                    macro_rules! here {
                        () => {
                            base.wrapping_add((si as u64) << 1)
                        };
                    }
                    macro_rules! slow {
                        () => {
                            return Stop::Slow { si, pc: here!() }
                        };
                    }
                    // Writes the destination register.
                    macro_rules! w {
                        ($v:expr) => {{
                            let v = $v;
                            // SAFETY: every instruction in `code` comes from
                            // `decode`, whose `rd` is a register number (< 32)
                            // or `XZR` (32), all within `x`.
                            unsafe { *self.x.get_unchecked_mut(rd) = v }
                        }};
                    }
                    macro_rules! a {
                        () => {
                            self.x[(insn.rs1 & 31) as usize]
                        };
                    }
                    macro_rules! b {
                        () => {
                            self.x[(insn.rs2 & 31) as usize]
                        };
                    }
                    // Continues at `target`: in this loop if it is a decoded
                    // block of a page with decoded code that the fetch TLB
                    // maps, and the slice goes on.
                    macro_rules! jump {
                        ($target:expr) => {{
                            let t: u64 = $target;
                            if self.instret >= self.slice_end {
                                return Stop::Jump(t);
                            }
                            let Some(s) = self.decoded_block(t) else {
                                return Stop::Jump(t);
                            };
                            self.instret += self.code_n[s] as u64;
                            si = s;
                            base = t.wrapping_sub((s as u64) << 1);
                            continue;
                        }};
                    }
                    macro_rules! ld {
                        ($n:literal) => {
                            match self.load_fast::<$n>(a!().wrapping_add(imm)) {
                                Some(v) => v,
                                None => slow!(),
                            }
                        };
                    }
                    macro_rules! st {
                        ($n:literal) => {
                            if !self.store_fast::<$n>(a!().wrapping_add(imm), b!()) {
                                slow!()
                            }
                        };
                    }
                    match insn.op {
                        Addi => w!(a!().wrapping_add(imm)),
                        Add => w!(a!().wrapping_add(b!())),
                        Lui => w!(imm),
                        Auipc => w!(here!().wrapping_add(imm)),
                        Jal => {
                            let here = here!();
                            w!(here.wrapping_add(insn.len()));
                            jump!(here.wrapping_add(imm));
                        }
                        Jalr => {
                            let t = a!().wrapping_add(imm) & !1;
                            w!(here!().wrapping_add(insn.len()));
                            jump!(t);
                        }
                        Beq | Bne | Blt | Bge | Bltu | Bgeu => {
                            let (a, b) = (a!(), b!());
                            let taken = match insn.op {
                                Beq => a == b,
                                Bne => a != b,
                                Blt => (a as i64) < (b as i64),
                                Bge => (a as i64) >= (b as i64),
                                Bltu => a < b,
                                _ => a >= b,
                            };
                            let here = here!();
                            jump!(here.wrapping_add(if taken { imm } else { insn.len() }));
                        }
                        Lb => w!(ld!(1) as i8 as i64 as u64),
                        Lh => w!(ld!(2) as i16 as i64 as u64),
                        Lw => w!(sx32(ld!(4))),
                        Ld => w!(ld!(8)),
                        Lbu => w!(ld!(1)),
                        Lhu => w!(ld!(2)),
                        Lwu => w!(ld!(4)),
                        Sb => st!(1),
                        Sh => st!(2),
                        Sw => st!(4),
                        Sd => st!(8),
                        Slti => w!(((a!() as i64) < (imm as i64)) as u64),
                        Sltiu => w!((a!() < imm) as u64),
                        Xori => w!(a!() ^ imm),
                        Ori => w!(a!() | imm),
                        Andi => w!(a!() & imm),
                        Slli => w!(a!() << (imm & 63)),
                        Srli => w!(a!() >> (imm & 63)),
                        Srai => w!(((a!() as i64) >> (imm & 63)) as u64),
                        Sub => w!(a!().wrapping_sub(b!())),
                        Sll => w!(a!() << (b!() & 63)),
                        Slt => w!(((a!() as i64) < (b!() as i64)) as u64),
                        Sltu => w!((a!() < b!()) as u64),
                        Xor => w!(a!() ^ b!()),
                        Srl => w!(a!() >> (b!() & 63)),
                        Sra => w!(((a!() as i64) >> (b!() & 63)) as u64),
                        Or => w!(a!() | b!()),
                        And => w!(a!() & b!()),
                        Addiw => w!(sx32(a!().wrapping_add(imm))),
                        Slliw => w!(sx32(((a!() as u32) << (imm & 31)) as u64)),
                        Srliw => w!(sx32(((a!() as u32) >> (imm & 31)) as u64)),
                        Sraiw => w!(((a!() as i32) >> (imm & 31)) as i64 as u64),
                        Addw => w!(sx32(a!().wrapping_add(b!()))),
                        Subw => w!(sx32(a!().wrapping_sub(b!()))),
                        Sllw => w!(sx32(((a!() as u32) << (b!() & 31)) as u64)),
                        Srlw => w!(sx32(((a!() as u32) >> (b!() & 31)) as u64)),
                        Sraw => w!(((a!() as i32) >> (b!() & 31)) as i64 as u64),
                        Fence => {}
                        Mul => w!(muldiv(Mul, a!(), b!())),
                        Div => w!(muldiv(Div, a!(), b!())),
                        Divu => w!(muldiv(Divu, a!(), b!())),
                        Rem => w!(muldiv(Rem, a!(), b!())),
                        Remu => w!(muldiv(Remu, a!(), b!())),
                        Mulw => w!(muldiv(Mulw, a!(), b!())),
                        Divw => w!(muldiv(Divw, a!(), b!())),
                        Divuw => w!(muldiv(Divuw, a!(), b!())),
                        Remw => w!(muldiv(Remw, a!(), b!())),
                        Remuw => w!(muldiv(Remuw, a!(), b!())),
                        _ => slow!(),
                    }
                    si += insn.len() as usize >> 1;
                }};
            }
            step!();
            step!();
        }
    }

    /// Executes the instruction at slot `si` (at `pc`, also in `self.pc`)
    /// that [`Cpu::run_inline`] stopped at, and says where to go on.
    #[inline(never)]
    fn execute_general(&mut self, si: usize, pc: u64) -> Result<Flow, Exception> {
        use Op::*;
        let insn = self.code[si];
        let next = pc.wrapping_add(insn.len());
        let (a, b) = (self.x[insn.rs1 as usize & 31], self.x[insn.rs2() as usize]);
        let va = a.wrapping_add(insn.imm as i64 as u64);
        let rd = insn.rd as usize;
        let stored = |cpu: &Cpu| {
            if cpu.fetch_vpn == super::NO_PAGE {
                // It wrote decoded code: leave the block.
                Flow::Leave(next)
            } else {
                Flow::Next
            }
        };
        match insn.op {
            // The inline loop found no TLB entry for these accesses.
            Lb => self.x[rd] = self.load_slow(va, 1)? as i8 as i64 as u64,
            Lh => self.x[rd] = self.load_slow(va, 2)? as i16 as i64 as u64,
            Lw => self.x[rd] = sx32(self.load_slow(va, 4)?),
            Ld => self.x[rd] = self.load_slow(va, 8)?,
            Lbu => self.x[rd] = self.load_slow(va, 1)?,
            Lhu => self.x[rd] = self.load_slow(va, 2)?,
            Lwu => self.x[rd] = self.load_slow(va, 4)?,
            Sb => self.store_slow(va, 1, b)?,
            Sh => self.store_slow(va, 2, b)?,
            Sw => self.store_slow(va, 4, b)?,
            Sd => self.store_slow(va, 8, b)?,
            Mulh | Mulhsu | Mulhu => self.x[rd] = mul_high(insn.op, a, b),
            PageEnd | Undecoded => return Ok(Flow::Jump(pc)),
            op if op as u8 >= Flw as u8 => {
                self.execute_fp(insn)?;
                return Ok(stored(self));
            }
            _ => return self.execute_system(insn, pc).map(Flow::Jump),
        }
        Ok(stored(self))
    }

    /// The index in `code` of the instruction at `pc`, which starts a
    /// block, after making its page the fetch page and decoding as needed.
    #[inline(always)]
    fn block_entry(&mut self, pc: u64) -> Result<usize, Exception> {
        if let Some(si) = self.decoded_block(pc) {
            return Ok(si);
        }
        if pc >> 12 != self.fetch_vpn {
            self.enter_code_page(pc)?;
        }
        let si = self.fetch_base + ((pc & 0xfff) >> 1) as usize;
        if self.code[si].op == Op::Undecoded {
            return self.decode_block(pc, si);
        }
        Ok(si)
    }

    /// The index in `code` of the already decoded block at `pc`, if its page
    /// is the fetch page or can become it without a page walk (it has decoded
    /// code and the fetch TLB maps it). Makes no calls, for
    /// [`Cpu::run_inline`].
    #[inline(always)]
    fn decoded_block(&mut self, pc: u64) -> Option<usize> {
        if pc >> 12 != self.fetch_vpn && !self.enter_code_page_fast(pc) {
            return None;
        }
        let si = self.fetch_base + ((pc & 0xfff) >> 1) as usize;
        (self.code[si].op != Op::Undecoded).then_some(si)
    }

    /// Executes an operation that ends its block (at `pc`, also in
    /// `self.pc`), returning the next pc.
    #[inline(always)]
    fn execute_system(&mut self, d: Insn, pc: u64) -> Result<u64, Exception> {
        use Op::*;
        let next = pc.wrapping_add(d.len());
        match d.op {
            Fence | FenceI => {}
            Ecall => {
                let c = match self.privilege {
                    privilege::U => cause::ECALL_U,
                    privilege::S => cause::ECALL_S,
                    _ => cause::ECALL_M,
                };
                return Err(Exception::new(c, 0));
            }
            Ebreak => return Err(Exception::new(cause::BREAKPOINT, pc)),
            Sret => {
                if self.privilege == privilege::U
                    || (self.privilege == privilege::S && self.mstatus & mstatus::TSR != 0)
                {
                    return Err(self.illegal_insn());
                }
                let s = self.mstatus;
                let new_priv = if s & mstatus::SPP != 0 {
                    privilege::S
                } else {
                    privilege::U
                };
                let mut n = s & !(mstatus::SIE | mstatus::SPP | mstatus::MPRV);
                if s & mstatus::SPIE != 0 {
                    n |= mstatus::SIE;
                }
                n |= mstatus::SPIE;
                self.mstatus = n;
                self.set_privilege(new_priv);
                self.end_slice();
                return Ok(self.sepc);
            }
            Mret => {
                if self.privilege != privilege::M {
                    return Err(self.illegal_insn());
                }
                let s = self.mstatus;
                let new_priv = ((s >> mstatus::MPP_SHIFT) & 3) as u8;
                let mut n = s & !(mstatus::MIE | 3 << mstatus::MPP_SHIFT);
                if s & mstatus::MPIE != 0 {
                    n |= mstatus::MIE;
                }
                n |= mstatus::MPIE;
                if new_priv != privilege::M {
                    n &= !mstatus::MPRV;
                }
                self.mstatus = n;
                self.set_privilege(if new_priv == 2 {
                    privilege::U
                } else {
                    new_priv
                });
                self.end_slice();
                return Ok(self.mepc);
            }
            Wfi => {
                if self.privilege == privilege::U
                    || (self.privilege == privilege::S && self.mstatus & mstatus::TW != 0)
                {
                    return Err(self.illegal_insn());
                }
                if self.mip & self.mie == 0 {
                    self.wfi = true;
                }
                self.end_slice();
            }
            SfenceVma => {
                if self.privilege == privilege::U
                    || (self.privilege == privilege::S && self.mstatus & mstatus::TVM != 0)
                {
                    return Err(self.illegal_insn());
                }
                self.flush_tlb();
            }
            Csrrw | Csrrs | Csrrc | Csrrwi | Csrrsi | Csrrci => self.csr_op(d)?,
            LrW => self.lr(d, 4)?,
            LrD => self.lr(d, 8)?,
            ScW => self.sc(d, 4)?,
            ScD => self.sc(d, 8)?,
            AmoSwapW => self.amo::<true>(d, |_, s| s)?,
            AmoAddW => self.amo::<true>(d, |o, s| o.wrapping_add(s))?,
            AmoXorW => self.amo::<true>(d, |o, s| o ^ s)?,
            AmoAndW => self.amo::<true>(d, |o, s| o & s)?,
            AmoOrW => self.amo::<true>(d, |o, s| o | s)?,
            AmoMinW => self.amo::<true>(d, |o, s| (o as i64).min(s as i64) as u64)?,
            AmoMaxW => self.amo::<true>(d, |o, s| (o as i64).max(s as i64) as u64)?,
            AmoMinuW => self.amo::<true>(d, |o, s| (o as u32).min(s as u32) as u64)?,
            AmoMaxuW => self.amo::<true>(d, |o, s| (o as u32).max(s as u32) as u64)?,
            AmoSwapD => self.amo::<false>(d, |_, s| s)?,
            AmoAddD => self.amo::<false>(d, |o, s| o.wrapping_add(s))?,
            AmoXorD => self.amo::<false>(d, |o, s| o ^ s)?,
            AmoAndD => self.amo::<false>(d, |o, s| o & s)?,
            AmoOrD => self.amo::<false>(d, |o, s| o | s)?,
            AmoMinD => self.amo::<false>(d, |o, s| (o as i64).min(s as i64) as u64)?,
            AmoMaxD => self.amo::<false>(d, |o, s| (o as i64).max(s as i64) as u64)?,
            AmoMinuD => self.amo::<false>(d, |o, s| o.min(s))?,
            AmoMaxuD => self.amo::<false>(d, |o, s| o.max(s))?,
            _ => return Err(self.illegal_insn()),
        }
        Ok(next)
    }

    #[inline(always)]
    fn execute_fp(&mut self, d: Insn) -> Result<(), Exception> {
        use Op::*;
        if !self.fs_enabled() {
            return Err(self.illegal_insn());
        }
        let rd = d.rd;
        let a = self.x[d.rs1 as usize];
        let imm = d.imm as i64 as u64;
        let mut fl = Flags(0);
        match d.op {
            Flw => {
                let v = self.load::<4>(a.wrapping_add(imm))?;
                self.set_fs(rd, v as u32);
                return Ok(());
            }
            Fld => {
                let v = self.load::<8>(a.wrapping_add(imm))?;
                self.set_fd(rd, v);
                return Ok(());
            }
            Fsw => return self.store::<4>(a.wrapping_add(imm), self.f[d.rs2() as usize]),
            Fsd => return self.store::<8>(a.wrapping_add(imm), self.f[d.rs2() as usize]),
            _ => {}
        }
        let (s1, s2, s3) = (self.fs(d.rs1), self.fs(d.rs2()), self.fs(d.rs3()));
        let (d1, d2, d3) = (
            self.f[d.rs1 as usize],
            self.f[d.rs2() as usize],
            self.f[d.rs3() as usize],
        );
        let needs_rm = !matches!(
            d.op,
            FsgnjS
                | FsgnjnS
                | FsgnjxS
                | FminS
                | FmaxS
                | FmvXW
                | FclassS
                | FeqS
                | FltS
                | FleS
                | FmvWX
                | FsgnjD
                | FsgnjnD
                | FsgnjxD
                | FminD
                | FmaxD
                | FmvXD
                | FclassD
                | FeqD
                | FltD
                | FleD
                | FmvDX
        );
        let rm = if needs_rm {
            self.rounding(d.rm())?
        } else {
            Rounding::Rne
        };
        const S_SIGN: u32 = 0x8000_0000;
        const D_SIGN: u64 = 1 << 63;
        enum R {
            S(u32),
            D(u64),
            X(u64),
        }
        let r = match d.op {
            FmaddS => R::S(fpu::fma32(s1, s2, s3, false, false, rm, &mut fl)),
            FmsubS => R::S(fpu::fma32(s1, s2, s3, false, true, rm, &mut fl)),
            FnmsubS => R::S(fpu::fma32(s1, s2, s3, true, false, rm, &mut fl)),
            FnmaddS => R::S(fpu::fma32(s1, s2, s3, true, true, rm, &mut fl)),
            FaddS => R::S(fpu::add32(s1, s2, rm, &mut fl)),
            FsubS => R::S(fpu::sub32(s1, s2, rm, &mut fl)),
            FmulS => R::S(fpu::mul32(s1, s2, rm, &mut fl)),
            FdivS => R::S(fpu::div32(s1, s2, rm, &mut fl)),
            FsqrtS => R::S(fpu::sqrt32(s1, rm, &mut fl)),
            FsgnjS => R::S((s1 & !S_SIGN) | (s2 & S_SIGN)),
            FsgnjnS => R::S((s1 & !S_SIGN) | (!s2 & S_SIGN)),
            FsgnjxS => R::S(s1 ^ (s2 & S_SIGN)),
            FminS => R::S(fpu::min32(s1, s2, &mut fl)),
            FmaxS => R::S(fpu::max32(s1, s2, &mut fl)),
            FcvtWS => R::X(fpu::f32_to_i32(s1, rm, &mut fl) as i64 as u64),
            FcvtWuS => R::X(sx32(fpu::f32_to_u32(s1, rm, &mut fl) as u64)),
            FcvtLS => R::X(fpu::f32_to_i64(s1, rm, &mut fl) as u64),
            FcvtLuS => R::X(fpu::f32_to_u64(s1, rm, &mut fl)),
            FmvXW => R::X(sx32(d1)),
            FclassS => R::X(fpu::classify32(s1)),
            FeqS => R::X(fpu::eq32(s1, s2, &mut fl) as u64),
            FltS => R::X(fpu::lt32(s1, s2, &mut fl) as u64),
            FleS => R::X(fpu::le32(s1, s2, &mut fl) as u64),
            FcvtSW => R::S(fpu::i32_to_f32(a as i32, rm, &mut fl)),
            FcvtSWu => R::S(fpu::u32_to_f32(a as u32, rm, &mut fl)),
            FcvtSL => R::S(fpu::i64_to_f32(a as i64, rm, &mut fl)),
            FcvtSLu => R::S(fpu::u64_to_f32(a, rm, &mut fl)),
            FmvWX => R::S(a as u32),
            FmaddD => R::D(fpu::fma64(d1, d2, d3, false, false, rm, &mut fl)),
            FmsubD => R::D(fpu::fma64(d1, d2, d3, false, true, rm, &mut fl)),
            FnmsubD => R::D(fpu::fma64(d1, d2, d3, true, false, rm, &mut fl)),
            FnmaddD => R::D(fpu::fma64(d1, d2, d3, true, true, rm, &mut fl)),
            FaddD => R::D(fpu::add64(d1, d2, rm, &mut fl)),
            FsubD => R::D(fpu::sub64(d1, d2, rm, &mut fl)),
            FmulD => R::D(fpu::mul64(d1, d2, rm, &mut fl)),
            FdivD => R::D(fpu::div64(d1, d2, rm, &mut fl)),
            FsqrtD => R::D(fpu::sqrt64(d1, rm, &mut fl)),
            FsgnjD => R::D((d1 & !D_SIGN) | (d2 & D_SIGN)),
            FsgnjnD => R::D((d1 & !D_SIGN) | (!d2 & D_SIGN)),
            FsgnjxD => R::D(d1 ^ (d2 & D_SIGN)),
            FminD => R::D(fpu::min64(d1, d2, &mut fl)),
            FmaxD => R::D(fpu::max64(d1, d2, &mut fl)),
            FcvtSD => R::S(fpu::f64_to_f32(d1, rm, &mut fl)),
            FcvtDS => R::D(fpu::f32_to_f64(s1, &mut fl)),
            FcvtWD => R::X(fpu::f64_to_i32(d1, rm, &mut fl) as i64 as u64),
            FcvtWuD => R::X(sx32(fpu::f64_to_u32(d1, rm, &mut fl) as u64)),
            FcvtLD => R::X(fpu::f64_to_i64(d1, rm, &mut fl) as u64),
            FcvtLuD => R::X(fpu::f64_to_u64(d1, rm, &mut fl)),
            FmvXD => R::X(d1),
            FclassD => R::X(fpu::classify64(d1)),
            FeqD => R::X(fpu::eq64(d1, d2, &mut fl) as u64),
            FltD => R::X(fpu::lt64(d1, d2, &mut fl) as u64),
            FleD => R::X(fpu::le64(d1, d2, &mut fl) as u64),
            FcvtDW => R::D(fpu::i32_to_f64(a as i32, rm, &mut fl)),
            FcvtDWu => R::D(fpu::u32_to_f64(a as u32, rm, &mut fl)),
            FcvtDL => R::D(fpu::i64_to_f64(a as i64, rm, &mut fl)),
            FcvtDLu => R::D(fpu::u64_to_f64(a, rm, &mut fl)),
            FmvDX => R::D(a),
            _ => return Err(self.illegal_insn()),
        };
        match r {
            R::S(v) => self.set_fs(rd, v),
            R::D(v) => self.set_fd(rd, v),
            R::X(v) => self.x[rd as usize] = v,
        }
        if fl.0 != 0 {
            self.fflags |= fl.0;
            self.mark_fs_dirty();
        }
        Ok(())
    }
}
