# bgpd image, host speaker or reflector: the package and iproute2 (for operators: `ip route show proto
# bird`). BASE: any Debian bookworm image with Python 3.11 (CI may build one from Debian's packages).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 iputils-ping \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bgpd ./bgpd
COPY reflector ./reflector
RUN pip install --no-cache-dir .
COPY configs /etc/bgpd
ENTRYPOINT ["bgpd"]
CMD ["run", "-c", "/etc/bgpd/host.yaml"]
