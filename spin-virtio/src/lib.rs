//! virtio-mmio transport and the devices spin's emulators share.
//!
//! Not implemented yet: this crate holds no API so far. See the project's open
//! issues for its plan; nothing here pretends to work.
