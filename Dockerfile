# The detector worker image. Build: docker build -t exposure-detector .
# Stage 1 builds wheels for the project and its dependencies; stage 2 installs them into a slim
# runtime that runs as an unprivileged user with a read-only root file system in mind
# (only DETECTOR_DATA_DIR and /tmp need to be writable).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY detector ./detector
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DETECTOR_WEB_HOST=0.0.0.0 \
    DETECTOR_DATA_DIR=/var/lib/detector \
    DETECTOR_ALERTING_CONFIG=/app/config/alerting.yaml \
    DETECTOR_EXPECTATIONS_DIR=
RUN groupadd --system --gid 10001 detector \
 && useradd --system --uid 10001 --gid detector --home-dir /app --shell /usr/sbin/nologin detector \
 && mkdir -p /var/lib/detector && chown detector:detector /var/lib/detector
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels exposure-detector && rm -rf /wheels
COPY config ./config
USER 10001:10001
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=2)"]
CMD ["detector", "worker"]
