# bgpd image, host speaker or reflector: the package in a virtualenv (/opt/bgpd) and iproute2 (for
# operators: `ip route show proto bird`).
#   BASE      any Debian bookworm image with Python 3.11 (default: the official python image). CI builds one
#             from Debian's packages with mmdebstrap, with iproute2 and ping already in (no registry there).
#   PIP_ARGS  extra `pip install` arguments; CI installs offline from wheels built on the host and put in
#             the build context: --no-index --find-links /src/wheels
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
ARG PIP_ARGS=""
RUN if ! command -v ip >/dev/null || ! command -v ping >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends iproute2 iputils-ping \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY . /src
RUN python3 -m venv /opt/bgpd \
    && /opt/bgpd/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_ARGS} /src \
    && mkdir -p /etc/bgpd && cp /src/configs/*.yaml /etc/bgpd/ \
    && rm -rf /src
ENV PATH=/opt/bgpd/bin:$PATH
ENTRYPOINT ["bgpd"]
CMD ["run", "-c", "/etc/bgpd/host.yaml"]
