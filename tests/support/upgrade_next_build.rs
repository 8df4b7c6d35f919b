//! `gearman-driver-next`: the driver's own `main`, compiled a second time
//! with the `upgrade-test-build` feature, so that it reports its version as
//! `<version>+next`. tests/upgrade.rs builds it and upgrades running drivers
//! to it; nothing else builds it.

#[path = "../../src/main.rs"]
mod driver;

fn main() -> std::process::ExitCode {
    driver::main()
}
