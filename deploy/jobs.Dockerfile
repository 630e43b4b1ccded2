# The scheduled jobs (EventBridge -> Lambda): day ticks, daily materialization of the batch views,
# daily batch scoring of every active customer. The project with its `jobs` extra: DuckDB and the
# Feast offline store, no torch (the batch scorer calls the SageMaker endpoint). Build from the
# repository root:
#   docker build -f deploy/jobs.Dockerfile -t mhp-jobs .
# deploy/template.yaml picks each function's handler with ImageConfig.Command:
# mhp.lambdas.tick_handler, mhp.lambdas.materialize_handler, mhp.lambdas.batch_score_handler.
FROM public.ecr.aws/lambda/python:3.11

ENV MHP_STATE_DIR=/tmp/mhp \
    FEAST_USAGE=False \
    GX_ANALYTICS_ENABLED=false \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

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
RUN pip install "/tmp/src[jobs]" && rm -rf /tmp/src \
    && python -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)"

CMD ["mhp.lambdas.tick_handler"]
