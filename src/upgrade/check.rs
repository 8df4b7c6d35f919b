//! Before anything changes, the new binary must show it can take over:
//! it runs (it exists and is executable), it reads the running driver's
//! hand-over format (`handover-formats`), and it passes `check` with the
//! same flags, i.e. the configuration as it is on disk now loads. Each runs
//! as a child of its own, off the supervisor's loop, within [`LIMIT`].

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{state, Origin};

/// How long each run of the new binary may take.
pub const LIMIT: Duration = Duration::from_secs(60);
/// Lines of the new binary's error output quoted in a refusal.
const QUOTED_LINES: usize = 5;

/// `Ok` with nothing to add, or why the upgrade is refused.
pub async fn run(origin: &Origin) -> Result<Vec<String>, String> {
    let exe = &origin.exe;
    let formats = output_of(origin, vec!["handover-formats".into()]).await?;
    if !formats.status.success() {
        return Err(format!(
            "{} cannot take over: it does not know the hand-over (too old?)",
            exe.display()
        ));
    }
    let text = String::from_utf8_lossy(&formats.stdout);
    if !reads_format(&text, state::FORMAT) {
        return Err(format!(
            "{} cannot take over: it reads hand-over formats {}, this driver writes {}",
            exe.display(),
            text.trim(),
            state::FORMAT
        ));
    }
    let checked = output_of(origin, origin.check_args()).await?;
    if !checked.status.success() {
        let errors = String::from_utf8_lossy(&checked.stderr);
        let first: Vec<&str> = errors
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(QUOTED_LINES)
            .collect();
        return Err(format!(
            "{} check failed: {}",
            exe.display(),
            first.join("; ")
        ));
    }
    Ok(Vec::new())
}

/// Whether `handover-formats` output (numbers, one a line) lists `format`.
fn reads_format(text: &str, format: u32) -> bool {
    text.lines().any(|l| l.trim().parse() == Ok(format))
}

async fn output_of(
    origin: &Origin,
    args: Vec<std::ffi::OsString>,
) -> Result<std::process::Output, String> {
    let exe = &origin.exe;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    crate::supervisor::spawn::hide_service_manager(command.as_std_mut());
    match tokio::time::timeout(LIMIT, command.output()).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(err)) => Err(format!("cannot run {}: {err}", exe.display())),
        Err(_) => Err(format!(
            "{} did not finish within {}s",
            exe.display(),
            LIMIT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_must_be_listed() {
        assert!(reads_format("1\n2\n", 1));
        assert!(!reads_format("2\n", 1));
        assert!(!reads_format("", 1));
    }

    #[tokio::test]
    async fn a_missing_or_not_executable_binary_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Origin {
            exe: dir.path().join("gone"),
            argv: vec!["gone".into()],
        };
        let why = run(&missing).await.unwrap_err();
        assert!(
            why.starts_with("cannot run ") && why.contains("gone"),
            "{why}"
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        let why = run(&Origin {
            exe: plain,
            argv: vec!["plain".into()],
        })
        .await
        .unwrap_err();
        assert!(why.contains("Permission denied"), "{why}");
    }
}
