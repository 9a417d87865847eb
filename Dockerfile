FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY collab collab
COPY events events
COPY projections projections
RUN pip install --no-cache-dir . && useradd --create-home collab
USER collab
ENV COLLAB_HOST=0.0.0.0 COLLAB_PORT=8000 COLLAB_LOG_FORMAT=json
EXPOSE 8000
CMD ["collab", "serve"]
