# Sourced by the demo: progress lines with the elapsed time, and long commands
# whose output is shown as it comes, with a line of their own whenever they
# have been silent for HEARTBEAT seconds (a cold build is never silent for long).

DEMO_START=${DEMO_START:-$SECONDS}
HEARTBEAT=${HEARTBEAT:-15}

# The elapsed time since the demo started, as [m:ss].
stamp() {
  local s=$((SECONDS - DEMO_START))
  printf '[%d:%02d]' $((s / 60)) $((s % 60))
}

# step TITLE: a progress line.
step() { printf '\n%s %s\n' "$(stamp)" "$*"; }

# stream TITLE CMD...: runs CMD, shows its output (stdout and stderr) indented
# as it comes, and a heartbeat line after each HEARTBEAT seconds of silence.
# Returns CMD's status.
stream() {
  local title=$1 start=$SECONDS line status
  shift
  set +e
  "$@" 2>&1 | {
    while :; do
      if IFS= read -r -t "$HEARTBEAT" line; then
        printf '    %s\n' "$line"
      elif [ $? -gt 128 ]; then
        # A timed-out read keeps what it got so far; show it with the heartbeat.
        [ -n "$line" ] && printf '    %s\n' "$line"
        printf '%s   ... %s: still working (%ds)\n' "$(stamp)" "$title" $((SECONDS - start))
      else
        [ -n "$line" ] && printf '    %s\n' "$line"
        break
      fi
    done
  }
  status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

# wait_job PID LOG TITLE: waits for background job PID, printing LOG's last
# line every HEARTBEAT seconds meanwhile. Returns the job's status; on failure
# shows the end of LOG.
wait_job() {
  local pid=$1 log=$2 title=$3 start=$SECONDS status=0 last=''
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (((SECONDS - start) % HEARTBEAT == 0)); then
      last=$(tail -n 1 "$log" 2>/dev/null | cut -c1-160)
      printf '%s   ... %s (%ds): %s\n' "$(stamp)" "$title" $((SECONDS - start)) "$last"
    fi
  done
  wait "$pid" || status=$?
  if [ "$status" -ne 0 ]; then
    printf '%s %s failed (exit %d); the end of %s:\n' "$(stamp)" "$title" "$status" "$log" >&2
    tail -n 30 "$log" >&2
  fi
  return "$status"
}
