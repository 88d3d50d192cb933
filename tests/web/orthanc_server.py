"""Start Orthanc with its DICOMweb plugin on free loopback ports (``shared/TESTING.md`` §6)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, require, require_binary, start, stop, wait_http

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@contextmanager
def running_orthanc(
    folder: Path,
    servers: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    dicomweb_root: str = "/dicom-web/",
    public_host: str | None = None,
    verbose: bool = False,
) -> Iterator[str]:
    """Run Orthanc until the block ends; yield its REST base URL (DICOMweb at /dicom-web).

    ``servers`` become the plugin's DICOMweb servers (``Url``, ``HttpHeaders``...);
    ``extra`` adds top-level settings (``DicomModalities``...). ``GET /system`` names the
    DICOM port (``DicomPort``) and AE title (``DicomAet``). ``dicomweb_root`` is where the
    plugin serves, ``public_host`` the ``host:port`` its answers' URLs (RetrieveURL,
    BulkDataURI) name (default: Orthanc's own). Its log is ``folder/orthanc.log``
    (``verbose``: with one ``Incoming Store request`` line per C-STORE received).
    """
    binary = require_binary("Orthanc", "/usr/sbin/Orthanc")
    require(f"the Orthanc DICOMweb plugin ({PLUGIN})", PLUGIN.exists())
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "gw-test",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(PLUGIN)],
        "DicomWeb": {
            "Enable": True,
            "Root": dicomweb_root,
            "Host": public_host or f"127.0.0.1:{http_port}",
            "Ssl": False,
            "Servers": dict(servers or {}),
        },
        "SaveJobs": False,
        "UnknownSopClassAccepted": True,
        **dict(extra or {}),
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config))
    command = [binary, *(["--verbose"] if verbose else []), str(path)]
    proc = start(command, folder / "orthanc.log")
    try:
        url = f"http://127.0.0.1:{http_port}"
        wait_http(url + "/system", timeout=20, proc=proc)
        yield url
    finally:
        stop(proc)
        shutil.rmtree(folder / "db", ignore_errors=True)
