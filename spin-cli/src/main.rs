//! `spin`: the command line of the spin container runtime.

mod images;
mod run;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Run OCI containers inside CPU emulators compiled to WebAssembly.
#[derive(Parser, Debug)]
#[command(name = "spin", version, about)]
struct Cli {
    /// Image store directory (default: $XDG_DATA_HOME/spin, else ~/.local/share/spin).
    #[arg(long, global = true, env = "SPIN_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a command in a new container.
    Run(run::RunArgs),
    /// Pull an image from a registry and convert it to a root filesystem.
    Pull(images::PullArgs),
    /// List stored images.
    Images(images::ImagesArgs),
    /// Remove a stored image (and the blobs no other image uses).
    Rmi(images::ImageArg),
    /// Show a stored image as JSON.
    Inspect(images::ImageArg),
    /// Print the path of a stored image's squashfs root filesystem.
    Path(images::ImageArg),
    /// Import an OCI layout directory or a `docker save` archive.
    Import(images::ImportArgs),
    /// Export a stored image as an OCI layout directory.
    Export(images::ExportArgs),
}

/// The default store: `$XDG_DATA_HOME/spin`, else `~/.local/share/spin`.
fn default_store() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("spin"));
    }
    let home =
        std::env::var_os("HOME").context("neither XDG_DATA_HOME nor HOME is set: use --store")?;
    Ok(PathBuf::from(home).join(".local/share/spin"))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPIN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // As Docker: `run` fails with 125 when the container could not run, so
    // that the container's own statuses (1, 126, 127...) stay unambiguous.
    let failure = if matches!(cli.command, Command::Run(_)) {
        125
    } else {
        1
    };
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("spin: error: {e:#}");
            std::process::exit(failure);
        }
    }
}

/// Runs the command; returns the process's exit status.
fn run(cli: Cli) -> Result<i32> {
    let store = match cli.store {
        Some(s) => s,
        None => default_store()?,
    };
    if let Command::Run(a) = cli.command {
        return run::run(&store, a);
    }
    match cli.command {
        Command::Run(_) => unreachable!("handled above"),
        Command::Pull(a) => images::pull(&store, a),
        Command::Images(a) => images::list(&store, a),
        Command::Rmi(a) => images::remove(&store, a),
        Command::Inspect(a) => images::inspect(&store, a),
        Command::Path(a) => images::path(&store, a),
        Command::Import(a) => images::import(&store, a),
        Command::Export(a) => images::export(&store, a),
    }?;
    Ok(0)
}
