//! Interactive mode in a real terminal (tmux): prompt, pipelines, Tab
//! completion of job names, Ctrl-C, history, reconnecting, Ctrl-D.

mod support;

use support::fake_console::{status_line, FakeConsole, PID};
use support::tmux::{self, Tmux};
use support::CLIENT;

const GIF: &str = "GDExamples::Convert::convert_to_gif";
const JPEG: &str = "GDExamples::Convert::convert_to_jpeg";

/// Whether the cursor sits at an empty `console> ` prompt.
fn at_prompt(screen: &str) -> bool {
    screen.lines().rev().find(|line| !line.trim().is_empty()) == Some("console>")
}

fn tmux_or_skip(test: &str) -> bool {
    if tmux::available() {
        return true;
    }
    println!("skipping {test}: tmux is not on PATH");
    false
}

#[test]
fn pipeline_completion_ctrl_c_history_and_ctrl_d() {
    if !tmux_or_skip("pipeline_completion_ctrl_c_history_and_ctrl_d") {
        return;
    }
    let server = FakeConsole::start(&[GIF, JPEG]);
    let home = tempfile::tempdir().unwrap();
    let history = home.path().join("history");
    let history_arg = history.to_str().unwrap();
    let term = Tmux::start(
        CLIENT,
        &["--history", history_arg, "--server", server.address()],
    );
    term.wait_for("the first prompt", at_prompt);

    // Ctrl-C drops the typed line: it must never reach the server.
    term.type_text("shutdown");
    term.wait_for("the typed line", |s| s.contains("console> shutdown"));
    term.press("C-c");
    term.wait_for("a fresh prompt after Ctrl-C", at_prompt);

    term.type_text("status | grep jpeg");
    term.press("Enter");
    let jpeg_line = format!("{}> {}", server.address(), status_line(JPEG));
    let screen = term.wait_for("the filtered status", |s| {
        s.contains(jpeg_line.trim_end()) && at_prompt(s)
    });
    assert!(
        !screen.contains(&format!("{}> {GIF}", server.address())),
        "grep let gif through:\n{screen}"
    );

    // Job names come from `status`; Tab completes the unique one.
    term.type_text("show GDExamples::Convert::convert_to_j");
    term.press("Tab");
    term.wait_for("the completed job name", |s| {
        s.contains(&format!("console> show {JPEG}"))
    });
    term.press("Enter");
    let pid_line = format!("{}> {PID}", server.address());
    term.wait_for("the answer to show", |s| {
        s.contains(&pid_line) && at_prompt(s)
    });

    term.press("C-d");
    assert_eq!(term.wait_for_exit(), 0, "Ctrl-D should leave with status 0");

    let received = server.received();
    assert!(received.contains(&format!("show {JPEG}")), "{received:?}");
    assert!(
        !received.iter().any(|line| line.contains("shutdown")),
        "{received:?}"
    );
    let saved = std::fs::read_to_string(&history).expect("the history file was written");
    for command in ["status | grep jpeg", &format!("show {JPEG}")] {
        assert!(
            saved.lines().any(|line| line == command),
            "{command:?} not in {saved:?}"
        );
    }
}

#[test]
fn lost_connections_are_reported_and_reconnected() {
    if !tmux_or_skip("lost_connections_are_reported_and_reconnected") {
        return;
    }
    let server = FakeConsole::start(&[GIF]);
    let home = tempfile::tempdir().unwrap();
    let history = home.path().join("history");
    let term = Tmux::start(
        CLIENT,
        &[
            "--history",
            history.to_str().unwrap(),
            "--server",
            server.address(),
        ],
    );
    term.wait_for("the first prompt", at_prompt);
    let gif_line = format!("{}> {GIF}", server.address());

    // The server dies in the middle of a command.
    term.type_text("crash");
    term.press("Enter");
    let lost = format!(
        "{}: connection lost, will reconnect on the next command",
        server.address()
    );
    term.wait_for("the lost connection report", |s| {
        s.contains(&lost) && at_prompt(s)
    });
    term.type_text("status");
    term.press("Enter");
    term.wait_for("status after reconnecting", |s| {
        s.contains(&gif_line) && at_prompt(s)
    });

    // The server restarts while the console sits at the prompt.
    server.drop_connections();
    term.type_text("show ");
    term.press("Tab");
    term.wait_for("a job name completed before the restart", |s| {
        s.contains(&format!("console> show {GIF}"))
    });
    term.press("Enter");
    let pid_line = format!("{}> {PID}", server.address());
    let screen = term.wait_for("show after the restart", |s| {
        s.contains(&pid_line) && at_prompt(s)
    });
    assert!(
        screen.contains("closed the connection, reconnecting"),
        "{screen}"
    );

    term.type_text("quit");
    term.press("Enter");
    assert_eq!(term.wait_for_exit(), 0, "quit should leave with status 0");
}

#[test]
fn the_token_from_the_environment_is_sent_again_after_a_reconnect() {
    if !tmux_or_skip("the_token_from_the_environment_is_sent_again_after_a_reconnect") {
        return;
    }
    let server = FakeConsole::with_token(&[GIF], "s3cret");
    let home = tempfile::tempdir().unwrap();
    let history = home.path().join("history");
    let term = Tmux::start(
        "env",
        &[
            "GEARMAN_DRIVER_TOKEN=s3cret",
            CLIENT,
            "--history",
            history.to_str().unwrap(),
            "--server",
            server.address(),
        ],
    );
    term.wait_for("the first prompt", at_prompt);
    let gif_line = format!("{}> {GIF}", server.address());
    term.type_text("status");
    term.press("Enter");
    term.wait_for("status", |s| s.contains(&gif_line) && at_prompt(s));

    server.drop_connections();
    term.type_text("show ");
    term.press("Tab");
    term.wait_for("a job name completed", |s| {
        s.contains(&format!("console> show {GIF}"))
    });
    term.press("Enter");
    let pid_line = format!("{}> {PID}", server.address());
    let screen = term.wait_for("show after the reconnect", |s| {
        s.contains(&pid_line) && at_prompt(s)
    });
    assert!(!screen.contains("unauthorized"), "{screen}");
    term.type_text("quit");
    term.press("Enter");
    assert_eq!(term.wait_for_exit(), 0);

    let received = server.received();
    let auths = received.iter().filter(|l| *l == "auth s3cret").count();
    assert_eq!(auths, 2, "once per connection: {received:?}");
    assert_eq!(received[0], "auth s3cret", "{received:?}");
    let reconnect = received.iter().rposition(|l| l == "auth s3cret").unwrap();
    assert_eq!(
        received[reconnect + 1],
        format!("show {GIF}"),
        "{received:?}"
    );
}

#[test]
fn a_token_file_in_interactive_mode() {
    if !tmux_or_skip("a_token_file_in_interactive_mode") {
        return;
    }
    let server = FakeConsole::with_token(&[GIF, JPEG], "s3cret");
    let home = tempfile::tempdir().unwrap();
    let token = home.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let history = home.path().join("history");
    let term = Tmux::start(
        CLIENT,
        &[
            "--token-file",
            token.to_str().unwrap(),
            "--history",
            history.to_str().unwrap(),
            "--server",
            server.address(),
        ],
    );
    term.wait_for("the first prompt", at_prompt);
    // Job names come from `status`, which only an authorized connection gets.
    term.type_text("set_processes GDExamples::Convert::convert_to_j");
    term.press("Tab");
    term.wait_for("the completed job name", |s| {
        s.contains(&format!("console> set_processes {JPEG}"))
    });
    term.type_text(" 1 2");
    term.press("Enter");
    let ok = format!("{}> OK", server.address());
    term.wait_for("OK", |s| s.contains(&ok) && at_prompt(s));
    term.press("C-d");
    assert_eq!(term.wait_for_exit(), 0);
    assert_eq!(server.received()[0], "auth s3cret");
}
