"""Drive the operator console in a real browser: Debian's headless Chromium
through its ChromeDriver, with Selenium (gateway/tests/console_browser.rs runs
this against a gateway it started).

    console_browser.py BASE_URL ADMIN_KEY TENANT_KEY SCREENSHOT_DIR

Logs in with the operator key, sees the accepted rate move while messages
flow, releases a held message from the page and sees it delivered, checks the
page at phone width, saves screenshots, logs out and sees the login form
again. Exits non-zero (with the reason) on the first thing that is not so.
"""

import json
import os
import sys
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

BASE, ADMIN_KEY, TENANT_KEY, SHOTS = sys.argv[1:5]


def api(method, path, body=None):
    req = urllib.request.Request(
        BASE + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"authorization": "Bearer " + TENANT_KEY, "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def send_for(seconds, stop):
    """Messages flowing: a few a second to spread-out numbers."""
    n = 0
    end = time.time() + seconds
    while time.time() < end and not stop.is_set():
        n += 1
        api("POST", "/v1/messages", {"channel": "sms", "to": "+4860%07d" % (1000000 + n * 7919), "text": "Rata %d" % n})
        time.sleep(0.1)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]:
        opts.add_argument(a)
    # The driver from Debian's chromium-driver: nothing is downloaded.
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    wait = WebDriverWait(driver, 20)
    try:
        driver.get(BASE + "/console")
        wait.until(ec.presence_of_element_located((By.ID, "key"))).send_keys(ADMIN_KEY)
        driver.find_element(By.ID, "name").send_keys("Browser test")
        driver.find_element(By.ID, "login").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "live"), "live"))
        assert "Browser test" in driver.find_element(By.ID, "who").text
        # The cookie is not readable by the page's scripts.
        assert "goniec-console" not in driver.execute_script("return document.cookie"), "cookie visible to scripts"

        # A number moves while messages flow.
        stop = threading.Event()
        sender = threading.Thread(target=send_for, args=(15, stop), daemon=True)
        sender.start()
        seen = set()
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                seen.add(driver.find_element(By.ID, "rate-sms-accepted").text)
            except Exception:
                pass
            if any(v not in ("0 /s", "") for v in seen):
                break
            time.sleep(0.3)
        stop.set()
        sender.join()
        assert any(v not in ("0 /s", "") for v in seen), "the accepted rate never moved: %r" % seen

        # A held message, shown with its text, released from the page, delivered.
        held = api("POST", "/v1/messages", {"channel": "sms", "to": "+48608123456", "text": "Zapłać: bit.ly/3abc"})
        assert held["status"] == "held", held
        hid = held["id"]
        row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, '[data-held="%s"]' % hid)))
        assert "bit.ly/3abc" in row.text, row.text
        driver.save_screenshot(os.path.join(SHOTS, "console.png"))
        driver.find_element(By.CSS_SELECTOR, 'button[data-action="release"][data-id="%s"]' % hid).click()
        status = None
        for _ in range(100):
            status = api("GET", "/v1/messages/" + hid)["status"]
            if status == "delivered":
                break
            time.sleep(0.1)
        assert status == "delivered", "released message is %s" % status
        wait.until(ec.invisibility_of_element_located((By.CSS_SELECTOR, '[data-held="%s"]' % hid)))
        wait.until(ec.text_to_be_present_in_element((By.ID, "audit-log"), "release"))

        # Readable on a phone: nothing wider than the screen but the tables' own scrollers.
        driver.set_window_size(390, 844)
        time.sleep(1.5)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, "the page is %d px wider than a phone" % overflow
        driver.save_screenshot(os.path.join(SHOTS, "console-phone.png"))
        driver.set_window_size(1280, 900)

        # Log out: the form again, and the stream refuses the old cookie.
        driver.find_element(By.ID, "logout").click()
        wait.until(ec.presence_of_element_located((By.ID, "key")))
        driver.get(BASE + "/v1/admin/overview")
        assert "unauthorized" in driver.page_source, driver.page_source[:300]
        print("console browser test passed")
    except Exception:
        driver.save_screenshot(os.path.join(SHOTS, "failure.png"))
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
