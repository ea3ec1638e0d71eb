"""``ssgan serve`` in a real browser: Debian's Chromium driven by Selenium through Debian's
chromium-driver (same version as the browser). Load, random face, pick the mouth by clicking it on
the mask, resample its texture, check the difference map stays inside the mouth, undo/redo, the
interpolation and direction sliders, upload a photo of the built-in data, invert it (few steps),
edit it, a bad upload's message, download the .npy, reload it with numpy and open it in the page.

Every request the browser makes is logged (Chrome's performance log); the test fails on any that
is not to 127.0.0.1. Outside requests are also blocked: a dead proxy for everything but loopback
and a host resolver that resolves no other name; the test ends by checking that guard: a request
to a TEST-NET address shows in the log and loads nothing. Skips (saying why) only when no Chromium,
chromedriver or Selenium is installed. Screenshots: docs/serve_*.png with SSGAN_DOCS_SCREENSHOTS=1.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import urlopen

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ssgan
from ssgan.data.synthetic import SyntheticFaces

ROOT = Path(__file__).resolve().parents[1]
TRAINED = ROOT / "tests" / "data" / "serve_tiny.safetensors"
MOUTH = 3
LOCAL = {"127.0.0.1", "localhost"}
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
         "--no-first-run", "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
         "--window-size=1320,1000",
         # outside requests cannot leave: a dead proxy (loopback bypasses it) and no name resolves
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=127.0.0.1;localhost",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]

pytestmark = pytest.mark.slow


def find_browser() -> tuple[str, str]:
    """(chromium, chromedriver) paths, or skip saying what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    browsers = ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
    browser = next((p for p in browsers if p and Path(p).exists()), None)
    drivers = ("/usr/bin/chromedriver", shutil.which("chromedriver"))
    driver = next((p for p in drivers if p and Path(p).exists()), None)
    if browser is None or driver is None:
        pytest.skip("no Chromium/chromedriver found (apt-get install -y chromium chromium-driver)")
    return browser, driver


class Server:
    """The app under uvicorn on a free 127.0.0.1 port, in a thread."""

    def __init__(self, ckpt: Path):
        import uvicorn

        from ssgan.serve import commands

        parser = argparse.ArgumentParser()
        commands.add_arguments(parser)
        app = commands.build(parser.parse_args([str(ckpt), "--device", "cpu", "--invert-steps", "8",
                                                "--truncation", "0.7", "--no-compile"]))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        end = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > end:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/"

    def state(self, sid: str) -> dict:
        with urlopen(f"{self.url}api/state?session={sid}") as r:
            return json.load(r)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The trained tiny generator when the repository has it (the difference map is only local for a
    trained model), else a random one with the built-in data's class names."""
    if TRAINED.is_file():
        return TRAINED
    cfg = ssgan.preset("tiny")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("serve") / "random.safetensors"
    names = ["background", "face", "eyes", "mouth", "glasses"]
    return ssgan.save_checkpoint(path, cfg, g_ema=ssgan.SemanticGenerator(cfg),
                                 meta={"classes": {"names": names}})


def mouth_seed(ckpt: Path) -> int:
    """A seed whose face shows a mouth of at least 12 pixels (truncation 0.7)."""
    from ssgan.edit import editing as E

    G = ssgan.load_checkpoint(ckpt).g_ema
    mean = E.mean_w(G, 0, 4096)
    for seed in range(200):
        seg = E.render(G, E.sample_latents(G, 1, seed, 0.7, mean)).seg
        if int((seg.argmax(1) == MOUTH).sum()) >= 12:
            return seed
    pytest.fail("no seed in 0..199 gives this model a mouth")


PROBE = "http://198.51.100.7/ssgan-probe"  # TEST-NET-2: never a real host


def sent(driver) -> list[str]:
    """The URLs of the requests the browser sent since the last call (its performance log)."""
    out = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            out.append(message["params"]["request"]["url"])
    return out


def png_of(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def test_editor_in_chromium(checkpoint, tmp_path):
    browser, driver_path = find_browser()
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    # the README's screenshots: docs/ with SSGAN_DOCS_SCREENSHOTS=1 (they differ on every run: timings,
    # random seeds), else the test's temporary folder
    shots = ROOT / "docs" if os.environ.get("SSGAN_DOCS_SCREENSHOTS") == "1" else tmp_path
    seed = mouth_seed(checkpoint)
    photo = tmp_path / "photo.png"
    Image.fromarray(SyntheticFaces(32, 8, seed=7).render(3)[0]).save(photo)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    server = Server(checkpoint)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    d = webdriver.Chrome(service=Service(driver_path), options=options)
    requests: list[str] = []
    try:
        d.set_page_load_timeout(30)
        d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        wait = WebDriverWait(d, 60, poll_frequency=0.05)
        el = lambda testid: d.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')  # noqa: E731

        def step_is(n: int) -> None:
            wait.until(lambda _: el("history").text.startswith(f"step {n} of")
                       and el("busy").get_attribute("data-busy") == "0")

        d.get(server.url)
        wait.until(lambda _: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        step_is(1)
        names = [e.get_attribute("data-name") for e in d.find_elements(By.CSS_SELECTOR, "#legend input")]
        assert names == list(ssgan.load_checkpoint(checkpoint).classes.names)
        sid = d.find_element(By.TAG_NAME, "body").get_attribute("data-session")

        el("sample-random").click()  # a random face
        step_is(2)
        assert "sample seed" in el("action").text and "ms" in el("timing").text
        seed_box = el("seed-input")  # then a face known to have a mouth
        seed_box.clear()
        seed_box.send_keys(str(seed))
        el("sample-seed").click()
        step_is(3)

        # pick the mouth by clicking it on the mask, then resample its texture
        labels = np.frombuffer(base64.b64decode(server.state(sid)["labels"]), np.uint8)
        size = int(np.sqrt(labels.size))
        ys, xs = np.nonzero(labels.reshape(size, size) == MOUTH)
        i = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)  # the mouth pixel nearest its centre
        canvas = el("mask-image")
        scale = canvas.size["width"] / size
        ActionChains(d).move_to_element_with_offset(
            canvas, int((xs[i] + 0.5) * scale - canvas.size["width"] / 2),
            int((ys[i] + 0.5) * scale - canvas.size["height"] / 2)).click().perform()
        assert el(f"region-{MOUTH}").is_selected()
        assert [c.is_selected() for c in d.find_elements(By.CSS_SELECTOR, "#legend input")].count(True) == 1
        Select(el("part-select")).select_by_value("texture")
        el("edit-resample").click()
        step_is(4)
        assert "resample texture of" in el("action").text
        assert el("action").get_attribute("data-recomputed") == "1"  # one local generator re-run
        el("overlay-toggle").click()
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(str(shots / "serve_edit.png"))

        # the difference map stays inside the (dilated) mouth: the page's heat map against the
        # region the server reports
        state = server.state(sid)
        heat = png_of(el("diff-image").get_attribute("src")).astype(float)
        assert np.array_equal(heat, png_of(state["diff"]["image"]))
        size = int(np.sqrt(len(base64.b64decode(state["diff"]["region"]))))
        region = np.frombuffer(base64.b64decode(state["diff"]["region"]), np.uint8).reshape(size, size).copy()
        dilated = F.max_pool2d(torch.from_numpy(region).float()[None, None], 5, 1, 2)[0, 0].bool().numpy()
        energy = heat[..., 0] + heat[..., 1]  # black → red → yellow
        inside, outside = energy[dilated].mean(), energy[~dilated].mean()
        if TRAINED.is_file():
            assert outside < 0.25 * inside, (inside, outside)
        assert float(el("diff-stats").get_attribute("data-inside")) == pytest.approx(state["diff"]["inside"])

        el("undo").click()
        step_is(3)
        el("redo").click()
        step_is(4)

        # the sliders: a drag is one history entry; the direction slider moves the mouth along pc1
        slide = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))"
        d.execute_script(slide, el("interp-slider"), "0.6")
        step_is(5)
        d.execute_script(slide, el("interp-slider"), "1")
        wait.until(lambda _: "t = 1.00" in el("action").text)
        step_is(5)
        assert "interpolate texture of mouth to the reference" in el("action").text
        d.execute_script(slide, el("direction-slider"), "2")
        wait.until(lambda _: "along pc1 by +2.00" in el("action").text)
        step_is(6)

        # upload a photo, invert it (8 steps), watch the progress bar, edit the result
        el("upload-input").send_keys(str(photo))
        steps = el("invert-steps")
        steps.clear()
        steps.send_keys("8")
        el("invert-start").click()
        wait.until(lambda _: el("invert-status").get_attribute("data-status") == "done")
        step_is(7)
        assert el("invert-progress").get_attribute("value") == "8"
        assert "invert photo.png" in el("action").text
        assert el("upload-preview").get_attribute("src").startswith("blob:")
        el("edit-resample").click()  # the mouth of the inverted photo
        step_is(8)
        assert "resample texture of mouth" in el("action").text
        d.execute_script("window.scrollTo(0, 0)")
        d.save_screenshot(str(shots / "serve_invert.png"))

        # a bad upload: a message in the page, the server keeps serving
        bad = tmp_path / "notes.png"
        bad.write_bytes(b"this is not a picture")
        el("upload-input").send_keys(str(bad))
        el("invert-start").click()
        wait.until(lambda _: el("message").is_displayed())
        assert "notes.png is not an image" in el("message").text

        # download the latent and reload it with numpy
        el("download-latent").click()
        end = time.monotonic() + 20
        while not list(downloads.glob("*.npy")) and time.monotonic() < end:
            time.sleep(0.1)
        files = list(downloads.glob("*.npy"))
        assert files, "the .npy download did not arrive"
        latent = np.load(files[0], allow_pickle=False)
        cfg = ssgan.load_checkpoint(checkpoint).config
        assert latent.shape == (cfg.n_latent, cfg.style_dim) and latent.dtype == np.float32
        el("latent-input").send_keys(str(files[0]))  # and open it again as the current face
        step_is(9)
        assert el("action").text.startswith(f"open {files[0].name}")

        requests += sent(d)
        errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE"
                  and "415" not in e["message"]]  # the bad upload's answer is expected
        assert not errors, errors

        # the guard itself: an outside request is seen by the log and goes nowhere
        try:
            d.get(PROBE)
        except WebDriverException:
            pass
        assert PROBE in sent(d) and "ssgan editor" not in d.title
        assert not d.find_elements(By.CSS_SELECTOR, '[data-testid="busy"]')
    finally:
        d.quit()
        server.stop()
    assert len(requests) >= 10, requests  # the log works: the page's own requests are in it
    outside = [u for u in requests if urlparse(u).scheme not in ("data", "blob", "about")
               and urlparse(u).hostname not in LOCAL]
    assert not outside, f"requests that were not to 127.0.0.1: {outside}"
