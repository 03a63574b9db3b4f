//! Conversion of OCI image layers into a squashfs root filesystem.
//!
//! - [`convert`]: applies layers (plain, gzip or zstd tar streams) in order,
//!   with whiteouts and opaque directories, onto an in-memory tree and
//!   streams file contents into a squashfs image ([`squashfs`]), keeping
//!   modes, owners, symlinks, hard links, device nodes and xattrs. No root
//!   privileges, nothing unpacked to disk.
//! - [`oci`]: the image-spec types (manifests, indexes, configs, digests).
//! - [`archive`]: offline inputs (OCI layout directories, `docker save`
//!   archives) and export as an OCI layout.
//!
//! This crate knows nothing of the network; `spin-registry` feeds it.

#![warn(missing_docs)]

pub mod archive;
pub mod convert;
pub mod oci;
pub mod squashfs;

pub use convert::{
    ConvertOptions, ConvertStats, LayerCompression, LayerInput, Limits, convert_layers,
};
pub use oci::{ContainerConfig, Descriptor, Digest, ImageConfig, Index, Manifest, Platform};
pub use squashfs::Compression;

/// Errors of image conversion and offline archives.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on the output or an input file.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A layer's stream could not be decoded.
    #[error("layer {index}: {message}")]
    Layer {
        /// Position of the layer (0 = base).
        index: usize,
        /// What went wrong.
        message: String,
    },
    /// The decompressed layers exceed the size limit.
    #[error(
        "image too large: more than {limit} bytes of decompressed layers (limit is configurable)"
    )]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The layers hold more entries than allowed.
    #[error("image has too many entries: more than {limit} (limit is configurable)")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// A tar entry that cannot be applied.
    #[error("invalid layer entry {path:?}: {reason}")]
    InvalidEntry {
        /// The entry's name as found in the tar.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A media type spin does not handle.
    #[error("unknown media type {0:?}")]
    UnknownMediaType(String),
    /// A malformed digest.
    #[error("invalid digest {0:?} (only sha256 is supported)")]
    InvalidDigest(String),
    /// A malformed platform string.
    #[error("invalid platform {0:?} (expected os/arch[/variant])")]
    InvalidPlatform(String),
    /// Content whose digest is not the one expected.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was asked for.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// An offline archive or layout that is malformed.
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    /// Malformed JSON.
    #[error("invalid JSON in {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parser's error.
        source: serde_json::Error,
    },
}
