//! A SiFive-compatible platform-level interrupt controller for one hart with
//! two contexts: 0 is the hart's M-mode, 1 its S-mode.

/// Number of interrupt sources including the unused source 0.
pub const NUM_SOURCES: u32 = 32;
const CONTEXTS: usize = 2;

/// PLIC state: plain data.
#[derive(Clone, Debug, Default)]
pub struct Plic {
    priority: [u32; NUM_SOURCES as usize],
    /// Input levels from devices.
    level: u32,
    /// Pending bits (gateway output).
    pending: u32,
    /// Sources claimed and not yet completed.
    in_service: u32,
    enable: [u32; CONTEXTS],
    threshold: [u32; CONTEXTS],
}

impl Plic {
    /// A PLIC with every source disabled.
    pub fn new() -> Plic {
        Plic::default()
    }

    /// Sets the level of source `irq` (1..NUM_SOURCES).
    pub fn set_level(&mut self, irq: u32, high: bool) {
        if irq == 0 || irq >= NUM_SOURCES {
            return;
        }
        let bit = 1u32 << irq;
        if high {
            self.level |= bit;
            if self.in_service & bit == 0 {
                self.pending |= bit;
            }
        } else {
            self.level &= !bit;
            self.pending &= !bit;
        }
    }

    fn best(&self, ctx: usize) -> u32 {
        let cand = self.pending & self.enable[ctx] & !1;
        let mut best = 0;
        let mut best_prio = self.threshold[ctx];
        let mut m = cand;
        while m != 0 {
            let irq = m.trailing_zeros();
            m &= m - 1;
            let p = self.priority[irq as usize];
            if p > best_prio {
                best_prio = p;
                best = irq;
            }
        }
        best
    }

    /// Whether context `ctx` (0 = M, 1 = S) has an interrupt to take.
    pub fn irq_pending(&self, ctx: usize) -> bool {
        self.best(ctx) != 0
    }

    /// Reads a 32-bit register at `off` from the PLIC's base.
    pub fn read(&mut self, off: u64) -> u32 {
        match off {
            0..0x1000 => self.priority.get((off / 4) as usize).copied().unwrap_or(0),
            0x1000 => self.pending,
            0x2000..0x200000 => {
                let ctx = ((off - 0x2000) / 0x80) as usize;
                let word = (off - 0x2000) % 0x80;
                if ctx < CONTEXTS && word == 0 {
                    self.enable[ctx]
                } else {
                    0
                }
            }
            0x200000.. => {
                let ctx = ((off - 0x200000) / 0x1000) as usize;
                if ctx >= CONTEXTS {
                    return 0;
                }
                match off & 0xfff {
                    0 => self.threshold[ctx],
                    4 => {
                        let irq = self.best(ctx);
                        if irq != 0 {
                            self.pending &= !(1 << irq);
                            self.in_service |= 1 << irq;
                        }
                        irq
                    }
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    /// Writes a 32-bit register at `off` from the PLIC's base.
    pub fn write(&mut self, off: u64, val: u32) {
        match off {
            0..0x1000 => {
                if let Some(p) = self.priority.get_mut((off / 4) as usize) {
                    *p = val & 7;
                }
            }
            0x2000..0x200000 => {
                let ctx = ((off - 0x2000) / 0x80) as usize;
                if ctx < CONTEXTS && (off - 0x2000).is_multiple_of(0x80) {
                    self.enable[ctx] = val & !1;
                }
            }
            0x200000.. => {
                let ctx = ((off - 0x200000) / 0x1000) as usize;
                if ctx >= CONTEXTS {
                    return;
                }
                match off & 0xfff {
                    0 => self.threshold[ctx] = val & 7,
                    4 if val > 0 && val < NUM_SOURCES => {
                        let bit = 1 << val;
                        self.in_service &= !bit;
                        if self.level & bit != 0 {
                            self.pending |= bit;
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_complete_cycle() {
        let mut p = Plic::new();
        p.write(4 * 3, 1); // priority of source 3
        p.write(0x2000 + 0x80, 1 << 3); // enable for S context
        assert!(!p.irq_pending(1));
        p.set_level(3, true);
        assert!(p.irq_pending(1));
        assert!(!p.irq_pending(0));
        assert_eq!(p.read(0x201004), 3);
        assert!(!p.irq_pending(1), "claimed source is not pending");
        p.write(0x201004, 3);
        assert!(p.irq_pending(1), "level still high: pending again");
        p.set_level(3, false);
        assert!(!p.irq_pending(1));
        p.set_level(3, true);
        p.write(0x201000, 1); // threshold = priority: masked
        assert!(!p.irq_pending(1));
    }
}
