//! Benchmarks of spin (criterion).
//!
//! None yet: they arrive with the emulator, the image store and the network.
