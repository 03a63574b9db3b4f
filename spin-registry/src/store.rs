//! The content store on disk.
//!
//! ```text
//! <root>/blobs/sha256/<hex>        blobs by digest, shared between images
//! <root>/images.json               names → manifest digests (+ platform)
//! <root>/rootfs/<hex>.squashfs     converted root filesystem, by manifest digest
//! <root>/rootfs/<hex>.json         the image's container defaults
//! <root>/tmp/                      downloads and conversions in progress
//! <root>/locks/                    lock files (flock: released when a process dies)
//! ```
//!
//! Every file appears by rename of a complete temporary file, so readers
//! never see partial content. `locks/gc.lock` is held shared by pulls and
//! imports for their whole run and exclusively by removal (which deletes
//! unreferenced blobs), `locks/index.lock` exclusively around each
//! read-modify-write of `images.json`, and `locks/<hex>.lock` around the
//! conversion of one image.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use spin_image::{ContainerConfig, Digest, Platform};

use crate::Error;

/// One name in the store's index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Digest of the (platform-specific) image manifest.
    pub manifest: Digest,
    /// Digest of the index it was selected from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
    /// The image's platform.
    pub platform: Platform,
    /// When it was stored (seconds since the epoch).
    pub created: u64,
}

/// The container defaults kept beside a converted root filesystem.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defaults {
    /// The image's platform.
    pub platform: Platform,
    /// Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts…
    pub config: ContainerConfig,
}

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: BTreeMap<String, IndexEntry>,
}

/// A held file lock; released on drop (and by the kernel if the process dies).
pub struct LockGuard(#[allow(dead_code)] File);

/// The store at a path.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, Error> {
        for d in ["blobs/sha256", "rootfs", "tmp", "locks"] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it is there).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm()).join(d.hex())
    }

    /// Whether a blob is stored.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Reads a whole (small) blob.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, Error> {
        fs::read(self.blob_path(d)).map_err(|e| Error::Store(format!("blob {d} unreadable: {e}")))
    }

    /// The converted root filesystem of a manifest.
    pub fn rootfs_path(&self, manifest: &Digest) -> PathBuf {
        self.root
            .join("rootfs")
            .join(format!("{}.squashfs", manifest.hex()))
    }

    /// The defaults file of a manifest.
    pub fn defaults_path(&self, manifest: &Digest) -> PathBuf {
        self.root
            .join("rootfs")
            .join(format!("{}.json", manifest.hex()))
    }

    /// A fresh temporary path inside the store (same filesystem as the
    /// final places, so rename is atomic).
    pub fn temp_path(&self, what: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        self.root
            .join("tmp")
            .join(format!("{what}-{}-{n}-{nanos}", std::process::id()))
    }

    /// Stores `reader`'s bytes as a blob, verifying `expected` if given.
    pub fn put_blob(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), Error> {
        let tmp = self.temp_path("blob");
        let res = (|| {
            let mut f = File::create(&tmp)?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n])?;
                size += n as u64;
            }
            let actual = Digest::from_sha256(h.finalize().into());
            if let Some(e) = expected
                && e != &actual
            {
                return Err(Error::DigestMismatch {
                    expected: e.clone(),
                    actual,
                });
            }
            f.sync_all()?;
            self.commit(&tmp, &self.blob_path(&actual))?;
            Ok((actual, size))
        })();
        let _ = fs::remove_file(&tmp);
        res
    }

    /// Moves a complete temporary file into place.
    pub fn commit(&self, tmp: &Path, dest: &Path) -> Result<(), Error> {
        fs::rename(tmp, dest)?;
        Ok(())
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<LockGuard, Error> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("locks").join(name))?;
        if exclusive {
            f.lock()?
        } else {
            f.lock_shared()?
        }
        Ok(LockGuard(f))
    }

    /// Held (shared) by pulls and imports, so removal does not collect
    /// blobs they are about to reference.
    pub fn use_lock(&self) -> Result<LockGuard, Error> {
        self.lock("gc.lock", false)
    }

    /// Held (exclusive) by removal while it collects garbage.
    pub fn gc_lock(&self) -> Result<LockGuard, Error> {
        self.lock("gc.lock", true)
    }

    /// Held while one image is converted.
    pub fn image_lock(&self, manifest: &Digest) -> Result<LockGuard, Error> {
        self.lock(&format!("{}.lock", manifest.hex()), true)
    }

    fn read_index_file(&self) -> Result<IndexFile, Error> {
        match fs::read(self.root.join("images.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Store(format!("images.json is corrupt: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// All names and their entries.
    pub fn entries(&self) -> Result<BTreeMap<String, IndexEntry>, Error> {
        Ok(self.read_index_file()?.images)
    }

    /// Changes the index under its lock, writing it atomically.
    pub fn update_index<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, IndexEntry>) -> T,
    ) -> Result<T, Error> {
        let _g = self.lock("index.lock", true)?;
        let mut file = self.read_index_file()?;
        let out = f(&mut file.images);
        file.version = 1;
        let tmp = self.temp_path("index");
        let bytes = serde_json::to_vec_pretty(&file).expect("index serializes");
        let res = (|| {
            let mut t = File::create(&tmp)?;
            t.write_all(&bytes)?;
            t.sync_all()?;
            fs::rename(&tmp, self.root.join("images.json"))
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res?;
        Ok(out)
    }

    /// Empties `tmp/` (only under the exclusive gc lock: no pull is running).
    pub fn clean_tmp(&self) -> Result<(), Error> {
        for e in fs::read_dir(self.root.join("tmp"))? {
            let p = e?.path();
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
        Ok(())
    }

    /// Deletes blobs and root filesystems not in `keep_blobs` / `keep_rootfs`.
    pub fn sweep(
        &self,
        keep_blobs: &std::collections::HashSet<Digest>,
        keep_rootfs: &std::collections::HashSet<Digest>,
    ) -> Result<u64, Error> {
        let mut freed = 0;
        for e in fs::read_dir(self.root.join("blobs/sha256"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(d) = format!("sha256:{name}").parse::<Digest>()
                && !keep_blobs.contains(&d)
            {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path())?;
            }
        }
        for e in fs::read_dir(self.root.join("rootfs"))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.split('.').next().unwrap_or("");
            if let Ok(d) = format!("sha256:{hex}").parse::<Digest>()
                && !keep_rootfs.contains(&d)
            {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path())?;
                let _ = fs::remove_file(self.root.join("locks").join(format!("{hex}.lock")));
            }
        }
        Ok(freed)
    }
}
