#!/bin/sh
# SageMaker starts the container as `docker run IMAGE serve` with the model extracted to
# /opt/ml/model; it expects GET /ping and POST /invocations on port 8080 (SAGEMAKER_BIND_TO_PORT
# when set). Anything else is run as given (e.g. `docker run IMAGE mhp --help`).
set -e
if [ "$#" -eq 0 ] || [ "$1" = "serve" ]; then
    exec mhp serve --model "${SM_MODEL_DIR:-/opt/ml/model}" --host 0.0.0.0 --port "${SAGEMAKER_BIND_TO_PORT:-8080}"
fi
exec "$@"
