# One image for `adapter api`, `adapter worker`, `adapter simulate` and `adapter emqx apply`.
#   docker build -t emqx-adapter .
# Pinned by tag; slim; runs as an unprivileged user; the package is installed from a wheel built in a
# separate stage, with its Lua scripts (package data), and nothing of the build stays in the image.

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY adapter ./adapter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 adapter \
    && useradd --system --uid 10001 --gid adapter --home-dir /app --no-create-home \
               --shell /usr/sbin/nologin adapter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels emqx-device-adapter \
    && rm -rf /wheels \
    && python -c "import importlib.resources as r; assert any(p.name.endswith('.lua') for p in r.files('adapter').iterdir())"
WORKDIR /app
# `adapter emqx apply` reads the rules from ./rules by default
COPY rules ./rules
USER adapter:adapter
EXPOSE 8000
CMD ["adapter", "api", "--host", "0.0.0.0", "--port", "8000"]
