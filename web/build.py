"""Write web/offline_plots.html: DVC's plots page template with vega inlined from npm.

Run after ``npm ci`` in web/ (``.ci/run setup`` does both); the output is generated, not
committed. DVC reads it through ``plots.html_template`` and fills ``{plot_divs}`` (and
``{refresh_tag}``); with no ``{scripts}`` placeholder it adds no CDN script tags.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = "<!-- SCRIPTS -->"
# Load order matters: vega-lite and vega-embed find vega (and vega-lite) as globals.
BUNDLES = (("vega", "build/vega.min.js"), ("vega-lite", "build/vega-lite.min.js"),
           ("vega-embed", "build/vega-embed.min.js"))
# str.replace placeholders of dvc_render's HTML.embed: inlined code must not contain them.
PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")


def inline_scripts(modules: Path) -> str:
    """The three bundles as inline <script> elements, each headed by its package version."""
    parts = []
    for package, rel in BUNDLES:
        path = modules / package / rel
        if not path.is_file():
            raise SystemExit(f"error: {path}: missing; run `npm ci` in {HERE}")
        version = json.loads((modules / package / "package.json").read_text())["version"]
        code = path.read_text(encoding="utf8")
        found = [p for p in PLACEHOLDERS if p in code]
        if found:
            raise SystemExit(f"error: {path}: contains DVC's placeholder {found[0]}")
        # "</script" inside the code would end the element early; "<\/" means the same in JS.
        code = code.replace("</script", "<\\/script")
        parts.append(f"<!-- {package} {version} (npm) -->\n<script>{code}</script>")
    return "\n".join(parts)


def build(template: Path, modules: Path, out: Path) -> Path:
    """Write ``out`` from ``template`` with its marker replaced by the inlined bundles."""
    page = template.read_text(encoding="utf8")
    if MARKER not in page or "{plot_divs}" not in page:
        raise SystemExit(f"error: {template}: needs the marker {MARKER} and {{plot_divs}}")
    page = page.replace(MARKER, inline_scripts(modules))
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf8") as handle:
        handle.write(page)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    return out


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "offline_plots.html"
    path = build(HERE / "template.html", HERE / "node_modules", out)
    print(f"offline plots template: {path} ({path.stat().st_size // 1024} KiB)")
