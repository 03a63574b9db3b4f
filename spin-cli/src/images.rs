//! The image commands: pull, images, rmi, inspect, path, import, export.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use spin_registry::{Credentials, Platform, PullEvent, PullOptions, Reference, Registry};

/// Arguments of `spin pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Platform to pull from a multi-platform image, `os/arch[/variant]`.
    #[arg(long)]
    platform: Option<String>,
    /// Use plain HTTP (registries on loopback only).
    #[arg(long)]
    insecure: bool,
    /// Registry user name.
    #[arg(long, env = "SPIN_REGISTRY_USERNAME")]
    username: Option<String>,
    /// Registry password (prefer the environment variable).
    #[arg(long, env = "SPIN_REGISTRY_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
    /// Image reference, e.g. `busybox`, `riscv64/alpine:3.20`, `127.0.0.1:5000/x:y`.
    image: String,
}

/// Arguments of `spin images`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// An image argument.
#[derive(Args, Debug)]
pub struct ImageArg {
    /// Image reference.
    image: String,
}

/// Arguments of `spin import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Name to give the image (needed when the input does not name it).
    #[arg(long)]
    name: Option<String>,
    /// Platform to take from a multi-platform layout.
    #[arg(long)]
    platform: Option<String>,
    /// OCI layout directory or `docker save` tar archive.
    input: PathBuf,
}

/// Arguments of `spin export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Image reference.
    image: String,
    /// Directory to write the OCI layout into.
    dir: PathBuf,
}

/// Opens the image store.
pub fn open(store: &Path) -> Result<Registry> {
    Registry::open(store)
        .with_context(|| format!("cannot open the image store at {}", store.display()))
}

fn parse(image: &str) -> Result<Reference> {
    Ok(image.parse::<Reference>()?)
}

/// `spin pull`.
pub fn pull(store: &Path, a: PullArgs) -> Result<()> {
    let registry = open(store)?;
    let reference = parse(&a.image)?;
    let credentials = match (a.username, a.password) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        _ => anyhow::bail!("give both --username and --password (or neither)"),
    };
    let platform = a
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let options = PullOptions {
        platform,
        insecure: a.insecure,
        credentials,
        ..PullOptions::default()
    };
    let rootfs = pull_with_progress(&registry, &reference, &options, a.quiet)?;
    let info = registry.inspect(&reference)?;
    println!(
        "{reference} {} {} {}",
        info.platform,
        info.manifest,
        rootfs.display()
    );
    Ok(())
}

/// Pulls `reference` with progress bars on stderr (none when `quiet`).
pub fn pull_with_progress(
    registry: &Registry,
    reference: &Reference,
    options: &PullOptions,
    quiet: bool,
) -> Result<PathBuf> {
    let bars = MultiProgress::new();
    if quiet {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    )
    .expect("template")
    .progress_chars("=> ");
    let layer_bars: Mutex<HashMap<String, ProgressBar>> = Mutex::new(HashMap::new());
    let status = bars.add(ProgressBar::new_spinner());
    status.set_message(format!("resolving {reference}"));
    status.enable_steady_tick(Duration::from_millis(120));
    let progress = |ev: PullEvent| match ev {
        PullEvent::Resolved {
            manifest,
            platform,
            layers,
        } => {
            status.set_message(format!("{reference} ({platform}) {manifest}"));
            let mut map = layer_bars.lock().expect("bars");
            for (d, size) in layers {
                let pb = bars.add(ProgressBar::new(size));
                pb.set_style(style.clone());
                pb.set_prefix(d.hex()[..12].to_string());
                map.insert(d.to_string(), pb);
            }
        }
        PullEvent::Layer {
            digest, downloaded, ..
        } => {
            if let Some(pb) = layer_bars.lock().expect("bars").get(digest.as_str()) {
                pb.set_position(downloaded);
            }
        }
        PullEvent::LayerDone { digest, cached } => {
            if let Some(pb) = layer_bars.lock().expect("bars").get(digest.as_str()) {
                pb.finish_with_message(if cached { "already stored" } else { "done" });
            }
        }
        PullEvent::Retrying {
            what,
            attempt,
            reason,
        } => {
            let _ = bars.println(format!("retry {attempt} of {what}: {reason}"));
        }
        PullEvent::Converting => status.set_message(format!("{reference}: converting to squashfs")),
        PullEvent::Done { .. } => status.finish_and_clear(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let res = rt.block_on(registry.pull(reference, options, &progress));
    status.finish_and_clear();
    res.with_context(|| format!("cannot pull {reference}"))
}

/// `spin images`.
pub fn list(store: &Path, a: ImagesArgs) -> Result<()> {
    let registry = open(store)?;
    let images = registry.images()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&images)?);
        return Ok(());
    }
    println!(
        "{:<50} {:<16} {:<14} {:>10}",
        "NAME", "PLATFORM", "MANIFEST", "SIZE"
    );
    for i in images {
        println!(
            "{:<50} {:<16} {:<14} {:>10}",
            i.name,
            i.platform.to_string(),
            &i.manifest.hex()[..12],
            indicatif::HumanBytes(i.rootfs_size).to_string()
        );
    }
    Ok(())
}

/// `spin rmi`.
pub fn remove(store: &Path, a: ImageArg) -> Result<()> {
    let registry = open(store)?;
    let reference = parse(&a.image)?;
    let freed = registry.remove(&reference)?;
    println!(
        "removed {reference} ({} freed)",
        indicatif::HumanBytes(freed)
    );
    Ok(())
}

/// `spin inspect`.
pub fn inspect(store: &Path, a: ImageArg) -> Result<()> {
    let registry = open(store)?;
    let info = registry.inspect(&parse(&a.image)?)?;
    println!("{}", serde_json::to_string_pretty(&info)?);
    Ok(())
}

/// `spin path`.
pub fn path(store: &Path, a: ImageArg) -> Result<()> {
    let registry = open(store)?;
    println!("{}", registry.path(&parse(&a.image)?)?.display());
    Ok(())
}

/// `spin import`.
pub fn import(store: &Path, a: ImportArgs) -> Result<()> {
    let registry = open(store)?;
    let name = a.name.as_deref().map(parse).transpose()?;
    let platform = a
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let imported = registry
        .import(&a.input, name.as_ref(), platform.as_ref())
        .with_context(|| format!("cannot import {}", a.input.display()))?;
    for i in imported {
        println!("{} {} {}", i.name, i.platform, i.manifest);
    }
    Ok(())
}

/// `spin export`.
pub fn export(store: &Path, a: ExportArgs) -> Result<()> {
    let registry = open(store)?;
    let reference = parse(&a.image)?;
    registry.export(&reference, &a.dir)?;
    println!("exported {reference} to {}", a.dir.display());
    Ok(())
}
