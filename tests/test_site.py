"""The built documentation site in a real browser: headless Chromium (the system's package,
driven through its chromedriver by Selenium) opens it from disk (``file://``, as the README
says to) and served over ``http://``, follows every navigation link to a real page, searches
for "Adam" and sees results, and checks that every figure loaded. Also, without a browser:
the site's pages load nothing from another host (no CDN fonts, scripts or styles).

The site is ``site/`` when it is newer than mkdocs.yml and every file of docs/ (``make docs``
and ``make lint`` build it); otherwise it is built here, into a temporary folder. Chromium
and chromedriver come from the system (Debian: ``apt-get install chromium chromium-driver``;
.ci/run installs them when run as root); without them the browser tests skip, saying so.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver",)
#: Seconds to wait for a page's scripts, search results and figures.
WAIT = 30


def _newest_source() -> float:
    sources = [ROOT / "mkdocs.yml", *(p for p in (ROOT / "docs").rglob("*") if p.is_file())]
    return max(p.stat().st_mtime for p in sources)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    built = ROOT / "site"
    index = built / "index.html"
    if index.is_file() and index.stat().st_mtime >= _newest_source():
        return built
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return out


# -- without a browser: nothing is loaded from another host ------------------------------


class _Assets(HTMLParser):
    """The URLs a page loads by itself: scripts, style sheets, icons, images, frames,
    preconnects (not the links a reader may follow)."""

    LOADS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src", "audio": "src"}

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in self.LOADS and a.get(self.LOADS[tag]):
            self.urls.append(a[self.LOADS[tag]])
        elif (
            tag == "link" and a.get("href") and a.get("rel") not in ("canonical", "alternate", "prev", "next")
        ):
            self.urls.append(a["href"])


def _remote(url: str) -> bool:
    return urlsplit(url.strip()).scheme in ("http", "https") or url.strip().startswith("//")


def test_no_page_loads_anything_from_another_host(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    remote = {}
    for page in pages:
        parser = _Assets()
        parser.feed(page.read_text(encoding="utf-8"))
        assert parser.urls, f"{page} loads nothing: not a page of the site?"
        found = [u for u in parser.urls if _remote(u)]
        if found:
            remote[str(page.relative_to(site))] = found
    assert not remote, f"pages load assets from other hosts: {remote}"
    css_url = re.compile(r"url\(\s*['\"]?((?:https?:)?//[^'\")]+)")
    for css in site.rglob("*.css"):
        assert not css_url.findall(css.read_text(encoding="utf-8")), f"{css} loads from another host"


def test_the_offline_search_index_and_worker_shim_are_there(site):
    # search/search_index.js: the index as a script, which file:// pages can load.
    assert (site / "search" / "search_index.js").read_text(encoding="utf-8").startswith("var __index = {")
    index = (site / "index.html").read_text(encoding="utf-8")
    assert 'src="javascripts/iframe-worker.js"' in index
    assert "unpkg" not in index
    # Navigation goes to files: tutorial/adam.html, not tutorial/adam/ (a directory listing from disk).
    assert 'href="tutorial/adam.html"' in index
    assert not re.search(r'class="md-nav__link[^"]*"\s+href="[^"#]*/"', index)


# -- in a browser ------------------------------------------------------------------------


def _which(names) -> str | None:
    return next((p for p in map(shutil.which, names) if p), None)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="the browser tests need selenium (pip install selenium)"
    )
    binary, driver_path = _which(BROWSERS), _which(DRIVERS)
    if binary is None or driver_path is None:
        pytest.skip(
            "no headless browser found: the site's browser tests need Chromium and chromedriver "
            "(Debian: apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module", params=["file", "http"])
def base_url(request, site):
    if request.param == "file":
        yield site.as_uri() + "/"
        return
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def _wait(driver, condition, message):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        pytest.fail(f"{message} (waited {WAIT} s at {driver.current_url})")


LOADED_IMAGES = """
const imgs = Array.from(document.images);
if (imgs.some(i => !i.complete)) return null;
return {broken: imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.currentSrc || i.src)};
"""


def test_every_navigation_link_opens_a_page_whose_figures_load(browser, base_url):
    browser.get(base_url + "index.html")
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('nav.md-nav--primary a.md-nav__link[href]'))"
        ".map(a => a.href.split('#')[0]);"
    )
    links = list(dict.fromkeys(links))
    assert len(links) > 20, links
    figures = 0
    for url in links:
        assert url.startswith(base_url), url
        assert not url.endswith("/"), f"{url}: a directory, not a page"
        browser.get(url)
        article = browser.execute_script(
            "const a = document.querySelector('article.md-content__inner'); return a && a.innerText;"
        )
        assert article and len(article) > 100, f"{url} is not a page of the site: {browser.title!r}"
        broken = _wait(
            browser, lambda d: d.execute_script(LOADED_IMAGES), f"the figures of {url} did not load"
        )["broken"]
        assert broken == [], f"{url}: figures that did not load: {broken}"
        figures += browser.execute_script("return document.images.length;")
    assert figures > 10  # the tutorial's figures were among them


def test_search_for_adam_finds_pages(browser, base_url):
    from selenium.webdriver.common.by import By

    browser.get(base_url + "tutorial/index.html")
    _wait(
        browser,
        lambda d: d.execute_script("return document.readyState") == "complete",
        "the page did not load",
    )
    button = browser.find_element(By.CSS_SELECTOR, "label.md-header__button[for='__search']")
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    _wait(browser, lambda d: box.is_displayed() or button.is_displayed(), "the page shows no search box")
    (button if button.is_displayed() else box).click()  # narrow windows hide the box behind a button
    _wait(browser, lambda d: box.is_displayed(), "the search box did not open")
    box.send_keys("Adam")
    titles = _wait(
        browser,
        lambda d: d.execute_script(
            "const r = Array.from(document.querySelectorAll('.md-search-result__item h1, .md-search-result__item h2'));"
            "return r.length ? r.map(e => e.innerText) : null;"
        ),
        "the search for 'Adam' showed no results",
    )
    assert any("Adam" in t for t in titles), titles
    first = browser.find_element(By.CSS_SELECTOR, ".md-search-result__item a").get_attribute("href")
    assert first.startswith(base_url) and ".html" in first, first
