# shellcheck shell=bash
# Throwaway PostgreSQL clusters for scripts/demo and scripts/bench-hooks (sourced, not run).
#
# Everything lives in one temporary directory ($WORK): data directories, the WAL archive,
# server logs and the Unix sockets (listen_addresses = '', so nothing listens on TCP). When
# run as root, the servers run as the `postgres` OS user and $WORK belongs to it.
#
# Cleanup runs on every exit (trap): servers started here are stopped (-m immediate), every
# process that carries this run's marker variable is killed (the pgpre co-process, pgbench,
# psql), and $WORK is removed. Set SAFE_BACKUP_KEEP_TMP=1 to keep $WORK for a post-mortem.
#
# The sourcing script sets PROG (its name, for messages) before sourcing.

PG_MAJOR=${PG_MAJOR:-15}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Marks every process this run starts, so cleanup finds detached ones (the co-process).
MARKER_VAR=SAFE_BACKUP_SCRIPT_RUN
export "$MARKER_VAR=$$-$RANDOM$RANDOM"
WORK=
STARTED_DATA_DIRS=()

die() {
    echo "$PROG: $*" >&2
    exit 1
}

# Run as root: directly when we are root, else through sudo.
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

# Install Debian's PostgreSQL server, client and contrib (amcheck) when missing; idempotent.
ensure_postgres_packages() {
    local missing=() package
    for package in "postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$package")
    done
    # contrib is part of postgresql-15 on Debian 12, a separate package on older releases.
    [[ -f /usr/share/postgresql/$PG_MAJOR/extension/amcheck.control ]] ||
        missing+=("postgresql-contrib-$PG_MAJOR")
    [[ ${#missing[@]} -eq 0 ]] && return
    command -v apt-get >/dev/null ||
        die "PostgreSQL $PG_MAJOR is missing and this is not a Debian system: install ${missing[*]}"
    echo "installing: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

# PG_BINDIR: the Debian server/client binaries of PG_MAJOR.
find_pg_bindir() {
    PG_BINDIR=/usr/lib/postgresql/$PG_MAJOR/bin
    local tool
    for tool in initdb pg_ctl postgres psql pgbench pg_amcheck; do
        [[ -x $PG_BINDIR/$tool ]] || die "$PG_BINDIR/$tool is missing"
    done
}

# `cargo build --release` of pgpre and pgpost; sets PGPRE and PGPOST.
build_release() {
    command -v cargo >/dev/null || die "cargo is missing; install Rust from https://rustup.rs"
    (cd "$REPO_ROOT" && cargo build --release --bin pgpre --bin pgpost)
    # shellcheck disable=SC2034 # used by the sourcing scripts
    PGPRE=$REPO_ROOT/target/release/pgpre
    # shellcheck disable=SC2034
    PGPOST=$REPO_ROOT/target/release/pgpost
}

# The server's OS user: postgres when we are root, else ourselves.
is_root() {
    [[ $(id -u) -eq 0 ]]
}

# Run a server program (initdb, pg_ctl) as the server user, from $WORK.
as_server_user() {
    if is_root; then
        (cd "$WORK" && runuser -u postgres -- "$@")
    else
        (cd "$WORK" && "$@")
    fi
}

# Give a path (recursively, not following symlinks) to the server user when root.
chown_to_server_user() {
    if is_root; then
        chown -hR postgres:postgres "$@"
    fi
}

# Create $WORK (0700, the server user's) and install the cleanup trap.
make_workdir() {
    if is_root && ! id postgres >/dev/null 2>&1; then
        die "running as root needs the postgres OS user (installed with postgresql-$PG_MAJOR)"
    fi
    # Short path: Unix socket paths are limited to ~107 bytes.
    WORK=$(mktemp -d /tmp/safe-backup-XXXXXX)
    chmod 0700 "$WORK"
    chown_to_server_user "$WORK"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# Pids of the processes carrying this run's marker, but not this shell.
marked_pids() {
    local environ pid
    for environ in /proc/[0-9]*/environ; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        case $(cat "/proc/$pid/comm" 2>/dev/null) in
        pgpre | pgpost | pgbench | psql | postgres | pg_ctl | pg_amcheck) ;;
        *) continue ;;
        esac
        if { tr '\0' '\n' <"$environ"; } 2>/dev/null | grep -qxF "$MARKER_VAR=${!MARKER_VAR}"; then
            echo "$pid"
        fi
    done
}

cleanup() {
    local status=$? data pid
    trap - EXIT INT TERM
    for data in "${STARTED_DATA_DIRS[@]}"; do
        [[ -f $data/postmaster.pid ]] &&
            as_server_user "$PG_BINDIR/pg_ctl" stop -D "$data" -m immediate -w -t 30 >/dev/null 2>&1
    done
    for pid in $(marked_pids); do
        kill -9 "$pid" 2>/dev/null || true
    done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ -n ${SAFE_BACKUP_KEEP_TMP:-} ]]; then
            echo "$PROG: kept $WORK" >&2
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}

# A port no server on this machine uses (TCP on 127.0.0.1 and no socket file in $WORK).
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        [[ -e $WORK/.s.PGSQL.$port ]] && continue
        # Connection refused: nobody listens there.
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free port found"
}

# initdb DATA_DIR: trust over the socket, data checksums.
cluster_initdb() {
    as_server_user "$PG_BINDIR/initdb" -D "$1" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=reject --data-checksums --no-sync >/dev/null
}

# Append the settings of a throwaway cluster: DATA_DIR PORT [ARCHIVE_DIR]; archiving is on
# when ARCHIVE_DIR is given, off otherwise.
cluster_configure() {
    local data=$1 port=$2 archive=${3:-}
    {
        echo
        echo "# $PROG: throwaway cluster"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$WORK'"
        echo "port = $port"
        echo "shared_buffers = 64MB"
        echo "wal_level = replica"
        echo "fsync = off"
        if [[ -n $archive ]]; then
            echo "archive_mode = on"
            echo "archive_command = 'test ! -f \"$archive/%f\" && cp \"%p\" \"$archive/%f\"'"
        else
            echo "archive_mode = off"
        fi
    } >>"$data/postgresql.conf"
}

# pg_ctl start DATA_DIR (log: DATA_DIR.log), remembered for cleanup.
cluster_start() {
    local data=$1
    STARTED_DATA_DIRS+=("$data")
    if ! as_server_user "$PG_BINDIR/pg_ctl" start -D "$data" -l "$data.log" -w -t 120 >/dev/null; then
        tail -n 40 "$data.log" >&2
        die "the server in $data did not start (log above: $data.log)"
    fi
}

cluster_stop() {
    as_server_user "$PG_BINDIR/pg_ctl" stop -D "$1" -m fast -w -t 60 >/dev/null
}

# Run psql against the cluster on PORT: psql_at PORT [psql args...].
psql_at() {
    local port=$1
    shift
    PGHOST=$WORK PGPORT=$port PGUSER=postgres PGDATABASE=postgres \
        "$PG_BINDIR/psql" -X -A -t -q -v ON_ERROR_STOP=1 "$@"
}

# Switch WAL on the cluster on PORT and wait (bounded) until that segment is archived.
switch_wal_and_wait_for_archive() {
    local port=$1 segment last deadline=$((SECONDS + 60))
    segment=$(psql_at "$port" -c "SELECT pg_walfile_name(pg_switch_wal())")
    while :; do
        last=$(psql_at "$port" -c "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
        # The archiver works in order: ours, or a later segment, means ours is archived.
        if [[ $last == "$segment" || ${last:0:24} > $segment ]]; then
            echo "archived $segment"
            return
        fi
        ((SECONDS < deadline)) ||
            die "WAL segment $segment was not archived within 60 s: $(psql_at "$port" -c 'TABLE pg_stat_archiver')"
        sleep 0.1
    done
}

# Wait (bounded) until the server on PORT has finished recovery and accepts writes.
wait_for_end_of_recovery() {
    local port=$1 data=$2 deadline=$((SECONDS + 120))
    until [[ $(psql_at "$port" -c "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]]; do
        if ((SECONDS >= deadline)); then
            tail -n 40 "$data.log" >&2
            die "the restored server did not finish recovery within 120 s (log above)"
        fi
        sleep 0.2
    done
}

# Start `pgbench -n -c CLIENTS -j 2 -T 600` on PORT in the background; sets LOAD_PID and
# returns once it has committed a transaction (bounded).
start_pgbench_load() {
    local port=$1 clients=$2 deadline=$((SECONDS + 60)) before
    before=$(psql_at "$port" -c "SELECT count(*) FROM pgbench_history")
    PGHOST=$WORK PGPORT=$port PGUSER=postgres PGDATABASE=postgres \
        "$PG_BINDIR/pgbench" -n -c "$clients" -j 2 -T 600 >"$WORK/pgbench.out" 2>&1 &
    LOAD_PID=$!
    while [[ $(psql_at "$port" -c "SELECT count(*) FROM pgbench_history") == "$before" ]]; do
        kill -0 "$LOAD_PID" 2>/dev/null || die "pgbench exited early: $(cat "$WORK/pgbench.out")"
        ((SECONDS < deadline)) || die "pgbench committed nothing within 60 s"
        sleep 0.1
    done
}

stop_pgbench_load() {
    kill -0 "$LOAD_PID" 2>/dev/null || die "pgbench exited early: $(cat "$WORK/pgbench.out")"
    kill "$LOAD_PID"
    wait "$LOAD_PID" 2>/dev/null || true
}
