//! Runs OCI containers inside spin's emulators, hosted by wasmtime.
//!
//! A [`Runtime`] holds one architecture's emulator module, compiled once per
//! process (and cached compiled on disk). Each [`Container`] runs in its own
//! wasmtime `Store`: the emulator boots spin's guest kernel and `spin-init`, which
//! receives the run spec over the control port, runs the command and reports its
//! exit status.
//!
//! ```no_run
//! use spin_runtime::{Arch, ImageSource, Runtime};
//!
//! let runtime = Runtime::new(Arch::Riscv64)?;
//! let status = runtime
//!     .container(ImageSource::ImageFile("busybox.sqfs".into()))
//!     .command(["sh", "-c", "echo $SPIN"])
//!     .env("SPIN", "is awesome")
//!     .run()?;
//! assert_eq!(status.code(), 0);
//! # Ok::<(), spin_runtime::Error>(())
//! ```
//!
//! A container with a network and a port forward (see [`Networking`]):
//!
//! ```no_run
//! use spin_runtime::{Arch, Forward, ImageSource, Networking, Runtime};
//!
//! let runtime = Runtime::new(Arch::Riscv64)?;
//! let status = runtime
//!     .container(ImageSource::ImageFile("busybox.sqfs".into()))
//!     .command(["httpd", "-f", "-p", "8080"])
//!     .network(Networking::new().forward(Forward::tcp(18080, 8080)))
//!     .run()?;
//! # Ok::<(), spin_runtime::Error>(())
//! ```
//!
//! An image pulled from a registry into a local store, run by name with a
//! host folder mounted read-only; the image's Entrypoint, Cmd, Env, WorkingDir
//! and User are the defaults that the options override, as with Docker:
//!
//! ```no_run
//! use spin_registry::{PullOptions, Reference, Registry};
//! use spin_runtime::{Arch, ImageSource, Runtime};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = Registry::open("/var/lib/spin".as_ref())?;
//! let image: Reference = "127.0.0.1:5000/hello:latest".parse()?;
//! let options = PullOptions { insecure: true, ..PullOptions::default() };
//! tokio::runtime::Runtime::new()?.block_on(registry.pull(&image, &options, &|_event| {}))?;
//! println!("root filesystem: {}", registry.path(&image)?.display());
//!
//! let runtime = Runtime::new(Arch::Riscv64)?.with_registry(registry);
//! let status = runtime
//!     .container(ImageSource::Image(image.to_string()))
//!     .command(["ls", "-l", "/import"])
//!     .mount("/home/me/data", "/import", true)
//!     .run()?;
//! std::process::exit(status.code());
//! # }
//! ```
//!
//! Stopping a container from another thread:
//!
//! ```no_run
//! use spin_runtime::{Arch, ImageSource, Runtime};
//!
//! let runtime = Runtime::new(Arch::Riscv64)?;
//! let container = runtime
//!     .container(ImageSource::ImageFile("busybox.sqfs".into()))
//!     .command(["sleep", "1000"]);
//! let stop = container.stop_handle();
//! std::thread::spawn(move || {
//!     std::thread::sleep(std::time::Duration::from_secs(5));
//!     stop.stop();
//! });
//! assert!(container.run()?.stopped());
//! # Ok::<(), spin_runtime::Error>(())
//! ```
//!
//! Not there yet: the native (non-wasm) backend and the x86-64 emulator.
//! Asking for them is an error, never a silent no-op.

mod container;
mod engine;
mod host;

use std::fmt;
use std::path::{Path, PathBuf};

pub use container::{Container, ExitStatus, Networking, StopHandle};
pub use engine::module_cache_dir;
pub use spin_net::{BoundForward, Forward, NetConfig, Policy};
pub use spin_registry::Registry;

use spin_registry::{ContainerConfig, Reference};

/// A guest architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// RISC-V 64 (`spin-emu-riscv`).
    Riscv64,
    /// x86-64 (`spin-emu-x86`).
    X86_64,
}

impl Arch {
    /// The name used in paths and by `uname -m`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Riscv64 => "riscv64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The name OCI image platforms use (`riscv64`, `amd64`).
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::Riscv64 => "riscv64",
            Arch::X86_64 => "amd64",
        }
    }

    fn emulator_name(self) -> &'static str {
        match self {
            Arch::Riscv64 => "spin-emu-riscv",
            Arch::X86_64 => "spin-emu-x86",
        }
    }

    fn kernel_file(self) -> &'static str {
        match self {
            Arch::Riscv64 => "Image",
            Arch::X86_64 => "vmlinux",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a container's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An image by name, from the runtime's registry.
    Image(String),
    /// A squashfs root filesystem on disk.
    ImageFile(PathBuf),
}

/// What can go wrong preparing or running a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the runtime needs is missing.
    #[error("{what} {path} is missing{hint}")]
    Missing {
        /// What the file is.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to make it.
        hint: &'static str,
    },
    /// The container's options are inconsistent.
    #[error("invalid container options: {0}")]
    Invalid(String),
    /// A capability that is not implemented yet was asked for.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    /// wasmtime could not create, compile or run the emulator.
    #[error("{0}")]
    Engine(String),
    /// The guest could not start the command.
    #[error("the container did not start: {0}")]
    Guest(String),
    /// The machine ended without an exit report.
    #[error(
        "the guest ended without reporting an exit status ({detail}); last kernel messages:\n{kernel_log}"
    )]
    NoReport {
        /// What ended it.
        detail: String,
        /// The end of the kernel console.
        kernel_log: String,
    },
    /// A host folder could not be shared.
    #[error("mount {} at {guest}: {source}", host.display())]
    Mount {
        /// The host folder.
        host: PathBuf,
        /// Where it was to appear in the container.
        guest: String,
        /// Why it cannot be shared.
        source: spin_p9::Error,
    },
    /// The container's network could not start (e.g. a host port in use).
    #[error("the container's network: {0}")]
    Network(#[from] spin_net::NetError),
    /// An image by name could not be found or read from the registry's store.
    #[error(transparent)]
    Registry(#[from] spin_registry::Error),
    /// The image is built for another architecture than the runtime's.
    #[error("image {image} is for {platform}, not {arch} (pull it with --platform linux/{})", arch.oci_name())]
    WrongArch {
        /// The image's name.
        image: String,
        /// Its platform.
        platform: String,
        /// The runtime's architecture.
        arch: Arch,
    },
    /// Host I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The files a guest of one architecture needs.
#[derive(Debug, Clone)]
pub struct GuestFiles {
    /// The emulator module (`.wasm`).
    pub emulator: PathBuf,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initramfs holding `spin-init`.
    pub initramfs: PathBuf,
}

impl GuestFiles {
    /// Finds the files `cargo xtask build-emulators` and `build-guest` made, under
    /// `$SPIN_ARTIFACTS` or else this workspace's `target/spin`.
    pub fn locate(arch: Arch) -> Result<GuestFiles, Error> {
        let root = match std::env::var_os("SPIN_ARTIFACTS") {
            Some(dir) => PathBuf::from(dir),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/spin"),
        };
        let guest = root.join("guest").join(arch.name());
        let files = GuestFiles {
            emulator: root
                .join("emulators")
                .join(format!("{}.wasm", arch.emulator_name())),
            kernel: guest.join(arch.kernel_file()),
            initramfs: guest.join("initramfs.cpio.gz"),
        };
        files.check()?;
        Ok(files)
    }

    fn check(&self) -> Result<(), Error> {
        for (what, path, hint) in [
            (
                "the emulator module",
                &self.emulator,
                " (cargo xtask build-emulators)",
            ),
            (
                "the guest kernel",
                &self.kernel,
                " (cargo xtask build-guest)",
            ),
            (
                "the guest initramfs",
                &self.initramfs,
                " (cargo xtask build-guest)",
            ),
        ] {
            if !path.is_file() {
                return Err(Error::Missing {
                    what,
                    path: path.clone(),
                    hint,
                });
            }
        }
        Ok(())
    }
}

/// Raises this process's soft limit on open files to its hard limit, once: each
/// file a guest holds open in a mount holds one or two host descriptors, and
/// the usual soft limit (1024) is low for several containers.
fn raise_open_file_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            if let Err(e) = setrlimit(Resource::Nofile, limit) {
                tracing::debug!("could not raise the open file limit: {e}");
            }
        }
    });
}

/// Runs containers of one architecture.
pub struct Runtime {
    arch: Arch,
    files: GuestFiles,
    module: wasmtime::Module,
    registry: Option<Registry>,
}

impl Runtime {
    /// A runtime with the guest files found by [`GuestFiles::locate`].
    pub fn new(arch: Arch) -> Result<Runtime, Error> {
        Runtime::with_files(arch, GuestFiles::locate(arch)?)
    }

    /// A runtime with explicit guest files. The emulator module is compiled at
    /// most once per process and cached compiled on disk.
    pub fn with_files(arch: Arch, files: GuestFiles) -> Result<Runtime, Error> {
        if arch == Arch::X86_64 {
            return Err(Error::Unsupported(
                "the x86-64 guest (its emulator is not written yet; use riscv64)",
            ));
        }
        files.check()?;
        raise_open_file_limit();
        let module = engine::load_module(&files.emulator)?;
        Ok(Runtime {
            arch,
            files,
            module,
            registry: None,
        })
    }

    /// Lets containers run images by name from `registry`'s store
    /// ([`ImageSource::Image`]); the images must be pulled first.
    pub fn with_registry(mut self, registry: Registry) -> Runtime {
        self.registry = Some(registry);
        self
    }

    /// The registry images by name come from, if any.
    pub fn registry(&self) -> Option<&Registry> {
        self.registry.as_ref()
    }

    /// The architecture this runtime runs.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// A container to configure and run.
    pub fn container(&self, image: ImageSource) -> Container<'_> {
        Container::new(self, image)
    }

    /// The root filesystem of `image`, and its config when it has one.
    fn resolve(&self, image: &ImageSource) -> Result<(PathBuf, Option<ContainerConfig>), Error> {
        match image {
            ImageSource::ImageFile(path) => {
                if !path.is_file() {
                    return Err(Error::Missing {
                        what: "the image file",
                        path: path.clone(),
                        hint: "",
                    });
                }
                Ok((path.clone(), None))
            }
            ImageSource::Image(name) => {
                let registry = self.registry.as_ref().ok_or_else(|| {
                    Error::Invalid(format!(
                        "image {name}: running an image by name needs a registry \
                         (Runtime::with_registry)"
                    ))
                })?;
                let reference: Reference = name.parse()?;
                let defaults = registry.defaults(&reference)?;
                if defaults.platform.architecture != self.arch.oci_name() {
                    return Err(Error::WrongArch {
                        image: name.clone(),
                        platform: defaults.platform.to_string(),
                        arch: self.arch,
                    });
                }
                Ok((registry.path(&reference)?, Some(defaults.config)))
            }
        }
    }
}
