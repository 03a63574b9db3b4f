//! Runs a command in a squashfs image on spin's emulator and reports timings.
//!
//! `cargo run --release -p spin-runtime --example run -- IMAGE.sqfs CMD [ARGS...]`

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use spin_runtime::{Arch, ImageSource, Runtime};

/// Passes output through and remembers when the first byte came.
struct FirstByte(Arc<Mutex<Option<Instant>>>);

impl Write for FirstByte {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().get_or_insert_with(Instant::now);
        std::io::stdout().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: run IMAGE.sqfs CMD [ARGS...]");
        std::process::exit(2);
    }
    let start = Instant::now();
    let runtime = Runtime::new(Arch::Riscv64).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let loaded = start.elapsed();
    let first = Arc::new(Mutex::new(None));
    let status = runtime
        .container(ImageSource::ImageFile(args[0].clone().into()))
        .command(args[1..].to_vec())
        .stdout(FirstByte(first.clone()))
        .run();
    let total = start.elapsed();
    let first = first.lock().unwrap().map(|t| t - start);
    eprintln!("[run] module ready {loaded:.2?}, first output {first:.2?}, total {total:.2?}");
    match status {
        Ok(s) => std::process::exit(s.code()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}
