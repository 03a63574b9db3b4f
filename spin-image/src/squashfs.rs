//! A streaming squashfs 4.0 writer.
//!
//! File contents are compressed and written as they arrive (data blocks
//! right after the superblock, file tails packed into fragment blocks); the
//! directory tree is kept in memory as a [`Tree`] and written at the end
//! (inode table, directory table, fragment, id and xattr tables), after
//! which the superblock is filled in.
//!
//! Written from the squashfs format as documented by the Linux kernel
//! (`Documentation/filesystems/squashfs.rst`) and the format description of
//! squashfs-tools-ng; the tables are laid out in the order the kernel's
//! sanity checks expect.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

/// Metadata blocks hold at most this many uncompressed bytes.
const META_SIZE: usize = 8192;
/// Bit set in a metadata block header when the block is stored uncompressed.
const META_UNCOMPRESSED: u16 = 0x8000;
/// Bit set in a data block size when the block is stored uncompressed.
const DATA_UNCOMPRESSED: u32 = 1 << 24;
const NO_FRAGMENT: u32 = 0xffff_ffff;
const INVALID_TABLE: u64 = 0xffff_ffff_ffff_ffff;
const SUPERBLOCK_SIZE: u64 = 96;
const FLAG_NO_XATTRS: u16 = 0x0200;

/// The compressor used for data and metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// zlib streams (squashfs' "gzip"), with a level 1–9.
    Gzip(u32),
    /// zstd frames, with a level 1–22.
    Zstd(i32),
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Zstd(3)
    }
}

impl Compression {
    fn id(self) -> u16 {
        match self {
            Compression::Gzip(_) => 1,
            Compression::Zstd(_) => 6,
        }
    }
}

/// A reusable compression context.
struct Codec {
    kind: Compression,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    scratch: Vec<u8>,
}

impl Codec {
    fn new(kind: Compression) -> io::Result<Codec> {
        let zstd = match kind {
            Compression::Zstd(level) => Some(zstd::bulk::Compressor::new(level)?),
            Compression::Gzip(_) => None,
        };
        Ok(Codec {
            kind,
            zstd,
            scratch: Vec::new(),
        })
    }

    /// Compresses `input`; returns `None` when compression does not pay.
    fn compress(&mut self, input: &[u8]) -> io::Result<Option<&[u8]>> {
        self.scratch.clear();
        match self.kind {
            Compression::Gzip(level) => {
                let mut enc = flate2::write::ZlibEncoder::new(
                    std::mem::take(&mut self.scratch),
                    flate2::Compression::new(level),
                );
                enc.write_all(input)?;
                self.scratch = enc.finish()?;
            }
            Compression::Zstd(_) => {
                let c = self.zstd.as_mut().expect("zstd context");
                self.scratch
                    .reserve(zstd::zstd_safe::compress_bound(input.len()));
                c.compress_to_buffer(input, &mut self.scratch)?;
            }
        }
        Ok((self.scratch.len() < input.len()).then_some(&self.scratch[..]))
    }
}

/// Index of an inode in a [`Tree`].
pub type InodeId = usize;

/// Marks an all-zero (sparse) block in [`FileData::blocks`].
pub const SPARSE_BLOCK: u64 = u64::MAX;

/// Where a regular file's data lives in the image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileData {
    /// File size in bytes.
    pub size: u64,
    /// The data-stream sequence number of each full block
    /// ([`SPARSE_BLOCK`] for an all-zero one); offsets and sizes are known
    /// once the compression workers are done, when the image is finished.
    pub blocks: Vec<u64>,
    /// Fragment index and offset of the tail, if any.
    pub fragment: Option<(u32, u32)>,
    /// Bytes in sparse (all-zero) blocks.
    pub sparse: u64,
}

/// What an inode is.
#[derive(Clone, Debug)]
pub enum InodeKind {
    /// A directory: names (sorted) to inodes.
    Dir(BTreeMap<Vec<u8>, InodeId>),
    /// A regular file.
    File(FileData),
    /// A symbolic link and its target.
    Symlink(Vec<u8>),
    /// A block device (Linux `new_encode_dev` number).
    BlockDev(u32),
    /// A character device (Linux `new_encode_dev` number).
    CharDev(u32),
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
}

/// An inode: kind plus metadata.
#[derive(Clone, Debug)]
pub struct Inode {
    /// What it is.
    pub kind: InodeKind,
    /// Permission bits (`0o7777`).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds since the epoch).
    pub mtime: u32,
    /// Extended attributes, full names (`user.x`, `security.capability`).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Inode {
    /// A new inode with no xattrs.
    pub fn new(kind: InodeKind, mode: u16, uid: u32, gid: u32, mtime: u32) -> Inode {
        Inode {
            kind,
            mode: mode & 0o7777,
            uid,
            gid,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }
}

/// Encodes a device number the way Linux's `new_encode_dev` does.
pub fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

/// An in-memory directory tree; inode 0 is the root directory.
///
/// Inodes unreachable from the root (removed by whiteouts) are simply not
/// written. Several directory entries may name the same non-directory inode
/// (hard links).
#[derive(Clone, Debug)]
pub struct Tree {
    /// All inodes, reachable or not.
    pub inodes: Vec<Inode>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            inodes: vec![Inode::new(InodeKind::Dir(BTreeMap::new()), 0o755, 0, 0, 0)],
        }
    }
}

impl Tree {
    /// The root directory's id.
    pub const ROOT: InodeId = 0;

    /// Adds an inode, returning its id.
    pub fn add(&mut self, inode: Inode) -> InodeId {
        self.inodes.push(inode);
        self.inodes.len() - 1
    }

    /// The children of a directory (`None` for a non-directory).
    pub fn children(&self, id: InodeId) -> Option<&BTreeMap<Vec<u8>, InodeId>> {
        match &self.inodes[id].kind {
            InodeKind::Dir(c) => Some(c),
            _ => None,
        }
    }

    /// The children of a directory, mutably.
    pub fn children_mut(&mut self, id: InodeId) -> Option<&mut BTreeMap<Vec<u8>, InodeId>> {
        match &mut self.inodes[id].kind {
            InodeKind::Dir(c) => Some(c),
            _ => None,
        }
    }
}

/// Writes metadata blocks (inodes, directories, tables).
struct MetaWriter {
    out: Vec<u8>,
    cur: Vec<u8>,
    block_starts: Vec<u64>,
}

impl MetaWriter {
    fn new() -> MetaWriter {
        MetaWriter {
            out: Vec::new(),
            cur: Vec::with_capacity(META_SIZE),
            block_starts: Vec::new(),
        }
    }

    /// (start of the current block within this table, offset inside it).
    fn position(&self) -> (u64, u16) {
        (self.out.len() as u64, self.cur.len() as u16)
    }

    fn write(&mut self, codec: &mut Codec, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = (META_SIZE - self.cur.len()).min(bytes.len());
            self.cur.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.cur.len() == META_SIZE {
                self.flush(codec)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, codec: &mut Codec) -> io::Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        self.block_starts.push(self.out.len() as u64);
        match codec.compress(&self.cur)? {
            Some(c) => {
                self.out.extend_from_slice(&(c.len() as u16).to_le_bytes());
                self.out.extend_from_slice(c);
            }
            None => {
                self.out
                    .extend_from_slice(&(self.cur.len() as u16 | META_UNCOMPRESSED).to_le_bytes());
                self.out.extend_from_slice(&self.cur);
            }
        }
        self.cur.clear();
        Ok(())
    }

    fn finish(mut self, codec: &mut Codec) -> io::Result<(Vec<u8>, Vec<u64>)> {
        self.flush(codec)?;
        Ok((self.out, self.block_starts))
    }
}

/// Counts of what was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImageStats {
    /// Inodes written.
    pub inodes: u32,
    /// Fragment blocks written.
    pub fragments: u32,
    /// Bytes of the image (`bytes_used`, before padding).
    pub bytes_used: u64,
}

/// The error of reading a file's contents while writing it.
#[derive(Debug)]
pub enum DataError {
    /// Reading the source failed.
    Read(io::Error),
    /// Writing the image failed.
    Write(io::Error),
}

type BlockResult = (u64, io::Result<(Vec<u8>, u32)>);

/// Data blocks compressed by worker threads and written in order.
struct Pipeline {
    jobs: Option<mpsc::SyncSender<(u64, Vec<u8>)>>,
    results: mpsc::Receiver<BlockResult>,
    workers: Vec<thread::JoinHandle<()>>,
    submitted: u64,
    next: u64,
    ready: BTreeMap<u64, (Vec<u8>, u32)>,
    /// (offset, size word) of each block, by sequence number.
    placed: Vec<(u64, u32)>,
}

impl Pipeline {
    fn new(kind: Compression, threads: usize) -> io::Result<Pipeline> {
        let threads = threads.max(1);
        let (jtx, jrx) = mpsc::sync_channel::<(u64, Vec<u8>)>(threads * 2);
        let (rtx, rrx) = mpsc::channel::<BlockResult>();
        let jrx = Arc::new(Mutex::new(jrx));
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let jrx = jrx.clone();
            let rtx = rtx.clone();
            let mut codec = Codec::new(kind)?;
            workers.push(thread::spawn(move || {
                loop {
                    let job = jrx
                        .lock()
                        .map_err(|_| ())
                        .and_then(|r| r.recv().map_err(|_| ()));
                    let Ok((seq, data)) = job else { break };
                    let res = match codec.compress(&data) {
                        Ok(Some(c)) => Ok((c.to_vec(), c.len() as u32)),
                        Ok(None) => {
                            let n = data.len() as u32;
                            Ok((data, n | DATA_UNCOMPRESSED))
                        }
                        Err(e) => Err(e),
                    };
                    if rtx.send((seq, res)).is_err() {
                        break;
                    }
                }
            }));
        }
        Ok(Pipeline {
            jobs: Some(jtx),
            results: rrx,
            workers,
            submitted: 0,
            next: 0,
            ready: BTreeMap::new(),
            placed: Vec::new(),
        })
    }
}

/// A squashfs image being written.
pub struct SquashfsWriter<W: Write + Seek> {
    out: W,
    pos: u64,
    block_size: u32,
    codec: Codec,
    pipe: Pipeline,
    frag_buf: Vec<u8>,
    /// Sequence number of each fragment block.
    fragments: Vec<u64>,
    block: Vec<u8>,
}

impl<W: Write + Seek> SquashfsWriter<W> {
    /// Starts an image in `out` (which must be empty and positioned at 0).
    /// `block_size` must be a power of two between 4 KiB and 1 MiB.
    /// Data blocks are compressed by `threads` worker threads (at least one).
    pub fn new(
        mut out: W,
        block_size: u32,
        compression: Compression,
        threads: usize,
    ) -> io::Result<Self> {
        if !block_size.is_power_of_two() || !(4096..=1 << 20).contains(&block_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad squashfs block size",
            ));
        }
        out.write_all(&[0u8; SUPERBLOCK_SIZE as usize])?;
        Ok(SquashfsWriter {
            out,
            pos: SUPERBLOCK_SIZE,
            block_size,
            codec: Codec::new(compression)?,
            pipe: Pipeline::new(compression, threads)?,
            frag_buf: Vec::new(),
            fragments: Vec::new(),
            block: vec![0; block_size as usize],
        })
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Queues a block for compression; returns its sequence number.
    fn submit(&mut self, data: Vec<u8>) -> io::Result<u64> {
        let seq = self.pipe.submitted;
        self.pipe.submitted += 1;
        let mut job = (seq, data);
        loop {
            let jobs = self.pipe.jobs.as_ref().expect("pipeline open");
            match jobs.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(j)) => {
                    job = j;
                    self.drain(true)?;
                }
                Err(TrySendError::Disconnected(_)) => {
                    return Err(io::Error::other("compression workers stopped"));
                }
            }
        }
        self.drain(false)?;
        Ok(seq)
    }

    /// Collects compressed blocks (waiting for one if `wait`) and writes
    /// those that are next in order.
    fn drain(&mut self, wait: bool) -> io::Result<()> {
        let mut wait = wait;
        loop {
            let got = if wait {
                wait = false;
                self.pipe
                    .results
                    .recv()
                    .map_err(|_| io::Error::other("compression workers stopped"))?
            } else {
                match self.pipe.results.try_recv() {
                    Ok(r) => r,
                    Err(_) => break,
                }
            };
            let (seq, res) = got;
            self.pipe.ready.insert(seq, res?);
        }
        while let Some((bytes, word)) = self.pipe.ready.remove(&self.pipe.next) {
            let offset = self.pos;
            self.emit(&bytes)?;
            self.pipe.placed.push((offset, word));
            self.pipe.next += 1;
        }
        Ok(())
    }

    fn flush_fragment(&mut self) -> io::Result<()> {
        if self.frag_buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.frag_buf);
        let seq = self.submit(data)?;
        self.fragments.push(seq);
        Ok(())
    }

    /// Streams a regular file's contents (read to EOF) into the image.
    pub fn write_file(&mut self, src: &mut dyn Read) -> Result<FileData, DataError> {
        let bs = self.block_size as usize;
        let mut fd = FileData::default();
        loop {
            let mut filled = 0;
            while filled < bs {
                match src.read(&mut self.block[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(DataError::Read(e)),
                }
            }
            fd.size += filled as u64;
            if filled == bs {
                if self.block.iter().all(|&b| b == 0) {
                    fd.blocks.push(SPARSE_BLOCK);
                    fd.sparse += bs as u64;
                } else {
                    let data = std::mem::replace(&mut self.block, vec![0; bs]);
                    let seq = self.submit(data).map_err(DataError::Write)?;
                    fd.blocks.push(seq);
                }
                continue;
            }
            if filled > 0 {
                if self.frag_buf.len() + filled > bs {
                    self.flush_fragment().map_err(DataError::Write)?;
                }
                let offset = self.frag_buf.len() as u32;
                self.frag_buf.extend_from_slice(&self.block[..filled]);
                fd.fragment = Some((self.fragments.len() as u32, offset));
            }
            return Ok(fd);
        }
    }

    /// Writes the tree and all tables, then the superblock. Returns counts.
    pub fn finish(mut self, tree: &Tree) -> io::Result<(W, ImageStats)> {
        self.flush_fragment()?;
        self.pipe.jobs = None;
        while self.pipe.next < self.pipe.submitted {
            self.drain(true)?;
        }
        for w in self.pipe.workers.drain(..) {
            let _ = w.join();
        }
        let placed = std::mem::take(&mut self.pipe.placed);
        let layout = Layout::plan(tree);
        let mut ids = IdTable::default();
        let mut xattrs = XattrTable::default();
        let mut inodes = MetaWriter::new();
        let mut dirs = MetaWriter::new();
        let mut refs: Vec<Option<u64>> = vec![None; tree.inodes.len()];
        let mut max_mtime = 0u32;
        // Post-order: write every child before its directory, in the order
        // the numbering pass used.
        for &id in &layout.order {
            let node = &tree.inodes[id];
            max_mtime = max_mtime.max(node.mtime);
            let ino = layout.ino[id];
            let uid_idx = ids.index(node.uid)?;
            let gid_idx = ids.index(node.gid)?;
            let xattr_idx = xattrs.index(&node.xattrs, &mut self.codec)?;
            let nlink = layout.nlink[id];
            let mut buf = Vec::with_capacity(64);
            let base_type: u16 = match &node.kind {
                InodeKind::Dir(_) => 1,
                InodeKind::File(_) => 2,
                InodeKind::Symlink(_) => 3,
                InodeKind::BlockDev(_) => 4,
                InodeKind::CharDev(_) => 5,
                InodeKind::Fifo => 6,
                InodeKind::Socket => 7,
            };
            let header = |buf: &mut Vec<u8>, t: u16| {
                buf.extend_from_slice(&t.to_le_bytes());
                buf.extend_from_slice(&node.mode.to_le_bytes());
                buf.extend_from_slice(&uid_idx.to_le_bytes());
                buf.extend_from_slice(&gid_idx.to_le_bytes());
                buf.extend_from_slice(&node.mtime.to_le_bytes());
                buf.extend_from_slice(&ino.to_le_bytes());
            };
            let put32 = |buf: &mut Vec<u8>, v: u32| buf.extend_from_slice(&v.to_le_bytes());
            match &node.kind {
                InodeKind::Dir(children) => {
                    let (block, offset) = dirs.position();
                    let listing = build_listing(children, &refs, &layout.ino, tree);
                    dirs.write(&mut self.codec, &listing)?;
                    let file_size = listing.len() as u64 + 3;
                    let subdirs = children
                        .values()
                        .filter(|&&c| matches!(tree.inodes[c].kind, InodeKind::Dir(_)))
                        .count() as u32;
                    let parent = layout.parent_ino[id];
                    if file_size <= u16::MAX as u64 && xattr_idx == NO_FRAGMENT {
                        header(&mut buf, 1);
                        put32(&mut buf, block as u32);
                        put32(&mut buf, 2 + subdirs);
                        buf.extend_from_slice(&(file_size as u16).to_le_bytes());
                        buf.extend_from_slice(&offset.to_le_bytes());
                        put32(&mut buf, parent);
                    } else {
                        header(&mut buf, 8);
                        put32(&mut buf, 2 + subdirs);
                        put32(&mut buf, file_size as u32);
                        put32(&mut buf, block as u32);
                        put32(&mut buf, parent);
                        buf.extend_from_slice(&0u16.to_le_bytes());
                        buf.extend_from_slice(&offset.to_le_bytes());
                        put32(&mut buf, xattr_idx);
                    }
                }
                InodeKind::File(fd) => {
                    let (frag, frag_off) = fd.fragment.unwrap_or((NO_FRAGMENT, 0));
                    let start = fd
                        .blocks
                        .iter()
                        .find(|&&b| b != SPARSE_BLOCK)
                        .map(|&b| placed[b as usize].0)
                        .unwrap_or(0);
                    let words = fd.blocks.iter().map(|&b| {
                        if b == SPARSE_BLOCK {
                            0
                        } else {
                            placed[b as usize].1
                        }
                    });
                    let basic = nlink == 1
                        && xattr_idx == NO_FRAGMENT
                        && start <= u32::MAX as u64
                        && fd.size <= u32::MAX as u64;
                    if basic {
                        header(&mut buf, 2);
                        put32(&mut buf, start as u32);
                        put32(&mut buf, frag);
                        put32(&mut buf, frag_off);
                        put32(&mut buf, fd.size as u32);
                    } else {
                        header(&mut buf, 9);
                        buf.extend_from_slice(&start.to_le_bytes());
                        buf.extend_from_slice(&fd.size.to_le_bytes());
                        buf.extend_from_slice(&fd.sparse.to_le_bytes());
                        put32(&mut buf, nlink);
                        put32(&mut buf, frag);
                        put32(&mut buf, frag_off);
                        put32(&mut buf, xattr_idx);
                    }
                    for w in words {
                        put32(&mut buf, w);
                    }
                }
                InodeKind::Symlink(target) => {
                    let ext = xattr_idx != NO_FRAGMENT;
                    header(&mut buf, if ext { 10 } else { 3 });
                    put32(&mut buf, nlink);
                    put32(&mut buf, target.len() as u32);
                    buf.extend_from_slice(target);
                    if ext {
                        put32(&mut buf, xattr_idx);
                    }
                }
                InodeKind::BlockDev(dev) | InodeKind::CharDev(dev) => {
                    let ext = xattr_idx != NO_FRAGMENT;
                    header(&mut buf, if ext { base_type + 7 } else { base_type });
                    put32(&mut buf, nlink);
                    put32(&mut buf, *dev);
                    if ext {
                        put32(&mut buf, xattr_idx);
                    }
                }
                InodeKind::Fifo | InodeKind::Socket => {
                    let ext = xattr_idx != NO_FRAGMENT;
                    header(&mut buf, if ext { base_type + 7 } else { base_type });
                    put32(&mut buf, nlink);
                    if ext {
                        put32(&mut buf, xattr_idx);
                    }
                }
            }
            let (block, offset) = inodes.position();
            refs[id] = Some((block << 16) | offset as u64);
            inodes.write(&mut self.codec, &buf)?;
        }
        let root_ref = refs[Tree::ROOT].expect("root written");
        let inode_count = layout.order.len() as u32;

        let (inode_bytes, _) = inodes.finish(&mut self.codec)?;
        let inode_table_start = self.pos;
        self.emit(&inode_bytes)?;
        let (dir_bytes, _) = dirs.finish(&mut self.codec)?;
        let directory_table_start = self.pos;
        self.emit(&dir_bytes)?;

        // Fragment table: entries in metadata blocks, then their index.
        let mut frag_meta = MetaWriter::new();
        for &seq in &self.fragments {
            let (start, word) = placed[seq as usize];
            let mut e = [0u8; 16];
            e[..8].copy_from_slice(&start.to_le_bytes());
            e[8..12].copy_from_slice(&word.to_le_bytes());
            frag_meta.write(&mut self.codec, &e)?;
        }
        let fragment_table_start = self.write_table(frag_meta)?;

        // Id table.
        let mut id_meta = MetaWriter::new();
        for id in &ids.ids {
            id_meta.write(&mut self.codec, &id.to_le_bytes())?;
        }
        let id_table_start = self.write_table(id_meta)?;

        // Xattr tables: key/value pairs, id entries, then the id index.
        let xattr_id_table_start = if xattrs.entries.is_empty() {
            INVALID_TABLE
        } else {
            let XattrTable { kv, entries, .. } = xattrs;
            let (kv_bytes, _) = kv.finish(&mut self.codec)?;
            let kv_start = self.pos;
            self.emit(&kv_bytes)?;
            let mut id_meta = MetaWriter::new();
            for (r, count, size) in &entries {
                let mut e = [0u8; 16];
                e[..8].copy_from_slice(&r.to_le_bytes());
                e[8..12].copy_from_slice(&count.to_le_bytes());
                e[12..].copy_from_slice(&size.to_le_bytes());
                id_meta.write(&mut self.codec, &e)?;
            }
            let (meta_bytes, starts) = id_meta.finish(&mut self.codec)?;
            let meta_start = self.pos;
            self.emit(&meta_bytes)?;
            let table_start = self.pos;
            let mut hdr = Vec::new();
            hdr.extend_from_slice(&kv_start.to_le_bytes());
            hdr.extend_from_slice(&(entries.len() as u32).to_le_bytes());
            hdr.extend_from_slice(&0u32.to_le_bytes());
            for s in starts {
                hdr.extend_from_slice(&(meta_start + s).to_le_bytes());
            }
            self.emit(&hdr)?;
            table_start
        };
        let bytes_used = self.pos;
        let pad = (4096 - (bytes_used % 4096)) % 4096;
        self.emit(&vec![0u8; pad as usize])?;

        let mut sb = Vec::with_capacity(SUPERBLOCK_SIZE as usize);
        sb.extend_from_slice(&0x7371_7368u32.to_le_bytes());
        sb.extend_from_slice(&inode_count.to_le_bytes());
        sb.extend_from_slice(&max_mtime.to_le_bytes());
        sb.extend_from_slice(&self.block_size.to_le_bytes());
        sb.extend_from_slice(&(self.fragments.len() as u32).to_le_bytes());
        sb.extend_from_slice(&self.codec.kind.id().to_le_bytes());
        sb.extend_from_slice(&(self.block_size.trailing_zeros() as u16).to_le_bytes());
        let flags = if xattr_id_table_start == INVALID_TABLE {
            FLAG_NO_XATTRS
        } else {
            0
        };
        sb.extend_from_slice(&flags.to_le_bytes());
        sb.extend_from_slice(&(ids.ids.len() as u16).to_le_bytes());
        sb.extend_from_slice(&4u16.to_le_bytes());
        sb.extend_from_slice(&0u16.to_le_bytes());
        for v in [
            root_ref,
            bytes_used,
            id_table_start,
            xattr_id_table_start,
            inode_table_start,
            directory_table_start,
            fragment_table_start,
            INVALID_TABLE,
        ] {
            sb.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(sb.len() as u64, SUPERBLOCK_SIZE);
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&sb)?;
        self.out.seek(SeekFrom::End(0))?;
        self.out.flush()?;
        let stats = ImageStats {
            inodes: inode_count,
            fragments: self.fragments.len() as u32,
            bytes_used,
        };
        Ok((self.out, stats))
    }

    /// Writes a table's metadata blocks followed by the index of their
    /// absolute positions; returns the index's position.
    fn write_table(&mut self, meta: MetaWriter) -> io::Result<u64> {
        let (bytes, starts) = meta.finish(&mut self.codec)?;
        let base = self.pos;
        self.emit(&bytes)?;
        let index_start = self.pos;
        let mut idx = Vec::with_capacity(starts.len() * 8);
        for s in starts {
            idx.extend_from_slice(&(base + s).to_le_bytes());
        }
        self.emit(&idx)?;
        Ok(index_start)
    }
}

/// Builds a directory's listing (headers + entries) from its children's
/// already-written inode references.
fn build_listing(
    children: &BTreeMap<Vec<u8>, InodeId>,
    refs: &[Option<u64>],
    ino: &[u32],
    tree: &Tree,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut run: Vec<(&[u8], InodeId)> = Vec::new();
    let flush = |run: &mut Vec<(&[u8], InodeId)>, out: &mut Vec<u8>| {
        if run.is_empty() {
            return;
        }
        let first = run[0].1;
        let start = refs[first].expect("child written") >> 16;
        let base = ino[first];
        out.extend_from_slice(&(run.len() as u32 - 1).to_le_bytes());
        out.extend_from_slice(&(start as u32).to_le_bytes());
        out.extend_from_slice(&base.to_le_bytes());
        for &(name, id) in run.iter() {
            let r = refs[id].expect("child written");
            let t: u16 = match tree.inodes[id].kind {
                InodeKind::Dir(_) => 1,
                InodeKind::File(_) => 2,
                InodeKind::Symlink(_) => 3,
                InodeKind::BlockDev(_) => 4,
                InodeKind::CharDev(_) => 5,
                InodeKind::Fifo => 6,
                InodeKind::Socket => 7,
            };
            out.extend_from_slice(&((r & 0xffff) as u16).to_le_bytes());
            out.extend_from_slice(&((ino[id] as i64 - base as i64) as i16).to_le_bytes());
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&(name.len() as u16 - 1).to_le_bytes());
            out.extend_from_slice(name);
        }
        run.clear();
    };
    for (name, &id) in children {
        if let Some(&(_, first)) = run.first() {
            let same_block = refs[first].map(|r| r >> 16) == refs[id].map(|r| r >> 16);
            let diff = ino[id] as i64 - ino[first] as i64;
            if run.len() == 256 || !same_block || !(-32768..=32767).contains(&diff) {
                flush(&mut run, &mut out);
            }
        }
        run.push((name, id));
    }
    flush(&mut run, &mut out);
    out
}

/// Inode numbering and write order.
struct Layout {
    /// Inode ids in write order (post-order; each inode once).
    order: Vec<InodeId>,
    /// Inode number per id (0 = unreachable).
    ino: Vec<u32>,
    /// Parent directory's inode number per directory id.
    parent_ino: Vec<u32>,
    /// Link count per id (non-directories).
    nlink: Vec<u32>,
}

impl Layout {
    fn plan(tree: &Tree) -> Layout {
        let n = tree.inodes.len();
        let mut l = Layout {
            order: Vec::new(),
            ino: vec![0; n],
            parent_ino: vec![0; n],
            nlink: vec![0; n],
        };
        let mut parent_of: Vec<InodeId> = vec![usize::MAX; n];
        // Iterative post-order walk.
        enum Step {
            Enter(InodeId),
            Leave(InodeId),
        }
        let mut stack = vec![Step::Enter(Tree::ROOT)];
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter(dir) => {
                    stack.push(Step::Leave(dir));
                    let children = tree.children(dir).expect("dir");
                    // Push in reverse so that children are visited in name order.
                    for &c in children.values().rev() {
                        l.nlink[c] += 1;
                        if tree.children(c).is_some() {
                            parent_of[c] = dir;
                            stack.push(Step::Enter(c));
                        } else {
                            stack.push(Step::Leave(c));
                        }
                    }
                }
                Step::Leave(id) => {
                    if l.ino[id] != 0 {
                        continue; // a hard link already written
                    }
                    l.order.push(id);
                    l.ino[id] = l.order.len() as u32;
                }
            }
        }
        let count = l.order.len() as u32;
        for &id in &l.order {
            if tree.children(id).is_some() {
                l.parent_ino[id] = if id == Tree::ROOT {
                    count + 1
                } else {
                    l.ino[parent_of[id]]
                };
            }
        }
        l
    }
}

#[derive(Default)]
struct IdTable {
    ids: Vec<u32>,
    map: HashMap<u32, u16>,
}

impl IdTable {
    fn index(&mut self, id: u32) -> io::Result<u16> {
        if let Some(&i) = self.map.get(&id) {
            return Ok(i);
        }
        if self.ids.len() >= u16::MAX as usize {
            return Err(io::Error::other("more than 65535 distinct uids/gids"));
        }
        let i = self.ids.len() as u16;
        self.ids.push(id);
        self.map.insert(id, i);
        Ok(i)
    }
}

/// A set of xattrs, as a map key.
type XattrSet = Vec<(Vec<u8>, Vec<u8>)>;

struct XattrTable {
    kv: MetaWriter,
    /// (reference, count, size) per distinct set.
    entries: Vec<(u64, u32, u32)>,
    map: HashMap<XattrSet, u32>,
}

impl Default for XattrTable {
    fn default() -> Self {
        XattrTable {
            kv: MetaWriter::new(),
            entries: Vec::new(),
            map: HashMap::new(),
        }
    }
}

impl XattrTable {
    /// The xattr index of a set, `0xffffffff` for none.
    fn index(&mut self, set: &BTreeMap<Vec<u8>, Vec<u8>>, codec: &mut Codec) -> io::Result<u32> {
        let pairs: Vec<(u16, &[u8], &[u8])> = set
            .iter()
            .filter_map(|(k, v)| {
                let (t, rest) = if let Some(r) = k.strip_prefix(b"user.") {
                    (0, r)
                } else if let Some(r) = k.strip_prefix(b"trusted.") {
                    (1, r)
                } else if let Some(r) = k.strip_prefix(b"security.") {
                    (2, r)
                } else {
                    tracing::warn!(name = %String::from_utf8_lossy(k), "xattr namespace not supported by squashfs, dropped");
                    return None;
                };
                Some((t, rest, v.as_slice()))
            })
            .collect();
        if pairs.is_empty() {
            return Ok(NO_FRAGMENT);
        }
        let key: XattrSet = set.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(&i) = self.map.get(&key) {
            return Ok(i);
        }
        let (block, offset) = self.kv.position();
        let mut buf = Vec::new();
        for (t, name, value) in &pairs {
            buf.extend_from_slice(&t.to_le_bytes());
            buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
            buf.extend_from_slice(name);
            buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
            buf.extend_from_slice(value);
        }
        self.kv.write(codec, &buf)?;
        let i = self.entries.len() as u32;
        self.entries.push((
            (block << 16) | offset as u64,
            pairs.len() as u32,
            buf.len() as u32,
        ));
        self.map.insert(key, i);
        Ok(i)
    }
}
