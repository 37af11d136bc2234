"""A test agent run inside the etcd test namespace (`ip netns exec NS python -m tests.datastore.agent URL`).

gRPC dials from its own threads, so a client in the test process could not follow a `setns` of the main
thread; this process lives in the namespace instead. It runs `DatastoreWatcher` over `connect_etcd` and
prints every event as one JSON line on stdout (`{"event": "snapshot"|"put"|"delete"|"down", ...}`), and it
executes commands read as JSON lines on stdin with a second, independent etcd3aio client, answering
`{"reply": ID, "revision": N}` or `{"reply": ID, "error": "..."}`:

- `put KEY VALUE`, `delete KEY`, `compact` (to the current revision): writes made by "someone else";
- `start`: start the watcher (the agent starts idle, so a test can write keys for the first list);
- `hold` / `release`: the watcher's injected sleep waits after its backoff delay until released, so a test
  can change etcd while the watcher is down and before it resynchronises;
- `enable_auth USER PASSWORD ROOT_PASSWORD`: create `root` and USER (reading only the prefix) and turn
  etcd's authentication on; the agent's own writes then authenticate as root;
- `compact_after_list`: once, right after the watcher's next list, put a key and compact to the latest
  revision, so that its watch starts from a compacted revision (the race that makes a real watch fail).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import etcd3aio

from bgpd.datastore.etcd import (
    Change,
    DatastoreConfig,
    DatastoreEvent,
    DatastoreWatcher,
    Down,
    Session,
    Snapshot,
    connect_etcd,
)


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def event_json(event: DatastoreEvent) -> dict[str, Any]:
    if isinstance(event, Snapshot):
        items = {k: v.decode() for k, v in event.items.items()}
        return {"event": "snapshot", "revision": event.revision, "items": items}
    if isinstance(event, Change):
        value = event.value.decode() if event.value is not None else None
        return {"event": event.kind, "key": event.key, "value": value, "revision": event.revision}
    assert isinstance(event, Down)
    return {"event": "down", "reason": event.reason, "retry_in": event.retry_in}


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.endpoint = endpoint = args.endpoint
        self.prefix = prefix = args.prefix
        self.tls: dict[str, Any] = {}
        for option, name in (
            ("ca_cert", args.ca_file),
            ("cert_chain", args.cert_file),
            ("cert_key", args.key_file),
        ):
            if name:
                with open(name, "rb") as fh:
                    self.tls[option] = fh.read()
        self.root_password: str | None = args.root_password
        self.gate = asyncio.Event()
        self.gate.set()
        self.compact_armed = False
        self.tasks: list[asyncio.Task[None]] = []
        config = DatastoreConfig(
            endpoints=(*args.endpoint_before, endpoint),
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            username=args.username,
            password=args.password,
            prefix=prefix,
        )
        self.connect_real = connect_etcd(config, probe_interval=args.probe_interval, timeout=2.0)

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[Any]:
        """A fresh client per command: a channel kept across an etcd restart sits in gRPC's reconnect
        backoff for a while."""
        client = etcd3aio.Etcd3Client([self.endpoint.split("://", 1)[1]], rpc_max_attempts=1, **self.tls)
        await client.connect()
        try:
            if self.root_password is not None:
                assert client.auth is not None
                reply = await client.auth.authenticate("root", self.root_password, timeout=5)
                client.set_token(reply.token)
            yield client
        finally:
            await client.close()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.gate.wait()

    async def connect(self) -> Session:
        session = await self.connect_real()
        agent = self

        class CompactingSession:
            async def list_prefix(self, prefix: str) -> Snapshot:
                snapshot = await session.list_prefix(prefix)
                if agent.compact_armed:  # two writes: etcd refuses a watch from below the compacted revision
                    agent.compact_armed = False
                    async with agent.admin() as admin:
                        await admin.kv.put(f"{prefix}compaction/marker", "1", timeout=5)
                        reply = await admin.kv.put(f"{prefix}compaction/marker", "2", timeout=5)
                        await admin.kv.compact(reply.header.revision, physical=True, timeout=5)
                return snapshot

            def watch(self, prefix: str, start_revision: int) -> Any:
                return session.watch(prefix, start_revision)

            async def close(self) -> None:
                await session.close()

        return CompactingSession()

    async def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        if op == "start":
            self.start()
            return {}
        if op == "hold":
            self.gate.clear()
            return {}
        if op == "release":
            self.gate.set()
            return {}
        if op == "compact_after_list":
            self.compact_armed = True
            return {}
        if op == "enable_auth":
            async with self.admin() as admin:
                await admin.auth.user_add("root", cmd["root_password"], timeout=5)
                await admin.auth.user_grant_role("root", "root", timeout=5)
                await admin.auth.role_add("reader", timeout=5)
                end = etcd3aio.prefix_range_end(self.prefix)
                await admin.auth.role_grant_permission("reader", self.prefix, end, timeout=5)
                await admin.auth.user_add(cmd["user"], cmd["password"], timeout=5)
                await admin.auth.user_grant_role(cmd["user"], "reader", timeout=5)
                await admin.auth.auth_enable(timeout=5)
            self.root_password = cmd["root_password"]
            return {}
        async with self.admin() as admin:
            if op == "put":
                reply = await admin.kv.put(cmd["key"], cmd["value"], timeout=5)
            elif op == "delete":
                reply = await admin.kv.delete(cmd["key"], timeout=5)
            elif op == "compact":
                current = await admin.kv.get("/", count_only=True, timeout=5)
                reply = await admin.kv.compact(current.header.revision, physical=True, timeout=5)
            else:
                raise ValueError(f"unknown op {op!r}")
        return {"revision": reply.header.revision}

    async def commands(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            cmd = json.loads(line)
            try:
                answer = await self.command(cmd)
            except Exception as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            emit({"reply": cmd["id"], **answer})

    def start(self) -> None:
        async def deliver(event: DatastoreEvent) -> None:
            emit(event_json(event))

        watcher = DatastoreWatcher(self.connect, self.prefix, sleep=self.sleep)
        self.tasks.append(asyncio.create_task(watcher.run(deliver)))

    async def main(self) -> None:
        try:
            await self.commands()  # until stdin closes
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("--prefix", default="/calico/resources/v3/projectcalico.org/")
    parser.add_argument("--probe-interval", type=float, default=0.3)
    parser.add_argument("--endpoint-before", action="append", default=[], help="tried before ENDPOINT")
    for option in ("--ca-file", "--cert-file", "--key-file", "--username", "--password", "--root-password"):
        parser.add_argument(option)
    asyncio.run(Agent(parser.parse_args()).main())


if __name__ == "__main__":
    main()
