//! Offline images: OCI image layout directories and `docker save` archives
//! in, OCI layout out. Blobs go to and come from a caller-supplied store
//! ([`BlobSink`]), so this module stays store-agnostic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::convert::LayerCompression;
use crate::oci::{Descriptor, Digest, Index, Manifest, REF_NAME_ANNOTATION, media_type};

/// Where imported blobs go.
pub trait BlobSink {
    /// Stores the blob read from `reader`, checking it against `expected`
    /// when given; returns its digest and size.
    fn put_blob(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), Error>;
}

/// An image found in an offline input: its name (if the input gives one)
/// and the descriptor of its manifest or index, whose blobs are now in the
/// sink.
#[derive(Clone, Debug)]
pub struct ImportedRef {
    /// `org.opencontainers.image.ref.name`, or a `RepoTags` entry.
    pub name: Option<String>,
    /// The manifest or index.
    pub descriptor: Descriptor,
}

fn json<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}

/// Imports every blob and reference of an OCI image layout directory.
pub fn import_oci_layout(dir: &Path, sink: &mut dyn BlobSink) -> Result<Vec<ImportedRef>, Error> {
    let layout = fs::read(dir.join("oci-layout")).map_err(|e| {
        Error::InvalidArchive(format!(
            "{}: not an OCI layout (oci-layout: {e})",
            dir.display()
        ))
    })?;
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Layout {
        image_layout_version: String,
    }
    let l: Layout = json(&layout, "oci-layout")?;
    if !l.image_layout_version.starts_with("1.") {
        return Err(Error::InvalidArchive(format!(
            "unsupported layout version {}",
            l.image_layout_version
        )));
    }
    let index: Index = json(&fs::read(dir.join("index.json"))?, "index.json")?;
    // Copy every blob reachable from the index.
    let mut todo: Vec<Descriptor> = index.manifests.clone();
    let mut seen = HashSet::new();
    while let Some(d) = todo.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        let path = dir
            .join("blobs")
            .join(d.digest.algorithm())
            .join(d.digest.hex());
        let mut f = File::open(&path)
            .map_err(|e| Error::InvalidArchive(format!("missing blob {} ({e})", d.digest)))?;
        if media_type::is_manifest(&d.media_type) || media_type::is_index(&d.media_type) {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes)?;
            sink.put_blob(&mut &bytes[..], Some(&d.digest))?;
            if media_type::is_index(&d.media_type) {
                let i: Index = json(&bytes, "index")?;
                todo.extend(i.manifests);
            } else {
                let m: Manifest = json(&bytes, "manifest")?;
                todo.push(m.config);
                todo.extend(m.layers);
            }
        } else {
            sink.put_blob(&mut f, Some(&d.digest))?;
        }
    }
    Ok(index
        .manifests
        .into_iter()
        .map(|d| ImportedRef {
            name: d
                .annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME_ANNOTATION).cloned()),
            descriptor: d,
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn clean(name: &Path) -> String {
    name.to_string_lossy().trim_start_matches("./").to_string()
}

/// Imports a `docker save` archive: its layers and configs become blobs, and
/// an OCI manifest is made for each image in its `manifest.json`.
pub fn import_docker_archive(
    path: &Path,
    sink: &mut dyn BlobSink,
) -> Result<Vec<ImportedRef>, Error> {
    // Pass 1: manifest.json.
    let mut entries: Option<Vec<DockerEntry>> = None;
    let mut ar = tar::Archive::new(File::open(path)?);
    for e in ar.entries()? {
        let mut e = e?;
        if clean(&e.path()?) == "manifest.json" {
            let mut b = Vec::new();
            e.read_to_end(&mut b)?;
            entries = Some(json(&b, "manifest.json")?);
            break;
        }
    }
    let entries = entries.ok_or_else(|| {
        Error::InvalidArchive(format!(
            "{}: no manifest.json (not a docker save archive)",
            path.display()
        ))
    })?;
    let wanted: HashSet<String> = entries
        .iter()
        .flat_map(|e| e.layers.iter().cloned().chain([e.config.clone()]))
        .collect();
    // Pass 2: store the wanted files.
    let mut stored: HashMap<String, (Digest, u64, LayerCompression)> = HashMap::new();
    let mut ar = tar::Archive::new(File::open(path)?);
    for e in ar.entries()? {
        let mut e = e?;
        let name = clean(&e.path()?);
        if !wanted.contains(&name) || stored.contains_key(&name) {
            continue;
        }
        // Follow a symlinked layer (older docker saves link duplicates).
        if e.header().entry_type() == tar::EntryType::Symlink {
            continue;
        }
        let mut head = [0u8; 4];
        let mut n = 0;
        while n < 4 {
            let k = e.read(&mut head[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        let compression = LayerCompression::sniff(&head[..n]);
        let mut chained = (&head[..n]).chain(&mut e);
        let (digest, size) = sink.put_blob(&mut chained, None)?;
        stored.insert(name, (digest, size, compression));
    }
    let mut out = Vec::new();
    for entry in entries {
        let get = |n: &String| {
            stored.get(n).cloned().ok_or_else(|| {
                Error::InvalidArchive(format!("{n} listed in manifest.json but missing"))
            })
        };
        let (cd, cs, _) = get(&entry.config)?;
        let mut layers = Vec::new();
        for l in &entry.layers {
            let (d, s, c) = get(l)?;
            layers.push(descriptor(c.oci_media_type(), d, s));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            config: descriptor(media_type::OCI_CONFIG, cd, cs),
            layers,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|source| Error::Json {
            what: "manifest".into(),
            source,
        })?;
        let (md, ms) = sink.put_blob(&mut &bytes[..], None)?;
        let desc = descriptor(media_type::OCI_MANIFEST, md, ms);
        match entry.repo_tags.filter(|t| !t.is_empty()) {
            Some(tags) => out.extend(tags.into_iter().map(|t| ImportedRef {
                name: Some(t),
                descriptor: desc.clone(),
            })),
            None => out.push(ImportedRef {
                name: None,
                descriptor: desc,
            }),
        }
    }
    Ok(out)
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        platform: None,
        annotations: None,
        urls: None,
    }
}

/// Writes an OCI image layout in `dir` (created if missing; an existing
/// layout's other references are kept): `blobs` are copied through `open`,
/// and each `(name, descriptor)` becomes an `index.json` entry.
pub fn export_oci_layout(
    dir: &Path,
    refs: &[(String, Descriptor)],
    blobs: &[Digest],
    open: &dyn Fn(&Digest) -> io::Result<Box<dyn Read>>,
) -> Result<(), Error> {
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for d in blobs {
        let dest = blob_dir.join(d.hex());
        if dest.exists() {
            continue;
        }
        let tmp = blob_dir.join(format!(".tmp-{}-{}", d.hex(), std::process::id()));
        let mut src = open(d)?;
        let mut f = File::create(&tmp)?;
        let mut h = HashingWriter {
            inner: &mut f,
            hasher: Sha256::new(),
        };
        io::copy(&mut src, &mut h)?;
        let actual = Digest::from_sha256(h.hasher.finalize().into());
        f.sync_all()?;
        if &actual != d {
            let _ = fs::remove_file(&tmp);
            return Err(Error::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        fs::rename(&tmp, &dest)?;
    }
    let index_path = dir.join("index.json");
    let mut index = match fs::read(&index_path) {
        Ok(b) => json::<Index>(&b, "index.json")?,
        Err(_) => Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.into()),
            manifests: vec![],
            annotations: None,
        },
    };
    for (name, desc) in refs {
        index.manifests.retain(|m| {
            m.annotations
                .as_ref()
                .and_then(|a| a.get(REF_NAME_ANNOTATION))
                != Some(name)
        });
        let mut d = desc.clone();
        d.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(REF_NAME_ANNOTATION.to_string(), name.clone());
        index.manifests.push(d);
    }
    let bytes = serde_json::to_vec_pretty(&index).map_err(|source| Error::Json {
        what: "index.json".into(),
        source,
    })?;
    let tmp = dir.join(".index.json.tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(tmp, index_path)?;
    Ok(())
}

struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
