//! A block backend on a host file (used natively and, through WASI, in wasm).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use super::BlockBackend;

/// A disk image in a file. Read-only disks never write to the file.
#[derive(Debug)]
pub struct FileBackend {
    file: File,
    len: u64,
    read_only: bool,
}

impl FileBackend {
    /// A backend on `file`, whose current size is the disk's size.
    pub fn new(file: File, read_only: bool) -> io::Result<FileBackend> {
        let len = file.metadata()?.len();
        Ok(FileBackend {
            file,
            len,
            read_only,
        })
    }
}

impl BlockBackend for FileBackend {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        // Seek + read rather than positioned reads: the same code serves WASI.
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(buf)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only disk",
            ));
        }
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses_writes_when_read_only() {
        let mut f = tempfile_with(b"0123456789");
        let mut b = FileBackend::new(f.try_clone().unwrap(), true).unwrap();
        assert_eq!(b.len(), 10);
        let mut buf = [0u8; 4];
        b.read_at(3, &mut buf).unwrap();
        assert_eq!(&buf, b"3456");
        assert!(
            b.read_at(8, &mut buf).is_err(),
            "reading past the end fails"
        );
        assert!(b.write_at(0, b"x").is_err());
        let mut all = String::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut all).unwrap();
        assert_eq!(all, "0123456789");
    }

    fn tempfile_with(data: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!("spin-virtio-file-{}", std::process::id()));
        std::fs::write(&path, data).unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
