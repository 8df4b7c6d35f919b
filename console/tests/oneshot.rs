//! One-shot mode against fake console servers: what is printed, with which
//! prefixes, and the exit status scripts rely on.

mod support;

use std::time::Duration;

use support::fake_console::{status_line, FakeConsole, PID};
use support::{run_client, run_client_with_env, unused_address};

const GIF: &str = "GDExamples::Convert::convert_to_gif";
const JPEG: &str = "GDExamples::Convert::convert_to_jpeg";

fn two_servers() -> (FakeConsole, FakeConsole) {
    (
        FakeConsole::start(&[GIF, JPEG]),
        FakeConsole::start(&["Other::job"]),
    )
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn status_from_two_servers_is_prefixed_in_server_order() {
    let (a, b) = two_servers();
    let servers = format!("{} {}", a.address(), b.address());
    let run = run_client(&["--server", &servers, "status"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        lines(&run.stdout),
        [
            format!("{}> {}", a.address(), status_line(GIF)),
            format!("{}> {}", a.address(), status_line(JPEG)),
            format!("{}> {}", b.address(), status_line("Other::job")),
        ]
    );
    assert!(!run.stdout.contains('\r'), "CR left in {:?}", run.stdout);
    assert_eq!(run.stderr, "");
}

#[test]
fn command_words_arrive_as_one_line() {
    let (a, b) = two_servers();
    let run = run_client(&[
        "-s",
        a.address(),
        "-s",
        b.address(),
        "set_processes",
        GIF,
        "2",
        "10",
    ]);
    assert_eq!(a.received(), [format!("set_processes {GIF} 2 10")]);
    assert_eq!(b.received(), [format!("set_processes {GIF} 2 10")]);
    // The second server does not know the job: its ERR decides the status.
    assert_eq!(
        lines(&run.stdout),
        [
            format!("{}> OK", a.address()),
            format!("{}> ERR invalid_job_name: {GIF}", b.address()),
        ]
    );
    assert_eq!(run.code, Some(1), "{run:?}");
}

#[test]
fn err_from_the_servers_exits_1() {
    let (a, b) = two_servers();
    let servers = format!("{},{}", a.address(), b.address());
    let run = run_client(&["--server", &servers, "bad"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        lines(&run.stdout),
        [
            format!("{}> ERR unknown_command: bad", a.address()),
            format!("{}> ERR unknown_command: bad", b.address()),
        ]
    );
}

#[test]
fn an_unreachable_server_exits_2_and_the_others_still_answer() {
    let a = FakeConsole::start(&[GIF]);
    let dead = unused_address();
    let run = run_client(&["--server", &format!("{dead} {}", a.address()), "show", GIF]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(
        lines(&run.stdout),
        [
            format!("{}> {}", a.address(), status_line(GIF)),
            format!("{}> {PID}", a.address()),
        ]
    );
    assert!(
        run.stderr.contains(&format!("{dead}: cannot connect")),
        "stderr should name {dead}: {:?}",
        run.stderr
    );
}

#[test]
fn unreachable_wins_over_err() {
    let a = FakeConsole::start(&[GIF]);
    let dead = unused_address();
    let run = run_client(&["--server", &format!("{} {dead}", a.address()), "bad"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stdout.contains("ERR unknown_command: bad"), "{run:?}");
}

#[test]
fn a_server_that_never_answers_is_given_up_after_the_timeout() {
    let (a, b) = two_servers();
    let servers = format!("{} {}", a.address(), b.address());
    let run = run_client(&["--timeout", "0.5", "--server", &servers, "hang"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);
    for server in [&a, &b] {
        let expected = format!("{}: no answer within 500ms", server.address());
        assert!(run.stderr.contains(&expected), "{:?}", run.stderr);
    }
}

#[test]
fn servers_that_never_answer_cost_one_timeout_between_them() {
    let silent: Vec<FakeConsole> = (0..5).map(|_| FakeConsole::start(&[GIF])).collect();
    let servers: Vec<&str> = silent.iter().map(|s| s.address()).collect();
    let run = run_client(&["--timeout", "1", "--server", &servers.join(" "), "hang"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    for server in &silent {
        let expected = format!("{}: no answer within 1s", server.address());
        assert!(run.stderr.contains(&expected), "{:?}", run.stderr);
    }
    // Asked one after another, five silent servers take at least 5 s.
    assert!(run.took < Duration::from_secs(3), "took {:?}", run.took);
}

#[test]
fn a_server_that_dies_mid_command_exits_2() {
    let a = FakeConsole::start(&[GIF]);
    let run = run_client(&["--server", a.address(), "crash"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("closed the connection"),
        "{:?}",
        run.stderr
    );
}

#[test]
fn quit_ends_at_the_close_without_a_dot() {
    let a = FakeConsole::start(&[GIF]);
    let run = run_client(&["--server", a.address(), "quit"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "");
}

#[test]
fn a_bad_server_address_is_a_usage_error() {
    let run = run_client(&["--server", "localhost:http", "status"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("`http` is not a port"),
        "{:?}",
        run.stderr
    );
}

#[test]
fn help_documents_the_exit_status_and_interactive_features() {
    let run = run_client(&["--help"]);
    assert_eq!(run.code, Some(0));
    for needle in [
        "Exit status",
        "2 wins over 1",
        "--timeout",
        "COMMAND | PIPELINE",
        "Tab completes",
    ] {
        assert!(run.stdout.contains(needle), "--help lacks {needle:?}");
    }
}

/// A token file with `token` on its first line, in a fresh directory.
fn token_file(token: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

#[test]
fn a_token_file_sends_auth_before_the_command() {
    let a = FakeConsole::with_token(&[GIF], "s3cret");
    let (_dir, file) = token_file("s3cret");
    let run = run_client(&["--token-file", &file, "--server", a.address(), "status"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        lines(&run.stdout),
        [format!("{}> {}", a.address(), status_line(GIF))],
        "the answer to auth is not printed"
    );
    assert_eq!(a.received(), ["auth s3cret", "status"]);
}

#[test]
fn the_token_from_the_environment_and_the_file_winning_over_it() {
    let a = FakeConsole::with_token(&[GIF], "s3cret");
    let env = [("GEARMAN_DRIVER_TOKEN", "s3cret")];
    let run = run_client_with_env(&["--server", a.address(), "show", GIF], &env);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        a.received(),
        ["auth s3cret".to_string(), format!("show {GIF}")]
    );

    let b = FakeConsole::with_token(&[GIF], "s3cret");
    let (_dir, file) = token_file("s3cret");
    let wrong_env = [("GEARMAN_DRIVER_TOKEN", "wrong")];
    let run = run_client_with_env(
        &["--token-file", &file, "--server", b.address(), "status"],
        &wrong_env,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(b.received()[0], "auth s3cret");
}

#[test]
fn a_refused_token_exits_1_without_sending_the_command() {
    let a = FakeConsole::with_token(&[GIF], "s3cret");
    let b = FakeConsole::with_token(&[GIF], "wrong");
    let servers = format!("{} {}", a.address(), b.address());
    let env = [("GEARMAN_DRIVER_TOKEN", "wrong")];
    let run = run_client_with_env(&["--server", &servers, "shutdown"], &env);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(a.received(), ["auth wrong"], "shutdown never reached it");
    let expected = format!("{}: the token was refused: ERR unauthorized", a.address());
    assert!(run.stderr.contains(&expected), "{:?}", run.stderr);
    assert_eq!(
        b.received(),
        ["auth wrong", "shutdown"],
        "the other server still got it"
    );
}

#[test]
fn without_a_token_a_guarded_server_answers_unauthorized() {
    let a = FakeConsole::with_token(&[GIF], "s3cret");
    let run = run_client(&["--server", a.address(), "status"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        lines(&run.stdout),
        [format!("{}> ERR unauthorized", a.address())]
    );
}

#[test]
fn an_empty_or_missing_token_file_is_a_usage_error() {
    let a = FakeConsole::with_token(&[GIF], "s3cret");
    let (dir, file) = token_file("");
    let run = run_client(&["--token-file", &file, "--server", a.address(), "status"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("holds no token"), "{:?}", run.stderr);
    let missing = dir.path().join("missing");
    let run = run_client(&[
        "--token-file",
        missing.to_str().unwrap(),
        "--server",
        a.address(),
        "status",
    ]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(
        run.stderr.contains("cannot read the token file"),
        "{:?}",
        run.stderr
    );
    assert!(a.received().is_empty());
}

#[test]
fn unix_sockets_by_prefix_or_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.sock");
    let server = FakeConsole::on_unix_socket(&[GIF], &path);
    let path = path.to_str().unwrap();
    assert_eq!(server.address(), format!("unix:{path}"));
    for server in [format!("unix:{path}"), path.to_string()] {
        let run = run_client(&["--server", &server, "status"]);
        assert_eq!(run.code, Some(0), "{run:?}");
        assert_eq!(
            lines(&run.stdout),
            [format!("unix:{path}> {}", status_line(GIF))]
        );
    }
    let gone = dir.path().join("gone.sock");
    let run = run_client(&["--server", gone.to_str().unwrap(), "status"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("cannot connect"), "{:?}", run.stderr);
}
