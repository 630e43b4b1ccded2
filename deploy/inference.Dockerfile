# A SageMaker-compatible inference image (bring-your-own container), an alternative to the
# PyTorch framework container: SageMaker runs `docker run IMAGE serve`, extracts model.tar.gz to
# /opt/ml/model and sends GET /ping and POST /invocations to port 8080. `mhp serve` is that
# server (serving/server.py; it loads the artifact through its own code/inference.py).
# Build from the repository root:
#   docker build -f deploy/inference.Dockerfile -t mhp-inference .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MHP_TORCH_THREADS=1

# torch first from the CPU wheel index (the PyPI wheel pulls ~3 GB of CUDA libraries);
# torch==2.13.0 in the `serve` extra is then already satisfied by 2.13.0+cpu.
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"

COPY pyproject.toml /tmp/src/
COPY core /tmp/src/core
COPY events /tmp/src/events
COPY labels /tmp/src/labels
COPY simulator /tmp/src/simulator
COPY validation /tmp/src/validation
COPY features /tmp/src/features
COPY ingestion /tmp/src/ingestion
COPY training /tmp/src/training
COPY serving /tmp/src/serving
COPY console /tmp/src/console
COPY mhp /tmp/src/mhp
RUN pip install "/tmp/src[serve]" && rm -rf /tmp/src

COPY deploy/inference-entrypoint.sh /usr/local/bin/inference-entrypoint
RUN chmod 0755 /usr/local/bin/inference-entrypoint

EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/inference-entrypoint"]
CMD ["serve"]
