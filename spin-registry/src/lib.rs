//! OCI distribution client and the content-addressed image store.
//!
//! ```no_run
//! # async fn f() -> Result<(), spin_registry::Error> {
//! use spin_registry::{PullOptions, Reference, Registry};
//! let registry = Registry::open("/tmp/spin-store".as_ref())?;
//! let reference: Reference = "riscv64/busybox".parse()?;
//! registry.pull(&reference, &PullOptions::default(), &|event| println!("{event:?}")).await?;
//! let rootfs = registry.path(&reference)?; // a squashfs image, answered from disk
//! # let _ = rootfs; Ok(()) }
//! ```
//!
//! Pulls resolve the manifest (choosing a platform from an index), download
//! the config and layers in parallel into the store (digests verified while
//! streaming, retries and `Range` resumption), then convert the layers into a
//! squashfs root filesystem with `spin-image`, cached by manifest digest.

#![warn(missing_docs)]

mod client;
pub mod reference;
pub mod store;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use spin_image::archive::{self, BlobSink, ImportedRef};
use spin_image::oci::media_type;
use spin_image::{
    ConvertOptions, Descriptor, ImageConfig, Index, LayerCompression, LayerInput, Manifest,
};

pub use reference::Reference;
pub use spin_image::{ContainerConfig, Digest, Limits, Platform};
pub use store::{Defaults, IndexEntry, Store};

use client::{Client, Retry};

/// Errors of pulling, importing and the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed image reference.
    #[error("invalid image reference {0}")]
    InvalidReference(String),
    /// The registry has no such image (or blob).
    #[error("not found: {0}")]
    NotFound(String),
    /// Authentication failed or is needed.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The registry denied access.
    #[error("denied: {0}")]
    Denied(String),
    /// Another HTTP error status (after retries for 429/5xx).
    #[error("{what}: registry answered HTTP {status} {body}")]
    Status {
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// Start of the body, or a note.
        body: String,
    },
    /// A network failure (after retries).
    #[error("network error: {0}")]
    Transport(String),
    /// Content that does not hash to its digest.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// Content longer than its descriptor says.
    #[error("{what}: more data than the declared {expected} bytes")]
    SizeMismatch {
        /// What was downloaded.
        what: String,
        /// The declared size.
        expected: u64,
    },
    /// No manifest for the wanted platform.
    #[error("no image for platform {wanted}; available: {}", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoMatchingPlatform {
        /// The platform asked for.
        wanted: String,
        /// Platforms the image has.
        available: Vec<String>,
    },
    /// A media type spin does not handle.
    #[error("unknown media type: {0}")]
    UnknownMediaType(String),
    /// `--insecure` for a registry that is not on loopback.
    #[error("plain HTTP (--insecure) is only allowed for registries on loopback, not {0}")]
    InsecureNotLoopback(String),
    /// The image is not in the store.
    #[error("image {0} is not in the store (pull or import it first)")]
    NotInStore(String),
    /// The store is inconsistent or unreadable.
    #[error("store: {0}")]
    Store(String),
    /// Conversion or archive error.
    #[error(transparent)]
    Image(#[from] spin_image::Error),
    /// I/O error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Platform to select; `None` picks linux/riscv64, else linux/amd64.
    pub platform: Option<Platform>,
    /// Plain HTTP (only allowed for loopback registries).
    pub insecure: bool,
    /// Credentials for basic auth or the token service.
    pub credentials: Option<Credentials>,
    /// Layers downloaded at once.
    pub parallel_downloads: usize,
    /// Retries of one request (429, 5xx, network errors, interrupted blobs).
    pub retries: u32,
    /// First backoff delay (doubled each retry; `Retry-After` wins).
    pub retry_delay: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: None,
            insecure: false,
            credentials: None,
            parallel_downloads: 4,
            retries: 5,
            retry_delay: Duration::from_millis(250),
        }
    }
}

/// Progress of a pull.
#[derive(Clone, Debug)]
pub enum PullEvent {
    /// The manifest is known.
    Resolved {
        /// Manifest digest.
        manifest: Digest,
        /// Selected platform.
        platform: Platform,
        /// Layers (digest, size).
        layers: Vec<(Digest, u64)>,
    },
    /// Bytes of a layer arrived.
    Layer {
        /// Layer digest.
        digest: Digest,
        /// Bytes so far.
        downloaded: u64,
        /// Layer size.
        total: u64,
    },
    /// A layer is complete (`cached`: it was in the store already).
    LayerDone {
        /// Layer digest.
        digest: Digest,
        /// Whether nothing had to be downloaded.
        cached: bool,
    },
    /// A request is retried.
    Retrying {
        /// What is retried.
        what: String,
        /// Retry number.
        attempt: u32,
        /// Why.
        reason: String,
    },
    /// Conversion to squashfs started.
    Converting,
    /// All done.
    Done {
        /// The root filesystem.
        rootfs: PathBuf,
    },
}

/// An image in the store, as listed.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    /// Full name, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Manifest digest.
    pub manifest: Digest,
    /// Platform.
    pub platform: Platform,
    /// Size of the converted root filesystem (0 if not converted yet).
    pub rootfs_size: u64,
    /// When it was stored (seconds since the epoch).
    pub created: u64,
}

/// Everything known about a stored image.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    /// Full name.
    pub name: String,
    /// Manifest digest.
    pub manifest: Digest,
    /// Index digest, when selected from one.
    pub index: Option<Digest>,
    /// Platform.
    pub platform: Platform,
    /// Config digest.
    pub config_digest: Digest,
    /// Container defaults (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts…).
    pub config: ContainerConfig,
    /// Layers.
    pub layers: Vec<Descriptor>,
    /// The squashfs root filesystem.
    pub rootfs: PathBuf,
    /// Its size.
    pub rootfs_size: u64,
    /// When it was stored.
    pub created: u64,
}

/// An image store with a registry client.
pub struct Registry {
    store: Store,
    convert: ConvertOptions,
    http: reqwest::Client,
}

type Progress<'a> = &'a (dyn Fn(PullEvent) + Send + Sync);

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn json<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| {
        Error::Image(spin_image::Error::Json {
            what: what.to_string(),
            source,
        })
    })
}

/// Platforms chosen when none is asked for, in order of preference.
const DEFAULT_PLATFORMS: [&str; 2] = ["riscv64", "amd64"];

/// Picks the manifest for `wanted` (or the default preference) in an index.
fn select_platform(index: &Index, wanted: Option<&Platform>) -> Result<Descriptor, Error> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| media_type::is_manifest(&d.media_type))
        .collect();
    let available: Vec<String> = candidates
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    let found = match wanted {
        Some(w) => candidates
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| w.matches(p))),
        None => DEFAULT_PLATFORMS.iter().find_map(|arch| {
            candidates.iter().find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| Platform::linux(arch).matches(p))
            })
        }),
    };
    found
        .map(|d| (*d).clone())
        .ok_or_else(|| Error::NoMatchingPlatform {
            wanted: wanted
                .map(|w| w.to_string())
                .unwrap_or_else(|| "linux/riscv64 or linux/amd64".into()),
            available,
        })
}

/// Checks a single-manifest image's config against the wanted platform.
fn check_platform(config: &ImageConfig, wanted: Option<&Platform>) -> Result<(), Error> {
    let have = config.platform();
    let ok = match wanted {
        Some(w) => w.matches(&have),
        None => have.os == "linux" && DEFAULT_PLATFORMS.contains(&have.architecture.as_str()),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::NoMatchingPlatform {
            wanted: wanted
                .map(|w| w.to_string())
                .unwrap_or_else(|| "linux/riscv64 or linux/amd64".into()),
            available: vec![have.to_string()],
        })
    }
}

impl Registry {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Registry, Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("spin/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Registry {
            store: Store::open(path)?,
            convert: ConvertOptions::default(),
            http,
        })
    }

    /// Sets how layers are converted (limits, compression, block size).
    pub fn with_convert_options(mut self, opts: ConvertOptions) -> Registry {
        self.convert = opts;
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Pulls an image into the store and converts it; returns its root
    /// filesystem. Blobs already stored are not downloaded again.
    pub async fn pull(
        &self,
        reference: &Reference,
        options: &PullOptions,
        progress: Progress<'_>,
    ) -> Result<PathBuf, Error> {
        let _use = self.store.use_lock()?;
        let retry = Retry {
            attempts: options.retries,
            base_delay: options.retry_delay,
        };
        let client = Client::new(
            self.http.clone(),
            reference,
            options.insecure,
            options.credentials.clone(),
            retry,
        )?;
        let top = client.manifest(&reference.manifest_ref(), progress).await?;
        let wanted = options.platform.as_ref();
        let (manifest, index_digest, index_bytes) = if media_type::is_index(&top.media_type) {
            let index: Index = json(&top.bytes, "image index")?;
            let d = select_platform(&index, wanted)?;
            let m = client.manifest(d.digest.as_str(), progress).await?;
            (m, Some(top.digest.clone()), Some(top.bytes))
        } else if media_type::is_manifest(&top.media_type) {
            (top, None, None)
        } else {
            return Err(Error::UnknownMediaType(format!(
                "manifest of {reference} is {}",
                top.media_type
            )));
        };
        if !media_type::is_manifest(&manifest.media_type) {
            return Err(Error::UnknownMediaType(format!(
                "expected an image manifest, got {}",
                manifest.media_type
            )));
        }
        let m: Manifest = json(&manifest.bytes, "manifest")?;
        for l in &m.layers {
            LayerCompression::from_media_type(&l.media_type)?;
        }
        let config_bytes = if self.store.has_blob(&m.config.digest) {
            self.store.read_blob(&m.config.digest)?
        } else {
            client.blob_bytes(&m.config.digest, progress).await?
        };
        let config: ImageConfig = json(&config_bytes, "image config")?;
        if index_digest.is_none() {
            check_platform(&config, wanted)?;
        }
        progress(PullEvent::Resolved {
            manifest: manifest.digest.clone(),
            platform: config.platform(),
            layers: m
                .layers
                .iter()
                .map(|l| (l.digest.clone(), l.size))
                .collect(),
        });

        // Layers, in parallel.
        let client = Arc::new(client);
        futures::stream::iter(m.layers.iter().cloned())
            .map(|l| {
                let client = client.clone();
                async move {
                    if self.store.has_blob(&l.digest) {
                        progress(PullEvent::LayerDone {
                            digest: l.digest.clone(),
                            cached: true,
                        });
                        return Ok::<(), Error>(());
                    }
                    let tmp = self.store.temp_path("layer");
                    let res = client.blob_to_file(&l.digest, l.size, &tmp, progress).await;
                    let res = res
                        .and_then(|()| self.store.commit(&tmp, &self.store.blob_path(&l.digest)));
                    if res.is_err() {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    res?;
                    progress(PullEvent::LayerDone {
                        digest: l.digest.clone(),
                        cached: false,
                    });
                    Ok(())
                }
            })
            .buffer_unordered(options.parallel_downloads.max(1))
            .try_collect::<Vec<()>>()
            .await?;

        self.store
            .put_blob(&mut &config_bytes[..], Some(&m.config.digest))?;
        self.store
            .put_blob(&mut &manifest.bytes[..], Some(&manifest.digest))?;
        if let (Some(b), Some(d)) = (&index_bytes, &index_digest) {
            self.store.put_blob(&mut &b[..], Some(d))?;
        }
        progress(PullEvent::Converting);
        let store = self.store.clone();
        let opts = self.convert;
        let md = manifest.digest.clone();
        let rootfs = tokio::task::spawn_blocking(move || ensure_rootfs(&store, &md, &opts))
            .await
            .map_err(|e| Error::Store(format!("conversion task failed: {e}")))??;
        let entry = IndexEntry {
            manifest: manifest.digest.clone(),
            index: index_digest,
            platform: config.platform(),
            created: now(),
        };
        let name = reference.to_string();
        self.store
            .update_index(|images| images.insert(name, entry))?;
        progress(PullEvent::Done {
            rootfs: rootfs.clone(),
        });
        Ok(rootfs)
    }

    fn entry(&self, reference: &Reference) -> Result<IndexEntry, Error> {
        let name = reference.to_string();
        self.store
            .entries()?
            .remove(&name)
            .ok_or(Error::NotInStore(name))
    }

    /// The squashfs root filesystem of a stored image, answered from disk
    /// (converted again from the stored blobs if it was deleted).
    pub fn path(&self, reference: &Reference) -> Result<PathBuf, Error> {
        let _use = self.store.use_lock()?;
        let e = self.entry(reference)?;
        ensure_rootfs(&self.store, &e.manifest, &self.convert)
    }

    /// The container defaults of a stored image.
    pub fn defaults(&self, reference: &Reference) -> Result<Defaults, Error> {
        let e = self.entry(reference)?;
        let p = self.store.defaults_path(&e.manifest);
        match std::fs::read(&p) {
            Ok(b) => json(&b, "defaults"),
            Err(_) => {
                self.path(reference)?;
                json(&std::fs::read(p)?, "defaults")
            }
        }
    }

    /// All images in the store.
    pub fn images(&self) -> Result<Vec<ImageSummary>, Error> {
        Ok(self
            .store
            .entries()?
            .into_iter()
            .map(|(name, e)| ImageSummary {
                rootfs_size: std::fs::metadata(self.store.rootfs_path(&e.manifest))
                    .map(|m| m.len())
                    .unwrap_or(0),
                name,
                manifest: e.manifest,
                platform: e.platform,
                created: e.created,
            })
            .collect())
    }

    /// Details of a stored image.
    pub fn inspect(&self, reference: &Reference) -> Result<ImageInfo, Error> {
        let e = self.entry(reference)?;
        let m: Manifest = json(&self.store.read_blob(&e.manifest)?, "manifest")?;
        let c: ImageConfig = json(&self.store.read_blob(&m.config.digest)?, "image config")?;
        let rootfs = self.store.rootfs_path(&e.manifest);
        Ok(ImageInfo {
            name: reference.to_string(),
            manifest: e.manifest,
            index: e.index,
            platform: e.platform,
            config_digest: m.config.digest,
            config: c.config.unwrap_or_default(),
            layers: m.layers,
            rootfs_size: std::fs::metadata(&rootfs).map(|m| m.len()).unwrap_or(0),
            rootfs,
            created: e.created,
        })
    }

    /// Removes a name; blobs and root filesystems no other name uses are
    /// deleted. Returns the bytes freed.
    pub fn remove(&self, reference: &Reference) -> Result<u64, Error> {
        let _gc = self.store.gc_lock()?;
        let name = reference.to_string();
        let removed = self.store.update_index(|images| images.remove(&name))?;
        if removed.is_none() {
            return Err(Error::NotInStore(name));
        }
        let mut keep_blobs = HashSet::new();
        let mut keep_rootfs = HashSet::new();
        for e in self.store.entries()?.into_values() {
            keep_rootfs.insert(e.manifest.clone());
            if let Some(i) = e.index {
                keep_blobs.insert(i);
            }
            if let Ok(b) = self.store.read_blob(&e.manifest)
                && let Ok(m) = json::<Manifest>(&b, "manifest")
            {
                keep_blobs.insert(m.config.digest);
                keep_blobs.extend(m.layers.into_iter().map(|l| l.digest));
            }
            keep_blobs.insert(e.manifest);
        }
        self.store.clean_tmp()?;
        self.store.sweep(&keep_blobs, &keep_rootfs)
    }

    /// Imports an OCI layout directory or a `docker save` archive. `name`
    /// overrides the name for a single image; a bare tag in the layout is
    /// named after the directory. Returns the stored images.
    pub fn import(
        &self,
        input: &Path,
        name: Option<&Reference>,
        platform: Option<&Platform>,
    ) -> Result<Vec<ImageSummary>, Error> {
        let _use = self.store.use_lock()?;
        let mut sink = StoreSink(&self.store);
        let (refs, base): (Vec<ImportedRef>, String) = if input.is_dir() {
            let base = input
                .canonicalize()?
                .file_name()
                .map(|n| n.to_string_lossy().to_lowercase())
                .unwrap_or_else(|| "imported".into());
            (archive::import_oci_layout(input, &mut sink)?, base)
        } else {
            (
                archive::import_docker_archive(input, &mut sink)?,
                "imported".into(),
            )
        };
        if refs.is_empty() {
            return Err(Error::Image(spin_image::Error::InvalidArchive(
                "no image in the input".into(),
            )));
        }
        if name.is_some() && refs.len() > 1 {
            return Err(Error::InvalidReference(format!(
                "{} images in the input: a single --name cannot name them all",
                refs.len()
            )));
        }
        let mut out = Vec::new();
        for r in refs {
            let reference: Reference = match (name, &r.name) {
                (Some(n), _) => n.clone(),
                (None, Some(n)) if n.contains(':') || n.contains('/') => n.parse()?,
                (None, Some(tag)) => format!("{base}:{tag}").parse()?,
                (None, None) => {
                    return Err(Error::InvalidReference(
                        "the input does not name its image: give a name".into(),
                    ));
                }
            };
            let (manifest, index) = if media_type::is_index(&r.descriptor.media_type) {
                let idx: Index = json(&self.store.read_blob(&r.descriptor.digest)?, "image index")?;
                (
                    select_platform(&idx, platform)?.digest,
                    Some(r.descriptor.digest.clone()),
                )
            } else if media_type::is_manifest(&r.descriptor.media_type) {
                (r.descriptor.digest.clone(), None)
            } else {
                return Err(Error::UnknownMediaType(r.descriptor.media_type.clone()));
            };
            let m: Manifest = json(&self.store.read_blob(&manifest)?, "manifest")?;
            let c: ImageConfig = json(&self.store.read_blob(&m.config.digest)?, "image config")?;
            if index.is_none() {
                check_platform(&c, platform)?;
            }
            ensure_rootfs(&self.store, &manifest, &self.convert)?;
            let entry = IndexEntry {
                manifest: manifest.clone(),
                index,
                platform: c.platform(),
                created: now(),
            };
            let n = reference.to_string();
            self.store
                .update_index(|images| images.insert(n.clone(), entry.clone()))?;
            out.push(ImageSummary {
                name: n,
                rootfs_size: std::fs::metadata(self.store.rootfs_path(&manifest))
                    .map(|m| m.len())
                    .unwrap_or(0),
                manifest,
                platform: entry.platform,
                created: entry.created,
            });
        }
        Ok(out)
    }

    /// Exports a stored image as an OCI layout in `dir`, named by its full
    /// reference (`org.opencontainers.image.ref.name`).
    pub fn export(&self, reference: &Reference, dir: &Path) -> Result<(), Error> {
        let _use = self.store.use_lock()?;
        let e = self.entry(reference)?;
        let mbytes = self.store.read_blob(&e.manifest)?;
        let m: Manifest = json(&mbytes, "manifest")?;
        let mut blobs = vec![e.manifest.clone(), m.config.digest.clone()];
        blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
        let mut desc = Descriptor {
            media_type: m
                .media_type
                .clone()
                .unwrap_or_else(|| media_type::OCI_MANIFEST.into()),
            digest: e.manifest.clone(),
            size: mbytes.len() as u64,
            platform: Some(e.platform.clone()),
            annotations: None,
            urls: None,
        };
        if desc.media_type.is_empty() {
            desc.media_type = media_type::OCI_MANIFEST.into();
        }
        let store = &self.store;
        let open = |d: &Digest| -> std::io::Result<Box<dyn std::io::Read>> {
            Ok(Box::new(std::fs::File::open(store.blob_path(d))?))
        };
        archive::export_oci_layout(dir, &[(reference.to_string(), desc)], &blobs, &open)?;
        Ok(())
    }
}

struct StoreSink<'a>(&'a Store);

impl BlobSink for StoreSink<'_> {
    fn put_blob(
        &mut self,
        reader: &mut dyn std::io::Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), spin_image::Error> {
        if let Some(d) = expected
            && self.0.has_blob(d)
        {
            let size = std::fs::metadata(self.0.blob_path(d))?.len();
            return Ok((d.clone(), size));
        }
        self.0.put_blob(reader, expected).map_err(|e| match e {
            Error::DigestMismatch { expected, actual } => {
                spin_image::Error::DigestMismatch { expected, actual }
            }
            Error::Io(e) => spin_image::Error::Io(e),
            Error::Image(e) => e,
            other => spin_image::Error::InvalidArchive(other.to_string()),
        })
    }
}

/// Converts a stored manifest's layers to squashfs unless already done;
/// under the image's lock, written to a temporary file and renamed.
fn ensure_rootfs(
    store: &Store,
    manifest: &Digest,
    opts: &ConvertOptions,
) -> Result<PathBuf, Error> {
    let dest = store.rootfs_path(manifest);
    let defaults_path = store.defaults_path(manifest);
    if dest.is_file() && defaults_path.is_file() {
        return Ok(dest);
    }
    let _lock = store.image_lock(manifest)?;
    if dest.is_file() && defaults_path.is_file() {
        return Ok(dest);
    }
    let m: Manifest = json(&store.read_blob(manifest)?, "manifest")?;
    let c: ImageConfig = json(&store.read_blob(&m.config.digest)?, "image config")?;
    let mut layers = Vec::new();
    for l in &m.layers {
        let compression = LayerCompression::from_media_type(&l.media_type)?;
        let f = std::fs::File::open(store.blob_path(&l.digest))
            .map_err(|e| Error::Store(format!("layer {} missing from the store: {e}", l.digest)))?;
        layers.push(LayerInput {
            compression,
            reader: Box::new(std::io::BufReader::with_capacity(1 << 20, f)),
        });
    }
    let tmp = store.temp_path("rootfs");
    let started = std::time::Instant::now();
    let res = spin_image::convert_layers(layers, &tmp, opts);
    let stats = match res {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e.into());
        }
    };
    tracing::info!(%manifest, entries = stats.entries, bytes = stats.bytes_read, elapsed = ?started.elapsed(), "converted to squashfs");
    let defaults = Defaults {
        platform: c.platform(),
        config: c.config.unwrap_or_default(),
    };
    let dtmp = store.temp_path("defaults");
    std::fs::write(
        &dtmp,
        serde_json::to_vec_pretty(&defaults).expect("defaults serialize"),
    )?;
    store.commit(&dtmp, &defaults_path)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    store.commit(&tmp, &dest)?;
    Ok(dest)
}
