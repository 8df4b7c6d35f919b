//! The `gearman-driver-console` binary; everything lives in the library.

use std::process::ExitCode;

use clap::Parser;
use gearman_driver_console::cli::Cli;

fn main() -> ExitCode {
    gearman_driver_console::run(&Cli::parse())
}
