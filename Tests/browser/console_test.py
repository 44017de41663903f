#!/usr/bin/env python3
"""The web console in a real browser (Debian's chromium, headless, driven by Selenium through
chromedriver), as an operator uses it: log in, browse to a point and its files, download a file,
start a backup now and watch it reach 100%, delete the new point and undelete it. Every wait is
bounded; the browser is closed in every outcome. Screenshots of each page go to --screenshots.

Run by WebBrowserTests (make test), which starts the server on a repository of its own:
  console_test.py --url URL --token-file F --source FILE --downloads DIR --screenshots DIR
Exits 0 when every step passed, 1 naming the first that did not."""
import argparse
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 30


def step(text):
    print(f"step: {text}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    for name in ("url", "token-file", "source", "downloads", "screenshots"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    token = open(args.token_file).read().strip()
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.add_experimental_option("prefs", {
        "download.default_directory": args.downloads, "download.prompt_for_download": False,
        "safebrowsing.enabled": False,
    })
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(WAIT)
    wait = WebDriverWait(driver, WAIT)

    def shot(name):
        driver.save_screenshot(os.path.join(args.screenshots, f"{name}.png"))

    def click(by, value):
        wait.until(EC.element_to_be_clickable((by, value))).click()

    try:
        step("a page without a session goes to the login form")
        driver.get(args.url + "/points")
        wait.until(EC.presence_of_element_located((By.ID, "token")))
        assert "/login?next=/points" in driver.current_url, driver.current_url
        shot("login")
        step("a wrong token is refused on the page")
        driver.find_element(By.ID, "token").send_keys("not-the-token")
        click(By.ID, "login")
        wait.until(EC.presence_of_element_located((By.ID, "problem")))
        step("the token logs in and lands on the points")
        driver.find_element(By.ID, "token").send_keys(token)
        click(By.ID, "login")
        wait.until(EC.presence_of_element_located((By.ID, "points")))
        assert driver.current_url.endswith("/points"), driver.current_url
        shot("points")

        step("filters: the point's server, then a type with no point")
        driver.get(args.url + "/points?server=web&type=incremental")
        wait.until(EC.presence_of_element_located((By.CLASS_NAME, "pager")))
        assert "No points match." in driver.page_source
        driver.get(args.url + "/points?server=web")
        click(By.LINK_TEXT, "one")
        wait.until(EC.presence_of_element_located((By.ID, "disks")))
        assert driver.find_element(By.ID, "status").text == "Active"
        shot("point")

        step("the point's files: browse to etc and download hostname")
        click(By.LINK_TEXT, "Browse files")
        click(By.LINK_TEXT, "etc/")
        wait.until(EC.presence_of_element_located((By.ID, "files")))
        shot("files")
        row = next(r for r in driver.find_elements(By.CSS_SELECTOR, "#files tbody tr")
                   if r.find_element(By.TAG_NAME, "td").text == "hostname")
        row.find_element(By.LINK_TEXT, "Download").click()
        target = os.path.join(args.downloads, "hostname")
        deadline = time.time() + WAIT
        while time.time() < deadline and not (os.path.exists(target) and not os.path.exists(target + ".crdownload")):
            time.sleep(0.2)
        assert os.path.exists(target), f"no download in {os.listdir(args.downloads)}"
        assert open(target, "rb").read() == open(args.source, "rb").read(), "the download differs from the source"

        step("backup now from the servers page, with its confirmation")
        driver.get(args.url + "/servers")
        wait.until(EC.presence_of_element_located((By.LINK_TEXT, "Backup now")))
        shot("servers")
        click(By.LINK_TEXT, "Backup now")
        wait.until(EC.presence_of_element_located((By.ID, "name"))).send_keys("from-browser")
        driver.find_element(By.ID, "description").send_keys("started in chromium")
        driver.find_element(By.ID, "tags").send_keys("ticket=OPS-9")
        shot("backup")
        click(By.ID, "start")
        wait.until(EC.alert_is_present())
        driver.switch_to.alert.accept()

        step("the jobs page shows the backup running, then 100%")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#jobs tbody tr[data-point] progress")))
        row = driver.find_element(By.CSS_SELECTOR, "#jobs tbody tr[data-point]")
        point = row.get_attribute("data-point")
        shot("jobs")
        WebDriverWait(driver, 90).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-point='{point}'] .percent").text == "100% done")
        assert driver.find_element(By.CSS_SELECTOR, f"tr[data-point='{point}'] progress").get_attribute("value") == "100"

        step("delete the new point, confirmed, then undelete it")
        driver.get(f"{args.url}/points/{point}")
        click(By.ID, "delete")
        wait.until(EC.presence_of_element_located((By.ID, "confirm")))
        shot("delete")
        click(By.ID, "confirm")
        wait.until(EC.presence_of_element_located((By.ID, "undelete")))
        assert driver.find_element(By.ID, "deletion").text == "Soft deleted"
        click(By.ID, "undelete")
        wait.until(EC.presence_of_element_located((By.ID, "delete")))
        assert driver.find_element(By.ID, "deletion").text == ""

        step("history and vaults")
        driver.get(args.url + "/history")
        wait.until(EC.presence_of_element_located((By.ID, "history")))
        assert "from-browser" in driver.page_source
        shot("history")
        driver.get(args.url + "/vaults")
        wait.until(EC.presence_of_element_located((By.TAG_NAME, "table")))
        shot("vaults")

        step("no page broke its content security policy")
        problems = [entry["message"] for entry in driver.get_log("browser")
                    if "Content Security Policy" in entry["message"] or entry["level"] == "SEVERE"
                    and "favicon" not in entry["message"] and "401" not in entry["message"]]
        assert not problems, problems

        step("log out")
        click(By.CSS_SELECTOR, "form.logout button")
        wait.until(EC.presence_of_element_located((By.ID, "token")))
        print("all steps passed", flush=True)
        return 0
    except (AssertionError, TimeoutException, StopIteration) as error:
        shot("failure")
        print(f"failed: {type(error).__name__}: {error} at {driver.current_url}", flush=True)
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
