FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OCGW_STORE=/data/ocgateway.db

WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY decisions decisions
COPY tracking tracking
COPY state state
COPY console console
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin ocgw \
    && mkdir -p /data && chown ocgw /data

USER ocgw
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["ocgateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
