# session-service: a small, non-root image that migrates the database, then serves.
#   docker build -t session-service .
#   docker run -e DATABASE_URL=... -e AUTH_JWT_SECRET=... -p 8000:8000 session-service
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.lock pyproject.toml README.md ./
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
COPY src ./src
COPY alembic ./alembic
RUN /venv/bin/pip install --no-cache-dir --no-deps --no-build-isolation .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LOG_FILE=""
USER app
WORKDIR /home/app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready')"
CMD ["sh", "-c", "session-service migrate && exec session-service serve --host 0.0.0.0 --port 8000 --workers ${WORKERS:-1}"]
