"""A real browser: headless Debian Chromium driven by Selenium, its camera a Y4M clip made from the samples.

The live sample T1 enrols and logs in through the pages' own getUserMedia script; the screen-replay sample
F2 (the same person as T1) and the printed photo F1 are refused. Skips with a reason where chromium/chromedriver are not installed.
Screenshots go to ``$LOGIN_SCREENSHOTS`` when set (the README's pictures), else to the test's temp dir.
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib", reason="needs the [login] extra (dlib-bin)")
pytest.importorskip("face_recognition_models", reason="needs the [login] extra (face-recognition-models)")
pytest.importorskip("selenium", reason="needs selenium from the [login] extra")

import cv2  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import JavascriptException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402
from sqlalchemy import select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from liveness_edge.login.app import LoginConfig, create_app  # noqa: E402
from liveness_edge.login.bench import webcam_frame  # noqa: E402
from liveness_edge.login.store import Attempt  # noqa: E402
from liveness_edge.login.verify import Verifier  # noqa: E402
from liveness_edge.runtime.manifest import ARTIFACTS_DIR  # noqa: E402

SAMPLES = ARTIFACTS_DIR / "samples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver"),
]


def write_y4m(image_path: Path, out: Path, frames: int = 20, fps: int = 10) -> Path:
    """A 640x480 4:2:0 Y4M clip of one still, shifted by a pixel or two per frame like a hand-held camera."""
    base = webcam_frame(cv2.imread(str(image_path)), 640, 480)
    with open(out, "wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            shift = np.float32([[1, 0, (i % 3) - 1], [0, 1, (i % 2)]])
            frame = cv2.warpAffine(base, shift, (640, 480), borderMode=cv2.BORDER_REPLICATE)
            f.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return out


def chromium(clip: Path, profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-video-capture={clip}", f"--user-data-dir={profile}", "--window-size=900,1100"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not fetch a browser or driver
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as e:  # noqa: BLE001 - any launch failure means this machine cannot run the browser
        pytest.skip(f"chromium cannot start here: {str(e).splitlines()[0]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    db = tmp_path_factory.mktemp("browser") / "login.sqlite"
    app = create_app(LoginConfig(db_url=f"sqlite:///{db}"), Verifier.load())
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


PAGE_STATE = """const s = document.getElementById('status');
return document.getElementById('welcome') ? 'WELCOME' : (s ? s.textContent : '');"""


def _capture(driver: webdriver.Chrome, url: str, username: str, done: str) -> str:
    """Fill the username, press the button, wait for a final status line or the welcome page; the status."""
    driver.get(url)
    wait = WebDriverWait(driver, 90, ignored_exceptions=(StaleElementReferenceException, JavascriptException))
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Camera ready"))
    wait.until(lambda d: d.execute_script("return document.getElementById('video').videoWidth") > 0)
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "start").click()
    return wait.until(lambda d: next((t for t in [d.execute_script(PAGE_STATE)]
                                      if t == "WELCOME" or any(w in t for w in done.split("|"))), None))


def test_real_clip_enrols_and_logs_in_spoof_clip_refused(server, tmp_path: Path) -> None:
    app, base = server
    shots = Path(os.environ.get("LOGIN_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    real = write_y4m(SAMPLES / "real" / "image_T1.jpg", tmp_path / "real.y4m")
    spoofs = {name: write_y4m(SAMPLES / "spoof" / f"image_{f}.jpg", tmp_path / f"{name}.y4m")
              for name, f in (("print", "F1"), ("screen", "F2"))}
    refused = "passed|match|face|attempts|long|valid"

    driver = chromium(real, tmp_path / "profile-real")
    try:
        driver.get(base + "/")
        driver.save_screenshot(str(shots / "login-home.png"))
        status = _capture(driver, base + "/enrol", "alice", "Enrolled|" + refused)
        driver.save_screenshot(str(shots / "login-enrol.png"))
        assert "Enrolled" in status, status
        assert _capture(driver, base + "/login", "alice", refused) == "WELCOME"
        WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "welcome")))
        assert "alice" in driver.find_element(By.ID, "welcome").text
        driver.save_screenshot(str(shots / "login-welcome.png"))
    finally:
        driver.quit()

    for name, clip in spoofs.items():
        driver = chromium(clip, tmp_path / f"profile-{name}")
        try:
            status = _capture(driver, base + "/login", "alice", refused)
            driver.save_screenshot(str(shots / f"login-{name}-refused.png"))
            assert "liveness" in status, status
            assert not driver.find_elements(By.ID, "welcome")
        finally:
            driver.quit()

    with Session(app.extensions["liveness_login"]["engine"]) as s:
        attempts = [(a.kind, a.decision, a.reason) for a in s.scalars(select(Attempt).order_by(Attempt.id))]
    assert attempts == [("enrol", "accepted", "ok"), ("login", "accepted", "ok")] + [("login", "refused", "not_live")] * 2
