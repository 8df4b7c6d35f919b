//! Project chores, run as `cargo xtask <task>` (an alias in `.cargo/config.toml`):
//!
//! - `cargo xtask assets`: man pages and bash/zsh/fish completions for
//!   `gearman-driver` and `gearman-driver-console`, generated from their clap
//!   definitions (so they never drift from `--help`), into `target/assets/`.
//! - `cargo xtask deb [ARGS]`: the assets, then `cargo deb` (ARGS go to it),
//!   which builds both binaries and packages them with the assets listed in
//!   `Cargo.toml`'s `[package.metadata.deb]`.
//!
//! The generator lives here rather than in a hidden subcommand so that the
//! shipped binaries carry none of it, and rather than in a build script
//! because build scripts may only write below their own `OUT_DIR`.

mod assets;
mod man;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "gearman-driver's project chores")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Write man pages and shell completions into target/assets/.
    Assets {
        /// Write them here instead.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Write the assets, then build the Debian package with `cargo deb`.
    Deb {
        /// Passed on to `cargo deb`, e.g. `--output DIR` or `--profile NAME`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_deb_args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let root = workspace_root();
    let result = match Cli::parse().task {
        Task::Assets { out } => assets::write_all(&out.unwrap_or_else(|| assets::dir(&root))),
        Task::Deb { cargo_deb_args } => {
            assets::write_all(&assets::dir(&root)).and_then(|()| cargo_deb(&root, &cargo_deb_args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ sits in the workspace root")
        .to_path_buf()
}

/// `cargo deb -p gearman-driver ARGS` in the workspace root.
fn cargo_deb(root: &Path, args: &[String]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["deb", "--package", "gearman-driver"])
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo deb: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo deb failed ({status}); it is installed with `cargo install cargo-deb --locked`"
        ))
    }
}
