# bgpd host speaker image: the package and iproute2 (for operators: `ip route show proto bird`).
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 iputils-ping \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bgpd ./bgpd
RUN pip install --no-cache-dir .
COPY configs /etc/bgpd
ENTRYPOINT ["bgpd"]
CMD ["run", "-c", "/etc/bgpd/host.yaml"]
