//! A user-space network for containers (smoltcp, NAT, DNS, port forwards).
//!
//! Not implemented yet: this crate holds no API so far. See the project's open
//! issues for its plan; nothing here pretends to work.
