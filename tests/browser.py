"""What every browser test shares: Debian's chromium, its headless flags, and the image-load probe."""
import shutil

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
# without the background-networking flags chromium keeps dialling out of this offline machine
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync']
# injected into a page: marks every <img> loaded or not, then the body as probed
PROBE = ("<script>window.addEventListener('load', function () {"
         "document.querySelectorAll('img').forEach(function (im) {"
         "im.setAttribute('data-loaded', im.complete && im.naturalWidth > 0 ? '1' : '0');"
         "im.setAttribute('data-natural-width', String(im.naturalWidth)); });"
         "document.body.setAttribute('data-probe', 'done'); });</script>")
