"""Write gearman-driver stdio workers in Python (3.9+, standard library only).

A stdio worker is a resident process that gearman-driver feeds with jobs over
its stdin and that answers on its stdout; it never speaks Gearman itself.
This module is that loop: register a function per job name, call run().

    from gearman_driver_worker import Worker

    worker = Worker()

    @worker.job("reverse")
    def reverse(job):
        return job.workload[::-1]

    worker.run()

A job function gets a Job with:
    job.name       the job key from the worker file ("reverse")
    job.handle     gearmand's job handle (str)
    job.unique     the client's unique id (bytes, b"" when none)
    job.workload   the workload (bytes)
    job.options    the worker options (dict, from GEARMAN_DRIVER_OPTIONS)
    job.send_data(b), job.send_warning(b), job.send_status(n, d)
and returns bytes (or str, encoded as UTF-8; None for an empty result).
An exception answers FAIL with the first line of its text, which the
console shows as "ERROR: <text>"; the traceback goes to stderr, which the
supervisor logs, and the worker goes on with the next job.

Stdout belongs to the protocol. When run() serves the real stdin/stdout it
moves the protocol to a private descriptor and points file descriptor 1 (and
sys.stdout) at stderr, so a stray print() ends up in the log instead of
getting the process killed for a protocol error.

The protocol, as the worker sees it:
    worker:      READY\\n
    supervisor:  JOB <name> <handle> <unique> <size>\\n<size bytes>
    worker:      any of  DATA <size>\\n<bytes>  WARNING <size>\\n<bytes>
                         STATUS <numerator> <denominator>\\n
                 then    DONE <size>\\n<bytes>  or  FAIL <size>\\n<bytes>
End of file on stdin means "stop": run() returns.
"""

import json
import os
import sys
import traceback
from urllib.parse import unquote_to_bytes

__all__ = ["Worker", "Job", "ProtocolError"]

# Names, handles and percent-encoded unique ids are short; a longer header
# line means the input is not this protocol.
_MAX_HEADER_LINE = 64 * 1024
_IO_BUFFER = 64 * 1024


class ProtocolError(Exception):
    """The input from the supervisor does not follow the stdio protocol."""


class Job:
    """One job handed over by the supervisor."""

    __slots__ = ("name", "handle", "unique", "workload", "options", "_out")

    def __init__(self, name, handle, unique, workload, options, out):
        self.name = name
        self.handle = handle
        self.unique = unique
        self.workload = workload
        self.options = options
        self._out = out

    def send_data(self, data):
        """Partial result data for the client (Gearman's WORK_DATA)."""
        _write_frame(self._out, b"DATA", _to_bytes(data))
        # Updates matter while the job is still running, so they must not
        # wait in the buffer for the final answer.
        self._out.flush()

    def send_warning(self, data):
        """A warning for the client (Gearman's WORK_WARNING)."""
        _write_frame(self._out, b"WARNING", _to_bytes(data))
        self._out.flush()

    def send_status(self, numerator, denominator):
        """Progress, numerator of denominator (Gearman's WORK_STATUS)."""
        self._out.write(b"STATUS %d %d\n" % (int(numerator), int(denominator)))
        self._out.flush()

    def __repr__(self):
        return "Job(name=%r, handle=%r, unique=%r, %d bytes)" % (
            self.name, self.handle, self.unique, len(self.workload))


class Worker:
    """The job functions a process serves, and the loop that serves them.

    The environment the supervisor sets is read once, at construction:
    options (dict), servers and functions (lists), job_name, prefix, module.
    """

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.options = _parse_options(env.get("GEARMAN_DRIVER_OPTIONS", ""))
        self.servers = _split_list(env.get("GEARMAN_SERVERS", ""))
        self.functions = _split_list(env.get("GEARMAN_DRIVER_FUNCTIONS", ""))
        self.job_name = env.get("GEARMAN_DRIVER_JOB", "")
        self.prefix = env.get("GEARMAN_DRIVER_PREFIX", "")
        self.module = env.get("GEARMAN_DRIVER_MODULE", "")
        self._handlers = {}

    def job(self, name):
        """Decorator: serve job `name` (the job key) with the function."""
        def register(function):
            self.add_job(name, function)
            return function
        return register

    def add_job(self, name, function):
        """Serve job `name` with `function(job)`; a later call replaces it."""
        self._handlers[name] = function

    def run(self, stdin=None, stdout=None):
        """Serve jobs until stdin is closed.

        Without arguments it serves the process's stdin/stdout; tests pass
        binary file objects instead. A protocol error raises ProtocolError.
        """
        if stdin is None and stdout is None:
            stdin, stdout = _take_stdio()
        elif stdin is None or stdout is None:
            raise TypeError("pass both stdin and stdout, or neither")
        self._serve(stdin, stdout)

    def _serve(self, inp, out):
        # Bound methods and a local loop: a job costs a few microseconds of
        # Python here, which is a good part of what the process adds per job.
        readline, read, write, flush = inp.readline, inp.read, out.write, out.flush
        write(b"READY\n")
        flush()
        while True:
            line = readline(_MAX_HEADER_LINE)
            if not line:
                return
            if not line.endswith(b"\n"):
                if len(line) >= _MAX_HEADER_LINE:
                    raise ProtocolError("JOB header line too long: %r" % line[:200])
                raise ProtocolError("stdin closed in the middle of a JOB header: %r" % line[:200])
            fields = line[:-1].split(b" ")
            if (len(fields) != 5 or fields[0] != b"JOB" or not fields[4].isdigit()
                    or not (fields[1] and fields[2] and fields[3])):
                raise ProtocolError("expected JOB <name> <handle> <unique> <size>: %r" % line[:200])
            size = int(fields[4])
            workload = read(size) if size else b""
            if len(workload) != size:
                workload = _read_rest(inp, workload, size)
            job = Job(
                fields[1].decode("utf-8", "replace"),
                fields[2].decode("utf-8", "replace"),
                b"" if fields[3] == b"-" else unquote_to_bytes(fields[3]),
                workload,
                self.options,
                out,
            )
            tag, payload = self._call(job)
            write(b"%s %d\n" % (tag, len(payload)))
            write(payload)
            flush()

    def _call(self, job):
        function = self._handlers.get(job.name)
        if function is None:
            return b"FAIL", ("unknown job: %s" % job.name).encode()
        try:
            result = function(job)
            if type(result) is bytes:
                return b"DONE", result
            if result is not None and not isinstance(result, (bytes, bytearray, memoryview, str)):
                raise TypeError("job %s returned %s, expected bytes or str"
                                % (job.name, type(result).__name__))
            return b"DONE", _to_bytes(result)
        except Exception as exc:  # noqa: BLE001 - every job error is the client's answer
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
            return b"FAIL", _first_line(exc).encode("utf-8", "replace")


def _take_stdio():
    """Binary streams for the protocol, private to this module."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out = os.fdopen(protocol_fd, "wb", buffering=_IO_BUFFER)
    inp = os.fdopen(os.dup(0), "rb", buffering=_IO_BUFFER)
    return inp, out


def _read_rest(inp, data, size):
    """The workload after a short first read: raw (unbuffered) streams may
    return less than asked; buffered ones only do so at end of file."""
    parts = [data or b""]
    missing = size - len(parts[0])
    while missing:
        data = inp.read(missing)
        if not data:
            raise ProtocolError("stdin closed in the middle of a %d-byte workload" % size)
        parts.append(data)
        missing -= len(data)
    return b"".join(parts)


def _write_frame(out, tag, payload):
    out.write(b"%s %d\n" % (tag, len(payload)))
    out.write(payload)


def _to_bytes(value):
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def _first_line(exc):
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    return text.splitlines()[0]


def _parse_options(text):
    if not text.strip():
        return {}
    try:
        options = json.loads(text)
    except ValueError as exc:
        print("gearman_driver_worker: ignoring GEARMAN_DRIVER_OPTIONS: %s" % exc, file=sys.stderr)
        return {}
    if not isinstance(options, dict):
        print("gearman_driver_worker: ignoring GEARMAN_DRIVER_OPTIONS: not a JSON object",
              file=sys.stderr)
        return {}
    return options


def _split_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]
