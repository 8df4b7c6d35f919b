#!/bin/sh
# Runs `gearman -w` for the functions the supervisor assigned, against the
# first of its servers (the CLI takes one), with the arguments given to this
# script as the per-job command: gearman-cli-worker.sh rev
set -eu
server=${GEARMAN_SERVERS%%,*}
host=${server%:*}
port=${server##*:}
set -- -- "$@"
for f in $(echo "$GEARMAN_DRIVER_FUNCTIONS" | tr ',' ' '); do
    set -- -f "$f" "$@"
done
# exec keeps the PID the supervisor knows, so its signals reach the CLI.
exec gearman -w -h "$host" -p "$port" "$@"
