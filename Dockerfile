# tcgen REST service. CUDA base so samples validate on the GPU when one is passed in
# (docker run --gpus all ...); without one the service falls back to CPU (TCGEN_DEVICE=auto).
# The image's torch (2.6) already satisfies pyproject's torch>=2.4,<2.14, so pip keeps it.
FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/tcgen
# Metadata and sources only (see .dockerignore); a non-editable install, so the source
# tree is not needed at run time.
COPY pyproject.toml README.md ./
COPY generator_core ./generator_core
COPY service ./service
COPY bench ./bench
RUN pip install . && rm -rf build *.egg-info

# Unprivileged user owning the job store's volume.
RUN useradd --create-home --uid 10001 tcgen \
    && mkdir -p /data && chown tcgen:tcgen /data
VOLUME /data
USER tcgen
WORKDIR /home/tcgen

# Inside a container the service must listen on all interfaces to be reachable at all;
# publish it to the host's loopback only (docker run -p 127.0.0.1:8000:8000) unless
# TCGEN_API_KEY is set.
ENV TCGEN_HOST=0.0.0.0 \
    TCGEN_PORT=8000 \
    TCGEN_DB_PATH=/data/tcgen.db
EXPOSE 8000

# Liveness only (/readyz stays 503 while workers start); urllib, so no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('TCGEN_PORT', '8000')}/healthz\", timeout=4)"]

CMD ["tcgen", "serve"]
