# The bot with its embedded Valkey: no external server needed (set REDIS_URL to use one).
# `docker run -p 8080:8080 -e TELEGRAM_BOT_TOKEN=... IMAGE` serves the channels whose variables
# are set; `docker run -it IMAGE chat` talks to it in the terminal instead.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AFTERSALES_DATA=/data \
    AFTERSALES_CACHE=/data/cache

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY channels ./channels
COPY dialogues ./dialogues
COPY locales ./locales
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 aftersales && mkdir -p /data \
    && chown aftersales /data && chmod 0700 /data

USER aftersales
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["aftersales"]
CMD ["run", "--host", "0.0.0.0", "--port", "8080"]
