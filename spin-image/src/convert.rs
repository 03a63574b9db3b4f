//! Applies OCI layers (tar streams) in order onto an in-memory tree and
//! streams file contents into a squashfs image.
//!
//! Nothing is unpacked to disk and no host path is ever built from an entry
//! name: paths are normalised inside the image root (`..` stops at the root,
//! absolute names are taken relative to it, symlinks met on the way are
//! followed only inside the tree), so a hostile layer cannot reach outside.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::Path;
use std::rc::Rc;
use std::thread;

use crate::Error;
use crate::oci::media_type as mt;
use crate::squashfs::{
    Compression, DataError, ImageStats, Inode, InodeId, InodeKind, SquashfsWriter, Tree, encode_dev,
};

/// Limits that stop a hostile or broken image (a "tar bomb").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most decompressed bytes read from all layers together.
    pub max_total_bytes: u64,
    /// Most tar entries in all layers together.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_total_bytes: 64 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// How to build the squashfs image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Size and entry limits.
    pub limits: Limits,
    /// Compressor of the squashfs image.
    pub compression: Compression,
    /// squashfs block size (power of two, 4 KiB – 1 MiB).
    pub block_size: u32,
    /// Compression threads (0: one per CPU, at most 8).
    pub threads: usize,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            limits: Limits::default(),
            compression: Compression::default(),
            block_size: 128 << 10,
            threads: 0,
        }
    }
}

/// The compression of a layer blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl LayerCompression {
    /// From a layer media type; unknown types are an error.
    pub fn from_media_type(media_type: &str) -> Result<Self, Error> {
        match media_type {
            mt::OCI_LAYER_TAR | mt::OCI_ND_LAYER_TAR | mt::DOCKER_LAYER_TAR => Ok(Self::None),
            mt::OCI_LAYER_GZIP
            | mt::OCI_ND_LAYER_GZIP
            | mt::DOCKER_LAYER_GZIP
            | mt::DOCKER_FOREIGN_LAYER_GZIP => Ok(Self::Gzip),
            mt::OCI_LAYER_ZSTD | mt::OCI_ND_LAYER_ZSTD => Ok(Self::Zstd),
            other => Err(Error::UnknownMediaType(other.to_string())),
        }
    }

    /// From the first bytes of a blob (for archives that do not say).
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// The OCI media type of a layer with this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Self::None => mt::OCI_LAYER_TAR,
            Self::Gzip => mt::OCI_LAYER_GZIP,
            Self::Zstd => mt::OCI_LAYER_ZSTD,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::None => "tar",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        }
    }
}

/// What a conversion produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvertStats {
    /// Tar entries read.
    pub entries: u64,
    /// Decompressed bytes read.
    pub bytes_read: u64,
    /// The squashfs image's counts.
    pub image: ImageStats,
}

/// Shared accounting of the decompressed bytes, so a limit hit deep inside
/// the tar reader is reported as such.
struct Budget {
    used: Cell<u64>,
    max: u64,
    exceeded: Cell<bool>,
}

struct CountingReader<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let used = self.budget.used.get() + n as u64;
        self.budget.used.set(used);
        if used > self.budget.max {
            self.budget.exceeded.set(true);
            return Err(io::Error::other("size limit exceeded"));
        }
        Ok(n)
    }
}

/// The decoder of a layer blob.
fn decoder<'a, R: Read + 'a>(c: LayerCompression, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        LayerCompression::None => Box::new(r),
        LayerCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 16, r),
        )),
        LayerCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
    })
}

/// A layer to apply: its compression and a reader of the blob.
pub struct LayerInput<'a> {
    /// The blob's compression.
    pub compression: LayerCompression,
    /// The blob's bytes.
    pub reader: Box<dyn Read + 'a>,
}

/// Applies `layers` (base first) and writes the squashfs image to `out`.
///
/// `out` is created (truncated); on error the caller removes it.
pub fn convert_layers<'a>(
    layers: impl IntoIterator<Item = LayerInput<'a>>,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertStats, Error> {
    let file = File::create(out)?;
    let writer = SquashfsWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        opts.block_size,
        opts.compression,
        if opts.threads == 0 {
            thread::available_parallelism()
                .map(|n| n.get().min(8))
                .unwrap_or(1)
        } else {
            opts.threads
        },
    )?;
    let budget = Rc::new(Budget {
        used: Cell::new(0),
        max: opts.limits.max_total_bytes,
        exceeded: Cell::new(false),
    });
    let mut b = Builder {
        tree: Tree::default(),
        writer,
        entries: 0,
        limits: opts.limits,
        layer: 0,
        origin: BTreeMap::new(),
    };
    for (index, layer) in layers.into_iter().enumerate() {
        b.layer = index;
        let _span = tracing::debug_span!("layer", index).entered();
        let stream = decoder(layer.compression, layer.reader).map_err(|e| Error::Layer {
            index,
            message: format!("cannot open {} stream: {e}", layer.compression.name()),
        })?;
        let counted = CountingReader {
            inner: stream,
            budget: budget.clone(),
        };
        let res = b.apply(Box::new(counted));
        if budget.exceeded.get() {
            return Err(Error::TooLarge {
                limit: opts.limits.max_total_bytes,
            });
        }
        match res {
            Ok(()) => {}
            Err(ApplyError::Read(e)) => {
                return Err(Error::Layer {
                    index,
                    message: format!(
                        "corrupt or truncated {} stream: {e}",
                        layer.compression.name()
                    ),
                });
            }
            Err(ApplyError::Other(e)) => return Err(e),
        }
    }
    let Builder {
        tree,
        writer,
        entries,
        ..
    } = b;
    let (_, image) = writer.finish(&tree)?;
    Ok(ConvertStats {
        entries,
        bytes_read: budget.used.get(),
        image,
    })
}

enum ApplyError {
    /// Reading or decoding the layer failed.
    Read(io::Error),
    /// Anything else (limits, bad entries, writing).
    Other(Error),
}

impl From<Error> for ApplyError {
    fn from(e: Error) -> Self {
        ApplyError::Other(e)
    }
}

struct Builder<W: io::Write + io::Seek> {
    tree: Tree,
    writer: SquashfsWriter<W>,
    entries: u64,
    limits: Limits,
    layer: usize,
    /// The layer that last set each (directory, name) entry.
    origin: BTreeMap<(InodeId, Vec<u8>), usize>,
}

const MAX_SYMLINK_HOPS: u32 = 40;

/// Splits an entry name into clean components (`.`, empty and leading `/`
/// dropped, `..` applied but never above the root).
fn normalize(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c.to_vec()),
        }
    }
    out
}

impl<W: io::Write + io::Seek> Builder<W> {
    fn apply(&mut self, stream: Box<dyn Read + '_>) -> Result<(), ApplyError> {
        let mut archive = tar::Archive::new(stream);
        let entries = archive.entries().map_err(ApplyError::Read)?;
        for entry in entries {
            let mut entry = entry.map_err(ApplyError::Read)?;
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(Error::TooManyEntries {
                    limit: self.limits.max_entries,
                }
                .into());
            }
            self.entry(&mut entry)?;
        }
        // Drain what follows the end-of-archive marker so that a truncated
        // or corrupt compressed trailer is noticed too.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(ApplyError::Read)?;
        Ok(())
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<(), ApplyError> {
        let raw = e.path_bytes().into_owned();
        let mut comps = normalize(&raw);
        let header = e.header().clone();
        let etype = header.entry_type();
        let mut mode = header.mode().unwrap_or(0o644) as u16 & 0o7777;
        let mut uid = header.uid().unwrap_or(0) as u32;
        let mut gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0).min(u32::MAX as u64) as u32;
        let mut xattrs = BTreeMap::new();
        if let Ok(Some(pax)) = e.pax_extensions() {
            for ext in pax.flatten() {
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.insert(name.to_vec(), ext.value_bytes().to_vec());
                } else if key == b"uid" {
                    uid = std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(uid);
                } else if key == b"gid" {
                    gid = std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(gid);
                }
            }
        }
        let Some(name) = comps.pop() else {
            // The root itself ("./"): take its metadata.
            if etype.is_dir() {
                let root = &mut self.tree.inodes[Tree::ROOT];
                (root.mode, root.uid, root.gid, root.mtime, root.xattrs) =
                    (mode, uid, gid, mtime, xattrs);
            }
            return Ok(());
        };
        // Whiteouts apply to lower layers only.
        if name == b".wh..wh..opq" {
            if let Some(dir) = self.lookup_dir(&comps)? {
                let layer = self.layer;
                let names: Vec<Vec<u8>> = self
                    .tree
                    .children(dir)
                    .map(|c| c.keys().cloned().collect())
                    .unwrap_or_default();
                for n in names {
                    let key = (dir, n);
                    if self.origin.get(&key).is_some_and(|&l| l < layer) {
                        self.origin.remove(&key);
                        self.tree.children_mut(dir).expect("dir").remove(&key.1);
                    }
                }
            }
            return Ok(());
        }
        if let Some(target) = name.strip_prefix(b".wh.") {
            if let Some(dir) = self.lookup_dir(&comps)? {
                let key = (dir, target.to_vec());
                if self.origin.get(&key).is_some_and(|&l| l < self.layer) {
                    self.origin.remove(&key);
                    self.tree.children_mut(dir).expect("dir").remove(&key.1);
                }
            }
            return Ok(());
        }
        let parent = self.ensure_dir(&comps, &raw)?;
        let existing = self
            .tree
            .children(parent)
            .and_then(|c| c.get(&name).copied());
        use tar::EntryType as T;
        let kind = match etype {
            T::Directory => {
                if let Some(id) = existing.filter(|&id| self.tree.children(id).is_some()) {
                    let n = &mut self.tree.inodes[id];
                    (n.mode, n.uid, n.gid, n.mtime, n.xattrs) = (mode, uid, gid, mtime, xattrs);
                    self.origin.insert((parent, name), self.layer);
                    return Ok(());
                }
                InodeKind::Dir(BTreeMap::new())
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let fd = self.writer.write_file(e).map_err(|err| match err {
                    DataError::Read(e) => ApplyError::Read(e),
                    DataError::Write(e) => ApplyError::Other(Error::Io(e)),
                })?;
                InodeKind::File(fd)
            }
            T::Symlink => {
                let target = e
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                if target.is_empty() {
                    return Err(bad_entry(&raw, "symlink without a target").into());
                }
                mode = 0o777;
                InodeKind::Symlink(target)
            }
            T::Link => {
                let target = e
                    .link_name_bytes()
                    .map(|c| c.into_owned())
                    .unwrap_or_default();
                let id = self
                    .lookup(&normalize(&target))?
                    .ok_or_else(|| bad_entry(&raw, "hard link to a missing file"))?;
                if self.tree.children(id).is_some() {
                    return Err(bad_entry(&raw, "hard link to a directory").into());
                }
                self.link(parent, name, id);
                return Ok(());
            }
            T::Char | T::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = encode_dev(major, minor);
                if etype == T::Char {
                    InodeKind::CharDev(dev)
                } else {
                    InodeKind::BlockDev(dev)
                }
            }
            T::Fifo => InodeKind::Fifo,
            other => {
                tracing::warn!(path = %String::from_utf8_lossy(&raw), kind = ?other, "tar entry of unsupported type skipped");
                return Ok(());
            }
        };
        let mut inode = Inode::new(kind, mode, uid, gid, mtime);
        inode.xattrs = xattrs;
        let id = self.tree.add(inode);
        self.link(parent, name, id);
        Ok(())
    }

    fn link(&mut self, parent: InodeId, name: Vec<u8>, id: InodeId) {
        self.tree
            .children_mut(parent)
            .expect("dir")
            .insert(name.clone(), id);
        self.origin.insert((parent, name), self.layer);
    }

    /// Follows `comps` from the root, following symlinks (inside the tree)
    /// for every component but the last. `None` when something is missing.
    fn lookup(&self, comps: &[Vec<u8>]) -> Result<Option<InodeId>, Error> {
        let Some((last, dirs)) = comps.split_last() else {
            return Ok(Some(Tree::ROOT));
        };
        let Some(dir) = self.lookup_dir(dirs)? else {
            return Ok(None);
        };
        Ok(self.tree.children(dir).and_then(|c| c.get(last).copied()))
    }

    /// Resolves `comps` to a directory, following symlinks inside the tree.
    fn lookup_dir(&self, comps: &[Vec<u8>]) -> Result<Option<InodeId>, Error> {
        let mut hops = 0;
        self.walk(vec![Tree::ROOT], comps, &mut hops)
            .map(|s| s.and_then(|s| s.last().copied()))
    }

    /// Walks components from a stack of directories (root first); returns
    /// the final stack, or `None` if a component is missing or not a
    /// directory.
    fn walk(
        &self,
        mut stack: Vec<InodeId>,
        comps: &[Vec<u8>],
        hops: &mut u32,
    ) -> Result<Option<Vec<InodeId>>, Error> {
        for c in comps {
            if c.as_slice() == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            if c.is_empty() || c.as_slice() == b"." {
                continue;
            }
            let dir = *stack.last().expect("stack");
            let Some(&child) = self.tree.children(dir).and_then(|m| m.get(c)) else {
                return Ok(None);
            };
            match &self.tree.inodes[child].kind {
                InodeKind::Dir(_) => stack.push(child),
                InodeKind::Symlink(target) => {
                    *hops += 1;
                    if *hops > MAX_SYMLINK_HOPS {
                        return Err(Error::InvalidEntry {
                            path: String::from_utf8_lossy(c).into_owned(),
                            reason: "too many levels of symbolic links".into(),
                        });
                    }
                    let start = if target.starts_with(b"/") {
                        vec![Tree::ROOT]
                    } else {
                        stack.clone()
                    };
                    let tcomps: Vec<Vec<u8>> =
                        target.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
                    match self.walk(start, &tcomps, hops)? {
                        Some(s) => stack = s,
                        None => return Ok(None),
                    }
                }
                _ => return Ok(None),
            }
        }
        Ok(Some(stack))
    }

    /// Finds or creates the directory `comps` (missing parents are created
    /// 0755 root:root; a non-directory in the way is replaced).
    fn ensure_dir(&mut self, comps: &[Vec<u8>], raw: &[u8]) -> Result<InodeId, Error> {
        let mut stack = vec![Tree::ROOT];
        for c in comps {
            let dir = *stack.last().expect("stack");
            let existing = self.tree.children(dir).and_then(|m| m.get(c).copied());
            match existing.map(|id| (id, &self.tree.inodes[id].kind)) {
                Some((id, InodeKind::Dir(_))) => stack.push(id),
                Some((_, InodeKind::Symlink(_))) => {
                    let mut hops = 0;
                    match self.walk(stack.clone(), std::slice::from_ref(c), &mut hops)? {
                        Some(s) => stack = s,
                        None => {
                            return Err(bad_entry(
                                raw,
                                "parent path goes through a symlink that leads to no directory inside the image",
                            ));
                        }
                    }
                }
                _ => {
                    let id =
                        self.tree
                            .add(Inode::new(InodeKind::Dir(BTreeMap::new()), 0o755, 0, 0, 0));
                    self.link(dir, c.clone(), id);
                    stack.push(id);
                }
            }
        }
        Ok(*stack.last().expect("stack"))
    }
}

fn bad_entry(raw: &[u8], reason: &str) -> Error {
    Error::InvalidEntry {
        path: String::from_utf8_lossy(raw).into_owned(),
        reason: reason.to_string(),
    }
}
