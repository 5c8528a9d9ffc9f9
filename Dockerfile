# syntax=docker/dockerfile:1
#
# The sendgrid-operator image: the operator (`sendgrid-operator operator`, the default) and
# every export Job (`sendgrid-operator job`, set by the operator) run this one image.
#
#   docker build -t sendgrid-operator:0.1.0 .
#
# Stage 1 builds the project's wheel; stage 2 installs it with its dependencies into a
# virtualenv; the final stage copies only that virtualenv onto a clean slim Python image and
# runs as the unprivileged uid/gid 65532. No compiler, build backend or source tree is left
# in the final image.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------- build: the wheel
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ ./operator/
RUN pip wheel --no-deps --wheel-dir /dist .

# ------------------------------------------------------------ install: the wheel into a venv
FROM ${PYTHON_IMAGE} AS install
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist/ /dist/
# Every dependency ships binary wheels (psycopg[binary], pyarrow, ...): nothing is compiled.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --only-binary=:all: /dist/*.whl \
    && /opt/venv/bin/pip uninstall --yes pip setuptools wheel \
    && /opt/venv/bin/sendgrid-operator --version

# ------------------------------------------------------------------------------ final image
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sendgrid-operator" \
      org.opencontainers.image.description="Kubernetes operator that exports customer segments into SendGrid Marketing contact lists" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# The unprivileged user the Helm chart's securityContext expects (runAsUser/runAsGroup 65532).
RUN groupadd --system --gid 65532 nonroot \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin nonroot

COPY --from=install /opt/venv/ /opt/venv/

# Bytecode was compiled at install time; the root file system may be read-only (only /tmp
# is writable in the chart's Pod), so Python must not try to write .pyc files.
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp

USER 65532:65532
WORKDIR /tmp
EXPOSE 8080

ENTRYPOINT ["sendgrid-operator"]
CMD ["operator"]
