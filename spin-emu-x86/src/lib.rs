//! An x86-64 system emulator for spin's Linux guest.
//!
//! Not implemented yet: this crate holds no API so far. Its binary only prints
//! its name and version (used to check the wasm32-wasip1 build and its host).
