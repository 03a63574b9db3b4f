//! Properties of the decoder: it never panics, the length of a valid
//! instruction follows the low bits, compressed instructions ignore the upper half-word, every
//! compressed instruction expands to exactly what the 32-bit decoder gives
//! for its 32-bit form, and 32-bit instructions survive decode → encode.
//!
//! Property cases follow `PROPTEST_CASES` (256 by default).

use proptest::prelude::*;
use spin_emu_riscv::decode::{Insn, Op, decode};

/// The 32-bit encoding of a decoded instruction, for the integer, load/store
/// and control operations (those compressed instructions expand to, and more).
fn encode32(d: Insn) -> Option<u32> {
    use Op::*;
    let (rd, rs1, rs2) = (d.rd() as u32, d.rs1 as u32, d.rs2() as u32);
    let imm = d.imm as u32;
    let r = |f7: u32, f3: u32, op: u32| f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
    let i = |f3: u32, op: u32| (imm & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op;
    let sh = |f6: u32, f3: u32, op: u32| {
        f6 << 26 | (imm & 63) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | op
    };
    let s = |f3: u32, op: u32| {
        ((imm >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (imm & 0x1f) << 7 | op
    };
    let b = |f3: u32| {
        ((imm >> 12) & 1) << 31
            | ((imm >> 5) & 0x3f) << 25
            | rs2 << 20
            | rs1 << 15
            | f3 << 12
            | ((imm >> 1) & 0xf) << 8
            | ((imm >> 11) & 1) << 7
            | 0x63
    };
    Some(match d.op {
        Lui => (imm & 0xffff_f000) | rd << 7 | 0x37,
        Auipc => (imm & 0xffff_f000) | rd << 7 | 0x17,
        Jal => {
            ((imm >> 20) & 1) << 31
                | ((imm >> 1) & 0x3ff) << 21
                | ((imm >> 11) & 1) << 20
                | ((imm >> 12) & 0xff) << 12
                | rd << 7
                | 0x6f
        }
        Jalr => i(0, 0x67),
        Beq => b(0),
        Bne => b(1),
        Blt => b(4),
        Bge => b(5),
        Bltu => b(6),
        Bgeu => b(7),
        Lb => i(0, 0x03),
        Lh => i(1, 0x03),
        Lw => i(2, 0x03),
        Ld => i(3, 0x03),
        Lbu => i(4, 0x03),
        Lhu => i(5, 0x03),
        Lwu => i(6, 0x03),
        Sb => s(0, 0x23),
        Sh => s(1, 0x23),
        Sw => s(2, 0x23),
        Sd => s(3, 0x23),
        Flw => i(2, 0x07),
        Fld => i(3, 0x07),
        Fsw => s(2, 0x27),
        Fsd => s(3, 0x27),
        Addi => i(0, 0x13),
        Slti => i(2, 0x13),
        Sltiu => i(3, 0x13),
        Xori => i(4, 0x13),
        Ori => i(6, 0x13),
        Andi => i(7, 0x13),
        Slli => sh(0, 1, 0x13),
        Srli => sh(0, 5, 0x13),
        Srai => sh(0x10, 5, 0x13),
        Addiw => i(0, 0x1b),
        Slliw => sh(0, 1, 0x1b),
        Srliw => sh(0, 5, 0x1b),
        Sraiw => sh(0x10, 5, 0x1b),
        Add => r(0, 0, 0x33),
        Sub => r(0x20, 0, 0x33),
        Sll => r(0, 1, 0x33),
        Slt => r(0, 2, 0x33),
        Sltu => r(0, 3, 0x33),
        Xor => r(0, 4, 0x33),
        Srl => r(0, 5, 0x33),
        Sra => r(0x20, 5, 0x33),
        Or => r(0, 6, 0x33),
        And => r(0, 7, 0x33),
        Mul => r(1, 0, 0x33),
        Mulh => r(1, 1, 0x33),
        Mulhsu => r(1, 2, 0x33),
        Mulhu => r(1, 3, 0x33),
        Div => r(1, 4, 0x33),
        Divu => r(1, 5, 0x33),
        Rem => r(1, 6, 0x33),
        Remu => r(1, 7, 0x33),
        Addw => r(0, 0, 0x3b),
        Subw => r(0x20, 0, 0x3b),
        Sllw => r(0, 1, 0x3b),
        Srlw => r(0, 5, 0x3b),
        Sraw => r(0x20, 5, 0x3b),
        Mulw => r(1, 0, 0x3b),
        Divw => r(1, 4, 0x3b),
        Divuw => r(1, 5, 0x3b),
        Remw => r(1, 6, 0x3b),
        Remuw => r(1, 7, 0x3b),
        Ecall => 0x0000_0073,
        Ebreak => 0x0010_0073,
        _ => return None,
    })
}

/// The fields that must agree between a compressed instruction and its expansion.
fn fields(d: Insn) -> (Op, u8, u8, u8, i32) {
    (d.op, d.rd, d.rs1, d.rs2(), d.imm)
}

#[test]
fn every_compressed_instruction_expands_to_its_32bit_form() {
    let mut checked = 0;
    for c in 0..=0xffffu32 {
        if c & 3 == 3 {
            continue;
        }
        let d = decode(c);
        if d.op == Op::Illegal {
            continue;
        }
        assert_eq!(d.len(), 2, "{c:#06x}");
        let e = encode32(d).unwrap_or_else(|| panic!("{c:#06x} expands to {d:?}"));
        let full = decode(e);
        assert_eq!(full.len(), 4);
        assert_eq!(
            fields(full),
            fields(d),
            "{c:#06x} vs its expansion {e:#010x}"
        );
        checked += 1;
    }
    // Most of the compressed space is valid.
    assert!(checked > 40_000, "{checked}");
}

/// 32-bit words with a major opcode the decoder knows (and random other bits).
fn word32() -> impl Strategy<Value = u32> {
    let opcodes = vec![
        0x03u32, 0x07, 0x0f, 0x13, 0x17, 0x1b, 0x23, 0x27, 0x2f, 0x33, 0x37, 0x3b, 0x43, 0x47,
        0x4b, 0x4f, 0x53, 0x63, 0x67, 0x6f, 0x73,
    ];
    (any::<u32>(), prop::sample::select(opcodes)).prop_map(|(r, op)| (r & !0x7f) | op)
}

proptest! {
    #[test]
    fn decode_never_panics_and_length_follows_low_bits(raw in any::<u32>()) {
        let d = decode(raw);
        if raw & 3 == 3 {
            prop_assert_eq!(d.len(), 4);
        } else {
            // (An illegal instruction's length does not matter.)
            prop_assert!(d.op == Op::Illegal || d.len() == 2);
            // Only the low half-word of a compressed instruction matters.
            prop_assert_eq!(d, decode(raw & 0xffff));
        }
        prop_assert!(d.rd <= 32 && d.rs1 < 32 && d.rs2() < 32);
        prop_assert!(d.op != Op::Undecoded && d.op != Op::PageEnd);
    }

    #[test]
    fn integer_instructions_round_trip(raw in word32()) {
        let d = decode(raw);
        prop_assert_eq!(decode(raw), d, "decoding is a function of the bits");
        if let Some(e) = encode32(d) {
            prop_assert_eq!(e, raw, "{:?}", d);
        }
    }
}
