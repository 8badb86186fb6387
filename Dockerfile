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
# Liveness, with no curl in a slim image: the process answers /health at all. A 503
# there means the *backend* is failing (breaker open): restarting this container
# would not help, so both 200 and 503 count as alive. Load balancers use /health's
# status for readiness instead.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request as u,urllib.error as e\np=os.environ.get('PORT') or os.environ.get('HOST_PORT','8282')\ntry: s=u.urlopen(f'http://127.0.0.1:{p}/health',timeout=2).status\nexcept e.HTTPError as x: s=x.code\nsys.exit(0 if s in (200,503) else 1)"]

# gunicorn turns SIGTERM (docker stop) into a graceful drain of in-flight streams.
STOPSIGNAL SIGTERM
CMD ["gunicorn", "-c", "conf/gunicorn.conf.py"]
