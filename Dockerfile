# runner: the container command of a GPU training image on AWS Batch.
#   docker build -t runner .
#   docker run --gpus all --shm-size=15gb -p 6006:6006 -p 6007:6007 -p 8265:8265 -p 6379:6379 \
#     -e AWS_DEFAULT_REGION=eu-west-1 runner src/main.py --architecture bert
# Both stages use the repository's own scripts, which the test suite runs on Debian 12:
# scripts/setup installs the build dependencies by name, scripts/runtime-packages derives
# the runtime packages from what the built binary links.

# ---- build ---------------------------------------------------------------------------
FROM nvidia/cuda:13.0.1-devel-ubuntu24.04 AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
COPY scripts/setup scripts/runtime-packages scripts/
RUN scripts/setup && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release -DCMAKE_CUDA_ARCHITECTURES="80;90" \
 && cmake --build --preset release --target runner \
 && { scripts/runtime-packages build/release/runner \
      && scripts/runtime-packages build/release/librunner_cuda.so; } | sort -u > /runtime-packages.txt \
 && install -D -m 0755 build/release/runner /out/usr/local/bin/runner \
 && install -m 0644 build/release/librunner_cuda.so /out/usr/local/bin/ \
 && mkdir -p /out/usr/local/share/runner && cp -r data /out/usr/local/share/runner/
# --build-arg PRETRAINED_MODEL=google-bert/bert-base-uncased bakes a Hub model into the
# image's Hugging Face cache (air-gapped hosts, no download per job; docs/hub.md). Jobs
# then run with HF_HUB_OFFLINE=1 (tools/deploy.py --baked-model). Empty: nothing baked.
ARG PRETRAINED_MODEL=""
ARG HF_ENDPOINT=https://huggingface.co
RUN mkdir -p /hf-cache \
 && if [ -n "${PRETRAINED_MODEL}" ]; then \
      HF_HUB_CACHE=/hf-cache build/release/runner --prefetch "${PRETRAINED_MODEL}" --log-format text; \
    fi

# ---- runtime -------------------------------------------------------------------------
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="runner" \
      org.opencontainers.image.description="BERT fine-tuning for named-entity tagging on AWS Batch: CUDA core, metrics, API, dashboard, Redis coordination" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV DEBIAN_FRONTEND=noninteractive \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    RUNNER_DATA_DIR=/usr/local/share/runner/data
COPY --from=build /runtime-packages.txt /tmp/runtime-packages.txt
# hadolint ignore=DL3008,SC2046
RUN apt-get update \
 && apt-get install -y --no-install-recommends $(cat /tmp/runtime-packages.txt) \
      redis-server ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages.txt \
 && useradd --create-home --uid 10001 --shell /usr/sbin/nologin runner
COPY --from=build /out/ /
# huggingface_hub's default cache of the runner user (~/.cache/huggingface/hub), writable
# so that models not baked in are downloaded there.
COPY --from=build --chown=10001:10001 /hf-cache /home/runner/.cache/huggingface/hub
USER 10001
WORKDIR /home/runner
EXPOSE 6006 6007 8265 6379
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:6006/healthz"]
# runner is PID 1: it handles SIGTERM itself (checkpoint, exit 80). A leading
# src/main.py argument, as the original job definitions pass, is accepted and ignored.
ENTRYPOINT ["/usr/local/bin/runner"]
CMD ["--architecture", "bert"]
