# Sourced by scripts/serve and scripts/test: make .venv match requirements.lock exactly.
# Re-installs only when the lock file or pyproject.toml changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SESSION_SERVICE_VENV:-$root/.venv}"
python="${PYTHON:-python3}"

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "session-service needs Python 3.11 or newer; '$python' is $("$python" --version 2>&1)." >&2
  exit 2
}
stamp="$venv/.installed-from"
wanted="$(cat "$root/requirements.lock" "$root/pyproject.toml" | "$python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing session-service into $venv from requirements.lock ..." >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$root/requirements.lock"
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root"
  echo "$wanted" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
