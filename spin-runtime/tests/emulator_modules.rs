//! The emulator modules built by `cargo xtask build-emulators` instantiate and run
//! under wasmtime as plain WASI commands. (The x86-64 machine is not implemented
//! yet: its module only prints its name and version.)

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
fn run_command(engine: &Engine, path: &PathBuf, args: &[&str]) -> (i32, String) {
    let module = Module::from_file(engine, path).expect("the module compiles");
    let stdout = MemoryOutputPipe::new(1 << 20);
    let wasi = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .arg("emulator")
        .args(args)
        .build_p1();
    let mut store: Store<WasiP1Ctx> = Store::new(engine, wasi);
    let mut linker = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
    linker
        .define_unknown_imports_as_traps(&module)
        .expect("stub imports");
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
fn x86_module_runs_under_wasmtime() {
    let engine = Engine::default();
    let name = "spin-emu-x86";
    let (code, out) = run_command(&engine, &module_path(name), &[]);
    assert_eq!(code, 0, "{name} exited with {code}");
    assert_eq!(out.trim(), format!("{name} {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn riscv_module_refuses_missing_arguments() {
    let engine = Engine::default();
    // Its spin_v1 imports are stubbed to trap here: without --kernel it must stop
    // before touching any of them.
    let (code, _) = run_command(&engine, &module_path("spin-emu-riscv"), &[]);
    assert_eq!(code, 1);
}
