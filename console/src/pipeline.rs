//! `COMMAND | PIPELINE`: feeding answer lines to a shell pipeline, so the
//! operator can filter with the tools they already know.

use std::io::{self, Write};
use std::process::{Command, ExitStatus, Stdio};

/// Runs `sh -c pipeline` with `lines` on its standard input, one per line;
/// its output goes straight to the terminal.
pub fn run_pipeline(pipeline: &str, lines: &[String]) -> io::Result<ExitStatus> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(pipeline)
        .stdin(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was set to piped");
    let written = lines.iter().try_for_each(|line| writeln!(stdin, "{line}"));
    // Closing stdin is what lets the pipeline finish.
    drop(stdin);
    let status = child.wait()?;
    match written {
        // A pipeline need not read everything (`head -1`).
        Err(err) if err.kind() != io::ErrorKind::BrokenPipe => Err(err),
        _ => Ok(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn the_pipeline_sees_every_line() {
        let input = lines(&["a> one", "a> two", "b> three"]);
        let status = run_pipeline("test \"$(grep -c '> t')\" = 2", &input).unwrap();
        assert!(status.success());
        let status = run_pipeline("test \"$(wc -l)\" = 3", &input).unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_pipeline_that_stops_reading_early_is_fine() {
        let input = vec!["x".repeat(1000); 1000];
        assert!(run_pipeline("exec true", &input).unwrap().success());
    }

    #[test]
    fn the_pipeline_exit_status_is_reported() {
        assert_eq!(run_pipeline("exit 3", &[]).unwrap().code(), Some(3));
    }
}
