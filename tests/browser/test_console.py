"""The console in a real headless Chromium against a real worker on the real broker.

The seed incident (`detector simulate incident`: 5 allowlisted QA accounts, 250 real users
enrolled by mistake) is replayed into Kafka while the overview is open; then on-call works it
from the pages alone: the incident appears without a reload, Acknowledge changes it everywhere,
the CSV holds exactly the out-of-target users, a risky registration needs confirmation, a form
without its CSRF token is refused. Screenshots of the overview and the incident go to docs/.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from harness import BOOTSTRAP, ROOT, wait_until

TOKEN = "console-e2e-token"
QA = "crm-winback-email-qa"
# Screenshots for the README: `DETECTOR_SCREENSHOTS=docs` writes them to docs/ (committed); by default
# they go to the test's temporary directory, so a test run does not change the checkout.
SCREENSHOTS = Path(ROOT) / "docs" if os.environ.get("DETECTOR_SCREENSHOTS") == "docs" else None


def _login(driver, url: str, token: str, next_path: str = "/") -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/login?next={next_path}")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_until(lambda: "/login" not in driver.current_url, 10, what="sign-in to finish")


def _fetch_status(driver, method: str, path: str, body: str = "") -> int:
    """Status of a same-origin request sent from the page (cookies included, no CSRF token)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[1], {method: arguments[0], credentials: 'same-origin', redirect: 'manual',"
        " headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: arguments[2] || undefined})"
        ".then(r => done(r.status)).catch(e => done(-1));", method, path, body)


def test_console_works_the_seed_incident(workers, ns, browser, tmp_path):
    from selenium.webdriver.common.by import By

    w = workers(env={"DETECTOR_API_TOKEN": TOKEN})
    d = browser

    # A page that needs sign-in sends you to it, and comes back after.
    d.get(f"{w.url}/")
    assert "/login" in d.current_url
    _login(d, w.url, TOKEN)
    assert d.find_element(By.CSS_SELECTOR, "h1").text == "Experiments"

    # ---- the seed incident, replayed while the overview is open --------------------------
    sim = subprocess.Popen(
        [sys.executable, "-m", "detector", "simulate", "incident", "--bootstrap", BOOTSTRAP, "--prefix", ns.prefix,
         "--url", w.url, "--qa-users", "5", "--others", "250", "--json"],
        cwd=ROOT, env={**os.environ, **ns.env(), "DETECTOR_API_TOKEN": TOKEN},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_at = None
    deadline = time.time() + 90
    while time.time() < deadline:
        links = d.find_elements(By.CSS_SELECTOR, f'tr[data-experiment="{QA}"] a.incident')
        if links:
            seen_at = time.time()
            break
        time.sleep(0.05)
    out, err = sim.communicate(timeout=120)
    assert sim.returncode == 0, err
    assert seen_at is not None, "the incident never appeared on the overview"
    sc = SimpleNamespace(**json.loads(out))
    shown_after = seen_at - sc.first_offending_sent_at
    assert shown_after < 2.0, f"the incident appeared {shown_after:.3f} s after the first offending event"
    assert d.current_url.rstrip("/").endswith(w.url.split("//")[1]) or d.current_url.endswith("/"), \
        "the overview must update in place, without navigating"
    shots = SCREENSHOTS or tmp_path
    shots.mkdir(exist_ok=True)
    d.save_screenshot(str(shots / "console-overview.png"))

    # ---- the incident page ------------------------------------------------------------------
    code, listing = w.get(f"/v1/incidents?experiment={QA}&rule=allowlist_breach")
    [summary] = listing["incidents"]
    iid = summary["id"]
    d.get(f"{w.url}/incidents/{iid}")
    assert "Allowlist" in d.find_element(By.CSS_SELECTOR, "h1").text
    wait_until(lambda: d.find_element(By.ID, "blast-count").text == "250 users" or d.refresh(), 10,
               what="blast radius 250 on the page")
    sample = {li.text for li in d.find_elements(By.CSS_SELECTOR, "#sample li")}
    assert sample and sample <= set(sc.offenders)

    # The downloaded CSV holds exactly the out-of-target users.
    d.find_element(By.ID, "download-csv").click()

    def downloaded():
        files = [p for p in d.downloads.glob("*.csv")]
        return files[0] if files and not list(d.downloads.glob("*.crdownload")) else None

    path = wait_until(downloaded, 20, what="the CSV download")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert {r["user_id"] for r in rows} == set(sc.offenders)
    assert len(rows) == 250

    # A form post without the CSRF token is refused, and changes nothing.
    assert _fetch_status(d, "POST", f"/incidents/{iid}/ack") == 403
    assert w.get(f"/v1/incidents/{iid}")[1]["acknowledged_by"] is None

    d.save_screenshot(str(shots / "console-incident.png"))
    # Acknowledge through the page: the API (any client) sees it.
    d.find_element(By.ID, "ack").click()
    wait_until(lambda: "Done: acknowledged" in d.page_source, 10, what="the acknowledgement notice")
    _, inc = w.get(f"/v1/incidents/{iid}")
    assert inc["acknowledged_by"] == "api-token"
    assert any(e["kind"] == "acknowledged" for e in inc["timeline"])

    # ---- registration with a risky change: shown, applied only after confirmation ------------
    d.get(f"{w.url}/register?experiment={QA}")
    text = d.find_element(By.ID, "yaml").get_attribute("value")
    assert f"experiment: {QA}" in text
    risky = (f"experiment: {QA}\nowner: crm\ndescription: QA of the win-back email, test accounts only\n"
             "population:\n  fraction: 1.0\n")
    box = d.find_element(By.ID, "yaml")
    box.clear()
    box.send_keys(risky)
    d.find_element(By.ID, "apply").click()
    # the click submits the form: wait for the answer page instead of reading the page being left
    risks = wait_until(lambda: (d.find_elements(By.ID, "risks") or [None])[0], 10, what="the risks").text
    assert "Review these risks" in risks
    assert not d.find_elements(By.ID, "applied")
    assert w.get(f"/v1/expectations/{QA}")[1]["population"].get("fraction") is None  # not applied
    d.find_element(By.ID, "confirm").click()
    d.find_element(By.ID, "apply").click()
    wait_until(lambda: d.find_elements(By.ID, "applied"), 10, what="the applied notice")
    wait_until(lambda: w.get(f"/v1/expectations/{QA}")[1]["population"].get("fraction") == 1.0, 10,
               what="the new registration through the API")

    # Validation errors are shown at their fields.
    d.get(f"{w.url}/register")
    box = d.find_element(By.ID, "yaml")
    box.send_keys("experiment: x\npopulation:\n  fractoin: 0.5\n")
    d.find_element(By.ID, "check").click()
    errors = wait_until(lambda: (d.find_elements(By.ID, "errors") or [None])[0], 10, what="the errors")
    assert "population.fractoin" in errors.text


def test_pages_without_read_users_show_no_user_id(workers, ns, browser, tmp_path):
    """A token with `read` and `respond` but not `read:users` browses every page of the seed incident:
    no offender id, no allowlisted account, no sample, no CSV; with `read:users` the ids are there."""
    from selenium.webdriver.common.by import By

    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("- {name: oncall, token: oncall-token-0123456789, scopes: [read, respond]}\n"
                      "- {name: owner, token: owner-token-0123456789, scopes: [read, read:users, write]}\n")
    w = workers(env={"DETECTOR_API_TOKEN": TOKEN, "DETECTOR_API_TOKENS_FILE": str(tokens)})
    run = subprocess.run(
        [sys.executable, "-m", "detector", "simulate", "incident", "--bootstrap", BOOTSTRAP, "--prefix", ns.prefix,
         "--url", w.url, "--qa-users", "5", "--others", "40", "--json"],
        cwd=ROOT, env={**os.environ, **ns.env(), "DETECTOR_API_TOKEN": TOKEN}, capture_output=True, text=True,
        timeout=120)
    assert run.returncode == 0, run.stderr
    sc = SimpleNamespace(**json.loads(run.stdout))
    ids = set(sc.offenders) | set(sc.allowlist)
    iid = wait_until(lambda: (w.get(f"/v1/incidents?experiment={QA}&rule=allowlist_breach")[1].get("incidents")
                              or [None])[0], 20, what="the incident")["id"]

    # A registration change during the incident: the allowlist gains two of the offenders (its
    # diff, on the incident's timeline and the experiment's history, is made of user ids).
    code, reg = w.get(f"/v1/expectations/{QA}", token=TOKEN)
    assert code == 200, reg
    reg["population"]["allowlist"] = sorted(sc.allowlist) + sorted(sc.offenders)[:2]
    code, body = w.request("PUT", f"/v1/expectations/{QA}?confirm=true", json.dumps(reg).encode(),
                           {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    assert code == 200, body
    wait_until(lambda: any(e["kind"] == "registration_change"
                           for e in w.get(f"/v1/incidents/{iid}", token=TOKEN)[1].get("timeline", [])), 20,
               what="the registration change on the incident's timeline")

    _login(d := browser, w.url, "oncall-token-0123456789")
    pages = ["/", f"/incidents/{iid}", f"/experiments/{QA}"]
    for page in pages:
        d.get(f"{w.url}{page}")
        source = d.page_source
        leaked = sorted(u for u in ids if u in source)
        assert not leaked, f"{page} shows user ids to a token without read:users: {leaked[:5]}"
    d.get(f"{w.url}/incidents/{iid}")
    assert not d.find_elements(By.ID, "download-csv")
    assert "read:users" in d.page_source  # says why the ids are not shown
    assert _fetch_status(d, "GET", f"/incidents/{iid}/blast-radius.csv") == 403
    assert d.find_elements(By.ID, "ack")  # respond is enough to acknowledge

    # The same pages with read:users show them.
    d.delete_all_cookies()
    _login(d, w.url, "owner-token-0123456789")
    d.get(f"{w.url}/incidents/{iid}")
    assert any(u in d.page_source for u in sc.offenders)
    assert not d.find_elements(By.ID, "ack")  # no respond scope: no buttons
