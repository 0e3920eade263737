# Sourced by scripts/serve and scripts/test with the lock groups they need:
#   source scripts/_venv.sh runtime              scripts/serve
#   source scripts/_venv.sh runtime test bench   scripts/test
# Makes .venv (or $SESSION_SERVICE_VENV) hold exactly the versions those groups pin, plus this
# package, editable. Every group keeps its own stamp in the venv (the hash of its lock file), so
# only a group whose lock changed, or that was never installed, is installed: serve after test
# finds the runtime group already there, and test after serve adds only the test and bench groups.
# The locks agree on every version they share (scripts/lock), so no group undoes another.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SESSION_SERVICE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "session-service needs Python 3.11 or newer; '$python' is $("$python" --version 2>&1)." >&2
  exit 2
}

lock_of() {
  case "$1" in
    runtime) echo requirements.lock ;;
    test) echo requirements-test.lock ;;
    bench) echo requirements-bench.lock ;;
    # hatchling and editables: the editable install below builds with no network.
    build) echo requirements-build.lock ;;
    *) echo "scripts/_venv.sh: unknown group '$1'" >&2; return 2 ;;
  esac
}
digest() {
  "$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
}

for group in "$@"; do lock_of "$group" >/dev/null; done

stamps="$venv/.installed"
if [ ! -x "$venv/bin/python" ]; then
  rm -rf "$stamps"
  "$python" -m venv "$venv"
fi
stale=""  # group names, one word each
for group in "$@" build; do
  if [ "$(cat "$stamps/$group" 2>/dev/null)" != "$(digest "$root/$(lock_of "$group")")" ]; then
    stale="$stale $group"
  fi
done
mkdir -p "$stamps"
if [ -n "$stale" ]; then
  echo "Installing the pinned packages of the group(s)${stale} into $venv ..." >&2
  requirements=()
  for group in $stale; do requirements+=(-r "$root/$(lock_of "$group")"); done
  "$venv/bin/python" -m pip install --quiet --require-hashes --no-deps "${requirements[@]}"
  for group in $stale; do digest "$root/$(lock_of "$group")" > "$stamps/$group"; done
fi
if [ "$(cat "$stamps/package" 2>/dev/null)" != "$(digest "$root/pyproject.toml")" ]; then
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root"
  digest "$root/pyproject.toml" > "$stamps/package"
fi
rm -f "$venv/.installed-from"  # the one stamp of the single lock these files replaced
export PATH="$venv/bin:$PATH"
