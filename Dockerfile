# The streamapp image: the Faust worker by default; the same image runs the one-shot set-up
# (`python -m streamapp.bootstrap`) and the sources (`python -m streamapp.sources NAME`).
# Built by `docker compose build`; see docker-compose.yml and .env.example.
FROM python:3.11.17-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed uid, so named volumes keep their ownership across rebuilds.
RUN groupadd --system --gid 10001 streamapp \
    && useradd --system --uid 10001 --gid streamapp --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin streamapp \
    && mkdir -p /app /data \
    && chown streamapp:streamapp /data

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so a source change does not reinstall them.
# Every dependency ships a manylinux wheel for CPython 3.11: the slim image needs no compiler,
# and --only-binary makes a future dependency without one fail here, not half-build.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --only-binary=:all: -r requirements.txt

# Then the package itself (no dev extras); the source tree is not kept in the image.
COPY streamapp ./streamapp
RUN pip install --no-deps . \
    && cd / && rm -rf /src

WORKDIR /app
USER streamapp

# Table stores (RocksDB) and the sources' state live under /data: named volumes in compose.
ENV STREAMAPP_DATA_DIR=/data/worker-{hostname} \
    STREAMAPP_NEWSAPI_STATE_DIR=/data/newsapi \
    STREAMAPP_JETSTREAM_STATE_DIR=/data/jetstream

EXPOSE 6066

CMD ["faust", "-A", "streamapp", "worker", "-l", "info"]
