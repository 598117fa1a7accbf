#!/usr/bin/env bash
# Build the wavecls image and check the running container end to end.
#
#   usage: scripts/docker-check.sh <docker-smoke.sh>      (run as root)
#
# docker-smoke.sh builds the Dockerfile at the repository root, starts the
# container and waits for GET /health/ready to return 2xx. This script then
# checks, from inside the container's network namespace:
#   - a square waveform from /generate is classified as "square" by /classify;
#   - invalid /classify bodies get 422;
#   - the image's HEALTHCHECK reports "healthy";
#   - `docker stop` (SIGTERM) ends the container with exit code 0 within
#     STOP_TIMEOUT_S seconds, with no Python traceback in its log.
# The container runs with a read-only root filesystem, no capabilities and
# no-new-privileges, as the Kubernetes manifests in deploy/k8s/ run it.
# docker-smoke.sh prints its "HEALTHCHECK status" line after the stop, so that
# line can read "unhealthy" for a container that passed every check.
#
# Environment variables:
#   STOP_TIMEOUT_S      seconds `docker stop` waits before SIGKILL (default 20)
#   HEALTHY_TIMEOUT_S   seconds to wait for the HEALTHCHECK status "healthy"
#                       (default 30)
#   Variables that docker-smoke.sh reads (SMOKE_TIMEOUT, STATE_DIR, ...) are
#   passed through. BUILD_ARGS, RUN_ARGS, SMOKE_PATH, SMOKE_CMD and
#   REQUIRE_NON_ROOT are set here.
#
# Exit codes: 0 passed; 1 the build or a check failed; 2 usage error;
# 3 the container engine could not be set up, so nothing was checked.

# The wavecls_ functions run only through SMOKE_CMD, which shellcheck cannot see.
# shellcheck disable=SC2317
set -euo pipefail

if [ $# -ne 1 ]; then
  printf 'usage: %s <path to docker-smoke.sh>\n' "$0" >&2
  exit 2
fi
smoke_script=$1
if [ ! -f "$smoke_script" ]; then
  printf 'container check: smoke script not found: %s\n' "$smoke_script" >&2
  exit 2
fi
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

export STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-20}
export HEALTHY_TIMEOUT_S=${HEALTHY_TIMEOUT_S:-30}

# The functions below run as SMOKE_CMD: docker-smoke.sh starts them with
# `bash -c` inside the container's network namespace, with APP_URL, CONTAINER
# and DOCKER_HOST set. They reach that shell as exported functions, so each
# name has the wavecls_ prefix and cannot clash with the functions of
# docker-smoke.sh.

wavecls_fail() {
  printf 'container check failed: %s\n' "$*" >&2
  return 1
}

# Run Debian's docker client when it is installed, as docker-smoke.sh does,
# because its version matches the engine that docker-smoke.sh starts.
wavecls_docker() {
  if [ -x /usr/bin/docker ]; then
    /usr/bin/docker "$@"
  else
    command docker "$@"
  fi
}

# Run Python code in the container (the host may have no Python), reading
# JSON from stdin.
wavecls_container_python() {
  wavecls_docker exec -i "$CONTAINER" python -c "$1"
}

wavecls_check_classify_round_trip() {
  local generated request response label
  generated=$(curl -fsS "$APP_URL/generate?type=square&count=1&seed=3") ||
    wavecls_fail "GET /generate?type=square&count=1&seed=3 did not return 2xx" || return
  request=$(printf '%s' "$generated" | wavecls_container_python '
import json, sys
example = json.load(sys.stdin)["examples"][0]
if example["label"] != "square":
    sys.exit("/generate returned label " + repr(example["label"]))
print(json.dumps({"waveform": example["waveform"]}))') ||
    wavecls_fail "unexpected /generate response: ${generated:0:300}" || return

  response=$(curl -fsS -X POST -H 'content-type: application/json' \
    --data-binary "$request" "$APP_URL/classify") ||
    wavecls_fail "POST /classify with a generated square waveform did not return 2xx" || return
  label=$(printf '%s' "$response" |
    wavecls_container_python 'import json, sys; print(json.load(sys.stdin)["label"])') ||
    wavecls_fail "unexpected /classify response: ${response:0:300}" || return
  [ "$label" = square ] ||
    wavecls_fail "/classify labelled a square waveform '$label': ${response:0:300}" || return
  printf 'POST /classify (square waveform, seed 3) -> %s\n' "${response:0:200}"
}

wavecls_check_invalid_bodies() {
  local body status
  local -a bodies=(
    '{"waveform": [0.0, 1.0, 2.0]}'
    '{"waveform": "not a list"}'
    '{"signal": []}'
    '{"waveform": [0.0,'
  )
  for body in "${bodies[@]}"; do
    status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST \
      -H 'content-type: application/json' --data-binary "$body" "$APP_URL/classify") ||
      wavecls_fail "POST /classify with an invalid body got no response" || return
    [ "$status" = 422 ] ||
      wavecls_fail "POST /classify with body '$body' returned HTTP $status, expected 422" || return
  done
  printf 'POST /classify with %d invalid bodies -> 422 each\n' "${#bodies[@]}"
}

# RUN_ARGS below sets --health-interval=2s, so the image's own HEALTHCHECK
# command runs every 2 s instead of every 30 s.
wavecls_check_healthcheck() {
  local status="" deadline=$((SECONDS + HEALTHY_TIMEOUT_S))
  while [ "$SECONDS" -lt "$deadline" ]; do
    status=$(wavecls_docker inspect -f '{{.State.Health.Status}}' "$CONTAINER")
    [ "$status" = healthy ] && break
    sleep 1
  done
  if [ "$status" != healthy ]; then
    wavecls_docker inspect -f '{{json .State.Health.Log}}' "$CONTAINER" >&2
    wavecls_fail "HEALTHCHECK status is '$status' after ${HEALTHY_TIMEOUT_S}s, expected healthy"
    return
  fi
  printf 'HEALTHCHECK -> healthy\n'
}

wavecls_check_graceful_stop() {
  local start elapsed exit_code
  start=$EPOCHREALTIME
  wavecls_docker stop -t "$STOP_TIMEOUT_S" "$CONTAINER" >/dev/null ||
    wavecls_fail "docker stop $CONTAINER failed" || return
  elapsed=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  exit_code=$(wavecls_docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")

  # docker stop sends SIGKILL once the timeout passes, which gives exit code 137.
  [ "$exit_code" = 0 ] ||
    wavecls_fail "after SIGTERM the container exited with code $exit_code, expected 0" || return
  awk -v e="$elapsed" -v t="$STOP_TIMEOUT_S" 'BEGIN { exit !(e < t) }' ||
    wavecls_fail "docker stop took ${elapsed}s, not under the ${STOP_TIMEOUT_S}s timeout" || return
  if wavecls_docker logs "$CONTAINER" 2>&1 | grep -q '^Traceback'; then
    wavecls_fail "the container log contains a Python traceback" || return
  fi
  printf 'docker stop (SIGTERM) -> exit code 0 after %ss\n' "$elapsed"
}

wavecls_container_checks() {
  wavecls_check_classify_round_trip &&
    wavecls_check_invalid_bodies &&
    wavecls_check_healthcheck &&
    wavecls_check_graceful_stop
}

export -f wavecls_fail wavecls_docker wavecls_container_python \
  wavecls_check_classify_round_trip wavecls_check_invalid_bodies \
  wavecls_check_healthcheck wavecls_check_graceful_stop wavecls_container_checks

rc=0
BUILD_ARGS="--build-arg TORCH_INDEX_URL=" \
  RUN_ARGS="--read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges --health-interval=2s" \
  REQUIRE_NON_ROOT=1 \
  SMOKE_PATH=/health/ready \
  SMOKE_CMD=wavecls_container_checks \
  bash "$smoke_script" "$repo_root" || rc=$?

case $rc in
  0) printf 'container check: OK\n' ;;
  3) printf 'container check: engine unavailable (docker-smoke.sh exit 3, reason in its last line above); the image was not built or checked\n' ;;
  *) printf 'container check: FAILED (docker-smoke.sh exit %s)\n' "$rc" ;;
esac
exit "$rc"
