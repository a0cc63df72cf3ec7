# The bot with its embedded Valkey: no external server needed (set REDIS_URL to use one).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AFTERSALES_DATA=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY channels ./channels
COPY dialogues ./dialogues
COPY locales ./locales
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 aftersales && mkdir -p /data \
    && chown aftersales /data

USER aftersales
VOLUME ["/data"]
ENTRYPOINT ["aftersales"]
CMD ["chat"]
