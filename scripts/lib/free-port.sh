# shellcheck shell=bash
# Sourced by scripts/bench, bench-compression, demo and load.
#
# free_port VAR: sets VAR to a local TCP port nothing listens on, drawn at random from
# 20000-31999, below the kernel's ephemeral range (32768 on Linux), so an outgoing connection
# cannot take it before its server binds; never one handed out before in this run. The ports
# handed out are kept in PORTS_GIVEN (space-separated, with a space at each end), which a
# script may seed with ports it already uses before the first call. VAR is set by name rather
# than echoed into $(...): a subshell would forget the ports it gave.
PORTS_GIVEN=${PORTS_GIVEN:-" "}
free_port() {
  local candidate
  for _ in $(seq 1 500); do
    candidate=$((20000 + RANDOM % 12000))
    case "$PORTS_GIVEN" in *" $candidate "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
      PORTS_GIVEN="$PORTS_GIVEN$candidate "
      printf -v "$1" '%s' "$candidate"
      return 0
    fi
  done
  echo "no free TCP port found" >&2
  return 1
}
