//! Unit tests: the serving loop driven with in-memory input and output.

use super::*;
use std::cell::Cell;

#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Ready,
    Data(Vec<u8>),
    Warning(Vec<u8>),
    Status(u64, u64),
    Done(Vec<u8>),
    Fail(Vec<u8>),
}

/// Splits the worker's output into frames, insisting that it is exactly the
/// protocol's grammar with nothing left over.
fn frames(mut out: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !out.is_empty() {
        let newline = out
            .iter()
            .position(|&b| b == b'\n')
            .expect("header line ends");
        let line = std::str::from_utf8(&out[..newline]).expect("header is text");
        out = &out[newline + 1..];
        let fields: Vec<&str> = line.split(' ').collect();
        let mut payload = |size: &str| {
            let size: usize = size.parse().expect("size");
            let (bytes, rest) = out.split_at(size);
            out = rest;
            bytes.to_vec()
        };
        frames.push(match fields.as_slice() {
            ["READY"] => Frame::Ready,
            ["DATA", n] => Frame::Data(payload(n)),
            ["WARNING", n] => Frame::Warning(payload(n)),
            ["DONE", n] => Frame::Done(payload(n)),
            ["FAIL", n] => Frame::Fail(payload(n)),
            ["STATUS", n, d] => Frame::Status(n.parse().unwrap(), d.parse().unwrap()),
            other => panic!("not a frame: {other:?}"),
        });
    }
    frames
}

fn job_input(name: &str, handle: &str, unique: &str, workload: &[u8]) -> Vec<u8> {
    let mut input = format!("JOB {name} {handle} {unique} {}\n", workload.len()).into_bytes();
    input.extend_from_slice(workload);
    input
}

fn reverse(job: &mut Job) -> JobResult {
    let mut bytes = job.workload().to_vec();
    bytes.reverse();
    Ok(bytes)
}

fn serve(worker: Worker<'_>, input: &[u8]) -> (io::Result<()>, Vec<Frame>) {
    let mut output = Vec::new();
    let result = worker.run_with(input, &mut output);
    (result, frames(&output))
}

#[test]
fn says_ready_and_exits_cleanly_on_eof() {
    let (result, frames) = serve(Worker::new().job("reverse", reverse), b"");
    result.unwrap();
    assert_eq!(frames, vec![Frame::Ready]);
}

#[test]
fn binary_workload_with_nul_and_newline_round_trips() {
    let workload = b"a\0b\nc\r\n\xff\x00JOB x y z 1\n";
    let (result, frames) = serve(
        Worker::new().job("reverse", reverse),
        &job_input("reverse", "H:h:1", "-", workload),
    );
    result.unwrap();
    let mut expected = workload.to_vec();
    expected.reverse();
    assert_eq!(frames, vec![Frame::Ready, Frame::Done(expected)]);
}

#[test]
fn serves_several_jobs_in_a_row_and_an_empty_workload() {
    let mut input = Vec::new();
    for (i, workload) in [&b"abc"[..], b"", b"\n", b"xyz"].iter().enumerate() {
        input.extend(job_input("reverse", &format!("H:h:{i}"), "-", workload));
    }
    let (result, frames) = serve(Worker::new().job("reverse", reverse), &input);
    result.unwrap();
    assert_eq!(
        frames,
        vec![
            Frame::Ready,
            Frame::Done(b"cba".to_vec()),
            Frame::Done(Vec::new()),
            Frame::Done(b"\n".to_vec()),
            Frame::Done(b"zyx".to_vec()),
        ]
    );
}

#[test]
fn dispatches_by_job_name() {
    let worker = Worker::new()
        .job("upper", |job: &mut Job| {
            Ok(job.workload().to_ascii_uppercase())
        })
        .job("lower", |job: &mut Job| {
            Ok(job.workload().to_ascii_lowercase())
        });
    let mut input = job_input("upper", "H:h:1", "-", b"MiXeD");
    input.extend(job_input("lower", "H:h:2", "-", b"MiXeD"));
    let (result, frames) = serve(worker, &input);
    result.unwrap();
    assert_eq!(
        frames,
        vec![
            Frame::Ready,
            Frame::Done(b"MIXED".to_vec()),
            Frame::Done(b"mixed".to_vec())
        ]
    );
}

#[test]
fn updates_come_before_the_result_in_order() {
    let worker = Worker::new().job("progress", |job: &mut Job| {
        job.send_status(0, 2)?;
        job.send_data(b"part\0one\n")?;
        job.send_warning(b"careful")?;
        job.send_status(2, 2)?;
        Ok(b"whole".to_vec())
    });
    let (result, frames) = serve(worker, &job_input("progress", "H:h:1", "-", b"x"));
    result.unwrap();
    assert_eq!(
        frames,
        vec![
            Frame::Ready,
            Frame::Status(0, 2),
            Frame::Data(b"part\0one\n".to_vec()),
            Frame::Warning(b"careful".to_vec()),
            Frame::Status(2, 2),
            Frame::Done(b"whole".to_vec()),
        ]
    );
}

#[test]
fn an_error_answers_fail_with_its_message_and_serving_goes_on() {
    let worker = Worker::new()
        .job("strict", |job: &mut Job| {
            let text = std::str::from_utf8(job.workload())?;
            if text == "fail" {
                return Err("asked to fail".into());
            }
            Ok(text.as_bytes().to_vec())
        })
        .job("io", |_: &mut Job| {
            Err(io::Error::new(io::ErrorKind::NotFound, "no such image").into())
        });
    let mut input = job_input("strict", "H:h:1", "-", b"fail");
    input.extend(job_input("strict", "H:h:2", "-", b"\xff"));
    input.extend(job_input("io", "H:h:3", "-", b""));
    input.extend(job_input("strict", "H:h:4", "-", b"fine"));
    let (result, frames) = serve(worker, &input);
    result.unwrap();
    assert_eq!(frames[1], Frame::Fail(b"asked to fail".to_vec()));
    match &frames[2] {
        Frame::Fail(message) => assert!(message.starts_with(b"invalid utf-8"), "{message:?}"),
        other => panic!("expected FAIL, got {other:?}"),
    }
    assert_eq!(frames[3], Frame::Fail(b"no such image".to_vec()));
    assert_eq!(frames[4], Frame::Done(b"fine".to_vec()));
    assert_eq!(frames.len(), 5);
}

#[test]
fn a_panic_answers_fail_and_serving_goes_on() {
    let worker = Worker::new()
        .job("boom", |job: &mut Job| {
            if job.workload() == b"str" {
                panic!("static message");
            }
            panic!("formatted {}", job.workload().len());
        })
        .job("reverse", reverse);
    let mut input = job_input("boom", "H:h:1", "-", b"str");
    input.extend(job_input("boom", "H:h:2", "-", b"formatted"));
    input.extend(job_input("reverse", "H:h:3", "-", b"ok"));
    let (result, frames) = serve(worker, &input);
    result.unwrap();
    assert_eq!(
        frames,
        vec![
            Frame::Ready,
            Frame::Fail(b"panicked: static message".to_vec()),
            Frame::Fail(b"panicked: formatted 9".to_vec()),
            Frame::Done(b"ko".to_vec()),
        ]
    );
}

#[test]
fn an_unknown_job_answers_fail() {
    let mut input = job_input("nosuch", "H:h:1", "-", b"payload");
    input.extend(job_input("reverse", "H:h:2", "-", b"ab"));
    let (result, frames) = serve(Worker::new().job("reverse", reverse), &input);
    result.unwrap();
    assert_eq!(
        frames,
        vec![
            Frame::Ready,
            Frame::Fail(b"unknown job: nosuch".to_vec()),
            Frame::Done(b"ba".to_vec())
        ]
    );
}

#[test]
fn job_exposes_name_handle_and_decoded_unique() {
    let seen = std::cell::RefCell::new(Vec::new());
    let worker = Worker::new().job("convert_to_jpeg", |job: &mut Job| {
        seen.borrow_mut().push((
            job.name().to_string(),
            job.handle().to_string(),
            job.unique().to_vec(),
        ));
        Ok(Vec::new())
    });
    let mut input = job_input("convert_to_jpeg", "H:host.example:17", "-", b"");
    input.extend(job_input(
        "convert_to_jpeg",
        "H:h:2",
        "a%20b%25c%00%0A%ff",
        b"",
    ));
    input.extend(job_input("convert_to_jpeg", "H:h:3", "plain-id_1", b""));
    let (result, _) = serve(worker, &input);
    result.unwrap();
    assert_eq!(
        seen.into_inner(),
        vec![
            (
                "convert_to_jpeg".into(),
                "H:host.example:17".into(),
                Vec::new()
            ),
            (
                "convert_to_jpeg".into(),
                "H:h:2".into(),
                b"a b%c\0\n\xff".to_vec()
            ),
            (
                "convert_to_jpeg".into(),
                "H:h:3".into(),
                b"plain-id_1".to_vec()
            ),
        ]
    );
}

#[test]
fn percent_decoding_keeps_malformed_escapes() {
    let decode = |field: &[u8]| {
        let mut out = Vec::new();
        percent_decode(field, &mut out);
        out
    };
    assert_eq!(decode(b"-"), b"");
    assert_eq!(decode(b"%2D"), b"-");
    assert_eq!(decode(b"--"), b"--");
    assert_eq!(decode(b"%41%4a%4A"), b"AJJ");
    assert_eq!(decode(b"%zz%4"), b"%zz%4");
    assert_eq!(decode(b"%"), b"%");
    assert_eq!(decode(b"100%"), b"100%");
}

#[test]
fn closures_may_keep_state_and_borrow() {
    let count = Cell::new(0);
    let worker = Worker::new().job("count", |_: &mut Job| {
        count.set(count.get() + 1);
        Ok(count.get().to_string().into_bytes())
    });
    let mut input = Vec::new();
    for _ in 0..3 {
        input.extend(job_input("count", "H:h:1", "-", b""));
    }
    let (result, frames) = serve(worker, &input);
    result.unwrap();
    assert_eq!(frames.last(), Some(&Frame::Done(b"3".to_vec())));
    assert_eq!(count.get(), 3);
}

/// Hands out one byte per read, as a slow pipe might.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), buf.first_mut()) {
            (Some((&byte, rest)), Some(slot)) => {
                *slot = byte;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn short_reads_are_reassembled() {
    let workload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let mut input = job_input("reverse", "H:h:1", "-", &workload);
    input.extend(job_input("reverse", "H:h:2", "u%0A", b"x\ny"));
    let mut output = Vec::new();
    Worker::new()
        .job("reverse", reverse)
        .run_with(Trickle(&input), &mut output)
        .unwrap();
    let mut expected = workload.clone();
    expected.reverse();
    assert_eq!(
        frames(&output),
        vec![
            Frame::Ready,
            Frame::Done(expected),
            Frame::Done(b"y\nx".to_vec())
        ]
    );
}

#[test]
fn large_workload() {
    let workload: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let (result, frames) = serve(
        Worker::new().job("reverse", reverse),
        &job_input("reverse", "H:h:1", "-", &workload),
    );
    result.unwrap();
    let mut expected = workload;
    expected.reverse();
    assert_eq!(frames, vec![Frame::Ready, Frame::Done(expected)]);
}

#[test]
fn input_cut_off_mid_job_is_an_error() {
    let mut input = job_input("reverse", "H:h:1", "-", b"abcdef");
    input.truncate(input.len() - 2);
    let (result, frames) = serve(Worker::new().job("reverse", reverse), &input);
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(frames, vec![Frame::Ready]);

    let (result, _) = serve(
        Worker::new().job("reverse", reverse),
        b"JOB reverse H:h:1 - 3",
    );
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);

    // A size no input could honour ends in an error, not in an allocation abort.
    let bogus = format!("JOB reverse H:h:1 - {}\nabc", usize::MAX);
    let (result, _) = serve(Worker::new().job("reverse", reverse), bogus.as_bytes());
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn malformed_headers_are_protocol_errors() {
    for bad in [
        &b"HELLO\n"[..],
        b"JOB reverse H:h:1 - \n",
        b"JOB reverse H:h:1 - x\n",
        b"JOB reverse H:h:1 - -1\n",
        b"JOB reverse H:h:1 - +1\n",
        b"JOB reverse H:h:1 1\n",
        b"JOB reverse H:h:1 - 1 extra\n",
        b"JOB  H:h:1 - 1\n",
        b"JOB reverse H:h:1 - 99999999999999999999999\n",
    ] {
        let (result, frames) = serve(Worker::new().job("reverse", reverse), bad);
        let error = result.expect_err(&String::from_utf8_lossy(bad));
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert_eq!(frames, vec![Frame::Ready]);
    }
    let endless = vec![b'J'; MAX_HEADER_LINE as usize + 10];
    let (result, _) = serve(Worker::new(), &endless);
    assert!(result.unwrap_err().to_string().contains("too long"));
}

/// Accepts a fixed number of bytes, then fails as a closed pipe does.
struct ClosedAfter(usize);

impl Write for ClosedAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::from(io::ErrorKind::BrokenPipe));
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_closed_stdout_ends_the_loop_with_an_error() {
    let input = job_input("reverse", "H:h:1", "-", b"abc");
    let error = Worker::new()
        .job("reverse", reverse)
        .run_with(&input[..], ClosedAfter(6))
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
}

#[test]
fn job_error_converts_from_display_types() {
    fn check(result: Result<(), impl fmt::Display>) -> JobResult {
        result?;
        Ok(Vec::new())
    }
    assert_eq!(check(Err("text")).unwrap_err().message(), "text");
    assert_eq!(
        check(Err(String::from("owned"))).unwrap_err().message(),
        "owned"
    );
    assert_eq!(
        check(Err(io::Error::other("io"))).unwrap_err().message(),
        "io"
    );
    let boxed: Box<dyn std::error::Error> = "boxed".into();
    assert_eq!(JobError::from(boxed).message(), "boxed");
    assert_eq!(format!("{:?}", JobError::new("x")), "JobError(\"x\")");
}

#[test]
fn driver_env_reads_and_splits() {
    let vars: HashMap<&str, &str> = [
        ("GEARMAN_SERVERS", "h1:4730, h2:4731"),
        ("GEARMAN_DRIVER_JOB", "GDExamples::Convert::image"),
        (
            "GEARMAN_DRIVER_FUNCTIONS",
            "GDExamples::Convert::convert_to_gif,GDExamples::Convert::convert_to_jpeg",
        ),
        ("GEARMAN_DRIVER_PREFIX", "GDExamples::Convert::"),
        ("GEARMAN_DRIVER_MODULE", "GDExamples::Convert"),
        ("GEARMAN_DRIVER_OPTIONS", r#"{"quality":85}"#),
    ]
    .into_iter()
    .collect();
    let env = DriverEnv::from_lookup(|name| vars.get(name).map(|v| v.to_string()));
    assert_eq!(env.servers, ["h1:4730", "h2:4731"]);
    assert_eq!(env.job, "GDExamples::Convert::image");
    assert_eq!(
        env.functions,
        [
            "GDExamples::Convert::convert_to_gif",
            "GDExamples::Convert::convert_to_jpeg"
        ]
    );
    assert_eq!(env.prefix, "GDExamples::Convert::");
    assert_eq!(env.module, "GDExamples::Convert");
    assert_eq!(env.options, r#"{"quality":85}"#);

    let empty = DriverEnv::from_lookup(|_| None);
    assert!(empty.servers.is_empty() && empty.functions.is_empty() && empty.job.is_empty());
    assert_eq!(empty.options, "{}");
}

#[test]
fn debug_output_names_the_jobs() {
    let worker = Worker::new().job("b", reverse).job("a", reverse);
    assert_eq!(format!("{worker:?}"), r#"Worker { jobs: ["a", "b"] }"#);
}
