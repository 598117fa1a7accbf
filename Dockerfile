# wavecls inference service: CPU-only torch by default.
#
#   docker build -t wavecls .
#   docker run --rm -p 8000:8000 wavecls
#
# Build arguments:
#   BASE_IMAGE       any image with Python 3.11 as `python` and `pip` on PATH
#                    and `useradd` available.
#   TORCH_INDEX_URL  extra pip index that torch==2.13.0 is taken from. The
#                    default is PyTorch's CPU-only index. Set it to a CUDA index
#                    for a GPU build, or to an empty value to use only the
#                    default index and any local find-links folder.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN groupadd --system --gid 10001 wavecls \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin wavecls

WORKDIR /app

# torch gets a layer of its own: it is most of the image, and this layer stays
# cached when the other dependencies in pyproject.toml change. DL3013 is
# ignored because hadolint 2.15 reads the ${TORCH_INDEX_URL:+...} expansion as an
# unpinned package name. torch itself is pinned.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir \
      ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} torch==2.13.0

# The other runtime dependencies are read from pyproject.toml alone, so editing
# the source does not invalidate this layer. The torch installed above already
# satisfies the torch requirement, so pip keeps that build.
COPY pyproject.toml ./
RUN python -c 'import tomllib; \
project = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
open("/tmp/requirements.txt", "w").write("\n".join(project["dependencies"]))' \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY app/ ./app/
COPY training/ ./training/
COPY model_artifacts/ ./model_artifacts/
# pyproject.toml names README.md as the package's long description.
COPY README.md ./
# COPY keeps the build context's file modes, and an artifact written with mode
# 0600 would be unreadable for the non-root user.
RUN pip install --no-cache-dir --no-deps . \
 && chmod -R a+rX /app

# `python -m app` runs from /app, so the copies under /app are the ones that are
# imported. The model path is set explicitly so it does not depend on that.
ENV WAVECLS_HOST=0.0.0.0 \
    WAVECLS_PORT=8000 \
    WAVECLS_MODEL_PATH=/app/model_artifacts/wavecls.pt

USER 10001:10001
EXPOSE 8000

# The slim image has no curl. An empty ProxyHandler keeps any HTTP_PROXY setting
# from routing this loopback request through a proxy. urlopen raises on the 503
# that /health/ready returns until the model has loaded.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.build_opener(urllib.request.ProxyHandler({})).open('http://127.0.0.1:' + os.environ.get('WAVECLS_PORT', '8000') + '/health/ready', timeout=4)"]

CMD ["python", "-m", "app"]
