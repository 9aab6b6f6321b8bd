//! The `backbone` executable: parse the command line and dispatch. Nothing else lives here.

use clap::Parser;

/// mimalloc instead of the system allocator: glibc's per-thread arenas grow a burst of
/// concurrent requests into hundreds of MiB of resident memory it keeps (measured in
/// `tests/overload.rs`), and allocation-heavy paths (JSON in and out) run faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = backbone::cli::Cli::parse();
    if matches!(cli.command, backbone::cli::Command::Serve { .. }) {
        return_freed_memory_promptly();
    }
    backbone::util::tls::install_crypto_provider();
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

/// The server re-executes itself once with `MIMALLOC_PURGE_DELAY=0` (unless the variable
/// is set already, so an operator can choose another value).
///
/// mimalloc keeps freed pages resident for a second by default, and only checks that
/// age when the owning thread next allocates. Under a burst that is hundreds of MiB of
/// freed memory still counted in the RSS, which defeats `[limits] max_rss_mb`: in
/// `tests/overload.rs` the peak was 436-512 MiB against a 384 MiB cap with the default
/// delay and 354 MiB with 0 (and 43 instead of 67 MiB at rest). mimalloc reads its
/// options from the environment when the process starts, before `main`; setting them
/// later needs an unsafe FFI call, so the variable is set for a fresh image instead.
/// `exec` keeps the PID (systemd's `Type=notify` and signals are unaffected) and
/// `/proc/self/exe` works even when the binary was replaced on disk.
#[cfg(target_os = "linux")]
fn return_freed_memory_promptly() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(VAR).is_some() {
        return;
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "backbone".into());
    let err = std::process::Command::new("/proc/self/exe").arg0(arg0).args(args).env(VAR, "0").exec();
    // `exec` returns only when it failed: run on with the allocator's defaults.
    eprintln!(
        "warning: could not re-execute with {VAR}=0 ({err}); freed memory is returned to the OS lazily"
    );
}

#[cfg(not(target_os = "linux"))]
fn return_freed_memory_promptly() {}
