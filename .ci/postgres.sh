#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on loopback for the tests that also run on PostgreSQL.
# Sourced by .ci/run and by `make test`; prints TEST_POSTGRES_URL on success. Best effort: when
# PostgreSQL cannot be installed or started, those tests skip and say why. FKS_PG_INSTALL=0 (what
# `make test` sets) uses installed binaries only, never apt-get.
fks_start_postgres() {
  local bin port=${FKS_TEST_PG_PORT:-} dir
  if [ -z "$port" ]; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  fi
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bin" ] && [ "${FKS_PG_INSTALL:-1}" != 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing PostgreSQL (Debian package) for the PostgreSQL tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || true
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  fi
  if [ -z "$bin" ]; then
    echo "PostgreSQL's server binaries are not installed (apt-get install postgresql): its test twins will skip"
    return 0
  fi
  dir=$(mktemp -d /tmp/fks-pg.XXXXXX)
  local run=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; run=(runuser -u postgres --); fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >/dev/null || { echo "initdb failed"; return 0; }
  "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" \
    -l "$dir/log" -w start >/dev/null || { echo "PostgreSQL did not start: see $dir/log"; return 0; }
  export TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
  export FKS_PG_DIR="$dir" FKS_PG_BIN="$bin"
  echo "PostgreSQL running for the tests: $TEST_POSTGRES_URL"
}

fks_stop_postgres() {
  if [ -n "${FKS_PG_DIR:-}" ]; then
    local run=()
    [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
    "${run[@]}" "$FKS_PG_BIN/pg_ctl" -D "$FKS_PG_DIR/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$FKS_PG_DIR"
  fi
}
