#!/usr/bin/env bash
# install.sh: set up broke in ./.venv from the hash-locked requirements.
#
# Runs on macOS (bash 3.2) and Linux. Never prompts, never edits files outside
# the checkout. Re-running is a no-op (well under a second) until the lock
# file, pyproject.toml, this script, the Python interpreter or the mode change.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: ./install.sh [--dev] [--offline | --mirror-wheels] [-h|--help]

Creates .venv in this checkout, installs the locked dependencies with
pip --require-hashes, then installs broke itself in editable mode.

  --dev            also install the test tools (uses requirements-dev.lock
                   instead of requirements.lock)
  --offline        install only from vendor/wheels (pip --no-index); fails with
                   a clear error if the directory is missing or incomplete
  --mirror-wheels  download the locked wheels into vendor/wheels, then install
                   from there with --no-index. pip downloads wheels for THIS
                   platform and Python version only: mirror on a machine of the
                   same OS, CPU architecture and Python minor version as the
                   one that will run --offline.
  -h, --help       show this help

Environment:
  PYTHON           interpreter used to create .venv (default: python3; needs >= 3.11)
EOF
}

die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*"; }

# --- options -----------------------------------------------------------------
dev=0 offline=0 mirror=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) dev=1 ;;
    --offline) offline=1 ;;
    --mirror-wheels) mirror=1 ;;
    -h | --help) usage; exit 0 ;;
    *) printf 'install.sh: unknown option: %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
if [ "$offline" = 1 ] && [ "$mirror" = 1 ]; then
  die "--offline and --mirror-wheels exclude each other (mirroring needs the network)"
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
VPY="$VENV/bin/python"
WHEELS="vendor/wheels"
STAMP="$VENV/.broke-install-stamp"

if [ "$dev" = 1 ]; then mode=dev lock=requirements-dev.lock; else mode=runtime lock=requirements.lock; fi
[ -f "$lock" ] || die "$lock not found in $ROOT"

# --- interpreter check + stamp key (one Python start-up, portable hashing) ---
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 ||
  die "'$PY' not found. Install Python 3.11 or newer, or point PYTHON at one (PYTHON=/path/to/python3.11 ./install.sh)"

# Prints "X.Y.Z" then the stamp key: sha256 over mode, the full interpreter
# version, and the lock file, pyproject.toml and install.sh contents.
# Exits 3 if the interpreter is older than 3.11.
KEY_PY='
import hashlib, sys
v = sys.version_info
print("%d.%d.%d" % v[:3])
if v < (3, 11):
    sys.exit(3)
h = hashlib.sha256(("mode=%s\npython=%s\n" % (sys.argv[1], sys.version)).encode())
for path in sys.argv[2:]:
    with open(path, "rb") as f:
        h.update(("%s %s\n" % (hashlib.sha256(f.read()).hexdigest(), path)).encode())
print(h.hexdigest())
'
rc=0
info="$("$PY" -c "$KEY_PY" "$mode" "$lock" pyproject.toml install.sh tools/check_env.py)" || rc=$?
py_version="$(printf '%s\n' "$info" | sed -n 1p)"
key="$(printf '%s\n' "$info" | sed -n 2p)"
if [ "$rc" = 3 ]; then
  die "broke needs Python >= 3.11, but '$PY' is Python $py_version. Install 3.11+ and re-run with PYTHON=/path/to/python3.11 ./install.sh"
elif [ "$rc" != 0 ] || [ -z "$key" ]; then
  die "could not run '$PY' as Python (exit $rc). Point PYTHON at a Python 3.11+ interpreter."
fi

# A new home gets the .env template (every provider's key variables); an existing .env is never touched.
seed_home() {
  "$VPY" -c 'from broke.keys import seed_dotenv; from broke.paths import broke_home
made = seed_dotenv(broke_home())
if made: print(f"==> {made}: the key template, fill in the providers you use")' ||
    die "could not write the .env template into the broke home (see above)"
}

# --- fast path: nothing changed since the last successful install -------------
if [ "$mirror" = 0 ] && [ -f "$STAMP" ] && [ -x "$VPY" ] && [ -x "$VENV/bin/broke" ]; then
  read -r stamped_key <"$STAMP" || true
  if [ "${stamped_key:-}" = "$key" ]; then
    echo "broke is up to date in .venv ($mode, Python $py_version): .venv/bin/broke"
    seed_home
    exit 0
  fi
fi

# dev_package PACKAGE WHAT HINT NOTE: a Debian package a dev test needs, installed as root where apt-get
# exists (the package lists fetched once per run); elsewhere NOTE is said. HINT ends the error line.
apt_updated=0
dev_package() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $2 (apt-get install $1)"
    { { [ "$apt_updated" = 1 ] || apt-get update -qq; } && apt_updated=1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"; } >/dev/null ||
      die "apt-get install $1 failed (see above); install it by hand$3"
  else
    say "note: $4"
  fi
}

# --- dev: the browser the dashboard's tests drive --------------------------------
# Debian's Chromium (Playwright never downloads a browser). Installed as root where apt-get exists
# (CI's fresh machines); elsewhere only a note: those tests are skipped, or point BROKE_CHROMIUM at one.
if [ "$dev" = 1 ] && [ "$offline" = 0 ] && [ ! -x "${BROKE_CHROMIUM:-/usr/bin/chromium}" ]; then
  dev_package chromium "Chromium for the dashboard's browser tests" ", or set BROKE_CHROMIUM" \
    "no Chromium at ${BROKE_CHROMIUM:-/usr/bin/chromium}: the dashboard's browser tests will be skipped (apt-get install chromium, or set BROKE_CHROMIUM)"
fi

# --- dev: bubblewrap, the Linux sandbox `--sandbox hardened|strict` and its tests use ------------------
# Debian's bubblewrap, installed as root where apt-get exists, as Chromium above; elsewhere only a note:
# the sandbox tests are skipped and `broke sandbox check` says why.
if [ "$dev" = 1 ] && [ "$offline" = 0 ] && [ "$(uname -s)" = Linux ] && ! command -v bwrap >/dev/null 2>&1; then
  dev_package bubblewrap "bubblewrap for the sandbox and its tests" "" \
    "no bwrap on PATH: the sandbox tests will be skipped (apt-get install bubblewrap)"
fi

# --- dev: redis-server, the shared store several gateways use (BROKE_REDIS_URL) and its tests start --------
# Debian's redis-server, installed as root where apt-get exists, as above; elsewhere only a note: the
# shared-state tests are skipped. The package's own service is not used: tests start their own on loopback.
if [ "$dev" = 1 ] && [ "$offline" = 0 ] && [ "$(uname -s)" = Linux ] && ! command -v redis-server >/dev/null 2>&1; then
  dev_package redis-server "redis-server for the shared-state tests" "" \
    "no redis-server on PATH: the shared-state tests will be skipped (apt-get install redis-server)"
fi

# --offline needs the mirror; fail before touching .venv if there is none.
if [ "$offline" = 1 ] && ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  die "$WHEELS is missing or holds no wheels. On a machine with network access and the same OS/CPU/Python, run: ./install.sh --mirror-wheels$([ "$dev" = 1 ] && echo ' --dev'), then copy vendor/wheels here."
fi

# --- virtual environment -----------------------------------------------------
# Reuse .venv only if its interpreter is exactly the selected one; otherwise rebuild it.
if [ -e "$VENV" ]; then
  want="$("$PY" -c 'import sys; print(sys.version)')"
  have="$("$VPY" -c 'import sys; print(sys.version)' 2>/dev/null || true)"
  if [ "$have" != "$want" ]; then
    say "recreating .venv (its interpreter is missing or is not '$PY' $py_version)"
    rm -rf "$VENV"
  fi
fi
if [ ! -e "$VENV" ]; then
  say "creating .venv with $PY (Python $py_version)"
  "$PY" -m venv "$VENV" ||
    die "'$PY -m venv' failed. On Debian/Ubuntu install the venv module (apt install python3-venv or python3.11-venv)."
fi
rm -f "$STAMP" # an interrupted install must not look up to date

pip() { "$VPY" -m pip --disable-pip-version-check -q "$@"; }

# --- optional: mirror the locked wheels into vendor/wheels ---------------------
if [ "$mirror" = 1 ]; then
  say "downloading the wheels pinned in $lock into $WHEELS (this platform, Python $py_version only)"
  mkdir -p "$WHEELS"
  # --only-binary: an sdist in the mirror could not be built later without an index.
  pip download --require-hashes --no-deps --only-binary=:all: -r "$lock" -d "$WHEELS" ||
    die "downloading wheels for $lock failed (see pip's message above)"
  offline=1 # install from the fresh mirror, which also proves it is complete
fi

# --- offline: check vendor/wheels holds every wheel the lock needs here ---------
# Uses the packaging copy vendored in pip to evaluate the lock's environment
# markers; pip itself still verifies every file against the lock's hashes.
CHECK_PY='
import os, re, sys
try:
    from pip._vendor.packaging.markers import Marker
except ImportError:  # pip internals moved: let pip report what is missing
    sys.exit(0)
lock, wheels = sys.argv[1], sys.argv[2]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
have = {norm("-".join(f.split("-")[:2])) for f in os.listdir(wheels) if f.endswith(".whl")}
missing = []
for line in open(lock):
    m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;([^\\]*))?", line)
    if m and (not m.group(3) or Marker(m.group(3).strip()).evaluate()):
        if norm(m.group(1) + "-" + m.group(2)) not in have:
            missing.append("%s==%s" % (m.group(1), m.group(2)))
print("\n".join(missing))
'
if [ "$offline" = 1 ]; then
  missing="$("$VPY" -c "$CHECK_PY" "$lock" "$WHEELS")" || die "could not check $WHEELS against $lock"
  if [ -n "$missing" ]; then
    die "$WHEELS is incomplete for $lock; missing:
$(printf '%s\n' "$missing" | sed 's/^/    /')
Re-run ./install.sh --mirror-wheels$([ "$dev" = 1 ] && echo ' --dev') on a networked machine of this platform."
  fi
fi

# --- locked dependencies, then broke itself (editable, no index needed) ---------
say "installing locked dependencies from $lock$([ "$offline" = 1 ] && echo " (offline, $WHEELS)")"
if [ "$offline" = 1 ]; then
  pip install --require-hashes --no-deps --no-index --find-links "$WHEELS" -r "$lock" ||
    die "offline install from $WHEELS failed: a wheel is missing, built for another platform/Python, or does not match the hashes in $lock (see pip's message above). Re-mirror with --mirror-wheels on a matching machine."
else
  pip install --require-hashes --no-deps -r "$lock" ||
    die "installing $lock failed (see pip's message above)"
fi
# --no-deps: every file comes from the lock and nothing is resolved, so a new
# upstream release can never change (or break) what is installed. The price is
# that a lock missing a package would go unnoticed; these two checks catch it.
pip check ||
  die "the environment from $lock is inconsistent (see pip check above): the lock misses a package or pins a conflicting version; regenerate it (README: Dependencies and the lock files)"
"$VPY" tools/check_env.py "$lock" ||
  die ".venv does not match $lock exactly (see above); remove .venv and re-run ./install.sh"

say "installing broke (editable)"
# hatchling + editables come from the lock, so no build isolation and no index.
pip install --no-index --no-deps --no-build-isolation -e . ||
  die "installing broke itself failed (see pip's message above)"
[ -x "$VENV/bin/broke" ] || die "install finished but .venv/bin/broke is missing"
seed_home

# Record what was installed; the first line is the key the fast path compares.
printf '%s\nmode=%s lock=%s python=%s\n' "$key" "$mode" "$lock" "$py_version" >"$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"

# --- how to put broke on PATH (printed only; no user files are edited) ---------
cat <<EOF

broke is installed: $VENV/bin/broke
Run it directly as .venv/bin/broke, or put it on your PATH, either with a link
into a directory that is already on PATH:
    mkdir -p ~/.local/bin && ln -sf "$VENV/bin/broke" ~/.local/bin/broke
or by adding this line to your shell profile (this also puts the venv's python first):
    export PATH="$VENV/bin:\$PATH"
EOF
