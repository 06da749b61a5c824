# One image, two entry points: `serve` (the gateway; embedded sandbox pool, or queue mode with
# ACECODER_REDIS_URL) and `worker` (a queue worker). The sandbox creates namespaces, so a container that runs
# it needs CAP_SYS_ADMIN (or unprivileged user namespaces on the node); candidates run as unprivileged uids.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
# Dependency layer first, cached apart from the source. Its pins are pyproject.toml's [project.dependencies],
# read here, so the image cannot drift from them (the project itself then installs with --no-deps).
COPY pyproject.toml ./
RUN python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' \
        > requirements.txt \
    && /opt/venv/bin/pip install --no-cache-dir --requirement requirements.txt
COPY README.md ./
COPY service ./service
COPY sandbox_worker ./sandbox_worker
COPY models ./models
# src/acecoder_reward links the three folders in: the wheel installs them as acecoder_reward.*.
COPY src ./src
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . && /opt/venv/bin/pip check

FROM python:3.11-slim
# The gateway runs as this user (its manifest sets runAsUser 10001); workers stay root for the sandbox.
RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin acecoder
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH ACECODER_HOST=0.0.0.0 ACECODER_PORT=8000 PYTHONDONTWRITEBYTECODE=1
EXPOSE 8000
ENTRYPOINT ["acecoder-reward"]
CMD ["serve"]
