# fluxbot on an NVIDIA GPU. Build: docker compose build; run: docker compose up -d (see README).
# The torch wheel pip installs by default on Linux x86-64 is the CUDA build and carries its own
# CUDA libraries: the host needs only the NVIDIA driver and the NVIDIA container toolkit.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLUXBOT_DATA_DIR=/data \
    HF_HOME=/hf-cache

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY fluxbot ./fluxbot
COPY migrations ./migrations
RUN pip install torch && pip install .

RUN useradd --create-home --uid 1000 fluxbot \
    && mkdir -p /data /hf-cache && chown fluxbot:fluxbot /data /hf-cache
USER fluxbot
WORKDIR /data
VOLUME ["/data", "/hf-cache"]

# The first start downloads FLUX.1-schnell (~34 GB) into /hf-cache: give it time.
HEALTHCHECK --interval=30s --timeout=15s --start-period=20m --retries=3 CMD ["fluxbot", "health"]
CMD ["fluxbot", "run"]
