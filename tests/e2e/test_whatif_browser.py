"""``broom whatif --html``'s page in a real browser: headless Chromium (Debian's
``chromium`` package) loads it without a console error, runs its filters, shows the
counts, and draws something (a non-blank screenshot).

Console errors are read two ways: Chromium's own log (``--enable-logging=stderr``
prints every console message, uncaught errors and refused fetches included), and the
page's error hook, which writes any script error into ``#errors`` (read back with
``--dump-dom``). A deliberately broken page shows that both catch an error.
"""
import shutil
import struct
import subprocess
import zlib

import pytest
from click.testing import CliRunner

from broom.cli import cli

from trail import instance_id, log_file, role, root, run_instances, user

BROWSER = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no Chromium installed (apt-get install chromium): the "
                            "whatif page is not checked in a browser")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--enable-logging=stderr", "--v=0", "--hide-scrollbars")


def browse(tmp_path, *args):
    """Run Chromium with a fresh profile; (stdout, the console lines it logged)."""
    profile = tmp_path / ("profile-%d" % len(list(tmp_path.glob("profile-*"))))
    done = subprocess.run([BROWSER, *FLAGS, "--user-data-dir=%s" % profile, *args],
                          capture_output=True, text=True, timeout=120)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def console_errors(console):
    return [line for line in console
            if any(word in line for word in ("Uncaught", "Error", "Refused", "error"))]


def png_pixels(data):
    """(width, height, distinct byte values of the decoded image data) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        if kind == b"IDAT":
            chunks.append(data[at + 8:at + 8 + length])
        at += 12 + length
    return width, height, len(set(zlib.decompress(b"".join(chunks))))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whatif-html")
    who = [user("alice"), user("bob"), role("ci-deployer", "gh"), root()]
    records = [run_instances([instance_id() for _ in range(1 + k % 2)], k * 15000,
                             who=who[k % 4], tags=None if k % 3 == 0 else {
                                 "Code": ["LOL", "NOPE"][k % 2]}) for k in range(30)]
    log_file(folder / "trail", records)
    path = folder / "page.html"
    result = CliRunner().invoke(cli, ["whatif", "--no-progress", "--html", str(path),
                                      str(folder / "trail")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return path


def test_the_page_loads_without_errors_and_filters_from_its_address(page, tmp_path):
    dom, console = browse(tmp_path, "--dump-dom", page.as_uri() + "#verdict=violation")
    violations = page.read_text().count('data-verdict="violation"')

    assert console_errors(console) == []
    assert 'data-ready="yes"' in dom  # the script ran to its end
    assert '<div id="errors"></div>' in dom
    assert '<b id="shown">%d</b>' % violations in dom
    assert '<div class="card " data-count="launches"><b>30</b>launches</div>' in dom
    assert "violations</div>" in dom


def test_a_screenshot_of_the_page_is_not_blank(page, tmp_path):
    shot = tmp_path / "page.png"
    _, console = browse(tmp_path, "--screenshot=%s" % shot, "--window-size=1200,900",
                        page.as_uri())

    assert console_errors(console) == []
    width, height, distinct = png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 900)
    assert distinct > 32  # text, bars and cards, not one flat colour


def test_a_broken_page_is_caught_both_ways(page, tmp_path):
    """The checks above can fail: a page whose script throws."""
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("apply();\n", "apply(); missing();\n", 1))
    dom, console = browse(tmp_path, "--dump-dom", broken.as_uri())

    assert any("missing is not defined" in line for line in console_errors(console))
    assert "missing is not defined" in dom.split('<div id="errors">', 1)[1].split("</div>")[0]
    assert 'data-ready="no"' in dom
