//! A user-mode harness: runs a static riscv64 Linux ELF in U-mode on a flat
//! memory (virtual = physical, no paging) and emulates the few system calls
//! such test programs use. Used for differential tests against `qemu-riscv64`.

use crate::bus::{Bus, Ram};
use crate::cpu::{Cpu, Exit, mstatus, privilege};
use thiserror::Error;

/// Why a user-mode run failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UserError {
    /// The file is not a static little-endian riscv64 ELF executable.
    #[error("not a static riscv64 ELF executable: {0}")]
    BadElf(&'static str),
    /// A segment or the stack does not fit in the harness memory.
    #[error("program does not fit in {0} bytes of memory")]
    DoesNotFit(usize),
    /// The program made a system call the harness does not emulate.
    #[error("unsupported system call {nr} at pc {pc:#x}")]
    UnsupportedSyscall {
        /// The syscall number (a7).
        nr: u64,
        /// Where the ecall is.
        pc: u64,
    },
    /// The program took an exception (a fault, an illegal instruction, ...).
    #[error("exception cause {cause} (tval {tval:#x}) at pc {pc:#x}")]
    Fault {
        /// The exception cause.
        cause: u64,
        /// The trap value.
        tval: u64,
        /// The faulting pc.
        pc: u64,
    },
    /// The program ran longer than the instruction budget.
    #[error("program did not exit within {0} instructions")]
    Timeout(u64),
}

/// The result of a program that exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOutput {
    /// The exit status passed to exit/exit_group.
    pub exit_code: i32,
    /// Bytes written to fd 1.
    pub stdout: Vec<u8>,
    /// Bytes written to fd 2.
    pub stderr: Vec<u8>,
    /// Instructions executed.
    pub instructions: u64,
}

/// Memory given to a user-mode program.
pub const USER_MEM: usize = 256 << 20;
const STACK_SIZE: u64 = 8 << 20;
const MMAP_BASE: u64 = 0x0800_0000;

fn u16le(b: &[u8], o: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?) as u64)
}
fn u32le(b: &[u8], o: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?) as u64)
}
fn u64le(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

struct Loaded {
    entry: u64,
    phdr: u64,
    phnum: u64,
    brk: u64,
}

fn load_elf(elf: &[u8], ram: &mut Ram) -> Result<Loaded, UserError> {
    let bad = UserError::BadElf;
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        return Err(bad("no ELF magic"));
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err(bad("not 64-bit little-endian"));
    }
    let e_type = u16le(elf, 16).ok_or(bad("short header"))?;
    let machine = u16le(elf, 18).ok_or(bad("short header"))?;
    if machine != 243 {
        return Err(bad("not RISC-V"));
    }
    if e_type != 2 {
        return Err(bad("not a static executable (ET_EXEC)"));
    }
    let entry = u64le(elf, 24).ok_or(bad("short header"))?;
    let phoff = u64le(elf, 32).ok_or(bad("short header"))? as usize;
    let phentsize = u16le(elf, 54).ok_or(bad("short header"))? as usize;
    let phnum = u16le(elf, 56).ok_or(bad("short header"))? as usize;
    if phentsize < 56 {
        return Err(bad("bad program header size"));
    }
    let mut phdr = 0;
    let mut brk = 0;
    for i in 0..phnum {
        let o = phoff.checked_add(i * phentsize).ok_or(bad("bad phoff"))?;
        let p_type = u32le(elf, o).ok_or(bad("truncated program headers"))?;
        let offset = u64le(elf, o + 8).ok_or(bad("truncated program headers"))?;
        let vaddr = u64le(elf, o + 16).ok_or(bad("truncated program headers"))?;
        let filesz = u64le(elf, o + 32).ok_or(bad("truncated program headers"))?;
        let memsz = u64le(elf, o + 40).ok_or(bad("truncated program headers"))?;
        match p_type {
            3 => return Err(bad("has an interpreter (dynamically linked)")),
            6 => phdr = vaddr,
            1 => {
                if filesz > memsz {
                    return Err(bad("segment file size exceeds memory size"));
                }
                let data = elf
                    .get(offset as usize..(offset as usize).saturating_add(filesz as usize))
                    .ok_or(bad("segment beyond end of file"))?;
                ram.offset(vaddr, memsz)
                    .ok_or(UserError::DoesNotFit(ram.size()))?;
                ram.write_bytes(vaddr, data)
                    .ok_or(UserError::DoesNotFit(ram.size()))?;
                if offset == 0 && phdr == 0 {
                    phdr = vaddr + phoff as u64;
                }
                brk = brk.max(vaddr + memsz);
            }
            _ => {}
        }
    }
    Ok(Loaded {
        entry,
        phdr,
        phnum: phnum as u64,
        brk: (brk + 0xfff) & !0xfff,
    })
}

struct Process {
    out: UserOutput,
    brk: u64,
    brk_start: u64,
    mmap_next: u64,
    mem_top: u64,
    exited: bool,
}

const ENOSYS: i64 = 38;
const EBADF: i64 = 9;
const ENOTTY: i64 = 25;
const ENOMEM: i64 = 12;
const EFAULT: i64 = 14;

impl Process {
    fn syscall(&mut self, cpu: &mut Cpu) -> Result<(), UserError> {
        let nr = cpu.x[17];
        let a = [
            cpu.x[10], cpu.x[11], cpu.x[12], cpu.x[13], cpu.x[14], cpu.x[15],
        ];
        let ret: i64 = match nr {
            64 => self.write(cpu, a[0], a[1], a[2]),
            66 => {
                let mut total = 0i64;
                for i in 0..a[2].min(1024) {
                    let mut iov = [0u8; 16];
                    if cpu.read_virt(a[1].wrapping_add(16 * i), &mut iov).is_err() {
                        total = -EFAULT;
                        break;
                    }
                    let base = u64::from_le_bytes(iov[..8].try_into().unwrap_or_default());
                    let len = u64::from_le_bytes(iov[8..].try_into().unwrap_or_default());
                    let r = self.write(cpu, a[0], base, len);
                    if r < 0 {
                        total = r;
                        break;
                    }
                    total += r;
                }
                total
            }
            93 | 94 => {
                self.out.exit_code = a[0] as i32;
                self.exited = true;
                0
            }
            214 => {
                if a[0] >= self.brk_start && a[0] < MMAP_BASE {
                    self.brk = a[0];
                }
                self.brk as i64
            }
            222 => {
                // mmap: anonymous private mappings only.
                const MAP_ANONYMOUS: u64 = 0x20;
                if a[3] & MAP_ANONYMOUS == 0 || a[0] != 0 {
                    -ENOSYS
                } else {
                    let len = a[1].saturating_add(0xfff) & !0xfff;
                    if self.mmap_next.saturating_add(len) > self.mem_top - STACK_SIZE {
                        -ENOMEM
                    } else {
                        let addr = self.mmap_next;
                        self.mmap_next += len;
                        let zeros = vec![0u8; len as usize];
                        let _ = cpu.bus.ram.write_bytes(addr, &zeros);
                        addr as i64
                    }
                }
            }
            215 | 226 | 99 => 0,
            96 | 172 | 178 => 1,
            29 => -ENOTTY,
            78 | 79 | 80 | 261 | 293 | 135 | 134 => -ENOSYS,
            278 => {
                // getrandom: deterministic bytes.
                let mut x = 0x9e37_79b9_7f4a_7c15u64;
                for i in 0..a[1].min(1 << 16) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let _ = cpu.write_virt(a[0].wrapping_add(i), &[x as u8]);
                }
                a[1].min(1 << 16) as i64
            }
            _ => return Err(UserError::UnsupportedSyscall { nr, pc: cpu.pc }),
        };
        cpu.x[10] = ret as u64;
        cpu.pc += 4;
        Ok(())
    }

    fn write(&mut self, cpu: &mut Cpu, fd: u64, buf: u64, len: u64) -> i64 {
        let mut data = vec![0u8; len.min(1 << 24) as usize];
        if cpu.read_virt(buf, &mut data).is_err() {
            return -EFAULT;
        }
        match fd {
            1 => self.out.stdout.extend_from_slice(&data),
            2 => self.out.stderr.extend_from_slice(&data),
            _ => return -EBADF,
        }
        data.len() as i64
    }
}

/// Runs a static riscv64 ELF with `args` (`argv[0]` included) for at most
/// `max_instructions`, returning its exit status and output.
pub fn run_elf(elf: &[u8], args: &[&str], max_instructions: u64) -> Result<UserOutput, UserError> {
    let mut ram = Ram::new(0, USER_MEM);
    let loaded = load_elf(elf, &mut ram)?;
    if loaded.brk >= MMAP_BASE {
        return Err(UserError::DoesNotFit(USER_MEM));
    }
    let mut cpu = Cpu::new(Bus::new(ram));
    let top = USER_MEM as u64;

    // Stack: strings, then the random bytes, then argc/argv/envp/auxv.
    let mut sp = top - 16;
    let mut arg_ptrs = Vec::new();
    for a in args {
        sp -= a.len() as u64 + 1;
        let mut s = a.as_bytes().to_vec();
        s.push(0);
        cpu.bus
            .ram
            .write_bytes(sp, &s)
            .ok_or(UserError::DoesNotFit(USER_MEM))?;
        arg_ptrs.push(sp);
    }
    sp = (sp - 16) & !15;
    let random = sp;
    cpu.bus
        .ram
        .write_bytes(random, &[0x5a; 16])
        .ok_or(UserError::DoesNotFit(USER_MEM))?;
    let auxv: [(u64, u64); 12] = [
        (3, loaded.phdr),
        (4, 56),
        (5, loaded.phnum),
        (6, 4096),
        (9, loaded.entry),
        (11, 0),
        (12, 0),
        (13, 0),
        (14, 0),
        (23, 0),
        (25, random),
        (0, 0),
    ];
    let mut words: Vec<u64> = vec![args.len() as u64];
    words.extend(&arg_ptrs);
    words.push(0); // argv end
    words.push(0); // envp end
    for (k, v) in auxv {
        words.push(k);
        words.push(v);
    }
    sp -= 8 * words.len() as u64;
    sp &= !15;
    for (i, w) in words.iter().enumerate() {
        cpu.bus
            .ram
            .write_bytes(sp + 8 * i as u64, &w.to_le_bytes())
            .ok_or(UserError::DoesNotFit(USER_MEM))?;
    }

    cpu.x[2] = sp;
    cpu.pc = loaded.entry;
    cpu.mcounteren = 7;
    cpu.scounteren = 7;
    cpu.mstatus = 1 << 13; // FS = initial
    cpu.set_privilege(privilege::U);
    debug_assert_eq!(cpu.mstatus & mstatus::MPRV, 0);

    let mut p = Process {
        out: UserOutput {
            exit_code: 0,
            stdout: Vec::new(),
            stderr: Vec::new(),
            instructions: 0,
        },
        brk: loaded.brk,
        brk_start: loaded.brk,
        mmap_next: MMAP_BASE,
        mem_top: top,
        exited: false,
    };
    while !p.exited {
        if cpu.instret >= max_instructions {
            return Err(UserError::Timeout(max_instructions));
        }
        let budget = (max_instructions - cpu.instret).min(1 << 20);
        match cpu.run(budget) {
            Exit::Budget => {}
            Exit::Ecall { .. } => p.syscall(&mut cpu)?,
            Exit::Wfi => {
                return Err(UserError::Fault {
                    cause: 2,
                    tval: 0,
                    pc: cpu.pc,
                });
            }
            Exit::MachineTrap { cause, tval, pc } => {
                return Err(UserError::Fault { cause, tval, pc });
            }
        }
    }
    p.out.instructions = cpu.instret;
    Ok(p.out)
}
