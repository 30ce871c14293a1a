"""Screenshot of a run's TensorBoard custom-scalars chart (the README's picture), taken headless.

Not part of the package: needs `pip install playwright` and a Chromium binary (Debian: apt install
chromium). Start `tensorboard --logdir RUN_DIR --port 6007` first, then:

    python docs/tools/tensorboard_screenshot.py http://localhost:6007 docs/tensorboard_transfer.png
"""

from __future__ import annotations

import sys

from playwright.sync_api import sync_playwright


def main(url: str, out: str, chromium: str = "/usr/bin/chromium") -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, device_scale_factor=1)
        page.goto(f"{url}/?darkMode=false#custom_scalars", wait_until="networkidle")
        page.wait_for_timeout(4000)
        smoothing = page.locator("input[type=number]").first  # the smoothing box: raw means, no EMA
        smoothing.fill("0")
        smoothing.press("Enter")
        runs = page.locator("tf-runs-selector input, #runs-regex input, paper-input input").last
        runs.fill("summary")  # the per-variant summary runs: their colors are the legend
        page.wait_for_timeout(1500)
        page.get_by_text("Ignore outliers in chart scaling").click()  # every variant in view
        card = (
            page.locator("tf-custom-scalar-margin-chart-card").filter(has_text="return on the target").first
        )
        card.locator("paper-icon-button, button").first.click()  # expand the chart
        page.wait_for_timeout(2500)
        box = card.bounding_box()
        assert box is not None
        page.screenshot(
            path=out, clip={"x": 0, "y": box["y"] - 10, "width": 1400, "height": box["height"] + 20}
        )
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
