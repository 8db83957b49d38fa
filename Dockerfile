# The modelcanary operator image: `modelcanary operator` as a non-root user.
# Build from the repository root:  docker build -t ghcr.io/modelcanary/modelcanary:0.1.0 .
# The operator needs only part of the package's dependencies (no torch, onnxruntime or
# tritonclient: it compares golden outputs with numpy alone; kserve-storage reads the
# versions' files from a storageUri), so it installs those, pinned
# by constraints.txt, and the package itself without its dependencies.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1

WORKDIR /app
COPY constraints.txt pyproject.toml README.md ./
COPY operator ./operator

# OPERATOR_PACKAGES (tests/test_packaging.py checks this list against the operator's imports)
RUN pip install -c constraints.txt \
        kopf kubernetes httpx starlette uvicorn uvloop httptools prometheus-client pydantic \
        pyyaml numpy aiohttp kserve-storage \
    && pip install --no-deps . \
    && useradd --uid 10001 --user-group --no-create-home modelcanary

USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["modelcanary"]
CMD ["operator", "--help"]
