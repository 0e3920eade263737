# session-service: a small, non-root image that migrates the database, then serves.
#   docker build -t session-service .
#   docker run -e DATABASE_URL=... -e AUTH_JWT_SECRET=... -p 8000:8000 session-service
# It holds the runtime packages only (requirements.lock), built by scripts/runtime-venv;
# scripts/image-size measures that environment without Docker.
FROM python:3.11-slim AS build
# strip, for the debug symbols some wheels ship; this stage only.
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
COPY scripts/runtime-venv ./scripts/
RUN bash scripts/runtime-venv /venv locked
COPY pyproject.toml README.md ./
COPY src ./src
COPY alembic ./alembic
RUN bash scripts/runtime-venv /venv package

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LOG_FILE=""
USER app
WORKDIR /home/app
EXPOSE 8000
# The start period covers `session-service migrate`, which runs before the service listens.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready')"
CMD ["sh", "-c", "session-service migrate && exec session-service serve --host 0.0.0.0 --port 8000 --workers ${WORKERS:-1}"]
