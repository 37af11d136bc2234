"""The helper process ExaBGP starts (`process bgpd { run ... }`): relays ExaBGP's pipes to bgpd.

ExaBGP writes events to our stdin and reads commands from our stdout. bgpd listens on a unix socket; this
bridge connects to it and copies bytes both ways, unchanged. When either side closes, the bridge exits; with
`exabgp.api.terminate=true` ExaBGP then stops too, so an orphaned ExaBGP never keeps sessions up without
bgpd deciding.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

CONNECT_DEADLINE = 10.0
CHUNK = 1 << 16


def _connect(path: str) -> socket.socket:
    deadline = time.monotonic() + CONNECT_DEADLINE
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _stdin_to_socket(sock: socket.socket, done: threading.Event) -> None:
    fd = sys.stdin.fileno()
    try:
        while chunk := os.read(fd, CHUNK):
            sock.sendall(chunk)
    except OSError:
        pass
    finally:
        done.set()


def _socket_to_stdout(sock: socket.socket, done: threading.Event) -> None:
    fd = sys.stdout.fileno()
    try:
        while chunk := sock.recv(CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    except OSError:
        pass
    finally:
        done.set()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bgpd.exabgp.bridge SOCKET", file=sys.stderr)
        return 2
    try:
        sock = _connect(argv[1])
    except OSError as exc:
        print(f"bgpd bridge: cannot connect to {argv[1]}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    for target in (_stdin_to_socket, _socket_to_stdout):
        threading.Thread(target=target, args=(sock, done), daemon=True).start()
    done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
