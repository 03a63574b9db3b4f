//! One container: its options, and a run of the emulator module in its own store.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spin_init::host::ControlSession;
use spin_init::{MountSpec, NetworkSpec, Report, RunSpec};
use spin_net::{BoundForward, Forward, NetConfig, Network, Policy};
use spin_p9::P9Server;
use spin_registry::ContainerConfig;
use wasmtime::{Linker, Store, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::host::{self, ContainerHost, NetHost, Signals};
use crate::{Error, ImageSource, Runtime, engine};

/// The largest guest memory the wasm build supports (wasm32 has 4 GiB in all).
pub const MAX_MEMORY_MIB: u32 = 3 * 1024;
/// Guest memory when none is asked for.
pub const DEFAULT_MEMORY_MIB: u32 = 256;
/// Room in the module's memory beyond guest RAM (emulator state, caches, buffers).
const MODULE_OVERHEAD: usize = 256 << 20;

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    code: i32,
    stopped: bool,
}

impl ExitStatus {
    /// The exit code: the command's, or 128+N when a signal N ended it; 137 when
    /// the host stopped the container (as `docker stop` ends with SIGKILL).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Whether the host stopped the container (by [`StopHandle::stop`] or its time limit).
    pub fn stopped(&self) -> bool {
        self.stopped
    }
}

/// Stops a running container from any thread.
#[derive(Clone)]
pub struct StopHandle(Arc<Signals>);

impl StopHandle {
    /// Ends the container promptly; its `run` returns a stopped [`ExitStatus`].
    pub fn stop(&self) {
        self.0.stop();
    }
}

/// A container's network: NAT through the host's network, port forwards from
/// the host, and a policy on what the guest may reach (see [`spin_net`]).
///
/// The guest gets `eth0` with the configured address (10.0.2.15/24 by default),
/// a default route through the gateway (10.0.2.2) and `/etc/resolv.conf`
/// naming the DNS forwarder (10.0.2.3).
#[derive(Clone, Default)]
pub struct Networking {
    config: NetConfig,
    on_bound: Option<Arc<BoundCallback>>,
}

/// Told where the forwards are bound on the host.
type BoundCallback = dyn Fn(&[BoundForward]) + Send + Sync;

impl std::fmt::Debug for Networking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Networking")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Networking {
    /// The default network: outbound NAT to public and private addresses, no forwards.
    pub fn new() -> Networking {
        Networking::default()
    }

    /// A network from a full configuration (addresses, MTU, limits, ...).
    pub fn from_config(config: NetConfig) -> Networking {
        Networking {
            config,
            on_bound: None,
        }
    }

    /// Calls `callback` with the forwards as bound on the host (the real port
    /// when a forward asked for port 0), once they are listening and before
    /// the guest boots.
    pub fn on_bound(mut self, callback: impl Fn(&[BoundForward]) + Send + Sync + 'static) -> Self {
        self.on_bound = Some(Arc::new(callback));
        self
    }

    /// Adds a port forward from the host (127.0.0.1 unless the forward says otherwise).
    pub fn forward(mut self, forward: Forward) -> Networking {
        self.config.forwards.push(forward);
        self
    }

    /// Replaces the policy on what the guest may reach.
    pub fn policy(mut self, policy: Policy) -> Networking {
        self.config.policy = policy;
        self
    }

    /// The configuration the network starts with.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }
}

/// A container being configured; [`Container::run`] runs it.
pub struct Container<'r> {
    runtime: &'r Runtime,
    image: ImageSource,
    /// What the caller set; the image's config fills the rest (as Docker does).
    entrypoint: Option<Vec<String>>,
    command: Option<Vec<String>>,
    env: Vec<(String, String)>,
    workdir: Option<String>,
    user: Option<User>,
    spec: RunSpec,
    memory_mib: u32,
    timeout: Option<Duration>,
    stdin: Option<Box<dyn Read + Send>>,
    stdout: Box<dyn Write + Send>,
    stderr: Box<dyn Write + Send>,
    signals: Arc<Signals>,
    network: Option<Networking>,
    mounts: Vec<(PathBuf, String, bool)>,
}

impl<'r> Container<'r> {
    pub(crate) fn new(runtime: &'r Runtime, image: ImageSource) -> Container<'r> {
        Container {
            runtime,
            image,
            entrypoint: None,
            command: None,
            env: Vec::new(),
            workdir: None,
            user: None,
            spec: RunSpec::command(Vec::<String>::new()),
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: None,
            stdin: None,
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
            signals: Arc::default(),
            network: None,
            mounts: Vec::new(),
        }
    }

    /// The command and its arguments. With an image's config, they replace its
    /// `Cmd` and follow its `Entrypoint`, as with `docker run IMAGE CMD...`.
    pub fn command<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.command = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the image's `Entrypoint` (and drops its `Cmd`), as
    /// `docker run --entrypoint` does. An empty list means no entrypoint.
    pub fn entrypoint<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    /// Sets an environment variable, over the image's value of the same key.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    /// The working directory (absolute; created if missing), over the image's.
    pub fn workdir(mut self, dir: impl Into<String>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    /// The numeric user and group the command runs as, over the image's.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some(User::Ids(uid, gid));
        self
    }

    /// The user as `docker run -u` takes it (`name`, `uid`, `name:group`,
    /// `uid:gid`), looked up in the container's `/etc/passwd` and `/etc/group`.
    pub fn user_name(mut self, user: impl Into<String>) -> Self {
        self.user = Some(User::Name(user.into()));
        self
    }

    /// Guest memory in MiB (at most [`MAX_MEMORY_MIB`]).
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Stops the container after `limit` (its status then says [`ExitStatus::stopped`]).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Feeds the container's stdin from `reader` (otherwise it reads `/dev/null`);
    /// the end of `reader` is the end of the container's stdin.
    pub fn stdin(mut self, reader: impl Read + Send + 'static) -> Self {
        self.stdin = Some(Box::new(reader));
        self.spec.stdin = true;
        self
    }

    /// Where the container's stdout goes (default: this process's stdout).
    pub fn stdout(mut self, writer: impl Write + Send + 'static) -> Self {
        self.stdout = Box::new(writer);
        self
    }

    /// Where the container's stderr goes (default: this process's stderr).
    pub fn stderr(mut self, writer: impl Write + Send + 'static) -> Self {
        self.stderr = Box::new(writer);
        self
    }

    /// Mounts the host folder `host` at `guest` (an absolute path) in the
    /// container, read-only when asked.
    pub fn mount(
        mut self,
        host: impl Into<PathBuf>,
        guest: impl Into<String>,
        read_only: bool,
    ) -> Self {
        self.mounts.push((host.into(), guest.into(), read_only));
        self
    }

    /// Gives the container a network (by default it has none, only `lo`).
    pub fn network(mut self, networking: Networking) -> Self {
        self.network = Some(networking);
        self
    }

    /// A handle that stops this container from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.signals.clone())
    }

    /// Boots the guest, runs the command, and returns how it ended.
    pub fn run(mut self) -> Result<ExitStatus, Error> {
        let (image, defaults) = self.runtime.resolve(&self.image)?;
        self.apply(defaults.as_ref())?;
        let shares = self.shares()?;
        if let Some(net) = self.network.as_ref().map(|n| &n.config) {
            self.spec.network = Some(NetworkSpec {
                address: net.guest_ip.to_string(),
                prefix_len: net.subnet.prefix(),
                gateway: net.gateway_ip.to_string(),
                dns: net.dns_ip.to_string(),
            });
        }
        self.spec.validate().map_err(Error::Invalid)?;
        if let Some(m) = self.spec.mounts.iter().find(|m| m.target == "/") {
            return Err(Error::Invalid(format!(
                "mount at {}: the root cannot be a mount",
                m.target
            )));
        }
        if self.memory_mib < 64 || self.memory_mib > MAX_MEMORY_MIB {
            return Err(Error::Invalid(format!(
                "memory of {} MiB: choose 64 to {MAX_MEMORY_MIB} MiB",
                self.memory_mib
            )));
        }
        let files = &self.runtime.files;
        let parent = |p: &Path| {
            p.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| ".".into())
        };
        let (kernel_dir, initrd_dir, image_dir) = (
            parent(&files.kernel),
            parent(&files.initramfs),
            parent(&image),
        );
        let name = |p: &Path| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        };

        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stderr()
            .arg(self.runtime.arch.emulator_name())
            .args(&[
                "--kernel".to_string(),
                format!("/spin/kernel/{}", name(&files.kernel)),
                "--initrd".to_string(),
                format!("/spin/initrd/{}", name(&files.initramfs)),
                "--disk".to_string(),
                format!("/spin/image/{}", name(&image)),
                "--mem".to_string(),
                self.memory_mib.to_string(),
            ]);
        for (dir, guest) in [
            (&kernel_dir, "/spin/kernel"),
            (&initrd_dir, "/spin/initrd"),
            (&image_dir, "/spin/image"),
        ] {
            wasi.preopened_dir(dir, guest, FsPerms::ReadOnly)
                .map_err(|e| {
                    Error::Engine(format!("sharing {} with the emulator: {e}", dir.display()))
                })?;
        }
        for m in &self.spec.mounts {
            wasi.args(&["--share".to_string(), m.tag.clone()]);
        }
        // Started before the guest so that a host port in use fails the run early.
        let net = match self.network {
            Some(Networking { config, on_bound }) => {
                let mac = config.guest_mac;
                let (handle, endpoint) = Network::start(config)?;
                if let Some(callback) = on_bound {
                    callback(handle.forwards());
                }
                let signals = self.signals.clone();
                endpoint.set_notifier(move || signals.wake());
                wasi.args(&[
                    "--net".to_string(),
                    mac.map(|b| format!("{b:02x}")).join(":"),
                ]);
                Some(NetHost {
                    endpoint,
                    _handle: handle,
                })
            }
            None => None,
        };
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_mib as usize * (1 << 20) + MODULE_OVERHEAD)
            .build();
        let engine = engine::engine()?;
        let mut store = Store::new(
            engine,
            ContainerHost {
                wasi: wasi.build_p1(),
                control: ControlSession::new(&self.spec),
                stdout: self.stdout,
                stderr: self.stderr,
                signals: self.signals.clone(),
                kernel_log: Default::default(),
                limits,
                net,
                shares,
                fs_request: Vec::new(),
                fs_reply: Vec::new(),
            },
        );
        store.limiter(|host| &mut host.limits);
        let deadline = self.timeout.map(|t| Instant::now() + t);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |ctx| {
            let host = ctx.data();
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if expired {
                host.signals.stop();
            }
            if host.signals.stop_requested() {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });

        let mut linker: Linker<ContainerHost> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |h: &mut ContainerHost| &mut h.wasi)
            .map_err(|e| Error::Engine(format!("linking WASI: {e}")))?;
        host::add_to_linker(&mut linker)
            .map_err(|e| Error::Engine(format!("linking spin_v1: {e}")))?;

        if let Some(mut reader) = self.stdin {
            let signals = self.signals.clone();
            std::thread::Builder::new()
                .name("spin-stdin".into())
                .spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match reader.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => signals.push_stdin(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                tracing::warn!("reading the container's stdin: {e}");
                                break;
                            }
                        }
                    }
                    signals.end_stdin();
                })
                .map_err(|source| Error::Io {
                    what: "starting the stdin thread".into(),
                    source,
                })?;
        }

        let instance = linker
            .instantiate(&mut store, &self.runtime.module)
            .map_err(|e| Error::Engine(format!("instantiating the emulator: {e}")))?;
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|e| Error::Engine(format!("the emulator module is no WASI command: {e}")))?;
        let outcome = start.call(&mut store, ());
        let stopped = self.signals.stop_requested();
        // Also releases the stdin thread if it waits for the guest to read.
        self.signals.stop();
        let host = store.data();
        if let Some(report) = host.control.report() {
            return match report {
                Report::Exit(code) => Ok(ExitStatus {
                    code: *code,
                    stopped: false,
                }),
                Report::Error(msg) => Err(Error::Guest(msg.clone())),
            };
        }
        if stopped {
            return Ok(ExitStatus {
                code: 137,
                stopped: true,
            });
        }
        let detail = match outcome {
            Ok(()) => "the emulator exited".to_string(),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => format!("the emulator exited with {}", exit.0),
                None => format!("the emulator failed: {e:?}"),
            },
        };
        Err(Error::NoReport {
            detail,
            kernel_log: host.kernel_log_text(),
        })
    }

    /// Opens a 9p server on each mounted host folder (so that a missing folder
    /// fails the run before boot) and lists the mounts in the run spec.
    fn shares(&mut self) -> Result<Vec<P9Server>, Error> {
        let mut shares = Vec::new();
        for (i, (host, guest, read_only)) in self.mounts.iter().enumerate() {
            let server = P9Server::open(host, *read_only).map_err(|source| Error::Mount {
                host: host.clone(),
                guest: guest.clone(),
                source,
            })?;
            shares.push(server);
            self.spec.mounts.push(MountSpec {
                tag: format!("spin{i}"),
                target: guest.clone(),
                readonly: *read_only,
            });
        }
        Ok(shares)
    }

    /// Fills the run spec from the caller's options over the image's config.
    fn apply(&mut self, image: Option<&ContainerConfig>) -> Result<(), Error> {
        let spec = &mut self.spec;
        let image_entrypoint = image.and_then(|c| c.entrypoint.clone());
        let image_cmd = image.and_then(|c| c.cmd.clone());
        spec.args = match (&self.entrypoint, &self.command) {
            (Some(entry), command) => {
                let mut args = entry.clone();
                args.extend(command.iter().flatten().cloned());
                args
            }
            (None, command) => {
                let mut args = image_entrypoint.unwrap_or_default();
                args.extend(command.clone().or(image_cmd).unwrap_or_default());
                args
            }
        };
        if let Some(env) = image.and_then(|c| c.env.as_ref()) {
            for entry in env {
                let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
                spec.env
                    .retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
                spec.env.push(entry.clone());
            }
        }
        for (key, value) in &self.env {
            spec.env
                .retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key.as_str()));
            spec.env.push(format!("{key}={value}"));
        }
        if let Some(dir) = self
            .workdir
            .clone()
            .or_else(|| image.and_then(|c| c.working_dir.clone()))
            .filter(|d| !d.is_empty())
        {
            spec.cwd = dir;
        }
        let image_user = image
            .and_then(|c| c.user.clone())
            .filter(|u| !u.is_empty())
            .map(User::Name);
        match self.user.clone().or(image_user) {
            Some(User::Ids(uid, gid)) => (spec.uid, spec.gid) = (uid, gid),
            // Names need the image's /etc/passwd: init resolves them.
            Some(User::Name(name)) => spec.user = Some(name),
            None => {}
        }
        Ok(())
    }
}

/// Who the command runs as.
#[derive(Debug, Clone)]
enum User {
    Ids(u32, u32),
    Name(String),
}
