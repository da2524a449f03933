# igris — production image. Mirrors the tested install steps: uv, frozen lock, no dev deps.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/app/.venv \
    IGRIS_ENV=production PORT=3100
RUN pip install --no-cache-dir uv==0.13.9 \
    && useradd --create-home --uid 10001 igris
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
# collectstatic needs settings to import: throwaway values only for this build step.
RUN SECRET_KEY=build DATABASE_URL=sqlite:////tmp/build.sqlite3 REDIS_URL=redis://localhost:6379/0 \
    ALLOWED_HOSTS=build IGRIS_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= IGRIS_AUDIT_SIGNING_KEY=build \
    /app/.venv/bin/python manage.py collectstatic --noinput \
    && mkdir -p /app/var && chown -R igris:igris /app/var
USER igris
EXPOSE 3100
CMD ["sh", "-c", "/app/.venv/bin/uvicorn igris_project.asgi:application --host 0.0.0.0 --port ${PORT} --loop uvloop --http httptools --no-proxy-headers --workers ${WEB_CONCURRENCY:-2}"]
