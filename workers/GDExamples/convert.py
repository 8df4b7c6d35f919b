#!/usr/bin/env python3
"""GDExamples::Convert: the Convert example of the Gearman::Driver blog post,
as a gearman-driver stdio worker serving convert_to_jpeg and convert_to_gif.

STAND-IN, NOT A REAL CONVERTER. The original decodes the workload with
Imager and writes it back as JPEG or GIF. Doing that here would need an
imaging library (ImageMagick, Pillow); this example is meant to run with
nothing but python3. So each job reads what it can from the image header
(format and size, for PNG, GIF, JPEG, BMP and netpbm) and answers a one-line
report of the conversion it would have done, for example

    convert_to_jpeg: png 640x480, 5120 bytes, sha256 3a7bd3e2360a3d29 -> jpeg, quality 75 (stand-in: no pixels converted)

The answer is deterministic and depends only on the workload and the
`quality` worker option, which the driver config may set:

    [worker_options."GDExamples::Convert"]
    quality = 85

Like Imager's `read(...) or die`, a job fails on an empty workload, and on a
workload of just `fail`, so that operators can watch a failure reach the
console as `ERROR: ...`:

    echo fail | gearman -f GDExamples::Convert::convert_to_gif
"""

import hashlib
import os
import re
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

from gearman_driver_worker import Worker  # noqa: E402

worker = Worker()


@worker.job("convert_to_jpeg")
def convert_to_jpeg(job):
    return _convert(job, "jpeg")


@worker.job("convert_to_gif")
def convert_to_gif(job):
    return _convert(job, "gif")


def _convert(job, target):
    data = job.workload
    if not data:
        raise ValueError("cannot convert to %s: empty workload, no image to read" % target)
    if data.strip() == b"fail":
        raise ValueError("cannot convert to %s: the workload asked to fail" % target)
    kind, size = _identify(data)
    source = kind if size is None else "%s %dx%d" % (kind, size[0], size[1])
    result = "%s: %s, %d bytes, sha256 %s -> %s" % (
        job.name, source, len(data), hashlib.sha256(data).hexdigest()[:16], target)
    if target == "jpeg":
        result += ", quality %d" % _quality(job.options)
    return (result + " (stand-in: no pixels converted)\n").encode()


def _quality(options):
    quality = options.get("quality", 75)
    if isinstance(quality, str) and quality.strip().isdigit():
        quality = int(quality)
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError("worker option quality must be a whole number from 1 to 100, not %r"
                         % (quality,))
    return quality


_PNG = b"\x89PNG\r\n\x1a\n"
_NETPBM = {b"P1": "pbm", b"P2": "pgm", b"P3": "ppm", b"P4": "pbm", b"P5": "pgm", b"P6": "ppm"}


def _identify(data):
    """(format, (width, height) or None) from the image header alone."""
    if data.startswith(_PNG) and data[12:16] == b"IHDR" and len(data) >= 24:
        return "png", struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return "gif", struct.unpack("<HH", data[6:10])
    if data.startswith(b"\xff\xd8"):
        return "jpeg", _jpeg_size(data)
    if data.startswith(b"BM") and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return "bmp", (width, abs(height))
    if data[:2] in _NETPBM:
        header = re.sub(rb"#[^\n]*", b" ", data[:4096]).split()
        if len(header) >= 3 and header[1].isdigit() and header[2].isdigit():
            return _NETPBM[data[:2]], (int(header[1]), int(header[2]))
        return _NETPBM[data[:2]], None
    return "unknown data", None


def _jpeg_size(data):
    # Walk the marker segments up to the first start-of-frame, which holds
    # the size; C4, C8 and CC share the range but are not frames.
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


if __name__ == "__main__":
    worker.run()
