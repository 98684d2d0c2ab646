# One image for every postback-pipeline service; the compose file picks the command.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY commands ./commands
COPY postbacks ./postbacks
COPY ingest ./ingest
COPY stream ./stream
COPY schemas ./schemas
COPY sinks ./sinks
COPY outbound ./outbound
RUN pip install --no-cache-dir .
RUN useradd --system --uid 10001 postbacks
USER postbacks
EXPOSE 8080
CMD ["postbacks", "ingest"]
