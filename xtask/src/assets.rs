//! The generated assets of the package: one man page per binary and its
//! completion scripts, laid out as the package's asset list expects them:
//!
//! ```text
//! target/assets/man/gearman-driver.1            (and gearman-driver-run.1, -check.1)
//! target/assets/completions/bash/gearman-driver
//! target/assets/completions/zsh/_gearman-driver
//! target/assets/completions/fish/gearman-driver.fish
//! ```
//! (and the same for `gearman-driver-console`).

use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// Where `cargo deb` finds them (see `Cargo.toml`).
pub fn dir(root: &Path) -> PathBuf {
    root.join("target").join("assets")
}

/// The binaries' command-line definitions, as their `main` parses them.
fn commands() -> [clap::Command; 2] {
    [
        gearman_driver::config::Cli::command(),
        gearman_driver_console::cli::Cli::command(),
    ]
}

pub fn write_all(out: &Path) -> Result<(), String> {
    for cmd in commands() {
        write_man_page(out, cmd.clone())?;
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            write_completion(out, cmd.clone(), shell)?;
        }
    }
    eprintln!(
        "xtask: man pages and completions written to {}",
        out.display()
    );
    Ok(())
}

/// The binary's page, and one per subcommand (`gearman-driver-run.1`), which
/// the page's SUBCOMMANDS section names.
fn write_man_page(out: &Path, cmd: clap::Command) -> Result<(), String> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let pages = std::iter::once(cmd.clone()).chain(
        cmd.get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            .cloned(),
    );
    for page_cmd in pages {
        let man = crate::man::Page::new(page_cmd);
        let name = man.file_name();
        let page = man.render().map_err(|e| format!("man page {name}: {e}"))?;
        write(&out.join("man").join(name), &page)?;
    }
    Ok(())
}

fn write_completion(out: &Path, cmd: clap::Command, shell: Shell) -> Result<(), String> {
    let name = cmd.get_name().to_string();
    let mut cmd = without_hidden_subcommands(&cmd);
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, &name, &mut script);
    if shell == Shell::Bash {
        script = fix_bash_subcommand_labels(&name, &script).into_bytes();
    }
    // The names each shell's completion loader looks for.
    let file = match shell {
        Shell::Bash => name.clone(),
        Shell::Zsh => format!("_{name}"),
        _ => format!("{name}.fish"),
    };
    write(
        &out.join("completions").join(shell.to_string()).join(file),
        &script,
    )
}

/// clap_complete's bash script spells a subcommand's state two ways when the
/// binary's name has a hyphen (clap-rs/clap#6421): the word loop arrives at
/// `gearman__driver__subcmd__run`, the case arms say
/// `gearman__subcmd__driver__subcmd__run`, so nothing after `run` completes.
/// Spell the arms as the loop does; once clap_complete is fixed this finds
/// nothing to replace.
fn fix_bash_subcommand_labels(name: &str, script: &[u8]) -> String {
    let script = String::from_utf8_lossy(script);
    let wrong = format!("{}__subcmd__", name.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", name.replace('-', "__"));
    script.replace(&wrong, &right)
}

/// clap_complete offers hidden subcommands too (`exec-slot`, which only the
/// driver itself runs), so completions are made from a copy without them.
/// (The copied names are leaked: clap takes `&'static str` without its
/// `string` feature, and this runs once per build of the package.)
fn without_hidden_subcommands(cmd: &clap::Command) -> clap::Command {
    let mut visible = clap::Command::new(cmd.get_name().to_string().leak() as &str)
        .args(cmd.get_arguments().cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|sub| !sub.is_hide_set())
                .map(without_hidden_subcommands),
        );
    if let Some(version) = cmd.get_version() {
        visible = visible.version(version.to_string().leak() as &str);
    }
    if let Some(about) = cmd.get_about() {
        visible = visible.about(about.clone());
    }
    visible
}

fn write(path: &Path, contents: &[u8]) -> Result<(), String> {
    let parent = path.parent().expect("asset paths have a folder");
    fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_completions_know_every_flag() {
        let out = tempfile::tempdir().unwrap();
        write_all(out.path()).unwrap();
        let read = |rel: &str| fs::read_to_string(out.path().join(rel)).unwrap();
        let driver_man = read("man/gearman-driver.1");
        for cmd in commands() {
            let name = cmd.get_name().to_string();
            let man = read(&format!("man/{name}.1"));
            let bash = read(&format!("completions/bash/{name}"));
            let zsh = read(&format!("completions/zsh/_{name}"));
            let fish = read(&format!("completions/fish/{name}.fish"));
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let Some(long) = arg.get_long() else { continue };
                // roff escapes the dashes of flags.
                assert!(
                    man.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                    "{name}.1 lacks --{long}"
                );
                for (shell, script) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
                    assert!(
                        script.contains(long),
                        "{shell} completion of {name} lacks --{long}"
                    );
                }
            }
        }
        for sub in ["run", "check"] {
            assert!(driver_man.contains(&format!("gearman\\-driver\\-{sub}(1)")));
            let page = read(&format!("man/gearman-driver-{sub}.1"));
            assert!(page.contains("\\-\\-namespaces"), "{sub}: {page}");
        }
        assert!(
            !driver_man.contains("gearman\\-driver\\-help"),
            "{driver_man}"
        );
        assert!(!driver_man.contains("exec\\-slot"), "{driver_man}");
        for file in [
            "bash/gearman-driver",
            "zsh/_gearman-driver",
            "fish/gearman-driver.fish",
        ] {
            let script = read(&format!("completions/{file}"));
            assert!(!script.contains("exec-slot"), "{file}");
            assert!(script.contains("check"), "{file}");
        }
    }

    /// What bash offers for `gearman-driver <words> <cur>`, from the script.
    fn bash_offers(script: &Path, words: &[&str], cur: &str) -> String {
        let prev = words.last().unwrap();
        let all: Vec<String> = words
            .iter()
            .chain([&cur])
            .map(|w| format!("'{w}'"))
            .collect();
        let program = format!(
            "source '{}'; fn=$(complete -p gearman-driver | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p'); \
             COMP_WORDS=({}); COMP_CWORD={}; \"$fn\" gearman-driver '{cur}' '{prev}'; \
             echo \"${{COMPREPLY[*]}}\"",
            script.display(),
            all.join(" "),
            words.len()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn bash_completes_flags_before_and_after_the_subcommand() {
        let out = tempfile::tempdir().unwrap();
        write_all(out.path()).unwrap();
        let script = out.path().join("completions/bash/gearman-driver");
        assert_eq!(
            bash_offers(&script, &["gearman-driver"], "--names"),
            "--namespaces"
        );
        assert_eq!(
            bash_offers(&script, &["gearman-driver", "run"], "--log-f"),
            "--log-format"
        );
        assert_eq!(
            bash_offers(&script, &["gearman-driver", "--lib", "w", "check"], "--pid"),
            "--pid-file"
        );
        let subcommands = bash_offers(&script, &["gearman-driver"], "");
        assert!(subcommands.contains("run check"), "{subcommands}");
    }
}
