FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
# Every package pyproject.toml builds into the wheel (tests/test_deploy.py compares them).
COPY collab collab
COPY events events
COPY music music
COPY projections projections
# A fixed uid, so that a secret or volume prepared on the host can be given to it.
# The code stays root-owned and read-only to the server; only /data is its own.
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --user-group --no-create-home collab \
    && mkdir /data && chown collab:collab /data
ENV COLLAB_HOST=0.0.0.0 COLLAB_PORT=8000 COLLAB_LOG_FORMAT=json COLLAB_DATA_DIR=/data
# Declared after the chown: a new named volume starts as a copy of /data, owner included.
VOLUME /data
USER collab
EXPOSE 8000
CMD ["collab", "serve"]
