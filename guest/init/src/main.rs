//! `spin-init`: PID 1 of the spin guest. See `guest/README.md`.

#[cfg(target_os = "linux")]
mod pid1;

#[cfg(target_os = "linux")]
fn main() {
    pid1::main()
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("spin-init runs only as PID 1 of a Linux guest");
    std::process::exit(1);
}
