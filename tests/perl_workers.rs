//! Perl worker classes written for Gearman::Driver, run by gearman-driver:
//! a real gearmand, the real `gearman` CLI as the client, real perl with
//! Moose and MooseX::MethodAttributes, and the Perl side found in this
//! source tree without configuration.

mod common;
use common::*;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use gearman_driver::protocol::{WorkerCodec, WorkerFrame};
use tokio_util::codec::Decoder;

/// The blog post's class, as printed there (the listing stops before the
/// customary `1;`, which Perl needs for `require`).
const BLOG_CONVERT: &str = r#"package GDExamples::Convert;

use base qw(Gearman::Driver::Worker);
use Moose;
use Imager;

sub process_name {
    my ( $self, $orig, $job_name ) = @_;
    return "$orig ($job_name)";
}

sub convert_to_jpeg : Job : MinProcesses(0) : MaxProcesses(5) {
    my ( $self, $job, $workload ) = @_;
    return _convert( $workload, 'jpeg' );
}

sub convert_to_gif : Job : MinProcesses(0) : MaxProcesses(5) {
    my ( $self, $job, $workload ) = @_;
    return _convert( $workload, 'gif' );
}

sub _convert {
    my ( $in_data, $format ) = @_;
    my $img = Imager->new();
    my $out_data;
    $img->read( data => $in_data ) or die;
    $img->write( data => \$out_data, type => $format ) or die;
    return $out_data;
}

1;
"#;

/// A stand-in for Imager with the calls the post makes: `read` knows PNG and
/// GIF headers (and fails on anything else), `write` describes the result.
const IMAGER_STAND_IN: &str = r#"package Imager;
use strict;
use warnings;
sub new { return bless {}, shift }
sub read {
    my ( $self, %args ) = @_;
    my $data = $args{data};
    if ( $data =~ /\A\x89PNG\r\n\x1a\n.{4}IHDR(.{4})(.{4})/s ) {
        @$self{qw(from width height)} = ( 'png', unpack( 'N', $1 ), unpack( 'N', $2 ) );
        return $self;
    }
    if ( $data =~ /\AGIF8[79]a(.{2})(.{2})/s ) {
        @$self{qw(from width height)} = ( 'gif', unpack( 'v', $1 ), unpack( 'v', $2 ) );
        return $self;
    }
    return;
}
sub write {
    my ( $self, %args ) = @_;
    ${ $args{data} } = "$args{type} $self->{width}x$self->{height} from $self->{from}";
    return $self;
}
1;
"#;

/// Every job hook and `$job` call.
const HOOKS: &str = r#"package PerlT::Hooks;
use base qw(Gearman::Driver::Worker);
use Moose;

sub prefix { return 'hooks_' }

sub process_name {
    my ( $self, $orig, $job_name ) = @_;
    return "perl-hooks-worker [$job_name]";
}

sub begin {
    my ( $self, $job, $workload ) = @_;
    $job->send_data("begin($workload);");
}

sub end {
    my ( $self, $job, $workload ) = @_;
    $job->send_data("end($workload);");
}

sub talk : Job {
    my ( $self, $job, $workload ) = @_;
    $job->send_status( 1, 2 );
    $job->send_warning('careful');
    $job->send_data('data;');
    print "printed to stdout\n";
    return join '|', 'result', $job->function_name, ( $job->handle =~ /^H:/ ? 'handle' : 'no handle' ),
      $job->unique, $self->server;
}

sub fail : Job {
    my ( $self, $job, $workload ) = @_;
    die "no such thing: $workload\n";
}

# Exits the first time (its job goes back to gearmand), answers after that.
sub quit : Job {
    my ( $self, $job, $workload ) = @_;
    unless ( -e 'quit.marker' ) {
        open my $fh, '>', 'quit.marker' or die $!;
        close $fh;
        exit 3;
    }
    return "pid $$";
}

sub wide : Job {
    return "smile \x{263a}";
}

1;
"#;

/// Encode and Decode, by default name and by explicit name.
const CODEC: &str = r#"package PerlT::Codec;
use base qw(Gearman::Driver::Worker);
use Moose;
use JSON::XS ();

sub encode { my ( $self, $result ) = @_; return JSON::XS->new->canonical->encode($result) }
sub decode { my ( $self, $workload ) = @_; return JSON::XS::decode_json($workload) }
sub to_kv { my ( $self, $r ) = @_; return join ',', map { "$_=$r->{$_}" } sort keys %$r }
sub from_kv { my ( $self, $w ) = @_; return { map { split /=/, $_, 2 } split /,/, $w } }

sub add : Job : Encode : Decode {
    my ( $self, $job, $args ) = @_;
    return { sum => $args->{a} + $args->{b}, raw => $job->workload };
}

sub swap : Job : Encode(to_kv) : Decode(from_kv) {
    my ( $self, $job, $pairs ) = @_;
    return { map { ( $pairs->{$_} => $_ ) } keys %$pairs };
}

sub plain : Job {
    my ( $self, $job, $workload ) = @_;
    return $workload eq $job->workload ? "same: $workload" : 'differs';
}

1;
"#;

/// Process counts from every source: own attributes (and the old spellings),
/// the class's defaults and overrides, process groups, the driver config's
/// job_runtime_attributes; worker_options in the constructor; a Timeout.
const LIMITS: &str = r#"package PerlT::Limits;
use base qw(Gearman::Driver::Worker);
use Moose;

has 'greeting' => ( is => 'ro', default => 'no greeting' );
has 'shared'   => ( is => 'ro', default => 'nothing shared' );

sub default_attributes { return { MinProcesses => 0 } }
sub override_attributes { return { MaxProcesses => 4 } }

sub dflt : Job { return 'dflt' }

sub own : Job : MinProcesses(2) : MaxProcesses(9) { return 'own' }

sub childs : Job : MinChilds(1) { return 'childs' }

sub left : Job : ProcessGroup(pair) : MinProcesses(1) { return "left $$" }
sub right : Job : ProcessGroup(pair) { return "right $$" }

sub rt : Job : MinProcesses(3) { return 'rt' }

sub opts : Job : MinProcesses(1) {
    my ($self) = @_;
    return join ' / ', $self->greeting, $self->shared;
}

sub slow : Job : Timeout(1) {
    sleep 30;
    return 'too late';
}

sub helper { return 'not a job' }

1;
"#;

/// The runner, from this source tree.
fn runner() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/perl/gearman-driver-perl")
}

/// `gearman` (the C CLI) as a client: its stdout, stderr and success.
fn gearman_cli(gearmand: &Gearmand, args: &[&str], input: &[u8]) -> (String, String, bool) {
    let mut child = Command::new("gearman")
        .args(["-h", "127.0.0.1", "-p", &gearmand.port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gearman CLI (Debian package gearman-tools)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let status = wait_for(Duration::from_secs(60), "the gearman CLI to finish", || {
        child.try_wait().unwrap()
    });
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (out, err, status.success())
}

/// `gearman-driver check`: exit code, stdout, stderr.
fn check(lib: &Lib, namespaces: &str, extra: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gearman-driver"))
        .arg("check")
        .arg("--lib")
        .arg(lib.path())
        .args(["--namespaces", namespaces, "--server", "127.0.0.1:1"])
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A 3x2 PNG as far as its header goes.
fn png() -> Vec<u8> {
    let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    data.extend_from_slice(&3u32.to_be_bytes());
    data.extend_from_slice(&2u32.to_be_bytes());
    data.extend_from_slice(b"\x08\x02\0\0\0rest of the image");
    data
}

/// A process's title, as `ps` shows it.
fn title(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn columns(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// min and max of a job, from `status`.
fn limits(driver: &Driver, job: &str) -> (u32, u32) {
    let c = columns(&driver.status_line(job));
    (c[1].parse().unwrap(), c[2].parse().unwrap())
}

fn one_pid(driver: &Driver, job: &str) -> u32 {
    wait_for(
        Duration::from_secs(20),
        &format!("one process of {job}"),
        || match driver.pids(job).as_slice() {
            [pid] if pid_alive(*pid) => Some(*pid),
            _ => None,
        },
    )
}

#[test]
fn the_blog_posts_convert_class_runs_unchanged() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("GDExamples/Convert.pm", BLOG_CONVERT);
    lib.file("Imager.pm", IMAGER_STAND_IN);
    let driver = Driver::start(
        &lib,
        &gearmand,
        "GDExamples",
        &["--interval", "0.5", "--max-idle-time", "60"],
    );
    let jpeg = "GDExamples::Convert::convert_to_jpeg";
    let gif = "GDExamples::Convert::convert_to_gif";

    // As in the post: listed with min 0, max 5, and no process before work comes.
    let status = driver.console("status");
    assert_eq!(status.len(), 2, "{status:?}");
    for (line, job) in status.iter().zip([gif, jpeg]) {
        assert_eq!(
            columns(line)[..4],
            [job, "0", "5", "0"],
            "status line {line:?}"
        );
    }

    let (out, err, ok) = gearman_cli(&gearmand, &["-f", jpeg], &png());
    assert!(ok, "{err}");
    assert_eq!(out, "jpeg 3x2 from png");
    let (out, err, ok) = gearman_cli(&gearmand, &["-f", gif], &png());
    assert!(ok, "{err}");
    assert_eq!(out, "gif 3x2 from png");

    // Started on demand, one for one job (though it takes a while to load),
    // and titled by process_name.
    let pid = match driver.pids(jpeg).as_slice() {
        [pid] => *pid,
        other => panic!("{other:?}\n{}", driver.log_text()),
    };
    assert!(
        title(pid).ends_with(&format!("({jpeg})")),
        "process title: {:?}",
        title(pid)
    );

    // `read(...) or die` on a workload that is no image fails the job.
    let (_, _, ok) = gearman_cli(&gearmand, &["-f", gif], b"not an image");
    assert!(!ok, "the CLI reports the failed job");
    let line = driver.status_line(gif);
    assert!(
        line.contains("ERROR: Died at ") && line.contains("GDExamples/Convert.pm line"),
        "{line}"
    );
    assert!(
        !driver.status_line(jpeg).contains("ERROR"),
        "only the failed job shows it"
    );
}

#[test]
fn hooks_and_the_job_object_reach_the_client() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    let module = lib.file("PerlT/Hooks.pm", HOOKS);
    let driver = Driver::start(&lib, &gearmand, "PerlT", &["--interval", "0.5"]);

    // prefix, begin and end around the job, data, warning, status, unique, server.
    let (out, err, ok) = gearman_cli(&gearmand, &["-f", "hooks_talk", "-u", "u-1"], b"w");
    assert!(ok, "{err}");
    let expected = format!(
        "begin(w);data;end(w);result|hooks_talk|handle|u-1|{}",
        gearmand.addr()
    );
    assert!(out.contains(&expected), "{out:?} should hold {expected:?}");
    let reply = submit(&gearmand, "hooks_talk", b"x");
    assert_eq!(
        reply.data,
        vec![&b"begin(x);"[..], &b"data;"[..], &b"end(x);"[..]]
    );
    assert_eq!(reply.warnings, vec![&b"careful"[..]]);
    assert_eq!(reply.statuses, vec![("1".to_string(), "2".to_string())]);
    driver.wait_log(
        "[hooks_talk] STDERR: printed to stdout",
        Duration::from_secs(5),
    );

    // A method that dies fails the job with its message; end still runs.
    let (_, _, ok) = gearman_cli(&gearmand, &["-f", "hooks_fail"], b"spoon");
    assert!(!ok, "the CLI reports the failed job");
    let reply = submit(&gearmand, "hooks_fail", b"fork");
    assert_eq!(reply.result, None);
    assert_eq!(reply.data, vec![&b"begin(fork);"[..], &b"end(fork);"[..]]);
    assert_eq!(reply.warnings, vec![&b"no such thing: fork"[..]]);
    assert!(
        driver
            .status_line("hooks_fail")
            .ends_with("ERROR: no such thing: fork"),
        "{}",
        driver.status_line("hooks_fail")
    );

    // Characters beyond one byte go out as UTF-8.
    let (out, _, ok) = gearman_cli(&gearmand, &["-f", "hooks_wide"], b"");
    assert!(ok);
    assert!(out.ends_with("smile \u{263a}"), "{out:?}");

    // process_name titles every process with its job.
    let pid = one_pid(&driver, "hooks_talk");
    assert!(
        title(pid).starts_with("perl-hooks-worker [hooks_talk]"),
        "{:?}",
        title(pid)
    );

    // exit in a job ends the process: it is replaced and the job retried.
    let first = one_pid(&driver, "hooks_quit");
    let (out, err, ok) = gearman_cli(&gearmand, &["-f", "hooks_quit"], b"");
    assert!(ok, "{err}");
    // The first try's begin() had sent its data before the process exited.
    assert!(out.starts_with("begin();begin();end();pid "), "{out:?}");
    let answered_by: u32 = out.rsplit(' ').next().unwrap().parse().unwrap();
    assert_ne!(answered_by, first, "a new process answered");
    assert!(!pid_alive(first));
    assert!(module.with_file_name("quit.marker").exists());
    assert!(
        driver
            .log_text()
            .contains(&format!("({first}) [hooks_quit] Exited with status 3")),
        "{}",
        driver.log_text()
    );
}

#[test]
fn encode_and_decode_wrap_the_job() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("PerlT/Codec.pm", CODEC);
    let _driver = Driver::start(&lib, &gearmand, "PerlT::Codec", &["--interval", "0.5"]);

    let (out, err, ok) = gearman_cli(
        &gearmand,
        &["-f", "PerlT::Codec::add"],
        br#"{"a":2,"b":40}"#,
    );
    assert!(ok, "{err}");
    assert_eq!(out, r#"{"raw":"{\"a\":2,\"b\":40}","sum":42}"#);
    let (out, _, ok) = gearman_cli(&gearmand, &["-f", "PerlT::Codec::swap"], b"x=1,y=2");
    assert!(ok);
    assert_eq!(out, "1=x,2=y");
    let (out, _, ok) = gearman_cli(&gearmand, &["-f", "PerlT::Codec::plain"], b"as is");
    assert!(ok);
    assert_eq!(out, "same: as is");
    // A workload decode cannot read fails the job with decode's message.
    let reply = submit(&gearmand, "PerlT::Codec::add", b"not json");
    assert_eq!(reply.result, None);
    let message = String::from_utf8_lossy(&reply.warnings[0]).into_owned();
    assert!(
        message.starts_with("'null' expected, at character offset 0 (before \"not json\") at ")
            && message.ends_with("PerlT/Codec.pm line 7."),
        "{message}"
    );
}

#[test]
fn process_counts_groups_options_and_timeouts() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    lib.file("PerlT/Limits.pm", LIMITS);
    let config = lib.file(
        "driver.toml",
        r#"
[worker_options.GLOBAL]
shared = "shared by all"
[worker_options."PerlT::Limits"]
greeting = "hello"

[job_runtime_attributes."PerlT::Limits::rt"]
min_processes = 0
max_processes = 2
[job_runtime_attributes."PerlT::Limits::pair"]
max_processes = 1
"#,
    );
    let config = config.to_string_lossy().into_owned();
    let driver = Driver::start(
        &lib,
        &gearmand,
        "PerlT",
        &["--interval", "0.5", "--config", &config],
    );
    let job = |name: &str| format!("PerlT::Limits::{name}");
    // default_attributes fill in, own attributes win over them,
    // override_attributes win over both, job_runtime_attributes over all.
    assert_eq!(limits(&driver, &job("dflt")), (0, 4));
    assert_eq!(limits(&driver, &job("own")), (2, 4));
    assert_eq!(limits(&driver, &job("childs")), (1, 4));
    assert_eq!(limits(&driver, &job("rt")), (0, 2));
    driver.wait_processes(&job("own"), 2, Duration::from_secs(20));

    // A process group is one job serving both methods from one process.
    let names: Vec<String> = driver
        .console("status")
        .iter()
        .map(|l| columns(l)[0].clone())
        .collect();
    assert!(names.contains(&job("pair")), "{names:?}");
    assert!(!names.contains(&job("left")) && !names.contains(&job("helper")));
    let pair_pid = one_pid(&driver, &job("pair"));
    let (left, _, _) = gearman_cli(&gearmand, &["-f", &job("left")], b"");
    let (right, _, _) = gearman_cli(&gearmand, &["-f", &job("right")], b"");
    assert_eq!(left, format!("left {pair_pid}"));
    assert_eq!(right, format!("right {pair_pid}"));

    // worker_options reach the constructor, the module's over GLOBAL.
    let (out, _, ok) = gearman_cli(&gearmand, &["-f", &job("opts")], b"");
    assert!(ok);
    assert_eq!(out, "hello / shared by all");

    // Timeout(1): the job fails and its process is replaced.
    let (_, _, ok) = gearman_cli(&gearmand, &["-f", &job("slow")], b"");
    assert!(!ok);
    assert!(
        driver
            .status_line(&job("slow"))
            .ends_with("ERROR: timeout after 1s"),
        "{}",
        driver.status_line(&job("slow"))
    );
}

#[test]
fn check_lists_perl_jobs_and_skips_what_is_no_worker() {
    let lib = Lib::new();
    lib.file(
        "PerlD/Good.pm",
        "package PerlD::Good;\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\nsub work : Job : MaxProcesses(3) { 1 }\n1;\n",
    );
    // A helper module and a base class without jobs are skipped, as
    // Gearman::Driver's loader skipped them; a subclass inherits job methods.
    lib.file(
        "PerlD/Helper.pm",
        "package PerlD::Helper;\nsub new { bless {}, shift }\n1;\n",
    );
    lib.file(
        "PerlD/Base.pm",
        "package PerlD::Base;\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\nsub shared { 1 }\n1;\n",
    );
    lib.file(
        "PerlD/Deep/Child.pm",
        "package PerlD::Deep::Child;\nuse base qw(PerlD::Base);\nuse Moose;\nsub child : Job : MinChilds(0) { 1 }\n1;\n",
    );
    lib.file(
        "PerlD/Deep/w.toml",
        "command = \"/bin/cat\"\nprotocol = \"exec\"\n[jobs.toml_job]\n",
    );
    let (code, out, err) = check(&lib, "PerlD", &[]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<Vec<String>> = out.lines().skip(1).map(columns).collect();
    let jobs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        jobs,
        [
            "PerlD::Deep::Child::child",
            "PerlD::Deep::w::toml_job",
            "PerlD::Good::work"
        ]
    );
    assert_eq!(rows[2][1..5], ["1", "3", "stdio", "PerlD::Good::work"]);
    assert!(
        rows[2][5..].join(" ").contains("gearman-driver-perl --lib"),
        "{out}"
    );
    assert!(rows[2].last().unwrap() == "PerlD::Good", "{out}");

    // A namespace of modules that are no worker classes selects nothing.
    let (code, _, err) = check(&lib, "PerlD::Helper", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("namespace `PerlD::Helper` selects no worker: PerlD::Helper (not a Gearman::Driver::Worker)"),
        "{err}"
    );
}

#[test]
fn a_module_that_does_not_compile_is_refused_with_perls_message() {
    let lib = Lib::new();
    lib.file(
        "PerlE/Fine.pm",
        "package PerlE::Fine;\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\nsub ok : Job { 1 }\n1;\n",
    );
    let broken = lib.file(
        "PerlE/Broken.pm",
        "package PerlE::Broken;\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\n\nsub oops : Job {\n    my $x = ;\n}\n1;\n",
    );
    let (code, out, err) = check(&lib, "PerlE", &[]);
    assert_eq!(code, 1, "{out}");
    let canonical = broken.canonicalize().unwrap();
    assert!(
        err.contains(&format!(
            "{}:6:1: PerlE::Broken does not compile: syntax error at {} line 6, near \"= ;\"",
            broken.display(),
            canonical.display()
        )),
        "{err}"
    );

    // A module it needs is missing: Perl says which.
    std::fs::remove_file(&broken).unwrap();
    lib.file(
        "PerlE/Needy.pm",
        "package PerlE::Needy;\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\nuse No::Such::Module;\nsub x : Job { 1 }\n1;\n",
    );
    let (code, _, err) = check(&lib, "PerlE", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("PerlE::Needy does not compile: Can't locate No/Such/Module.pm in @INC"),
        "{err}"
    );
}

#[test]
fn attribute_and_naming_errors_name_file_sub_and_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "sub x : Job : MaxProcess(5) { 1 }",
            "key `sub x : MaxProcess(5)`: unknown attribute `MaxProcess`",
            "",
        ),
        (
            "sub x : Job : MinProcesses(three) { 1 }",
            "key `sub x : MinProcesses(three)`: MinProcesses(three): `three` is not a whole number >= 0",
            "",
        ),
        (
            "sub x : Job : MinProcesses(3) : MaxProcesses(2) { 1 }",
            "key `sub x : MinProcesses`: MinProcesses (3) is greater than MaxProcesses (2)",
            "",
        ),
        (
            "sub x : Job : Encode(to_yaml) { 1 }",
            "key `sub x : Encode`: Encode calls method `to_yaml`, which PerlA::W does not have",
            "",
        ),
        (
            "sub x : Job : ProcessGroup(g) : MaxProcesses(2) { 1 }\nsub y : Job : ProcessGroup(g) : MaxProcesses(3) { 1 }",
            "key `sub y : MaxProcesses`: MaxProcesses is set twice in process group `g` (by x and y)",
            "",
        ),
        (
            "sub x : Job { 1 }\nsub default_attributes { { MaxProcesses => 'lots' } }",
            "key `default_attributes`: MaxProcesses => lots: MaxProcesses(lots): `lots` is not a whole number >= 0",
            "",
        ),
        (
            "sub x : Job { 1 }",
            "key `perl_lib`",
            "/nonexistent/perl-side",
        ),
    ];
    for (body, expected, perl_lib) in cases {
        let lib = Lib::new();
        let source = format!(
            "package PerlA::W;\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\n{body}\n1;\n"
        );
        let path = lib.file("PerlA/W.pm", &source);
        let extra: Vec<&str> = if perl_lib.is_empty() {
            Vec::new()
        } else {
            vec!["--perl-lib", perl_lib]
        };
        let (code, _, err) = check(&lib, "PerlA", &extra);
        assert_eq!(code, 1, "{body}");
        assert!(err.contains(expected), "{body}: {err}");
        if perl_lib.is_empty() && !body.contains("default_attributes") {
            let sub = if expected.contains("sub y") { 5 } else { 4 };
            assert!(
                err.contains(&format!("{}:{sub}:1: ", path.display())),
                "{body}: the file and the sub's line: {err}"
            );
        }
    }

    // A Perl module and a worker file of the same name.
    let lib = Lib::new();
    lib.file(
        "PerlB/Same.pm",
        "package PerlB::Same;\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\nsub x : Job { 1 }\n1;\n",
    );
    lib.file("PerlB/Same.toml", "command = \"/bin/cat\"\n[jobs.x]\n");
    let (code, _, err) = check(&lib, "PerlB", &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("module PerlB::Same is both")
            && err.contains("Same.pm")
            && err.contains("Same.toml"),
        "{err}"
    );
}

#[test]
fn reload_reads_classes_again_and_replaces_edited_ones() {
    let gearmand = Gearmand::start();
    let lib = Lib::new();
    let class = |name: &str, subs: &str| {
        format!(
            "package PerlR::{name};\nuse base qw(Gearman::Driver::Worker);\nuse Moose;\n{subs}\n1;\n"
        )
    };
    lib.file(
        "PerlR/Keep.pm",
        &class("Keep", "sub keep : Job { \"keep $$\" }"),
    );
    let edit = lib.file(
        "PerlR/Edit.pm",
        &class("Edit", "sub one : Job { 'one v1' }"),
    );
    let driver = Driver::start(&lib, &gearmand, "PerlR", &["--interval", "0.5"]);
    let keep = one_pid(&driver, "PerlR::Keep::keep");
    let one = one_pid(&driver, "PerlR::Edit::one");

    std::fs::write(
        &edit,
        class(
            "Edit",
            "sub one : Job { 'one v2' }\nsub two : Job : MinProcesses(0) { 'two' }",
        ),
    )
    .unwrap();
    unsafe { libc::kill(driver.pid() as i32, libc::SIGHUP) };
    driver.wait_log("reload: PerlR::Edit::two: added", Duration::from_secs(20));
    assert!(driver
        .log_text()
        .contains("reload: PerlR::Edit::one: changed; replacing its processes"));
    assert_eq!(
        one_pid(&driver, "PerlR::Keep::keep"),
        keep,
        "untouched class keeps its process"
    );
    let (out, _, ok) = gearman_cli(&gearmand, &["-f", "PerlR::Edit::one"], b"");
    assert!(ok);
    assert_eq!(out, "one v2", "the edited class runs its new code");
    assert_ne!(one_pid(&driver, "PerlR::Edit::one"), one);
    let (out, _, _) = gearman_cli(&gearmand, &["-f", "PerlR::Edit::two"], b"");
    assert_eq!(out, "two");

    // A reload that does not compile changes nothing.
    std::fs::write(&edit, class("Edit", "sub one : Job { 'one v3' ")).unwrap();
    let answer = driver.console("reload");
    assert_eq!(
        answer[0], "ERR the new configuration is invalid; nothing changed",
        "{answer:?}"
    );
    assert!(
        answer
            .iter()
            .any(|l| l.contains("PerlR::Edit does not compile")),
        "{answer:?}"
    );
    let (out, _, ok) = gearman_cli(&gearmand, &["-f", "PerlR::Edit::one"], b"");
    assert!(ok);
    assert_eq!(out, "one v2");
}

/// The runner alone, fed frames on stdin: what the driver would see.
fn run_runner(lib: &Lib, args: &[&str], input: &[u8]) -> (Vec<WorkerFrame>, String) {
    let mut child = Command::new("perl")
        .arg(runner())
        .arg("--lib")
        .arg(lib.path())
        .args(args)
        .env("GEARMAN_SERVERS", "127.0.0.1:1")
        .env("GEARMAN_DRIVER_PREFIX", "P::")
        .env("GEARMAN_DRIVER_OPTIONS", r#"{"label":"from options"}"#)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let status = wait_for(Duration::from_secs(30), "the runner to exit", || {
        child.try_wait().unwrap()
    });
    let mut out = Vec::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "runner: {status}: {err}");
    let mut codec = WorkerCodec::new();
    let mut buf = BytesMut::from(&out[..]);
    let mut frames = Vec::new();
    while let Some(frame) = codec.decode_eof(&mut buf).expect("only protocol frames") {
        frames.push(frame);
    }
    (frames, err)
}

fn job_frame(name: &str, unique: &str, workload: &[u8]) -> Vec<u8> {
    let mut out = format!("JOB {name} H:host:1 {unique} {}\n", workload.len()).into_bytes();
    out.extend_from_slice(workload);
    out
}

#[test]
fn the_runner_speaks_the_stdio_protocol() {
    let lib = Lib::new();
    lib.file(
        "PerlP/W.pm",
        r#"package PerlP::W;
use base qw(Gearman::Driver::Worker);
use Moose;
has 'label' => ( is => 'ro' );
sub begin { my ( $self, $job, $w ) = @_; die "begin refuses\n" if $w eq 'no begin'; $job->send_data('b') }
sub end { my ( $self, $job, $w ) = @_; die "end refuses\n" if $w eq 'no end'; $job->send_data('e') }
sub echo : Job {
    my ( $self, $job, $w ) = @_;
    print STDOUT "stray\n";
    return join ',', $job->function_name, $job->unique, $w, $self->label;
}
sub nothing : Job { return undef }
1;
"#,
    );
    let mut input = Vec::new();
    input.extend(job_frame("echo", "a%20b%0A", b"x\0y"));
    input.extend(job_frame("echo", "-", b"no begin"));
    input.extend(job_frame("echo", "%2D", b"no end"));
    input.extend(job_frame("nothing", "-", b""));
    input.extend(job_frame("missing", "-", b""));
    let (frames, err) = run_runner(&lib, &["PerlP::W"], &input);
    let data = |s: &str| WorkerFrame::Data(bytes::Bytes::copy_from_slice(s.as_bytes()));
    let done = |s: &[u8]| WorkerFrame::Done(bytes::Bytes::copy_from_slice(s));
    let fail = |s: &str| WorkerFrame::Fail(bytes::Bytes::copy_from_slice(s.as_bytes()));
    assert_eq!(
        frames,
        vec![
            WorkerFrame::Ready,
            data("b"),
            data("e"),
            done(b"P::echo,a b\n,x\0y,from options"),
            fail("begin refuses"),
            data("b"),
            fail("end refuses"),
            data("b"),
            data("e"),
            done(b""),
            fail("PerlP::W has no job method missing"),
        ]
    );
    assert!(
        err.contains("stray"),
        "stdout of a job goes to stderr: {err}"
    );
}
