# The detector worker image (for docker-compose.yml; the quick start does not need Docker).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY detector ./detector
COPY config ./config
RUN pip install --no-cache-dir .
ENV DETECTOR_WEB_HOST=0.0.0.0
EXPOSE 6066
CMD ["detector", "worker"]
