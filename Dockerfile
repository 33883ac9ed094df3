# fashion-tagger API / worker image. The same Makefile targets as outside Docker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHON=python3.11
RUN apt-get update && apt-get install -y --no-install-recommends make gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /srv/fashion-tagger

# Dependencies first, so code changes do not reinstall them.
COPY requirements.txt Makefile ./
RUN make install

COPY . .
RUN useradd --create-home --uid 1000 tagger && mkdir -p instance && chown -R tagger instance
USER tagger
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz').status != 200)"
CMD ["make", "run"]
