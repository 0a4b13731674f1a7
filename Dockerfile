# reallocator gRPC service. Install steps are the README's (python -m venv; pip install -U pip;
# pip install .); keep them identical. Build: docker build -t reallocator .
# Run: docker run -p 50051:50051 reallocator
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY reallocator ./reallocator
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -U pip && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 reallocator \
    && useradd --system --uid 10001 --gid reallocator --no-create-home --shell /usr/sbin/nologin reallocator \
    && mkdir -p /data && chown 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    REALLOCATOR_HOST=0.0.0.0 \
    REALLOCATOR_PORT=50051 \
    REALLOCATOR_DATABASE_URL=sqlite:////data/reallocator.db
USER 10001
# the audit store's SQLite file (or set REALLOCATOR_DATABASE_URL to a PostgreSQL server)
VOLUME ["/data"]
EXPOSE 50051
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["reallocator", "health", "--port", "50051"]
ENTRYPOINT ["reallocator"]
CMD ["serve"]
