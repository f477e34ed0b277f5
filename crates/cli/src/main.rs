//! `kinject`: Linkerd-style automatic proxy injection for Kubernetes.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

// The CLI allocates many small JSON/YAML nodes from several threads; glibc's
// allocator spent a quarter of `kinject inject`'s time on them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod inject_cmd;
mod manifest;
mod report;

#[derive(Parser, Debug)]
#[command(name = "kinject", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Add the Linkerd proxy to the workloads in Kubernetes manifests (offline).
    ///
    /// Prints the manifests with every injectable pod template meshed, and a
    /// report on stderr. Documents that cannot be injected pass through
    /// unchanged. On any error nothing is printed to stdout and the exit code is 1.
    Inject(Box<inject_cmd::InjectArgs>),
    /// Remove what `kinject inject` added (offline).
    Uninject(inject_cmd::UninjectArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inject(args) => inject_cmd::inject(args),
        Command::Uninject(args) => inject_cmd::uninject(args),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
