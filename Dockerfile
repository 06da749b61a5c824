# One image, two entry points: `serve` (the gateway; embedded sandbox pool, or queue mode with
# ACECODER_REDIS_URL) and `worker` (a queue worker). The sandbox creates namespaces, so a container that runs
# it needs CAP_SYS_ADMIN (or unprivileged user namespaces on the node); candidates run as unprivileged uids.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# Dependency layer first, cached apart from the source.
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir \
    "fastapi==0.136.3" "uvicorn==0.54.0" "pydantic==2.14.3" "pydantic-settings==2.16.3" \
    "prometheus-client==0.26.0" "httpx==0.28.1" \
    "uvloop==0.23.0" "httptools==0.9.0" "orjson==3.13.0" "redis==8.1.0" "hiredis==3.5.0" \
    "transformers==5.19.0" "tokenizers==0.23.3" "jinja2==3.1.6" "safetensors==0.8.0" "huggingface-hub==2.4.0" \
    "tqdm==4.70.1" "python-json-logger==4.2.0"
COPY service ./service
COPY sandbox_worker ./sandbox_worker
COPY models ./models
COPY loadtest ./loadtest
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
# The gateway runs as this user (its manifest sets runAsUser 10001); workers stay root for the sandbox.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin acecoder
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH ACECODER_HOST=0.0.0.0 ACECODER_PORT=8000 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8000
ENTRYPOINT ["acecoder-reward"]
CMD ["serve"]
