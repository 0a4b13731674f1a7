# reallocator gRPC service. Install steps are the README's (python -m venv; pip install -U pip;
# pip install -c constraints.txt .: the pinned, CI-tested versions); keep them identical.
# Build: docker build -t reallocator .   Run: docker run -p 50051:50051 reallocator
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY reallocator ./reallocator
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -U pip && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 reallocator \
    && useradd --system --uid 10001 --gid reallocator --no-create-home --shell /usr/sbin/nologin reallocator \
    && install -d -o reallocator -g reallocator /var/lib/reallocator
COPY --from=build /opt/venv /opt/venv
# A writable working directory: `reallocator simulate` writes its report folder there.
WORKDIR /var/lib/reallocator
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REALLOCATOR_HOST=0.0.0.0 \
    REALLOCATOR_PORT=50051
USER 10001
EXPOSE 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["reallocator", "health", "--port", "50051"]
ENTRYPOINT ["reallocator"]
CMD ["serve"]
