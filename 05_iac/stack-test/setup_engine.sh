#!/usr/bin/env bash
# Air-gapped Docker engine for the Compose stack test (test scaffolding only, never product).
#
#   setup_engine.sh [up]     install docker.io/docker-compose/debootstrap, start dockerd, build the
#                            stand-in base images (default; idempotent: every step skips when done)
#   setup_engine.sh install  only the apt packages
#   setup_engine.sh start    only start dockerd (and wait until `docker info` answers)
#   setup_engine.sh images   only the stand-in images (engine must be running)
#   setup_engine.sh status   exit 0 when our dockerd answers
#   setup_engine.sh stop     stop dockerd by its PID and wait for it
#
# Network rule of this workplace: traffic only to loopback. So dockerd runs with no bridge, no
# iptables and no ip_forward change; builds use `--network host`, containers host networking,
# and every service binds 127.0.0.1. No registry can be reached: the base images are built
# here and tagged with the official names (`FROM python:3.11-slim` then needs no pull).
#
# Settings (environment):
#   STATE_DIR     rootfs, build contexts, logs, pidfile, timings   (default /tmp/persona-stack-engine)
#   DOCKER_ROOT   dockerd --data-root                               (default /var/lib/docker)
#   DEBIAN_MIRROR Debian mirror for debootstrap/apt in images       (default: read from apt sources)
#   DEBIAN_SUITE  (default bookworm)
#   DEBIAN_IMAGE / PYTHON_IMAGE / POSTGRES_IMAGE   stand-in tags
#                 (default localhost/debian:bookworm, python:3.11-slim, postgres:15.10-bookworm)
#   REBUILD=1     rebuild the stand-in images even when present
#   DOCKERD_WAIT  seconds to wait for the daemon (default 60)
#
# The postgres stand-in honours POSTGRES_USER/PASSWORD/DB, POSTGRES_HOST_AUTH_METHOD,
# POSTGRES_INITDB_ARGS and /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sh like the official
# image, plus PGPORT (default 5432; the host's own PostgreSQL holds 5432) and
# POSTGRES_LISTEN_ADDRESSES (default 127.0.0.1). Socket connections trust; TCP needs the password.
set -euo pipefail

STATE_DIR=${STATE_DIR:-/tmp/persona-stack-engine}
DOCKER_ROOT=${DOCKER_ROOT:-/var/lib/docker}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_IMAGE=${DEBIAN_IMAGE:-localhost/debian:$DEBIAN_SUITE}
PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:15.10-bookworm}
DOCKERD_WAIT=${DOCKERD_WAIT:-60}
PIDFILE=$STATE_DIR/dockerd.pid
DOCKERD_LOG=$STATE_DIR/dockerd.log
TIMINGS=$STATE_DIR/timings.log
# Debian's client matches Debian's daemon (20.10). A newer client earlier on PATH (this machine
# has a static docker 28 in /usr/local/bin) works too, but `docker build` then warns that buildx
# is missing and falls back to the legacy builder.
DOCKER=/usr/bin/docker
export DOCKER_HOST=unix:///var/run/docker.sock

mkdir -p "$STATE_DIR"

log() { printf '[setup_engine] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# timed NAME CMD...: run CMD, append "NAME seconds" to $TIMINGS.
timed() {
    local name=$1 start end rc=0
    shift
    start=$(date +%s.%N)
    "$@" || rc=$?
    end=$(date +%s.%N)
    local secs
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
    printf '%s %s %ss rc=%s\n' "$(date -u +%FT%TZ)" "$name" "$secs" "$rc" >>"$TIMINGS"
    log "$name: ${secs}s (rc=$rc)"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# 1. packages
# ---------------------------------------------------------------------------------------------
packages_present() {
    local p
    for p in docker.io docker-compose debootstrap; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
    done
}

apt_install() {
    # A package's postinst must not start dockerd/containerd through init scripts: a default
    # dockerd would create the docker0 bridge on a private range and iptables NAT rules.
    local made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    # Another apt-get (e.g. CI installing chromium) may hold the dpkg lock: wait for it.
    {
        apt-get -o DPkg::Lock::Timeout=300 update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
                --no-install-recommends docker.io docker-compose debootstrap
    } >"$STATE_DIR/apt.log" 2>&1 || rc=$?
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" = 0 ] || { tail -20 "$STATE_DIR/apt.log" >&2; return "$rc"; }
}

cmd_install() {
    if packages_present; then
        log "docker.io, docker-compose, debootstrap already installed"
    else
        timed apt-install apt_install
    fi
}

# ---------------------------------------------------------------------------------------------
# 2. the daemon
# ---------------------------------------------------------------------------------------------
dockerd_pid() {
    local pid
    [ -s "$PIDFILE" ] || return 1
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] || return 1
    printf '%s\n' "$pid"
}

engine_answers() { "$DOCKER" info >/dev/null 2>&1; }

start_dockerd() {
    mkdir -p "$DOCKER_ROOT"
    rm -f "$PIDFILE"
    # setsid + nohup: the daemon outlives the shell (and the job) that started it; it must not
    # inherit fd 9 (the setup lock), or every later setup run would wait for it forever.
    setsid nohup /usr/sbin/dockerd \
        --data-root "$DOCKER_ROOT" \
        --pidfile "$PIDFILE" \
        --host "$DOCKER_HOST" \
        --bridge=none --iptables=false --ip6tables=false --ip-forward=false \
        --log-level=info \
        </dev/null >>"$DOCKERD_LOG" 2>&1 9>&- &
    local launched=$! i
    for ((i = 0; i < DOCKERD_WAIT * 2; i++)); do
        if engine_answers; then
            # dockerd writes the pidfile itself; the launched PID is the same process.
            [ -s "$PIDFILE" ] || echo "$launched" >"$PIDFILE"
            return 0
        fi
        if ! kill -0 "$launched" 2>/dev/null; then
            tail -30 "$DOCKERD_LOG" >&2
            die "dockerd exited during start-up (log: $DOCKERD_LOG)"
        fi
        sleep 0.5
    done
    tail -30 "$DOCKERD_LOG" >&2
    die "dockerd did not answer within ${DOCKERD_WAIT}s (log: $DOCKERD_LOG)"
}

cmd_start() {
    [ -x /usr/sbin/dockerd ] || die "dockerd missing: run '$0 install' first"
    local pid
    if pid=$(dockerd_pid) && engine_answers; then
        log "dockerd already running (pid $pid, root $("$DOCKER" info -f '{{.DockerRootDir}}'))"
        return 0
    fi
    if engine_answers; then
        die "another Docker engine answers on $DOCKER_HOST (not ours: no live pid in $PIDFILE)"
    fi
    timed dockerd-start start_dockerd
    log "dockerd running: pid $(cat "$PIDFILE"), data root $DOCKER_ROOT, log $DOCKERD_LOG"
}

# wait_gone PID TRIES: wait up to TRIES half-seconds for process PID to exit.
wait_gone() {
    local i
    for ((i = 0; i < $2; i++)); do
        [ -d "/proc/$1" ] || return 0
        sleep 0.5
    done
}

cmd_stop() {
    local pid i
    if ! pid=$(dockerd_pid); then
        log "dockerd not running (no live pid in $PIDFILE)"
        rm -f "$PIDFILE"
        return 0
    fi
    # The managed containerd is dockerd's child; remember it in case dockerd must be killed.
    local ctd_pid=""
    [ -s /var/run/docker/containerd/containerd.pid ] && ctd_pid=$(cat /var/run/docker/containerd/containerd.pid)
    log "stopping dockerd (pid $pid)"
    kill -TERM "$pid"
    wait_gone "$pid" 120
    if [ -d "/proc/$pid" ]; then
        log "dockerd still alive after 60s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
    fi
    if [ -n "$ctd_pid" ] && [ -d "/proc/$ctd_pid" ] &&
        [ "$(cat "/proc/$ctd_pid/comm" 2>/dev/null)" = containerd ]; then
        wait_gone "$ctd_pid" 20
        if [ -d "/proc/$ctd_pid" ]; then
            log "stopping leftover containerd (pid $ctd_pid)"
            kill -TERM "$ctd_pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
    log "dockerd stopped"
}

cmd_status() {
    local pid
    if pid=$(dockerd_pid) && engine_answers; then
        log "dockerd running (pid $pid)"
        return 0
    fi
    log "dockerd not running"
    return 1
}

# ---------------------------------------------------------------------------------------------
# 3. stand-in base images
# ---------------------------------------------------------------------------------------------
# The Debian mirror apt uses here (deb822 .sources or one-line .list); first non-security one.
apt_uris() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        case "$f" in
        *.sources) awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" ;;
        *) awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f" ;;
        esac
    done
}
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    apt_uris | grep -E '/debian/?$' | grep -v -- '-security' | head -1 | sed 's:/*$::'
}
debian_security_mirror() {
    apt_uris | grep -E '/debian-security/?$' | head -1 | sed 's:/*$::'
}

image_present() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }
image_recipe() { "$DOCKER" image inspect -f '{{ index .Config.Labels "stack-test.recipe" }}' "$1" 2>/dev/null || true; }
image_size() { "$DOCKER" image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

debootstrap_rootfs() {
    local rootfs=$1 mirror=$2
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$mirror" >"$STATE_DIR/debootstrap.log" 2>&1 ||
        { tail -20 "$STATE_DIR/debootstrap.log" >&2; return 1; }
}

import_rootfs() {
    local rootfs=$1 mirror=$2 security
    security=$(debian_security_mirror)
    # apt sources of the images: the same mirror the host uses
    {
        echo "deb $mirror $DEBIAN_SUITE main"
        echo "deb $mirror $DEBIAN_SUITE-updates main"
        [ -n "$security" ] && echo "deb $security $DEBIAN_SUITE-security main"
    } >"$rootfs/etc/apt/sources.list"
    # the official image's apt settings: no caches kept in layers
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
        "$rootfs"/debootstrap
    # the host's /etc/resolv.conf, hostname and hosts are bind-mounted by docker at run time
    : >"$rootfs/etc/resolv.conf"
    tar --numeric-owner -C "$rootfs" -c . |
        "$DOCKER" import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            - "$DEBIAN_IMAGE" >/dev/null
}

build_debian() {
    if image_present "$DEBIAN_IMAGE" && [ "${REBUILD:-0}" != 1 ]; then
        log "$DEBIAN_IMAGE present ($(image_size "$DEBIAN_IMAGE"))"
        return 0
    fi
    local mirror rootfs=$STATE_DIR/rootfs
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*; set DEBIAN_MIRROR"
    # a finished rootfs is reused (e.g. after the docker data root was wiped)
    if [ ! -f "$rootfs.complete" ] || [ "${REBUILD:-0}" = 1 ]; then
        rm -f "$rootfs.complete"
        log "debootstrap $DEBIAN_SUITE from $mirror into $rootfs"
        timed debootstrap debootstrap_rootfs "$rootfs" "$mirror"
        touch "$rootfs.complete"
    else
        log "reusing $rootfs"
    fi
    timed "import $DEBIAN_IMAGE" import_rootfs "$rootfs" "$mirror"
    log "$DEBIAN_IMAGE built ($(image_size "$DEBIAN_IMAGE"))"
}

docker_build_logged() {
    local blog=$1
    shift
    "$DOCKER" build --network host "$@" >"$blog" 2>&1
}

# build_standin TAG CONTEXT: build CONTEXT/Dockerfile as TAG unless an image with the same
# recipe (hash of the context) is there.
build_standin() {
    local tag=$1 ctx=$2 recipe base_id
    # the recipe: the context's files and the base image's id (a new base rebuilds this one)
    base_id=$("$DOCKER" image inspect -f '{{.Id}}' "$DEBIAN_IMAGE")
    recipe=$( (cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum && echo "$base_id") |
        sha256sum | cut -c1-16)
    if [ "$(image_recipe "$tag")" = "$recipe" ] && [ "${REBUILD:-0}" != 1 ]; then
        log "$tag present ($(image_size "$tag"))"
        return 0
    fi
    local blog=$STATE_DIR/build-${tag//[:\/]/_}.log
    timed "build $tag" docker_build_logged "$blog" --label "stack-test.recipe=$recipe" \
        --build-arg "BASE=$DEBIAN_IMAGE" -t "$tag" "$ctx" ||
        { tail -30 "$blog" >&2; die "build of $tag failed (log: $blog)"; }
    # the image this build replaced (same label, now untagged)
    "$DOCKER" image prune -f --filter "label=stack-test.recipe" >/dev/null || true
    log "$tag built ($(image_size "$tag"))"
}

python_context() {
    local ctx=$STATE_DIR/build/python
    rm -rf "$ctx"
    mkdir -p "$ctx/local-ca"
    # The registries are reached through an intercepting CA: trust what the host trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
    local f
    for f in /usr/local/share/ca-certificates/*; do
        [ -f "$f" ] && cp "$f" "$ctx/local-ca/"
    done
    cat >"$ctx/Dockerfile" <<'EOF'
# Stand-in for the official python:3.11-slim (Debian bookworm's python3 is 3.11).
# Test scaffolding only: it carries this machine's CA bundle.
ARG BASE
FROM ${BASE}
ENV LANG=C.UTF-8
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-pip python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /usr/bin/python3 /usr/local/bin/python \
 && ln -sf /usr/bin/python3 /usr/local/bin/python3 \
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip \
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip3 \
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED
COPY local-ca/ /usr/local/share/ca-certificates/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    UV_HTTP_TIMEOUT=180
CMD ["python3"]
EOF
    echo "$ctx"
}

postgres_context() {
    local ctx=$STATE_DIR/build/postgres
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cat >"$ctx/Dockerfile" <<'EOF'
# Stand-in for the official postgres:15 image: Debian's postgresql-15 and a small entrypoint
# with the same contract (POSTGRES_USER/PASSWORD/DB, /docker-entrypoint-initdb.d/*.sql|*.sh on
# first start, PGDATA=/var/lib/postgresql/data). For host networking it listens on
# POSTGRES_LISTEN_ADDRESSES (default 127.0.0.1) and PGPORT (default 5432).
ARG BASE
FROM ${BASE}
ENV LANG=C.UTF-8
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /docker-entrypoint-initdb.d /var/run/postgresql /var/lib/postgresql/data \
 && chown postgres:postgres /var/run/postgresql /var/lib/postgresql/data \
 && chmod 3777 /var/run/postgresql && chmod 700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    PGPORT=5432
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
EOF
    cat >"$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/bash
# Minimal entrypoint with the official postgres image's contract.
set -Eeuo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
: "${PGPORT:=5432}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_LISTEN_ADDRESSES:=127.0.0.1}"
: "${POSTGRES_INITDB_ARGS:=}"
export PGDATA PGPORT

if [ "${1:0:1}" = '-' ]; then set -- postgres "$@"; fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ]; then
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
        if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
            echo "error: database is uninitialized and POSTGRES_PASSWORD is not set" >&2
            echo "       (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
            exit 1
        fi
        # Socket connections trust (as in the official image); TCP, the only way other
        # containers come in, needs the password, also from 127.0.0.1 under host networking.
        # (the process substitution must sit on initdb's own command line to stay open)
        # shellcheck disable=SC2086
        if [ -n "${POSTGRES_PASSWORD:-}" ]; then
            initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
                --auth-local=trust --auth-host="$auth" -D "$PGDATA" $POSTGRES_INITDB_ARGS
        else
            initdb --username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth" \
                -D "$PGDATA" $POSTGRES_INITDB_ARGS
        fi
        printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p $PGPORT" -w start
        psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc -p "$PGPORT")
        if [ "$POSTGRES_DB" != postgres ]; then
            "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
        fi
        shopt -s nullglob
        for f in /docker-entrypoint-initdb.d/*; do
            case "$f" in
            *.sh)
                echo "$0: running $f"
                # shellcheck disable=SC1090
                if [ -x "$f" ]; then "$f"; else . "$f"; fi
                ;;
            *.sql) echo "$0: running $f"; "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
            *.sql.gz) echo "$0: running $f"; gunzip -c "$f" | "${psql[@]}" --dbname "$POSTGRES_DB" ;;
            *) echo "$0: ignoring $f" ;;
            esac
        done
        shopt -u nullglob
        pg_ctl -D "$PGDATA" -m fast -w stop
        echo "PostgreSQL init process complete; ready for start up."
    fi
    shift
    exec postgres -c listen_addresses="$POSTGRES_LISTEN_ADDRESSES" -p "$PGPORT" "$@"
fi

exec "$@"
EOF
    chmod 755 "$ctx/docker-entrypoint.sh"
    echo "$ctx"
}

cmd_images() {
    engine_answers || die "no Docker engine answers: run '$0 start' first"
    build_debian
    build_standin "$PYTHON_IMAGE" "$(python_context)"
    build_standin "$POSTGRES_IMAGE" "$(postgres_context)"
    local t
    for t in "$DEBIAN_IMAGE" "$PYTHON_IMAGE" "$POSTGRES_IMAGE"; do
        log "image $t: $(image_size "$t")"
    done
}

# ---------------------------------------------------------------------------------------------
main() {
    local cmd=${1:-up}
    case "$cmd" in
    up)
        cmd_install
        cmd_start
        cmd_images
        ;;
    install) cmd_install ;;
    start) cmd_start ;;
    images) cmd_images ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    -h | --help | help) sed -n '2,/^set -euo pipefail/{/^#/s/^# \{0,1\}//p}' "$0" ;;
    *) die "unknown command '$cmd' (up|install|start|images|status|stop)" ;;
    esac
}

# One setup at a time (stop/status do not wait for it).
case "${1:-up}" in
up | install | start | images)
    exec 9>"$STATE_DIR/setup.lock"
    flock 9
    ;;
esac
main "$@"
