//! Instruction decoding: raw RV64GC bits (32-bit or compressed) to [`Insn`].
//!
//! Compressed instructions are expanded into the same form as their 32-bit
//! equivalents, so the executor only knows one set of operations. Decoding is
//! a pure function of the raw bits, which lets the CPU memoise it in a cache
//! tagged by those bits (see `cpu`).

/// An operation, after decoding. `Illegal` stands for every reserved encoding.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Placeholder in the CPU's decoded-page cache: not decoded yet.
    Undecoded,
    /// Past the end of a page in the decoded-page cache.
    PageEnd,
    Illegal,
    Lui,
    Auipc,
    Jal,
    Jalr,
    Beq,
    Bne,
    Blt,
    Bge,
    Bltu,
    Bgeu,
    Lb,
    Lh,
    Lw,
    Ld,
    Lbu,
    Lhu,
    Lwu,
    Sb,
    Sh,
    Sw,
    Sd,
    Addi,
    Slti,
    Sltiu,
    Xori,
    Ori,
    Andi,
    Slli,
    Srli,
    Srai,
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Addiw,
    Slliw,
    Srliw,
    Sraiw,
    Addw,
    Subw,
    Sllw,
    Srlw,
    Sraw,
    Fence,
    FenceI,
    Ecall,
    Ebreak,
    Sret,
    Mret,
    Wfi,
    SfenceVma,
    Csrrw,
    Csrrs,
    Csrrc,
    Csrrwi,
    Csrrsi,
    Csrrci,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
    Mulw,
    Divw,
    Divuw,
    Remw,
    Remuw,
    LrW,
    ScW,
    AmoSwapW,
    AmoAddW,
    AmoXorW,
    AmoAndW,
    AmoOrW,
    AmoMinW,
    AmoMaxW,
    AmoMinuW,
    AmoMaxuW,
    LrD,
    ScD,
    AmoSwapD,
    AmoAddD,
    AmoXorD,
    AmoAndD,
    AmoOrD,
    AmoMinD,
    AmoMaxD,
    AmoMinuD,
    AmoMaxuD,
    Flw,
    Fsw,
    Fld,
    Fsd,
    FmaddS,
    FmsubS,
    FnmsubS,
    FnmaddS,
    FaddS,
    FsubS,
    FmulS,
    FdivS,
    FsqrtS,
    FsgnjS,
    FsgnjnS,
    FsgnjxS,
    FminS,
    FmaxS,
    FcvtWS,
    FcvtWuS,
    FcvtLS,
    FcvtLuS,
    FmvXW,
    FclassS,
    FeqS,
    FltS,
    FleS,
    FcvtSW,
    FcvtSWu,
    FcvtSL,
    FcvtSLu,
    FmvWX,
    FmaddD,
    FmsubD,
    FnmsubD,
    FnmaddD,
    FaddD,
    FsubD,
    FmulD,
    FdivD,
    FsqrtD,
    FsgnjD,
    FsgnjnD,
    FsgnjxD,
    FminD,
    FmaxD,
    FcvtSD,
    FcvtDS,
    FcvtWD,
    FcvtWuD,
    FcvtLD,
    FcvtLuD,
    FmvXD,
    FclassD,
    FeqD,
    FltD,
    FleD,
    FcvtDW,
    FcvtDWu,
    FcvtDL,
    FcvtDLu,
    FmvDX,
}

/// Register index that decoded integer writes to `x0` use instead of 0: the
/// CPU keeps a 33rd, never-read register there, so that `x0` stays 0 without
/// a check or a store per instruction.
pub const XZR: u8 = 32;

/// A decoded instruction, packed in 8 bytes. Register fields index x or f
/// registers depending on the operation; `imm` holds the immediate, the CSR
/// number or the shift amount, and for F/D operations the rounding mode
/// (bits 2:0) and the third source register (bits 7:3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct Insn {
    /// The operation.
    pub op: Op,
    /// Destination register; integer writes to `x0` use [`XZR`] (see [`Insn::rd`]).
    pub rd: u8,
    /// First source register (or the 5-bit immediate of `csrr*i`).
    pub rs1: u8,
    /// Second source register in bits 4:0 (see [`Insn::rs2`]); bit 7 set
    /// for a compressed instruction.
    pub rs2: u8,
    /// Immediate, CSR number, shift amount, or rm/rs3 of F/D operations.
    pub imm: i32,
}

impl Insn {
    const fn new(op: Op, rd: u32, rs1: u32, rs2: u32, imm: i32, len: u8) -> Insn {
        Insn {
            op,
            rd: rd as u8,
            rs1: rs1 as u8,
            rs2: rs2 as u8 | if len == 2 { 0x80 } else { 0 },
            imm,
        }
    }
    /// The architectural destination register (0 for writes to `x0`).
    #[inline(always)]
    pub fn rd(self) -> usize {
        (self.rd & 31) as usize
    }
    /// The second source register.
    #[inline(always)]
    pub fn rs2(self) -> u8 {
        self.rs2 & 31
    }
    /// Length in bytes: 2 (compressed) or 4.
    #[inline(always)]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(self) -> u64 {
        if self.rs2 & 0x80 != 0 { 2 } else { 4 }
    }
    /// Rounding-mode field of an F/D operation.
    #[inline(always)]
    pub fn rm(self) -> u8 {
        (self.imm & 7) as u8
    }
    /// Third source register of a fused multiply-add.
    #[inline(always)]
    pub fn rs3(self) -> u8 {
        ((self.imm >> 3) & 31) as u8
    }
    /// The decoding of every reserved or unsupported encoding.
    pub const ILLEGAL: Insn = Insn::new(Op::Illegal, 0, 0, 0, 0, 4);
    /// An empty slot of the decoded-page cache.
    pub const UNDECODED: Insn = Insn::new(Op::Undecoded, 0, 0, 0, 0, 4);
    /// The slots just past the end of a page in the decoded-page cache.
    pub const PAGE_END: Insn = Insn::new(Op::PageEnd, 0, 0, 0, 0, 4);
}

impl Op {
    /// Whether the operation writes the integer register `rd`.
    pub fn writes_x(self) -> bool {
        use Op::*;
        matches!(
            self,
            Lui | Auipc
                | Jal
                | Jalr
                | Lb
                | Lh
                | Lw
                | Ld
                | Lbu
                | Lhu
                | Lwu
                | Addi
                | Slti
                | Sltiu
                | Xori
                | Ori
                | Andi
                | Slli
                | Srli
                | Srai
                | Add
                | Sub
                | Sll
                | Slt
                | Sltu
                | Xor
                | Srl
                | Sra
                | Or
                | And
                | Addiw
                | Slliw
                | Srliw
                | Sraiw
                | Addw
                | Subw
                | Sllw
                | Srlw
                | Sraw
                | Csrrw
                | Csrrs
                | Csrrc
                | Csrrwi
                | Csrrsi
                | Csrrci
                | Mul
                | Mulh
                | Mulhsu
                | Mulhu
                | Div
                | Divu
                | Rem
                | Remu
                | Mulw
                | Divw
                | Divuw
                | Remw
                | Remuw
                | LrW
                | ScW
                | AmoSwapW
                | AmoAddW
                | AmoXorW
                | AmoAndW
                | AmoOrW
                | AmoMinW
                | AmoMaxW
                | AmoMinuW
                | AmoMaxuW
                | LrD
                | ScD
                | AmoSwapD
                | AmoAddD
                | AmoXorD
                | AmoAndD
                | AmoOrD
                | AmoMinD
                | AmoMaxD
                | AmoMinuD
                | AmoMaxuD
                | FcvtWS
                | FcvtWuS
                | FcvtLS
                | FcvtLuS
                | FmvXW
                | FclassS
                | FeqS
                | FltS
                | FleS
                | FcvtWD
                | FcvtWuD
                | FcvtLD
                | FcvtLuD
                | FmvXD
                | FclassD
                | FeqD
                | FltD
                | FleD
        )
    }

    /// Whether the operation ends a block of the decoded-page cache: control
    /// transfers and every operation that may change how the following
    /// instructions are fetched (privilege, translation, the code itself) or
    /// that the run loop must look at (interrupt enables, WFI).
    pub fn ends_block(self) -> bool {
        use Op::*;
        let x = self as u8;
        let straight = (Lui as u8..=Auipc as u8).contains(&x)
            || (Lb as u8..=Fence as u8).contains(&x)
            || (Mul as u8..=Remuw as u8).contains(&x)
            || x >= Flw as u8;
        !straight
    }
}

/// Returns the length in bytes of the instruction whose low 16 bits are `lo`.
#[inline(always)]
pub fn insn_len(lo: u32) -> u8 {
    if lo & 3 == 3 { 4 } else { 2 }
}

/// Decodes one instruction. For a compressed instruction only the low 16 bits
/// of `raw` are looked at.
pub fn decode(raw: u32) -> Insn {
    let mut d = if raw & 3 != 3 {
        decode_compressed(raw & 0xffff)
    } else {
        decode32(raw)
    };
    if d.rd == 0 && d.op.writes_x() {
        d.rd = XZR;
    }
    d
}

fn sext(v: u32, bits: u32) -> i32 {
    let s = 32 - bits;
    ((v << s) as i32) >> s
}

fn decode32(i: u32) -> Insn {
    let rd = (i >> 7) & 31;
    let rs1 = (i >> 15) & 31;
    let rs2 = (i >> 20) & 31;
    let f3 = (i >> 12) & 7;
    let f7 = i >> 25;
    let imm_i = (i as i32) >> 20;
    let imm_s = (((i as i32) >> 25) << 5) | ((i >> 7) & 31) as i32;
    let imm_b = sext(
        ((i >> 31) << 12)
            | (((i >> 7) & 1) << 11)
            | (((i >> 25) & 0x3f) << 5)
            | (((i >> 8) & 0xf) << 1),
        13,
    );
    let imm_u = (i & 0xffff_f000) as i32;
    let imm_j = sext(
        ((i >> 31) << 20) | (i & 0xff000) | (((i >> 20) & 1) << 11) | (((i >> 21) & 0x3ff) << 1),
        21,
    );
    let r = |op| Insn::new(op, rd, rs1, rs2, 0, 4);
    let iop = |op| Insn::new(op, rd, rs1, 0, imm_i, 4);
    use Op::*;
    match i & 0x7f {
        0x37 => Insn::new(Lui, rd, 0, 0, imm_u, 4),
        0x17 => Insn::new(Auipc, rd, 0, 0, imm_u, 4),
        0x6f => Insn::new(Jal, rd, 0, 0, imm_j, 4),
        0x67 if f3 == 0 => iop(Jalr),
        0x63 => {
            let op = match f3 {
                0 => Beq,
                1 => Bne,
                4 => Blt,
                5 => Bge,
                6 => Bltu,
                7 => Bgeu,
                _ => return Insn::ILLEGAL,
            };
            Insn::new(op, 0, rs1, rs2, imm_b, 4)
        }
        0x03 => {
            let op = match f3 {
                0 => Lb,
                1 => Lh,
                2 => Lw,
                3 => Ld,
                4 => Lbu,
                5 => Lhu,
                6 => Lwu,
                _ => return Insn::ILLEGAL,
            };
            iop(op)
        }
        0x23 => {
            let op = match f3 {
                0 => Sb,
                1 => Sh,
                2 => Sw,
                3 => Sd,
                _ => return Insn::ILLEGAL,
            };
            Insn::new(op, 0, rs1, rs2, imm_s, 4)
        }
        0x13 => match f3 {
            0 => iop(Addi),
            2 => iop(Slti),
            3 => iop(Sltiu),
            4 => iop(Xori),
            6 => iop(Ori),
            7 => iop(Andi),
            1 if i >> 26 == 0 => Insn::new(Slli, rd, rs1, 0, ((i >> 20) & 63) as i32, 4),
            5 if i >> 26 == 0 => Insn::new(Srli, rd, rs1, 0, ((i >> 20) & 63) as i32, 4),
            5 if i >> 26 == 0x10 => Insn::new(Srai, rd, rs1, 0, ((i >> 20) & 63) as i32, 4),
            _ => Insn::ILLEGAL,
        },
        0x1b => match (f3, f7) {
            (0, _) => iop(Addiw),
            (1, 0) => Insn::new(Slliw, rd, rs1, 0, rs2 as i32, 4),
            (5, 0) => Insn::new(Srliw, rd, rs1, 0, rs2 as i32, 4),
            (5, 0x20) => Insn::new(Sraiw, rd, rs1, 0, rs2 as i32, 4),
            _ => Insn::ILLEGAL,
        },
        0x33 => {
            let op = match (f7, f3) {
                (0, 0) => Add,
                (0x20, 0) => Sub,
                (0, 1) => Sll,
                (0, 2) => Slt,
                (0, 3) => Sltu,
                (0, 4) => Xor,
                (0, 5) => Srl,
                (0x20, 5) => Sra,
                (0, 6) => Or,
                (0, 7) => And,
                (1, 0) => Mul,
                (1, 1) => Mulh,
                (1, 2) => Mulhsu,
                (1, 3) => Mulhu,
                (1, 4) => Div,
                (1, 5) => Divu,
                (1, 6) => Rem,
                (1, 7) => Remu,
                _ => return Insn::ILLEGAL,
            };
            r(op)
        }
        0x3b => {
            let op = match (f7, f3) {
                (0, 0) => Addw,
                (0x20, 0) => Subw,
                (0, 1) => Sllw,
                (0, 5) => Srlw,
                (0x20, 5) => Sraw,
                (1, 0) => Mulw,
                (1, 4) => Divw,
                (1, 5) => Divuw,
                (1, 6) => Remw,
                (1, 7) => Remuw,
                _ => return Insn::ILLEGAL,
            };
            r(op)
        }
        0x0f => match f3 {
            0 => Insn::new(Fence, 0, 0, 0, 0, 4),
            1 => Insn::new(FenceI, 0, 0, 0, 0, 4),
            _ => Insn::ILLEGAL,
        },
        0x73 => decode_system(i, rd, rs1, rs2, f3, f7),
        0x2f => decode_amo(i, rd, rs1, rs2, f3),
        0x07 => match f3 {
            2 => iop(Flw),
            3 => iop(Fld),
            _ => Insn::ILLEGAL,
        },
        0x27 => match f3 {
            2 => Insn::new(Fsw, 0, rs1, rs2, imm_s, 4),
            3 => Insn::new(Fsd, 0, rs1, rs2, imm_s, 4),
            _ => Insn::ILLEGAL,
        },
        0x43 | 0x47 | 0x4b | 0x4f => {
            let dbl = match (i >> 25) & 3 {
                0 => false,
                1 => true,
                _ => return Insn::ILLEGAL,
            };
            let op = match (i & 0x7f, dbl) {
                (0x43, false) => FmaddS,
                (0x47, false) => FmsubS,
                (0x4b, false) => FnmsubS,
                (0x4f, false) => FnmaddS,
                (0x43, true) => FmaddD,
                (0x47, true) => FmsubD,
                (0x4b, true) => FnmsubD,
                _ => FnmaddD,
            };
            let mut d = r(op);
            d.imm = ((i >> 27) << 3 | f3) as i32;
            d
        }
        0x53 => decode_fp(rd, rs1, rs2, f3, f7),
        _ => Insn::ILLEGAL,
    }
}

fn decode_system(i: u32, rd: u32, rs1: u32, rs2: u32, f3: u32, f7: u32) -> Insn {
    use Op::*;
    let csr = (i >> 20) as i32;
    match f3 {
        0 => {
            if f7 == 0x09 && rd == 0 {
                return Insn::new(SfenceVma, 0, rs1, rs2, 0, 4);
            }
            if rd != 0 || rs1 != 0 {
                return Insn::ILLEGAL;
            }
            match i >> 20 {
                0x000 => Insn::new(Ecall, 0, 0, 0, 0, 4),
                0x001 => Insn::new(Ebreak, 0, 0, 0, 0, 4),
                0x102 => Insn::new(Sret, 0, 0, 0, 0, 4),
                0x302 => Insn::new(Mret, 0, 0, 0, 0, 4),
                0x105 => Insn::new(Wfi, 0, 0, 0, 0, 4),
                _ => Insn::ILLEGAL,
            }
        }
        1 => Insn::new(Csrrw, rd, rs1, 0, csr, 4),
        2 => Insn::new(Csrrs, rd, rs1, 0, csr, 4),
        3 => Insn::new(Csrrc, rd, rs1, 0, csr, 4),
        5 => Insn::new(Csrrwi, rd, rs1, 0, csr, 4),
        6 => Insn::new(Csrrsi, rd, rs1, 0, csr, 4),
        7 => Insn::new(Csrrci, rd, rs1, 0, csr, 4),
        _ => Insn::ILLEGAL,
    }
}

fn decode_amo(i: u32, rd: u32, rs1: u32, rs2: u32, f3: u32) -> Insn {
    use Op::*;
    let f5 = i >> 27;
    let op = match (f3, f5) {
        (2, 0x02) if rs2 == 0 => LrW,
        (2, 0x03) => ScW,
        (2, 0x01) => AmoSwapW,
        (2, 0x00) => AmoAddW,
        (2, 0x04) => AmoXorW,
        (2, 0x0c) => AmoAndW,
        (2, 0x08) => AmoOrW,
        (2, 0x10) => AmoMinW,
        (2, 0x14) => AmoMaxW,
        (2, 0x18) => AmoMinuW,
        (2, 0x1c) => AmoMaxuW,
        (3, 0x02) if rs2 == 0 => LrD,
        (3, 0x03) => ScD,
        (3, 0x01) => AmoSwapD,
        (3, 0x00) => AmoAddD,
        (3, 0x04) => AmoXorD,
        (3, 0x0c) => AmoAndD,
        (3, 0x08) => AmoOrD,
        (3, 0x10) => AmoMinD,
        (3, 0x14) => AmoMaxD,
        (3, 0x18) => AmoMinuD,
        (3, 0x1c) => AmoMaxuD,
        _ => return Insn::ILLEGAL,
    };
    Insn::new(op, rd, rs1, rs2, 0, 4)
}

fn decode_fp(rd: u32, rs1: u32, rs2: u32, f3: u32, f7: u32) -> Insn {
    use Op::*;
    let op = match f7 {
        0x00 => FaddS,
        0x04 => FsubS,
        0x08 => FmulS,
        0x0c => FdivS,
        0x2c if rs2 == 0 => FsqrtS,
        0x10 => match f3 {
            0 => FsgnjS,
            1 => FsgnjnS,
            2 => FsgnjxS,
            _ => Illegal,
        },
        0x14 => match f3 {
            0 => FminS,
            1 => FmaxS,
            _ => Illegal,
        },
        0x60 => match rs2 {
            0 => FcvtWS,
            1 => FcvtWuS,
            2 => FcvtLS,
            3 => FcvtLuS,
            _ => Illegal,
        },
        0x70 if rs2 == 0 => match f3 {
            0 => FmvXW,
            1 => FclassS,
            _ => Illegal,
        },
        0x50 => match f3 {
            2 => FeqS,
            1 => FltS,
            0 => FleS,
            _ => Illegal,
        },
        0x68 => match rs2 {
            0 => FcvtSW,
            1 => FcvtSWu,
            2 => FcvtSL,
            3 => FcvtSLu,
            _ => Illegal,
        },
        0x78 if rs2 == 0 && f3 == 0 => FmvWX,
        0x01 => FaddD,
        0x05 => FsubD,
        0x09 => FmulD,
        0x0d => FdivD,
        0x2d if rs2 == 0 => FsqrtD,
        0x11 => match f3 {
            0 => FsgnjD,
            1 => FsgnjnD,
            2 => FsgnjxD,
            _ => Illegal,
        },
        0x15 => match f3 {
            0 => FminD,
            1 => FmaxD,
            _ => Illegal,
        },
        0x20 if rs2 == 1 => FcvtSD,
        0x21 if rs2 == 0 => FcvtDS,
        0x61 => match rs2 {
            0 => FcvtWD,
            1 => FcvtWuD,
            2 => FcvtLD,
            3 => FcvtLuD,
            _ => Illegal,
        },
        0x71 if rs2 == 0 => match f3 {
            0 => FmvXD,
            1 => FclassD,
            _ => Illegal,
        },
        0x51 => match f3 {
            2 => FeqD,
            1 => FltD,
            0 => FleD,
            _ => Illegal,
        },
        0x69 => match rs2 {
            0 => FcvtDW,
            1 => FcvtDWu,
            2 => FcvtDL,
            3 => FcvtDLu,
            _ => Illegal,
        },
        0x79 if rs2 == 0 && f3 == 0 => FmvDX,
        _ => Illegal,
    };
    if op == Illegal {
        return Insn::ILLEGAL;
    }
    let mut d = Insn::new(op, rd, rs1, rs2, 0, 4);
    d.imm = f3 as i32;
    d
}

fn decode_compressed(i: u32) -> Insn {
    use Op::*;
    let c = |op, rd, rs1, rs2, imm| Insn::new(op, rd, rs1, rs2, imm, 2);
    let rdp = ((i >> 2) & 7) + 8; // rd' / rs2'
    let rs1p = ((i >> 7) & 7) + 8; // rs1' / rd'
    let rd = (i >> 7) & 31;
    let rs2 = (i >> 2) & 31;
    let imm6 = sext(((i >> 7) & 0x20) | ((i >> 2) & 0x1f), 6);
    let f3 = i >> 13;
    match (i & 3, f3) {
        (0, 0) => {
            let imm = ((i >> 7) & 0x30) | ((i >> 1) & 0x3c0) | ((i >> 4) & 4) | ((i >> 2) & 8);
            if imm == 0 {
                return Insn::ILLEGAL;
            }
            c(Addi, rdp, 2, 0, imm as i32)
        }
        (0, 1) | (0, 3) | (0, 5) | (0, 7) => {
            let imm = (((i >> 7) & 0x38) | ((i << 1) & 0xc0)) as i32;
            match f3 {
                1 => c(Fld, rdp, rs1p, 0, imm),
                3 => c(Ld, rdp, rs1p, 0, imm),
                5 => c(Fsd, 0, rs1p, rdp, imm),
                _ => c(Sd, 0, rs1p, rdp, imm),
            }
        }
        (0, 2) | (0, 6) => {
            let imm = (((i >> 7) & 0x38) | ((i >> 4) & 4) | ((i << 1) & 0x40)) as i32;
            if f3 == 2 {
                c(Lw, rdp, rs1p, 0, imm)
            } else {
                c(Sw, 0, rs1p, rdp, imm)
            }
        }
        (1, 0) => c(Addi, rd, rd, 0, imm6),
        (1, 1) => {
            if rd == 0 {
                return Insn::ILLEGAL;
            }
            c(Addiw, rd, rd, 0, imm6)
        }
        (1, 2) => c(Addi, rd, 0, 0, imm6),
        (1, 3) => {
            if rd == 2 {
                let imm = sext(
                    ((i >> 3) & 0x200)
                        | ((i >> 2) & 0x10)
                        | ((i << 1) & 0x40)
                        | ((i << 4) & 0x180)
                        | ((i << 3) & 0x20),
                    10,
                );
                if imm == 0 {
                    return Insn::ILLEGAL;
                }
                c(Addi, 2, 2, 0, imm)
            } else {
                let imm = sext(((i << 5) & 0x20000) | ((i << 10) & 0x1f000), 18);
                if imm == 0 {
                    return Insn::ILLEGAL;
                }
                c(Lui, rd, 0, 0, imm)
            }
        }
        (1, 4) => {
            let shamt = (((i >> 7) & 0x20) | ((i >> 2) & 0x1f)) as i32;
            match (i >> 10) & 3 {
                0 => c(Srli, rs1p, rs1p, 0, shamt),
                1 => c(Srai, rs1p, rs1p, 0, shamt),
                2 => c(Andi, rs1p, rs1p, 0, imm6),
                _ => {
                    let op = match ((i >> 12) & 1, (i >> 5) & 3) {
                        (0, 0) => Sub,
                        (0, 1) => Xor,
                        (0, 2) => Or,
                        (0, 3) => And,
                        (1, 0) => Subw,
                        (1, 1) => Addw,
                        _ => return Insn::ILLEGAL,
                    };
                    c(op, rs1p, rs1p, rdp, 0)
                }
            }
        }
        (1, 5) => {
            let imm = sext(
                ((i >> 1) & 0x800)
                    | ((i >> 7) & 0x10)
                    | ((i >> 1) & 0x300)
                    | ((i << 2) & 0x400)
                    | ((i >> 1) & 0x40)
                    | ((i << 1) & 0x80)
                    | ((i >> 2) & 0xe)
                    | ((i << 3) & 0x20),
                12,
            );
            c(Jal, 0, 0, 0, imm)
        }
        (1, 6) | (1, 7) => {
            let imm = sext(
                ((i >> 4) & 0x100)
                    | ((i >> 7) & 0x18)
                    | ((i << 1) & 0xc0)
                    | ((i >> 2) & 6)
                    | ((i << 3) & 0x20),
                9,
            );
            c(if f3 == 6 { Beq } else { Bne }, 0, rs1p, 0, imm)
        }
        (2, 0) => {
            let shamt = (((i >> 7) & 0x20) | ((i >> 2) & 0x1f)) as i32;
            c(Slli, rd, rd, 0, shamt)
        }
        (2, 1) | (2, 3) => {
            let imm = (((i >> 7) & 0x20) | ((i >> 2) & 0x18) | ((i << 4) & 0x1c0)) as i32;
            if f3 == 1 {
                c(Fld, rd, 2, 0, imm)
            } else if rd == 0 {
                Insn::ILLEGAL
            } else {
                c(Ld, rd, 2, 0, imm)
            }
        }
        (2, 2) => {
            if rd == 0 {
                return Insn::ILLEGAL;
            }
            let imm = (((i >> 7) & 0x20) | ((i >> 2) & 0x1c) | ((i << 4) & 0xc0)) as i32;
            c(Lw, rd, 2, 0, imm)
        }
        (2, 4) => {
            let bit12 = (i >> 12) & 1;
            match (bit12, rd, rs2) {
                (0, 0, 0) => Insn::ILLEGAL,
                (0, _, 0) => c(Jalr, 0, rd, 0, 0),
                (0, _, _) => c(Add, rd, 0, rs2, 0),
                (_, 0, 0) => c(Ebreak, 0, 0, 0, 0),
                (_, _, 0) => c(Jalr, 1, rd, 0, 0),
                _ => c(Add, rd, rd, rs2, 0),
            }
        }
        (2, 5) | (2, 7) => {
            let imm = (((i >> 7) & 0x38) | ((i >> 1) & 0x1c0)) as i32;
            c(if f3 == 5 { Fsd } else { Sd }, 0, 2, rs2, imm)
        }
        (2, 6) => {
            let imm = (((i >> 7) & 0x3c) | ((i >> 1) & 0xc0)) as i32;
            c(Sw, 0, 2, rs2, imm)
        }
        _ => Insn::ILLEGAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_32bit() {
        // addi a0, a1, -5
        let d = decode(0xffb5_8513);
        assert_eq!(
            (d.op, d.rd(), d.rs1, d.imm, d.len()),
            (Op::Addi, 10, 11, -5, 4)
        );
        // sd ra, 8(sp)
        let d = decode(0x0011_3423);
        assert_eq!((d.op, d.rs1, d.rs2, d.imm), (Op::Sd, 2, 1, 8));
        // beq a0, a1, -16
        let d = decode(0xfeb5_08e3);
        assert_eq!((d.op, d.rs1, d.rs2, d.imm), (Op::Beq, 10, 11, -16));
        // jal ra, 2048
        let d = decode(0x0010_00ef);
        assert_eq!((d.op, d.rd(), d.imm), (Op::Jal, 1, 2048));
        assert_eq!(decode(0xffff_ffff).op, Op::Illegal);
    }

    #[test]
    fn decodes_compressed() {
        assert_eq!(decode(0).op, Op::Illegal);
        // c.addi sp, -16 = 0x1141
        let d = decode(0x1141);
        assert_eq!(
            (d.op, d.rd(), d.rs1, d.imm, d.len()),
            (Op::Addi, 2, 2, -16, 2)
        );
        // c.ret = jalr x0, 0(ra) = 0x8082
        let d = decode(0x8082);
        assert_eq!((d.op, d.rd(), d.rs1), (Op::Jalr, 0, 1));
        // c.sdsp ra, 8(sp) = 0xe406
        let d = decode(0xe406);
        assert_eq!((d.op, d.rs1, d.rs2(), d.imm), (Op::Sd, 2, 1, 8));
    }

    #[test]
    fn decode_never_panics() {
        // Every 16-bit pattern, plus a pseudo-random sample of 32-bit ones.
        for i in 0..=0xffffu32 {
            let _ = decode(i);
        }
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..1_000_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let _ = decode(x as u32 | 3);
        }
    }
}
