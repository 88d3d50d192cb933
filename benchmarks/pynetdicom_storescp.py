"""A pynetdicom Storage SCP that only writes what it receives to files: the ceiling of a
pynetdicom-based receiver on this machine, beside DCMTK ``storescp`` (``dimse_bench.py``).

    python benchmarks/pynetdicom_storescp.py PORT FOLDER [--ae-title PYSCP]

Each C-STORE is answered success once the dataset, as received (no decode), is written to
``FOLDER`` with a File Meta header (no ``fsync``, like ``storescp``). The connection sends at
once (TCP_NODELAY) and pynetdicom formats no identifiers for its log, as in the dicomveil node.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import uuid
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
    from pynetdicom.sop_class import Verification

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--ae-title", default="PYSCP")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = False
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)

    def on_open(event: Any) -> None:
        sock = getattr(getattr(event.assoc.dul, "socket", None), "socket", None)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_store(event: Any) -> int:
        target = args.folder / f"{uuid.uuid4().hex}.dcm"
        target.write_bytes(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title=args.ae_title)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(Verification)
    handlers = [(evt.EVT_CONN_OPEN, on_open), (evt.EVT_C_STORE, on_store)]
    ae.start_server(("127.0.0.1", args.port), block=True, evt_handlers=handlers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
