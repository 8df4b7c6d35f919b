#!/usr/bin/env bash
# Installs gearmand and the gearman CLI from Debian, starts gearmand on
# localhost:4730 if nothing listens there, builds gearman-driver and runs it
# with examples/driver.toml (the GDExamples namespace) in the foreground.
# Ctrl-C stops the driver; the gearmand it started is stopped too.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
if ! command -v gearmand >/dev/null && [ ! -x /usr/sbin/gearmand ] || ! command -v gearman >/dev/null; then
    $sudo apt-get update
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y gearman-job-server gearman-tools python3
fi

started_gearmand=""
if ! (exec 3<>/dev/tcp/127.0.0.1/4730) 2>/dev/null; then
    /usr/sbin/gearmand --listen=127.0.0.1 --port=4730 --log-file=/tmp/gearmand-quickstart.log &
    started_gearmand=$!
    trap '[ -n "$started_gearmand" ] && kill "$started_gearmand" 2>/dev/null' EXIT
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/4730) 2>/dev/null && break; sleep 0.1; done
fi

cargo build --release --workspace
echo "gearman-driver is starting; in another terminal try:"
echo "  echo hello | gearman -f GDExamples::Convert::convert_to_jpeg"
echo "  ./target/release/gearman-driver-console status"
echo "and open http://127.0.0.1:47301/ in a browser for the dashboard."
./target/release/gearman-driver --config examples/driver.toml
