# responses-proxy: gunicorn + Uvicorn workers on a slim Python image, as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOST_PORT=8282

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY proxy/ proxy/
COPY conf/ conf/

RUN useradd --system --uid 10001 --no-create-home proxy
USER proxy

EXPOSE 8282
# No curl in a slim image: ask /health with the interpreter we already have.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request as u; p=os.environ.get('PORT') or os.environ.get('HOST_PORT','8282'); sys.exit(0 if u.urlopen(f'http://127.0.0.1:{p}/health', timeout=2).status == 200 else 1)"]

# gunicorn turns SIGTERM (docker stop) into a graceful drain of in-flight streams.
STOPSIGNAL SIGTERM
CMD ["gunicorn", "-c", "conf/gunicorn.conf.py"]
