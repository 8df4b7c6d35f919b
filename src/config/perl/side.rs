//! Finding the Perl side of the driver: `gearman-driver-perl` and its
//! `lib/` (the `Gearman::Driver::Worker` base class and the runner), and the
//! `perl` that runs them.
//!
//! It must be found without configuration wherever the driver runs from: the
//! installed package (`/usr/share/gearman-driver/perl`, or `share/` beside the
//! binary's `bin/` under any prefix) and the source tree (`workers/perl`,
//! found from the binary in `target/<profile>/` or from where the crate was
//! built). `perl_lib` (`--perl-lib`) names it when it is anywhere else.

use std::path::{Path, PathBuf};

use crate::config::jobs::resolve_program;

/// The runner script's name, in the Perl side's folder.
pub const RUNNER: &str = "gearman-driver-perl";
/// Where the installed package puts the Perl side.
pub const INSTALLED: &str = "/usr/share/gearman-driver/perl";

/// How to run the Perl side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerlSide {
    pub perl: PathBuf,
    pub runner: PathBuf,
}

impl PerlSide {
    /// The Perl side in `explicit` (`perl_lib`), else the first candidate
    /// that holds one; and `perl` from PATH.
    pub fn locate(explicit: Option<&Path>) -> Result<PerlSide, String> {
        let dir = match explicit {
            Some(dir) if holds_perl_side(dir) => dir.to_path_buf(),
            Some(dir) => {
                return Err(format!(
                    "perl_lib {} does not hold {RUNNER} and lib/Gearman/Driver/Worker.pm",
                    dir.display()
                ))
            }
            None => {
                let candidates = candidates();
                let Some(found) = candidates.iter().find(|d| holds_perl_side(d)) else {
                    let looked: Vec<String> =
                        candidates.iter().map(|d| d.display().to_string()).collect();
                    return Err(format!(
                        "the Perl side of gearman-driver ({RUNNER}) was not found (looked in {}); \
                         set perl_lib or --perl-lib to the folder holding it",
                        looked.join(", ")
                    ));
                };
                found.clone()
            }
        };
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        let perl = resolve_program("perl", Path::new(".")).map_err(|_| {
            "perl was not found on PATH; Perl worker classes need perl with Moose, \
             MooseX::MethodAttributes and JSON::XS (Debian: libmoose-perl, \
             libmoosex-methodattributes-perl, libjson-xs-perl)"
                .to_string()
        })?;
        Ok(PerlSide {
            perl,
            runner: dir.join(RUNNER),
        })
    }

    /// The Perl side's folder.
    pub fn dir(&self) -> &Path {
        self.runner.parent().unwrap_or(Path::new("."))
    }
}

fn holds_perl_side(dir: &Path) -> bool {
    dir.join(RUNNER).is_file() && dir.join("lib/Gearman/Driver/Worker.pm").is_file()
}

/// Where to look, most specific first: beside the running binary (an
/// installed prefix's `share/`, or the source tree the binary was built in),
/// then the tree this crate was compiled from, then the package's path.
pub fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(bin_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        if let Some(prefix) = bin_dir.parent() {
            out.push(prefix.join("share/gearman-driver/perl"));
        }
        // target/<profile>/gearman-driver, or target/<profile>/deps/<test>.
        for up in bin_dir.ancestors().skip(1).take(3) {
            out.push(up.join("workers/perl"));
        }
    }
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/perl"));
    out.push(PathBuf::from(INSTALLED));
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_tree_and_the_package_are_candidates() {
        let c = candidates();
        assert!(c.contains(&Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/perl")));
        assert!(c.contains(&PathBuf::from(INSTALLED)));
    }

    #[test]
    fn found_in_the_source_tree_without_configuration() {
        let side = PerlSide::locate(None).expect("workers/perl of this tree");
        assert!(side.runner.ends_with("workers/perl/gearman-driver-perl"));
    }

    #[test]
    fn an_explicit_folder_without_the_runner_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = PerlSide::locate(Some(tmp.path())).unwrap_err();
        assert!(err.contains("does not hold gearman-driver-perl"), "{err}");
    }
}
