//! The host side of spin's folder shares: a 9P2000.L file server confined to
//! one host directory, plugged into the virtio-9p device as an
//! [`FsBackend`](spin_virtio::p9::FsBackend).
//!
//! # Model
//!
//! The guest's v9fs client names files by *fids*. Each fid in [`P9Server`]'s
//! table holds an open host handle of the file it names (an `O_PATH` descriptor,
//! opened with `O_NOFOLLOW`), the handle of the directory it was found in, and
//! its path from the share's root (kept only to walk `..`). Every host call is a
//! single-name `*at()` call relative to one of those handles, or works on the
//! handle itself:
//!
//! - a walk opens one name at a time below the previous handle with
//!   `O_PATH | O_NOFOLLOW`, so a symlink is never followed by the server: it is
//!   returned as itself, and walking on through it fails with `ENOTDIR` (the
//!   guest resolves symlinks on its own, inside its own namespace);
//! - `..` is not asked of the host: it drops the last path component and walks
//!   down again from the root, and at the root it stays at the root;
//! - opening a file reopens the very inode the fid holds (through
//!   `/proc/self/fd`, falling back to an `O_NOFOLLOW` open of its name in its
//!   pinned directory), so replacing a path component by a symlink between a
//!   walk and an open changes nothing: no name is looked up again;
//! - mutations take their names relative to a held directory handle and never
//!   follow a final symlink (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`, `chmod`
//!   through `/proc/self/fd` on the held inode).
//!
//! So no request can reach a file outside the share's directory, except
//! through what the host itself mounts or hard-links into it.
//!
//! Files keep their host owners, modes and timestamps; the server acts with the
//! host process's own permissions (the guest's uid/gid in requests is ignored).
//! A read-only share answers every mutation with `EROFS`.
//!
//! Each live fid holds one or two host descriptors, so the host process's
//! `RLIMIT_NOFILE` bounds how many files the guest can hold at once (opens past
//! it fail with `EMFILE` in the guest). Qid paths are inode numbers (tagged in
//! the top byte for filesystems mounted below the share's root); qid versions
//! are 0.
//!
//! Malformed requests get `Rlerror` (`EPROTO` for bad framing, `EBADF` for
//! unknown fids, `EINVAL` for bad arguments); replies never exceed the
//! negotiated msize and the fid table is capped at [`MAX_FIDS`].
//!
//! # Not supported
//!
//! Extended attributes (`Txattrwalk` answers `ENODATA`, or `EOPNOTSUPP` for a
//! listing; `Txattrcreate` answers `EOPNOTSUPP`), authentication (`Tauth`), real
//! byte-range locks (`Tlock` always grants, `Tgetlock` reports unlocked: the
//! guest is the only client), creating device nodes (`EPERM`), opening special
//! files (fifos, sockets, devices: `EOPNOTSUPP`) and the legacy 9P2000/9P2000.u
//! dialects. Only Linux hosts are supported (the server relies on `O_PATH`
//! and `/proc/self/fd`).

mod server;
mod wire;

use std::path::{Path, PathBuf};

pub use server::{MAX_FIDS, P9Server};

/// How a share is exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareOptions {
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
}

/// Why a share could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The host path does not exist.
    #[error("share folder {0} does not exist")]
    NotFound(PathBuf),
    /// The host path is not a directory.
    #[error("share path {0} is not a folder")]
    NotADirectory(PathBuf),
    /// The host refused to open it.
    #[error("opening share folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The host's error.
        source: std::io::Error,
    },
}

impl P9Server {
    /// A server for the host folder `path`.
    pub fn open(path: impl AsRef<Path>, read_only: bool) -> Result<P9Server, Error> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Error::NotADirectory(path.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(path.to_path_buf()));
            }
            Err(e) => return Err(io(e)),
        }
        let dir =
            cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority()).map_err(io)?;
        Ok(P9Server::new(dir, ShareOptions { read_only }))
    }
}
