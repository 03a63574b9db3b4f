//! The emulator modules built by `cargo xtask build-emulators` instantiate and run
//! under wasmtime as WASI commands. (So far they only print their name and
//! version: the machines themselves are not implemented yet.)

use std::path::PathBuf;

use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

fn module_path(name: &str) -> PathBuf {
    let root = std::env::var_os("SPIN_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/spin"));
    let path = root.join("emulators").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-emulators`",
        path.display()
    );
    path
}

/// Runs a WASI command module and returns its exit code and stdout.
fn run_command(engine: &Engine, path: &PathBuf) -> (i32, String) {
    let module = Module::from_file(engine, path).expect("the module compiles");
    let stdout = MemoryOutputPipe::new(1 << 20);
    let wasi = WasiCtxBuilder::new().stdout(stdout.clone()).build_p1();
    let mut store: Store<WasiP1Ctx> = Store::new(engine, wasi);
    let mut linker = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
    let instance = linker
        .instantiate(&mut store, &module)
        .expect("the module instantiates");
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .expect("a WASI command exports _start");
    let code = match start.call(&mut store, ()) {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => exit.0,
            None => panic!("the module trapped: {e:?}"),
        },
    };
    (code, String::from_utf8(stdout.contents().to_vec()).unwrap())
}

#[test]
fn emulator_modules_run_under_wasmtime() {
    let engine = Engine::default();
    for name in ["spin-emu-riscv", "spin-emu-x86"] {
        let (code, out) = run_command(&engine, &module_path(name));
        assert_eq!(code, 0, "{name} exited with {code}");
        assert_eq!(out.trim(), format!("{name} {}", env!("CARGO_PKG_VERSION")));
    }
}
