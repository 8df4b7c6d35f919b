//! A detached tmux session running the client in a real terminal, so tests
//! can type, press keys and read the screen as a user would.
//!
//! Each session has its own tmux server on a socket in a temporary
//! directory, and [`Drop`] kills that server, so a failing test leaves no
//! tmux behind and tests cannot see each other's panes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const SESSION: &str = "console";
const POLL: Duration = Duration::from_millis(50);
/// Longest wait for anything to show up on the screen.
pub const SCREEN_LIMIT: Duration = Duration::from_secs(20);

pub struct Tmux {
    dir: TempDir,
}

/// Whether tmux can be run here; tests that need it skip without it.
pub fn available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl Tmux {
    /// Starts `program args` in a detached 200x50 pane that stays on
    /// screen after the program exits.
    pub fn start(program: &str, args: &[&str]) -> Tmux {
        let tmux = Tmux {
            dir: tempfile::tempdir().unwrap(),
        };
        let status_file = tmux.status_file();
        let mut command = vec!["new-session", "-d", "-s", SESSION, "-x", "200", "-y", "50"];
        // The exit status comes through a file written by a wrapping shell:
        // tmux sometimes leaves an exited program unreaped, and then its
        // `pane_dead_status` never shows up.
        command.extend_from_slice(&[
            "sh",
            "-c",
            r#"status_file=$1; shift; "$@"; echo $? > "$status_file""#,
            "sh",
            status_file.to_str().unwrap(),
            program,
        ]);
        command.extend_from_slice(args);
        // Chained in one tmux call, so even a client that dies at once
        // leaves its pane behind to look at.
        command.extend_from_slice(&[
            ";",
            "set-option",
            "-w",
            "-t",
            SESSION,
            "remain-on-exit",
            "on",
        ]);
        tmux.run(&command);
        tmux
    }

    /// Types `text` literally, without pressing Enter.
    pub fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", SESSION, "-l", text]);
    }

    /// Presses keys by tmux name: `Enter`, `Tab`, `C-c`, `C-d`.
    pub fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", SESSION, key]);
    }

    /// The visible screen, trailing blanks trimmed from each line.
    pub fn screen(&self) -> String {
        let output = self.run(&["capture-pane", "-p", "-t", SESSION]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls the screen until `ready` holds, and returns that screen;
    /// panics with the last screen after [`SCREEN_LIMIT`].
    pub fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_LIMIT;
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("waited {SCREEN_LIMIT:?} for {what}; the screen shows:\n{screen}");
            }
            thread::sleep(POLL);
        }
    }

    /// Waits for the program to exit and returns its exit status.
    pub fn wait_for_exit(&self) -> i32 {
        let deadline = Instant::now() + SCREEN_LIMIT;
        loop {
            let written = fs::read_to_string(self.status_file()).unwrap_or_default();
            if written.ends_with('\n') {
                return written.trim().parse().expect("a numeric exit status");
            }
            if Instant::now() > deadline {
                panic!(
                    "the program did not exit within {SCREEN_LIMIT:?}; the screen shows:\n{}",
                    self.screen()
                );
            }
            thread::sleep(POLL);
        }
    }

    fn status_file(&self) -> PathBuf {
        self.dir.path().join("exit-status")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("tmux.sock")
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = tmux_command(&self.socket())
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tmux_command(&self.socket())
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// tmux on a private socket, ignoring the user's configuration.
fn tmux_command(socket: &Path) -> Command {
    let mut command = Command::new("tmux");
    command.arg("-S").arg(socket).arg("-f").arg("/dev/null");
    command
}
