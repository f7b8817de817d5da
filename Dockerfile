# One image for every vidsynth service; the compose file picks the module to run.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY vidsynth ./vidsynth
COPY libs ./libs
COPY services ./services
COPY requirements ./requirements
RUN /opt/venv/bin/pip install --no-cache-dir . \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps --require-hashes -r requirements/face-mesh.txt

FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg espeak-ng libmagic1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin vidsynth \
 && mkdir -p /data && chown vidsynth /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GRPC_ENABLE_FORK_SUPPORT=false \
    VIDSYNTH_DATA_DIR=/data \
    VIDSYNTH_GRPC_HOST=0.0.0.0
USER vidsynth
WORKDIR /data
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
