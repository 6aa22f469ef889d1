# syntax=docker/dockerfile:1
# Container image of b2-iconik-plugin. Build, run and upgrade: docs/deploy-container.md.
#
#   docker build -t b2-iconik-plugin .
#   docker run -d --name b2-iconik-plugin --env-file /etc/b2-iconik-plugin/env \
#     -p 127.0.0.1:8000:8000 -v b2-iconik-state:/var/lib/b2-iconik-plugin --stop-timeout 40 \
#     --restart unless-stopped b2-iconik-plugin
#
# Publish on 127.0.0.1 only, behind a reverse proxy on the host (docs/deploy-systemd.md): a bare
# `-p 8000:8000` listens on every interface, and Docker's rules bypass the host firewall.
# A refused setting ends the container at once with exit 78 and one line in `docker logs`
# (docs/deploy-container.md); `docker ps` then shows it Restarting (78), never Up.
#
# It runs the same command as the systemd unit (b2-iconik-plugin.service) and the
# launcher that the tests, the demo and the benchmark use (b2iconik/server/launcher.py);
# tests/repo/test_deploy_files.py keeps them equal.
#
# The base image: the official python:3.11-slim, pinned by digest so that every build starts
# from the same bytes (this digest: its build of 2026-08-05, Python 3.11.15 on Debian trixie).
# 3.11 is the Python that CI tests and the Cloud Function runs (docs/development.md, "Locked
# packages and one Python"). To move to a newer build of the tag, put the Digest that
#   docker buildx imagetools inspect python:3.11-slim
# prints here, then rebuild.
FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A system user without a login shell; it owns only the state directory.
RUN groupadd --system --gid 10001 b2iconik \
 && useradd --system --uid 10001 --gid b2iconik --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin b2iconik

WORKDIR /app

# The server's runtime packages only (not the Cloud Function's, nor the tests'), in their own
# layer: requirements.lock, requirements.txt locked by scripts/lock, every package pinned with
# its hashes, so each build installs the same files and refuses any other.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# The application: what `gunicorn -c gunicorn.conf.py plugin:app` imports, plus the
# custom-action scripts (run them with `docker run --rm --env-file ... IMAGE python create_custom_actions.py`),
# and pyproject.toml, where the plugin reads its version (b2iconik/version.py).
COPY gunicorn.conf.py plugin.py iconik.py create_custom_actions.py delete_custom_actions.py pyproject.toml ./
COPY b2iconik/ ./b2iconik/

# The durable job store. Mount a volume here: jobs survive restarts and upgrades.
ENV PLUGIN_STATE_DIR=/var/lib/b2-iconik-plugin
RUN mkdir -p /var/lib/b2-iconik-plugin \
 && chown b2iconik:b2iconik /var/lib/b2-iconik-plugin \
 && chmod 0700 /var/lib/b2-iconik-plugin
VOLUME ["/var/lib/b2-iconik-plugin"]

# Everything else (ICONIK_ID, BZ_SHARED_SECRET, ICONIK_URL, ...) comes from the
# environment at `docker run` (-e or --env-file); no .env file is in the image.
# 0.0.0.0 inside the container is needed for -p; which host address it is
# published on is `docker run -p`'s choice (127.0.0.1, above).
ENV HOST=0.0.0.0 \
    PORT=8000
EXPOSE 8000

USER b2iconik

# /healthz answers 200 while the job store can record jobs (slim has no curl).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# SIGTERM (docker stop): gunicorn stops taking requests, running jobs pause and go
# back to the store within graceful_timeout (25 s); stop with `-t 40` (or run with
# --stop-timeout 40) so that they can. The next container resumes them.
STOPSIGNAL SIGTERM
CMD ["gunicorn", "-c", "gunicorn.conf.py", "plugin:app"]
