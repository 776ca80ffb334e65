"""A built wheel, installed into a clean virtualenv, runs a sweep end to end: templates and fonts found."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.conftest import ROOT
from tests.helpers import status_of

# One build for the module, on one worker when the suite runs in parallel (make test).
pytestmark = pytest.mark.xdist_group("wheel")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ of a fresh virtualenv holding payverify from a wheel built from this tree (not editable).
    Built from a copy: setuptools writes build/ into the tree it builds."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "__pycache__",
                                                                "*_cache", ".hypothesis", "demo-output", "logs"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--quiet",
                            "-w", str(work / "dist")], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("payverify-*.whl")
    venv.EnvBuilder(with_pip=True).create(work / "venv")
    bin_dir = work / "venv" / "bin"
    done = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return bin_dir


def test_wheel_sweeps_with_its_templates_and_fonts(installed, seed, db, smtp, env, tmp_path):
    """Outside the source tree, the installed command settles a paid order and mails a PDF in DejaVu."""
    where = subprocess.run([str(installed / "python"), "-c", "import payverify; print(payverify.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert str(installed.parent) in where.stdout and str(ROOT) not in where.stdout, where.stdout
    event = seed.event(seed.artist())
    # A name outside Latin-1 needs the bundled DejaVu font (package data), not the PDF's built-in Helvetica.
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event, first_name="Zoë", last_name="Łukasz")

    result = subprocess.run([str(installed / "payverify"), "sweep"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert status_of(db, order.id) == "completed"
    (mail,) = [m.parsed() for m in smtp.messages]
    assert "Harbour Lights" in mail["Subject"]  # rendered from the wheel's templates
    pdf = next(part for part in mail.iter_attachments() if part.get_content_type() == "application/pdf")
    reader = PdfReader(io.BytesIO(pdf.get_content()))
    assert "Zoë Łukasz" in reader.pages[0].extract_text()
    fonts = {str(f.get_object()["/BaseFont"]) for page in reader.pages
             for f in page["/Resources"].get_object()["/Font"].get_object().values()}
    assert any("DejaVu" in name for name in fonts), fonts


def test_installed_package_holds_no_test_machinery(installed, seed, env, tmp_path):
    """`pip install` of the wheel (no extras): --help, check and doctor work; no simulator, SMTP
    capture, seeder or demo was installed, and aiosmtpd (a test dependency) is not there."""
    files = subprocess.run([str(installed / "python"), "-m", "pip", "show", "--files", "payverify"],
                           capture_output=True, text=True, timeout=60).stdout
    assert "payverify/__init__.py" in files
    for machinery in ("payverify_dev", "sumup_server", "smtp_capture", "seed.py", "demo.py", "simulator"):
        assert machinery not in files, machinery
    assert subprocess.run([str(installed / "python"), "-c", "import aiosmtpd"], capture_output=True,
                          timeout=60).returncode != 0

    def payverify(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(installed / "payverify"), *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    assert payverify("--help").returncode == 0
    event = seed.event(seed.artist())
    order = seed.order([(seed.ticket_type(event), 1)], event_id=event)
    check = payverify("check", order.order_number)
    assert check.returncode == 0 and "order is now completed" in check.stdout, check.stderr
    doctor = payverify("doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert not any(line.startswith("FAIL") for line in doctor.stdout.splitlines())
