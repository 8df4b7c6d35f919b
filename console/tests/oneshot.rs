//! One-shot mode against fake console servers: what is printed, with which
//! prefixes, and the exit status scripts rely on.

mod support;

use std::time::Duration;

use support::fake_console::{status_line, FakeConsole, PID};
use support::{run_client, unused_address};

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
