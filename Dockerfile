# imgrec: one image for the REST API (default command) and the Streamlit app (compose overrides the command).
# Build: docker build -t imgrec .   Run: docker run -p 8000:8000 imgrec
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_HOME=/home/imgrec/.keras \
    IMGREC_MODELS_DIR=/opt/imgrec/models \
    IMGREC_DATA_DIR=/data \
    WEB_CONCURRENCY=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin imgrec \
    && mkdir -p /opt/imgrec/models /data \
    && chown imgrec:imgrec /opt/imgrec/models /data

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=10001:10001 . .

USER 10001:10001

# Register the stock ImageNet model at build time (downloads the Keras weights once), so a
# container starts serving without network access. Models and data are volumes in compose.yaml.
RUN python -m imgrec init

EXPOSE 8000 8501
VOLUME ["/data"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]

# One process per worker (WEB_CONCURRENCY, default 1), each with its own model and micro-batcher.
CMD ["gunicorn", "--worker-class", "uvicorn_worker.UvicornWorker", "--bind", "0.0.0.0:8000", "--timeout", "120", "--graceful-timeout", "30", "--access-logfile", "-", "imgrec.api.app:create_app()"]
