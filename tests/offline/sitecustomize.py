"""Put on PYTHONPATH by the end-to-end smoke test: every Python process of the run (Snakemake and each job) refuses
any connection beyond this machine, and records the attempt in $MECHREPRO_NET_LOG. Loopback stays open: the
notebook kernels talk to papermill over it, and it is not a network."""

import os
import socket

_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")
_connect, _create = socket.socket.connect, socket.create_connection


def _refuse(address) -> None:
    host = address[0] if isinstance(address, tuple) else str(address)
    if isinstance(address, (str, bytes)) or str(host).startswith(_LOCAL):
        return
    with open(os.environ.get("MECHREPRO_NET_LOG", os.devnull), "a") as log:
        log.write(f"{os.getpid()} {address!r}\n")
    raise OSError(f"network blocked by the offline test (connect to {address!r})")


def connect(self, address):
    _refuse(address)
    return _connect(self, address)


def create_connection(address, *args, **kwargs):
    _refuse(address)
    return _create(address, *args, **kwargs)


socket.socket.connect = connect
socket.create_connection = create_connection
