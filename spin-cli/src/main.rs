//! `spin`: the command line of the spin container runtime.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => println!("spin {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "spin {}: no commands are implemented yet (see the project's open issues); \
                 try `cargo xtask demo`",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
