# Sourced by the scripts that start background servers.

# stop_pid PID: SIGTERM, then wait up to 10 s for the process to end (SIGKILL
# after that), so that a `stop` returns only once the server is gone and the
# next run (or the test suite) never meets it.
stop_pid() {
  local pid="$1" i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}
