//! The build cache outside the clone (`~/.cache/spin`), keyed by hashes of inputs.
//!
//! Every entry is built in a temporary folder beside it and renamed into place, so
//! a reader sees a whole entry or none, and two builds at once cannot corrupt it:
//! the loser of the rename race discards its copy.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The cache root: `$SPIN_CACHE_DIR`, else `$XDG_CACHE_HOME/spin`, else `~/.cache/spin`.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPIN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("spin")
}

/// A hasher for cache keys.
#[derive(Default)]
pub struct Key(Sha256);

impl Key {
    /// Adds a labelled piece of input.
    pub fn add(mut self, label: &str, data: impl AsRef<[u8]>) -> Key {
        let data = data.as_ref();
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((data.len() as u64).to_le_bytes());
        self.0.update(data);
        self
    }

    /// Adds a file's content.
    pub fn add_file(self, path: &Path) -> Result<Key> {
        let data = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(self.add(
            &path.file_name().unwrap_or_default().to_string_lossy(),
            data,
        ))
    }

    /// The key as 16 hex digits (enough to tell builds apart).
    pub fn finish(self) -> String {
        let digest = self.0.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Returns the cache entry `name`, building it with `build` into a temporary
/// folder first when it is not there yet.
pub fn entry(name: &str, build: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let final_dir = root().join(name);
    if final_dir.is_dir() {
        return Ok(final_dir);
    }
    let tmp = temp_beside(&final_dir)?;
    let result = build(&tmp);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = fs::rename(&tmp, &final_dir) {
        let _ = fs::remove_dir_all(&tmp);
        // Another build finished first: its entry is as good as ours.
        if !final_dir.is_dir() {
            return Err(e).with_context(|| format!("moving {} into place", final_dir.display()));
        }
    }
    Ok(final_dir)
}

/// A fresh temporary folder next to `dest` (same filesystem, so rename is atomic).
pub fn temp_beside(dest: &Path) -> Result<PathBuf> {
    let parent = dest.parent().context("cache entry without parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    for n in 0.. {
        let tmp = parent.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match fs::create_dir(&tmp) {
            Ok(()) => return Ok(tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", tmp.display())),
        }
    }
    unreachable!("the counter is unbounded")
}

/// Copies `src` to `dest` through a temporary file and a rename.
pub fn install_file(src: &Path, dest: &Path) -> Result<()> {
    replace_file(dest, |tmp| {
        fs::copy(src, tmp)
            .map(|_| ())
            .with_context(|| format!("copying {} to {}", src.display(), tmp.display()))
    })
}

/// Writes `data` to `dest` through a temporary file and a rename.
pub fn write_file(dest: &Path, data: &[u8]) -> Result<()> {
    replace_file(dest, |tmp| {
        fs::write(tmp, data).with_context(|| format!("writing {}", tmp.display()))
    })
}

/// Fills a temporary file beside `dest` with `fill`, then renames it over `dest`,
/// so readers see the old file or the new one, never a half-written one.
fn replace_file(dest: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = dest.parent().context("destination without parent")?;
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.tmp-{}",
        dest.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if let Err(e) = fill(&tmp) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, dest).with_context(|| format!("moving {} into place", dest.display()))
}
