"""The etcd v3 side of the datastore: list everything under Calico's prefix, then watch it, and say so when
it cannot.

`DatastoreWatcher.run(deliver)` lists every key under the prefix (`/calico/resources/v3/projectcalico.org/`
by default) at one revision and hands the owner a `Snapshot` (key -> raw JSON bytes), then watches from the
listed revision + 1 and hands over each `Change` (put or delete, key, value, revision) in etcd's order. When
the watch breaks (its start revision compacted, canceled by etcd, e.g. on a leader change, or every endpoint
unreachable) it hands over `Down(reason, retry_in)`, waits with exponential backoff (1 s doubling to 10 s,
`Backoff`), and resynchronises with a fresh list, so the owner receives a new full `Snapshot` and diffs it
against what it has. This module never drops or withdraws anything: it only reports.

The etcd client is etcd3aio (asyncio gRPC); `connect_etcd(config)` builds the `SessionFactory` that
`DatastoreWatcher` uses. The watcher only knows the small `Session` protocol, so its state machine is tested
with a scripted session and an injected `sleep` (tests/unit/test_datastore_etcd.py), and the etcd3aio
session against a real etcd (tests/datastore/).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/calico/resources/v3/projectcalico.org/"
BACKOFF_INITIAL = 1.0  # seconds
BACKOFF_MAX = 10.0  # seconds: a returning etcd is seen within 10 s; one connection attempt per 10 s meanwhile
PAGE_SIZE = 500  # keys per Range request when listing (keeps each reply far below gRPC's 4 MiB limit)


class DatastoreConfigError(ValueError):
    """A datastore setting that cannot work; the message is one line naming the setting."""


@dataclass(frozen=True)
class DatastoreConfig:
    """Where the etcd v3 cluster is and how to authenticate to it.

    `endpoints`: client URLs, `http://HOST:PORT` or `https://HOST:PORT` (HOST an IPv4 address or a name
    resolved to IPv4 at each connection attempt; port 2379 when omitted). `https` needs `ca_file` (PEM);
    `cert_file` and `key_file` (PEM) go together and give a client certificate. `username` and `password` go
    together (etcd's auth, a token refreshed every 4 minutes). `prefix`: the key prefix under which Calico
    stores its v3 resources (`<prefix><plural>/<name>`). Raises `DatastoreConfigError` when inconsistent.
    """

    endpoints: tuple[str, ...]
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None
    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise DatastoreConfigError("datastore.endpoints: at least one endpoint is needed")
        schemes = {parse_endpoint(e).scheme for e in self.endpoints}
        if len(schemes) > 1:
            raise DatastoreConfigError("datastore.endpoints: mix of http:// and https:// endpoints")
        if "https" in schemes and not self.ca_file:
            raise DatastoreConfigError("datastore.ca_file: needed for https:// endpoints")
        if "http" in schemes and (self.ca_file or self.cert_file or self.key_file):
            raise DatastoreConfigError("datastore: ca_file/cert_file/key_file need https:// endpoints")
        if bool(self.cert_file) != bool(self.key_file):
            raise DatastoreConfigError("datastore: cert_file and key_file go together")
        if bool(self.username) != bool(self.password):
            raise DatastoreConfigError("datastore: username and password go together")
        if not self.prefix.startswith("/"):
            raise DatastoreConfigError(f"datastore.prefix: {self.prefix!r} does not start with '/'")


@dataclass(frozen=True)
class Endpoint:
    """One parsed client URL."""

    scheme: Literal["http", "https"]
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_endpoint(url: str) -> Endpoint:
    """`http[s]://HOST[:PORT]` -> Endpoint; raises `DatastoreConfigError` for anything else (IPv6 literals
    included: the client library dials `ipv4:` targets only)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise DatastoreConfigError(
            f"datastore.endpoints: {url!r} is not http://HOST:PORT or https://HOST:PORT"
        )
    try:
        port = parts.port or 2379
    except ValueError:
        raise DatastoreConfigError(f"datastore.endpoints: {url!r} has a bad port") from None
    try:
        version: int = ipaddress.ip_address(parts.hostname).version
    except ValueError:
        version = 0  # a name
        if all(label.isdigit() for label in parts.hostname.split(".")):
            raise DatastoreConfigError(f"datastore.endpoints: {url!r}: not an IPv4 address") from None
    if version == 6:
        raise DatastoreConfigError(f"datastore.endpoints: {url!r}: IPv6 endpoints are not supported")
    scheme: Literal["http", "https"] = "https" if parts.scheme == "https" else "http"
    return Endpoint(scheme, parts.hostname, port)


# --- what the owner receives ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Every key under the prefix at `revision`: key -> raw value (Calico's JSON of the full object)."""

    revision: int
    items: Mapping[str, bytes]


@dataclass(frozen=True)
class Change:
    """One watched event: `put` (value is the new JSON) or `delete` (value None), at etcd `revision`."""

    kind: Literal["put", "delete"]
    key: str
    value: bytes | None
    revision: int


@dataclass(frozen=True)
class Down:
    """The datastore is unreachable or the watch broke: `reason` (one line), next attempt in `retry_in`
    seconds. The owner keeps its last known state."""

    reason: str
    retry_in: float


DatastoreEvent = Snapshot | Change | Down
Deliver = Callable[[DatastoreEvent], Awaitable[None]]


# --- the client seam --------------------------------------------------------------------------------------


class DatastoreUnavailable(Exception):
    """A list or watch that failed; `str(exc)` is the one-line reason."""


class WatchCompacted(DatastoreUnavailable):
    """The watch's start revision was compacted away: only a fresh list can resynchronise."""


class Session(Protocol):
    """One connection to etcd, used for one list and the watch that follows it."""

    async def list_prefix(self, prefix: str) -> Snapshot:
        """Every key under `prefix` at one revision; raises `DatastoreUnavailable`."""
        ...

    def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Change]]:
        """Batches of changes under `prefix` from `start_revision` on, in order. The first batch is empty
        and confirms the watch is established. Raises `DatastoreUnavailable` (`WatchCompacted`) when broken;
        never ends otherwise."""
        ...

    async def close(self) -> None: ...


SessionFactory = Callable[[], Awaitable[Session]]


# --- the state machine ------------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential retry delays in seconds: `initial`, doubling up to `maximum`; `reset()` after success."""

    initial: float = BACKOFF_INITIAL
    maximum: float = BACKOFF_MAX
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


State = Literal["connecting", "up", "down"]


class DatastoreWatcher:
    """List, then watch, then on any break report `Down`, back off and list again; forever.

    `connect` opens a session (raising `DatastoreUnavailable` when no endpoint answers); `sleep` is injected
    for tests. `state` ("connecting", "up", "down"), `reason` (why down, "" otherwise) and `revision` (the
    last revision handed over) are for status and metrics. The backoff resets once a watch is established.
    """

    def __init__(
        self,
        connect: SessionFactory,
        prefix: str = DEFAULT_PREFIX,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Backoff | None = None,
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._sleep = sleep
        self._backoff = backoff or Backoff()
        self.state: State = "connecting"
        self.reason = ""
        self.revision = 0

    async def run(self, deliver: Deliver) -> None:
        """Run until cancelled, awaiting `deliver` for every event (so a slow owner slows the watch)."""
        while True:
            try:
                await self._list_and_watch(deliver)
                reason = "watch ended"
            except DatastoreUnavailable as exc:
                reason = str(exc) or type(exc).__name__
            retry_in = self._backoff.next()
            level = logging.WARNING if reason != self.reason else logging.DEBUG  # one warning per reason
            self.state, self.reason = "down", reason
            log.log(level, "datastore down: %s; retrying in %.0f s", reason, retry_in)
            await deliver(Down(reason, retry_in))
            await self._sleep(retry_in)

    async def _list_and_watch(self, deliver: Deliver) -> None:
        session = await self._connect()
        try:
            snapshot = await session.list_prefix(self._prefix)
            self.state, self.reason, self.revision = "up", "", snapshot.revision
            log.info("datastore listed %d keys at revision %d", len(snapshot.items), snapshot.revision)
            await deliver(snapshot)
            batches = session.watch(self._prefix, snapshot.revision + 1)
            try:
                async for batch in batches:
                    if not batch:
                        self._backoff.reset()
                    for change in batch:
                        self.revision = change.revision
                        await deliver(change)
            finally:
                await _aclose(batches)
        finally:
            await session.close()


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


# --- etcd3aio ---------------------------------------------------------------------------------------------


def _prefix_end(prefix: bytes) -> bytes:
    """The exclusive end of the key range that has `prefix` (etcd's `clientv3.GetPrefixRangeEnd`)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def read_tls_files(config: DatastoreConfig) -> dict[str, bytes | None]:
    """The CA, client certificate and key files' bytes, as etcd3aio takes them (None where not set);
    `DatastoreConfigError` naming the setting when one cannot be read."""
    return {
        "ca_cert": _read(config.ca_file, "ca_file"),
        "cert_chain": _read(config.cert_file, "cert_file"),
        "cert_key": _read(config.key_file, "key_file"),
    }


def _read(path: str | None, setting: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise DatastoreConfigError(f"datastore.{setting}: {path}: {exc.strerror}") from None


def _grpc_reason(exc: BaseException) -> str:
    """One line from an etcd3aio/gRPC error (never a traceback)."""
    details = getattr(exc, "details", None)
    code = getattr(exc, "code", None)
    if callable(details) and callable(code):
        return f"{code().name}: {details()}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class _Etcd3aioSession:
    """A `Session` over one etcd3aio client (one endpoint). While a watch runs, `probe()` every
    `probe_interval` seconds finds an endpoint that stopped answering (or lost its leader): etcd3aio's own
    watch stream silently reconnects forever, which would hide an outage."""

    def __init__(self, client: Any, endpoint: Endpoint, probe_interval: float, timeout: float) -> None:
        self._client = client
        self._endpoint = endpoint
        self._probe_interval = probe_interval
        self._timeout = timeout
        self._auth: Any = None

    async def list_prefix(self, prefix: str) -> Snapshot:
        key, end = prefix.encode(), _prefix_end(prefix.encode())
        items: dict[str, bytes] = {}
        revision = 0
        while True:
            try:
                reply = await self._client.kv.get(
                    key, end, revision=revision, limit=PAGE_SIZE, timeout=self._timeout
                )
            except Exception as exc:
                raise DatastoreUnavailable(f"{self._endpoint}: list {prefix}: {_grpc_reason(exc)}") from exc
            if revision == 0:
                revision = reply.header.revision
            for kv in reply.kvs:
                items[kv.key.decode("utf-8", "replace")] = bytes(kv.value)
            if not reply.more or not reply.kvs:
                return Snapshot(revision, items)
            key = bytes(reply.kvs[-1].key) + b"\0"

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[list[Change]]:
        queue: asyncio.Queue[list[Change] | DatastoreUnavailable] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._consume(prefix, start_revision, queue)),
            asyncio.create_task(self._probe(prefix, queue)),
        ]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, DatastoreUnavailable):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _consume(
        self, prefix: str, start_revision: int, queue: asyncio.Queue[list[Change] | DatastoreUnavailable]
    ) -> None:
        where = f"{self._endpoint}: watch {prefix} from revision {start_revision}"
        stream = self._client.watch.watch(prefix.encode(), _prefix_end(prefix.encode()), start_revision)
        try:
            async for reply in stream:
                if reply.compact_revision > 0:
                    queue.put_nowait(
                        WatchCompacted(
                            f"{where}: compacted (etcd keeps revisions from {reply.compact_revision})"
                        )
                    )
                    return
                if reply.canceled:
                    queue.put_nowait(
                        DatastoreUnavailable(f"{where}: canceled by etcd: {reply.cancel_reason}")
                    )
                    return
                if reply.created:
                    queue.put_nowait([])
                changes = [_change(event) for event in reply.events]
                if changes:
                    queue.put_nowait(changes)
            queue.put_nowait(DatastoreUnavailable(f"{where}: stream ended"))
        except Exception as exc:
            queue.put_nowait(DatastoreUnavailable(f"{where}: {_grpc_reason(exc)}"))
        finally:
            await _aclose(stream)

    async def probe(self, prefix: str) -> None:
        """A linearizable one-key Range (so it fails on a member without a leader too), bounded by
        `timeout`; raises `DatastoreUnavailable`."""
        try:
            await self._client.kv.get(prefix.encode(), count_only=True, timeout=self._timeout)
        except Exception as exc:
            raise DatastoreUnavailable(f"{self._endpoint}: not answering: {_grpc_reason(exc)}") from exc

    async def _probe(self, prefix: str, queue: asyncio.Queue[list[Change] | DatastoreUnavailable]) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                await self.probe(prefix)
            except DatastoreUnavailable as exc:
                queue.put_nowait(exc)
                return

    async def authenticate(self, username: str, password: str) -> None:
        try:
            self._auth = self._client.token_refresher(username, password)
            await self._auth.__aenter__()
        except Exception as exc:
            self._auth = None
            raise DatastoreUnavailable(
                f"{self._endpoint}: authenticate as {username}: {_grpc_reason(exc)}"
            ) from exc

    async def close(self) -> None:
        if self._auth is not None:
            with contextlib.suppress(Exception):
                await self._auth.__aexit__(None, None, None)
        with contextlib.suppress(Exception):
            await self._client.close()


def _change(event: Any) -> Change:
    key = bytes(event.kv.key).decode("utf-8", "replace")
    if event.type == 1:  # mvccpb.Event.EventType.DELETE
        return Change("delete", key, None, event.kv.mod_revision)
    return Change("put", key, bytes(event.kv.value), event.kv.mod_revision)


def connect_etcd(
    config: DatastoreConfig, *, probe_interval: float = 5.0, timeout: float = 5.0
) -> SessionFactory:
    """A `SessionFactory` for `config`: each call tries the endpoints in turn, starting with the one that
    last worked, and returns a session on the first that answers (a fresh gRPC channel each time, so gRPC's
    own reconnect backoff never delays a resync). Raises `DatastoreUnavailable` naming every endpoint's
    failure, `DatastoreConfigError` when a certificate file cannot be read. `probe_interval` and `timeout`
    are in seconds."""
    import etcd3aio  # here, so that importing this module needs no gRPC

    endpoints = [parse_endpoint(e) for e in config.endpoints]
    tls = read_tls_files(config)
    first = 0

    async def connect() -> Session:
        nonlocal first
        failures: list[str] = []
        for i in range(len(endpoints)):
            index = (first + i) % len(endpoints)
            endpoint = endpoints[index]
            try:
                session = await _open(etcd3aio, endpoint, config, tls, probe_interval, timeout)
            except DatastoreUnavailable as exc:
                failures.append(str(exc))
                continue
            first = index
            return session
        raise DatastoreUnavailable("; ".join(failures))

    return connect


async def _open(
    etcd3aio: Any,
    endpoint: Endpoint,
    config: DatastoreConfig,
    tls: dict[str, bytes | None],
    probe_interval: float,
    timeout: float,
) -> _Etcd3aioSession:
    host, server_name = endpoint.host, None
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        server_name = host  # verify the certificate against the name, dial its IPv4 address
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, endpoint.port, family=socket.AF_INET)
        except OSError as exc:
            raise DatastoreUnavailable(f"{endpoint}: cannot resolve {host}: {exc.strerror}") from None
        host = str(infos[0][4][0])
    conn: dict[str, Any] = dict(tls) if endpoint.scheme == "https" else {}
    client = etcd3aio.Etcd3Client(
        [f"{host}:{endpoint.port}"],
        rpc_max_attempts=1,
        tls_server_name=server_name if endpoint.scheme == "https" else None,
        **conn,
    )
    await client.connect()  # only builds the channel: the probe below finds out whether etcd answers
    session = _Etcd3aioSession(client, endpoint, probe_interval, timeout)
    try:
        if config.username and config.password:
            await session.authenticate(config.username, config.password)
        await session.probe(config.prefix)
    except BaseException:
        await session.close()
        raise
    return session
