# The FKS image: what Prefect's Docker and Kubernetes work pools run (docs/deployments.md).
#
#   docker build -t fks:latest .
#   docker run --rm fks:latest fks --help
#
# A flow run started from it works in /opt/fks (FKS_PROJECT_DIR, the deployments' pull step) and
# keeps its runtime data in /var/lib/fks (FKS_DATA_DIR: mount a volume, or point FKS_DB_URL,
# FKS_MLFLOW_TRACKING_URI and FKS_LAKE_URI at shared services). The worker passes PREFECT_API_URL
# and the job's command (`python -m prefect.engine`). Not built in CI (no Docker daemon there).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KERAS_BACKEND=tensorflow \
    TF_CPP_MIN_LOG_LEVEL=3 \
    FKS_PROJECT_DIR=/opt/fks \
    FKS_DATA_DIR=/var/lib/fks \
    FKS_LAKE_URI=file:///var/lib/fks/lake \
    FKS_MLFLOW_TRACKING_URI=sqlite:////var/lib/fks/mlruns/mlflow.db \
    FKS_MLFLOW_ARTIFACT_ROOT=/var/lib/fks/mlruns/artifacts \
    PREFECT_RESULTS_PERSIST_BY_DEFAULT=true \
    PREFECT_LOCAL_STORAGE_PATH=/var/lib/fks/lake/_prefect/results

WORKDIR /opt/fks

# Dependencies first (a layer that survives code changes): torch's CPU wheel from its own index,
# then the rest of pyproject.toml's dependencies.
COPY pyproject.toml README.md ./
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(x for x in d['project']['dependencies'] if not x.startswith('torch')))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt 'psycopg[binary]>=3.2' \
 && rm /tmp/requirements.txt

# The code: the deployments load `flows.deployed:<flow>` from here.
COPY . .
RUN pip install --no-deps -e . \
 && useradd --create-home --uid 1000 fks \
 && mkdir -p /var/lib/fks \
 && chown -R fks:fks /var/lib/fks

USER fks
VOLUME ["/var/lib/fks"]
CMD ["fks", "--help"]
