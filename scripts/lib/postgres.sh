# Sourced by scripts/test and scripts/bench: start and stop a throwaway PostgreSQL from
# the machine's installed server binaries, in a directory and on a port of its own.
# After start_throwaway_postgres, DATABASE_URL points at it (and PG_BIN, PG_PORT say
# where its binaries are and which port it has); an EXIT trap removes it.
# PG_SERVER_OPTS adds server settings (`-c name=value ...`) to the throwaway's.

find_pg_bin() {
  if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
    pg_config --bindir; return
  fi
  local d
  for d in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin /opt/homebrew/bin /usr/local/bin /usr/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  done
  return 1
}

start_throwaway_postgres() {
  local bin
  if ! bin=$(find_pg_bin); then
    echo "${0##*/}: no PostgreSQL server binaries (initdb, pg_ctl) found." >&2
    echo "  Install PostgreSQL 15 or newer (Debian: apt-get install postgresql)," >&2
    echo "  or point DATABASE_URL at a server you have." >&2
    exit 1
  fi
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/rollwarden-pg.XXXXXX")
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $((20000 + RANDOM % 20000)))
  # initdb refuses to run as root: run the server as the postgres user then.
  local as=()
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "${0##*/}: running as root but there is no 'postgres' user to run PostgreSQL as." >&2
      exit 1
    fi
    chown postgres "$PG_DIR"
    as=(runuser -u postgres --)
  fi
  PG_CTL=("${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data")
  trap stop_throwaway_postgres EXIT
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -A trust -U postgres --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; echo "${0##*/}: initdb failed" >&2; exit 1; }
  "${PG_CTL[@]}" -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on ${PG_SERVER_OPTS:-}" \
    -l "$PG_DIR/server.log" -w start >/dev/null \
    || { cat "$PG_DIR/server.log" >&2; echo "${0##*/}: PostgreSQL did not start" >&2; exit 1; }
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  # For callers that need more of the cluster than DATABASE_URL (createdb, say).
  PG_BIN=$bin
  PG_PORT=$port
  echo "${0##*/}: throwaway PostgreSQL on port $port ($PG_DIR)"
}

stop_throwaway_postgres() {
  if [ -n "${PG_DIR:-}" ]; then
    "${PG_CTL[@]}" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
