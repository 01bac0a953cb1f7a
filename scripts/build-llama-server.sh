#!/usr/bin/env bash
# Build upstream llama.cpp's llama-server and ggml-rpc-server from the llama.cpp tree that
# ships inside the llama-cpp-python sdist on PyPI (the only llama.cpp source reachable from
# every machine this project supports), once per version: a second run reuses the cache.
#
#   scripts/build-llama-server.sh            -> prints the bin directory
#   LLAMA_CPP_SDIST=/path/to/sdist.tar.gz    -> air-gapped: use this sdist instead of PyPI
#   LLAMA_SERVER_BIN=/path/to/llama-server   -> skip the build, use the user's binary
set -euo pipefail

version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache="${PIPECATAPP_CACHE_DIR:-$HOME/.cache/pipecatapp}"
prefix="$cache/llama.cpp/$version"
jobs="${BUILD_JOBS:-$(nproc)}"

if [[ -n "${LLAMA_SERVER_BIN:-}" ]]; then
  [[ -x "$LLAMA_SERVER_BIN" ]] || { echo "LLAMA_SERVER_BIN=$LLAMA_SERVER_BIN is not an executable file" >&2; exit 2; }
  dirname "$LLAMA_SERVER_BIN"
  exit 0
fi

if [[ -x "$prefix/bin/llama-server" && -x "$prefix/bin/ggml-rpc-server" ]]; then
  echo "llama.cpp $version: cached build in $prefix/bin" >&2
  echo "$prefix/bin"
  exit 0
fi

work="$cache/build/llama.cpp-$version"
rm -rf "$work"
mkdir -p "$work" "$prefix/bin"
sdist="${LLAMA_CPP_SDIST:-}"
if [[ -z "$sdist" ]]; then
  echo "llama.cpp $version: downloading the llama-cpp-python sdist (76 MB) from PyPI" >&2
  python3 -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$version" -d "$work/dl" >&2
  sdist=$(ls "$work"/dl/llama_cpp_python-*.tar.gz)
fi
echo "llama.cpp $version: unpacking $(basename "$sdist")" >&2
tar -xzf "$sdist" -C "$work" --wildcards '*/vendor/llama.cpp/*'
src=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)

echo "llama.cpp $version: configuring (cmake)" >&2
cmake -S "$src" -B "$work/out" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DGGML_RPC=ON -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF >"$work/cmake.log" 2>&1 \
  || { tail -n 30 "$work/cmake.log" >&2; exit 1; }
echo "llama.cpp $version: compiling llama-server and ggml-rpc-server with $jobs jobs (about 5 minutes on 2 cores)" >&2
# Show only the percentages; keep the full output so that a failure shows its real error.
set +e
cmake --build "$work/out" --target llama-server ggml-rpc-server -j "$jobs" 2>&1 \
  | tee "$work/build.log" \
  | grep --line-buffered -E '^\[ *[0-9]+%\]' | sed -u -E 's/^\[ *([0-9]+%)\].*/  \1/' | uniq >&2
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
  echo "llama.cpp $version: the build failed (exit $status); last lines of $work/build.log:" >&2
  tail -n 40 "$work/build.log" >&2
  exit 1
fi
install -m 0755 "$work/out/bin/llama-server" "$work/out/bin/ggml-rpc-server" "$prefix/bin/"
"$prefix/bin/llama-server" --version >&2
rm -rf "$work"
echo "$prefix/bin"
