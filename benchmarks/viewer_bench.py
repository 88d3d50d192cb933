"""Benchmark of the built-in viewer (issue 16): OHIF's time to first image, dicomveil vs Orthanc.

    .venv/bin/python benchmarks/viewer_bench.py [--rounds 8] [--write-docs]

One harness for both servers. dicomveil serves the installed OHIF Viewer (``viewer install``,
the pinned ``@ohif/app``) at ``/viewer/`` and logs a read session in through the console;
Chromium (playwright) then opens a study. Every DICOMweb request the page makes is taken by
the same playwright route handler and sent on either to dicomveil's ``/dicomweb`` or to
Orthanc's DICOMweb plugin (mounted at the same path, its answers naming the same host), so the
page, the viewer's code and the proxying are identical and only the server differs. Orthanc
holds exactly the objects dicomveil archived (the de-identified files, copied from its archive),
so both answer for the same UIDs.

Studies: a 40-image CT series of 512x512 16-bit images (``dicomveil.demo``) and pydicom's
30-frame JPEG Baseline ultrasound. Time to first image: from the navigation to the viewer URL
until the canvas shows an image (more than 10,000 pixels lit, more than 2 levels: the
CT's synthetic pattern under its window draws few levels), each trial in a fresh browser
context (empty cache); ``--rounds`` trials per server and study, alternating which goes first.

``--write-docs`` replaces the "Viewer (issue 16)" section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from benchmarks.reporting import cpu_model, write_section  # noqa: E402

KEY = "benchmark-pseudonym-key-0123456789abcdef"
SECTION = "## Viewer (issue 16)"
ROOT = "/dicomweb"


def originals(folder: Path) -> dict[str, list[Path]]:
    """The two studies' original files, by label."""
    import pydicom
    from pydicom.data import get_testdata_file

    from dicomveil.demo import write_demo_study

    ct = write_demo_study(
        folder / "ct", patients=1, series_per_study=1, images_per_series=40, rows=512, columns=512
    )
    us = folder / "us.dcm"
    pydicom.dcmread(str(get_testdata_file("examples_ybr_color.dcm"))).save_as(us)
    return {"CT 40 x 512x512": ct, "US 30 frames JPEG": [us]}


def stow(gateway: Any, files: list[Path]) -> str:
    """Store ``files`` in dicomveil (STOW-RS, ingest token); return the pseudonymous study."""
    from tests.web.support import related_body

    content_type, body = related_body([p.read_bytes() for p in files])
    answer = httpx.post(
        f"{gateway.url}{ROOT}/studies",
        content=body,
        headers={
            "Content-Type": content_type,
            "Authorization": f"Bearer {gateway.tokens['ingest']}",
        },
        timeout=300,
    )
    answer.raise_for_status()
    url = answer.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    return str(url.split("/studies/", 1)[1].split("/")[0])


def copy_archive(home: Path, orthanc: str) -> int:
    """Upload every object of dicomveil's file archive to Orthanc; return how many it took."""
    taken = 0
    with httpx.Client(timeout=120) as client:
        for path in sorted((home / "archive").rglob("*")):
            if path.is_file() and not path.name.endswith(".dicomveil-meta"):
                answer = client.post(f"{orthanc}/instances", content=path.read_bytes())
                taken += answer.status_code == 200
    return taken


class Trial:
    """One browser context: logged in, DICOMweb routed to ``upstream``."""

    def __init__(self, browser: Any, gateway: Any, upstream: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.gateway = gateway
        self.upstream = upstream
        self.bad = 0
        self.study_to_image: float | None = None
        self.page.on("response", self._response)
        self.page.on("console", self._console)
        if os.environ.get("VIEWER_BENCH_DEBUG"):
            self.page.on("console", lambda m: print("  console:", m.text[:200], file=sys.stderr))
        self.page.goto(gateway.url + "/console/login")
        self.page.fill("#token", gateway.tokens["read"])
        self.page.click("button[type=submit]")
        self.page.wait_for_url(gateway.url + "/console/")
        self.context.route(f"{gateway.url}{ROOT}/**", self._forward)

    def _forward(self, route: Any) -> None:
        url = route.request.url.replace(self.gateway.url, self.upstream, 1)
        headers = None
        head, thumbnail, _query = url.partition("/thumbnail?")
        if thumbnail and self.upstream != self.gateway.url:
            # Orthanc's plugin has no /thumbnail: its /rendered, which takes one media type
            url, headers = head + "/rendered", {**route.request.headers, "accept": "image/jpeg"}
        route.fulfill(response=route.fetch(url=url, headers=headers))

    def _console(self, message: Any) -> None:
        """OHIF logs ``studyToFirstImage: <ms> ms``: from its study query to the image."""
        text = str(message.text)
        if text.startswith("studyToFirstImage:"):
            self.study_to_image = float(text.split(":", 1)[1].split(maxsplit=1)[0]) / 1000

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.bad += 1
        if os.environ.get("VIEWER_BENCH_DEBUG") and ROOT in response.url:
            kind = response.headers.get("content-type", "")[:90]
            print(f"  {response.status} {response.url[-60:]} {kind}", file=sys.stderr)

    def first_image(self, study: str) -> float:
        from tests.web.console.test_viewer_browser import CANVAS, PIXELS

        started = time.monotonic()
        self.page.goto(f"{self.gateway.url}/viewer/viewer?StudyInstanceUIDs={study}")
        try:
            self.page.wait_for_selector(CANVAS, timeout=120_000)
            self.page.wait_for_function(
                f"() => {{ const s = ({PIXELS})(); return s.levels > 2 && s.lit > 10000; }}",
                timeout=60_000,
            )
        except Exception:
            if os.environ.get("VIEWER_BENCH_DEBUG"):
                self.page.screenshot(path="/tmp/viewer-bench-failed.png")
                print(self.page.evaluate(PIXELS), file=sys.stderr)
            raise
        return time.monotonic() - started

    def close(self) -> None:
        self.context.unroute_all(behavior="ignoreErrors")  # prefetches still in flight
        self.context.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from dicomveil.web.viewer.install import install_viewer
    from playwright.sync_api import sync_playwright
    from tests.web.console.conftest import CHROMIUM_ARGS, chromium_path
    from tests.web.console.test_viewer_browser import ohif_package
    from tests.web.gateway_server import running_gateway
    from tests.web.orthanc_server import running_orthanc

    work = Path(tempfile.mkdtemp(prefix="dicomveil-viewer-bench-"))
    results: dict[str, Any] = {
        "times": {},
        "inner": {},
        "bad": {"dicomveil": 0, "Orthanc": 0},
    }
    try:
        home = work / "home"
        home.mkdir()
        install_viewer(home, tarball=ohif_package())
        studies = originals(work / "originals")
        with running_gateway(home, KEY) as gateway:
            uids = {label: stow(gateway, files) for label, files in studies.items()}
            host = gateway.url.removeprefix("http://")
            with running_orthanc(
                work / "orthanc", dicomweb_root=f"{ROOT}/", public_host=host
            ) as orthanc:
                copied = copy_archive(home, orthanc)
                print(f"Orthanc took {copied} archived objects")
                upstreams = {"dicomveil": gateway.url, "Orthanc": orthanc}
                executable = chromium_path()
                with sync_playwright() as driver:
                    browser = driver.chromium.launch(
                        executable_path=executable, headless=True, args=CHROMIUM_ARGS
                    )
                    try:
                        for label, study in uids.items():
                            times: dict[str, list[float]] = {name: [] for name in upstreams}
                            inner: dict[str, list[float]] = {name: [] for name in upstreams}
                            for number in range(args.rounds + 1):
                                order = list(upstreams.items())
                                for name, upstream in order if number % 2 else order[::-1]:
                                    trial = Trial(browser, gateway, upstream)
                                    print(f"  {label}: {name} ...", file=sys.stderr)
                                    try:
                                        seconds = trial.first_image(study)
                                        trial.page.wait_for_timeout(200)  # OHIF's own log
                                    finally:
                                        trial.close()
                                    if number:  # the first round warms both servers up
                                        times[name].append(seconds)
                                        if trial.study_to_image is not None:
                                            inner[name].append(trial.study_to_image)
                                        results["bad"][name] += trial.bad
                            results["times"][label] = times
                            results["inner"][label] = inner
                            print(
                                f"{label}: "
                                + ", ".join(
                                    f"{name} median {statistics.median(t):.2f} s"
                                    for name, t in times.items()
                                )
                            )
                    finally:
                        browser.close()
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, Any], args: argparse.Namespace, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "headless Chromium (playwright), the pinned OHIF Viewer served by dicomveil, DICOMweb "
        "routed by the same handler to dicomveil (`serve`, file archive, SQLite index) or to "
        f"Orthanc (Debian package, DICOMweb plugin); {args.rounds} trials per row and server, "
        "each in a fresh browser context.",
        "",
        "| study | measured | dicomveil median s | Orthanc median s | dicomveil p95 s "
        "| Orthanc p95 s | ratio of medians (target ≤ 1) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in results["times"]:
        for measured, key in (("page to image", "times"), ("OHIF studyToFirstImage", "inner")):
            ours = sorted(results[key][label]["dicomveil"])
            theirs = sorted(results[key][label]["Orthanc"])
            if not ours or not theirs:
                continue
            at = int(0.95 * (len(ours) - 1))
            m_ours, m_theirs = statistics.median(ours), statistics.median(theirs)
            lines.append(
                f"| {label} | {measured} | {m_ours:.2f} | {m_theirs:.2f} | {ours[at]:.2f} "
                f"| {theirs[at]:.2f} | {m_ours / m_theirs:.2f} |"
            )
    bad = results["bad"]
    lines += [
        "",
        "Time to first image: from the navigation to the viewer URL until the canvas shows an "
        "image (more than 10,000 pixels lit); most of it is OHIF starting in a software-rendered "
        "Chromium. OHIF's own `studyToFirstImage` (logged by the viewer) is the part the "
        "server serves: from its study query to the first image drawn. "
        "Failed responses seen by the page: "
        f"dicomveil {bad['dicomveil']}, Orthanc {bad['Orthanc']} (Orthanc's plugin answers "
        "no `/thumbnail`: the harness asks its `/rendered` of the same object instead).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="Timed trials per server.")
    parser.add_argument("--write-docs", action="store_true", help="Update docs/benchmarks.md.")
    args = parser.parse_args(argv)
    results = run(args)
    command = "python benchmarks/viewer_bench.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]) if a != "--write-docs"
    )
    text = report(results, args, command.strip())
    print(text)
    if args.write_docs:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
