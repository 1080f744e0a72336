# One image for `adapter api`, `adapter worker`, `adapter user` and `adapter emqx apply`:
#   docker build -t emqx-adapter .
# and, from the same file, one that adds the dev tools (devtools/: `adapter simulate`, `adapter devbroker`) for
# docker-compose's simulator profile:
#   docker build --target devtools -t emqx-adapter-devtools .
# Pinned by tag; slim; runs as an unprivileged user; the packages are installed from wheels built in separate
# stages, the service with its Lua scripts (package data), and nothing of the builds stays in the images. The
# default image carries neither the dev tools nor what only they need (amqtt, paho-mqtt).

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY adapter ./adapter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM build AS build-devtools
COPY devtools ./devtools
RUN pip wheel --no-cache-dir --find-links=/wheels --wheel-dir /devtools-wheels ./devtools

FROM python:3.11.11-slim-bookworm AS service
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 adapter \
    && useradd --system --uid 10001 --gid adapter --home-dir /app --no-create-home \
               --shell /usr/sbin/nologin adapter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels emqx-device-adapter \
    && rm -rf /wheels \
    && python -c "import importlib.resources as r; assert any(p.name.endswith('.lua') for p in r.files('adapter').iterdir())" \
    && python -c "import importlib.util as u; assert not any(u.find_spec(m) for m in ('adapter_devtools', 'amqtt', 'paho'))"
WORKDIR /app
# `adapter emqx apply` reads the rules from ./rules by default
COPY rules ./rules
USER adapter:adapter
EXPOSE 8000
CMD ["adapter", "api", "--host", "0.0.0.0", "--port", "8000"]

# the service plus the dev tools (`docker build --target devtools`; docker-compose's simulator)
FROM service AS devtools
USER root
COPY --from=build-devtools /devtools-wheels /devtools-wheels
RUN pip install --no-cache-dir --no-index --find-links=/devtools-wheels emqx-device-adapter-devtools \
    && rm -rf /devtools-wheels \
    && python -c "import adapter_devtools.simulator, adapter_devtools.devbroker"
USER adapter:adapter

# the default target: the service alone
FROM service
