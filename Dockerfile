# syntax=docker/dockerfile:1
# maintenance-window-manager: one image, one process (`mwm`).
#
#   docker build -t maintenance-window-manager .
#   docker run --rm maintenance-window-manager check-config
#   docker run --rm -p 8080:8080 -p 8081:8081 -e MWM_UPSTREAM__URL=http://app:8000 \
#       maintenance-window-manager
#
# Runs as UID/GID 10001 with a read-only root filesystem: nothing is written outside /tmp
# (bytecode is compiled here, at build time). Secrets come from the environment or mounted
# files (MWM_..._FILE) at run time, never from the image.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/mwm
WORKDIR /src
# The README's install commands, into the venv the final stage copies: first the runtime
# dependencies, exactly as locked (versions and sha256 hashes; scripts/lock refreshes the
# lock), then the project itself, which may add nothing the lock does not hold.
COPY requirements.lock ./
RUN /opt/mwm/bin/pip install --require-hashes -r requirements.lock
# Only what the wheel is built from (see .dockerignore, which lets nothing else in).
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY controller ./controller
COPY templates ./templates
RUN /opt/mwm/bin/pip install --no-deps ".[speed]" \
    && /opt/mwm/bin/pip check
# From outside the source tree, check-config renders every built-in page: it fails if the
# installed package lacks its templates. pip and setuptools leave the venv (the image never
# installs anything at run time, and scanners flag them). Then bytecode, which a read-only
# root cannot cache.
WORKDIR /
RUN /opt/mwm/bin/mwm check-config \
    && /opt/mwm/bin/python -m pip uninstall --quiet --yes pip setuptools \
    && /opt/mwm/bin/python -m compileall -q -f -j 0 --invalidation-mode checked-hash /opt/mwm/lib

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/mamrezb/maintenance-window-manager
LABEL org.opencontainers.image.title="maintenance-window-manager" \
      org.opencontainers.image.description="A Kubernetes-native maintenance-mode reverse proxy: a real 503 page, admin bypass and a /services API." \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# Hash-checked bytecode for the standard library too: a read-only root filesystem could not
# cache it, so every start would compile it again. Hash-checked pycs stay valid whatever the
# files' timestamps after COPY.
RUN python -m compileall -q -f -j 0 --invalidation-mode checked-hash /usr/local/lib/python3.11 \
    && groupadd --gid 10001 mwm \
    && useradd --uid 10001 --gid 10001 --home-dir /home/mwm --no-create-home \
        --shell /usr/sbin/nologin mwm
COPY --from=builder /opt/mwm /opt/mwm
ENV PATH=/opt/mwm/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /home/mwm
USER 10001:10001
# 8080: public listener (user traffic); 8081: management (probes, /status, /metrics, admin API).
EXPOSE 8080 8081
# No HEALTHCHECK: Kubernetes probes /healthz and /readyz on 8081.
ENTRYPOINT ["mwm"]
CMD ["run"]
