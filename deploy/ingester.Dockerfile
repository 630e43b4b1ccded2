# The ingester Lambda (Kinesis event source mapping): the project with its `ingest` extra only.
# No torch, scikit-learn, matplotlib or Great Expectations (tests/test_deploy_images.py checks
# the extra's dependency closure). Build from the repository root:
#   docker build -f deploy/ingester.Dockerfile -t mhp-ingester .
# Handler: mhp.lambdas.ingest_handler (set again by deploy/template.yaml's ImageConfig.Command).
FROM public.ecr.aws/lambda/python:3.11

# Lambda can only write under /tmp; Feast's usage telemetry would phone home from every cold start.
ENV MHP_STATE_DIR=/tmp/mhp \
    FEAST_USAGE=False \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The source packages listed in pyproject.toml [tool.setuptools.packages.find] (a test keeps the
# two lists equal), installed as a regular (non-editable) package into the image's site-packages.
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
RUN pip install "/tmp/src[ingest]" && rm -rf /tmp/src \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

CMD ["mhp.lambdas.ingest_handler"]
