# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Shared by the client scripts (sourced, not run). Expects ROOT to be the repository root.

# Generator and tool versions: the generated code depends on them (scripts/gen-clients).
GRPCIO_TOOLS_VERSION=1.85.1
BUF_VERSION=1.75.0
BUF="$ROOT/.tools/node_modules/.bin/buf"

# The project's own Python environment: scripts/install-deps creates it (python3 -m venv) and
# installs every Python package there, never into the machine's Python. Every script that runs
# Python uses its interpreter (pick_python).
VENV="$ROOT/.venv"

# pick_python: the project's .venv interpreter, whether or not it exists yet (a script that
# needs it reports "run scripts/install-deps" when it is absent).
pick_python() {
  echo "$VENV/bin/python"
}

# skip_or_fail NAME MESSAGE: a missing toolchain fails under CI=true, and skips (exit 0,
# saying why) elsewhere.
skip_or_fail() {
  local name="$1"; shift
  if [ "${CI:-}" = "true" ]; then echo "$name: FAIL: $*" >&2; exit 1; fi
  echo "$name: SKIP: $*" >&2; exit 0
}

# ensure_tend_bin NAME: sets and exports TEND_BIN (default target/debug/tend, built with
# `cargo build` when missing).
ensure_tend_bin() {
  local name="$1"
  if [ -z "${TEND_BIN:-}" ]; then
    TEND_BIN="$ROOT/target/debug/tend"
    if [ ! -x "$TEND_BIN" ]; then
      command -v cargo >/dev/null || skip_or_fail "$name" "no $TEND_BIN and no cargo to build it"
      (cd "$ROOT" && cargo build --quiet)
    fi
  fi
  [ -x "$TEND_BIN" ] || skip_or_fail "$name" "TEND_BIN=$TEND_BIN is not an executable"
  TEND_BIN="$(cd "$(dirname "$TEND_BIN")" && pwd)/$(basename "$TEND_BIN")"
  export TEND_BIN
}

# The engines for the RunnerService tests (scripts/README-engines.md): Debian packages that
# scripts/install-deps installs with the rest, and that scripts/docker-up and scripts/nix-setup
# install themselves when run alone.
DOCKER_APT_PACKAGES=(docker.io busybox-static)
NIX_APT_PACKAGES=(nix-bin)
# The plugin-store tests start their own OCI registry on loopback (tests/helper/engines.rs).
REGISTRY_APT_PACKAGES=(docker-registry)
# scripts/test's private engine: its state directory, and the busybox rootfs tarball that
# scripts/docker-up keeps there (the test image tend-test/busybox:latest is imported from it).
TEND_DOCKER_DIR_DEFAULT="$ROOT/.tools/docker"
BUSYBOX_TAR_NAME=busybox-rootfs.tar
TEST_IMAGE=tend-test/busybox:latest

# apt_missing PACKAGE...: prints those of the Debian packages that are not installed.
apt_missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
