//! `spin run`: runs a container, with Docker's meaning for each flag.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use spin_registry::{Error as RegistryError, Platform, PullOptions, Reference};
use spin_runtime::{Arch, Forward, ImageSource, Networking, Policy, Runtime};

use crate::images;

/// Arguments of `spin run`.
#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Guest architecture: riscv64 or amd64.
    #[arg(long, default_value = "riscv64", value_parser = parse_arch)]
    arch: Arch,
    /// Remove the container when it exits (always so: a container leaves nothing
    /// behind; accepted for Docker compatibility).
    #[arg(long)]
    rm: bool,
    /// Set an environment variable, `KEY=VALUE` (or `KEY` to pass this process's value).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Mount a host folder, `HOST:GUEST[:ro]`.
    #[arg(short = 'v', long = "volume", value_name = "HOST:GUEST[:ro]")]
    volumes: Vec<String>,
    /// Forward a host port to a guest port, `[IP:]HOST:GUEST[/udp]` (implies --network).
    #[arg(short = 'p', long = "publish", value_name = "HOST:GUEST")]
    publish: Vec<String>,
    /// Give the container a network (NAT through the host).
    #[arg(long)]
    network: bool,
    /// Let the container reach this host's loopback through its gateway (10.0.2.2).
    #[arg(long)]
    allow_host_loopback: bool,
    /// Guest memory, e.g. `512m`, `2g` (a plain number is bytes, as in Docker).
    #[arg(short = 'm', long, value_parser = parse_memory_mib, value_name = "SIZE")]
    memory: Option<u32>,
    /// Stop the container after this many seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
    /// Keep stdin open: pass this process's stdin to the container.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Working directory inside the container.
    #[arg(short = 'w', long, value_name = "DIR")]
    workdir: Option<String>,
    /// User to run as: `NAME`, `UID`, `NAME:GROUP` or `UID:GID`.
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Replace the image's entrypoint (an empty string for none).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Run a squashfs root filesystem file instead of a stored image.
    #[arg(long, value_name = "FILE")]
    image_file: Option<PathBuf>,
    /// Pull over plain HTTP (automatic for registries on loopback, as Docker does).
    #[arg(long)]
    insecure: bool,
    /// The image (unless --image-file), then the command and its arguments.
    #[arg(value_name = "IMAGE [CMD [ARGS...]]")]
    rest: Vec<String>,
}

fn parse_arch(s: &str) -> Result<Arch, String> {
    match s {
        "riscv64" => Ok(Arch::Riscv64),
        "amd64" | "x86_64" | "x86-64" => Ok(Arch::X86_64),
        _ => Err(format!("unknown architecture {s:?} (riscv64 or amd64)")),
    }
}

/// Docker's memory sizes: a number with an optional b/k/m/g suffix; in MiB.
fn parse_memory_mib(s: &str) -> Result<u32, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => lower.split_at(i),
        None => (lower.as_str(), "b"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("bad memory size {s:?} (e.g. 512m, 2g)"))?;
    let bytes = match unit.trim_end_matches('b') {
        "" => Some(n),
        "k" => n.checked_mul(1 << 10),
        "m" => n.checked_mul(1 << 20),
        "g" => n.checked_mul(1 << 30),
        _ => None,
    }
    .ok_or_else(|| format!("bad memory size {s:?} (e.g. 512m, 2g)"))?;
    u32::try_from(bytes >> 20).map_err(|_| format!("memory size {s:?} is too large"))
}

/// `-p [IP:]HOST:GUEST[/tcp|/udp]`.
fn parse_publish(s: &str) -> Result<Forward> {
    let (spec, proto) = match s.rsplit_once('/') {
        Some((spec, p)) => (spec, p),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let port = |p: &str| {
        p.parse::<u16>()
            .with_context(|| format!("bad port {p:?} in -p {s}"))
    };
    let (guest, host, ip) = match parts.as_slice() {
        [guest, host] => (port(guest)?, port(host)?, None),
        [guest, host, ip] => (
            port(guest)?,
            port(host)?,
            Some(
                ip.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .with_context(|| format!("bad address {ip:?} in -p {s}"))?,
            ),
        ),
        _ => bail!("-p {s}: expected [IP:]HOST_PORT:GUEST_PORT[/udp]"),
    };
    let forward = match proto {
        "tcp" => Forward::tcp(host, guest),
        "udp" => Forward::udp(host, guest),
        other => bail!("-p {s}: unknown protocol {other:?} (tcp or udp)"),
    };
    Ok(match ip {
        Some(ip) => forward.on(ip),
        None => forward,
    })
}

/// `-v HOST:GUEST[:ro|:rw]`.
fn parse_volume(s: &str) -> Result<(PathBuf, String, bool)> {
    let (rest, read_only) = match s.rsplit_once(':') {
        Some((rest, "ro")) => (rest, true),
        Some((rest, "rw")) => (rest, false),
        _ => (s, false),
    };
    let Some((host, guest)) = rest.rsplit_once(':') else {
        bail!("-v {s}: expected HOST:GUEST[:ro]");
    };
    Ok((PathBuf::from(host), guest.to_string(), read_only))
}

/// Whether a registry host is this machine (Docker trusts those over plain HTTP).
fn is_loopback_registry(reference: &Reference) -> bool {
    let host = reference
        .registry
        .rsplit_once(':')
        .map_or(reference.registry.as_str(), |(h, _)| h);
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `spin run`; returns the container's exit code.
pub fn run(store: &Path, a: RunArgs) -> Result<i32> {
    let mut rest = a.rest.into_iter();
    let runtime = Runtime::new(a.arch)?;
    let (runtime, image) = match &a.image_file {
        Some(file) => (runtime, ImageSource::ImageFile(file.clone())),
        None => {
            let name = rest
                .next()
                .context("no image: spin run [OPTIONS] IMAGE [CMD...] (or --image-file FILE)")?;
            let reference: Reference = name.parse()?;
            let registry = images::open(store)?;
            match registry.defaults(&reference) {
                Ok(_) => {}
                Err(RegistryError::NotInStore(_)) => {
                    eprintln!("Unable to find image '{reference}' locally");
                    let insecure = a.insecure || is_loopback_registry(&reference);
                    let options = PullOptions {
                        platform: Some(Platform::linux(a.arch.oci_name())),
                        insecure,
                        ..PullOptions::default()
                    };
                    images::pull_with_progress(&registry, &reference, &options, false)?;
                }
                Err(e) => return Err(e.into()),
            }
            (
                runtime.with_registry(registry),
                ImageSource::Image(reference.to_string()),
            )
        }
    };
    let command: Vec<String> = rest.collect();

    let mut container = runtime.container(image);
    if !command.is_empty() {
        container = container.command(command);
    }
    if let Some(entry) = &a.entrypoint {
        container = container.entrypoint(entry.split_whitespace());
    }
    for e in &a.env {
        container = match e.split_once('=') {
            Some((k, v)) => container.env(k, v),
            None => match std::env::var(e) {
                Ok(v) => container.env(e, v),
                Err(_) => container,
            },
        };
    }
    for v in &a.volumes {
        let (host, guest, read_only) = parse_volume(v)?;
        container = container.mount(host, guest, read_only);
    }
    if a.network || a.allow_host_loopback || !a.publish.is_empty() {
        let mut net = Networking::new();
        if a.allow_host_loopback {
            net = net.policy(Policy::with_host_loopback());
        }
        for p in &a.publish {
            net = net.forward(parse_publish(p)?);
        }
        // A host port of 0 lets the system pick one: say which.
        net = net.on_bound(|forwards| {
            for f in forwards.iter().filter(|f| f.forward.host.port() == 0) {
                eprintln!(
                    "{}/{} -> {}",
                    f.forward.guest_port,
                    f.forward.proto.name(),
                    f.host
                );
            }
        });
        container = container.network(net);
    }
    if let Some(mib) = a.memory {
        container = container.memory_mib(mib);
    }
    if let Some(secs) = a.timeout {
        container = container.timeout(Duration::from_secs(secs));
    }
    if a.interactive {
        container = container.stdin(std::io::stdin());
    }
    if let Some(dir) = a.workdir {
        container = container.workdir(dir);
    }
    if let Some(user) = a.user {
        container = container.user_name(user);
    }
    let stop = container.stop_handle();
    ctrlc::set_handler(move || stop.stop()).context("installing the Ctrl-C handler")?;
    let status = container.run()?;
    Ok(status.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_read_as_docker_does() {
        assert_eq!(parse_memory_mib("512m"), Ok(512));
        assert_eq!(parse_memory_mib("2g"), Ok(2048));
        assert_eq!(parse_memory_mib("2GB"), Ok(2048));
        assert_eq!(parse_memory_mib("1048576k"), Ok(1024));
        assert_eq!(parse_memory_mib("268435456"), Ok(256));
        assert!(parse_memory_mib("lots").is_err());
        assert!(parse_memory_mib("12x").is_err());
    }

    #[test]
    fn publish_specs() {
        let f = parse_publish("18080:8080").unwrap();
        assert_eq!(f, Forward::tcp(18080, 8080));
        let f = parse_publish("0.0.0.0:53:5353/udp").unwrap();
        assert_eq!(f, Forward::udp(53, 5353).on("0.0.0.0".parse().unwrap()));
        assert!(parse_publish("8080").is_err());
        assert!(parse_publish("a:b").is_err());
        assert!(parse_publish("1:2/sctp").is_err());
    }

    #[test]
    fn volume_specs() {
        assert_eq!(
            parse_volume("/data:/import:ro").unwrap(),
            ("/data".into(), "/import".into(), true)
        );
        assert_eq!(
            parse_volume("./d:/x").unwrap(),
            ("./d".into(), "/x".into(), false)
        );
        assert!(parse_volume("/only").is_err());
    }

    #[test]
    fn loopback_registries_are_recognised() {
        let r = |s: &str| s.parse::<Reference>().unwrap();
        assert!(is_loopback_registry(&r("127.0.0.1:5000/hello")));
        assert!(is_loopback_registry(&r("localhost:5000/hello")));
        assert!(!is_loopback_registry(&r("busybox")));
        assert!(!is_loopback_registry(&r("registry.example.com/x")));
    }
}
