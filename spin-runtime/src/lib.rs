//! Runs OCI containers inside spin's emulators, hosted by wasmtime.
//!
//! Not implemented yet: this crate holds no API so far. Its tests check that the
//! emulator modules built by `cargo xtask build-emulators` instantiate under wasmtime.
