"""The page `dvc plots show` and `dvc plots diff` write, made to work with no network.

DVC's own page loads Vega, Vega-Lite and vega-embed from a CDN: on a cluster node without
internet its data plots are silently missing. This template (.dvc/config: plots.html_template)
carries the three libraries inline (vl-convert bundles them) and drops DVC's CDN script tags
(its `{scripts}` placeholder is left out). Each plot is drawn as SVG; one that cannot be drawn
says so on the page, in place of the plot, and each drawn one is marked `data-rendered`, so a
headless browser can check the page (tests/test_plots_page.py).

    landscape-taxonomy plots-page --out .dvc/plots/page.html
"""

from __future__ import annotations

from pathlib import Path

# vl-convert bundles Vega 6, so Vega-Lite 6 with it. DVC's templates and ours say
# $schema v5; Vega-Lite 6 reads them (tests/test_plots_page.py draws every one), and the
# page states v6 on each spec before drawing it, else vega-embed warns of the mismatch on
# the console for every plot.
VEGA_LITE = "6.4"

HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{refresh_tag}
<title>Loss-landscape taxonomy: DVC plots</title>
<style>
  body { font-family: sans-serif; margin: 16px; }
  table { border-spacing: 15px; }
  .plot-error { color: #b00020; white-space: pre-wrap; border: 1px solid #b00020;
                padding: 8px; max-width: 800px; }
</style>
"""

# Wraps vegaEmbed (which DVC's plot divs call inline): SVG rendering, and a visible note in
# place of a plot that fails, or of every plot when the bundle itself did not load.
GUARD = r"""<script>
(function () {
  var embed = window.vegaEmbed;
  function fail(target, why) {
    var el = document.querySelector(target);
    if (!el) { return; }
    el.setAttribute("data-rendered", "error");
    var note = document.createElement("pre");
    note.className = "plot-error";
    note.textContent = "This plot could not be drawn: " + why;
    el.appendChild(note);
  }
  window.vegaEmbed = function (target, spec, opts) {
    if (typeof embed !== "function") {
      fail(target, "the Vega libraries did not load");
      return Promise.resolve(null);
    }
    var schema = spec && spec.$schema;
    if (schema && /vega-lite\/v5(\.[0-9.]+)?\.json$/.test(schema)) {
      spec = Object.assign({}, spec, {$schema: schema.replace(/v5(\.[0-9.]+)?\.json$/, "v6.json")});
    }
    return embed(target, spec, Object.assign({renderer: "svg"}, opts || {}))
      .then(function (result) {
        document.querySelector(target).setAttribute("data-rendered", "true");
        return result;
      })
      .catch(function (err) { console.error(err); fail(target, String(err)); });
  };
})();
</script>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def page(vl_version: str = VEGA_LITE) -> str:
    """The template's text: DVC fills {plot_divs} and {refresh_tag}."""
    import vl_convert as vlc

    known = vlc.get_vegalite_versions()
    if vl_version not in known:  # another vl-convert: the newest of the same major
        vl_version = max((v for v in known if v.startswith(vl_version.split(".")[0] + ".")),
                         key=lambda v: tuple(map(int, v.split("."))))
    bundle = vlc.javascript_bundle(vl_version=vl_version)
    # a "</script" inside the bundle would end the tag early
    bundle = bundle.replace("</script", "<\\/script")
    return HEAD + "<script>\n" + bundle + "\n</script>\n" + GUARD


def write(out: Path, vl_version: str = VEGA_LITE) -> Path:
    from ..cells.io import atomic_write_text

    atomic_write_text(Path(out), page(vl_version))
    return Path(out)
