#!/usr/bin/env python
"""Offline visdom server: web assets from the npm registry, then visdom's own server.

`python fhn/scripts/visdom_server.py [--port 8097] [--cache_dir DIR] [--fetch_only]`

`python -m visdom.server` downloads its JS/CSS from CDNs at every start and dies
offline. Here the same files (same versions as visdom 0.2.4's list) are fetched once
with `npm pack` from the npm registry into a cache folder, merged with visdom's
bundled static files, and `visdom.server.run_server.main()` serves that folder.
Remaining arguments go to visdom's server (e.g. `-env_path`, `-logging_level`).
"""
import os
import sys

if __package__ in (None, ""):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import argparse  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402

from common.errors import cli_main  # noqa: E402
from common.safeio import check_writable_dir  # noqa: E402

# npm package -> {file inside the package: file under static/}
ASSETS = {
    "jquery@3.1.1": {"dist/jquery.min.js": "js/jquery.min.js"},
    "bootstrap@3.3.7": {
        "dist/js/bootstrap.min.js": "js/bootstrap.min.js",
        "dist/css/bootstrap.min.css": "css/bootstrap.min.css",
        "dist/fonts/glyphicons-halflings-regular.eot": "fonts/glyphicons-halflings-regular.eot",
        "dist/fonts/glyphicons-halflings-regular.woff2": "fonts/glyphicons-halflings-regular.woff2",
        "dist/fonts/glyphicons-halflings-regular.woff": "fonts/glyphicons-halflings-regular.woff",
        "dist/fonts/glyphicons-halflings-regular.ttf": "fonts/glyphicons-halflings-regular.ttf",
        "dist/fonts/glyphicons-halflings-regular.svg": "fonts/glyphicons-halflings-regular.svg",
    },
    "react@16.2.0": {"umd/react.production.min.js": "js/react-react.min.js"},
    "react-dom@16.2.0": {"umd/react-dom.production.min.js": "js/react-dom.min.js"},
    "react-modal@3.1.10": {"dist/react-modal.min.js": "js/react-modal.min.js"},
    "plotly.js-dist-min@2.11.1": {"plotly.min.js": "js/plotly-plotly.min.js"},
    "sjcl@1.0.7": {"sjcl.js": "js/sjcl.js"},
    "layout-bin-packer@1.4.0": {
        "dist/layout-bin-packer.js": "js/layout_bin_packer.js",
        "dist/layout-bin-packer.js.map": "js/layout-bin-packer.js.map",
    },
    "d3@3.5.17": {"d3.min.js": "js/d3.v3.min.js"},
    "d3-selection-multi@1.0.1": {"build/d3-selection-multi.js": "js/d3-selection-multi.v1.js"},
    "save-svg-as-png@1.4.17": {"lib/saveSvgAsPng.js": "js/saveSvgAsPng.js"},
    "react-resizable@1.4.6": {"css/styles.css": "css/react-resizable-styles.css"},
    "react-grid-layout@0.16.3": {"css/styles.css": "css/react-grid-layout-styles.css"},
    "classnames@2.2.5": {"index.js": "fonts/classnames"},
}
# MathJax (text panes only; ~21 MB): the directory tree visdom expects under js/mathjax/2.7.5
MATHJAX = "mathjax@2.7.5"
MATHJAX_PREFIXES = ("MathJax.js", "config/", "extensions/", "jax/output/SVG/", "jax/input/",
                    "jax/element/")


def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    return os.path.join(base, "fhn", "visdom_static")


def assets_ready(static_dir):
    if not os.path.isfile(os.path.join(static_dir, "user", "style.css")):
        return False
    return all(os.path.isfile(os.path.join(static_dir, dst))
               for files in ASSETS.values() for dst in files.values())


def npm_pack(spec, folder):
    """`npm pack spec` into folder -> path of the .tgz (npm registry, no install)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: install Node.js/npm (Debian: apt-get install npm) to fetch "
                         "the visdom web assets from the npm registry")
    out = subprocess.run([npm, "pack", spec, "--silent"], cwd=folder, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit("npm pack %s failed:\n%s" % (spec, out.stderr[-2000:]))
    name = out.stdout.strip().splitlines()[-1]
    return os.path.join(folder, name)


def fetch_assets(static_dir, with_mathjax=True):
    """Fill static_dir with visdom's bundled files plus the npm assets."""
    import visdom  # here, not at the top: --help and --fetch_only stay fast

    bundled = os.path.join(os.path.dirname(visdom.__file__), "static")
    os.makedirs(static_dir, exist_ok=True)
    for root, _, files in os.walk(bundled):
        for f in files:
            src = os.path.join(root, f)
            dst = os.path.join(static_dir, os.path.relpath(src, bundled))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
    # tornado >= 6.6 refuses static_url("../user/style.css") (outside the static root) and
    # visdom 0.2.4's index page then fails with 403: serve the user stylesheet from inside
    index = os.path.join(static_dir, "index.html")
    with open(index) as f:
        html = f.read()
    with open(index, "w") as f:
        f.write(html.replace('static_url("../user/style.css")', 'static_url("user/style.css")'))
    os.makedirs(os.path.join(static_dir, "user"), exist_ok=True)
    open(os.path.join(static_dir, "user", "style.css"), "a").close()
    with tempfile.TemporaryDirectory() as tmp:
        for spec, files in ASSETS.items():
            if all(os.path.isfile(os.path.join(static_dir, d)) for d in files.values()):
                continue
            print("fetching %s from the npm registry" % spec, flush=True)
            with tarfile.open(npm_pack(spec, tmp)) as tar:
                for src, dst in files.items():
                    member = tar.extractfile("package/" + src)
                    path = os.path.join(static_dir, dst)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(member.read())
        mj_dir = os.path.join(static_dir, "js", "mathjax", "2.7.5")
        if with_mathjax and not os.path.isfile(os.path.join(mj_dir, "MathJax.js")):
            print("fetching %s from the npm registry" % MATHJAX, flush=True)
            with tarfile.open(npm_pack(MATHJAX, tmp)) as tar:
                for m in tar.getmembers():
                    rel = m.name[len("package/"):]
                    if m.isfile() and rel.startswith(MATHJAX_PREFIXES):
                        path = os.path.join(mj_dir, rel)
                        os.makedirs(os.path.dirname(path), exist_ok=True)
                        with open(path, "wb") as f:
                            f.write(tar.extractfile(m).read())
    with open(os.path.join(static_dir, "version.built"), "w") as f:
        f.write(visdom.__version__)
    return static_dir


def serve(static_dir, server_args):
    """visdom.server.run_server.main() on static_dir, without its CDN download step."""
    import visdom.server.app as app  # here, not at the top: --help stays fast
    from visdom.server import run_server

    app.tornado_settings["static_path"] = static_dir
    app.tornado_settings["template_path"] = static_dir
    sys.argv = ["visdom.server"] + list(server_args)
    run_server.main()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache_dir", default=default_cache_dir(),
                        help="folder for the web assets (default: %(default)s)")
    parser.add_argument("--fetch_only", action="store_true", help="fetch the assets and exit")
    parser.add_argument("--no_mathjax", action="store_true", help="skip MathJax (text panes)")
    parser.add_argument("--port", type=int, default=8097)
    args, rest = parser.parse_known_args(argv)
    check_writable_dir(args.cache_dir, "asset cache folder")
    if not assets_ready(args.cache_dir):
        fetch_assets(args.cache_dir, with_mathjax=not args.no_mathjax)
    print("visdom web assets in %s" % args.cache_dir, flush=True)
    if args.fetch_only:
        return 0
    serve(args.cache_dir, ["-port", str(args.port)] + rest)
    return 0


if __name__ == "__main__":
    cli_main(main)
