//! One wasmtime `Engine` per process, and emulator modules compiled once.
//!
//! Compiled modules are kept on disk (serialized by wasmtime) under a key made of
//! the module's hash, so a second container, or a second process, does not
//! compile again. wasmtime checks that a serialized module matches its own version
//! and settings; a mismatch recompiles and replaces the file.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, Module};

use crate::Error;

/// How often the epoch advances: the longest a stop request waits for running wasm.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process's engine (epoch interruption on, a ticker thread driving it).
pub(crate) fn engine() -> Result<&'static Engine, Error> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        if std::env::var_os("SPIN_PERF_MAP").is_some() {
            // Names JIT code for `perf report` (/tmp/perf-PID.map).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| e.to_string())?;
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("spin-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(engine)
    });
    engine
        .as_ref()
        .map_err(|e| Error::Engine(format!("creating the wasmtime engine: {e}")))
}

/// Where compiled modules are kept: `$SPIN_CACHE_DIR`, else `$XDG_CACHE_HOME/spin`,
/// else `~/.cache/spin`, under `modules/`.
pub fn module_cache_dir() -> PathBuf {
    let base = if let Some(dir) = std::env::var_os("SPIN_CACHE_DIR") {
        PathBuf::from(dir)
    } else {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("spin")
    };
    base.join("modules")
}

/// Loads an emulator module: from this process's memory, else from the disk
/// cache, else by compiling it (and filling both caches).
pub(crate) fn load_module(path: &Path) -> Result<Module, Error> {
    static LOADED: OnceLock<Mutex<HashMap<[u8; 32], Module>>> = OnceLock::new();
    let engine = engine()?;
    let wasm = fs::read(path).map_err(|source| Error::Io {
        what: format!("reading the emulator module {}", path.display()),
        source,
    })?;
    let hash: [u8; 32] = Sha256::digest(&wasm).into();
    let loaded = LOADED.get_or_init(Default::default);
    if let Some(m) = loaded.lock().expect("module map poisoned").get(&hash) {
        return Ok(m.clone());
    }
    let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    let cached = module_cache_dir().join(format!("{hex}.cwasm"));
    let module = match load_serialized(engine, &cached) {
        Some(m) => m,
        None => {
            tracing::info!(module = %path.display(), "compiling the emulator module");
            let m = Module::new(engine, &wasm)
                .map_err(|e| Error::Engine(format!("compiling {}: {e}", path.display())))?;
            if let Err(e) = store_serialized(&m, &cached) {
                tracing::warn!(
                    "cannot cache the compiled module at {}: {e}",
                    cached.display()
                );
            }
            m
        }
    };
    loaded
        .lock()
        .expect("module map poisoned")
        .insert(hash, module.clone());
    Ok(module)
}

fn load_serialized(engine: &Engine, path: &Path) -> Option<Module> {
    if !path.is_file() {
        return None;
    }
    // SAFETY: the file is one this runtime serialized into its own cache folder
    // (written whole through a rename); wasmtime checks its header, version and
    // settings and refuses a mismatch.
    match unsafe { Module::deserialize_file(engine, path) } {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::info!(
                "recompiling: cached module {} unusable: {e}",
                path.display()
            );
            None
        }
    }
}

fn store_serialized(module: &Module, path: &Path) -> Result<(), String> {
    let bytes = module.serialize().map_err(|e| e.to_string())?;
    let dir = path.parent().ok_or("no parent folder")?;
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        e.to_string()
    })
}
