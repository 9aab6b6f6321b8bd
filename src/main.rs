//! The `backbone` executable: parse the command line and dispatch. Nothing else lives here.

use clap::Parser;

/// mimalloc instead of the system allocator: glibc's per-thread arenas grow a burst of
/// concurrent requests into hundreds of MiB of resident memory it keeps (measured in
/// `tests/overload.rs`), and allocation-heavy paths (JSON in and out) run faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = backbone::cli::Cli::parse();
    backbone::mail::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(backbone::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}
