//! The emulator as a WASI command, run by spin-runtime under wasmtime.

fn main() {
    // The machine itself is not implemented yet; the module only proves that the
    // wasm build, its host instantiation and its stdio work.
    println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
}
