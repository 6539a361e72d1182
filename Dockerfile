# syntax=docker/dockerfile:1
# d1-slack: `d1bot serve` in a small, non-root image. Build: docker build -t d1-slack .

# ---- build: install the package into a virtualenv, every dependency at its locked version
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY bot ./bot
COPY d1 ./d1
COPY storage ./storage
RUN pip install --constraint requirements.lock .

# ---- runtime: the virtualenv only, an unprivileged user, a data volume
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=3000 \
    LOG_FORMAT=json \
    DATABASE_URL=sqlite:////data/d1bot.db
RUN groupadd --system --gid 10001 d1bot \
    && useradd --system --uid 10001 --gid d1bot --home-dir /data --shell /usr/sbin/nologin d1bot \
    && mkdir -p /data && chown d1bot:d1bot /data
COPY --from=build /opt/venv /opt/venv
USER d1bot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
# GET /readyz on loopback: plain HTTP, or HTTPS when SSL_CERTFILE is set (bot/ops/probe.py).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "bot.ops.probe", "/readyz"]
STOPSIGNAL SIGTERM
CMD ["d1bot", "serve"]
