//! Address translation (bare, Sv39, Sv48, Sv57) with hardware A/D updates and
//! a direct-mapped TLB from virtual page to an offset into guest RAM.
//!
//! Only pages backed by RAM enter the TLB; device pages always take the slow
//! path. Entries are tagged with the virtual page number and the translation
//! context (privilege, SUM, MXR), so privilege changes need no flush.
//! A write entry is only created once the PTE's D bit is set.

use crate::cpu::{Cpu, Exception, cause, mstatus, privilege};

const TLB_SIZE: usize = 256;
const INVALID: u64 = u64::MAX;

/// The kind of access being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Data load.
    Read,
    /// Data store or AMO.
    Write,
    /// Instruction fetch.
    Exec,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct TlbEntry {
    pub tag: u64,
    pub off: usize,
}

/// The TLB (a cache: rebuilt empty after a restore).
pub(crate) struct Tlb {
    pub r: Box<[TlbEntry; TLB_SIZE]>,
    pub w: Box<[TlbEntry; TLB_SIZE]>,
    pub x: Box<[TlbEntry; TLB_SIZE]>,
    ctx_data: u64,
    ctx_fetch: u64,
}

impl Tlb {
    pub fn new() -> Tlb {
        let e = TlbEntry {
            tag: INVALID,
            off: 0,
        };
        Tlb {
            r: Box::new([e; TLB_SIZE]),
            w: Box::new([e; TLB_SIZE]),
            x: Box::new([e; TLB_SIZE]),
            ctx_data: 0,
            ctx_fetch: 0,
        }
    }

    #[inline(always)]
    pub fn index(va: u64) -> usize {
        (va >> 12) as usize & (TLB_SIZE - 1)
    }

    /// The tag a data access to `va` must match.
    #[inline(always)]
    pub fn key(&self, va: u64) -> u64 {
        (va >> 12) << 4 | self.ctx_data
    }

    /// The tag a fetch from `va` must match.
    #[inline(always)]
    pub fn key_x(&self, va: u64) -> u64 {
        (va >> 12) << 4 | self.ctx_fetch
    }

    pub fn flush_writes(&mut self) {
        self.w.fill(TlbEntry {
            tag: INVALID,
            off: 0,
        });
    }

    pub fn flush(&mut self) {
        let e = TlbEntry {
            tag: INVALID,
            off: 0,
        };
        self.r.fill(e);
        self.w.fill(e);
        self.x.fill(e);
    }
}

impl Cpu {
    /// Recomputes the TLB context keys after a change of privilege or mstatus.
    pub(crate) fn update_tlb_key(&mut self) {
        let data_priv = self.data_privilege() as u64;
        let sum = (self.mstatus >> 18) & 1;
        let mxr = (self.mstatus >> 19) & 1;
        self.tlb.ctx_data = data_priv << 2 | sum << 1 | mxr;
        self.tlb.ctx_fetch = (self.privilege as u64) << 2;
    }

    /// Flushes every cached translation (SFENCE.VMA, satp writes).
    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
        self.fetch_vpn = u64::MAX;
    }

    fn data_privilege(&self) -> u8 {
        if self.privilege == privilege::M && self.mstatus & mstatus::MPRV != 0 {
            ((self.mstatus >> mstatus::MPP_SHIFT) & 3) as u8
        } else {
            self.privilege
        }
    }

    fn fault(acc: Access, va: u64, page: bool) -> Exception {
        let c = match (acc, page) {
            (Access::Read, true) => cause::LOAD_PAGE,
            (Access::Write, true) => cause::STORE_PAGE,
            (Access::Exec, true) => cause::FETCH_PAGE,
            (Access::Read, false) => cause::LOAD_ACCESS,
            (Access::Write, false) => cause::STORE_ACCESS,
            (Access::Exec, false) => cause::FETCH_ACCESS,
        };
        Exception::new(c, va)
    }

    /// Translates a virtual address for an access, updating A/D bits and
    /// filling the TLB. Errors are the page or access faults to raise.
    pub fn translate(&mut self, va: u64, acc: Access) -> Result<u64, Exception> {
        let p = if acc == Access::Exec {
            self.privilege
        } else {
            self.data_privilege()
        };
        let mode = self.satp >> 60;
        if p == privilege::M || mode == 0 {
            self.fill_tlb(va, va, acc);
            return Ok(va);
        }
        let levels = match mode {
            8 => 3,
            9 => 4,
            10 => 5,
            _ => return Ok(va),
        };
        let va_bits = 12 + 9 * levels;
        let shift = 64 - va_bits;
        if ((va << shift) as i64 >> shift) as u64 != va {
            return Err(Self::fault(acc, va, true));
        }
        let mut table = (self.satp & ((1 << 44) - 1)) << 12;
        for level in (0..levels).rev() {
            let vpn = (va >> (12 + 9 * level)) & 0x1ff;
            let pte_addr = table + vpn * 8;
            let pte = match self.bus.ram.offset(pte_addr, 8) {
                // Aligned: a PTE never crosses a page.
                Some(off) => u64::from_le_bytes(self.bus.ram.get(off)),
                None => return Err(Self::fault(acc, va, false)),
            };
            let (v, r, w, x, u, a, d) = (
                pte & 1 != 0,
                pte & 2 != 0,
                pte & 4 != 0,
                pte & 8 != 0,
                pte & 16 != 0,
                pte & 64 != 0,
                pte & 128 != 0,
            );
            if !v || (!r && w) || pte >> 54 != 0 {
                return Err(Self::fault(acc, va, true));
            }
            let ppn = (pte >> 10) & ((1 << 44) - 1);
            if !r && !x {
                if level == 0 {
                    return Err(Self::fault(acc, va, true));
                }
                table = ppn << 12;
                continue;
            }
            // Leaf.
            if p == privilege::U && !u {
                return Err(Self::fault(acc, va, true));
            }
            if p == privilege::S && u && (acc == Access::Exec || self.mstatus & mstatus::SUM == 0) {
                return Err(Self::fault(acc, va, true));
            }
            let ok = match acc {
                Access::Read => r || (x && self.mstatus & mstatus::MXR != 0),
                Access::Write => w,
                Access::Exec => x,
            };
            if !ok {
                return Err(Self::fault(acc, va, true));
            }
            let low_mask = (1u64 << (9 * level)) - 1;
            if ppn & low_mask != 0 {
                return Err(Self::fault(acc, va, true));
            }
            if !a || (acc == Access::Write && !d) {
                let new = pte | 64 | if acc == Access::Write { 128 } else { 0 };
                let _ = self.bus.ram.write_bytes(pte_addr, &new.to_le_bytes());
            }
            let pa_page = (ppn | ((va >> 12) & low_mask)) << 12;
            let pa = pa_page | (va & 0xfff);
            self.fill_tlb(va, pa, acc);
            return Ok(pa);
        }
        Err(Self::fault(acc, va, true))
    }

    fn fill_tlb(&mut self, va: u64, pa: u64, acc: Access) {
        let page = pa & !0xfff;
        let Some(off) = self.bus.ram.offset(page, 0x1000) else {
            return;
        };
        if acc == Access::Write && self.bus.ram.is_code(off >> 12) {
            return;
        }
        let i = Tlb::index(va);
        let entry_data = TlbEntry {
            tag: self.tlb.key(va),
            off,
        };
        match acc {
            Access::Read => self.tlb.r[i] = entry_data,
            Access::Write => self.tlb.w[i] = entry_data,
            Access::Exec => {
                self.tlb.x[i] = TlbEntry {
                    tag: self.tlb.key_x(va),
                    off,
                }
            }
        }
    }
}
